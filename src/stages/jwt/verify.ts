/**
 * Checks one JWT: size, shape, algorithm and issuer, time and audience claims (all before any cryptography, so a
 * malformed, expired or foreign token costs a JSON parse), then the key and the signature (jose). A verified
 * token is cached by a SHA-256 of it, so a repeated token costs a hash and a map lookup, synchronously.
 */
import type { KeyObject } from 'node:crypto';
import { compactVerify, errors } from 'jose';
import type { Identity, IdentityMapper } from '../auth/identity.js';
import { TokenCache, tokenKey } from '../auth/token-cache.js';
import { pickKey, type RemoteKeySet } from './jwks.js';
import type { VerifyKey } from './keys.js';

export interface IssuerRuntime {
  readonly issuer: string;
  readonly audiences: ReadonlySet<string> | undefined;
  readonly algorithms: readonly string[];
  readonly requiredClaims: readonly string[];
  readonly keys: readonly VerifyKey[] | undefined;
  readonly remote: RemoteKeySet | undefined;
}

export interface VerifierOptions {
  readonly issuers: readonly IssuerRuntime[];
  /** Seconds. */
  readonly leeway: number;
  readonly maxTokenBytes: number;
  readonly requireExpiry: boolean;
  /** Seconds, or undefined. */
  readonly maxAge: number | undefined;
  readonly cacheEntries: number;
  /** ms. */
  readonly cacheTtl: number;
  readonly identity: IdentityMapper;
  /** Date.now, replaceable in tests. */
  readonly now?: () => number;
}

interface Cached {
  readonly identity: Identity;
  readonly remote: RemoteKeySet | undefined;
  /** The key set's version when verified: a token whose key may have left is checked again. */
  readonly version: number;
}

/** A verified identity, or why the token was refused (safe to show: never the token or a claim value). */
export type Verdict = Identity | string;

const B64URL = /^[A-Za-z0-9_-]+$/;

export class JwtVerifier {
  readonly #opts: VerifierOptions;
  readonly #byIssuer: ReadonlyMap<string, IssuerRuntime>;
  readonly cache: TokenCache<Cached>;
  readonly #now: () => number;
  /** Signature checks done (cache misses that got as far as crypto). */
  verifications = 0;

  constructor(opts: VerifierOptions) {
    this.#opts = opts;
    this.#byIssuer = new Map(opts.issuers.map((i) => [i.issuer, i]));
    this.cache = new TokenCache(opts.cacheEntries);
    this.#now = opts.now ?? Date.now;
  }

  /** A verdict at once when it can be had without waiting (cache hit, early refusal), else a promise of one. */
  verify(token: string): Verdict | Promise<Verdict> {
    const o = this.#opts;
    if (token.length > o.maxTokenBytes) return `token larger than ${o.maxTokenBytes} bytes`;
    const nowMs = this.#now();
    const cacheKey = tokenKey(token);
    const hit = this.cache.get(cacheKey, nowMs);
    if (hit !== undefined && (hit.remote === undefined || hit.remote.version === hit.version))
      return hit.identity;

    const parts = token.split('.');
    // The signature part is looked at after the algorithm, so that an unsigned token is refused as such.
    if (parts.length !== 3 || !B64URL.test(parts[0]!) || !B64URL.test(parts[1]!)) {
      return 'malformed token (expected three base64url parts)';
    }
    const header = decodeJson(parts[0]!);
    const claims = decodeJson(parts[1]!);
    if (header === undefined || claims === undefined)
      return 'malformed token (header or payload is not a JSON object)';
    const alg = header.alg;
    if (typeof alg !== 'string') return 'malformed token (no "alg")';
    if (alg.toLowerCase() === 'none') return 'unsigned token (alg "none") refused';
    if (!B64URL.test(parts[2]!)) return 'malformed token (no signature)';
    const iss = claims.iss;
    if (typeof iss !== 'string') return 'token has no "iss" claim';
    const issuer = this.#byIssuer.get(iss);
    if (issuer === undefined) return 'token issuer not accepted';
    if (!issuer.algorithms.includes(alg)) return `algorithm ${safe(alg)} not allowed for this issuer`;
    const why = this.#checkClaims(claims, issuer, nowMs / 1000);
    if (why !== undefined) return why;

    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    if (issuer.keys !== undefined) {
      const key = pickKey(issuer.keys, kid, alg);
      if (key === undefined)
        return kid === undefined ? 'token has no "kid" and no single key fits' : 'unknown key id';
      return this.#signature(token, key.key, alg, claims, issuer, cacheKey, nowMs);
    }
    const remote = issuer.remote!;
    const key = remote.find(kid, alg);
    if (key !== undefined) return this.#signature(token, key.key, alg, claims, issuer, cacheKey, nowMs);
    // Unknown key: maybe a rotation we have not seen. One refetch per interval, shared by everyone asking.
    const pending = remote.refetch();
    if (pending === undefined) return remote.loaded ? 'unknown key id' : keysUnavailable(remote);
    return pending.then(() => {
      const k = remote.find(kid, alg);
      if (k === undefined) return remote.loaded ? 'unknown key id' : keysUnavailable(remote);
      return this.#signature(token, k.key, alg, claims, issuer, cacheKey, nowMs);
    });
  }

  #checkClaims(c: Record<string, unknown>, issuer: IssuerRuntime, now: number): string | undefined {
    const o = this.#opts;
    const leeway = o.leeway;
    const { exp, nbf, iat } = c;
    if (exp !== undefined) {
      if (typeof exp !== 'number') return 'malformed "exp" claim';
      if (now > exp + leeway) return 'token expired';
    } else if (o.requireExpiry) return 'token has no "exp" claim';
    if (nbf !== undefined) {
      if (typeof nbf !== 'number') return 'malformed "nbf" claim';
      if (now + leeway < nbf) return 'token not valid yet ("nbf" in the future)';
    }
    if (iat !== undefined) {
      if (typeof iat !== 'number') return 'malformed "iat" claim';
      if (now + leeway < iat) return 'token issued in the future ("iat")';
      if (o.maxAge !== undefined && now - iat > o.maxAge + leeway)
        return 'token too old ("iat" beyond maxAge)';
    } else if (o.maxAge !== undefined) return 'token has no "iat" claim';
    if (issuer.audiences !== undefined) {
      const aud = c.aud;
      const ok =
        typeof aud === 'string'
          ? issuer.audiences.has(aud)
          : Array.isArray(aud) && aud.some((a) => typeof a === 'string' && issuer.audiences!.has(a));
      if (!ok) return 'wrong audience';
    }
    for (const name of issuer.requiredClaims) {
      if (c[name] === undefined) return `token has no "${safe(name)}" claim`;
    }
    return undefined;
  }

  async #signature(
    token: string,
    key: KeyObject,
    alg: string,
    claims: Record<string, unknown>,
    issuer: IssuerRuntime,
    cacheKey: string,
    nowMs: number,
  ): Promise<Verdict> {
    this.verifications++;
    try {
      await compactVerify(token, key, { algorithms: [alg] });
    } catch (err) {
      if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad signature';
      if (err instanceof errors.JOSEAlgNotAllowed)
        return `algorithm ${safe(alg)} not allowed for this issuer`;
      // A crit header we do not understand, a key/algorithm mismatch, a malformed segment.
      return 'token could not be verified';
    }
    const id = this.#opts.identity.resolve(Object.freeze(claims));
    if (typeof id === 'string') return id;
    const exp =
      typeof claims.exp === 'number' ? (claims.exp + this.#opts.leeway) * 1000 : Number.POSITIVE_INFINITY;
    const remote = issuer.remote;
    this.cache.set(
      cacheKey,
      { identity: id, remote, version: remote?.version ?? 0 },
      Math.min(exp, nowMs + this.#opts.cacheTtl),
      nowMs,
    );
    return id;
  }
}

function keysUnavailable(remote: RemoteKeySet): string {
  return `signing keys unavailable (JWKS fetch failed: ${remote.lastError ?? 'pending'})`;
}

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** A token-supplied name in a reason: short and plain, so a reply never carries attacker text of any length. */
function safe(s: string): string {
  return s.length <= 32 && /^[A-Za-z0-9._:-]+$/.test(s) ? s : '(invalid)';
}
