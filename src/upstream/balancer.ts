import type { Endpoint } from './endpoint.js';
import { hashString } from './hash.js';

/**
 * Load balancers: each picks one endpoint per attempt among the endpoints the service's EndpointSet found
 * eligible. `update` (on a health, ejection or priority change) does the expensive work: copying the list,
 * building cumulative weights, a round-robin schedule, a hash ring or a Maglev table. `pick` runs per
 * attempt and allocates nothing: O(1) for p2c-ewma, least-request, round-robin and Maglev, O(log n) for
 * weighted random and ring-hash (round-robin is O(n) only for weights whose schedule exceeds 65,536 picks).
 *
 * `avoid` is the endpoint a retry just failed on: every balancer picks another one when the set has another.
 */

export type BalancerKind = 'p2c-ewma' | 'least-request' | 'round-robin' | 'random' | 'ring-hash' | 'maglev';

export interface Balancer {
  /**
   * hash: 32-bit unsigned key hash for ring-hash/maglev (others ignore it). avoid: an endpoint to avoid if
   * another is available (the one a retry just failed on). Returns undefined only when the set is empty.
   */
  pick(hash: number, avoid: Endpoint | undefined): Endpoint | undefined;
  /** Replace the eligible endpoints (called when health/ejection/priority changes). */
  update(endpoints: readonly Endpoint[]): void;
}

export interface BalancerOptions {
  kind: BalancerKind;
  /** ring-hash: min ring entries, default 1024 (see RingHash for how they are shared out). */
  ringSize?: number;
  /** maglev: lookup table size, a prime, default 65537 (a non-prime is raised to the next prime). */
  maglevTableSize?: number;
  /** p2c-ewma: time constant of the latency estimate's decay, default 10_000 ms. */
  ewmaDecayMs?: number;
}

const DEFAULT_DECAY_MS = 10_000;
const DEFAULT_RING_SIZE = 1024;
const DEFAULT_MAGLEV_TABLE_SIZE = 65537;

export function createBalancer(o: BalancerOptions): Balancer {
  switch (o.kind) {
    case 'p2c-ewma':
      return new PeakEwma(positive(o.ewmaDecayMs, DEFAULT_DECAY_MS));
    case 'least-request':
      return new LeastRequest();
    case 'round-robin':
      return new RoundRobin();
    case 'random':
      return new WeightedRandom();
    case 'ring-hash':
      return new RingHash(Math.max(1, Math.ceil(positive(o.ringSize, DEFAULT_RING_SIZE))));
    case 'maglev':
      return new Maglev(
        nextPrime(Math.max(3, Math.ceil(positive(o.maglevTableSize, DEFAULT_MAGLEV_TABLE_SIZE)))),
      );
    default:
      throw new RangeError(`unknown balancer kind: ${String((o as { kind: unknown }).kind)}`);
  }
}

/**
 * Peak-EWMA update, called by the proxy when an attempt gets its response headers (or fails): latencyMs
 * measured, now = performance.now().
 *
 * Peak: a sample above the estimate replaces it at once (a slowing endpoint is shunned immediately); a
 * sample below it pulls the estimate down with weight 1 - exp(-elapsed/decay), elapsed being the time since
 * the previous sample, so the estimate forgets at a rate set by time, not by request rate. The first sample
 * is taken as is. Negative, NaN or infinite samples are ignored.
 */
export function observeLatency(
  ep: Endpoint,
  latencyMs: number,
  now: number,
  decayMs = DEFAULT_DECAY_MS,
): void {
  if (!(latencyMs >= 0) || latencyMs === Number.POSITIVE_INFINITY) return;
  const prev = ep.ewma;
  if (prev === 0 || latencyMs >= prev || !(decayMs > 0)) {
    ep.ewma = latencyMs;
  } else {
    const elapsed = now - ep.ewmaStamp;
    const keep = elapsed > 0 ? Math.exp(-elapsed / decayMs) : 1;
    ep.ewma = prev * keep + latencyMs * (1 - keep);
  }
  ep.ewmaStamp = now;
}

function positive(v: number | undefined, fallback: number): number {
  return v !== undefined && v > 0 && Number.isFinite(v) ? v : fallback;
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

function nextPrime(n: number): number {
  while (!isPrime(n)) n++;
  return n;
}

/** An endpoint's weight for building tables: a finite non-negative number (config allows 1 to 1e6). */
function weightOf(e: Endpoint): number {
  const w = e.weight;
  return w > 0 && Number.isFinite(w) ? w : 0;
}

function byOrigin(a: Endpoint, b: Endpoint): number {
  return a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0;
}

/** Uniform random integer in [0, n). */
function randomBelow(n: number): number {
  return Math.floor(Math.random() * n);
}

// ---------- list-based balancers ----------

abstract class ListBalancer implements Balancer {
  protected eps: readonly Endpoint[] = [];
  readonly #index = new Map<Endpoint, number>();

  abstract pick(hash: number, avoid: Endpoint | undefined): Endpoint | undefined;

  update(endpoints: readonly Endpoint[]): void {
    this.eps = endpoints.slice();
    this.#index.clear();
    for (let i = 0; i < this.eps.length; i++) this.#index.set(this.eps[i]!, i);
    this.rebuild();
  }

  protected rebuild(): void {}

  /** Position of `ep` in the list, -1 when absent or undefined. */
  protected indexOf(ep: Endpoint | undefined): number {
    return ep === undefined ? -1 : (this.#index.get(ep) ?? -1);
  }
}

/**
 * Power of two choices: two distinct endpoints drawn at random (never `avoid` when there is another), the
 * cheaper one wins. Comparing two random endpoints rather than scanning all of them keeps a pick O(1) and
 * avoids the herd behaviour of "always the least loaded" when many gateways share stale load information.
 */
abstract class PowerOfTwo extends ListBalancer {
  pick(_hash: number, avoid: Endpoint | undefined): Endpoint | undefined {
    const eps = this.eps;
    const n = eps.length;
    if (n <= 1) return eps[0];
    const x = this.indexOf(avoid);
    const m = x < 0 ? n : n - 1;
    if (m === 1) return eps[x === 0 ? 1 : 0];
    // i, j distinct in [0, m), then shifted over the avoided index.
    let i = randomBelow(m);
    let j = randomBelow(m - 1);
    if (j >= i) j++;
    if (x >= 0) {
      if (i >= x) i++;
      if (j >= x) j++;
    }
    return this.choose(eps[i]!, eps[j]!);
  }

  /** The better of two endpoints; `a` on a tie (the order of a and b is random). */
  protected abstract choose(a: Endpoint, b: Endpoint): Endpoint;
}

/**
 * Peak EWMA (Finagle, Linkerd): cost = latency estimate × (requests in flight + 1) / weight, the lower cost
 * of two random endpoints wins. The estimate a pick sees decays towards zero with the time since the last
 * sample (exp(-elapsed/decay)), as in Linkerd: an endpoint shunned for being slow gets no samples, so it
 * must look cheaper as time passes to be probed again; its next sample restores the estimate (peak).
 *
 * An endpoint with no sample yet (ewma 0) is costed with the other candidate's latency: it competes on its
 * load alone, so it is neither flooded (a zero cost would win every comparison until its first response)
 * nor starved (a default guess could be far above the real latencies). When neither candidate has a
 * sample, the one with fewer requests in flight wins.
 */
class PeakEwma extends PowerOfTwo {
  readonly #decayMs: number;

  constructor(decayMs: number) {
    super();
    this.#decayMs = decayMs;
  }

  protected choose(a: Endpoint, b: Endpoint): Endpoint {
    const now = performance.now();
    let la = this.#latency(a, now);
    let lb = this.#latency(b, now);
    if (la === 0) la = lb;
    if (lb === 0) lb = la;
    if (la === 0) la = lb = 1;
    // la(a.active+1)/a.weight <= lb(b.active+1)/b.weight, without the divisions.
    return la * (a.active + 1) * b.weight <= lb * (b.active + 1) * a.weight ? a : b;
  }

  #latency(ep: Endpoint, now: number): number {
    const e = ep.ewma;
    if (e === 0) return 0;
    const elapsed = now - ep.ewmaStamp;
    return elapsed > 0 ? e * Math.exp(-elapsed / this.#decayMs) : e;
  }
}

/**
 * Least request: the endpoint with fewer requests in flight per unit of weight, (active + 1) / weight,
 * wins. The + 1 breaks ties between idle endpoints in favour of the heavier one; with equal weights it is
 * plain least-active.
 */
class LeastRequest extends PowerOfTwo {
  protected choose(a: Endpoint, b: Endpoint): Endpoint {
    return (a.active + 1) * b.weight <= (b.active + 1) * a.weight ? a : b;
  }
}

/** Longest precomputed weighted round-robin schedule; beyond it the smooth weighted step runs per pick. */
const MAX_SCHEDULE = 1 << 16;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * Round robin. Equal weights: plain rotation. Otherwise smooth weighted round robin (nginx): every step adds
 * each endpoint's weight to its counter, picks the highest counter (the first on a tie) and takes the total
 * weight off it, which spreads a heavy endpoint's turns evenly instead of in bursts. Over every period of
 * Σweight/gcd picks each endpoint gets exactly weight/gcd of them; the period is precomputed on update when
 * it is at most 65,536 picks (a pick is then one array read), else the step runs per pick (O(n)).
 *
 * The position starts at a random point on each update, so that the workers of a cluster (and services
 * that share endpoints) do not all start on the same endpoint.
 *
 * avoid: when the turn falls on the avoided endpoint, the next endpoint of a separate plain rotation that
 * is not the avoided one is taken instead (weights are not honoured for these retries, which are rare).
 */
class RoundRobin extends ListBalancer {
  /** Weighted schedule (endpoint indexes), undefined for plain rotation or the per-pick step. */
  #schedule: Uint32Array | undefined = undefined;
  /** Per-pick smooth weighted step: counters, undefined unless the schedule would be too long. */
  #current: Float64Array | undefined = undefined;
  #total = 0;
  #cursor = 0;
  #alt = 0;

  protected override rebuild(): void {
    const eps = this.eps;
    const n = eps.length;
    this.#schedule = undefined;
    this.#current = undefined;
    this.#alt = 0;
    if (n <= 1) return;
    if (eps.every((e) => e.weight === eps[0]!.weight)) {
      this.#cursor = randomBelow(n);
      return;
    }
    let total = 0;
    for (const e of eps) total += e.weight;
    this.#total = total;
    let period = Number.POSITIVE_INFINITY;
    if (eps.every((e) => Number.isInteger(e.weight) && e.weight > 0)) {
      let g = 0;
      for (const e of eps) g = gcd(e.weight, g);
      period = total / g;
    }
    const current = new Float64Array(n);
    if (period <= MAX_SCHEDULE) {
      const schedule = new Uint32Array(period);
      for (let s = 0; s < period; s++) schedule[s] = smoothStep(eps, current, total);
      this.#schedule = schedule;
      this.#cursor = randomBelow(period);
    } else {
      this.#current = current;
    }
  }

  pick(_hash: number, avoid: Endpoint | undefined): Endpoint | undefined {
    const eps = this.eps;
    const n = eps.length;
    if (n <= 1) return eps[0];
    let e: Endpoint;
    const schedule = this.#schedule;
    if (schedule !== undefined) {
      e = eps[schedule[this.#cursor]!]!;
      this.#cursor = this.#cursor + 1 === schedule.length ? 0 : this.#cursor + 1;
    } else if (this.#current !== undefined) {
      e = eps[smoothStep(eps, this.#current, this.#total)]!;
    } else {
      e = eps[this.#cursor]!;
      this.#cursor = this.#cursor + 1 === n ? 0 : this.#cursor + 1;
    }
    if (e !== avoid) return e;
    let a = this.#alt;
    if (eps[a] === avoid) a = a + 1 === n ? 0 : a + 1;
    this.#alt = a + 1 === n ? 0 : a + 1;
    return eps[a];
  }
}

/** One step of smooth weighted round robin; returns the chosen index. */
function smoothStep(eps: readonly Endpoint[], current: Float64Array, total: number): number {
  let best = 0;
  for (let i = 0; i < eps.length; i++) {
    current[i]! += eps[i]!.weight;
    if (current[i]! > current[best]!) best = i;
  }
  current[best]! -= total;
  return best;
}

/**
 * Weighted random: a uniform draw over the cumulative weights, found by binary search (a plain index draw
 * when the weights are equal). avoid: the draw is redone over the other endpoints' weights only.
 */
class WeightedRandom extends ListBalancer {
  /** cum[i] = weight of endpoints 0..i; undefined when the weights are equal. */
  #cum: Float64Array | undefined = undefined;

  protected override rebuild(): void {
    const eps = this.eps;
    this.#cum = undefined;
    if (eps.length <= 1 || eps.every((e) => e.weight === eps[0]!.weight)) return;
    const cum = new Float64Array(eps.length);
    let s = 0;
    for (let i = 0; i < eps.length; i++) cum[i] = s += weightOf(eps[i]!);
    this.#cum = cum;
  }

  pick(_hash: number, avoid: Endpoint | undefined): Endpoint | undefined {
    const eps = this.eps;
    const n = eps.length;
    if (n <= 1) return eps[0];
    const cum = this.#cum;
    if (cum === undefined) {
      const i = randomBelow(n);
      if (eps[i] !== avoid) return eps[i];
      let j = randomBelow(n - 1);
      if (j >= i) j++;
      return eps[j];
    }
    const total = cum[n - 1]!;
    const i = search(cum, Math.random() * total);
    if (eps[i] !== avoid) return eps[i];
    const start = i === 0 ? 0 : cum[i - 1]!;
    const w = cum[i]! - start;
    if (total - w <= 0) return eps[i === 0 ? 1 : 0];
    let x = Math.random() * (total - w);
    if (x >= start) x += w;
    const j = search(cum, x);
    return eps[j === i ? (i + 1 === n ? 0 : i + 1) : j];
  }
}

/** First index whose cumulative weight is above x (clamped to the last). */
function search(cum: Float64Array, x: number): number {
  let lo = 0;
  let hi = cum.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cum[mid]! > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// ---------- consistent hashing ----------

/** Most ring entries; beyond it every endpoint's virtual nodes are halved (as often as needed). */
const MAX_RING = 1 << 20;
/** Ring entries are sorted packed as point × 2^21 + endpoint index (exact in a double: 32 + 21 bits). */
const OWNER_BITS = 2 ** 21;

/**
 * Ring hash (Karger et al.): every endpoint owns virtual nodes at pseudo-random points of the 32-bit
 * circle, point k of an endpoint being hashString(origin, k); a key belongs to the first point at or after
 * its hash (binary search), wrapping around.
 *
 * Sizing: the heaviest endpoint gets `ringSize` virtual nodes and each other one ringSize × weight / max
 * weight (rounded, at least one), so the ring has at least `ringSize` entries and a share proportional to
 * weight. An endpoint's virtual nodes depend only on its origin, its weight and the heaviest weight, not on
 * how many endpoints there are: removing an endpoint remaps exactly the keys that were on it, and adding
 * one moves only the keys it takes over (unless the heaviest weight changes). Beyond 2^20 entries every
 * count is halved until the ring fits.
 *
 * Endpoints are ordered by origin before building, so that every worker builds the same ring whatever the
 * order of the list.
 *
 * avoid: the walk continues along the ring to the next point owned by another endpoint.
 */
class RingHash implements Balancer {
  readonly #ringSize: number;
  #eps: readonly Endpoint[] = [];
  #points = new Uint32Array(0);
  #owners = new Uint32Array(0);

  constructor(ringSize: number) {
    this.#ringSize = ringSize;
  }

  update(endpoints: readonly Endpoint[]): void {
    const eps = endpoints.slice().sort(byOrigin);
    const n = eps.length;
    this.#eps = eps;
    if (n <= 1) {
      this.#points = new Uint32Array(0);
      this.#owners = new Uint32Array(0);
      return;
    }
    let maxWeight = 0;
    for (const e of eps) maxWeight = Math.max(maxWeight, weightOf(e));
    if (!(maxWeight > 0)) maxWeight = 1;
    const counts = new Uint32Array(n);
    for (let scale = this.#ringSize; ; scale /= 2) {
      let total = 0;
      for (let i = 0; i < n; i++) {
        const w = weightOf(eps[i]!);
        total += counts[i] = Math.max(1, Math.round((scale * w) / maxWeight));
      }
      if (total <= MAX_RING || scale < 1) break;
    }
    let total = 0;
    for (let i = 0; i < n; i++) total += counts[i]!;
    const packed = new Float64Array(total);
    let p = 0;
    for (let i = 0; i < n; i++) {
      const origin = eps[i]!.origin;
      for (let k = 0; k < counts[i]!; k++) packed[p++] = hashString(origin, k) * OWNER_BITS + i;
    }
    packed.sort();
    const points = new Uint32Array(total);
    const owners = new Uint32Array(total);
    for (let q = 0; q < total; q++) {
      const v = packed[q]!;
      const point = Math.floor(v / OWNER_BITS);
      points[q] = point;
      owners[q] = v - point * OWNER_BITS;
    }
    this.#points = points;
    this.#owners = owners;
  }

  pick(hash: number, avoid: Endpoint | undefined): Endpoint | undefined {
    const eps = this.#eps;
    if (eps.length <= 1) return eps[0];
    const points = this.#points;
    const owners = this.#owners;
    const len = points.length;
    const h = hash >>> 0;
    let lo = 0;
    let hi = len;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    if (lo === len) lo = 0;
    const e = eps[owners[lo]!]!;
    if (e !== avoid) return e;
    for (let k = 1, q = lo; k < len; k++) {
      q = q + 1 === len ? 0 : q + 1;
      const other = eps[owners[q]!]!;
      if (other !== avoid) return other;
    }
    return e;
  }
}

const MAGLEV_OFFSET_SEED = 0x2545f491;
const MAGLEV_SKIP_SEED = 0x68e31da4;

/**
 * Maglev (Eisenbud et al., NSDI 2016): a lookup table of M slots (M prime) filled from per-endpoint
 * permutations, offset = h1(origin) mod M and skip = h2(origin) mod (M - 1) + 1, the endpoints taking turns
 * to claim their next preferred free slot until the table is full. A key maps to slot hash mod M: O(1).
 * Removing one of N endpoints remaps about 1/N of the keys (its slots, plus a little churn), and the
 * endpoints get near-equal slot counts.
 *
 * Weights: in each turn an endpoint earns its weight in credit and claims a slot only per max-weight of
 * credit, so slot counts are proportional to weight. Endpoints are ordered by origin before building, so
 * every worker builds the same table. M should be well above the endpoint count (the default 65537 suits a
 * few hundred).
 *
 * avoid: the walk continues to the next slots until one belongs to another endpoint.
 */
class Maglev implements Balancer {
  readonly #size: number;
  #eps: readonly Endpoint[] = [];
  #table = new Uint32Array(0);

  constructor(size: number) {
    this.#size = size;
  }

  update(endpoints: readonly Endpoint[]): void {
    const eps = endpoints.slice().sort(byOrigin);
    const n = eps.length;
    this.#eps = eps;
    if (n <= 1) {
      this.#table = new Uint32Array(0);
      return;
    }
    const m = this.#size;
    const next = new Float64Array(n);
    const skip = new Float64Array(n);
    const weight = new Float64Array(n);
    const credit = new Float64Array(n);
    let maxWeight = 0;
    for (let i = 0; i < n; i++) {
      const origin = eps[i]!.origin;
      next[i] = hashString(origin, MAGLEV_OFFSET_SEED) % m;
      skip[i] = (hashString(origin, MAGLEV_SKIP_SEED) % (m - 1)) + 1;
      weight[i] = weightOf(eps[i]!);
      maxWeight = Math.max(maxWeight, weight[i]!);
    }
    if (maxWeight === 0) {
      weight.fill(1);
      maxWeight = 1;
    }
    const EMPTY = 0xffffffff;
    const table = new Uint32Array(m).fill(EMPTY);
    let filled = 0;
    while (filled < m) {
      for (let i = 0; i < n && filled < m; i++) {
        credit[i]! += weight[i]!;
        if (credit[i]! < maxWeight) continue;
        credit[i]! -= maxWeight;
        let c = next[i]!;
        const s = skip[i]!;
        while (table[c] !== EMPTY) {
          c += s;
          if (c >= m) c -= m;
        }
        table[c] = i;
        c += s;
        next[i] = c >= m ? c - m : c;
        filled++;
      }
    }
    this.#table = table;
  }

  pick(hash: number, avoid: Endpoint | undefined): Endpoint | undefined {
    const eps = this.#eps;
    if (eps.length <= 1) return eps[0];
    const table = this.#table;
    const m = table.length;
    const slot = (hash >>> 0) % m;
    const e = eps[table[slot]!]!;
    if (e !== avoid) return e;
    for (let k = 1, q = slot; k < m; k++) {
      q = q + 1 === m ? 0 : q + 1;
      const other = eps[table[q]!]!;
      if (other !== avoid) return other;
    }
    return e;
  }
}
