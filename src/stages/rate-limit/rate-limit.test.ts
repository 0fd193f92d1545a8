import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  compileContext,
  connected,
  fakeRequest,
  header,
  keptState,
  run,
} from '../../../test/policy-context.js';
import { type RedisServer, redisMissing, startRedis } from '../../../test/redis-server.js';
import type { StoreEvent } from './events.js';
import { type RateLimitConfig, rateLimitPolicy } from './rate-limit.js';
import { RedisStore } from './redis-store.js';

function config(input: Record<string, unknown>): RateLimitConfig {
  return rateLimitPolicy.schema.parse(input);
}

function compile(input: Record<string, unknown>, kept = keptState(), name = 'rl') {
  return rateLimitPolicy.compile(config(input), compileContext(name, kept));
}

async function passes(p: ReturnType<typeof compile>, n: number, req = fakeRequest()): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++) if ((await run(p, req)).reply === undefined) ok++;
  return ok;
}

describe('rate-limit config', () => {
  it('defaults: GCRA, keyed by consumer, local store, headers on 429 only', () => {
    const c = config({ limits: [{ requests: 10, per: '1s' }] });
    expect(c).toMatchObject({ algorithm: 'gcra', key: 'consumer', store: 'local', headers: 'limited' });
  });

  it('refuses redis without its url, and two limits that cannot be told apart', () => {
    expect(() => config({ limits: [{ requests: 1, per: '1s' }], store: 'redis' })).toThrow(
      /store: redis needs/,
    );
    expect(() =>
      config({
        limits: [
          { requests: 1, per: '1s' },
          { requests: 1, per: 1000 },
        ],
      }),
    ).toThrow(/different names/);
    expect(() => config({ limits: [{ requests: 1, per: 0 }] })).toThrow(/at least 1ms/);
  });
});

describe('rate-limit redis settings', () => {
  const limits = [{ requests: 1, per: '1s' }];
  it('one Redis by url, or a cluster by seed nodes: exactly one of them', () => {
    expect(config({ limits, store: 'redis', redis: { url: 'redis://r:6379/2' } }).redis?.url).toBe(
      'redis://r:6379/2',
    );
    expect(
      config({ limits, store: 'redis', redis: { cluster: ['redis://a:7000', 'rediss://u:p@b:7001'] } }).redis
        ?.cluster,
    ).toHaveLength(2);
    expect(() =>
      config({ limits, store: 'redis', redis: { url: 'redis://r', cluster: ['redis://a:7000'] } }),
    ).toThrow(/exactly one of `url`/);
    expect(() => config({ limits, store: 'redis', redis: {} })).toThrow(/exactly one of `url`/);
    // A cluster has database 0 only; and a brace in the prefix would change every key's hash slot.
    expect(() => config({ limits, store: 'redis', redis: { cluster: ['redis://a:7000/3'] } })).toThrow(
      /without a database/,
    );
    expect(() =>
      config({ limits, store: 'redis', redis: { url: 'redis://r', keyPrefix: 'app{1}:' } }),
    ).toThrow(/no braces/);
  });
});

describe('rate-limit, local store', () => {
  it('a burst of N requests lets exactly `burst` through', async () => {
    const p = compile({ key: 'global', limits: [{ requests: 5, per: '1h', burst: 20 }] });
    expect(await passes(p, 100)).toBe(20);
  });

  it('the most restrictive of several limits decides, and a refused request spends none', async () => {
    const p = compile({
      key: 'global',
      limits: [
        { name: 'second', requests: 3, per: '1s' },
        { name: 'day', requests: 5, per: '24h' },
      ],
    });
    expect(await passes(p, 10)).toBe(3);
    const { reply } = await run(p, fakeRequest());
    expect(reply).toMatchObject({ kind: 'error', code: 'rate_limited' });
    expect(header(reply, 'ratelimit-policy')).toBe('"second";q=3;w=1, "day";q=5;w=86400');
    expect(header(reply, 'ratelimit')).toMatch(/^"second";r=0;t=1$/);
    expect(header(reply, 'retry-after')).toBe('1');
  });

  it('keys: client address, consumer (address when anonymous), header (address when absent), route', async () => {
    const byIp = compile({ key: 'client-ip', limits: [{ requests: 1, per: '1h' }] });
    expect(await passes(byIp, 3, fakeRequest({ address: '10.0.0.1' }))).toBe(1);
    expect(await passes(byIp, 3, fakeRequest({ address: '10.0.0.2' }))).toBe(1);

    const byConsumer = compile({ key: 'consumer', limits: [{ requests: 1, per: '1h' }] });
    const alice = { name: 'alice', groups: [], metadata: {} };
    // A consumer named like an address never shares the anonymous bucket of that address.
    const tricky = { name: '10.0.0.1', groups: [], metadata: {} };
    expect(await passes(byConsumer, 3, fakeRequest({ consumer: alice, address: '10.0.0.1' }))).toBe(1);
    expect(await passes(byConsumer, 3, fakeRequest({ consumer: alice, address: '10.0.0.9' }))).toBe(0);
    expect(await passes(byConsumer, 3, fakeRequest({ address: '10.0.0.1' }))).toBe(1);
    expect(await passes(byConsumer, 3, fakeRequest({ consumer: tricky }))).toBe(1);

    const byHeader = compile({ key: { header: 'X-Tenant' }, limits: [{ requests: 1, per: '1h' }] });
    expect(await passes(byHeader, 2, fakeRequest({ headers: { 'x-tenant': 'a' } }))).toBe(1);
    expect(await passes(byHeader, 2, fakeRequest({ headers: { 'x-tenant': 'b' } }))).toBe(1);
    expect(await passes(byHeader, 2, fakeRequest({ address: '10.0.0.3' }))).toBe(1);
    expect(await passes(byHeader, 2, fakeRequest({ headers: { 'x-tenant': 'x'.repeat(5000) } }))).toBe(1);

    const byRoute = compile({ key: 'route', limits: [{ requests: 1, per: '1h' }] });
    expect(await passes(byRoute, 2, fakeRequest({ route: 'a', address: '1.1.1.1' }))).toBe(1);
    expect(await passes(byRoute, 2, fakeRequest({ route: 'a', address: '2.2.2.2' }))).toBe(0);
    expect(await passes(byRoute, 2, fakeRequest({ route: 'b' }))).toBe(1);
  });

  it('a CEL key: the tenant of the consumer; the client address when the expression fails; errors at load', async () => {
    const p = compile({ key: { cel: 'consumer.metadata.tenant' }, limits: [{ requests: 2, per: '1h' }] });
    const a1 = { name: 'a1', groups: [], metadata: { tenant: 'acme' } };
    const a2 = { name: 'a2', groups: [], metadata: { tenant: 'acme' } };
    const b1 = { name: 'b1', groups: [], metadata: { tenant: 'globex' } };
    expect(await passes(p, 1, fakeRequest({ consumer: a1 }))).toBe(1);
    expect(await passes(p, 3, fakeRequest({ consumer: a2 }))).toBe(1);
    expect(await passes(p, 3, fakeRequest({ consumer: b1 }))).toBe(2);
    // No tenant in the metadata: an evaluation error, so the client address is the key.
    expect(await passes(p, 3, fakeRequest({ consumer: { name: 'c', groups: [], metadata: {} } }))).toBe(2);
    const byHeader = compile({
      key: { cel: 'request.headers["x-tenant"] + ":" + request.method' },
      limits: [{ requests: 1, per: '1h' }],
    });
    expect(await passes(byHeader, 2, fakeRequest({ headers: { 'x-tenant': 't' } }))).toBe(1);
    expect(await passes(byHeader, 2, fakeRequest({ headers: { 'x-tenant': 't' }, method: 'POST' }))).toBe(1);
    expect(() => config({ key: { cel: '1 + 2' }, limits: [{ requests: 1, per: '1s' }] })).toThrow(
      /a key must be a string/,
    );
    expect(() => config({ key: { cel: 'consumer.name +' }, limits: [{ requests: 1, per: '1s' }] })).toThrow(
      /CEL syntax error at 1:/,
    );
  });

  it('token bucket: refused once empty, RateLimit headers on allowed responses with `headers: always`', async () => {
    const p = compile({
      key: 'global',
      algorithm: 'token-bucket',
      headers: 'always',
      limits: [{ name: 'min', requests: 10, per: '1m' }],
    });
    const first = await run(p, fakeRequest());
    expect(header(first.headers, 'ratelimit-policy')).toBe('"min";q=10;w=60');
    expect(header(first.headers, 'ratelimit')).toBe('"min";r=9;t=60');
    expect(await passes(p, 20)).toBe(9);
  });

  it('state survives a reload that keeps the limit, and starts over when the limit changes', async () => {
    const kept = keptState();
    const input = { key: 'global', limits: [{ requests: 3, per: '1h' }] };
    expect(await passes(compile(input, kept), 2)).toBe(2);
    expect(await passes(compile({ ...input, maxKeys: 50 }, kept), 5)).toBe(1);
    expect(await passes(compile({ key: 'global', limits: [{ requests: 4, per: '1h' }] }, kept), 9)).toBe(4);
  });

  it('shadow: no response stage (clients never see a limit that is not enforced)', () => {
    const p = rateLimitPolicy.compile(
      config({ headers: 'always', limits: [{ requests: 1, per: '1s' }] }),
      compileContext('rl', keptState(), true),
    );
    expect(p.request).toBeDefined();
    expect(p.response).toBeUndefined();
  });
});

describe.skipIf(redisMissing !== undefined)('rate-limit, Redis store (real redis-server)', () => {
  let redis: RedisServer;
  const kept: ReturnType<typeof keptState>[] = [];
  const events: StoreEvent[] = [];
  const onEvent = (m: unknown) => events.push(m as StoreEvent);
  beforeAll(async () => {
    redis = await startRedis();
    subscribe('trellis:rate-limit-store', onEvent);
  });
  afterAll(async () => {
    unsubscribe('trellis:rate-limit-store', onEvent);
    for (const k of kept) await k.dispose();
    await redis?.close();
  });
  const redisPolicy = (extra: Record<string, unknown>, name = 'rl') => {
    const k = keptState();
    kept.push(k);
    return compile({ store: 'redis', redis: { url: redis.url, timeout: '200ms' }, ...extra }, k, name);
  };
  // The connection comes up in the background; checks before then fail open.
  const ready = async (_p: unknown) => {
    for (const k of kept) await connected(k);
  };

  it('a burst lets exactly `burst` through, with the same headers as the local store', async () => {
    const p = redisPolicy({
      key: 'client-ip',
      headers: 'always',
      limits: [{ name: 's', requests: 5, per: '1h', burst: 7 }],
    });
    await ready(p);
    const req = fakeRequest({ address: '198.51.100.1' });
    const first = await run(p, req);
    expect(header(first.headers, 'ratelimit')).toBe('"s";r=6;t=720');
    expect(await passes(p, 30, req)).toBe(6);
    const { reply } = await run(p, req);
    expect(reply).toMatchObject({ code: 'rate_limited' });
    expect(Number(header(reply, 'retry-after'))).toBe(720);
  });

  it('two gateways with the same policy on one Redis share one budget', async () => {
    const a = redisPolicy({ key: 'client-ip', limits: [{ requests: 10, per: '1h' }] }, 'shared');
    const b = redisPolicy({ key: 'client-ip', limits: [{ requests: 10, per: '1h' }] }, 'shared');
    await ready(a);
    await ready(b);
    const req = fakeRequest({ address: '198.51.100.9' });
    let ok = 0;
    for (let i = 0; i < 30; i++) ok += await passes(i % 2 ? a : b, 1, req);
    expect(ok).toBe(10);
    // Separate connections: the budget is Redis's, not either policy's.
    expect(a).not.toBe(b);
  });

  it('token bucket and several limits in one round trip', async () => {
    const p = redisPolicy({
      key: 'client-ip',
      algorithm: 'token-bucket',
      limits: [
        { name: 'a', requests: 4, per: '1h' },
        { name: 'b', requests: 2, per: '1h', burst: 3 },
      ],
    });
    await ready(p);
    expect(await passes(p, 10, fakeRequest({ address: '198.51.100.2' }))).toBe(3);
    const { reply } = await run(p, fakeRequest({ address: '198.51.100.2' }));
    expect(header(reply, 'ratelimit')).toBe('"b";r=0;t=3600');
  });

  it('a check slower than `timeout` fails at the timeout, then `onStoreError` decides', async () => {
    const p = redisPolicy(
      { key: 'client-ip', onStoreError: 'deny', limits: [{ requests: 100, per: '1s' }] },
      'slow',
    );
    await ready(p);
    const store = [...kept.at(-1)!.values.values()].find((v) => v instanceof RedisStore) as RedisStore;
    // A second connection blocks Redis for 600 ms (a busy script: Redis runs one command at a time).
    const blocker = (store.client as Redis).duplicate({
      enableOfflineQueue: true,
      commandTimeout: undefined,
    });
    try {
      const sleeping = blocker.eval(
        "local t = redis.call('TIME'); local s = t[1] * 1e6 + t[2]; repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - s > 600000; return 1",
        0,
      );
      await new Promise((r) => setTimeout(r, 50));
      const t0 = performance.now();
      const { reply } = await run(p, fakeRequest({ address: '198.51.100.7' }));
      const took = performance.now() - t0;
      expect(reply).toMatchObject({ code: 'rate_limit_unavailable' });
      expect(took).toBeGreaterThanOrEqual(190);
      expect(took).toBeLessThan(500);
      await sleeping;
    } finally {
      blocker.disconnect();
    }
    expect((await run(p, fakeRequest({ address: '198.51.100.7' }))).reply).toBeUndefined();
  });

  it('Redis down: allow (counted and reported) or deny (503); back up: enforced again', async () => {
    const allow = redisPolicy({ key: 'client-ip', limits: [{ requests: 1, per: '1h' }] }, 'fail-open');
    const deny = redisPolicy(
      { key: 'client-ip', onStoreError: 'deny', limits: [{ requests: 1, per: '1h' }] },
      'fail-closed',
    );
    await ready(allow);
    await ready(deny);
    const req = fakeRequest({ address: '198.51.100.3' });
    expect(await passes(allow, 3, req)).toBe(1);
    expect(await passes(deny, 3, req)).toBe(1);

    await redis.stop();
    events.length = 0;
    expect(await passes(allow, 5, req)).toBe(5);
    const denied = await run(deny, req);
    expect(denied.reply).toMatchObject({ kind: 'error', code: 'rate_limit_unavailable' });
    expect(events.filter((e) => e.event === 'error').map((e) => e.policy)).toEqual([
      'fail-open',
      'fail-closed',
    ]);
    expect(JSON.stringify(events)).not.toContain('redis://');

    await redis.start();
    // The state was lost with the process (no persistence); enforcement resumes once reconnected.
    let back = false;
    for (let i = 0; i < 200 && !back; i++) {
      await new Promise((r) => setTimeout(r, 25));
      back = (await run(deny, fakeRequest({ address: '198.51.100.4' }))).reply === undefined;
    }
    expect(back).toBe(true);
    expect(await passes(deny, 3, fakeRequest({ address: '198.51.100.4' }))).toBe(0);
    expect(events.some((e) => e.event === 'recovered' && e.policy === 'fail-closed')).toBe(true);
  });
});
