/** The `jwt` policy's fields. Key material is checked here, so a bad key is a config error with its path. */
import { z } from 'zod';
import { byteSize, duration } from '../../config/primitives.js';
import { httpUrl } from '../auth/fetch-json.js';
import { claimsToHeadersField, consumerFields } from '../auth/identity.js';
import { tokenSourcesField } from '../auth/token-source.js';
import {
  ALGORITHMS,
  describeKey,
  isHmac,
  keyServes,
  minSecretBytes,
  publicKeyFromJwk,
  publicKeyFromPem,
  secretKey,
} from './keys.js';

const kid = z.string().min(1).optional().describe('Key id the tokens name in their `kid` header.');

export const jwtKeySchema = z.union([
  z
    .strictObject({
      kid,
      pem: z
        .string()
        .min(1)
        .describe(
          'A PEM public key or certificate, usually `${file:keys/issuer.pem}`. Private keys are refused.',
        ),
    })
    .describe('A public key in PEM.'),
  z
    .strictObject({
      kid,
      jwk: z
        .union([z.string().min(1), z.record(z.string(), z.unknown())])
        .describe('A public JWK, as an object or JSON text (`${file:keys/issuer.jwk.json}`).'),
    })
    .describe('A public key as a JWK.'),
  z
    .strictObject({
      kid,
      secret: z
        .string()
        .min(1)
        .describe(
          'An HMAC secret, from `${env:NAME}` or `${file:PATH}`; at least as long as the hash (32 bytes for HS256).',
        ),
      encoding: z.enum(['utf8', 'base64', 'base64url']).prefault('utf8').describe('How `secret` is written.'),
    })
    .describe('A shared HMAC secret (HS256/384/512 only).'),
]);
export type JwtKeyConfig = z.infer<typeof jwtKeySchema>;

export const jwtIssuerSchema = z
  .strictObject({
    issuer: z.string().min(1).describe("The `iss` claim of this issuer's tokens, compared exactly."),
    audiences: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(
        'A token must name at least one of these in `aud`. Absent: `aud` is not checked (not advised).',
      ),
    algorithms: z
      .array(z.enum(ALGORITHMS))
      .min(1)
      .optional()
      .describe(
        'Algorithms accepted from this issuer. HMAC (HS*) only with `secret` keys, the others only with public keys or `jwks`; `none` never. Default: RS256, PS256, ES256, ES384, EdDSA for public keys, HS256 for secrets.',
      ),
    keys: z.array(jwtKeySchema).min(1).optional().describe('Local keys. Either `keys` or `jwks`.'),
    jwks: z
      .strictObject({
        url: httpUrl.describe("The issuer's JWKS endpoint (`jwks_uri`)."),
        refreshInterval: duration.prefault('10m').describe('Background refresh period.'),
        minRefetchInterval: duration
          .prefault('30s')
          .describe(
            'Shortest time between two fetches: a token with an unknown `kid` triggers at most one refetch per interval; concurrent ones share it.',
          ),
        timeout: duration.prefault('5s').describe('Longest time for one fetch.'),
        maxBytes: byteSize.prefault('256KiB').describe('Largest JWKS document accepted.'),
      })
      .optional()
      .describe('A remote JWKS, fetched at load, refreshed in the background, kept across reloads.'),
    requiredClaims: z
      .array(z.string().min(1))
      .prefault([])
      .describe('Claims every token must carry (any value), such as `sub`.'),
  })
  .superRefine((iss, ctx) => {
    if ((iss.keys === undefined) === (iss.jwks === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of `keys` or `jwks`', path: [] });
      return;
    }
    const secrets = iss.keys?.filter((k) => 'secret' in k).length ?? 0;
    const hmac = secrets > 0;
    if (hmac && secrets !== iss.keys!.length) {
      ctx.addIssue({
        code: 'custom',
        message: 'an issuer has either HMAC secrets or public keys, never both (key confusion)',
        path: ['keys'],
      });
      return;
    }
    const algorithms = iss.algorithms ?? [];
    algorithms.forEach((alg, i) => {
      if (isHmac(alg) !== hmac) {
        ctx.addIssue({
          code: 'custom',
          message: hmac
            ? `${alg} needs a public key; this issuer has HMAC secrets`
            : `${alg} is an HMAC algorithm; this issuer has public keys${iss.jwks ? ' (jwks)' : ''}, and an HMAC algorithm would let a public key be used as a shared secret`,
          path: ['algorithms', i],
        });
      }
    });
    iss.keys?.forEach((k, i) => {
      const field = 'pem' in k ? 'pem' : 'jwk' in k ? 'jwk' : 'secret';
      try {
        const key =
          'pem' in k
            ? publicKeyFromPem(k.pem)
            : 'jwk' in k
              ? publicKeyFromJwk(k.jwk).key
              : secretKey(k.secret, k.encoding);
        if ('secret' in k) {
          const need = Math.max(32, ...algorithms.filter(isHmac).map(minSecretBytes));
          if (key.symmetricKeySize! < need) {
            ctx.addIssue({
              code: 'custom',
              message: `an HMAC secret must have at least ${need} bytes; this one has ${key.symmetricKeySize}`,
              path: ['keys', i, field],
            });
          }
        } else if (algorithms.length > 0 && !algorithms.some((a) => keyServes(key, a))) {
          ctx.addIssue({
            code: 'custom',
            message: `${describeKey(key)} cannot verify any of ${algorithms.join(', ')}`,
            path: ['keys', i, field],
          });
        }
      } catch (err) {
        ctx.addIssue({
          code: 'custom',
          // Never echo key material; the parser's reason is enough.
          message: `cannot read this key: ${(err as Error).message}`,
          path: ['keys', i, field],
        });
      }
    });
  });
export type JwtIssuerConfig = z.infer<typeof jwtIssuerSchema>;

export const jwtSchema = z
  .strictObject({
    issuers: z
      .array(jwtIssuerSchema)
      .min(1)
      .describe('Accepted issuers; a token is checked against the one its `iss` names.'),
    tokenFrom: tokenSourcesField,
    leeway: duration.prefault('30s').describe('Clock skew allowed on `exp`, `nbf` and `iat`.'),
    maxTokenBytes: byteSize
      .prefault('8KiB')
      .describe('Longer tokens are refused before any parsing or cryptography.'),
    requireExpiry: z.boolean().prefault(true).describe('Refuse tokens without an `exp` claim.'),
    maxAge: duration
      .optional()
      .describe('Refuse tokens whose `iat` is older than this (then `iat` is required).'),
    allowMissing: z
      .boolean()
      .prefault(false)
      .describe(
        'Let requests without a token through, anonymous (an `authz` policy can still refuse them). A token that is present is always checked.',
      ),
    forwardToken: z
      .boolean()
      .prefault(true)
      .describe(
        'Send the token upstream. False removes the headers it can come in (`tokenFrom` headers); a cookie stays, and a query token is always removed.',
      ),
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
          .describe('Verified tokens remembered (LRU, keyed by a SHA-256 of the token); 0: no cache.'),
        maxTtl: duration
          .prefault('5m')
          .describe('Longest time a verified token is remembered, however far its `exp`.'),
      })
      .prefault({})
      .describe('Cache of verified tokens, so a repeated token skips the signature check. Never past `exp`.'),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    cfg.issuers.forEach((iss, i) => {
      if (seen.has(iss.issuer)) {
        ctx.addIssue({
          code: 'custom',
          message: `issuer "${iss.issuer}" is listed twice`,
          path: ['issuers', i, 'issuer'],
        });
      }
      seen.add(iss.issuer);
    });
  })
  .describe('Authenticates requests by a signed JWT (RFC 7519) from local keys or a remote JWKS.');
export type JwtConfig = z.infer<typeof jwtSchema>;
