/**
 * `rate-limit`: one or more limits (10/s and 1000/day, say), each GCRA or token bucket, counted per key. Every
 * limit is checked and the most restrictive decides; a refused request spends no limit's budget. Locally a check
 * is a Map lookup and a few float operations per limit; with Redis it is one script run.
 */
import { z } from 'zod';
import { duration } from '../../config/primitives.js';
import type { LocalReply, RequestStage, ResponseStage, StageContext } from '../../proxy/stage.js';
import { type PolicyCompileContext, type PolicyKind, PolicyPhase, type PolicyStages } from '../policy.js';
import { type Cell, compileLimit, type Limit, remaining, take, untilFull, waitFor } from './algorithms.js';
import { limitItem, policyItem, retryAfter, sfString } from './headers.js';
import { keyName, keyReader } from './keys.js';
import { LocalStore } from './local-store.js';
import { keptRedisStore, rateArgs } from './redis-store.js';
import { keySchema, periodText, storeFields, storeIssue } from './schema.js';

const limitSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,63}$/, { message: 'expected 1-63 letters, digits, ".", "_" or "-"' })
    .optional()
    .describe(
      'Names the limit in `RateLimit-Policy` / `RateLimit` and in the 429 detail. Absent: `<requests>-per-<per>`.',
    ),
  requests: z.number().int().min(1).max(1_000_000_000).describe('Requests allowed per `per`.'),
  per: duration
    .refine((ms) => ms >= 1, { message: 'expected a period of at least 1ms' })
    .describe('The period, such as `1s`, `1m`, `24h`.'),
  burst: z
    .number()
    .int()
    .min(1)
    .max(1_000_000_000)
    .optional()
    .describe(
      'Most requests let through at once after a quiet spell (the bucket size). Absent: `requests`. GCRA then spreads the rest evenly (one every `per`/`requests`); a token bucket refills `requests` at once every `per`.',
    ),
});

const schema = z
  .strictObject({
    key: keySchema.default('consumer'),
    algorithm: z
      .enum(['gcra', 'token-bucket'])
      .default('gcra')
      .describe(
        '`gcra` (generic cell rate algorithm): a continuous refill, one request every `per`/`requests`, bursts up to `burst`. `token-bucket`: `requests` tokens added at once every `per`, up to `burst` (as Envoy’s local rate limit). See docs/rate-limits.md.',
      ),
    limits: z
      .array(limitSchema)
      .min(1)
      .max(8)
      .describe(
        'Every limit is checked; the most restrictive decides, and a refused request spends none of them.',
      ),
    ...storeFields,
  })
  .refine(storeIssue, {
    path: ['redis'],
    message: 'store: redis needs `redis: { url: ... }` or `redis: { cluster: [...] }`',
  })
  .refine((c) => new Set(c.limits.map((l) => limitId(l))).size === c.limits.length, {
    path: ['limits'],
    message: 'expected limits with different names (or different requests/per when unnamed)',
  })
  .describe('Rate limits per consumer, client address, header, route or globally: 429 `rate_limited`.');

export type RateLimitConfig = z.output<typeof schema>;

function limitId(l: { name?: string | undefined; requests: number; per: number }): string {
  return l.name ?? `${l.requests}-per-${periodText(l.per)}`;
}

export const rateLimitPolicy: PolicyKind<RateLimitConfig> = {
  type: 'rate-limit',
  phase: PolicyPhase.rateLimit,
  schema,
  compile: compileRateLimit,
};

function compileRateLimit(cfg: RateLimitConfig, ctx: PolicyCompileContext): PolicyStages {
  if (!storeIssue(cfg)) throw new Error(`${ctx.source}: store: redis needs redis.url or redis.cluster`);
  const limits = cfg.limits.map((l) =>
    compileLimit(limitId(l), cfg.algorithm, l.requests, l.per, l.burst ?? l.requests),
  );
  const kn = keyName(cfg.key);
  const ids = limits.map((l) => sfString(l.id));
  const policyHeader = limits.map((l) => policyItem(l.id, l.requests, l.per)).join(', ');
  const headers = cfg.headers;
  const name = ctx.name;

  const limited = (i: number, wait: number): LocalReply => {
    const h: Record<string, string> = { 'retry-after': retryAfter(wait) };
    if (headers !== 'none') {
      h['ratelimit-policy'] = policyHeader;
      h.ratelimit = limitItem(ids[i]!, 0, wait);
    }
    return {
      kind: 'error',
      code: 'rate_limited',
      detail: `policy ${name}: limit "${limits[i]!.id}" is used up; retry in ${h['retry-after']}s`,
      headers: h,
    };
  };

  // The RateLimit value of each allowed request, for the response stage (headers: always).
  const pending = headers === 'always' && !ctx.shadow ? new WeakMap<StageContext, string>() : undefined;
  const response: ResponseStage | undefined =
    pending === undefined
      ? undefined
      : {
          name: `rate-limit:${name}`,
          onResponse: function addRateLimitHeaders(_status, out, sc) {
            const v = pending.get(sc);
            if (v === undefined) return;
            pending.delete(sc);
            out.push('ratelimit-policy', policyHeader, 'ratelimit', v);
          },
        };

  const readKey = keyReader(cfg.key);
  let request: RequestStage;
  if (cfg.store === 'local') {
    const stores = limits.map((l) => {
      const s = ctx.keep(`local:${kn}:${l.tag}`, () => new LocalStore(cfg.maxKeys));
      s.maxKeys = cfg.maxKeys;
      return s;
    });
    request = localStage(name, limits, stores, readKey, limited, pending, ids);
  } else {
    const r = cfg.redis!;
    const { store, health } = keptRedisStore(ctx, r, name, 'rate-limit');
    const prefix = `${r.keyPrefix}{${name}:`;
    const suffixes = limits.map((l) => `}:${l.tag}`);
    const args = rateArgs(limits);
    const mode = cfg.onStoreError;
    const unavailable: LocalReply = {
      kind: 'error',
      code: 'rate_limit_unavailable',
      detail: `policy ${name}: the rate-limit store did not answer`,
    };
    request = {
      name: `rate-limit:${name}`,
      onRequest: function checkRedisRateLimit(sc) {
        const key = readKey(sc);
        const keys = suffixes.map((s) => prefix + key + s);
        return store.rate(keys, args).then(
          (r) => {
            health.ok(mode);
            if (r[0] === 0) return limited(r[4], r[1]);
            if (pending !== undefined) pending.set(sc, limitItem(ids[r[4]]!, r[2], r[3]));
            return undefined;
          },
          (err) => {
            health.failed(err, mode);
            return mode === 'deny' ? unavailable : undefined;
          },
        );
      },
    };
  }
  return {
    request,
    ...(response === undefined ? {} : { response }),
  };
}

function localStage(
  name: string,
  limits: readonly Limit[],
  stores: readonly LocalStore[],
  readKey: (sc: StageContext) => string,
  limited: (i: number, wait: number) => LocalReply,
  pending: WeakMap<StageContext, string> | undefined,
  ids: readonly string[],
): RequestStage {
  const n = limits.length;
  // Reused by every check: a check runs to its end synchronously.
  const cells: (Cell | undefined)[] = new Array(n).fill(undefined);
  return {
    name: `rate-limit:${name}`,
    onRequest: function checkLocalRateLimit(sc) {
      const key = readKey(sc);
      const now = performance.now();
      let wait = 0;
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const c = stores[i]!.get(key);
        cells[i] = c;
        const w = waitFor(limits[i]!, c, now);
        if (w > wait) {
          wait = w;
          worst = i;
        }
      }
      if (wait > 0) return limited(worst, wait);
      let least = Number.POSITIVE_INFINITY;
      let leastAt = 0;
      for (let i = 0; i < n; i++) {
        const l = limits[i]!;
        const c = cells[i] ?? stores[i]!.cell(key, now);
        cells[i] = undefined;
        take(l, c, now);
        if (pending !== undefined) {
          const left = remaining(l, c, now);
          if (left < least) {
            least = left;
            leastAt = i;
          }
        }
      }
      if (pending !== undefined) {
        const c = stores[leastAt]!.get(key);
        pending.set(sc, limitItem(ids[leastAt]!, least, untilFull(c, now)));
      }
      return undefined;
    },
  };
}
