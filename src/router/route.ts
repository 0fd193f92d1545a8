import { RouterCompileError } from './compile-error.js';
import { normalizePath } from './normalize.js';
import type { MatchResult, RouteMatchSpec, ValueMatchSpec } from './types.js';

const EXACT = 0;
const REGEX = 1;
const PRESENT = 2;
const ABSENT = 3;
type ValueKind = typeof EXACT | typeof REGEX | typeof PRESENT | typeof ABSENT;

/** One header or query matcher, with its regex compiled and its header name lower-cased. */
export class ValueMatcher {
  constructor(
    readonly name: string,
    readonly kind: ValueKind,
    readonly exact: string,
    readonly regex: RegExp | null,
  ) {}

  test(value: string | undefined): boolean {
    switch (this.kind) {
      case EXACT:
        return value === this.exact;
      case REGEX:
        return value !== undefined && this.regex!.test(value);
      case PRESENT:
        return value !== undefined;
      default:
        return value === undefined;
    }
  }
}

export type CompiledPath =
  | { readonly kind: 'exact'; readonly path: string }
  | { readonly kind: 'prefix'; readonly prefix: string }
  | { readonly kind: 'template'; readonly template: Template }
  | { readonly kind: 'regex'; readonly source: string; readonly regex: RegExp };

/** A `:name` template cut into literal runs and parameters, e.g. `/users/:id` → ['/users/', PARAM]. */
export interface Template {
  /** Literal strings, and `null` where a parameter takes one segment. */
  readonly tokens: readonly (string | null)[];
  readonly paramNames: readonly string[];
  /** Characters outside the parameters: the first precedence key among templates (more first). */
  readonly literalLength: number;
}

export interface CompiledRoute<T> {
  /** Position in the input: the last tie-breaker. */
  readonly index: number;
  readonly value: T;
  readonly path: CompiledPath;
  /** Deduplicated; null when any method is allowed. */
  readonly methods: readonly string[] | null;
  readonly headers: readonly ValueMatcher[] | null;
  readonly query: readonly ValueMatcher[] | null;
  /** Handed back as is for every match that has no parameters. */
  readonly staticMatch: MatchResult<T>;
  /** Handed back when this route alone matched all but the method. */
  readonly notAllowed: MatchResult<T> | null;
}

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function compileRoute<T>(spec: RouteMatchSpec<T>, index: number): CompiledRoute<T> {
  const path = compilePath(spec, index);
  const methods = spec.methods !== undefined && spec.methods.length > 0 ? [...new Set(spec.methods)] : null;
  const headers = compileMatchers(spec.headers, index, 'headers', true);
  const query = compileMatchers(spec.query, index, 'query', false);
  const staticMatch: MatchResult<T> = Object.freeze({ kind: 'match', value: spec.value, params: undefined });
  const notAllowed: MatchResult<T> | null =
    methods === null
      ? null
      : Object.freeze({ kind: 'method_not_allowed', allow: Object.freeze([...methods].sort()) });
  return {
    index,
    value: spec.value,
    path,
    methods: methods === null ? null : Object.freeze(methods),
    headers,
    query,
    staticMatch,
    notAllowed,
  };
}

/** Host names of a route: `exact` lower-cased, `wildcards` as suffixes with their leading dot (`.example.com`). */
export function compileHosts(
  hosts: readonly string[] | undefined,
  index: number,
): { exact: string[]; wildcards: string[] } | null {
  if (hosts === undefined || hosts.length === 0) return null;
  const exact = new Set<string>();
  const wildcards = new Set<string>();
  hosts.forEach((raw, i) => {
    const host = raw.toLowerCase();
    const field = `hosts[${i}]`;
    if (host.includes(':')) {
      throw new RouterCompileError(
        index,
        field,
        `host "${raw}" has a port; request hosts are matched with the port stripped`,
      );
    }
    if (host.startsWith('*.')) {
      const suffix = host.slice(1);
      if (suffix.length < 2 || suffix.includes('*')) {
        throw new RouterCompileError(index, field, `invalid wildcard host "${raw}"`);
      }
      wildcards.add(suffix);
    } else {
      if (host === '' || host.includes('*')) {
        throw new RouterCompileError(
          index,
          field,
          `invalid host "${raw}": expected a name or a "*." wildcard in front`,
        );
      }
      exact.add(host);
    }
  });
  return { exact: [...exact], wildcards: [...wildcards] };
}

function compilePath<T>(spec: RouteMatchSpec<T>, index: number): CompiledPath {
  const path = spec.path;
  if (path === undefined) return { kind: 'prefix', prefix: '/' };
  if ('exact' in path) {
    return { kind: 'exact', path: literalPath(path.exact, index, 'path.exact') };
  }
  if ('prefix' in path) {
    let prefix = literalPath(path.prefix, index, 'path.prefix');
    // A trailing slash is ignored, as in the Gateway API: `/api/` is `/api` and also matches `/api`.
    while (prefix.length > 1 && prefix.endsWith('/')) prefix = prefix.slice(0, -1);
    return { kind: 'prefix', prefix };
  }
  if ('template' in path) {
    return { kind: 'template', template: compileTemplate(path.template, index) };
  }
  if ('regex' in path) {
    return { kind: 'regex', source: path.regex, regex: compileRegex(path.regex, index, 'path.regex') };
  }
  throw new RouterCompileError(index, 'path', 'expected one of exact, prefix, template or regex');
}

function compileTemplate(raw: string, index: number): Template {
  const field = 'path.template';
  const path = literalPath(raw, index, field);
  const segments = path.slice(1).split('/');
  const tokens: (string | null)[] = [];
  const paramNames: string[] = [];
  let literal = '/';
  let literalLength = 1;
  segments.forEach((segment, i) => {
    if (i > 0) {
      literal += '/';
      literalLength++;
    }
    if (!segment.startsWith(':')) {
      literal += segment;
      literalLength += segment.length;
      return;
    }
    const name = segment.slice(1);
    if (name === '') {
      throw new RouterCompileError(index, field, `empty parameter name in template "${raw}"`);
    }
    if (!PARAM_NAME.test(name) || name === '__proto__') {
      throw new RouterCompileError(
        index,
        field,
        `invalid parameter name "${name}" in template "${raw}": expected letters, digits, "_" or "-"`,
      );
    }
    if (paramNames.includes(name)) {
      throw new RouterCompileError(index, field, `duplicate parameter name "${name}" in template "${raw}"`);
    }
    tokens.push(literal, null);
    literal = '';
    paramNames.push(name);
  });
  if (literal !== '') tokens.push(literal);
  return { tokens, paramNames, literalLength };
}

function compileMatchers(
  specs: readonly ValueMatchSpec[] | undefined,
  index: number,
  what: 'headers' | 'query',
  lowerCaseNames: boolean,
): readonly ValueMatcher[] | null {
  if (specs === undefined || specs.length === 0) return null;
  return Object.freeze(
    specs.map((spec, i) => {
      const field = `${what}[${i}]`;
      if (typeof spec.name !== 'string' || spec.name === '') {
        throw new RouterCompileError(index, `${field}.name`, 'expected a non-empty name');
      }
      const name = lowerCaseNames ? spec.name.toLowerCase() : spec.name;
      const set =
        Number(spec.exact !== undefined) +
        Number(spec.regex !== undefined) +
        Number(spec.present !== undefined);
      if (set !== 1) {
        throw new RouterCompileError(index, field, 'expected exactly one of exact, regex or present');
      }
      if (spec.exact !== undefined) return new ValueMatcher(name, EXACT, spec.exact, null);
      if (spec.regex !== undefined) {
        return new ValueMatcher(name, REGEX, '', compileRegex(spec.regex, index, `${field}.regex`));
      }
      return new ValueMatcher(name, spec.present ? PRESENT : ABSENT, '', null);
    }),
  );
}

/** Compiles a user pattern anchored at both ends, so it must match the whole path or value. */
function compileRegex(source: string, index: number, field: string): RegExp {
  try {
    // Compiled alone first so the error message shows the user's pattern, not the anchored wrapper.
    new RegExp(source);
    return new RegExp(`^(?:${source})$`);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new RouterCompileError(index, field, `invalid regular expression "${source}": ${reason}`, {
      cause: err,
    });
  }
}

/**
 * Paths are compared as received, never decoded. Characters a client cannot send raw (non-ASCII, spaces, controls)
 * are percent-encoded here the way clients send them, so `/café` matches `/caf%C3%A9`.
 */
function literalPath(raw: string, index: number, field: string): string {
  if (typeof raw !== 'string' || !raw.startsWith('/')) {
    throw new RouterCompileError(
      index,
      field,
      `expected a path starting with "/", got ${JSON.stringify(raw)}`,
    );
  }
  const encoded = /[^\x21-\x7e]/.test(raw) ? encodeNonAscii(raw, index, field) : raw;
  // Route paths are normalized as request paths are, or a route such as `/%7Euser` could never match.
  const normalized = normalizePath(encoded);
  if (normalized === null) {
    throw new RouterCompileError(
      index,
      field,
      `path ${JSON.stringify(raw)} has a malformed percent-encoding`,
    );
  }
  return normalized;
}

function encodeNonAscii(raw: string, index: number, field: string): string {
  let out = '';
  for (const ch of raw) {
    const code = ch.codePointAt(0)!;
    if (code >= 0x21 && code <= 0x7e) {
      out += ch;
      continue;
    }
    try {
      out += encodeURIComponent(ch);
    } catch (err) {
      throw new RouterCompileError(index, field, `path ${JSON.stringify(raw)} is not valid Unicode`, {
        cause: err,
      });
    }
  }
  return out;
}
