import { describe, expect, it } from 'vitest';
import {
  type Balancer,
  type BalancerKind,
  type BalancerOptions,
  createBalancer,
  observeLatency,
} from './balancer.js';
import { Endpoint } from './endpoint.js';
import { hashString } from './hash.js';

const KINDS: readonly BalancerKind[] = [
  'p2c-ewma',
  'least-request',
  'round-robin',
  'random',
  'ring-hash',
  'maglev',
];

let hostSeq = 0;
function ep(weight = 1, host?: string): Endpoint {
  const h = host ?? `10.0.${(hostSeq >> 8) & 255}.${hostSeq++ & 255}`;
  const e = new Endpoint(`http://${h}:80`, `${h}:80`, {} as never);
  e.weight = weight;
  return e;
}

function endpoints(n: number, weight = 1): Endpoint[] {
  return Array.from({ length: n }, () => ep(weight));
}

function balancer(kind: BalancerKind, eps: readonly Endpoint[], o: Partial<BalancerOptions> = {}): Balancer {
  const b = createBalancer({ ...o, kind });
  b.update(eps);
  return b;
}

/** How many of `picks` picks went to each endpoint (hash: a fresh key hash per pick). */
function tally(b: Balancer, eps: readonly Endpoint[], picks: number, avoid?: Endpoint): number[] {
  const counts = eps.map(() => 0);
  for (let i = 0; i < picks; i++) {
    const e = b.pick(hashString(`key-${i}`), avoid);
    counts[eps.indexOf(e!)]!++;
  }
  return counts;
}

const KEYS = Array.from({ length: 10_000 }, (_, i) => hashString(`user-${i}`));

function mapping(b: Balancer): (Endpoint | undefined)[] {
  return KEYS.map((h) => b.pick(h, undefined));
}

function shuffled<T>(a: readonly T[]): T[] {
  const out = a.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Reference MurmurHash3 x86 32-bit over bytes, straight from the algorithm's description. */
function murmur3Bytes(bytes: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const blocks = bytes.length >> 2;
  for (let b = 0; b < blocks; b++) {
    const o = b * 4;
    let k = bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | (bytes[o + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = blocks * 4;
  const rest = bytes.length & 3;
  if (rest > 0) {
    let k = 0;
    for (let r = rest - 1; r >= 0; r--) k = (k << 8) | bytes[tail + r]!;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

describe('hashString', () => {
  it('is MurmurHash3 (x86, 32-bit) of the UTF-16LE code units', () => {
    // The reference implementation against published vectors first.
    const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
    expect(murmur3Bytes(utf8(''))).toBe(0);
    expect(murmur3Bytes(utf8(''), 1)).toBe(0x514e28b7);
    expect(murmur3Bytes(utf8('test'))).toBe(0xba6bd213);
    expect(murmur3Bytes(utf8('Hello, world!'))).toBe(0xc0363e43);
    expect(murmur3Bytes(utf8('The quick brown fox jumps over the lazy dog'))).toBe(0x2e4ff723);
    for (const s of [
      '',
      'a',
      'ab',
      'abc',
      'http://10.0.0.1:80',
      'zürich-1',
      '東京',
      '🙂x',
      'x'.repeat(101),
    ]) {
      for (const seed of [0, 1, 0x9747b28c]) {
        expect(hashString(s, seed)).toBe(murmur3Bytes(new Uint8Array(Buffer.from(s, 'utf16le')), seed));
      }
    }
  });

  it('returns unsigned 32-bit values spread evenly over the range', () => {
    const buckets = new Array<number>(16).fill(0);
    let outOfRange = 0;
    for (let i = 0; i < 64_000; i++) {
      const h = hashString(`10.1.${i >> 8}.${i & 255}:8080`);
      if (!Number.isInteger(h) || h < 0 || h >= 2 ** 32) outOfRange++;
      buckets[h >>> 28]!++;
    }
    expect(outOfRange).toBe(0);
    for (const b of buckets) expect(Math.abs(b - 4000)).toBeLessThan(400);
  });

  it('gives independent hashes for different seeds', () => {
    let same = 0;
    for (let i = 0; i < 10_000; i++)
      if (hashString(`k${i}`, 1) >>> 24 === hashString(`k${i}`, 2) >>> 24) same++;
    expect(same).toBeLessThan(100);
  });
});

describe.each(KINDS)('%s: common behaviour', (kind) => {
  it('returns undefined with no endpoint, and the only one with one', () => {
    const b = createBalancer({ kind });
    expect(b.pick(123, undefined)).toBeUndefined();
    b.update([]);
    expect(b.pick(123, undefined)).toBeUndefined();
    const only = ep();
    b.update([only]);
    for (let i = 0; i < 10; i++) expect(b.pick(hashString(`k${i}`), undefined)).toBe(only);
    // avoid is a preference: with nothing else, the only endpoint is still returned.
    expect(b.pick(1, only)).toBe(only);
  });

  it('picks only among the endpoints of the last update', () => {
    const first = endpoints(4);
    const second = endpoints(3);
    const b = balancer(kind, first);
    b.update(second);
    const counts = tally(b, second, 600);
    expect(counts.reduce((a, c) => a + c, 0)).toBe(600);
    for (const c of counts) expect(c).toBeGreaterThan(0);
  });

  it('never returns the avoided endpoint when there is another', () => {
    for (const n of [2, 3, 5]) {
      const eps = endpoints(n);
      eps[0]!.weight = 5;
      const b = balancer(kind, eps);
      for (let i = 0; i < 2000; i++) {
        const h = hashString(`k${i}`);
        const first = b.pick(h, undefined)!;
        const retry = b.pick(h, first);
        expect(retry).toBeDefined();
        expect(retry).not.toBe(first);
        expect(b.pick(h, eps[i % n])).not.toBe(eps[i % n]);
      }
    }
  });

  it('ignores an avoided endpoint that is not in the set', () => {
    const eps = endpoints(3);
    const b = balancer(kind, eps);
    const stranger = ep();
    for (let i = 0; i < 300; i++) expect(eps).toContain(b.pick(hashString(`k${i}`), stranger));
  });
});

describe('round-robin', () => {
  it('rotates through equal-weight endpoints: every window of n picks holds each once', () => {
    const eps = endpoints(5);
    const b = balancer('round-robin', eps);
    const seq = Array.from({ length: 500 }, () => b.pick(0, undefined)!);
    for (let i = 0; i + 5 <= seq.length; i++) expect(new Set(seq.slice(i, i + 5)).size).toBe(5);
  });

  it('gives exact weighted counts, spread smoothly (nginx smooth weighted round robin)', () => {
    const eps = [ep(5), ep(1), ep(1)];
    const b = balancer('round-robin', eps);
    expect(tally(b, eps, 700)).toEqual([500, 100, 100]);
    // Smooth: a a b a c a a, not a a a a a b c (the heavy one's turns are interleaved).
    const seq = Array.from({ length: 70 }, () => eps.indexOf(b.pick(0, undefined)!));
    expect(seq.join('')).not.toMatch(/00000/);
    expect(seq.join('')).toContain('0102');

    const eps2 = [ep(3), ep(2), ep(6), ep(1)];
    const b2 = balancer('round-robin', eps2);
    expect(tally(b2, eps2, 12 * 50)).toEqual([150, 100, 300, 50]);
  });

  it('gives exact weighted counts with weights too large to precompute', () => {
    const eps = [ep(40_000), ep(30_001), ep(1)];
    const b = balancer('round-robin', eps);
    expect(tally(b, eps, 70_002)).toEqual([40_000, 30_001, 1]);
  });

  it('moves on to another endpoint when the turn is on the avoided one', () => {
    const eps = [ep(8), ep(1), ep(1)];
    const b = balancer('round-robin', eps);
    const counts = tally(b, eps, 1000, eps[0]);
    expect(counts[0]).toBe(0);
    expect(Math.abs(counts[1]! - counts[2]!)).toBeLessThanOrEqual(1);
  });
});

describe('random', () => {
  it('spreads evenly over equal weights', () => {
    const eps = endpoints(4);
    for (const c of tally(balancer('random', eps), eps, 40_000))
      expect(Math.abs(c - 10_000)).toBeLessThan(600);
  });

  it('follows the weights', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4)];
    const counts = tally(balancer('random', eps), eps, 100_000);
    counts.forEach((c, i) => {
      expect(Math.abs(c - (i + 1) * 10_000)).toBeLessThan(1_000);
    });
  });

  it('spreads a retry over the other endpoints by weight', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4)];
    const counts = tally(balancer('random', eps), eps, 60_000, eps[3]);
    expect(counts[3]).toBe(0);
    counts.slice(0, 3).forEach((c, i) => {
      expect(Math.abs(c - (i + 1) * 10_000)).toBeLessThan(1_000);
    });
  });
});

interface SimResult {
  counts: number[];
}

/**
 * A discrete-time load simulation in 1 ms steps: `perMs` requests a millisecond, each taking its
 * endpoint's latency; completions report their latency through observeLatency. The simulated clock runs
 * ahead of performance.now(), so the balancer's read-time decay stays out of the way.
 */
function simulate(
  b: Balancer,
  eps: readonly Endpoint[],
  latency: (e: Endpoint) => number,
  ms: number,
  perMs: number,
  clock: { t: number },
  decayMs: number,
): SimResult {
  const counts = eps.map(() => 0);
  const due = new Map<number, Endpoint[]>();
  for (let step = 0; step < ms; step++) {
    const now = clock.t++;
    for (const e of due.get(now) ?? []) {
      e.active--;
      observeLatency(e, latency(e), now, decayMs);
    }
    due.delete(now);
    for (let r = 0; r < perMs; r++) {
      const e = b.pick(0, undefined)!;
      counts[eps.indexOf(e)]!++;
      e.active++;
      const at = now + latency(e);
      const list = due.get(at);
      if (list === undefined) due.set(at, [e]);
      else list.push(e);
    }
  }
  // Drain what is in flight so that `active` is back to 0.
  for (const [at, list] of [...due].sort((x, y) => x[0] - y[0])) {
    for (const e of list) {
      e.active--;
      observeLatency(e, latency(e), at, decayMs);
    }
  }
  clock.t = Math.max(clock.t, ...due.keys()) + 1;
  return { counts };
}

describe('least-request', () => {
  it('avoids a loaded endpoint', () => {
    const eps = endpoints(4);
    eps[3]!.active = 20;
    eps[0]!.active = 1;
    const counts = tally(balancer('least-request', eps), eps, 4000);
    expect(counts[3]).toBe(0);
    expect(counts[0]).toBeLessThan(counts[1]!);
  });

  it('sends less traffic to an endpoint that holds requests longer', () => {
    const eps = endpoints(4);
    const slow = eps[3]!;
    const b = balancer('least-request', eps);
    const { counts } = simulate(b, eps, (e) => (e === slow ? 50 : 5), 2000, 4, { t: 0 }, 10_000);
    const share = counts[3]! / counts.reduce((a, c) => a + c, 0);
    expect(share).toBeLessThan(0.15);
    for (const e of eps) expect(e.active).toBe(0);
  });

  it('prefers the heavier of two idle endpoints and weighs load by weight', () => {
    const light = ep(1);
    const heavy = ep(3);
    const b = balancer('least-request', [light, heavy]);
    for (let i = 0; i < 100; i++) expect(b.pick(0, undefined)).toBe(heavy);
    heavy.active = 3; // (3 + 1) / 3 > (0 + 1) / 1
    for (let i = 0; i < 100; i++) expect(b.pick(0, undefined)).toBe(light);
  });
});

describe('p2c-ewma', () => {
  it('sends far less traffic to a slow endpoint, and a fair share again once it recovers', () => {
    const decayMs = 200;
    const eps = endpoints(4);
    const slow = eps[3]!;
    const b = balancer('p2c-ewma', eps, { ewmaDecayMs: decayMs });
    const clock = { t: performance.now() + 1e9 };
    let slowLatency = 100;
    const latency = (e: Endpoint) => (e === slow ? slowLatency : 10);
    const before = simulate(b, eps, latency, 3000, 4, clock, decayMs).counts;
    const total = before.reduce((a, c) => a + c, 0);
    expect(before[3]! / total).toBeLessThan(0.08);
    for (const c of before.slice(0, 3)) expect(c / total).toBeGreaterThan(0.28);

    slowLatency = 10;
    simulate(b, eps, latency, 3000, 4, clock, decayMs); // the estimate decays towards 10 ms
    const after = simulate(b, eps, latency, 3000, 4, clock, decayMs).counts;
    const share = after[3]! / after.reduce((a, c) => a + c, 0);
    expect(share).toBeGreaterThan(0.18);
    expect(share).toBeLessThan(0.32);
  });

  it('probes an idle slow endpoint again once its estimate has decayed', () => {
    const fast = ep();
    const slow = ep();
    const b = balancer('p2c-ewma', [fast, slow], { ewmaDecayMs: 1000 });
    const now = performance.now();
    observeLatency(fast, 10, now);
    observeLatency(slow, 500, now);
    for (let i = 0; i < 50; i++) expect(b.pick(0, undefined)).toBe(fast);
    // Last heard of 20 decay periods ago: 500 ms × e^-20 is well below 10 ms.
    slow.ewmaStamp = now - 20_000;
    expect(b.pick(0, undefined)).toBe(slow);
    // Its next sample restores the estimate (peak).
    observeLatency(slow, 500, performance.now(), 1000);
    expect(slow.ewma).toBe(500);
    expect(b.pick(0, undefined)).toBe(fast);
  });

  it('neither floods nor starves an endpoint with no latency sample yet', () => {
    const known = ep();
    const fresh = ep();
    const b = balancer('p2c-ewma', [known, fresh]);
    observeLatency(known, 10, performance.now());
    known.active = 3;
    fresh.active = 0;
    expect(b.pick(0, undefined)).toBe(fresh); // not starved: same latency assumed, less load
    fresh.active = 5;
    expect(b.pick(0, undefined)).toBe(known); // not flooded: its load counts
    // Neither has a sample: load alone decides.
    const a = ep();
    const c = ep();
    const b2 = balancer('p2c-ewma', [a, c]);
    a.active = 2;
    for (let i = 0; i < 20; i++) expect(b2.pick(0, undefined)).toBe(c);
  });

  it('spreads evenly over equal endpoints', () => {
    const eps = endpoints(4);
    const b = balancer('p2c-ewma', eps);
    for (const c of tally(b, eps, 40_000)) expect(Math.abs(c - 10_000)).toBeLessThan(600);
  });
});

describe('observeLatency', () => {
  it('jumps up to a higher sample and decays towards a lower one with time', () => {
    const e = ep();
    observeLatency(e, 100, 1000);
    expect(e.ewma).toBe(100);
    expect(e.ewmaStamp).toBe(1000);
    observeLatency(e, 300, 1001);
    expect(e.ewma).toBe(300);
    // One decay period later a 100 ms sample pulls it 1 - 1/e of the way.
    observeLatency(e, 100, 11_001, 10_000);
    expect(e.ewma).toBeCloseTo(100 + 200 / Math.E, 6);
    // No time elapsed: a lower sample does not move it.
    observeLatency(e, 1, 11_001, 10_000);
    expect(e.ewma).toBeCloseTo(100 + 200 / Math.E, 6);
    // Long after: it is the new sample.
    observeLatency(e, 20, 1_000_000, 10_000);
    expect(e.ewma).toBeCloseTo(20, 6);
  });

  it('ignores nonsense samples', () => {
    const e = ep();
    observeLatency(e, 50, 10);
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) observeLatency(e, bad, 20);
    expect(e.ewma).toBe(50);
    expect(e.ewmaStamp).toBe(10);
  });
});

describe.each(['ring-hash', 'maglev'] as const)('%s: consistent hashing', (kind) => {
  it('maps a key to the same endpoint every time, whatever the order of the list', () => {
    const eps = endpoints(7);
    const a = mapping(balancer(kind, eps));
    expect(mapping(balancer(kind, eps))).toEqual(a);
    expect(mapping(balancer(kind, shuffled(eps)))).toEqual(a);
    const b = balancer(kind, eps);
    for (let i = 0; i < KEYS.length; i += 97) expect(b.pick(KEYS[i]!, undefined)).toBe(a[i]);
  });

  it('spreads keys evenly over equal endpoints', () => {
    const eps = endpoints(8);
    const counts = eps.map(() => 0);
    for (const e of mapping(balancer(kind, eps))) counts[eps.indexOf(e!)]!++;
    for (const c of counts) expect(Math.abs(c - 1250)).toBeLessThan(kind === 'maglev' ? 200 : 320);
  });

  it('remaps only about 1/N of the keys when an endpoint is removed', () => {
    for (let n = 5; n <= 10; n++) {
      const eps = endpoints(n);
      const b = balancer(kind, eps);
      const before = mapping(b);
      const removed = eps[n >> 1]!;
      b.update(eps.filter((e) => e !== removed));
      const after = mapping(b);
      let moved = 0;
      let movedElsewhere = 0;
      for (let i = 0; i < KEYS.length; i++) {
        if (before[i] === after[i]) continue;
        moved++;
        if (before[i] !== removed) movedElsewhere++;
      }
      expect(after).not.toContain(removed);
      expect(moved / KEYS.length).toBeLessThan(1 / n + 0.03);
      expect(moved / KEYS.length).toBeGreaterThan(1 / n - 0.05);
      if (kind === 'ring-hash') expect(movedElsewhere).toBe(0);
      else expect(movedElsewhere / KEYS.length).toBeLessThan(0.02);
    }
  });

  it('moves about 1/(N+1) of the keys, all to the new endpoint, when one is added', () => {
    for (let n = 5; n <= 10; n++) {
      const eps = endpoints(n);
      const b = balancer(kind, eps);
      const before = mapping(b);
      const added = ep();
      b.update([...eps, added]);
      const after = mapping(b);
      let moved = 0;
      let toOthers = 0;
      for (let i = 0; i < KEYS.length; i++) {
        if (before[i] === after[i]) continue;
        moved++;
        if (after[i] !== added) toOthers++;
      }
      expect(moved / KEYS.length).toBeLessThan(1 / (n + 1) + 0.03);
      expect(moved / KEYS.length).toBeGreaterThan(1 / (n + 1) - 0.05);
      if (kind === 'ring-hash') expect(toOthers).toBe(0);
      else expect(toOthers / KEYS.length).toBeLessThan(0.02);
    }
  });

  it('gives each endpoint a share of keys proportional to its weight', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4)];
    const counts = eps.map(() => 0);
    for (const e of mapping(balancer(kind, eps))) counts[eps.indexOf(e!)]!++;
    counts.forEach((c, i) => {
      expect(Math.abs(c / KEYS.length - (i + 1) / 10)).toBeLessThan(kind === 'maglev' ? 0.025 : 0.05);
    });
    expect(counts.slice().sort((x, y) => x - y)).toEqual(counts);
  });

  it('sends a retry to one fixed other endpoint (the next on the ring or in the table)', () => {
    const eps = endpoints(6);
    const b = balancer(kind, eps);
    for (let i = 0; i < 500; i++) {
      const h = KEYS[i]!;
      const first = b.pick(h, undefined)!;
      const retry = b.pick(h, first);
      expect(retry).not.toBe(first);
      expect(b.pick(h, first)).toBe(retry);
    }
  });
});

describe('options', () => {
  it('ring-hash honours ringSize and maglev any table size (raised to a prime)', () => {
    const eps = endpoints(3);
    for (const o of [{ ringSize: 1 }, { ringSize: 50_000 }] as const) {
      const counts = eps.map(() => 0);
      for (const e of mapping(balancer('ring-hash', eps, o))) counts[eps.indexOf(e!)]!++;
      for (const c of counts) expect(c).toBeGreaterThan(0);
    }
    for (const maglevTableSize of [7, 100, 251]) {
      const counts = eps.map(() => 0);
      for (const e of mapping(balancer('maglev', eps, { maglevTableSize }))) counts[eps.indexOf(e!)]!++;
      for (const c of counts) expect(c).toBeGreaterThan(0);
    }
  });

  it('rejects an unknown kind', () => {
    expect(() => createBalancer({ kind: 'nope' as BalancerKind })).toThrow(RangeError);
  });
});
