import { performance } from 'node:perf_hooks';
import { budgetChannel } from './events.js';

export interface RetryBudgetOptions {
  /** Retries allowed per original request, over the last `ttl`. Default 0.2. */
  ratio: number;
  /** A floor of retries per second, so that low-traffic services can retry at all. Default 10. */
  minPerSecond: number;
  /** ms; how long deposits and withdrawals count. Default 10_000. */
  ttl: number;
}

export const defaultRetryBudgetOptions: Readonly<RetryBudgetOptions> = Object.freeze({
  ratio: 0.2,
  minPerSecond: 10,
  ttl: 10_000,
});

const BUCKETS = 10;
/** Absorbs float error: 0.29 * 100 is 28.999999999999996. */
const EPSILON = 1e-9;
const EXHAUSTED_EVENT_MS = 1_000;

/**
 * A retry budget for one service (Linkerd / Finagle style): over the last `ttl`,
 * retries <= minPerSecond * ttl / 1000 + ratio * requests. Deposits and withdrawals are counted in 10 time buckets
 * per `ttl` (fixed arrays, running sums), so each expires between 0.9 and 1 `ttl` after it was made. A retry
 * refused on an empty budget is published on `budgetChannel` (at most once per second).
 *
 * Like Finagle's, the balance can dip below zero when old deposits expire before the withdrawals they paid for;
 * `balance` reports 0 then, and retries are refused until it is back above 1.
 */
export class RetryBudget {
  readonly service: string;
  private readonly ratio: number;
  private readonly reserve: number;
  private readonly now: () => number;
  private readonly bucketMs: number;
  private readonly deposits = new Float64Array(BUCKETS);
  private readonly withdrawals = new Float64Array(BUCKETS);
  /** Absolute index (time / bucketMs) of the newest bucket. */
  private bucket: number;
  private deposited = 0;
  private withdrawn = 0;
  private lastExhausted = Number.NEGATIVE_INFINITY;

  constructor(service: string, o: RetryBudgetOptions, now: () => number = () => performance.now()) {
    if (!(o.ratio >= 0) || !Number.isFinite(o.ratio)) {
      throw new RangeError('retry budget: ratio must be >= 0');
    }
    if (!(o.minPerSecond >= 0) || !Number.isFinite(o.minPerSecond)) {
      throw new RangeError('retry budget: minPerSecond must be >= 0');
    }
    if (!(o.ttl > 0) || !Number.isFinite(o.ttl)) throw new RangeError('retry budget: ttl must be > 0');
    this.service = service;
    this.ratio = o.ratio;
    this.reserve = (o.minPerSecond * o.ttl) / 1000;
    this.now = now;
    this.bucketMs = o.ttl / BUCKETS;
    this.bucket = Math.floor(now() / this.bucketMs);
  }

  /** Every original request deposits. */
  deposit(): void {
    this.advance(this.now());
    this.deposits[slot(this.bucket)]++;
    this.deposited++;
  }

  /** A retry withdraws; false (and no withdrawal) when the budget is empty. */
  tryWithdraw(): boolean {
    const now = this.now();
    this.advance(now);
    if (this.raw() < 1 - EPSILON) {
      if (now - this.lastExhausted >= EXHAUSTED_EVENT_MS && budgetChannel.hasSubscribers) {
        this.lastExhausted = now;
        budgetChannel.publish({ service: this.service, event: 'exhausted' });
      }
      return false;
    }
    this.withdrawals[slot(this.bucket)]++;
    this.withdrawn++;
    return true;
  }

  /** Retries that may be made now (fractional; never negative). */
  get balance(): number {
    this.advance(this.now());
    return Math.max(0, this.raw());
  }

  private raw(): number {
    return this.reserve + this.ratio * this.deposited - this.withdrawn;
  }

  /** Expires the buckets older than the ttl; at most BUCKETS steps. */
  private advance(now: number): void {
    const b = Math.floor(now / this.bucketMs);
    if (b <= this.bucket) return;
    if (b - this.bucket >= BUCKETS) {
      this.deposits.fill(0);
      this.withdrawals.fill(0);
      this.deposited = 0;
      this.withdrawn = 0;
    } else {
      for (let k = this.bucket + 1; k <= b; k++) {
        const i = slot(k);
        this.deposited -= this.deposits[i]!;
        this.withdrawn -= this.withdrawals[i]!;
        this.deposits[i] = 0;
        this.withdrawals[i] = 0;
      }
    }
    this.bucket = b;
  }
}

/** The ring index of absolute bucket k (k may be negative with a fake clock). */
function slot(k: number): number {
  const i = k % BUCKETS;
  return i < 0 ? i + BUCKETS : i;
}
