/**
 * `basic-auth`: HTTP Basic (RFC 7617) against `consumers[].credentials.basic`, whose passwords are scrypt hashes.
 *
 * scrypt is slow on purpose (tens of ms and 32 MiB at the default cost), so two things keep it from becoming a
 * way to take the gateway down:
 * - a successful verification is cached for `cacheTtl`, keyed by an HMAC (with a per-process random key) of the
 *   Authorization value, in an LRU of `cacheSize` entries: a client that logs in once pays the hash once;
 * - at most `maxConcurrentVerifications` hashes compute at a time (on the libuv thread pool, which has 4 threads
 *   by default and also serves DNS and file I/O), with `maxQueuedVerifications` more waiting; beyond that a
 *   request is refused at once with 503 auth_overloaded. A flood of wrong passwords costs at most that many
 *   threads, never the event loop.
 * An unknown username is hashed too (against a random hash), so the reply time does not tell which users exist.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { duration } from '../config/primitives.js';
import type { LocalReply, StageContext } from '../proxy/stage.js';
import { authnFields, compileIdentity, headerValue, removeHeader, validateAuthn } from './authn.js';
import type { BasicEntry } from './consumers.js';
import { type ScryptHash, verifyPassword } from './credentials.js';
import { type PolicyKind, PolicyPhase } from './policy.js';

const schema = z
  .strictObject({
    realm: z
      .string()
      .regex(/^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/, { message: 'expected printable ASCII without " or \\' })
      .default('trellis')
      .describe('The realm the `WWW-Authenticate: Basic` challenge names.'),
    cacheTtl: duration
      .prefault(60_000)
      .describe(
        'How long a successful verification is remembered (so the slow hash runs once per client); 0: never.',
      ),
    cacheSize: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(1024)
      .describe('Most remembered verifications (LRU).'),
    maxConcurrentVerifications: z
      .number()
      .int()
      .min(1)
      .max(64)
      .default(2)
      .describe('Password hashes computing at once (each takes a libuv thread-pool thread).'),
    maxQueuedVerifications: z
      .number()
      .int()
      .min(0)
      .max(10_000)
      .default(32)
      .describe('Verifications waiting for a slot; beyond them, 503 auth_overloaded at once.'),
    hideCredential: z
      .boolean()
      .default(true)
      .describe('Remove the Authorization header before the request goes upstream.'),
    ...authnFields,
  })
  .describe(
    'Authenticate by HTTP Basic username and password (scrypt hashes in `consumers[].credentials.basic`).',
  );

export type BasicAuthConfig = z.output<typeof schema>;

/** A counting semaphore with a bounded queue: `acquire` is undefined when both are full. */
export class VerifyLimiter {
  active = 0;
  readonly #waiting: Array<() => void> = [];
  constructor(
    readonly max: number,
    readonly queue: number,
  ) {}
  acquire(): Promise<void> | undefined {
    if (this.active < this.max) {
      this.active++;
      return Promise.resolve();
    }
    if (this.#waiting.length >= this.queue) return undefined;
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  release(): void {
    const next = this.#waiting.shift();
    if (next !== undefined) next();
    else this.active--;
  }
  get queued(): number {
    return this.#waiting.length;
  }
}

interface Remembered {
  readonly username: string;
  /** The hash it was verified against: a password changed by a reload misses (the salt and hash differ). */
  readonly hash: ScryptHash;
  readonly expiresAt: number;
}

/** Successful verifications by HMAC of the Authorization value; Map order is recency order. */
export class VerifiedCache {
  readonly #map = new Map<string, Remembered>();
  readonly #key = randomBytes(32);
  constructor(readonly size: number) {}
  id(credential: string): string {
    return createHmac('sha256', this.#key).update(credential).digest('base64');
  }
  get(id: string, now: number): Remembered | undefined {
    const r = this.#map.get(id);
    if (r === undefined) return undefined;
    if (r.expiresAt <= now) {
      this.#map.delete(id);
      return undefined;
    }
    // Refresh recency.
    this.#map.delete(id);
    this.#map.set(id, r);
    return r;
  }
  set(id: string, r: Remembered): void {
    this.#map.delete(id);
    this.#map.set(id, r);
    if (this.#map.size > this.size) this.#map.delete(this.#map.keys().next().value!);
  }
  get entries(): number {
    return this.#map.size;
  }
}

/** `Basic <base64(user:pass)>` → user and password, or undefined when malformed. */
export function parseBasic(value: string): { username: string; password: string } | undefined {
  if (value.length < 7 || value.slice(0, 6).toLowerCase() !== 'basic ') return undefined;
  const b64 = value.slice(6).trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  const decoded = Buffer.from(b64, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Verified against when the username is unknown, so that it costs what a real one costs (the cost of the
 * consumers' first hash); never matches.
 */
function decoy(users: ReadonlyMap<string, BasicEntry>): ScryptHash {
  const like = users.values().next().value?.hash ?? { ln: 15, r: 8, p: 1 };
  return { ln: like.ln, r: like.r, p: like.p, salt: randomBytes(16), hash: randomBytes(32) };
}

export const basicAuthPolicy: PolicyKind<BasicAuthConfig> = {
  type: 'basic-auth',
  phase: PolicyPhase.authn,
  schema,
  validate: validateAuthn,
  compile(c, ctx) {
    const users = ctx.credentials.basic;
    const unknownUser = decoy(users);
    const identity = compileIdentity(c, ctx.consumers, ctx.source);
    const anonymous = identity.anonymous;
    const hide = c.hideCredential;
    const ttl = c.cacheTtl;
    // Kept across reloads: in-flight verifications stay counted, and clients stay verified.
    const limiter = ctx.keep(
      `limiter:${c.maxConcurrentVerifications}:${c.maxQueuedVerifications}`,
      () => new VerifyLimiter(c.maxConcurrentVerifications, c.maxQueuedVerifications),
    );
    const cache =
      ttl > 0 ? ctx.keep(`cache:${c.cacheSize}`, () => new VerifiedCache(c.cacheSize)) : undefined;
    const challenge = { 'www-authenticate': `Basic realm="${c.realm}", charset="UTF-8"` };
    const reply = (detail: string): LocalReply => ({
      kind: 'error',
      code: 'unauthenticated',
      detail: `policy ${ctx.name}: ${detail}`,
      headers: challenge,
    });
    const missing = reply('no credentials (expected Authorization: Basic)');
    const malformed = reply('malformed Basic credentials');
    const wrong = reply('wrong username or password');
    const busy: LocalReply = {
      kind: 'error',
      code: 'auth_overloaded',
      detail: `policy ${ctx.name}: too many password checks in progress`,
      headers: { 'retry-after': '1' },
    };

    async function verify(
      sc: StageContext,
      entry: BasicEntry | undefined,
      password: string,
      id: string | undefined,
      slot: Promise<void>,
    ): Promise<LocalReply | undefined> {
      await slot;
      let ok: boolean;
      try {
        ok = await verifyPassword(password, entry?.hash ?? unknownUser);
      } finally {
        limiter.release();
      }
      if (!ok || entry === undefined) return wrong;
      if (cache !== undefined && id !== undefined)
        cache.set(id, { username: entry.consumer.name, hash: entry.hash, expiresAt: Date.now() + ttl });
      identity.accept(sc, entry.consumer);
      return undefined;
    }

    return {
      request: {
        name: ctx.name,
        onRequest: function basicAuth(sc: StageContext) {
          identity.strip(sc);
          const value = headerValue(sc, 'authorization');
          if (value === undefined || value === '') {
            if (anonymous === undefined) return missing;
            identity.acceptAnonymous(sc);
            return undefined;
          }
          if (hide) removeHeader(sc.upstreamHeaders, 'authorization');
          const creds = parseBasic(value);
          if (creds === undefined) return malformed;
          const entry = users.get(creds.username);
          let id: string | undefined;
          if (cache !== undefined) {
            id = cache.id(value);
            const hit = cache.get(id, Date.now());
            if (hit !== undefined && entry !== undefined && hit.hash.hash.equals(entry.hash.hash)) {
              identity.accept(sc, entry.consumer);
              return undefined;
            }
          }
          const slot = limiter.acquire();
          if (slot === undefined) return busy;
          return verify(sc, entry, creds.password, id, slot);
        },
      },
    };
  },
};
