import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import type { BudgetEvent } from './events.js';
import { defaultRetryBudgetOptions, RetryBudget, type RetryBudgetOptions } from './retry-budget.js';

class FakeClock {
  t = 123_456;
  readonly now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

function budget(over: Partial<RetryBudgetOptions> = {}): { b: RetryBudget; clock: FakeClock } {
  const clock = new FakeClock();
  return { b: new RetryBudget('svc', { ...defaultRetryBudgetOptions, ...over }, clock.now), clock };
}

/** Withdraws until refused; returns how many were allowed. */
function drain(b: RetryBudget): number {
  let n = 0;
  while (b.tryWithdraw()) if (++n > 1e6) throw new Error('unbounded');
  return n;
}

describe('RetryBudget', () => {
  it('allows the floor without any request: minPerSecond * ttl', () => {
    const { b } = budget();
    expect(b.balance).toBe(100);
    expect(drain(b)).toBe(100);
    expect(b.balance).toBe(0);
    expect(b.tryWithdraw()).toBe(false);
  });

  it('allows ratio * requests + the floor', () => {
    const { b } = budget();
    for (let i = 0; i < 1000; i++) b.deposit();
    expect(b.balance).toBe(300);
    expect(drain(b)).toBe(0.2 * 1000 + 100);
  });

  it('tracks deposits and retries interleaved, as a proxy would make them', () => {
    const { b, clock } = budget({ minPerSecond: 0 });
    let retries = 0;
    // 1000 requests over 5 s, each trying to retry once.
    for (let i = 0; i < 1000; i++) {
      clock.advance(5);
      b.deposit();
      if (b.tryWithdraw()) retries++;
    }
    expect(retries).toBe(200);
  });

  it('refills as the window slides, and never goes negative', () => {
    const { b, clock } = budget();
    for (let i = 0; i < 500; i++) b.deposit();
    clock.advance(5_000);
    for (let i = 0; i < 500; i++) b.deposit();
    expect(drain(b)).toBe(300);
    // The first 500 deposits expire; the withdrawals they paid for have not yet: 100 + 100 - 300.
    clock.advance(5_000);
    expect(b.balance).toBe(0);
    expect(b.tryWithdraw()).toBe(false);
    expect(b.balance).toBe(0);
    // Everything expired: back to the floor.
    clock.advance(5_000);
    expect(b.balance).toBe(100);
    expect(drain(b)).toBe(100);
  });

  it('expires a bucket at a time', () => {
    const { b, clock } = budget({ minPerSecond: 0, ratio: 1 });
    for (let s = 0; s < 10; s++) {
      b.deposit();
      clock.advance(1_000);
    }
    // Deposits from seconds 1..9 remain (the first expired as the 11th bucket began).
    expect(b.balance).toBe(9);
    clock.advance(3_000);
    expect(b.balance).toBe(6);
    clock.advance(60_000);
    expect(b.balance).toBe(0);
  });

  it('absorbs float error in ratio * requests', () => {
    const { b } = budget({ ratio: 0.29, minPerSecond: 0 });
    for (let i = 0; i < 100; i++) b.deposit();
    expect(drain(b)).toBe(29);
  });

  it('publishes exhaustion at most once per second', () => {
    const events: BudgetEvent[] = [];
    const onMessage = (m: unknown) => events.push(m as BudgetEvent);
    const { b, clock } = budget({ minPerSecond: 0 });
    subscribe('trellis:retry-budget', onMessage);
    try {
      for (let i = 0; i < 10; i++) {
        expect(b.tryWithdraw()).toBe(false);
        clock.advance(150);
      }
    } finally {
      unsubscribe('trellis:retry-budget', onMessage);
    }
    expect(events).toEqual([
      { service: 'svc', event: 'exhausted' },
      { service: 'svc', event: 'exhausted' },
    ]);
  });

  it('keeps a consistent, non-negative balance under random traffic', () => {
    const { b, clock } = budget();
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    let min = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 50_000; i++) {
      clock.advance(Math.floor(rand() * 20));
      if (rand() < 0.6) b.deposit();
      else b.tryWithdraw();
      min = Math.min(min, b.balance);
    }
    expect(min).toBe(0);
    clock.advance(10_000);
    expect(b.balance).toBe(100);
  });

  it('rejects invalid options', () => {
    expect(() => budget({ ttl: 0 })).toThrow(RangeError);
    expect(() => budget({ ratio: -1 })).toThrow(RangeError);
  });
});
