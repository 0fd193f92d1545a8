/**
 * Verification keys and the algorithms each may serve. A key's type decides its algorithms, and an issuer is
 * either all-HMAC (shared secrets) or all-public-key, never both: that is what makes key confusion (an HS256 token
 * "signed" with an RSA public key's bytes) impossible by construction, not by a check at request time.
 */
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';

export const PUBLIC_KEY_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
export const ALGORITHMS = [...PUBLIC_KEY_ALGORITHMS, ...HMAC_ALGORITHMS] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

export const DEFAULT_PUBLIC_ALGORITHMS: readonly Algorithm[] = ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'];
export const DEFAULT_HMAC_ALGORITHMS: readonly Algorithm[] = ['HS256'];

export function isHmac(alg: string): boolean {
  return alg === 'HS256' || alg === 'HS384' || alg === 'HS512';
}

/** RFC 7518 §3.2: an HMAC key at least as long as the hash output. */
export function minSecretBytes(alg: string): number {
  return alg === 'HS512' ? 64 : alg === 'HS384' ? 48 : 32;
}

const CURVE_OF: Record<string, string> = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' };

/** True when `key` can verify `alg` signatures. */
export function keyServes(key: KeyObject, alg: string): boolean {
  if (key.type === 'secret') return isHmac(alg);
  if (key.type !== 'public') return false;
  const t = key.asymmetricKeyType;
  switch (alg) {
    case 'RS256':
    case 'RS384':
    case 'RS512':
      return t === 'rsa';
    case 'PS256':
    case 'PS384':
    case 'PS512':
      return t === 'rsa' || t === 'rsa-pss';
    case 'ES256':
    case 'ES384':
    case 'ES512':
      return t === 'ec' && key.asymmetricKeyDetails?.namedCurve === CURVE_OF[alg];
    case 'EdDSA':
      return t === 'ed25519' || t === 'ed448';
    case 'Ed25519':
      return t === 'ed25519';
    default:
      return false;
  }
}

export function describeKey(key: KeyObject): string {
  if (key.type === 'secret') return 'an HMAC secret';
  const t = key.asymmetricKeyType;
  if (t === 'ec') return `an EC ${key.asymmetricKeyDetails?.namedCurve ?? ''} key`;
  return `an ${String(t).toUpperCase()} key`;
}

/** One verification key; `alg` when the key says which algorithm it is for (a JWK's `alg`). */
export interface VerifyKey {
  readonly kid: string | undefined;
  readonly alg: string | undefined;
  readonly key: KeyObject;
}

/** RSA keys shorter than this are refused (RFC 7518 §3.3 asks for 2048 bits or more). */
const MIN_RSA_BITS = 2048;

function strongEnough(key: KeyObject): KeyObject {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits !== undefined && bits < MIN_RSA_BITS) {
    throw new Error(`an RSA key of ${bits} bits is too short (at least ${MIN_RSA_BITS})`);
  }
  return key;
}

/** A public key from PEM (SPKI or an X.509 certificate). Private keys are refused: the gateway never needs one. */
export function publicKeyFromPem(pem: string): KeyObject {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new Error('this is a private key: give the public key (or certificate) only');
  }
  if (!pem.includes('-----BEGIN '))
    throw new Error('expected a PEM public key ("-----BEGIN PUBLIC KEY-----")');
  return strongEnough(createPublicKey(pem));
}

/** A public key from a JWK (object or JSON text). Symmetric (`oct`) and private JWKs are refused. */
export function publicKeyFromJwk(jwk: unknown): {
  key: KeyObject;
  kid: string | undefined;
  alg: string | undefined;
} {
  const obj = typeof jwk === 'string' ? (JSON.parse(jwk) as unknown) : jwk;
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new Error('expected a JWK object');
  const j = obj as Record<string, unknown>;
  if (j.kty === 'oct')
    throw new Error('a symmetric JWK ("kty": "oct") is an HMAC secret: give it as `secret`');
  if ('d' in j) throw new Error('this JWK holds a private key ("d"): give the public key only');
  const key = strongEnough(createPublicKey({ key: j as import('node:crypto').JsonWebKey, format: 'jwk' }));
  return {
    key,
    kid: typeof j.kid === 'string' ? j.kid : undefined,
    alg: typeof j.alg === 'string' ? j.alg : undefined,
  };
}

export function secretKey(secret: string, encoding: 'utf8' | 'base64' | 'base64url'): KeyObject {
  return createSecretKey(Buffer.from(secret, encoding));
}
