/**
 * Credential hashing, shared by the consumer tables, the authentication policies and `trellis hash-key` /
 * `trellis hash-password`. The config holds only hashes: an API key as `sha256:<hex>` (keys are long random
 * strings, so a fast hash is enough), a password as a PHC-style scrypt string (passwords are guessable, so a slow,
 * memory-hard hash with a salt).
 */
import * as crypto from 'node:crypto';
import { createHash, randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';

export const API_KEY_HASH = /^sha256:[0-9a-f]{64}$/;

/** SHA-256 of an API key, as the raw digest. */
export function apiKeyDigest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

// One-shot hashing (Node 20.12+, 21.7+) skips the Hash object: about half the cost of createHash for a short key,
// which the api-key policy pays on every request. Looked up at run time so that the typings of Node 20 need not
// know it.
const oneShot = (crypto as unknown as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash;

/** SHA-256 of an API key, as 64 lower-case hex digits: the request-path form (the lookup key of the key table). */
export const apiKeyDigestHex: (key: string) => string =
  oneShot === undefined
    ? (key) => createHash('sha256').update(key, 'utf8').digest('hex')
    : (key) => oneShot('sha256', key, 'hex');

/** `sha256:<64 hex>`, the form `consumers[].credentials.apiKeys[].hash` takes. */
export function hashApiKey(key: string): string {
  return `sha256:${apiKeyDigest(key).toString('hex')}`;
}

/** A new random API key: 32 bytes (256 bits) in base64url, with a `tk_` prefix so that scanners can spot leaks. */
export function generateApiKey(): string {
  return `tk_${randomBytes(32).toString('base64url')}`;
}

/** `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`: log2 of N, block size, parallelism, then base64 without padding. */
export const PASSWORD_HASH =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,}={0,2})\$([A-Za-z0-9+/]{22,}={0,2})$/;

export interface ScryptHash {
  readonly ln: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

/** Bounds of each parameter; besides, one verification may take at most SCRYPT_MAX_MEMORY. */
export const SCRYPT_LIMITS = { ln: [10, 20], r: [1, 32], p: [1, 16] } as const;

/** scrypt needs 128·N·r bytes: a hash that asks for more than this (256 MiB) is refused at load time. */
export const SCRYPT_MAX_MEMORY = 256 * 1024 * 1024;

/** Parses a password hash, or says why it is not one. */
export function parsePasswordHash(s: string): ScryptHash | string {
  const m = PASSWORD_HASH.exec(s);
  if (!m) return 'expected a scrypt hash "$scrypt$ln=15,r=8,p=1$<salt>$<hash>" (trellis hash-password)';
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  for (const [k, v] of [
    ['ln', ln],
    ['r', r],
    ['p', p],
  ] as const) {
    const [lo, hi] = SCRYPT_LIMITS[k];
    if (v < lo || v > hi) return `scrypt ${k}=${v} is outside ${lo}..${hi}`;
  }
  if (128 * 2 ** ln * r > SCRYPT_MAX_MEMORY)
    return `scrypt ln=${ln}, r=${r} needs ${(128 * 2 ** ln * r) / 2 ** 20} MiB per check, more than ${SCRYPT_MAX_MEMORY / 2 ** 20} MiB`;
  const salt = Buffer.from(m[4]!, 'base64');
  const hash = Buffer.from(m[5]!, 'base64');
  if (salt.length < 16) return 'the scrypt salt must be at least 16 bytes';
  if (hash.length < 16 || hash.length > 128) return 'the scrypt hash must be 16 to 128 bytes';
  return { ln, r, p, salt, hash };
}

const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');

/** Memory scrypt needs for these parameters, with room: node's default maxmem (32 MiB) is too tight for ln=15. */
function maxmem(h: { ln: number; r: number; p: number }): number {
  return 256 * 2 ** h.ln * h.r + 1024 * 1024;
}

/** A password hash with a fresh 16-byte salt. Defaults: N=2^15, r=8, p=1 (32 MiB, tens of ms). */
export function hashPassword(password: string, opts: { ln?: number; r?: number; p?: number } = {}): string {
  const h = { ln: opts.ln ?? 15, r: opts.r ?? 8, p: opts.p ?? 1 };
  const salt = randomBytes(16);
  const out = scryptSync(password.normalize('NFC'), salt, 32, {
    N: 2 ** h.ln,
    r: h.r,
    p: h.p,
    maxmem: maxmem(h),
  });
  return `$scrypt$ln=${h.ln},r=${h.r},p=${h.p}$${b64(salt)}$${b64(out)}`;
}

/** Whether `password` matches: scrypt on the libuv thread pool, compared in constant time. */
export function verifyPassword(password: string, h: ScryptHash): Promise<boolean> {
  return new Promise((resolve, reject) => {
    scrypt(
      password.normalize('NFC'),
      h.salt,
      h.hash.length,
      { N: 2 ** h.ln, r: h.r, p: h.p, maxmem: maxmem(h) },
      (err, out) => {
        if (err) reject(err);
        else resolve(timingSafeEqual(out, h.hash));
      },
    );
  });
}
