import { describe, expect, test } from 'vitest';
import {
  API_KEY_HASH,
  generateApiKey,
  hashApiKey,
  hashPassword,
  parsePasswordHash,
  verifyPassword,
} from './credentials.js';

describe('API key hashes', () => {
  test('sha256:<hex> of the key', () => {
    expect(hashApiKey('abc')).toBe('sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(API_KEY_HASH.test(hashApiKey(generateApiKey()))).toBe(true);
  });

  test('generated keys are long, random and prefixed', () => {
    const a = generateApiKey();
    expect(a).toMatch(/^tk_[A-Za-z0-9_-]{43}$/);
    expect(generateApiKey()).not.toBe(a);
  });
});

describe('password hashes', () => {
  test('hash, parse and verify; salts differ', async () => {
    const h = hashPassword('pässword', { ln: 10 });
    expect(h).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$/);
    expect(hashPassword('pässword', { ln: 10 })).not.toBe(h);
    const parsed = parsePasswordHash(h);
    if (typeof parsed === 'string') throw new Error(parsed);
    expect(await verifyPassword('pässword', parsed)).toBe(true);
    // NFC and NFD spellings of the same text are the same password.
    expect(await verifyPassword('pa\u0308ssword', parsed)).toBe(true);
    expect(await verifyPassword('password', parsed)).toBe(false);
  });

  test('refuses malformed hashes and costs out of bounds', () => {
    expect(parsePasswordHash('plain-text')).toMatch(/expected a scrypt hash/);
    const salt = Buffer.alloc(16, 1).toString('base64').replace(/=+$/, '');
    const hash = Buffer.alloc(32, 2).toString('base64').replace(/=+$/, '');
    expect(parsePasswordHash(`$scrypt$ln=25,r=8,p=1$${salt}$${hash}`)).toBe('scrypt ln=25 is outside 10..20');
    expect(parsePasswordHash(`$scrypt$ln=15,r=0,p=1$${salt}$${hash}`)).toBe('scrypt r=0 is outside 1..32');
    expect(parsePasswordHash(`$scrypt$ln=20,r=8,p=1$${salt}$${hash}`)).toBe(
      'scrypt ln=20, r=8 needs 1024 MiB per check, more than 256 MiB',
    );
    expect(typeof parsePasswordHash(`$scrypt$ln=15,r=8,p=1$${salt}$${hash}`)).toBe('object');
  });
});
