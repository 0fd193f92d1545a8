import { type Channel, channel } from 'node:diagnostics_channel';
import type { CircuitState } from './circuit.js';
import type { OutlierReason } from './outlier.js';

/**
 * State changes of the upstream resilience machinery, published on node:diagnostics_channel. Publishing is
 * free when nobody subscribes: publishers check `hasSubscribers` before they build a message. Subscribers
 * (metrics, access logs, the admin API) use `channel.subscribe(fn)` and receive the messages below.
 */

/** An endpoint ejected by, or returned from, passive outlier detection. */
export interface OutlierEvent {
  service: string;
  /** The endpoint's origin, `http://127.0.0.1:3000`. */
  endpoint: string;
  event: 'eject' | 'uneject';
  /** Why it was ejected (eject only). */
  reason?: OutlierReason;
  /** How long this ejection lasts (eject only). */
  ejectionMs?: number;
}

/** A circuit breaker changed state. */
export interface CircuitEvent {
  service: string;
  from: CircuitState;
  to: CircuitState;
  /** `failure_ratio`, `open_elapsed`, `probe_failed` or `probes_succeeded`. */
  reason: string;
}

/** A retry was refused because the service's retry budget is empty; published at most once per second. */
export interface BudgetEvent {
  service: string;
  event: 'exhausted';
}

/** An active health check changed an endpoint's verdict. */
export interface HealthEvent {
  service: string;
  endpoint: string;
  healthy: boolean;
  /** The failed check's reason when it turned unhealthy. */
  lastError: string | undefined;
}

/** Messages are {@link HealthEvent}. */
export const healthChannel: Channel = channel('trellis:health');
/** Messages are {@link OutlierEvent}. */
export const outlierChannel: Channel = channel('trellis:outlier');
/** Messages are {@link CircuitEvent}. */
export const circuitChannel: Channel = channel('trellis:circuit');
/** Messages are {@link BudgetEvent}. */
export const budgetChannel: Channel = channel('trellis:retry-budget');
