/**
 * `google.api.http` path templates: parsing (at config load) and matching (per request).
 *
 *   Template = "/" Segments [ Verb ] ;
 *   Segments = Segment { "/" Segment } ;
 *   Segment  = "*" | "**" | LITERAL | Variable ;
 *   Variable = "{" FieldPath [ "=" Segments ] "}" ;
 *   FieldPath = IDENT { "." IDENT } ;
 *   Verb     = ":" LITERAL ;
 *
 * `*` matches one path segment, `**` zero or more (only as the last segment); `{name}` is `{name=*}`. A variable
 * of one segment gets that segment percent-decoded; a variable spanning several keeps `%2F` (and the other
 * reserved characters) encoded, as the rules of http.proto say.
 */

export class TemplateError extends Error {}

type Seg =
  | { readonly kind: 'literal'; readonly value: string }
  | { readonly kind: 'one' } // *
  | { readonly kind: 'any' }; // **

export interface TemplateVariable {
  /** Field path, split: `book.name` → ['book', 'name']. */
  readonly field: readonly string[];
  /** Index of the first segment it covers. */
  readonly start: number;
  /** Index after its last segment; -1: to the end of the path (it ends with `**`). */
  readonly end: number;
}

export interface PathTemplate {
  /** As written. */
  readonly source: string;
  readonly segments: readonly Seg[];
  readonly verb: string | undefined;
  readonly variables: readonly TemplateVariable[];
  /** Ends with `**`: matches paths with at least `segments.length - 1` segments. */
  readonly tail: boolean;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
// RFC 3986 pchar, without the characters the template syntax uses ('{', '}', '*', '/', ':' is allowed inside).
const LITERAL = /^(?:[A-Za-z0-9\-._~!$&'()+,;=@:]|%[0-9A-Fa-f]{2})+$/;

/** Parses a template; throws TemplateError naming what is wrong. */
export function parseTemplate(source: string): PathTemplate {
  if (!source.startsWith('/')) throw new TemplateError(`"${source}": a path template starts with "/"`);
  let body = source.slice(1);
  let verb: string | undefined;
  // The verb is after the last ':' that is outside braces and after the last '/'.
  let depth = 0;
  let colon = -1;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '{') depth++;
    else if (c === '}') depth--;
    else if (c === '/' && depth === 0) colon = -1;
    else if (c === ':' && depth === 0) colon = i;
  }
  if (depth !== 0) throw new TemplateError(`"${source}": unbalanced braces`);
  if (colon !== -1) {
    verb = body.slice(colon + 1);
    body = body.slice(0, colon);
    if (!LITERAL.test(verb) || verb.includes(':'))
      throw new TemplateError(`"${source}": invalid verb ":${verb}"`);
  }
  const segments: Seg[] = [];
  const variables: TemplateVariable[] = [];
  const seen = new Set<string>();
  // Split at '/' outside braces.
  const parts: string[] = [];
  let cur = '';
  depth = 0;
  for (const c of body) {
    if (c === '{') depth++;
    else if (c === '}') depth--;
    if (c === '/' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  const addPlain = (p: string, where: string): void => {
    if (p === '*') segments.push({ kind: 'one' });
    else if (p === '**') segments.push({ kind: 'any' });
    else if (p === '') throw new TemplateError(`"${source}": empty path segment${where}`);
    else if (!LITERAL.test(p)) throw new TemplateError(`"${source}": invalid path segment "${p}"${where}`);
    else segments.push({ kind: 'literal', value: p });
  };
  for (const part of parts) {
    if (part.startsWith('{')) {
      if (!part.endsWith('}')) throw new TemplateError(`"${source}": "${part}" must be a whole segment`);
      const inner = part.slice(1, -1);
      const eq = inner.indexOf('=');
      const fieldPath = eq === -1 ? inner : inner.slice(0, eq);
      const field = fieldPath.split('.');
      if (!field.every((f) => IDENT.test(f)))
        throw new TemplateError(`"${source}": invalid field path "${fieldPath}" in a variable`);
      if (seen.has(fieldPath)) throw new TemplateError(`"${source}": variable "${fieldPath}" appears twice`);
      seen.add(fieldPath);
      const start = segments.length;
      if (eq === -1) segments.push({ kind: 'one' });
      else {
        const sub = inner.slice(eq + 1);
        if (sub.includes('{') || sub.includes('}'))
          throw new TemplateError(`"${source}": variables cannot nest`);
        for (const s of sub.split('/')) addPlain(s, ` in variable "${fieldPath}"`);
      }
      const last = segments[segments.length - 1]!;
      variables.push({ field, start, end: last.kind === 'any' ? -1 : segments.length });
    } else if (part.includes('{') || part.includes('}')) {
      throw new TemplateError(`"${source}": a variable must be a whole segment, not part of "${part}"`);
    } else if (part === '' && parts.length === 1) {
      // "/" alone: no segments.
    } else addPlain(part, '');
  }
  const anyAt = segments.findIndex((s) => s.kind === 'any');
  if (anyAt !== -1 && anyAt !== segments.length - 1)
    throw new TemplateError(`"${source}": "**" may only be the last segment`);
  return { source, segments, verb, variables, tail: anyAt !== -1 };
}

/** A request path split for matching: segments (still percent-encoded) and the verb. */
export interface SplitPath {
  readonly segments: readonly string[];
  /** The text after the last ':' of the last segment ('' for none); a template with a verb compares it. */
  readonly verb: string;
  /** The last segment without its verb. */
  readonly lastWithoutVerb: string;
}

export function splitPath(path: string): SplitPath {
  const segments = path === '/' ? [] : path.slice(1).split('/');
  const last = segments.length === 0 ? '' : segments[segments.length - 1]!;
  const colon = last.lastIndexOf(':');
  return colon === -1
    ? { segments, verb: '', lastWithoutVerb: last }
    : { segments, verb: last.slice(colon + 1), lastWithoutVerb: last.slice(0, colon) };
}

/**
 * Matches a split path; returns the variables' values (decoded as the rules say) by dotted field path, or
 * undefined when it does not match.
 */
export function matchTemplate(t: PathTemplate, p: SplitPath): Map<string, string> | undefined {
  let segs = p.segments;
  if (t.verb !== undefined) {
    if (p.verb !== t.verb || segs.length === 0) return undefined;
    segs = [...segs.slice(0, -1), p.lastWithoutVerb];
  }
  const n = t.segments.length;
  if (t.tail ? segs.length < n - 1 : segs.length !== n) return undefined;
  for (let i = 0; i < n; i++) {
    const s = t.segments[i]!;
    if (s.kind === 'any') break;
    const v = segs[i]!;
    if (s.kind === 'literal') {
      if (v !== s.value) return undefined;
    } else if (v === '') return undefined;
  }
  const out = new Map<string, string>();
  for (const v of t.variables) {
    const end = v.end === -1 ? segs.length : v.end;
    const value =
      end - v.start === 1 && v.end !== -1
        ? decodeSegment(segs[v.start]!, false)
        : segs
            .slice(v.start, end)
            .map((s) => decodeSegment(s, true))
            .join('/');
    if (value === undefined) return undefined;
    out.set(v.field.join('.'), value);
  }
  return out;
}

/** RFC 6570 reserved characters, kept encoded in a multi-segment variable. */
const RESERVED = new Set([
  ':',
  '/',
  '?',
  '#',
  '[',
  ']',
  '@',
  '!',
  '$',
  '&',
  "'",
  '(',
  ')',
  '*',
  '+',
  ',',
  ';',
  '=',
]);

/** Percent-decodes a segment (undefined: malformed); `keepReserved` leaves %2F and the other reserved escapes. */
function decodeSegment(s: string, keepReserved: boolean): string | undefined {
  if (!s.includes('%')) return s;
  try {
    if (!keepReserved) return decodeURIComponent(s);
    return s.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
      let out = '';
      const bytes: number[] = [];
      const flush = () => {
        if (bytes.length > 0) out += Buffer.from(bytes).toString('utf8');
        bytes.length = 0;
      };
      for (let i = 0; i < run.length; i += 3) {
        const b = Number.parseInt(run.slice(i + 1, i + 3), 16);
        if (b < 0x80 && RESERVED.has(String.fromCharCode(b))) {
          flush();
          out += run.slice(i, i + 3).toUpperCase();
        } else bytes.push(b);
      }
      flush();
      return out;
    });
  } catch {
    return undefined;
  }
}

/**
 * Orders templates most specific first: literal before `*` before `**`, segment by segment, then more segments,
 * then a verb before none. Two templates of equal rank that both match a path are a config error (see bindings).
 */
export function compareSpecificity(a: PathTemplate, b: PathTemplate): number {
  const rank = (s: Seg | undefined) =>
    s === undefined ? 3 : s.kind === 'literal' ? 0 : s.kind === 'one' ? 1 : 2;
  const n = Math.max(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const d = rank(a.segments[i]) - rank(b.segments[i]);
    if (d !== 0) return d;
  }
  if ((a.verb === undefined) !== (b.verb === undefined)) return a.verb === undefined ? 1 : -1;
  return 0;
}

/** The canonical shape of a template, for telling duplicates apart: variables become their patterns. */
export function templateShape(t: PathTemplate): string {
  const segs = t.segments.map((s) => (s.kind === 'literal' ? s.value : s.kind === 'one' ? '*' : '**'));
  return `/${segs.join('/')}${t.verb === undefined ? '' : `:${t.verb}`}`;
}
