/**
 * A bounded LRU of verified tokens, keyed by a SHA-256 of the token so the cache never holds a token itself. An
 * entry never outlives the instant it was given (the token's `exp`, or a shorter cap), so a cached answer is never
 * staler than the token allows.
 */
import { hash } from 'node:crypto';

/** SHA-256 of a token, base64url: the cache key, and never reversible to the token. */
export function tokenKey(token: string): string {
  return hash('sha256', token, 'base64url');
}

interface Entry<V> {
  readonly value: V;
  /** Date.now() after which the entry is gone. */
  readonly until: number;
}

export class TokenCache<V> {
  readonly #max: number;
  // A Map iterates in insertion order: re-inserting on a hit keeps the least recently used first.
  readonly #entries = new Map<string, Entry<V>>();
  hits = 0;
  misses = 0;

  constructor(maxEntries: number) {
    this.#max = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string, now: number): V | undefined {
    const e = this.#entries.get(key);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    if (now >= e.until) {
      this.#entries.delete(key);
      this.misses++;
      return undefined;
    }
    this.#entries.delete(key);
    this.#entries.set(key, e);
    this.hits++;
    return e.value;
  }

  set(key: string, value: V, until: number, now: number): void {
    if (this.#max <= 0 || until <= now) return;
    this.#entries.delete(key);
    this.#entries.set(key, { value, until });
    if (this.#entries.size > this.#max) {
      // The least recently used goes; finding an expired one first would need a scan.
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}
