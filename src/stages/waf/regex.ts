/**
 * Regular expressions for rules: RE2 (the `re2` package, linear time) wherever a pattern translates, V8's RegExp
 * for the few CRS patterns RE2 cannot run (lookarounds, backreferences). User-supplied patterns must translate to
 * RE2: one that does not is a config error, so no user pattern can make the gateway backtrack. When the `re2`
 * package is not installed (an optional dependency: it builds from source), every pattern runs on V8 and the
 * policy says so at load (docs/waf.md).
 */
import { createRequire } from 'node:module';

export interface RuleRegex {
  exec(s: string): RegExpExecArray | null;
  test(s: string): boolean;
}

type Re2Ctor = new (pattern: string, flags?: string) => RuleRegex;

let re2: Re2Ctor | null | undefined;

/** The RE2 constructor, or null when the package cannot load (not installed, or built for another Node). */
export function loadRe2(): Re2Ctor | null {
  if (re2 === undefined) {
    try {
      re2 = createRequire(import.meta.url)('re2') as Re2Ctor;
    } catch {
      re2 = null;
    }
  }
  return re2;
}

export type CompiledRegex =
  | {
      readonly ok: true;
      readonly re: RuleRegex;
      readonly engine: 're2' | 'v8';
      /** The source RE2 compiled (for a {@link RegexSetBuilder}); undefined on V8. */
      readonly re2Source: string | undefined;
    }
  | { readonly ok: false; readonly error: string };

/** Many patterns, one pass: the indexes of the patterns that match `s`, ascending. May throw (RE2 out of memory). */
export interface RegexSet {
  match(s: string): number[];
}

type Re2SetCtor = new (patterns: Iterable<string>) => RegexSet;

/**
 * Gathers the RE2 patterns of a rule set at compile time into one `RE2.Set`, so that a value is run through every
 * pattern in a single native call (a DFA over all of them) instead of one call per rule: a rule's `@rx` then looks
 * its index up in the set's answer for the value, which the transaction keeps for the request. The set uses the
 * same sources and options as the single regexes (same matches); they stay for `capture` and as the fallback
 * when the set cannot answer (its DFA out of memory on some input).
 */
export class RegexSetBuilder {
  readonly #sources: string[] = [];
  readonly #index = new Map<string, number>();

  /** The index of `re2Source` in the set to be built (one index per distinct source). */
  add(re2Source: string): number {
    let i = this.#index.get(re2Source);
    if (i === undefined) {
      i = this.#sources.length;
      this.#sources.push(re2Source);
      this.#index.set(re2Source, i);
    }
    return i;
  }

  get size(): number {
    return this.#sources.length;
  }

  /** The set, or undefined when there is nothing to gather or RE2.Set refuses (then rules run their own regexes). */
  matcher(): RegexSetMatcher | undefined {
    const RE2 = loadRe2() as (Re2Ctor & { Set?: Re2SetCtor }) | null;
    if (RE2?.Set === undefined || this.#sources.length === 0) return undefined;
    try {
      return new RegexSetMatcher(new RE2.Set(this.#sources), this.#sources.length);
    } catch {
      return undefined;
    }
  }
}

const NO_HITS: readonly number[] = Object.freeze([]);

/**
 * A rule set's {@link RegexSet} with a bounded memory of its answers for short values (argument and header
 * names, header values, small arguments: the same across the requests of an API). Two generations of at most
 * `entries` values each: when the young one fills, it becomes the old one and the old one is dropped, so memory
 * stays bounded whatever the traffic, and a value seen again is answered without the native call.
 */
export class RegexSetMatcher {
  readonly #set: RegexSet;
  readonly #entries: number;
  #young = new Map<string, readonly number[] | null>();
  #old = new Map<string, readonly number[] | null>();
  /** Values up to this many characters are remembered across requests. */
  readonly cacheableLength: number;
  /** Patterns in the set (indexes 0 to size - 1). */
  readonly size: number;

  constructor(set: RegexSet, size: number, entries = 4096, cacheableLength = 256) {
    this.#set = set;
    this.size = size;
    this.#entries = entries;
    this.cacheableLength = cacheableLength;
  }

  /** The matching pattern indexes (ascending), or null when the set cannot answer for `s` (its DFA out of memory). */
  match(s: string): readonly number[] | null {
    if (s.length > this.cacheableLength) return this.#run(s);
    let hits = this.#young.get(s);
    if (hits !== undefined) return hits;
    hits = this.#old.get(s);
    if (hits === undefined) hits = this.#run(s);
    if (this.#young.size >= this.#entries) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(s, hits);
    return hits;
  }

  #run(s: string): readonly number[] | null {
    try {
      const m = this.#set.match(s);
      return m.length === 0 ? NO_HITS : m;
    } catch {
      // RE2.Set throws when its DFA runs out of memory on an input: the rules then run their own regexes.
      return null;
    }
  }
}

/**
 * PCRE → JavaScript for V8: an `(?i)` (leading or after `^`) or any `(?i:` group sets the `i` flag for the whole pattern (V8 on
 * Node 20 has no inline modifiers; this can only match more, never less), `\A`/`\Z`/`\z` become `^`/`$`.
 */
export function toJsRegex(pattern: string): RegExp {
  let p = pattern;
  let flags = 's';
  // `(?i)` anywhere (CRS writes `^(?i)multipart/form-data`), not escaped.
  if (p.includes('(?i)')) {
    p = p.replace(/(^|[^\\])\(\?i\)/g, '$1');
    flags += 'i';
  }
  if (p.includes('(?i:')) {
    p = p.replace(/\(\?i:/g, '(?:');
    if (!flags.includes('i')) flags += 'i';
  }
  p = p.replace(/(^|[^\\])\\A/g, '$1^').replace(/(^|[^\\])\\[Zz]/g, '$1$');
  return new RegExp(p, flags);
}

/**
 * Possessive quantifiers (`a++`, `[^x]*+`, `\s?+`) → greedy ones: neither RE2 nor V8 has them. Without
 * backtracking (RE2) the two find the same matches in the patterns CRS writes; on V8 the greedy form can only
 * match more. Escapes and character classes are skipped over.
 */
export function dropPossessive(p: string): string {
  if (p.indexOf('+') < 0) return p;
  let out = '';
  let inClass = false;
  // The last thing written was a quantifier (not an escaped or class character).
  let quantified = false;
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '\\') {
      out += c + (p[i + 1] ?? '');
      i++;
      quantified = false;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (p[i + 1] === '^') out += p[++i];
      if (p[i + 1] === ']') out += p[++i];
      quantified = false;
      continue;
    }
    if (c === '+' && quantified) {
      quantified = false;
      continue;
    }
    quantified = c === '*' || c === '+' || c === '}' || (c === '?' && p[i - 1] !== '(');
    out += c;
  }
  return out;
}

/** Compiles a rule pattern; `trusted` (the CRS files) may fall back to V8, user patterns may not. */
export function compileRegex(source: string, trusted: boolean): CompiledRegex {
  const pattern = dropPossessive(source);
  const RE2 = loadRe2();
  if (RE2 !== null) {
    try {
      // RE2's `s` flag: `.` matches a newline, as PCRE_DOTALL does in ModSecurity.
      const re2Source = `(?s)${pattern}`;
      return { ok: true, re: new RE2(re2Source), engine: 're2', re2Source };
    } catch (err) {
      if (!trusted) {
        return { ok: false, error: `pattern not supported by RE2 (linear time): ${(err as Error).message}` };
      }
    }
  }
  try {
    return { ok: true, re: toJsRegex(pattern), engine: 'v8', re2Source: undefined };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}
