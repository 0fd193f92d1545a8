import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  compileContext,
  connected,
  fakeRequest,
  header,
  keptState,
  run,
} from '../../../test/policy-context.js';
import { type RedisServer, redisMissing, startRedis } from '../../../test/redis-server.js';
import { calendarWindow, quotaPolicy } from './quota.js';

const compile = (input: Record<string, unknown>, kept = keptState(), name = 'q') =>
  quotaPolicy.compile(quotaPolicy.schema.parse(input), compileContext(name, kept));

async function passes(p: ReturnType<typeof compile>, n: number, req = fakeRequest()): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++) if ((await run(p, req)).reply === undefined) ok++;
  return ok;
}

const alice = { name: 'alice', groups: [], metadata: {} };
const bob = { name: 'bob', groups: [], metadata: {} };

describe('calendar windows (UTC)', () => {
  const at = (s: string) => Date.parse(s);
  it('hour, day, ISO week from Monday, month', () => {
    const now = at('2026-02-11T13:45:10.500Z'); // a Wednesday
    expect(calendarWindow('hour', now)).toEqual({
      start: at('2026-02-11T13:00:00Z'),
      end: at('2026-02-11T14:00:00Z'),
    });
    expect(calendarWindow('day', now)).toEqual({
      start: at('2026-02-11T00:00:00Z'),
      end: at('2026-02-12T00:00:00Z'),
    });
    expect(calendarWindow('week', now)).toEqual({
      start: at('2026-02-09T00:00:00Z'),
      end: at('2026-02-16T00:00:00Z'),
    });
    expect(calendarWindow('week', at('2026-02-15T23:59:59Z')).start).toBe(at('2026-02-09T00:00:00Z'));
    expect(calendarWindow('week', at('2026-02-16T00:00:00Z')).start).toBe(at('2026-02-16T00:00:00Z'));
    expect(calendarWindow('month', now)).toEqual({
      start: at('2026-02-01T00:00:00Z'),
      end: at('2026-03-01T00:00:00Z'),
    });
    expect(calendarWindow('month', at('2026-12-31T23:59:59Z')).end).toBe(at('2027-01-01T00:00:00Z'));
  });
});

describe('quota, local store', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('counts per consumer, refuses past the limit with the time to the period end, starts again next period', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.parse('2026-03-31T23:59:00Z'));
    const p = compile({ limit: 3, period: 'month', headers: 'always' });
    const a = fakeRequest({ consumer: alice });
    const first = await run(p, a);
    expect(header(first.headers, 'ratelimit-policy')).toBe('"q";q=3;w=2678400');
    expect(header(first.headers, 'ratelimit')).toBe('"q";r=2;t=60');
    expect(await passes(p, 5, a)).toBe(2);
    const { reply } = await run(p, a);
    expect(reply).toMatchObject({ kind: 'error', code: 'quota_exceeded' });
    expect(header(reply, 'retry-after')).toBe('60');
    expect(await passes(p, 5, fakeRequest({ consumer: bob }))).toBe(3);
    vi.setSystemTime(Date.parse('2026-04-01T00:00:00Z'));
    expect(await passes(p, 5, a)).toBe(3);
    // April has 30 days.
    const april = await run(compile({ limit: 3, period: 'month', headers: 'always' }), a);
    expect(header(april.headers, 'ratelimit-policy')).toBe('"q";q=3;w=2592000');
  });

  it('a reload that changes the limit keeps the count', async () => {
    const kept = keptState();
    const a = fakeRequest({ consumer: alice });
    expect(await passes(compile({ limit: 5, period: 'day' }, kept), 4, a)).toBe(4);
    expect(await passes(compile({ limit: 6, period: 'day' }, kept), 4, a)).toBe(2);
  });
});

describe.skipIf(redisMissing !== undefined)('quota, Redis store (real redis-server)', () => {
  let redis: RedisServer;
  const kept = [keptState(), keptState()];
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const k of kept) await k.dispose();
    await redis?.close();
  });

  it('two gateways share the count, which outlives them', async () => {
    const input = { limit: 7, period: 'day', store: 'redis', redis: { url: redis.url, timeout: '500ms' } };
    const a = compile(input, kept[0]);
    const b = compile(input, kept[1]);
    const req = fakeRequest({ consumer: alice });
    await connected(kept[0]!);
    await connected(kept[1]!);
    let ok = 0;
    for (let i = 0; i < 12; i++) ok += await passes(i % 2 ? a : b, 1, req);
    expect(ok).toBe(7);
    const { reply } = await run(a, req);
    expect(reply).toMatchObject({ code: 'quota_exceeded' });
    // A new gateway (a restart) sees the same count.
    await kept[0]!.dispose();
    const c = compile(input, kept[0]);
    await connected(kept[0]!);
    expect(await passes(c, 3, req)).toBe(0);
  });
});
