import { createRequire } from 'node:module';
import type { Cluster, RedisOptions as IoRedisOptions, Redis } from 'ioredis';
import type { PolicyCompileContext } from '../policy.js';
import type { Limit } from './algorithms.js';
import { StoreHealth } from './events.js';

// Loaded on first use: ioredis adds ~25 MB of RSS to a process, which a gateway without a Redis-backed policy
// should not pay.
let ioredis: { Redis: typeof Redis; Cluster: typeof Cluster } | undefined;
function ioredisModule(): { Redis: typeof Redis; Cluster: typeof Cluster } {
  ioredis ??= createRequire(import.meta.url)('ioredis') as { Redis: typeof Redis; Cluster: typeof Cluster };
  return ioredis;
}

/**
 * The Redis store: every decision is one script run (EVALSHA; ioredis sends EVAL once per connection, and again
 * after a NOSCRIPT, when Redis restarted), atomic in Redis, so gateways and workers sharing a Redis share one
 * budget exactly. Time is Redis's own (TIME), so the gateways' clocks need not agree. Each limit's state is one
 * key with a TTL that ends when the bucket is full again: an idle key costs Redis nothing.
 *
 * The arithmetic is algorithms.ts's, in Lua: a change there must be made here.
 */

// KEYS: one per limit. ARGV: per limit, 5 values: algorithm (0 GCRA, 1 token bucket), interval, tolerance,
// requests, per (ms), burst. Returns {allowed, wait ms, remaining, ms until full, index of the deciding limit}.
const RATE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = #KEYS
local wait, worst = 0, 1
local s1, s2 = {}, {}
for i = 1, n do
  local o = (i - 1) * 6
  local alg, interval, tol = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local req, per, burst = tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5]), tonumber(ARGV[o + 6])
  local raw = redis.call('GET', KEYS[i])
  local w = 0
  if alg == 0 then
    local tat = now
    if raw then
      local v = tonumber(raw)
      if v > now then tat = v end
    end
    s1[i] = tat
    w = tat + interval - now - tol
  else
    local tokens, last = burst, now
    if raw then
      local sp = string.find(raw, ' ', 1, true)
      tokens, last = tonumber(string.sub(raw, 1, sp - 1)), tonumber(string.sub(raw, sp + 1))
      local k = math.floor((now - last) / per)
      if k > 0 then
        tokens = math.min(burst, tokens + k * req)
        last = last + k * per
      end
    end
    s1[i], s2[i] = tokens, last
    if tokens < 1 then w = last + per - now end
  end
  if w > 0.000001 and w > wait then wait, worst = w, i end
end
if wait > 0 then
  return {0, math.ceil(wait), 0, math.ceil(wait), worst - 1}
end
local best, bestFull, bestIdx = nil, 0, 0
for i = 1, n do
  local o = (i - 1) * 6
  local alg, interval, tol = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local req, per, burst = tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5]), tonumber(ARGV[o + 6])
  local left, full
  if alg == 0 then
    local tat = s1[i] + interval
    full = tat - now
    left = math.floor((tol - full) / interval + 0.000001)
    redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', math.ceil(full) + 1)
  else
    local tokens, last = s1[i] - 1, s2[i]
    full = last + math.ceil((burst - tokens) / req) * per - now
    left = math.floor(tokens)
    redis.call('SET', KEYS[i], string.format('%.17g %.17g', tokens, last), 'PX', math.ceil(full) + 1)
  end
  if left < 0 then left = 0 end
  if best == nil or left < best then best, bestFull, bestIdx = left, full, i - 1 end
end
return {1, 0, best, math.ceil(bestFull), bestIdx}
`;

// KEYS[1]: the counter of one calendar window. ARGV: limit, the window's end (unix ms, for PEXPIREAT).
// Returns {allowed, count after this request}.
const QUOTA_LUA = `
local limit = tonumber(ARGV[1])
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if c >= limit then return {0, c} end
c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return {1, c}
`;

/** A decision from Redis: [allowed 0|1, wait ms, remaining, ms until full, index of the deciding limit]. */
export type RateReply = [number, number, number, number, number];

interface ScriptCommands {
  trellisRate(numKeys: number, ...args: (string | number)[]): Promise<RateReply>;
  trellisQuota(key: string, limit: number, endsAt: number): Promise<[number, number]>;
}

export interface RedisOptions {
  /** One Redis; or `cluster`. */
  readonly url?: string | undefined;
  /** Seed nodes of a Redis Cluster. */
  readonly cluster?: readonly string[] | undefined;
  /** Per-check timeout, ms. */
  readonly timeout: number;
}

/**
 * One Redis connection for a policy, kept across reloads (`ctx.keep`). Commands never queue while the connection
 * is down: they fail at once, and the policy's `onStoreError` decides. ioredis reconnects in the background.
 */
export class RedisStore {
  readonly client: Redis | Cluster;
  readonly #scripts: ScriptCommands;
  /** `host:port` (the first seed node of a cluster) for log lines: never the URL, which may carry a password. */
  readonly where: string;

  constructor(opts: RedisOptions) {
    const { Redis: RedisClass, Cluster: ClusterClass } = ioredisModule();
    const common = {
      commandTimeout: opts.timeout,
      connectTimeout: Math.max(opts.timeout, 1000),
      maxRetriesPerRequest: 0,
      connectionName: 'trellis',
      // Auto-pipelining (one write for the checks of one tick) measured no better at 50 connections (0.58 of
      // plain proxying against 0.64 without, within the noise: docs/benchmarks.md), so it stays off.
      enableAutoPipelining: false,
    } satisfies IoRedisOptions;
    const backoff = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000);
    if (opts.cluster !== undefined) {
      const seeds = opts.cluster.map(clusterNode);
      const first = seeds[0]!;
      this.client = new ClusterClass(
        seeds.map((n) => ({ host: n.host, port: n.port })),
        {
          enableOfflineQueue: false,
          clusterRetryStrategy: backoff,
          // A moved slot is followed at once; a cluster that keeps moving it is a failed check, not a loop.
          maxRedirections: 4,
          retryDelayOnMoved: 0,
          slotsRefreshTimeout: Math.max(opts.timeout, 1000),
          redisOptions: { ...common, ...first.auth },
        },
      );
      this.where = `${first.host}:${first.port} (cluster)`;
    } else {
      const client = new RedisClass(opts.url!, {
        ...common,
        enableOfflineQueue: false,
        retryStrategy: backoff,
      });
      const o = client.options;
      this.client = client;
      this.where = o.path ?? `${o.host}:${o.port}`;
    }
    // Errors are the policy's to report (rate limited); without a listener ioredis would print each one.
    this.client.on('error', () => {});
    this.client.defineCommand('trellisRate', { lua: RATE_LUA });
    this.client.defineCommand('trellisQuota', { lua: QUOTA_LUA, numberOfKeys: 1 });
    this.#scripts = this.client as unknown as ScriptCommands;
  }

  /** One decision over all `limits` for `keys` (one Redis key per limit, same order). */
  rate(keys: readonly string[], args: readonly (string | number)[]): Promise<RateReply> {
    return this.#scripts.trellisRate(keys.length, ...keys, ...args);
  }

  quota(key: string, limit: number, endsAt: number): Promise<[number, number]> {
    return this.#scripts.trellisQuota(key, limit, endsAt);
  }

  close(): void {
    this.client.disconnect();
  }
}

/** A cluster seed URL as ioredis wants it: host, port, and the credentials and TLS every node connection uses. */
function clusterNode(url: string): { host: string; port: number; auth: Partial<IoRedisOptions> } {
  const u = new URL(url);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const auth: Partial<IoRedisOptions> = {};
  if (u.username !== '') auth.username = decodeURIComponent(u.username);
  if (u.password !== '') auth.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') auth.tls = {};
  return { host, port: u.port === '' ? 6379 : Number(u.port), auth };
}

/** The script arguments of a policy's limits, computed once per config. */
export function rateArgs(limits: readonly Limit[]): (string | number)[] {
  const out: (string | number)[] = [];
  for (const l of limits) {
    out.push(
      l.algorithm === 'gcra' ? 0 : 1,
      String(l.interval),
      String(l.tolerance),
      l.requests,
      l.per,
      l.burst,
    );
  }
  return out;
}

/**
 * The Redis store of a rate-limit or quota policy and its health, both kept across reloads (ctx.keep): the same
 * URL (or cluster seeds) and timeout hand back the same connection.
 */
export function keptRedisStore(
  ctx: PolicyCompileContext,
  r: {
    readonly url?: string | undefined;
    readonly cluster?: readonly string[] | undefined;
    readonly timeout: number;
  },
  policy: string,
  type: 'rate-limit' | 'quota',
): { store: RedisStore; health: StoreHealth } {
  const store = ctx.keep(
    `redis:${r.url ?? r.cluster!.join(',')}|${r.timeout}`,
    () => new RedisStore({ url: r.url, cluster: r.cluster, timeout: r.timeout }),
    (s) => s.close(),
  );
  const health = ctx.keep(`health:${store.where}`, () => new StoreHealth(policy, type, store.where));
  return { store, health };
}
