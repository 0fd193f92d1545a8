import { generateKeyPairSync } from 'node:crypto';
import { exportJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { parseJwks, pickKey } from './jwks.js';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });

describe('parseJwks', () => {
  it('keeps signature public keys only', async () => {
    const keys = parseJwks({
      keys: [
        { ...(await exportJWK(rsa.publicKey)), kid: 'r', use: 'sig' },
        { ...(await exportJWK(ec.publicKey)), kid: 'enc', use: 'enc' },
        { kty: 'oct', k: 'c2VjcmV0', kid: 'hmac' },
        { ...(await exportJWK(ec.privateKey)), kid: 'private' },
        { kty: 'RSA', kid: 'tiny', n: 'x', e: 'AQAB' }, // an 8-bit modulus: parses, must not be used
        { ...(await exportJWK(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey)), kid: 'weak' },
        { ...(await exportJWK(ec.publicKey)), kid: 'e', alg: 'ES256' },
      ],
    });
    expect(keys.map((k) => k.kid)).toEqual(['r', 'e']);
    expect(() => parseJwks({ nope: [] })).toThrow(/no "keys" array/);
  });

  it('picks by kid and algorithm; without a kid only an unambiguous key', async () => {
    const keys = parseJwks({
      keys: [
        { ...(await exportJWK(rsa.publicKey)), kid: 'r' },
        { ...(await exportJWK(ec.publicKey)), kid: 'e' },
      ],
    });
    expect(pickKey(keys, 'r', 'RS256')?.kid).toBe('r');
    expect(pickKey(keys, 'r', 'ES256')).toBeUndefined(); // an RSA key never verifies ES256
    expect(pickKey(keys, 'x', 'RS256')).toBeUndefined();
    expect(pickKey(keys, undefined, 'RS256')?.kid).toBe('r'); // no kid: the one key that fits
    const two = parseJwks({
      keys: [{ ...(await exportJWK(rsa.publicKey)), kid: 'r2' }, ...keys.map(() => ({}))],
    });
    expect(pickKey([...keys, ...two], undefined, 'RS256')).toBeUndefined(); // two fit: ambiguous
    const anonymous = parseJwks({ keys: [await exportJWK(rsa.publicKey), await exportJWK(ec.publicKey)] });
    expect(pickKey(anonymous, undefined, 'ES256')?.key.asymmetricKeyType).toBe('ec');
    expect(pickKey(anonymous, 'any', 'RS256')?.key.asymmetricKeyType).toBe('rsa');
    expect(pickKey(anonymous, undefined, 'HS256')).toBeUndefined();
  });
});
