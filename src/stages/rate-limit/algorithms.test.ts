import { describe, expect, it } from 'vitest';
import { Cell, compileLimit, remaining, take, untilFull, waitFor } from './algorithms.js';
import { LocalStore } from './local-store.js';

/** Offers `n` requests at `now` to one cell; returns how many passed. */
function burst(l: ReturnType<typeof compileLimit>, c: Cell, now: number, n: number): number {
  let passed = 0;
  for (let i = 0; i < n; i++) {
    if (waitFor(l, c, now) === 0) {
      take(l, c, now);
      passed++;
    }
  }
  return passed;
}

describe('GCRA', () => {
  it('lets exactly `burst` requests through at once, then one per interval', () => {
    const l = compileLimit('x', 'gcra', 10, 1000, 10);
    const c = new Cell();
    expect(burst(l, c, 5000, 50)).toBe(10);
    // The next one is 100 ms away.
    expect(waitFor(l, c, 5000)).toBeCloseTo(100, 6);
    expect(burst(l, c, 5099, 5)).toBe(0);
    expect(burst(l, c, 5100, 5)).toBe(1);
    expect(burst(l, c, 6100, 50)).toBe(10);
  });

  it('is exact with intervals that are not whole numbers (3 per second)', () => {
    const l = compileLimit('x', 'gcra', 3, 1000, 3);
    const c = new Cell();
    expect(burst(l, c, 0, 10)).toBe(3);
    let passed = 0;
    // Over 100 s at 1 ms steps, 300 more pass: never one more through rounding drift.
    for (let t = 1; t <= 100_000; t++) passed += burst(l, c, t, 1);
    expect(passed).toBe(300);
  });

  it('a burst smaller than the rate spreads requests', () => {
    const l = compileLimit('x', 'gcra', 100, 1000, 1);
    const c = new Cell();
    expect(burst(l, c, 0, 5)).toBe(1);
    expect(burst(l, c, 10, 5)).toBe(1);
    expect(burst(l, c, 15, 5)).toBe(0);
  });

  it('remaining and reset follow the bucket', () => {
    const l = compileLimit('x', 'gcra', 10, 1000, 10);
    const c = new Cell();
    expect(remaining(l, undefined, 0)).toBe(10);
    burst(l, c, 0, 4);
    expect(remaining(l, c, 0)).toBe(6);
    expect(untilFull(c, 0)).toBeCloseTo(400, 6);
    expect(remaining(l, c, 250)).toBe(8);
    expect(remaining(l, c, 10_000)).toBe(10);
  });
});

describe('token bucket', () => {
  it('refills `requests` at once every `per`, up to `burst`', () => {
    const l = compileLimit('x', 'token-bucket', 5, 1000, 10);
    const c = new Cell();
    expect(burst(l, c, 0, 20)).toBe(10);
    // No partial refill: the tokens come at 1000 ms.
    expect(burst(l, c, 999, 5)).toBe(0);
    expect(waitFor(l, c, 999)).toBe(1);
    expect(burst(l, c, 1000, 20)).toBe(5);
    // Two periods later, two refills, capped by the bucket.
    expect(burst(l, c, 3000, 20)).toBe(10);
  });

  it('full after the refills it needs: then forgettable', () => {
    const l = compileLimit('x', 'token-bucket', 5, 1000, 10);
    const c = new Cell();
    burst(l, c, 0, 7);
    expect(remaining(l, c, 0)).toBe(3);
    expect(untilFull(c, 0)).toBe(2000);
  });
});

describe('LocalStore', () => {
  it('stays at its cap under random keys, forgetting full buckets first', () => {
    const l = compileLimit('x', 'gcra', 1, 1000, 1);
    const s = new LocalStore(1000);
    // 500 keys whose buckets are full again by t=2000.
    for (let i = 0; i < 500; i++) take(l, s.cell(`old${i}`, 0), 0);
    // A live key that must survive the flood: its bucket is empty until t=5000 + 1000.
    const live = s.cell('live', 5000);
    take(l, live, 5000);
    for (let i = 0; i < 100_000; i++) {
      const k = `r${Math.random()}`;
      take(l, s.cell(k, 5000 + i / 1000), 5000 + i / 1000);
      expect(s.size).toBeLessThanOrEqual(1000);
      if (i === 498) expect(s.get('live')).toBe(live);
    }
    expect(s.size).toBeLessThanOrEqual(1000);
    // The flood of live keys pushed the oldest out.
    expect(s.evicted).toBeGreaterThan(90_000);
  });

  it('keeps a live key while expired ones make the room', () => {
    const l = compileLimit('x', 'gcra', 1, 1000, 1);
    const s = new LocalStore(10);
    const live = s.cell('live', 0);
    take(l, live, 0);
    live.fresh = 1e12;
    for (let i = 0; i < 9; i++) take(l, s.cell(`k${i}`, 0), 0);
    // All 9 are full again at t=2000: the new key takes their room, the live one stays.
    s.cell('new', 2000);
    expect(s.get('live')).toBe(live);
    expect(s.evicted).toBe(0);
    expect(s.size).toBe(2);
  });
});
