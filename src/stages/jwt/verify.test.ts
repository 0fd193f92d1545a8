import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { compileIdentity } from '../auth/identity.js';
import { JwtVerifier } from './verify.js';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ISS = 'https://issuer.test/';

function verifier(now: () => number, cacheEntries = 100) {
  return new JwtVerifier({
    issuers: [
      {
        issuer: ISS,
        audiences: undefined,
        algorithms: ['ES256'],
        requiredClaims: [],
        keys: [{ kid: 'k', alg: undefined, key: publicKey }],
        remote: undefined,
      },
    ],
    leeway: 30,
    maxTokenBytes: 8192,
    requireExpiry: true,
    maxAge: undefined,
    cacheEntries,
    cacheTtl: 300_000,
    identity: compileIdentity({ claimsToHeaders: [], unknownConsumer: 'anonymous' }, new Map()),
    now,
  });
}

function sign(exp: number, sub = 'alice'): Promise<string> {
  return new SignJWT({ iss: ISS, sub, exp }).setProtectedHeader({ alg: 'ES256', kid: 'k' }).sign(privateKey);
}

describe('JwtVerifier cache', () => {
  it('answers a repeated token synchronously without a second signature check', async () => {
    let now = 1_000_000_000_000;
    const v = verifier(() => now);
    const token = await sign(now / 1000 + 60);
    const first = v.verify(token);
    expect(first).toBeInstanceOf(Promise);
    expect(typeof (await first)).toBe('object');
    const second = v.verify(token);
    expect(second).not.toBeInstanceOf(Promise);
    expect((second as unknown as { claims: { sub: string } }).claims.sub).toBe('alice');
    expect(v.verifications).toBe(1);
    // Past exp + leeway the cached entry is gone and the token is refused, before any crypto.
    now += 91_000;
    expect(v.verify(token)).toBe('token expired');
    expect(v.verifications).toBe(1);
  });

  it('is bounded: the least recently used token leaves first', async () => {
    const now = 1_000_000_000_000;
    const v = verifier(() => now, 2);
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((s) => sign(now / 1000 + 60, s)));
    await v.verify(a!);
    await v.verify(b!);
    v.verify(a!); // a is now the most recent
    await v.verify(c!); // evicts b
    expect(v.cache.size).toBe(2);
    expect(v.verify(a!)).not.toBeInstanceOf(Promise);
    expect(v.verify(b!)).toBeInstanceOf(Promise);
  });

  it('never caches a refused token', async () => {
    const now = 1_000_000_000_000;
    const v = verifier(() => now);
    const token = `${(await sign(now / 1000 + 60)).slice(0, -6)}AAAAAA`;
    expect(await v.verify(token)).toBe('bad signature');
    expect(await v.verify(token)).toBe('bad signature');
    expect(v.verifications).toBe(2);
    expect(v.cache.size).toBe(0);
  });
});
