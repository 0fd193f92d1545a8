/**
 * The two rate-limit algorithms, as plain arithmetic over one small mutable cell per (limit, key). The Redis
 * store runs the same arithmetic in Lua (redis-store.ts); a change here must be made there too, and the tests
 * run both against the same cases.
 *
 * Times are milliseconds on one clock (performance.now() locally, Redis TIME in Redis).
 */

export type Algorithm = 'gcra' | 'token-bucket';

/** One limit of a policy, compiled: `requests` per `per` ms, bursts of at most `burst`. */
export interface Limit {
  /** The policy identifier in RateLimit-Policy / RateLimit (a structured-field string). */
  readonly id: string;
  readonly algorithm: Algorithm;
  readonly requests: number;
  readonly per: number;
  readonly burst: number;
  /** GCRA emission interval: per / requests. */
  readonly interval: number;
  /** GCRA tolerance: burst × interval (how far the theoretical arrival time may run ahead of now). */
  readonly tolerance: number;
  /** Names the definition: the Redis key suffix and the reload identity of local state. */
  readonly tag: string;
}

export function compileLimit(
  id: string,
  algorithm: Algorithm,
  requests: number,
  per: number,
  burst: number,
): Limit {
  const interval = per / requests;
  return Object.freeze({
    id,
    algorithm,
    requests,
    per,
    burst,
    interval,
    tolerance: burst * interval,
    tag: `${algorithm === 'gcra' ? 'g' : 't'}${requests}r${per}p${burst}b`,
  });
}

/**
 * A bucket. GCRA: `a` is the theoretical arrival time (TAT). Token bucket: `a` is the tokens left, `b` the time
 * of the last refill. `fresh` is the time from which the cell is as good as new (the store evicts those first).
 */
export class Cell {
  a = 0;
  b = 0;
  fresh = 0;
}

// Sums of fractional intervals drift by ulps; a request is never refused for less than this.
const EPSILON = 1e-6;

/** Brings a token bucket up to `now`: whole refills of `requests` tokens every `per`, up to `burst`. */
function refill(l: Limit, c: Cell, now: number): void {
  if (c.fresh <= now) {
    c.a = l.burst;
    c.b = now;
    return;
  }
  const k = Math.floor((now - c.b) / l.per);
  if (k > 0) {
    c.a = Math.min(l.burst, c.a + k * l.requests);
    c.b += k * l.per;
  }
}

/**
 * How long the request must wait before `l` would let it through (0: now). Reads the cell, changing nothing
 * that matters: a token bucket is brought up to date, which any later call would do the same way.
 * `c` undefined: a key never seen (or forgotten), a full bucket.
 */
export function waitFor(l: Limit, c: Cell | undefined, now: number): number {
  if (c === undefined) return 0;
  if (l.algorithm === 'gcra') {
    const over = Math.max(c.a, now) + l.interval - now - l.tolerance;
    return over > EPSILON ? over : 0;
  }
  refill(l, c, now);
  return c.a >= 1 ? 0 : c.b + l.per - now;
}

/** Takes one request from the cell; only after `waitFor` said 0 for every limit of the policy. */
export function take(l: Limit, c: Cell, now: number): void {
  if (l.algorithm === 'gcra') {
    c.a = Math.max(c.a, now) + l.interval;
    c.fresh = c.a;
    return;
  }
  refill(l, c, now);
  c.a -= 1;
  c.fresh = c.b + Math.ceil((l.burst - c.a) / l.requests) * l.per;
}

/** Requests the limit still allows right now (after a `take`, what is left of the budget). */
export function remaining(l: Limit, c: Cell | undefined, now: number): number {
  if (c === undefined) return l.burst;
  if (l.algorithm === 'gcra') {
    const ahead = c.a > now ? c.a - now : 0;
    return Math.max(0, Math.floor((l.tolerance - ahead) / l.interval + EPSILON));
  }
  refill(l, c, now);
  return Math.max(0, Math.floor(c.a));
}

/** Milliseconds until the bucket is full again (the `t` of the RateLimit field). */
export function untilFull(c: Cell | undefined, now: number): number {
  if (c === undefined || c.fresh <= now) return 0;
  return c.fresh - now;
}
