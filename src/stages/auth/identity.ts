/**
 * What a verified token means for the rest of the request, shared by the token policies (jwt, introspection):
 * claims copied into upstream headers (after any client-sent header of those names is removed, so a client can
 * never forge them), and a claim naming a consumer. Worked out once per token and cached with it, so a repeated
 * token costs a header copy, not a claim walk.
 */
import { z } from 'zod';
import { headerName } from '../../config/primitives.js';
import type { LocalReply, StageContext } from '../../proxy/stage.js';
import type { Consumer } from '../policy.js';

export const claimsToHeadersField = z
  .array(
    z.strictObject({
      claim: z
        .string()
        .min(1)
        .describe('Claim name; a dotted path (`realm_access.roles`) reads a nested claim.'),
      header: headerName.describe(
        'Upstream header that gets the value. A header of this name sent by the client is always removed.',
      ),
    }),
  )
  .prefault([])
  .describe(
    'Claims copied into upstream headers: strings as they are, numbers and booleans as text, arrays of strings joined with `,`, anything else as JSON. A claim that is absent (or holds CR, LF or NUL) sends no header.',
  );

export const consumerFields = {
  consumerClaim: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Claim whose value names a consumer in `consumers[]` (often `sub` or `client_id`); that consumer is then the request's. Absent, or the value names no consumer: the request stays anonymous (no consumer) and carries the claims.",
    ),
  unknownConsumer: z
    .enum(['anonymous', 'deny'])
    .prefault('anonymous')
    .describe(
      'When `consumerClaim` names no configured consumer: `anonymous` lets the request on without a consumer (its claims still set), `deny` answers 401 `token_invalid`.',
    ),
};

export interface IdentityConfig {
  claimsToHeaders: ReadonlyArray<{ claim: string; header: string }>;
  consumerClaim?: string | undefined;
  unknownConsumer: 'anonymous' | 'deny';
}

/** What one token resolves to; cached with the token. */
export interface Identity {
  readonly claims: Readonly<Record<string, unknown>>;
  readonly consumer: Consumer | undefined;
  /** Flat [name, value, ...] to add upstream. */
  readonly headers: readonly string[];
}

export interface IdentityMapper {
  /** The identity of verified claims, or a reason to refuse them (unknown consumer with `deny`). */
  resolve(claims: Readonly<Record<string, unknown>>): Identity | string;
  /** Removes client-sent headers of the mapped names; run on every request the policy sees. */
  strip(ctx: StageContext): void;
  /** Sets consumer, claims and headers on the request. */
  apply(ctx: StageContext, id: Identity): void;
}

const NO_HEADERS: readonly string[] = [];

export function compileIdentity(
  cfg: IdentityConfig,
  consumers: ReadonlyMap<string, Consumer>,
): IdentityMapper {
  const mappings = cfg.claimsToHeaders.map((m) => ({
    path: m.claim.split('.'),
    header: m.header.toLowerCase(),
  }));
  const names = new Set(mappings.map((m) => m.header));
  const consumerPath = cfg.consumerClaim?.split('.');
  const deny = cfg.unknownConsumer === 'deny';
  return {
    resolve(claims) {
      let consumer: Consumer | undefined;
      if (consumerPath !== undefined) {
        const v = claimAt(claims, consumerPath);
        consumer = typeof v === 'string' ? consumers.get(v) : undefined;
        if (consumer === undefined && deny) return `claim "${cfg.consumerClaim}" names no known consumer`;
      }
      let headers = NO_HEADERS;
      if (mappings.length > 0) {
        const h: string[] = [];
        for (const m of mappings) {
          const value = headerValue(claimAt(claims, m.path));
          if (value !== undefined) h.push(m.header, value);
        }
        headers = h;
      }
      return { claims, consumer, headers };
    },
    strip: names.size === 0 ? () => {} : (ctx) => removeHeaders(ctx.upstreamHeaders, names),
    apply(ctx, id) {
      ctx.claims = id.claims;
      if (id.consumer !== undefined) ctx.consumer = id.consumer;
      const h = id.headers;
      for (let i = 0; i < h.length; i++) ctx.upstreamHeaders.push(h[i]!);
    },
  };
}

/** The value at a dotted path, or undefined. A claim whose own name has a dot is found too. */
export function claimAt(claims: Readonly<Record<string, unknown>>, path: readonly string[]): unknown {
  if (path.length > 1) {
    const whole = claims[path.join('.')];
    if (whole !== undefined) return whole;
  }
  let v: unknown = claims;
  for (const p of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}

const MAX_HEADER_VALUE = 8192;

function headerValue(v: unknown): string | undefined {
  let s: string;
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') s = v;
  else if (typeof v === 'number' || typeof v === 'boolean') s = String(v);
  else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) s = v.join(',');
  else s = JSON.stringify(v);
  // A claim is attacker-influenced data at one remove: never let it split a header.
  if (s.length > MAX_HEADER_VALUE || /[\r\n\0]/.test(s)) return undefined;
  return s;
}

/** Removes every header in `names` from a flat [name, value, ...] list, in place. */
export function removeHeaders(list: string[], names: ReadonlySet<string>): void {
  let w = 0;
  for (let r = 0; r < list.length; r += 2) {
    if (names.has(list[r]!)) continue;
    if (w !== r) {
      list[w] = list[r]!;
      list[w + 1] = list[r + 1]!;
    }
    w += 2;
  }
  list.length = w;
}

/**
 * The 401 of a token policy. RFC 6750 §3: without a token the challenge carries no error; with a bad one,
 * `error="invalid_token"` and a description. The description is ours (never the token or a claim value).
 */
export function bearerChallenge(realm: string, reason: string | undefined): Record<string, string> {
  const r = quote(realm);
  return {
    'www-authenticate':
      reason === undefined
        ? `Bearer realm="${r}"`
        : `Bearer realm="${r}", error="invalid_token", error_description="${quote(reason)}"`,
  };
}

function quote(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '').replace(/["\\]/g, '\\$&');
}

export function tokenInvalid(realm: string, reason: string): LocalReply {
  return { kind: 'error', code: 'token_invalid', detail: reason, headers: bearerChallenge(realm, reason) };
}

export function tokenMissing(realm: string, what: string): LocalReply {
  return { kind: 'error', code: 'unauthenticated', detail: what, headers: bearerChallenge(realm, undefined) };
}
