/**
 * Rate limits and quotas on real sockets: local exactness and accuracy, headers, reloads, and the Redis store
 * against a real redis-server (shared budget across gateways and processes, failure modes, recovery).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ConfigInput } from '../src/config/schema.js';
import { hashApiKey } from '../src/stages/credentials.js';
import { closedAfterEach, type Problem, simpleConfig, type TestGateway } from './helpers.js';
import { type GatewayProcess, spawnGateway } from './process.js';
import {
  type RedisCluster,
  type RedisServer,
  redisMissing,
  startRedis,
  startRedisCluster,
} from './redis-server.js';

const t = closedAfterEach();

function withPolicies(
  upstream: string,
  policies: unknown[],
  routePolicies: string[],
  extra: Partial<ConfigInput> = {},
) {
  return {
    ...simpleConfig(upstream, [{ name: 'all', backends: [{ service: 'svc' }], policies: routePolicies }]),
    policies,
    ...extra,
  } as ConfigInput;
}

/** `n` requests at once; the responses' statuses and headers. */
async function burst(url: string, n: number, headers: Record<string, string> = {}) {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const r = await fetch(url, { headers });
      const body = await r.text();
      return { status: r.status, headers: r.headers, body };
    }),
  );
}

const count = (rs: { status: number }[], status: number) => rs.filter((r) => r.status === status).length;

/**
 * Sends one request every `everyMs` for `ms` (open loop: a slow answer never delays the next request), to the
 * gateways in turn. Returns how many were allowed (200), refused (429) and the send span in ms.
 */
async function fixedRate(urls: string[], everyMs: number, ms: number) {
  const pending: Promise<number>[] = [];
  const start = performance.now();
  let i = 0;
  while (performance.now() - start < ms) {
    const due = start + i * everyMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const url = urls[i % urls.length]!;
    pending.push(
      fetch(url).then(
        async (r) => {
          await r.arrayBuffer();
          return r.status;
        },
        () => 0,
      ),
    );
    i++;
  }
  const span = performance.now() - start;
  const statuses = await Promise.all(pending);
  return {
    allowed: count(
      statuses.map((s) => ({ status: s })),
      200,
    ),
    refused: count(
      statuses.map((s) => ({ status: s })),
      429,
    ),
    sent: statuses.length,
    span,
  };
}

describe('local store', () => {
  test('a burst of 60 concurrent requests lets exactly `burst` (25) through; 429 carries the headers', async () => {
    let reached = 0;
    const up = await t.upstream((_req, res) => {
      reached++;
      res.end('ok');
    });
    const gw = await t.gateway(
      withPolicies(
        up.url,
        [
          {
            name: 'rl',
            type: 'rate-limit',
            key: 'client-ip',
            limits: [{ name: 'minute', requests: 5, per: '1m', burst: 25 }],
          },
        ],
        ['rl'],
      ),
    );
    const rs = await burst(`${gw.url}/x`, 60);
    expect(count(rs, 200)).toBe(25);
    expect(count(rs, 429)).toBe(35);
    expect(reached).toBe(25);
    const refused = rs.find((r) => r.status === 429)!;
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect((JSON.parse(refused.body) as Problem).code).toBe('rate_limited');
    expect(refused.headers.get('x-trellis-error')).toBe('rate_limited');
    expect(refused.headers.get('ratelimit-policy')).toBe('"minute";q=5;w=60');
    expect(refused.headers.get('ratelimit')).toBe('"minute";r=0;t=12');
    expect(refused.headers.get('retry-after')).toBe('12');
    // Allowed responses carry no rate-limit headers by default.
    expect(rs.find((r) => r.status === 200)!.headers.get('ratelimit')).toBeNull();
  });

  test('headers: always puts RateLimit on allowed responses; a reload keeps the budget', async () => {
    const up = await t.upstream((_req, res) => res.end('ok'));
    const policy = {
      name: 'rl',
      type: 'rate-limit',
      key: 'global',
      headers: 'always',
      limits: [{ name: 'hour', requests: 10, per: '1h' }],
    };
    const gw = await t.gateway(withPolicies(up.url, [policy], ['rl']));
    const first = await fetch(`${gw.url}/`);
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-policy')).toBe('"hour";q=10;w=3600');
    expect(first.headers.get('ratelimit')).toBe('"hour";r=9;t=360');
    expect(count(await burst(`${gw.url}/`, 4), 200)).toBe(4);
    // A reload that changes something else (a new route): the policy's buckets stay.
    await gw.apply({
      ...withPolicies(up.url, [policy], ['rl']),
      routes: [
        {
          name: 'health',
          match: { path: { exact: '/healthz' } },
          directResponse: { status: 200, body: 'ok' },
        },
        { name: 'all', backends: [{ service: 'svc' }], policies: ['rl'] },
      ],
    });
    expect(count(await burst(`${gw.url}/`, 10), 200)).toBe(5);
    // Changing the limit starts it over.
    await gw.apply(
      withPolicies(up.url, [{ ...policy, limits: [{ name: 'hour', requests: 3, per: '1h' }] }], ['rl']),
    );
    expect(count(await burst(`${gw.url}/`, 10), 200)).toBe(3);
  });

  test('accuracy: 10 s at twice the limit, allowed requests within 1% of it', async () => {
    const up = await t.upstream((_req, res) => res.end('ok'));
    const gw = await t.gateway(
      withPolicies(
        up.url,
        [{ name: 'rl', type: 'rate-limit', key: 'global', limits: [{ requests: 50, per: '1s', burst: 10 }] }],
        ['rl'],
      ),
    );
    const r = await fixedRate([`${gw.url}/`], 10, 10_000);
    // GCRA: the burst, then one every 20 ms of the span.
    const expected = 10 + r.span / 20;
    expect(r.allowed + r.refused).toBe(r.sent);
    expect(Math.abs(r.allowed - expected) / expected).toBeLessThan(0.01);
  }, 30_000);

  test('quota per consumer, after authentication whatever the listed order', async () => {
    const up = await t.upstream((_req, res) => res.end('ok'));
    const gw = await t.gateway(
      withPolicies(
        up.url,
        [
          { name: 'plan', type: 'quota', limit: 3, period: 'day', headers: 'always' },
          { name: 'keys', type: 'api-key' },
        ],
        ['plan', 'keys'],
        {
          consumers: [
            { name: 'alice', credentials: { apiKeys: [{ hash: hashApiKey('alice-key-0123456789abcdef') }] } },
            { name: 'bob', credentials: { apiKeys: [{ hash: hashApiKey('bob-key-0123456789abcdef') }] } },
          ],
        },
      ),
    );
    // Unauthenticated requests are refused before the quota counts them.
    expect(count(await burst(`${gw.url}/`, 5), 401)).toBe(5);
    const alice = await burst(`${gw.url}/`, 5, { 'x-api-key': 'alice-key-0123456789abcdef' });
    expect(count(alice, 200)).toBe(3);
    const refused = alice.find((r) => r.status === 429)!;
    expect((JSON.parse(refused.body) as Problem).code).toBe('quota_exceeded');
    expect(refused.headers.get('ratelimit-policy')).toBe('"plan";q=3;w=86400');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(count(await burst(`${gw.url}/`, 5, { 'x-api-key': 'bob-key-0123456789abcdef' }), 200)).toBe(3);
  });
});

describe.skipIf(redisMissing !== undefined)('Redis store (real redis-server)', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.close();
  });

  const redisPolicy = (extra: Record<string, unknown> = {}) => ({
    name: 'shared',
    type: 'rate-limit',
    key: 'client-ip',
    store: 'redis',
    redis: { url: redis.url, timeout: '250ms', keyPrefix: `t${Math.random().toString(36).slice(2, 8)}:` },
    limits: [{ requests: 10, per: '1h' }],
    ...extra,
  });

  /** Waits until a gateway's Redis-backed limit answers from Redis (a refused request proves it counted). */
  async function warm(gw: TestGateway): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const r = await fetch(`${gw.url}/warm`, { headers: { 'x-warm': '1' } });
      await r.text();
      if (r.status === 429 || r.headers.get('ratelimit') !== null) return;
      await new Promise((res) => setTimeout(res, 10));
    }
    throw new Error('Redis-backed limit never answered');
  }

  test('two gateways on one Redis share one budget, exactly', async () => {
    const up = await t.upstream((_req, res) => res.end('ok'));
    const policy = redisPolicy({ headers: 'always' });
    const a = await t.gateway(withPolicies(up.url, [policy], ['shared']));
    const b = await t.gateway(withPolicies(up.url, [policy], ['shared']));
    await warm(a);
    await warm(b);
    // The warm-ups spent two of the ten.
    // A reload keeps the connection (one per gateway, named trellis) and, in Redis, the budget.
    const connections = async () => {
      const admin = new Redis(redis.url);
      try {
        const list = (await admin.call('CLIENT', 'LIST')) as string;
        return list
          .split('\n')
          .filter((l) => / name=trellis /.test(l))
          .map((l) => /^id=(\d+)/.exec(l)![1])
          .sort()
          .join(',');
      } finally {
        admin.disconnect();
      }
    };
    const before = await connections();
    expect(before.split(',')).toHaveLength(2);
    await a.apply({
      ...withPolicies(up.url, [policy], ['shared']),
      routes: [
        {
          name: 'health',
          match: { path: { exact: '/healthz' } },
          directResponse: { status: 200, body: 'ok' },
        },
        { name: 'all', backends: [{ service: 'svc' }], policies: ['shared'] },
      ],
    });
    // Give a replaced connection time to show up (it would be a new id).
    await new Promise((res) => setTimeout(res, 100));
    expect(await connections()).toBe(before);
    const rs = await Promise.all([burst(`${a.url}/`, 10), burst(`${b.url}/`, 10)]);
    expect(count(rs.flat(), 200)).toBe(8);
    expect(count(rs.flat(), 429)).toBe(12);
  });

  test('Redis down: allow passes uncounted, deny answers 503 rate_limit_unavailable; back up: enforced again', async () => {
    const up = await t.upstream((_req, res) => res.end('ok'));
    const allow = await t.gateway(withPolicies(up.url, [redisPolicy({ headers: 'always' })], ['shared']));
    const deny = await t.gateway(
      withPolicies(up.url, [redisPolicy({ headers: 'always', onStoreError: 'deny' })], ['shared']),
    );
    await warm(allow);
    await warm(deny);
    await redis.stop();
    try {
      expect(count(await burst(`${allow.url}/`, 20), 200)).toBe(20);
      const denied = await burst(`${deny.url}/`, 3);
      expect(count(denied, 503)).toBe(3);
      expect((JSON.parse(denied[0]!.body) as Problem).code).toBe('rate_limit_unavailable');
      const metrics = await (
        allow.gateway as unknown as { metrics: { registry: { metrics(): Promise<string> } } }
      ).metrics.registry.metrics();
      const m = /trellis_rate_limit_store_errors_total\{trellis_policy="shared"\} (\d+)/.exec(metrics);
      expect(Number(m?.[1])).toBeGreaterThanOrEqual(23);
    } finally {
      await redis.start();
    }
    // Reconnected (backoff up to 2 s): the limit holds again.
    let counted = false;
    for (let i = 0; i < 300 && !counted; i++) {
      const r = await fetch(`${deny.url}/`);
      await r.text();
      counted = r.status !== 503;
      if (!counted) await new Promise((res) => setTimeout(res, 20));
    }
    expect(counted).toBe(true);
    const after = await burst(`${deny.url}/`, 15);
    expect(count(after, 200)).toBe(9);
    expect(count(after, 429)).toBe(6);
  });

  describe('two gateway processes', () => {
    let procs: GatewayProcess[] = [];
    afterAll(async () => {
      for (const p of procs) {
        p.kill('SIGKILL');
        await p.exited;
      }
      procs = [];
    });

    test('accuracy: 10 s at twice the limit across two processes, allowed within 2% of it', async () => {
      const up = await t.upstream((_req, res) => res.end('ok'));
      const yaml = `
listeners:
  - name: public
    port: {{PORT}}
admin:
  port: {{ADMIN_PORT}}
services:
  - name: svc
    endpoints: ["{{UPSTREAM}}"]
policies:
  - name: shared
    type: rate-limit
    key: global
    store: redis
    redis: { url: "${redis.url}", timeout: 250ms, keyPrefix: "acc:" }
    onStoreError: deny
    limits: [{ requests: 50, per: 1s, burst: 10 }]
routes:
  - name: warm
    match: { path: { exact: /warm } }
    backends: [{ service: svc }]
  - name: all
    backends: [{ service: svc }]
    policies: [shared]
`;
      procs = await Promise.all([
        spawnGateway(yaml, { upstream: up.url }),
        spawnGateway(yaml, { upstream: up.url }),
      ]);
      await Promise.all(procs.map((p) => p.waitReady()));
      // Both connected to Redis (a check that Redis answered is not a 503).
      for (const p of procs) {
        for (let i = 0; i < 300; i++) {
          const r = await fetch(`${p.url}/probe`);
          await r.text();
          if (r.status !== 503) break;
          await new Promise((res) => setTimeout(res, 20));
        }
      }
      // Let the probes' spending drain: after 1 s the bucket is full again.
      await new Promise((res) => setTimeout(res, 1100));
      const r = await fixedRate(
        procs.map((p) => `${p.url}/`),
        10,
        10_000,
      );
      const expected = 10 + r.span / 20;
      expect(r.allowed + r.refused).toBe(r.sent);
      expect(Math.abs(r.allowed - expected) / expected).toBeLessThan(0.02);
    }, 60_000);
  });
});

describe.skipIf(redisMissing !== undefined)('Redis Cluster store (three real redis-server nodes)', () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  }, 30_000);
  afterAll(async () => {
    await cluster?.close();
  });

  test('two gateways share exact budgets whose keys live on different nodes; quotas too', async () => {
    const up = await t.upstream((_req, res) => res.end('ok'));
    const redis = { cluster: [cluster.urls[0]!], timeout: '500ms' };
    const policies = [
      {
        name: 'per-user',
        type: 'rate-limit',
        key: { header: 'x-user' },
        store: 'redis',
        redis,
        // Two limits: one script run with two keys, which share the user's hash slot.
        limits: [
          { requests: 4, per: '1h' },
          { requests: 100, per: '1s' },
        ],
        headers: 'always',
      },
      {
        name: 'plan',
        type: 'quota',
        key: { header: 'x-user' },
        limit: 6,
        period: 'day',
        store: 'redis',
        redis,
        headers: 'always',
      },
    ];
    const config = withPolicies(up.url, policies, ['per-user']);
    const a = await t.gateway(config);
    const b = await t.gateway(config);
    // The cluster is found from one seed node; the first checks may come before the slot map is loaded (and
    // pass uncounted, onStoreError: allow). A RateLimit header says a check was answered by the cluster.
    const ready = async (gw: TestGateway) => {
      for (let i = 0; i < 200; i++) {
        const r = await fetch(`${gw.url}/warm`, { headers: { 'x-user': `warm-${i}` } });
        await r.text();
        if (r.headers.get('ratelimit') !== null) return;
        await new Promise((res) => setTimeout(res, 20));
      }
      throw new Error('the cluster never answered');
    };
    await ready(a);
    await ready(b);
    // Enough users that their keys land on every node (checked below, from the nodes themselves).
    const users = Array.from({ length: 12 }, (_, i) => `user-${i}`);
    const rs = await Promise.all(
      users.flatMap((u) => [burst(`${a.url}/`, 3, { 'x-user': u }), burst(`${b.url}/`, 3, { 'x-user': u })]),
    );
    for (let i = 0; i < users.length; i++) {
      const mine = [...rs[2 * i]!, ...rs[2 * i + 1]!];
      expect(count(mine, 200), users[i]).toBe(4);
      expect(count(mine, 429), users[i]).toBe(2);
    }
    const perNode = await Promise.all(
      cluster.urls.map(async (url) => {
        const node = new Redis(url);
        try {
          return (await node.keys('trellis:*')).length;
        } finally {
          node.disconnect();
        }
      }),
    );
    expect(perNode.every((n) => n > 0)).toBe(true);

    const quota = await t.gateway(withPolicies(up.url, policies, ['plan']));
    await ready(quota);
    const q = await burst(`${quota.url}/`, 9, { 'x-user': 'quota-user' });
    expect(count(q, 200)).toBe(6);
    expect(count(q, 429)).toBe(3);
  }, 60_000);
});
