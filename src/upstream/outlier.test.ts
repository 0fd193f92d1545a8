import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import type { Pool } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { Outcome } from '../core/outcome.js';
import { Endpoint } from './endpoint.js';
import type { OutlierEvent } from './events.js';
import { defaultOutlierOptions, OutlierDetector, type OutlierOptions } from './outlier.js';

class FakeClock {
  t = 1_000;
  readonly now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

function endpoints(n: number): Endpoint[] {
  return Array.from({ length: n }, (_, i) => {
    const authority = `10.0.0.${i + 1}:8080`;
    return new Endpoint(`http://${authority}`, authority, {} as Pool);
  });
}

function opts(over: Partial<OutlierOptions> = {}): OutlierOptions {
  return { ...defaultOutlierOptions, successRate: undefined, ...over };
}

const detectors: OutlierDetector[] = [];
function detector(eps: Endpoint[], o: OutlierOptions, clock?: FakeClock): OutlierDetector {
  const d = new OutlierDetector('svc', eps, o, clock?.now);
  detectors.push(d);
  return d;
}

afterEach(() => {
  for (const d of detectors.splice(0)) d.close();
});

function repeat(d: OutlierDetector, ep: Endpoint, outcome: Outcome, n: number): void {
  for (let i = 0; i < n; i++) d.record(ep, outcome);
}

describe('OutlierDetector: consecutive failures', () => {
  it('ejects after 5 consecutive refused connections, synchronously, for baseEjectionTime', () => {
    const clock = new FakeClock();
    const [ep] = endpoints(1) as [Endpoint];
    let changes = 0;
    ep.watch(() => changes++);
    const d = detector([ep], opts(), clock);
    repeat(d, ep, 'connect_refused', 4);
    expect(ep.ejectedUntil).toBe(0);
    d.record(ep, 'connect_refused');
    expect(ep.ejectedUntil).toBe(clock.t + 30_000);
    expect(ep.available(clock.t)).toBe(false);
    expect(changes).toBe(1);
    expect(d.state(ep)).toEqual({
      ejections: 1,
      ejectedUntil: clock.t + 30_000,
      reason: 'consecutive_gateway_failure',
    });
  });

  it('makes the n-th ejection last base * n, capped by maxEjectionTime', () => {
    const clock = new FakeClock();
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts({ maxEjectionTime: 70_000 }), clock);
    const durations: number[] = [];
    for (let i = 0; i < 4; i++) {
      repeat(d, ep, 'reset', 5);
      durations.push(ep.ejectedUntil - clock.t);
      clock.advance(ep.ejectedUntil - clock.t);
      d.sweep();
      expect(ep.ejectedUntil).toBe(0);
    }
    expect(durations).toEqual([30_000, 60_000, 70_000, 70_000]);
  });

  it('decays the multiplier by one per whole interval the endpoint stays back', () => {
    const clock = new FakeClock();
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts(), clock);
    repeat(d, ep, 'timeout', 5);
    clock.advance(30_000);
    d.sweep();
    repeat(d, ep, 'timeout', 5);
    expect(d.state(ep)?.ejections).toBe(2);
    clock.advance(60_000);
    d.sweep(); // back now
    expect(d.state(ep)?.ejections).toBe(2);
    clock.advance(9_999);
    d.sweep();
    expect(d.state(ep)?.ejections).toBe(2);
    clock.advance(1);
    d.sweep();
    expect(d.state(ep)?.ejections).toBe(1);
    clock.advance(10_000);
    d.sweep();
    expect(d.state(ep)?.ejections).toBe(0);
    repeat(d, ep, 'timeout', 5);
    expect(ep.ejectedUntil - clock.t).toBe(30_000);
  });

  it('resets the counters on a success', () => {
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts(), new FakeClock());
    repeat(d, ep, 'connect_refused', 4);
    d.record(ep, 'success');
    repeat(d, ep, 'connect_refused', 4);
    expect(ep.ejectedUntil).toBe(0);
    d.record(ep, 'connect_refused');
    expect(ep.ejectedUntil).toBeGreaterThan(0);
  });

  it('resets the counters on a 4xx (classified success)', () => {
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts(), new FakeClock());
    repeat(d, ep, 'http_5xx', 4);
    d.record(ep, 'success'); // e.g. a 404: status < 500 is a success
    repeat(d, ep, 'http_5xx', 4);
    expect(ep.ejectedUntil).toBe(0);
  });

  it('ignores client_abort and local_reply (they neither count nor reset)', () => {
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts(), new FakeClock());
    repeat(d, ep, 'connect_failed', 4);
    repeat(d, ep, 'client_abort', 10);
    d.record(ep, 'local_reply');
    expect(ep.ejectedUntil).toBe(0);
    d.record(ep, 'connect_failed');
    expect(ep.ejectedUntil).toBeGreaterThan(0);
  });

  it('counts 5xx and gateway failures together for consecutive5xx; a 5xx resets the gateway counter', () => {
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts({ consecutiveGatewayFailure: 3 }), new FakeClock());
    repeat(d, ep, 'connect_refused', 2);
    d.record(ep, 'http_5xx');
    repeat(d, ep, 'protocol_error', 1);
    expect(ep.ejectedUntil).toBe(0);
    d.record(ep, 'http_5xx');
    expect(d.state(ep)?.reason).toBe('consecutive_5xx');
  });

  it('ejects on consecutive gateway failures alone', () => {
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts({ consecutive5xx: 0, consecutiveGatewayFailure: 2 }), new FakeClock());
    repeat(d, ep, 'http_5xx', 50);
    expect(ep.ejectedUntil).toBe(0);
    repeat(d, ep, 'connect_timeout', 2);
    expect(d.state(ep)?.reason).toBe('consecutive_gateway_failure');
  });

  it('is disabled by 0 thresholds', () => {
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts({ consecutive5xx: 0, consecutiveGatewayFailure: 0 }), new FakeClock());
    repeat(d, ep, 'connect_refused', 100);
    repeat(d, ep, 'http_5xx', 100);
    expect(ep.ejectedUntil).toBe(0);
  });

  it('ignores outcomes of an ejected endpoint and of unknown endpoints', () => {
    const clock = new FakeClock();
    const [ep, other] = endpoints(2) as [Endpoint, Endpoint];
    const d = detector([ep], opts(), clock);
    repeat(d, ep, 'reset', 5);
    const until = ep.ejectedUntil;
    repeat(d, ep, 'reset', 20); // stragglers
    expect(ep.ejectedUntil).toBe(until);
    expect(d.state(ep)?.ejections).toBe(1);
    repeat(d, other, 'reset', 20);
    expect(other.ejectedUntil).toBe(0);
    expect(d.state(other)).toBeUndefined();
  });
});

describe('OutlierDetector: maxEjectionPercent', () => {
  it('with 3 endpoints at 10% still ejects one, but not two', () => {
    const clock = new FakeClock();
    const [a, b, c] = endpoints(3) as [Endpoint, Endpoint, Endpoint];
    const d = detector([a, b, c], opts(), clock);
    repeat(d, a, 'connect_refused', 5);
    repeat(d, b, 'connect_refused', 5);
    expect(a.ejectedUntil).toBeGreaterThan(0);
    expect(b.ejectedUntil).toBe(0);
    // Once a is back, b's next failure ejects it (its counter stayed at the threshold).
    clock.advance(30_000);
    d.sweep();
    expect(a.ejectedUntil).toBe(0);
    d.record(b, 'connect_refused');
    expect(b.ejectedUntil).toBeGreaterThan(0);
    expect(c.ejectedUntil).toBe(0);
  });

  it('allows ejections up to the percentage', () => {
    const eps = endpoints(10);
    const d = detector(eps, opts({ maxEjectionPercent: 30 }), new FakeClock());
    for (const ep of eps) repeat(d, ep, 'connect_refused', 5);
    expect(eps.filter((ep) => ep.ejectedUntil > 0)).toHaveLength(3);
  });

  it('ejects one even at 0%', () => {
    const eps = endpoints(4);
    const d = detector(eps, opts({ maxEjectionPercent: 0 }), new FakeClock());
    for (const ep of eps) repeat(d, ep, 'connect_refused', 5);
    expect(eps.filter((ep) => ep.ejectedUntil > 0)).toHaveLength(1);
  });
});

describe('OutlierDetector: success rate', () => {
  const successRate = { minimumHosts: 5, requestVolume: 100, stdevFactor: 1.9 };

  it('ejects the outlier among 6 endpoints with enough volume', () => {
    const events: OutlierEvent[] = [];
    const clock = new FakeClock();
    const eps = endpoints(6);
    const d = detector(eps, opts({ successRate, consecutive5xx: 0 }), clock);
    const last = eps[5]!;
    for (const ep of eps.slice(0, 5)) repeat(d, ep, 'success', 100);
    repeat(d, last, 'success', 60);
    repeat(d, last, 'http_5xx', 60); // 50%
    const onMessage = (m: unknown) => events.push(m as OutlierEvent);
    subscribe('trellis:outlier', onMessage);
    try {
      d.sweep();
    } finally {
      unsubscribe('trellis:outlier', onMessage);
    }
    expect(last.ejectedUntil).toBe(clock.t + 30_000);
    expect(d.state(last)?.reason).toBe('success_rate');
    expect(eps.slice(0, 5).every((ep) => ep.ejectedUntil === 0)).toBe(true);
    expect(events).toEqual([
      { service: 'svc', endpoint: last.origin, event: 'eject', reason: 'success_rate', ejectionMs: 30_000 },
    ]);
  });

  it('counts gateway failures as failures', () => {
    const eps = endpoints(6);
    const d = detector(
      eps,
      opts({ successRate, consecutive5xx: 0, consecutiveGatewayFailure: 0 }),
      new FakeClock(),
    );
    for (const ep of eps.slice(0, 5)) repeat(d, ep, 'success', 100);
    for (let k = 0; k < 100; k++) d.record(eps[5]!, k % 2 ? 'success' : 'timeout');
    d.sweep();
    expect(eps[5]!.ejectedUntil).toBeGreaterThan(0);
  });

  it('does nothing without enough volume, and starts afresh each interval', () => {
    const eps = endpoints(6);
    const d = detector(eps, opts({ successRate, consecutive5xx: 0 }), new FakeClock());
    const last = eps[5]!;
    // 99 attempts: under requestVolume.
    for (const ep of eps.slice(0, 5)) repeat(d, ep, 'success', 100);
    repeat(d, last, 'http_5xx', 99);
    d.sweep();
    expect(last.ejectedUntil).toBe(0);
    // The next interval: its 99 earlier failures were forgotten, 1 more is still under requestVolume.
    for (const ep of eps.slice(0, 5)) repeat(d, ep, 'success', 100);
    repeat(d, last, 'http_5xx', 1);
    d.sweep();
    expect(last.ejectedUntil).toBe(0);
  });

  it('needs minimumHosts endpoints with volume', () => {
    const eps = endpoints(6);
    const sr = { ...successRate, minimumHosts: 6 };
    const d = detector(eps, opts({ successRate: sr, consecutive5xx: 0 }), new FakeClock());
    const last = eps[5]!;
    // 5 hosts with volume (4 at 100%, 1 at 0%): under minimumHosts, although it would be an outlier.
    for (const ep of eps.slice(0, 4)) repeat(d, ep, 'success', 100);
    repeat(d, eps[4]!, 'success', 99);
    repeat(d, last, 'http_5xx', 100);
    d.sweep();
    expect(last.ejectedUntil).toBe(0);
    for (const ep of eps.slice(0, 5)) repeat(d, ep, 'success', 100);
    repeat(d, last, 'http_5xx', 100);
    d.sweep();
    expect(last.ejectedUntil).toBeGreaterThan(0);
  });

  it('does not eject when every endpoint does equally badly', () => {
    const eps = endpoints(6);
    const d = detector(eps, opts({ successRate, consecutive5xx: 0 }), new FakeClock());
    for (const ep of eps) for (let k = 0; k < 100; k++) d.record(ep, k % 2 ? 'success' : 'http_5xx');
    d.sweep();
    expect(eps.every((ep) => ep.ejectedUntil === 0)).toBe(true);
  });
});

describe('OutlierDetector: returning endpoints', () => {
  it('returns an ejected endpoint on time, without traffic or sweeps (real clock)', async () => {
    const [ep] = endpoints(1) as [Endpoint];
    const d = new OutlierDetector('svc', [ep], opts({ baseEjectionTime: 30, interval: 60_000 }));
    detectors.push(d);
    const back = new Promise<number>((resolve) => {
      ep.watch(() => {
        if (ep.ejectedUntil === 0) resolve(performance.now());
      });
    });
    const start = performance.now();
    repeat(d, ep, 'connect_refused', 5);
    expect(ep.ejectedUntil).toBeGreaterThan(start);
    const until = ep.ejectedUntil;
    const at = await back;
    expect(at).toBeGreaterThanOrEqual(until - 1);
    expect(at - start).toBeLessThan(1_000);
    expect(d.state(ep)).toEqual({ ejections: 1, ejectedUntil: 0, reason: undefined });
  });

  it('returns expired ejections in sweep() with a fake clock', () => {
    const clock = new FakeClock();
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts(), clock);
    repeat(d, ep, 'connect_refused', 5);
    clock.advance(29_999);
    d.sweep();
    expect(ep.ejectedUntil).toBeGreaterThan(0);
    clock.advance(1);
    d.sweep();
    expect(ep.ejectedUntil).toBe(0);
  });

  it('publishes eject and uneject on trellis:outlier', () => {
    const clock = new FakeClock();
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts(), clock);
    const events: OutlierEvent[] = [];
    const onMessage = (m: unknown) => events.push(m as OutlierEvent);
    subscribe('trellis:outlier', onMessage);
    try {
      repeat(d, ep, 'connect_refused', 5);
      clock.advance(30_000);
      d.sweep();
    } finally {
      unsubscribe('trellis:outlier', onMessage);
    }
    expect(events).toEqual([
      {
        service: 'svc',
        endpoint: 'http://10.0.0.1:8080',
        event: 'eject',
        reason: 'consecutive_gateway_failure',
        ejectionMs: 30_000,
      },
      { service: 'svc', endpoint: 'http://10.0.0.1:8080', event: 'uneject' },
    ]);
  });

  it('adopts an ejection that survived a reload, and clears an expired one', () => {
    const clock = new FakeClock();
    const [a, b] = endpoints(2) as [Endpoint, Endpoint];
    a.ejectedUntil = clock.t + 5_000;
    b.ejectedUntil = clock.t - 1;
    const d = detector([a, b], opts({ maxEjectionPercent: 50 }), clock);
    expect(b.ejectedUntil).toBe(0);
    expect(d.state(a)).toEqual({ ejections: 1, ejectedUntil: clock.t + 5_000, reason: undefined });
    repeat(d, b, 'connect_refused', 5); // 2 of 2 would be 100% > 50%
    expect(b.ejectedUntil).toBe(0);
    clock.advance(5_000);
    d.sweep();
    expect(a.ejectedUntil).toBe(0);
  });

  it('ignores records after close()', () => {
    const [ep] = endpoints(1) as [Endpoint];
    const d = detector([ep], opts(), new FakeClock());
    d.close();
    repeat(d, ep, 'connect_refused', 10);
    expect(ep.ejectedUntil).toBe(0);
  });

  it('rejects invalid options', () => {
    const [ep] = endpoints(1) as [Endpoint];
    expect(() => new OutlierDetector('svc', [ep], opts({ interval: 0 }))).toThrow(RangeError);
    expect(() => new OutlierDetector('svc', [ep], opts({ baseEjectionTime: -1 }))).toThrow(RangeError);
  });
});
