import { describe, expect, it } from 'vitest';
import { type Balancer, createBalancer } from './balancer.js';
import { Endpoint } from './endpoint.js';
import { EndpointSet, type EndpointSetOptions } from './endpoint-set.js';

let hostSeq = 0;
function ep(o: { zone?: string; priority?: number } = {}): Endpoint {
  const h = `10.1.${(hostSeq >> 8) & 255}.${hostSeq++ & 255}`;
  const e = new Endpoint(`http://${h}:80`, `${h}:80`, {} as never);
  e.zone = o.zone ?? '';
  e.priority = o.priority ?? 0;
  return e;
}

function many(n: number, o: { zone?: string; priority?: number } = {}): Endpoint[] {
  return Array.from({ length: n }, () => ep(o));
}

/** A balancer that records its updates and picks the first endpoint (or the second when avoiding it). */
class Recorder implements Balancer {
  updates: Endpoint[][] = [];
  #eps: readonly Endpoint[] = [];
  pick(_hash: number, avoid: Endpoint | undefined): Endpoint | undefined {
    return this.#eps[0] === avoid && this.#eps.length > 1 ? this.#eps[1] : this.#eps[0];
  }
  update(endpoints: readonly Endpoint[]): void {
    this.#eps = endpoints;
    this.updates.push([...endpoints]);
  }
}

const OPTS: EndpointSetOptions = { localZone: '', panicThreshold: 50, overprovisioning: 1.4 };

function clock(t = 1_000_000) {
  const c = { t, now: () => c.t };
  return c;
}

function set(eps: readonly Endpoint[], o: Partial<EndpointSetOptions> = {}, now = clock().now) {
  const rec = new Recorder();
  const s = new EndpointSet(eps, rec, { ...OPTS, ...o }, now);
  return { s, rec };
}

describe('EndpointSet', () => {
  it('starts with every endpoint eligible and tells the balancer once', () => {
    const eps = many(4);
    const { s, rec } = set(eps);
    expect(s.all).toEqual(eps);
    expect(s.eligible).toEqual(eps);
    expect(s.panic).toBe(false);
    expect(rec.updates).toEqual([eps]);
    s.close();
  });

  it('takes an unhealthy endpoint out through its onChange hook, and back when healthy', () => {
    const eps = many(4);
    const b = createBalancer({ kind: 'round-robin' });
    const s = new EndpointSet(eps, b, OPTS);
    eps[1]!.setHealthy(false);
    expect(s.eligible).toEqual([eps[0], eps[2], eps[3]]);
    for (let i = 0; i < 300; i++) expect(s.pick(0, undefined)).not.toBe(eps[1]);
    eps[1]!.setHealthy(true);
    expect(s.eligible).toEqual(eps);
    const seen = new Set(Array.from({ length: 8 }, () => s.pick(0, undefined)));
    expect(seen.size).toBe(4);
    s.close();
  });

  it('takes an ejected endpoint out until its ejection ends', () => {
    const c = clock();
    const eps = many(5);
    const { s } = set(eps, {}, c.now);
    eps[2]!.setEjectedUntil(c.t + 30_000);
    expect(s.eligible).not.toContain(eps[2]);
    c.t += 29_999;
    s.recompute();
    expect(s.eligible).not.toContain(eps[2]);
    c.t += 1;
    s.recompute();
    expect(s.eligible).toContain(eps[2]);
    s.close();
  });

  it('brings an ejected endpoint back by itself when the ejection ends (timer)', async () => {
    const eps = many(3);
    const s = new EndpointSet(eps, new Recorder(), OPTS);
    eps[0]!.setEjectedUntil(performance.now() + 30);
    expect(s.eligible).toEqual([eps[1], eps[2]]);
    for (let i = 0; i < 100 && s.eligible.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.eligible).toEqual(eps);
    s.close();
  });

  it('fails over to the next priority when too few of priority 0 are available', () => {
    const p0 = many(4, { priority: 0 });
    const p1 = many(4, { priority: 1 });
    const p2 = many(2, { priority: 2 });
    const { s } = set([...p2, ...p1, ...p0]);
    expect(s.eligible).toEqual(p0);
    p0[0]!.setHealthy(false); // 3 × 1.4 >= 4: priority 0 still carries everything
    expect(s.eligible).toEqual(p0.slice(1));
    p0[1]!.setHealthy(false); // 2 × 1.4 < 4: spill into priority 1
    expect(s.eligible).toEqual([...p0.slice(2), ...p1]);
    expect(s.panic).toBe(false);
    p0[0]!.setHealthy(true);
    expect(s.eligible).toEqual([p0[0], ...p0.slice(2)]);
    s.close();
  });

  it('spills into more than one further group when needed', () => {
    const p0 = many(10, { priority: 0 });
    const p1 = many(3, { priority: 1 });
    const p2 = many(4, { priority: 2 });
    const { s } = set([...p0, ...p1, ...p2], { panicThreshold: 0 });
    for (const e of p0.slice(0, 6)) e.setHealthy(false); // 4 left: 5.6 < 10; + 3: 9.8 < 10; + 4: enough
    expect(s.eligible).toEqual([...p0.slice(6), ...p1, ...p2]);
    s.close();
  });

  it('prefers the local zone inside a priority, and spills to other zones when it runs short', () => {
    const a = many(3, { zone: 'a' });
    const b = many(3, { zone: 'b' });
    const backup = many(3, { zone: 'a', priority: 1 });
    const { s } = set([...b, ...backup, ...a], { localZone: 'a' });
    expect(s.eligible).toEqual(a);
    a[0]!.setHealthy(false); // 2 × 1.4 < 3
    expect(s.eligible).toEqual([a[1], a[2], ...b]);
    s.close();

    // No local zone: one group per priority, zones ignored.
    const { s: s2 } = set([...b, ...backup, ...a], { localZone: '' });
    expect(s2.eligible).toEqual([...b, a[1], a[2]]);
    s2.close();

    // A local zone with no endpoint: the other zones of priority 0 serve.
    const { s: s3 } = set([...b, ...backup], { localZone: 'c' });
    expect(s3.eligible).toEqual(b);
    s3.close();
  });

  it('panics below the threshold: health is ignored over the groups reached', () => {
    const eps = many(10);
    const { s } = set(eps);
    for (const e of eps.slice(0, 6)) e.setHealthy(false);
    // 4 of 10 up: normalized health 40% × 1.4 = 56%, not below 50%: only the available ones.
    expect(s.panic).toBe(false);
    expect(s.eligible).toEqual(eps.slice(6));
    eps[6]!.setHealthy(false);
    // 3 of 10: 42% < 50%: panic, everything is eligible.
    expect(s.panic).toBe(true);
    expect(s.eligible).toEqual(eps);
    eps[6]!.setHealthy(true);
    expect(s.panic).toBe(false);
    expect(s.eligible).toEqual(eps.slice(6));
    s.close();
  });

  it('a healthy backup priority keeps the service out of panic (normalized health, as Envoy)', () => {
    const p0 = many(4, { priority: 0 });
    const p1 = many(1, { priority: 1 });
    const { s } = set([...p0, ...p1]);
    for (const e of p0.slice(0, 3)) e.setHealthy(false);
    // p0: 25% × 1.4 = 35; p1: 100 → 135, capped at 100: no panic; 1 + 1 available spill into p1.
    expect(s.panic).toBe(false);
    expect(s.eligible).toEqual([p0[3], p1[0]]);
    s.close();
  });

  it('in panic, includes the failover groups the walk reached, not the ones beyond', () => {
    const p0 = many(6, { priority: 0 });
    const p1 = many(10, { priority: 1 });
    const p2 = many(4, { priority: 2 });
    const { s } = set([...p0, ...p1, ...p2], { panicThreshold: 80 });
    for (const e of [...p0, ...p1.slice(0, 5), ...p2]) e.setHealthy(false);
    // Health 0 + 50% × 1.4 + 0 = 70 < 80: panic. The walk stops at p1 (5 × 1.4 >= 6): p2 is not reached.
    expect(s.panic).toBe(true);
    expect(s.eligible).toEqual([...p0, ...p1]);
    p1[0]!.setHealthy(true);
    p1[1]!.setHealthy(true); // 70% × 1.4 = 98 >= 80: no panic; the 7 available of p1
    expect(s.panic).toBe(false);
    expect(s.eligible).toEqual([p1[0], p1[1], ...p1.slice(5)]);
    s.close();
  });

  it('is never empty while there are endpoints, whatever the threshold', () => {
    for (const panicThreshold of [0, 50, 100]) {
      const p0 = many(3, { priority: 0 });
      const p1 = many(2, { priority: 1 });
      const { s } = set([...p0, ...p1], { panicThreshold });
      for (const e of [...p0, ...p1]) e.setHealthy(false);
      expect(s.eligible).toEqual([...p0, ...p1]);
      expect(s.panic).toBe(true);
      expect(s.pick(0, undefined)).toBeDefined();
      s.close();
    }
    const { s, rec } = set([]);
    expect(s.eligible).toEqual([]);
    expect(s.panic).toBe(false);
    expect(s.pick(0, undefined)).toBeUndefined();
    expect(rec.updates).toEqual([[]]);
    s.close();
  });

  it('a threshold of 100 panics once available × overprovisioning is less than the group', () => {
    const eps = many(4);
    const { s } = set(eps, { panicThreshold: 100 });
    eps[0]!.setHealthy(false); // 75% × 1.4 ≥ 100: not yet
    expect(s.panic).toBe(false);
    eps[1]!.setHealthy(false); // 50% × 1.4 = 70
    expect(s.panic).toBe(true);
    expect(s.eligible).toEqual(eps);
    s.close();
  });

  it('updates the balancer only when the eligible list changes', () => {
    const p0 = many(4, { priority: 0 });
    const p1 = many(2, { priority: 1 });
    const { s, rec } = set([...p0, ...p1]);
    expect(rec.updates.length).toBe(1);
    s.recompute();
    s.recompute();
    expect(rec.updates.length).toBe(1);
    p1[0]!.setHealthy(false); // not eligible anyway
    p1[0]!.setHealthy(true);
    expect(rec.updates.length).toBe(1);
    p0[0]!.setHealthy(false);
    expect(rec.updates.length).toBe(2);
    expect(rec.updates[1]).toEqual(p0.slice(1));
    p0[0]!.setHealthy(true);
    expect(rec.updates.length).toBe(3);
    expect(rec.updates[2]).toEqual(p0);
    s.close();
  });

  it('sends a retry elsewhere through the balancer', () => {
    const eps = many(3);
    const { s } = set(eps);
    expect(s.pick(0, undefined)).toBe(eps[0]);
    expect(s.pick(0, eps[0])).toBe(eps[1]);
    s.close();
  });

  it('close unregisters its hooks but leaves a newer set’s hooks in place', () => {
    const eps = many(3);
    const { s: old } = set(eps);
    const { s: next } = set(eps);
    old.close();
    eps[0]!.setHealthy(false);
    expect(next.eligible).toEqual(eps.slice(1));
    expect(old.eligible).toEqual(eps); // closed: no longer recomputed
    next.close();
    eps[1]!.setHealthy(false);
    expect(next.eligible).toEqual(eps.slice(1));
  });
});
