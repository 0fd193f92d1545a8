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
  | { readonly ok: true; readonly re: RuleRegex; readonly engine: 're2' | 'v8' }
  | { readonly ok: false; readonly error: string };

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
      return { ok: true, re: new RE2(`(?s)${pattern}`), engine: 're2' };
    } catch (err) {
      if (!trusted) {
        return { ok: false, error: `pattern not supported by RE2 (linear time): ${(err as Error).message}` };
      }
    }
  }
  try {
    return { ok: true, re: toJsRegex(pattern), engine: 'v8' };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}
