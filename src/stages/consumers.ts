/**
 * Consumers compiled once per config: the identities by name, and lookup tables from each kind of credential to
 * its consumer, so that an authentication policy does one Map lookup per request, never a scan.
 */
import type { ConsumerConfig } from '../config/policies.js';
import { parsePasswordHash, type ScryptHash } from './credentials.js';
import type { Consumer } from './policy.js';

export interface ApiKeyEntry {
  readonly consumer: Consumer;
  /** The key's `id` (for logs and upstream headers), or undefined. */
  readonly id: string | undefined;
  /** ms since the epoch; Infinity when the key does not expire. */
  readonly expiresAt: number;
}

export interface BasicEntry {
  readonly consumer: Consumer;
  readonly hash: ScryptHash;
}

export interface MtlsTables {
  /** SHA-256 of the DER certificate, lower-case hex without separators. */
  readonly fingerprints: ReadonlyMap<string, Consumer>;
  /** subjectAltName values (DNS names, URIs such as SPIFFE IDs, e-mail addresses). */
  readonly sans: ReadonlyMap<string, Consumer>;
  /** Subjects in RFC 4514 form, as ClientCertificate.subject gives them. */
  readonly subjects: ReadonlyMap<string, Consumer>;
}

export interface ConsumerCredentials {
  /** By the hex SHA-256 of the key. */
  readonly apiKeys: ReadonlyMap<string, ApiKeyEntry>;
  /** By username. */
  readonly basic: ReadonlyMap<string, BasicEntry>;
  readonly mtls: MtlsTables;
}

export interface CompiledConsumers {
  readonly byName: ReadonlyMap<string, Consumer>;
  readonly credentials: ConsumerCredentials;
}

/** A certificate fingerprint as people write it (`AB:CD:...` or hex) → lower-case hex without separators. */
export function normalizeFingerprint(s: string): string {
  return s
    .replace(/^sha256:/i, '')
    .replace(/:/g, '')
    .toLowerCase();
}

/** Tables for `consumers` (validated: names, hashes and identities are unique). */
export function compileConsumers(list: readonly ConsumerConfig[]): CompiledConsumers {
  const byName = new Map<string, Consumer>();
  const apiKeys = new Map<string, ApiKeyEntry>();
  const basic = new Map<string, BasicEntry>();
  const fingerprints = new Map<string, Consumer>();
  const sans = new Map<string, Consumer>();
  const subjects = new Map<string, Consumer>();
  for (const c of list) {
    const consumer: Consumer = Object.freeze({
      name: c.name,
      groups: Object.freeze([...c.groups]),
      metadata: Object.freeze({ ...c.metadata }),
    });
    byName.set(c.name, consumer);
    const cred = c.credentials;
    for (const k of cred.apiKeys ?? []) {
      const hex = k.hash.slice('sha256:'.length);
      apiKeys.set(hex, {
        consumer,
        id: k.id,
        expiresAt: k.expires === undefined ? Number.POSITIVE_INFINITY : Date.parse(k.expires),
      });
    }
    if (cred.basic !== undefined) {
      const hash = parsePasswordHash(cred.basic.passwordHash);
      if (typeof hash === 'string') throw new Error(`consumer ${c.name}: ${hash}`);
      basic.set(cred.basic.username, { consumer, hash });
    }
    const m = cred.mtls;
    for (const f of m?.fingerprints ?? []) fingerprints.set(normalizeFingerprint(f), consumer);
    for (const s of m?.sans ?? []) sans.set(s, consumer);
    for (const s of m?.subjects ?? []) subjects.set(s, consumer);
  }
  return {
    byName,
    credentials: { apiKeys, basic, mtls: { fingerprints, sans, subjects } },
  };
}
