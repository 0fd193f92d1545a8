/** The `jwt` policy kind: compiles issuers and keys once, then each request is a cache lookup or a verification. */
import type { RequestStage, StageContext, StageResult } from '../../proxy/stage.js';
import { compileIdentity, removeHeaders, tokenInvalid, tokenMissing } from '../auth/identity.js';
import { compileSources, withoutQueryParams } from '../auth/token-source.js';
import { type PolicyCompileContext, type PolicyKind, PolicyPhase, type PolicyStages } from '../policy.js';
import { RemoteKeySet } from './jwks.js';
import {
  DEFAULT_HMAC_ALGORITHMS,
  DEFAULT_PUBLIC_ALGORITHMS,
  publicKeyFromJwk,
  publicKeyFromPem,
  secretKey,
  type VerifyKey,
} from './keys.js';
import { type JwtConfig, type JwtIssuerConfig, jwtSchema } from './schema.js';
import { type IssuerRuntime, JwtVerifier, type Verdict } from './verify.js';

export const jwtPolicy: PolicyKind<JwtConfig> = {
  type: 'jwt',
  phase: PolicyPhase.authn,
  schema: jwtSchema,
  compile(cfg, ctx) {
    return compileJwt(cfg, ctx).policy;
  },
};

/** The compiled policy and its verifier (tests and benchmarks read the verifier's counters). */
export function compileJwt(
  cfg: JwtConfig,
  ctx: PolicyCompileContext,
): { policy: PolicyStages; verifier: JwtVerifier } {
  const identity = compileIdentity(cfg, ctx.consumers);
  const issuers = cfg.issuers.map((iss) => issuerRuntime(iss, ctx));
  const verifier = new JwtVerifier({
    issuers,
    leeway: cfg.leeway / 1000,
    maxTokenBytes: cfg.maxTokenBytes,
    requireExpiry: cfg.requireExpiry,
    maxAge: cfg.maxAge === undefined ? undefined : cfg.maxAge / 1000,
    cacheEntries: cfg.cache.maxEntries,
    cacheTtl: cfg.cache.maxTtl,
    identity,
  });
  const sources = compileSources(cfg.tokenFrom);
  const queryNames = sources.queryNames;
  const realm = cfg.realm;
  const allowMissing = cfg.allowMissing;
  const dropHeaders = cfg.forwardToken
    ? undefined
    : new Set(cfg.tokenFrom.flatMap((s) => ('header' in s ? [s.header.toLowerCase()] : [])));

  const settle = (ctx: StageContext, v: Verdict) => {
    if (typeof v === 'string') return tokenInvalid(realm, v);
    identity.apply(ctx, v);
    return undefined;
  };

  const stage: RequestStage = {
    name: `jwt:${ctx.name}`,
    onRequest(rc: StageContext): StageResult {
      identity.strip(rc);
      const token = sources.read(rc);
      if (queryNames.length > 0 && rc.query !== '') {
        rc.upstreamPath = withoutQueryParams(rc.upstreamPath, queryNames);
        const q = withoutQueryParams(`?${rc.query}`, queryNames);
        rc.query = q === '' ? '' : q.slice(1);
      }
      if (dropHeaders !== undefined) removeHeaders(rc.upstreamHeaders, dropHeaders);
      if (token === undefined) return allowMissing ? undefined : tokenMissing(realm, 'no bearer token');
      const v = verifier.verify(token);
      if (v instanceof Promise) return v.then((r) => settle(rc, r));
      return settle(rc, v);
    },
  };
  return {
    policy: { request: stage },
    verifier,
  };
}

function issuerRuntime(iss: JwtIssuerConfig, ctx: PolicyCompileContext): IssuerRuntime {
  let keys: VerifyKey[] | undefined;
  let remote: RemoteKeySet | undefined;
  let hmac = false;
  if (iss.keys !== undefined) {
    keys = iss.keys.map((k) => {
      if ('pem' in k) return { kid: k.kid, alg: undefined, key: publicKeyFromPem(k.pem) };
      if ('jwk' in k) {
        const j = publicKeyFromJwk(k.jwk);
        return { kid: k.kid ?? j.kid, alg: j.alg, key: j.key };
      }
      hmac = true;
      return { kid: k.kid, alg: undefined, key: secretKey(k.secret, k.encoding) };
    });
  } else {
    const j = iss.jwks!;
    const opts = {
      url: j.url,
      timeout: j.timeout,
      maxBytes: j.maxBytes,
      refreshInterval: j.refreshInterval,
      minRefetchInterval: j.minRefetchInterval,
    };
    // Kept across reloads while the JWKS settings stay the same: keys, timers and the refetch limit carry over.
    remote = ctx.keep(
      `jwks ${JSON.stringify(opts)}`,
      () => new RemoteKeySet(opts),
      (r) => r.close(),
    );
  }
  return {
    issuer: iss.issuer,
    audiences: iss.audiences === undefined ? undefined : new Set(iss.audiences),
    algorithms: iss.algorithms ?? (hmac ? DEFAULT_HMAC_ALGORITHMS : DEFAULT_PUBLIC_ALGORITHMS),
    requiredClaims: iss.requiredClaims,
    keys,
    remote,
  };
}
