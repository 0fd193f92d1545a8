import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import type { Outcome } from '../core/outcome.js';
import {
  Admission,
  CircuitBreaker,
  type CircuitOptions,
  defaultAdmissionLimits,
  defaultCircuitOptions,
} from './circuit.js';
import type { CircuitEvent } from './events.js';

class FakeClock {
  t = 50_000;
  readonly now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

function breaker(over: Partial<CircuitOptions> = {}): { cb: CircuitBreaker; clock: FakeClock } {
  const clock = new FakeClock();
  return { cb: new CircuitBreaker('svc', { ...defaultCircuitOptions, ...over }, clock.now), clock };
}

function repeat(cb: CircuitBreaker, outcome: Outcome, n: number): void {
  for (let i = 0; i < n; i++) {
    expect(cb.allow()).toBe(true);
    cb.record(outcome);
  }
}

/** Opens a default breaker: 10 successes then 10 failures. */
function open(cb: CircuitBreaker): void {
  repeat(cb, 'success', 10);
  repeat(cb, 'http_5xx', 10);
  expect(cb.state).toBe('open');
}

describe('CircuitBreaker', () => {
  it('does not open before minimumRequests, however bad', () => {
    const { cb } = breaker();
    repeat(cb, 'connect_refused', 19);
    expect(cb.state).toBe('closed');
    expect(cb.retryAfterMs()).toBe(0);
    cb.record('connect_refused');
    expect(cb.state).toBe('open');
  });

  it('opens when the failure ratio is reached', () => {
    const { cb } = breaker();
    repeat(cb, 'success', 11);
    repeat(cb, 'http_5xx', 9);
    expect(cb.state).toBe('closed'); // 9/20
    repeat(cb, 'timeout', 2);
    expect(cb.state).toBe('open'); // 11/22
  });

  it('opens on the success that brings the window to minimumRequests', () => {
    const { cb } = breaker();
    repeat(cb, 'reset', 19);
    repeat(cb, 'success', 1);
    expect(cb.state).toBe('open');
  });

  it('does not count client_abort and local_reply', () => {
    const { cb } = breaker();
    repeat(cb, 'client_abort', 50);
    repeat(cb, 'local_reply', 50);
    repeat(cb, 'http_5xx', 19);
    expect(cb.state).toBe('closed');
  });

  it('forgets outcomes older than the window', () => {
    const { cb, clock } = breaker();
    repeat(cb, 'http_5xx', 15);
    clock.advance(10_000);
    repeat(cb, 'success', 5);
    repeat(cb, 'http_5xx', 4);
    expect(cb.state).toBe('closed'); // 4/9: the 15 failures expired
    repeat(cb, 'http_5xx', 11);
    expect(cb.state).toBe('open'); // 15/20
  });

  it('slides bucket by bucket', () => {
    const { cb, clock } = breaker();
    repeat(cb, 'http_5xx', 10); // bucket 0
    clock.advance(5_000);
    repeat(cb, 'success', 9); // bucket 5
    clock.advance(5_000); // bucket 10: bucket 0 expired
    repeat(cb, 'http_5xx', 1);
    expect(cb.state).toBe('closed'); // 1/10
    clock.advance(4_000); // bucket 14: bucket 5 still in
    repeat(cb, 'http_5xx', 10);
    expect(cb.state).toBe('open'); // 11/20
  });

  it('rejects while open and says when it will admit again', () => {
    const { cb, clock } = breaker();
    open(cb);
    expect(cb.allow()).toBe(false);
    expect(cb.retryAfterMs()).toBe(5_000);
    clock.advance(3_000);
    expect(cb.allow()).toBe(false);
    expect(cb.retryAfterMs()).toBe(2_000);
    cb.record('http_5xx'); // a straggler: ignored
    expect(cb.retryAfterMs()).toBe(2_000);
    clock.advance(1_999);
    expect(cb.allow()).toBe(false);
    expect(cb.state).toBe('open');
  });

  it('goes half-open after openFor and lets halfOpenProbes requests through', () => {
    const { cb, clock } = breaker();
    open(cb);
    clock.advance(5_000);
    expect(cb.state).toBe('open'); // lazily
    expect(cb.retryAfterMs()).toBe(0);
    expect(cb.allow()).toBe(true);
    expect(cb.state).toBe('half_open');
    expect(cb.retryAfterMs()).toBe(0);
    expect(cb.allow()).toBe(true);
    expect(cb.allow()).toBe(true);
    expect(cb.allow()).toBe(false);
    expect(cb.retryAfterMs()).toBe(1_000);
  });

  it('closes when every probe succeeds, with a fresh window', () => {
    const { cb, clock } = breaker();
    open(cb);
    clock.advance(5_000);
    for (let i = 0; i < 3; i++) expect(cb.allow()).toBe(true);
    cb.record('success');
    cb.record('success');
    expect(cb.state).toBe('half_open');
    expect(cb.allow()).toBe(false); // two done, one in flight: no more probes
    cb.record('success');
    expect(cb.state).toBe('closed');
    expect(cb.retryAfterMs()).toBe(0);
    repeat(cb, 'http_5xx', 19);
    expect(cb.state).toBe('closed');
  });

  it('lets a probe slot go when the probe ends without an upstream verdict', () => {
    const { cb, clock } = breaker({ halfOpenProbes: 1 });
    open(cb);
    clock.advance(5_000);
    expect(cb.allow()).toBe(true);
    expect(cb.allow()).toBe(false);
    cb.record('client_abort');
    expect(cb.state).toBe('half_open');
    expect(cb.allow()).toBe(true);
    cb.record('success');
    expect(cb.state).toBe('closed');
  });

  it('reclaims probe slots whose results never come, after a whole window', () => {
    const { cb, clock } = breaker();
    open(cb);
    clock.advance(5_000);
    for (let i = 0; i < 3; i++) expect(cb.allow()).toBe(true);
    clock.advance(5_000);
    cb.record('success'); // one reports; two never will
    clock.advance(9_999);
    expect(cb.allow()).toBe(false);
    clock.advance(1);
    // The two lost slots are free again: 1 success so far, 2 more probes.
    expect(cb.allow()).toBe(true);
    expect(cb.allow()).toBe(true);
    expect(cb.allow()).toBe(false);
    cb.record('success');
    expect(cb.state).toBe('half_open');
    cb.record('success');
    expect(cb.state).toBe('closed');
  });

  it('re-opens on a probe failure for twice as long, capped, and resets openFor when it closes', () => {
    const { cb, clock } = breaker();
    open(cb);
    const openFors: number[] = [cb.retryAfterMs()];
    for (let i = 0; i < 6; i++) {
      clock.advance(cb.retryAfterMs());
      expect(cb.allow()).toBe(true);
      cb.record(i % 2 ? 'connect_timeout' : 'http_5xx');
      expect(cb.state).toBe('open');
      openFors.push(cb.retryAfterMs());
    }
    expect(openFors).toEqual([5_000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000]);
    clock.advance(60_000);
    repeat(cb, 'success', 3);
    expect(cb.state).toBe('closed');
    open(cb);
    expect(cb.retryAfterMs()).toBe(5_000);
  });

  it('publishes every state change on trellis:circuit', () => {
    const events: CircuitEvent[] = [];
    const onMessage = (m: unknown) => events.push(m as CircuitEvent);
    subscribe('trellis:circuit', onMessage);
    try {
      const { cb, clock } = breaker({ halfOpenProbes: 1 });
      open(cb);
      clock.advance(5_000);
      repeat(cb, 'reset', 1);
      clock.advance(10_000);
      repeat(cb, 'success', 1);
    } finally {
      unsubscribe('trellis:circuit', onMessage);
    }
    expect(events).toEqual([
      { service: 'svc', from: 'closed', to: 'open', reason: 'failure_ratio' },
      { service: 'svc', from: 'open', to: 'half_open', reason: 'open_elapsed' },
      { service: 'svc', from: 'half_open', to: 'open', reason: 'probe_failed' },
      { service: 'svc', from: 'open', to: 'half_open', reason: 'open_elapsed' },
      { service: 'svc', from: 'half_open', to: 'closed', reason: 'probes_succeeded' },
    ]);
  });

  it('rejects invalid options', () => {
    expect(() => breaker({ failureRatio: 1.5 })).toThrow(RangeError);
    expect(() => breaker({ window: 0 })).toThrow(RangeError);
    expect(() => breaker({ halfOpenProbes: 0 })).toThrow(RangeError);
  });
});

describe('Admission', () => {
  it('admits up to each limit and names the limit hit', () => {
    const a = new Admission({ maxRequests: 2, maxPending: 1, maxRetries: 1 });
    expect(a.tryRequest()).toBeUndefined();
    expect(a.tryRequest()).toBeUndefined();
    expect(a.tryRequest()).toBe('requests');
    expect(a.active).toBe(2);
    a.endRequest();
    expect(a.tryRequest()).toBeUndefined();
    expect(a.tryPending()).toBeUndefined();
    expect(a.tryPending()).toBe('pending');
    a.endPending();
    expect(a.pending).toBe(0);
    expect(a.tryRetry()).toBeUndefined();
    expect(a.tryRetry()).toBe('retries');
    expect(a.retries).toBe(1);
    a.endRetry();
    expect(a.tryRetry()).toBeUndefined();
  });

  it('never counts below zero', () => {
    const a = new Admission(defaultAdmissionLimits);
    a.endRequest();
    a.endPending();
    a.endRetry();
    expect([a.active, a.pending, a.retries]).toEqual([0, 0, 0]);
  });
});
