import { type Channel, channel } from 'node:diagnostics_channel';

/**
 * A rate-limit or quota store (Redis) failed a check, or answered again after failing. Published on
 * `trellis:rate-limit-store` at most once per 10 s per policy while failing (with the count of failures since the
 * last message), and once when it recovers; the gateway logs them. Never carries the Redis URL.
 */
export interface StoreEvent {
  policy: string;
  type: string;
  /** `host:port` of the store. */
  store: string;
  event: 'error' | 'recovered';
  /** The last error's message (error only). */
  error?: string;
  /** Failed checks since the previous message. */
  failures: number;
  /** What the failed checks did: `allow` (let through) or `deny` (503). */
  onStoreError: 'allow' | 'deny';
}

/** Messages are {@link StoreEvent}. */
export const storeChannel: Channel = channel('trellis:rate-limit-store');

/**
 * Failed store checks per policy name since the process started, for the metric
 * `trellis_rate_limit_store_errors_total` (read at scrape time).
 */
export const storeErrorTotals = new Map<string, number>();

const REPORT_EVERY_MS = 10_000;

/** Turns every failed check into a count, and a message now and then. Kept with the store across reloads. */
export class StoreHealth {
  #failing = false;
  #unreported = 0;
  #lastReport = Number.NEGATIVE_INFINITY;

  constructor(
    readonly policy: string,
    readonly type: string,
    readonly store: string,
  ) {}

  failed(err: unknown, mode: 'allow' | 'deny'): void {
    storeErrorTotals.set(this.policy, (storeErrorTotals.get(this.policy) ?? 0) + 1);
    this.#unreported++;
    const now = performance.now();
    if (this.#failing && now - this.#lastReport < REPORT_EVERY_MS) return;
    this.#failing = true;
    this.#lastReport = now;
    if (storeChannel.hasSubscribers) {
      storeChannel.publish({
        policy: this.policy,
        type: this.type,
        store: this.store,
        event: 'error',
        error: (err as Error)?.message ?? String(err),
        failures: this.#unreported,
        onStoreError: mode,
      } satisfies StoreEvent);
    }
    this.#unreported = 0;
  }

  /** A check succeeded: one message if it had been failing. Costs a field read otherwise. */
  ok(mode: 'allow' | 'deny'): void {
    if (!this.#failing) return;
    this.#failing = false;
    if (storeChannel.hasSubscribers) {
      storeChannel.publish({
        policy: this.policy,
        type: this.type,
        store: this.store,
        event: 'recovered',
        failures: this.#unreported,
        onStoreError: mode,
      } satisfies StoreEvent);
    }
    this.#unreported = 0;
  }
}
