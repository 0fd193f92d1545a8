/**
 * What authorization rules read about one request, each part worked out on first use: a rule set that only
 * looks at the method never builds a header map, and a CEL condition that reads `claims` converts them once.
 * The same object is the CEL activation (its getters are the variables).
 */
import { type CelInput, celList, celMap as celMapOf } from '@bufbuild/cel';
import type { StageContext } from '../../proxy/stage.js';

const EMPTY: readonly string[] = Object.freeze([]);

/** Granted scopes: OAuth2 `scope` (space-separated, RFC 8693 / RFC 7662) or `scp` (a list or a string). */
export function scopesOf(claims: Readonly<Record<string, unknown>> | undefined): readonly string[] {
  if (claims === undefined) return EMPTY;
  const s = claims.scope ?? claims.scp;
  if (typeof s === 'string') return s.split(' ').filter((x) => x !== '');
  if (Array.isArray(s)) return s.filter((x): x is string => typeof x === 'string');
  return EMPTY;
}

export class RequestFacts {
  readonly ctx: StageContext;
  #scopes: readonly string[] | undefined;
  #request: unknown;
  #consumer: unknown;
  #claims: unknown;
  #client: unknown;

  constructor(ctx: StageContext) {
    this.ctx = ctx;
  }

  scopeList(): readonly string[] {
    this.#scopes ??= scopesOf(this.ctx.claims);
    return this.#scopes;
  }

  // ---- CEL variables (see CEL_VARIABLES in cel.ts) ----
  // Each is a read-through view of the request, not a copy: a condition that reads one field pays for one field.

  get request(): unknown {
    const c = this.ctx;
    this.#request ??= celMap(
      new ViewMap(REQUEST_FIELDS, (k) => {
        switch (k) {
          case 'method':
            return c.method;
          case 'path':
            return c.path;
          case 'host':
            return c.host;
          case 'query':
            return c.query;
          case 'headers':
            return new LazyHeaders(c);
          case 'params':
            return recordView(c.params ?? EMPTY_RECORD);
          default:
            return undefined;
        }
      }),
    );
    return this.#request;
  }

  get consumer(): unknown {
    const k = this.ctx.consumer;
    this.#consumer ??= celMap(
      new ViewMap(CONSUMER_FIELDS, (f) =>
        f === 'name'
          ? (k?.name ?? '')
          : f === 'groups'
            ? (k?.groups ?? EMPTY)
            : f === 'metadata'
              ? recordView(k?.metadata ?? EMPTY_RECORD)
              : undefined,
      ),
    );
    return this.#consumer;
  }

  get claims(): unknown {
    this.#claims ??= celMap(recordView(this.ctx.claims ?? EMPTY_RECORD));
    return this.#claims;
  }

  get scopes(): unknown {
    return celList(this.scopeList() as string[]);
  }

  get client(): unknown {
    const c = this.ctx;
    this.#client ??= celMap(
      new ViewMap(CLIENT_FIELDS, (f) => {
        if (f === 'address') return c.clientAddress();
        const cert = c.clientCert;
        switch (f) {
          case 'subject':
            return cert?.subject ?? '';
          case 'uris':
            return cert?.uris ?? EMPTY;
          case 'dns':
            return cert?.dns ?? EMPTY;
          case 'emails':
            return cert?.emails ?? EMPTY;
          case 'sha256':
            return cert?.sha256 ?? '';
          default:
            return undefined;
        }
      }),
    );
    return this.#client;
  }
}

function celMap(m: Map<string, unknown>) {
  return celMapOf(m as Map<string, CelInput>);
}

const EMPTY_RECORD: Readonly<Record<string, unknown>> = Object.freeze({});
const REQUEST_FIELDS = ['method', 'path', 'host', 'query', 'headers', 'params'];
const CONSUMER_FIELDS = ['name', 'groups', 'metadata'];
const CLIENT_FIELDS = ['address', 'subject', 'uris', 'dns', 'emails', 'sha256'];

/**
 * A Map whose values are read on demand: CEL's map wrapper reads a JS Map through `get`, `has`, `size` and the
 * iterators, so overriding those gives it a view without copying anything.
 */
class ViewMap extends Map<string, unknown> {
  readonly #keys: () => readonly string[];
  readonly #read: (key: string) => unknown;

  constructor(keys: readonly string[] | (() => readonly string[]), read: (key: string) => unknown) {
    super();
    this.#keys = typeof keys === 'function' ? keys : () => keys;
    this.#read = read;
  }

  override get(key: string): unknown {
    return typeof key === 'string' ? this.#read(key) : undefined;
  }
  override has(key: string): boolean {
    return this.get(key) !== undefined;
  }
  override get size(): number {
    return this.#keys().length;
  }
  override *keys(): MapIterator<string> {
    yield* this.#keys();
  }
  override *values(): MapIterator<unknown> {
    for (const k of this.#keys()) yield this.#read(k);
  }
  override *entries(): MapIterator<[string, unknown]> {
    for (const k of this.#keys()) yield [k, this.#read(k)];
  }
  override forEach(
    cb: (value: unknown, key: string, map: Map<string, unknown>) => void,
    thisArg?: unknown,
  ): void {
    for (const k of this.#keys()) cb.call(thisArg, this.#read(k), k, this);
  }
  override [Symbol.iterator](): MapIterator<[string, unknown]> {
    return this.entries();
  }
}

/** A JSON-like record as a CEL map, nested records as views too. */
function recordView(r: Readonly<Record<string, unknown>>): ViewMap {
  let keys: string[] | undefined;
  return new ViewMap(
    () => (keys ??= Object.keys(r)),
    (k) => {
      if (!Object.hasOwn(r, k)) return undefined;
      const v = r[k];
      return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)
        ? recordView(v as Record<string, unknown>)
        : v;
    },
  );
}

/** Request headers as a CEL map<string, string>, read from the request only when a condition looks. */
class LazyHeaders extends Map<string, string> {
  #ctx: StageContext | undefined;

  constructor(ctx: StageContext) {
    super();
    this.#ctx = ctx;
  }

  #fill(): void {
    const ctx = this.#ctx;
    if (ctx === undefined) return;
    this.#ctx = undefined;
    const h = ctx.headers;
    for (const name in h) {
      const v = h[name];
      if (v !== undefined) super.set(name, Array.isArray(v) ? v.join(', ') : v);
    }
  }

  override get(key: string): string | undefined {
    this.#fill();
    return super.get(key);
  }
  override has(key: string): boolean {
    this.#fill();
    return super.has(key);
  }
  override get size(): number {
    this.#fill();
    return super.size;
  }
  override keys(): MapIterator<string> {
    this.#fill();
    return super.keys();
  }
  override values(): MapIterator<string> {
    this.#fill();
    return super.values();
  }
  override entries(): MapIterator<[string, string]> {
    this.#fill();
    return super.entries();
  }
  override forEach(
    cb: (value: string, key: string, map: Map<string, string>) => void,
    thisArg?: unknown,
  ): void {
    this.#fill();
    super.forEach(cb, thisArg);
  }
  override [Symbol.iterator](): MapIterator<[string, string]> {
    return this.entries();
  }
}
