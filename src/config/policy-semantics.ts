/**
 * Checks of `policies`, `consumers` and the policy references of routes and listeners that the schema cannot
 * express: names resolve (with a suggestion) and are unique, a credential belongs to one consumer only, and each
 * kind's own `validate`.
 */
import { normalizeFingerprint } from '../stages/consumers.js';
import { parsePasswordHash } from '../stages/credentials.js';
import { policyKinds } from '../stages/kinds.js';
import type { PathSegment } from './errors.js';
import type { Config } from './schema.js';
import { didYouMean } from './suggest.js';

type Add = (path: PathSegment[], message: string, key?: boolean) => void;

export function checkPolicies(config: Config, add: Add, baseDir?: string): void {
  const policyNames = config.policies.map((p) => p.name);
  const consumerNames = new Set(config.consumers.map((c) => c.name));
  unique('policy', 'policies', policyNames, add);
  unique('consumer', 'consumers', [...config.consumers.map((c) => c.name)], add);

  const refs = (
    list: readonly string[] | undefined,
    at: PathSegment[],
    inherited: ReadonlyMap<string, string>,
  ) => {
    const seen = new Map<string, number>();
    list?.forEach((n, j) => {
      const path = [...at, j];
      if (!policyNames.includes(n)) {
        const hint = policyNames.length === 0 ? ' (no policies are defined)' : didYouMean(n, policyNames);
        add(path, `unknown policy "${n}"${hint}`);
        return;
      }
      const first = seen.get(n);
      if (first !== undefined) add(path, `policy "${n}" is listed twice (also ${pathLabel([...at, first])})`);
      else seen.set(n, j);
      const from = inherited.get(n);
      if (from !== undefined) add(path, `policy "${n}" already applies through ${from}`);
    });
  };
  const byListener = new Map<string, Map<string, string>>();
  config.listeners.forEach((l, i) => {
    refs(l.policies, ['listeners', i, 'policies'], new Map());
    byListener.set(l.name, new Map((l.policies ?? []).map((n) => [n, `listener "${l.name}"`])));
  });
  config.routes.forEach((r, i) => {
    const inherited = new Map<string, string>();
    for (const l of config.listeners) {
      if (r.listeners !== undefined && !r.listeners.includes(l.name)) continue;
      for (const [n, from] of byListener.get(l.name) ?? []) if (!inherited.has(n)) inherited.set(n, from);
    }
    refs(r.policies, ['routes', i, 'policies'], inherited);
  });

  const kinds = new Map(policyKinds.map((k) => [k.type, k]));
  config.policies.forEach((p, i) => {
    kinds.get(p.type)?.validate?.(p, {
      consumers: consumerNames,
      baseDir,
      issue: (path, message) => add(['policies', i, ...path], message),
    });
  });

  checkCredentials(config, add);
}

function unique(kind: string, key: string, names: readonly string[], add: Add): void {
  const first = new Map<string, number>();
  names.forEach((n, i) => {
    const j = first.get(n);
    if (j === undefined) first.set(n, i);
    else add([key, i, 'name'], `duplicate ${kind} name "${n}" (also ${key}[${j}])`);
  });
}

/** A credential maps to one consumer: the same key hash, username or certificate identity twice is an error. */
function checkCredentials(config: Config, add: Add): void {
  const seen = new Map<string, string>();
  const claim = (kind: string, value: string, path: PathSegment[], label: string) => {
    const id = `${kind}\u0000${value}`;
    const first = seen.get(id);
    if (first !== undefined) add(path, `${label} is already used by ${first}`);
    else seen.set(id, pathLabel(path));
  };
  config.consumers.forEach((c, i) => {
    const at: PathSegment[] = ['consumers', i, 'credentials'];
    for (const [j, k] of (c.credentials.apiKeys ?? []).entries())
      claim('key', k.hash, [...at, 'apiKeys', j, 'hash'], 'this API key hash');
    const basic = c.credentials.basic;
    if (basic !== undefined) {
      claim('user', basic.username, [...at, 'basic', 'username'], `username "${basic.username}"`);
      const h = parsePasswordHash(basic.passwordHash);
      if (typeof h === 'string') add([...at, 'basic', 'passwordHash'], h);
    }
    const m = c.credentials.mtls;
    for (const [j, f] of (m?.fingerprints ?? []).entries())
      claim('fp', normalizeFingerprint(f), [...at, 'mtls', 'fingerprints', j], 'this fingerprint');
    for (const [j, v] of (m?.sans ?? []).entries())
      claim('san', v, [...at, 'mtls', 'sans', j], `subjectAltName "${v}"`);
    for (const [j, v] of (m?.subjects ?? []).entries())
      claim('subject', v, [...at, 'mtls', 'subjects', j], `subject "${v}"`);
  });
}

function pathLabel(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out;
}
