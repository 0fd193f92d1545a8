import { performance } from 'node:perf_hooks';
import type { Outcome } from '../core/outcome.js';
import { circuitChannel } from './events.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitOptions {
  /** Open when failures / total >= this over the rolling window. Default 0.5. */
  failureRatio: number;
  /** Attempts the window must hold before the ratio counts. Default 20. */
  minimumRequests: number;
  /** ms; the rolling window, kept in 10 buckets (so the oldest tenth expires at once). Default 10_000. */
  window: number;
  /** ms open before half-open; doubles on each re-open from half-open, capped at `maxOpenFor`. Default 5_000. */
  openFor: number;
  /** ms; the cap on `openFor` doublings (raised to `openFor` if lower). Default 60_000. */
  maxOpenFor: number;
  /** Requests let through in half-open; all must succeed to close, any failure re-opens. Default 3. */
  halfOpenProbes: number;
}

export const defaultCircuitOptions: Readonly<CircuitOptions> = Object.freeze({
  failureRatio: 0.5,
  minimumRequests: 20,
  window: 10_000,
  openFor: 5_000,
  maxOpenFor: 60_000,
  halfOpenProbes: 3,
});

const BUCKETS = 10;
/** retryAfterMs() in half-open with every probe in flight: the probes' results are due soon. */
const HALF_OPEN_RETRY_MS = 1_000;

/**
 * An error-rate circuit breaker for one service. The proxy asks `allow()` once per request and reports that
 * request's final outcome (after its retries) with exactly one `record()` (a request admitted but never sent
 * reports `local_reply` or `client_abort`, which releases a half-open probe slot without counting either way).
 *
 * closed → open when, over the rolling window, at least `minimumRequests` attempts were recorded and
 * failures / total >= `failureRatio` (failures: `http_5xx` and the gateway failures; `client_abort` and
 * `local_reply` are not counted). open → half_open lazily, in `allow()`, once `openFor` has elapsed.
 * half_open admits `halfOpenProbes` attempts; when all of them succeed → closed (fresh window, `openFor` back to
 * its base); on the first failure → open again for twice as long (capped at `maxOpenFor`).
 *
 * Outcomes recorded while open are stragglers admitted before the circuit opened, and are ignored; outcomes
 * recorded in half-open count as probe results (record() cannot tell a probe from a straggler). Should probes
 * never report, their slots are reclaimed once no probe was admitted or reported for a whole `window`.
 * Every state change is published on `circuitChannel`.
 */
export class CircuitBreaker {
  readonly service: string;
  private readonly o: CircuitOptions;
  private readonly now: () => number;
  private current: CircuitState = 'closed';
  private readonly bucketMs: number;
  private readonly maxOpenMs: number;
  private readonly totals = new Float64Array(BUCKETS);
  private readonly failures = new Float64Array(BUCKETS);
  /** Absolute index (time / bucketMs) of the newest bucket. */
  private bucket: number;
  private total = 0;
  private failed = 0;
  private openMs: number;
  private openUntil = 0;
  private probesInFlight = 0;
  private probeSuccesses = 0;
  /** When the last half-open probe was admitted. */
  private probeAt = 0;

  constructor(service: string, o: CircuitOptions, now: () => number = () => performance.now()) {
    validate(o);
    this.service = service;
    this.o = o;
    this.now = now;
    this.bucketMs = o.window / BUCKETS;
    this.maxOpenMs = Math.max(o.maxOpenFor, o.openFor);
    this.openMs = o.openFor;
    this.bucket = Math.floor(now() / this.bucketMs);
  }

  /** The current state. Reading it has no effect: open → half_open happens in `allow()`. */
  get state(): CircuitState {
    return this.current;
  }

  /** Admission: false when open (or half-open with all probes in flight). Moves open → half_open lazily. */
  allow(): boolean {
    const state = this.current;
    if (state === 'closed') return true;
    if (state === 'open') {
      if (this.now() < this.openUntil) return false;
      this.transition('half_open', 'open_elapsed');
    }
    if (this.probesInFlight + this.probeSuccesses >= this.o.halfOpenProbes) {
      // Every probe is in flight. With no probe admitted or reported for a whole window, the ones in flight are
      // taken as lost (a caller that never called record()), so that the breaker cannot stay half-open for ever.
      const now = this.now();
      if (this.probesInFlight === 0 || now - this.probeAt < this.o.window) return false;
      this.probesInFlight = 0;
      this.probeAt = now;
    } else {
      this.probeAt = this.now();
    }
    this.probesInFlight++;
    return true;
  }

  /** The outcome of an admitted attempt. */
  record(outcome: Outcome): void {
    let failure: boolean;
    switch (outcome) {
      case 'success':
        failure = false;
        break;
      case 'client_abort':
      case 'local_reply':
        if (this.current === 'half_open' && this.probesInFlight > 0) {
          this.probesInFlight--;
          this.probeAt = this.now();
        }
        return;
      default:
        failure = true;
    }
    const state = this.current;
    if (state === 'closed') {
      const now = this.now();
      this.advance(now);
      const i = slot(this.bucket);
      this.totals[i]++;
      this.total++;
      if (failure) {
        this.failures[i]++;
        this.failed++;
      }
      if (
        this.failed > 0 &&
        this.total >= this.o.minimumRequests &&
        this.failed / this.total >= this.o.failureRatio
      ) {
        this.openUntil = now + this.openMs;
        this.transition('open', 'failure_ratio');
      }
    } else if (state === 'half_open') {
      if (this.probesInFlight > 0) this.probesInFlight--;
      this.probeAt = this.now();
      if (failure) {
        this.openMs = Math.min(this.openMs * 2, this.maxOpenMs);
        this.openUntil = this.now() + this.openMs;
        this.transition('open', 'probe_failed');
      } else if (++this.probeSuccesses >= this.o.halfOpenProbes) {
        this.openMs = this.o.openFor;
        this.clearWindow();
        this.transition('closed', 'probes_succeeded');
      }
    }
  }

  /**
   * When the breaker will next admit, in ms from now (for Retry-After): 0 when closed or when a half-open probe
   * slot is free; the time left when open; a short hint (1 s) when every half-open probe is in flight.
   */
  retryAfterMs(): number {
    const state = this.current;
    if (state === 'closed') return 0;
    if (state === 'open') return Math.max(0, Math.ceil(this.openUntil - this.now()));
    return this.probesInFlight + this.probeSuccesses >= this.o.halfOpenProbes ? HALF_OPEN_RETRY_MS : 0;
  }

  private transition(to: CircuitState, reason: string): void {
    const from = this.current;
    this.current = to;
    this.probesInFlight = 0;
    this.probeSuccesses = 0;
    if (circuitChannel.hasSubscribers) circuitChannel.publish({ service: this.service, from, to, reason });
  }

  /** Expires the buckets older than the window; at most BUCKETS steps. */
  private advance(now: number): void {
    const b = Math.floor(now / this.bucketMs);
    if (b <= this.bucket) return;
    if (b - this.bucket >= BUCKETS) {
      this.clearWindow();
    } else {
      for (let k = this.bucket + 1; k <= b; k++) {
        const i = slot(k);
        this.total -= this.totals[i]!;
        this.failed -= this.failures[i]!;
        this.totals[i] = 0;
        this.failures[i] = 0;
      }
    }
    this.bucket = b;
  }

  private clearWindow(): void {
    this.totals.fill(0);
    this.failures.fill(0);
    this.total = 0;
    this.failed = 0;
  }
}

function validate(o: CircuitOptions): void {
  if (!(o.failureRatio >= 0 && o.failureRatio <= 1))
    throw new RangeError('circuit: failureRatio must be in [0, 1]');
  if (!(o.minimumRequests >= 0)) throw new RangeError('circuit: minimumRequests must be >= 0');
  if (!(o.window > 0) || !Number.isFinite(o.window)) throw new RangeError('circuit: window must be > 0');
  if (!(o.openFor > 0) || !Number.isFinite(o.openFor)) throw new RangeError('circuit: openFor must be > 0');
  if (!(o.maxOpenFor >= 0)) throw new RangeError('circuit: maxOpenFor must be >= 0');
  if (!(o.halfOpenProbes >= 1)) throw new RangeError('circuit: halfOpenProbes must be >= 1');
}

export interface AdmissionLimits {
  /** Requests in flight to the service. Default 1024. */
  maxRequests: number;
  /** Attempts waiting for a connection (see `tryPending`). Default 1024. */
  maxPending: number;
  /** Retries in flight to the service. Default 1024: the retry budget is the real control. */
  maxRetries: number;
}

export const defaultAdmissionLimits: Readonly<AdmissionLimits> = Object.freeze({
  maxRequests: 1024,
  maxPending: 1024,
  maxRetries: 1024,
});

/** The limit an admission check hit. */
export type AdmissionLimit = 'requests' | 'pending' | 'retries';

/**
 * Concurrency limits for one service (Envoy's circuit-breaker thresholds). Each `try*` either names the limit
 * hit (nothing counted) or counts the admission and returns `undefined`; each admission is ended by exactly one
 * matching `end*`. Counters never go below 0.
 */
export class Admission {
  readonly limits: AdmissionLimits;
  /** Requests in flight (a request and its retries count once). */
  active = 0;
  /** Attempts waiting for a connection. */
  pending = 0;
  /** Retries in flight. */
  retries = 0;

  constructor(o: AdmissionLimits) {
    this.limits = o;
  }

  tryRequest(): 'requests' | undefined {
    if (this.active >= this.limits.maxRequests) return 'requests';
    this.active++;
    return undefined;
  }

  endRequest(): void {
    if (this.active > 0) this.active--;
  }

  /**
   * An attempt that cannot be sent at once because every connection to its endpoint is busy (the proxy knows:
   * `ep.active` against the pool's connection count) and would queue; `endPending()` when it is dispatched or
   * given up. Bounds the queue that would otherwise build up inside the connection pool.
   */
  tryPending(): 'pending' | undefined {
    if (this.pending >= this.limits.maxPending) return 'pending';
    this.pending++;
    return undefined;
  }

  endPending(): void {
    if (this.pending > 0) this.pending--;
  }

  tryRetry(): 'retries' | undefined {
    if (this.retries >= this.limits.maxRetries) return 'retries';
    this.retries++;
    return undefined;
  }

  endRetry(): void {
    if (this.retries > 0) this.retries--;
  }
}

/** The ring index of absolute bucket k (k may be negative with a fake clock). */
function slot(k: number): number {
  const i = k % BUCKETS;
  return i < 0 ? i + BUCKETS : i;
}
