/**
 * `introspection`: OAuth2 token introspection (RFC 7662). The token is POSTed to the authorization server with
 * the gateway's client credentials; an `active` answer becomes the request's claims (and consumer, as with jwt).
 * Answers are cached by a SHA-256 of the token: active ones never past the token's `exp` (nor `cache.ttl`),
 * inactive ones for `cache.negativeTtl`. Concurrent requests with the same uncached token share one call.
 * When the server cannot answer, `onError` decides: deny (503 auth_unavailable) or allow (anonymous).
 */
import { z } from 'zod';
import { byteSize, duration } from '../../config/primitives.js';
import type { LocalReply, RequestStage, StageContext, StageResult } from '../../proxy/stage.js';
import { boundedFetch, FetchError, httpUrl } from '../auth/fetch-json.js';
import {
  claimsToHeadersField,
  compileIdentity,
  consumerFields,
  type Identity,
  removeHeaders,
  tokenInvalid,
  tokenMissing,
} from '../auth/identity.js';
import { TokenCache, tokenKey } from '../auth/token-cache.js';
import { compileSources, tokenSourcesField, withoutQueryParams } from '../auth/token-source.js';
import { type PolicyKind, PolicyPhase } from '../policy.js';

export const introspectionSchema = z
  .strictObject({
    url: httpUrl.describe("The authorization server's introspection endpoint."),
    clientId: z.string().min(1).describe("The gateway's client id at the authorization server."),
    clientSecret: z
      .string()
      .min(1)
      .describe('Its secret, from `${env:NAME}` or `${file:PATH}` (never written in the config itself).'),
    clientAuth: z
      .enum(['basic', 'post'])
      .prefault('basic')
      .describe('`basic`: HTTP Basic (client_secret_basic); `post`: in the form body (client_secret_post).'),
    tokenTypeHint: z.string().optional().describe('Sent as `token_type_hint`, such as `access_token`.'),
    audiences: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('An active token must name one of these in `aud`. Absent: not checked.'),
    timeout: duration.prefault('2s').describe('Longest time for one introspection call.'),
    onError: z
      .enum(['deny', 'allow'])
      .prefault('deny')
      .describe(
        'When the server cannot answer (refused, timeout, error status, malformed): `deny` answers 503 `auth_unavailable`; `allow` lets the request on anonymous (no claims).',
      ),
    maxResponseBytes: byteSize.prefault('64KiB').describe('Largest answer read.'),
    tokenFrom: tokenSourcesField,
    maxTokenBytes: byteSize.prefault('8KiB').describe('Longer tokens are refused without a call.'),
    allowMissing: z
      .boolean()
      .prefault(false)
      .describe(
        'Let requests without a token through, anonymous. A token that is present is always checked.',
      ),
    forwardToken: z.boolean().prefault(true).describe('Send the token upstream in its header.'),
    realm: z.string().prefault('trellis').describe('The `realm` of the `WWW-Authenticate` challenge.'),
    claimsToHeaders: claimsToHeadersField,
    ...consumerFields,
    cache: z
      .strictObject({
        maxEntries: z
          .number()
          .int()
          .nonnegative()
          .prefault(10_000)
          .describe('Answers remembered (LRU); 0: none.'),
        ttl: duration.prefault('5m').describe('Longest time an active answer is reused (never past `exp`).'),
        negativeTtl: duration.prefault('10s').describe('How long an inactive answer is reused.'),
      })
      .prefault({})
      .describe('Cache of answers, keyed by a SHA-256 of the token.'),
  })
  .describe('Authenticates requests by OAuth2 token introspection (RFC 7662).');
export type IntrospectionConfig = z.infer<typeof introspectionSchema>;

export const introspectionPolicy: PolicyKind<IntrospectionConfig> = {
  type: 'introspection',
  phase: PolicyPhase.authn,
  schema: introspectionSchema,
  compile(cfg, ctx) {
    const stage = introspectionStage(ctx.name, cfg, ctx.consumers);
    return {
      request: stage,
    };
  },
};

/** A cached answer: the identity of an active token, or why it was refused. */
type Answer = Identity | string;
/** A server failure: not cached. */
interface Failure {
  readonly failure: string;
}

export function introspectionStage(
  policy: string,
  cfg: IntrospectionConfig,
  consumers: ReadonlyMap<string, import('../policy.js').Consumer>,
): RequestStage & { calls: () => number } {
  const identity = compileIdentity(cfg, consumers);
  const sources = compileSources(cfg.tokenFrom);
  const queryNames = sources.queryNames;
  const realm = cfg.realm;
  const cache = new TokenCache<Answer>(cfg.cache.maxEntries);
  const inflight = new Map<string, Promise<Answer | Failure>>();
  const audiences = cfg.audiences === undefined ? undefined : new Set(cfg.audiences);
  const dropHeaders = cfg.forwardToken
    ? undefined
    : new Set(cfg.tokenFrom.flatMap((s) => ('header' in s ? [s.header.toLowerCase()] : [])));
  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  };
  // RFC 6749 §2.3.1: the id and secret are form-encoded before they are joined for Basic.
  if (cfg.clientAuth === 'basic') {
    const id = encodeURIComponent(cfg.clientId);
    const secret = encodeURIComponent(cfg.clientSecret);
    headers.authorization = `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  }
  let calls = 0;

  /** One call, its refusals cached briefly like an inactive answer (a replayed bad token asks once per negativeTtl). */
  async function introspect(token: string): Promise<Answer | Failure> {
    const a = await call(token);
    if (typeof a === 'string') {
      const now = Date.now();
      cache.set(tokenKey(token), a, now + cfg.cache.negativeTtl, now);
    }
    return a;
  }

  async function call(token: string): Promise<Answer | Failure> {
    const form = new URLSearchParams({ token });
    if (cfg.tokenTypeHint !== undefined) form.set('token_type_hint', cfg.tokenTypeHint);
    if (cfg.clientAuth === 'post') {
      form.set('client_id', cfg.clientId);
      form.set('client_secret', cfg.clientSecret);
    }
    calls++;
    let res: Awaited<ReturnType<typeof boundedFetch>>;
    try {
      res = await boundedFetch(cfg.url, {
        method: 'POST',
        headers,
        body: form.toString(),
        timeout: cfg.timeout,
        maxBytes: cfg.maxResponseBytes,
      });
    } catch (err) {
      return { failure: err instanceof FetchError ? `unreachable: ${err.message}` : 'unreachable' };
    }
    if (res.status !== 200) return { failure: `answered ${res.status}` };
    let doc: unknown;
    try {
      doc = JSON.parse(res.body.toString('utf8'));
    } catch {
      return { failure: 'sent an answer that is not JSON' };
    }
    if (
      doc === null ||
      typeof doc !== 'object' ||
      typeof (doc as { active?: unknown }).active !== 'boolean'
    ) {
      return { failure: 'sent an answer without a boolean "active"' };
    }
    const claims = doc as Record<string, unknown>;
    const now = Date.now();
    if (claims.active !== true) return 'token is not active';
    // The server said active; still refuse what it should not have (an expired or future token, a foreign aud).
    const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
    if (exp !== undefined && exp <= now) return 'token expired';
    if (typeof claims.nbf === 'number' && claims.nbf * 1000 > now)
      return 'token not valid yet ("nbf" in the future)';
    if (audiences !== undefined) {
      const aud = claims.aud;
      const ok =
        typeof aud === 'string'
          ? audiences.has(aud)
          : Array.isArray(aud) && aud.some((a) => typeof a === 'string' && audiences.has(a));
      if (!ok) return 'wrong audience';
    }
    const { active: _active, ...rest } = claims;
    const id = identity.resolve(Object.freeze(rest));
    if (typeof id === 'string') return id;
    cache.set(tokenKey(token), id, Math.min(exp ?? Number.POSITIVE_INFINITY, now + cfg.cache.ttl), now);
    return id;
  }

  const settle = (ctx: StageContext, a: Answer | Failure): undefined | LocalReply => {
    if (typeof a === 'string') return tokenInvalid(realm, a);
    if ('failure' in a) {
      if (cfg.onError === 'allow') return undefined;
      return {
        kind: 'error',
        code: 'auth_unavailable',
        detail: `policy "${policy}": authorization server ${a.failure}`,
      };
    }
    identity.apply(ctx, a);
    return undefined;
  };

  return {
    name: `introspection:${policy}`,
    calls: () => calls,
    onRequest(ctx: StageContext): StageResult {
      identity.strip(ctx);
      const token = sources.read(ctx);
      if (queryNames.length > 0 && ctx.query !== '') {
        ctx.upstreamPath = withoutQueryParams(ctx.upstreamPath, queryNames);
        const q = withoutQueryParams(`?${ctx.query}`, queryNames);
        ctx.query = q === '' ? '' : q.slice(1);
      }
      if (dropHeaders !== undefined) removeHeaders(ctx.upstreamHeaders, dropHeaders);
      if (token === undefined) return cfg.allowMissing ? undefined : tokenMissing(realm, 'no bearer token');
      if (token.length > cfg.maxTokenBytes)
        return tokenInvalid(realm, `token larger than ${cfg.maxTokenBytes} bytes`);
      const key = tokenKey(token);
      const hit = cache.get(key, Date.now());
      if (hit !== undefined) return settle(ctx, hit);
      let p = inflight.get(key);
      if (p === undefined) {
        p = introspect(token).finally(() => inflight.delete(key));
        inflight.set(key, p);
      }
      return p.then((a) => settle(ctx, a));
    },
  };
}
