/** Config pieces the `rate-limit` and `quota` kinds share: what they count by, and where they keep counts. */
import { z } from 'zod';
import { duration, headerName } from '../../config/primitives.js';
import { CelCompileError, compileCelString } from '../authz/cel.js';

const celKey = z.string().superRefine((src, ctx) => {
  try {
    compileCelString(src);
  } catch (err) {
    if (!(err instanceof CelCompileError)) throw err;
    ctx.addIssue({ code: 'custom', message: err.message });
  }
});

export const keySchema = z
  .union([
    z.enum(['consumer', 'client-ip', 'route', 'global']),
    z.strictObject({
      header: headerName.describe('Request header whose value is the key (a tenant id, say).'),
    }),
    z.strictObject({
      cel: celKey.describe(
        'A CEL expression giving a string, over the variables of `authz` conditions (request, consumer, claims, scopes, client): `consumer.metadata.tenant`, `request.headers["x-tenant"] + ":" + request.method`. Checked when the config loads.',
      ),
    }),
  ])
  .describe(
    'What is counted separately. `consumer`: the authenticated consumer, and for anonymous requests the client address. `client-ip`: the client address (through `trustedProxies`). `{ header: NAME }`: the value of that header, and the client address when it is absent. `{ cel: EXPR }`: the string a CEL expression gives, and the client address when it fails (a missing header or claim). `route`: one budget per route the policy is attached to. `global`: one budget for everything the policy sees.',
  );

const redisUrl = z.string().regex(/^rediss?:\/\/\S+$/, {
  message: 'expected a URL such as "redis://127.0.0.1:6379" or "rediss://host:6380/1"',
});

export const redisSchema = z
  .strictObject({
    url: redisUrl
      .optional()
      .describe(
        '`redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. A URL with a password belongs in `${env:NAME}` or `${file:PATH}`.',
      ),
    cluster: z
      .array(
        redisUrl.refine((u) => /^rediss?:\/\/[^/]+\/?(0\/?)?$/.test(u), {
          message: 'expected a node URL without a database (a Redis Cluster has only database 0)',
        }),
      )
      .min(1)
      .max(64)
      .optional()
      .describe(
        'Instead of `url`: seed nodes of a Redis Cluster (`redis://[user:password@]host:port`, or `rediss://`; the rest of the cluster is discovered). The keys of one subject share a hash slot, so a decision stays one script run on one node.',
      ),
    timeout: duration
      .prefault(50)
      .refine((ms) => ms >= 1, { message: 'expected a timeout of at least 1ms' })
      .describe('Longest wait for one check; past it `onStoreError` decides.'),
    keyPrefix: z
      .string()
      .regex(/^[\x21-\x7e]{0,64}$/, { message: 'expected up to 64 visible ASCII characters' })
      .refine((p) => !p.includes('{') && !p.includes('}'), {
        message: 'expected no braces (Trellis puts the hash tag of each key, `{...}`, after the prefix)',
      })
      .default('trellis:')
      .describe('Prefix of every Redis key Trellis writes.'),
  })
  .refine((r) => (r.url === undefined) !== (r.cluster === undefined), {
    message: 'expected exactly one of `url` (one Redis) and `cluster` (Redis Cluster seed nodes)',
  })
  .describe(
    'The Redis (or Redis Cluster) that holds the counts (`store: redis`). One connection per policy (per node in a cluster), kept across reloads.',
  );

export const storeFields = {
  store: z
    .enum(['local', 'redis'])
    .default('local')
    .describe(
      '`local`: in this process, exact, and per worker (each of `--workers N` counts on its own). `redis`: shared by every worker and gateway that uses the same Redis, exact across them; needs `redis`.',
    ),
  redis: redisSchema.optional(),
  maxKeys: z
    .number()
    .int()
    .min(1)
    .max(10_000_000)
    .default(100_000)
    .describe(
      '`local`: most keys remembered per limit. At the cap, keys whose budget is full again go first, then the oldest keys (which start again with a full budget).',
    ),
  onStoreError: z
    .enum(['allow', 'deny'])
    .default('allow')
    .describe(
      '`redis`: what a check that Redis did not answer in time does. `allow` lets the request through uncounted; `deny` refuses it with 503 `rate_limit_unavailable`. Either way it is counted (`trellis_rate_limit_store_errors_total`) and logged at most once per 10 s.',
    ),
  headers: z
    .enum(['limited', 'always', 'none'])
    .default('limited')
    .describe(
      '`RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers): on refused requests only (`limited`), on every response (`always`), or never (`none`; `Retry-After` is always sent with a 429).',
    ),
};

/** Shared checks: `store: redis` needs `redis`. */
export function storeIssue(c: { store: string; redis?: unknown }): boolean {
  return c.store !== 'redis' || c.redis !== undefined;
}

/** A limit's period as config text: 1s, 15m, 24h, 250ms (for default policy identifiers). */
export function periodText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
