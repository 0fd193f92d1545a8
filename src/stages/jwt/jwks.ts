/**
 * A remote JWKS (RFC 7517) kept fresh: fetched when the policy is compiled, refreshed in the background, and
 * refetched when a token names a `kid` it does not know (a rotation the refresh has not seen yet). That refetch is
 * rate limited (at most one per `minRefetchInterval`, concurrent askers share it), so tokens with forged `kid`s
 * cannot make Trellis hammer the issuer. The object outlives reloads (PolicyCompileContext.keep), keys included.
 */
import { channel } from 'node:diagnostics_channel';
import { boundedFetch } from '../auth/fetch-json.js';
import { keyServes, publicKeyFromJwk, type VerifyKey } from './keys.js';

export interface JwksOptions {
  readonly url: string;
  readonly timeout: number;
  readonly maxBytes: number;
  readonly refreshInterval: number;
  readonly minRefetchInterval: number;
}

/**
 * After every fetch, for logs and tests: `{ url, ok: true, keys, recovered }` (recovered: the fetch before failed)
 * or `{ url, ok: false, error, keys }` (keys: how many from earlier fetches stay in use).
 */
export interface JwksEvent {
  url: string;
  ok: boolean;
  keys: number;
  recovered?: boolean;
  error?: string;
}

export const jwksChannel = channel('trellis:jwks');

const MAX_KEYS = 100;

export class RemoteKeySet {
  readonly options: JwksOptions;
  #keys: readonly VerifyKey[] = [];
  /** Bumped when the key set changes, so tokens verified with a key that left are verified again. */
  version = 0;
  fetches = 0;
  lastError: string | undefined = undefined;
  loaded = false;
  #lastRefetch = Number.NEGATIVE_INFINITY;
  #inflight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: JwksOptions) {
    this.options = options;
    void this.#fetch();
  }

  /** The key for `kid` (or, without a kid, the only key that serves `alg`), if known. */
  find(kid: string | undefined, alg: string): VerifyKey | undefined {
    return pickKey(this.#keys, kid, alg);
  }

  /**
   * Fetches again because a token named an unknown key: the fetch in flight when there is one, a new one when
   * the last such refetch started at least `minRefetchInterval` ago, else undefined (limited). Scheduled
   * refreshes do not count against the limit, so a rotation just after a refresh is still picked up at once.
   */
  refetch(): Promise<void> | undefined {
    if (this.#inflight !== undefined) return this.#inflight;
    const now = performance.now();
    if (now - this.#lastRefetch < this.options.minRefetchInterval) return undefined;
    this.#lastRefetch = now;
    return this.#fetch();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #fetch(): Promise<void> {
    this.fetches++;
    const p = this.#load().finally(() => {
      this.#inflight = undefined;
      this.#schedule();
    });
    this.#inflight = p;
    return p;
  }

  async #load(): Promise<void> {
    const { url, timeout, maxBytes } = this.options;
    try {
      const res = await boundedFetch(url, { timeout, maxBytes, headers: { accept: 'application/json' } });
      if (res.status !== 200) throw new Error(`status ${res.status}`);
      const keys = parseJwks(JSON.parse(res.body.toString('utf8')) as unknown);
      if (!sameKeys(keys, this.#keys)) {
        this.#keys = keys;
        this.version++;
      }
      const recovered = this.lastError !== undefined;
      this.loaded = true;
      this.lastError = undefined;
      if (jwksChannel.hasSubscribers) jwksChannel.publish({ url, ok: true, keys: keys.length, recovered });
    } catch (err) {
      // The keys fetched before stay: an issuer that is briefly down must not lock everyone out.
      this.lastError = err instanceof Error ? err.message : String(err);
      if (jwksChannel.hasSubscribers)
        jwksChannel.publish({ url, ok: false, error: this.lastError, keys: this.#keys.length });
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    const { refreshInterval, minRefetchInterval } = this.options;
    // After a failure, try again sooner (but never faster than the refetch limit).
    const wait =
      this.lastError === undefined
        ? refreshInterval
        : Math.min(refreshInterval, Math.max(minRefetchInterval, 1000));
    this.#timer = setTimeout(() => {
      if (this.#inflight === undefined) void this.#fetch();
    }, wait);
    this.#timer.unref();
  }
}

/** Signature keys of a JWKS document; keys for encryption, symmetric keys and ones that do not parse are skipped. */
export function parseJwks(doc: unknown): VerifyKey[] {
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw new Error('not a JWKS document (no "keys" array)');
  }
  const out: VerifyKey[] = [];
  for (const jwk of (doc as { keys: unknown[] }).keys) {
    if (out.length >= MAX_KEYS) break;
    if (jwk === null || typeof jwk !== 'object') continue;
    const j = jwk as Record<string, unknown>;
    if (j.use !== undefined && j.use !== 'sig') continue;
    if (j.kty === 'oct' || 'd' in j) continue;
    try {
      out.push(publicKeyFromJwk(j));
    } catch {
      // One key we cannot read must not take the others with it.
    }
  }
  return out;
}

export function pickKey(
  keys: readonly VerifyKey[],
  kid: string | undefined,
  alg: string,
): VerifyKey | undefined {
  const fits = (k: VerifyKey) => (k.alg === undefined || k.alg === alg) && keyServes(k.key, alg);
  if (kid !== undefined) {
    for (const k of keys) if (k.kid === kid && fits(k)) return k;
  }
  // No kid in the token, or none of the keys carries it: only an unambiguous key without a kid of its own will do.
  let found: VerifyKey | undefined;
  for (const k of keys) {
    if (k.kid !== undefined && kid !== undefined) continue;
    if (!fits(k)) continue;
    if (found !== undefined) return undefined;
    found = k;
  }
  return found;
}

function sameKeys(a: readonly VerifyKey[], b: readonly VerifyKey[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.kid !== b[i]!.kid || a[i]!.alg !== b[i]!.alg || !a[i]!.key.equals(b[i]!.key)) return false;
  }
  return true;
}
