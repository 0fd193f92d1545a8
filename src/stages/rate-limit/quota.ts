/**
 * `quota`: a count per key (usually the consumer) over a calendar period in UTC: this hour, today, this ISO week
 * (from Monday), this month. It starts again at the period's boundary, and a refused request is not counted.
 * With `store: redis` the counts are Redis's (one INCR-style script per request) and outlive gateway restarts;
 * locally they live in this process (per worker) and are lost on restart.
 */
import { z } from 'zod';
import type { LocalReply, ResponseStage, StageContext } from '../../proxy/stage.js';
import { type PolicyCompileContext, type PolicyKind, PolicyPhase, type PolicyStages } from '../policy.js';
import { limitItem, retryAfter, sfString } from './headers.js';
import { keyName, keyReader } from './keys.js';
import { LocalStore } from './local-store.js';
import { keptRedisStore } from './redis-store.js';
import { keySchema, storeFields, storeIssue } from './schema.js';

export type Period = 'hour' | 'day' | 'week' | 'month';

const schema = z
  .strictObject({
    key: keySchema.default('consumer'),
    limit: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).describe('Requests allowed per period.'),
    period: z
      .enum(['hour', 'day', 'week', 'month'])
      .describe('The calendar period, in UTC: `hour`, `day`, `week` (ISO, from Monday) or `month`.'),
    ...storeFields,
  })
  .refine(storeIssue, {
    path: ['redis'],
    message: 'store: redis needs `redis: { url: ... }` or `redis: { cluster: [...] }`',
  })
  .describe('A count per consumer per hour, day, week or month (UTC): 429 `quota_exceeded`.');

export type QuotaConfig = z.output<typeof schema>;

export const quotaPolicy: PolicyKind<QuotaConfig> = {
  type: 'quota',
  phase: PolicyPhase.rateLimit,
  schema,
  compile: compileQuota,
};

const DAY = 86_400_000;

/** The calendar window around `now` (unix ms, UTC): [start, end). */
export function calendarWindow(period: Period, now: number): { start: number; end: number } {
  switch (period) {
    case 'hour': {
      const start = now - (now % 3_600_000);
      return { start, end: start + 3_600_000 };
    }
    case 'day': {
      const start = now - (now % DAY);
      return { start, end: start + DAY };
    }
    case 'week': {
      // 1970-01-01 was a Thursday: days since the epoch + 3, mod 7, is days since Monday.
      const day = Math.floor(now / DAY);
      const start = (day - ((day + 3) % 7)) * DAY;
      return { start, end: start + 7 * DAY };
    }
    case 'month': {
      const d = new Date(now);
      const y = d.getUTCFullYear();
      const m = d.getUTCMonth();
      return { start: Date.UTC(y, m, 1), end: Date.UTC(y, m + 1, 1) };
    }
  }
}

function compileQuota(cfg: QuotaConfig, ctx: PolicyCompileContext): PolicyStages {
  if (!storeIssue(cfg)) throw new Error(`${ctx.source}: store: redis needs redis.url or redis.cluster`);
  const name = ctx.name;
  const limit = cfg.limit;
  // The policy's name identifies the quota in RateLimit-Policy / RateLimit.
  const quoted = sfString(name);
  const headers = cfg.headers;
  const readKey = keyReader(cfg.key);

  // The current window and its RateLimit-Policy value, recomputed when the period turns.
  let win = calendarWindow(cfg.period, Date.now());
  let policyHeader = '';
  const windowAt = (now: number) => {
    if (now < win.end && now >= win.start && policyHeader !== '') return win;
    win = calendarWindow(cfg.period, now);
    policyHeader = `${quoted};q=${limit};w=${Math.round((win.end - win.start) / 1000)}`;
    return win;
  };
  windowAt(Date.now());

  const exceeded = (count: number, now: number, end: number): LocalReply => {
    const h: Record<string, string> = { 'retry-after': retryAfter(end - now) };
    if (headers !== 'none') {
      h['ratelimit-policy'] = policyHeader;
      h.ratelimit = limitItem(quoted, 0, end - now);
    }
    return {
      kind: 'error',
      code: 'quota_exceeded',
      detail: `policy ${name}: ${count} of ${limit} requests this ${cfg.period} (UTC) used; it starts again in ${h['retry-after']}s`,
      headers: h,
    };
  };

  const pending = headers === 'always' && !ctx.shadow ? new WeakMap<StageContext, string>() : undefined;
  const response: ResponseStage | undefined =
    pending === undefined
      ? undefined
      : {
          name: `quota:${name}`,
          onResponse: function addQuotaHeaders(_status, out, sc) {
            const v = pending.get(sc);
            if (v === undefined) return;
            pending.delete(sc);
            out.push('ratelimit-policy', policyHeader, 'ratelimit', v);
          },
        };

  let onRequest: (sc: StageContext) => ReturnType<NonNullable<PolicyStages['request']>['onRequest']>;
  if (cfg.store === 'local') {
    // Cell: `a` the count, `b` the window it counts, `fresh` the window's end (then it can be forgotten).
    const store = ctx.keep(`local:${keyName(cfg.key)}:${cfg.period}`, () => new LocalStore(cfg.maxKeys));
    store.maxKeys = cfg.maxKeys;
    onRequest = function checkLocalQuota(sc) {
      const now = Date.now();
      const w = windowAt(now);
      const key = readKey(sc);
      const c = store.get(key);
      const used = c !== undefined && c.b === w.start ? c.a : 0;
      if (used >= limit) return exceeded(used, now, w.end);
      const cell = c ?? store.cell(key, now);
      cell.a = used + 1;
      cell.b = w.start;
      cell.fresh = w.end;
      if (pending !== undefined) pending.set(sc, limitItem(quoted, limit - cell.a, w.end - now));
      return undefined;
    };
  } else {
    const r = cfg.redis!;
    const { store, health } = keptRedisStore(ctx, r, name, 'quota');
    const prefix = `${r.keyPrefix}{${name}:`;
    const suffix = `}:q:${cfg.period}:`;
    const mode = cfg.onStoreError;
    const unavailable: LocalReply = {
      kind: 'error',
      code: 'rate_limit_unavailable',
      detail: `policy ${name}: the quota store did not answer`,
    };
    onRequest = function checkRedisQuota(sc) {
      const now = Date.now();
      const w = windowAt(now);
      return store.quota(prefix + readKey(sc) + suffix + w.start, limit, w.end).then(
        (res) => {
          health.ok(mode);
          if (res[0] === 0) return exceeded(res[1], now, w.end);
          if (pending !== undefined)
            pending.set(sc, limitItem(quoted, Math.max(0, limit - res[1]), w.end - now));
          return undefined;
        },
        (err) => {
          health.failed(err, mode);
          return mode === 'deny' ? unavailable : undefined;
        },
      );
    };
  }
  return {
    request: { name: `quota:${name}`, onRequest },
    ...(response === undefined ? {} : { response }),
  };
}
