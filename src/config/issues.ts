/**
 * Turns zod issues into config issues a person can act on: one per unknown key (with a suggestion), one per union
 * failure (the branch the user evidently meant, not a dump of every branch), and messages that say what was
 * expected and what was found.
 */
import type { z } from 'zod';
import type { ConfigIssue, ConfigPath, PathSegment } from './errors.js';
import { didYouMean } from './suggest.js';

type Issue = z.core.$ZodIssue;
type Schema = z.core.$ZodType;
// The parts of zod's schema definitions this walk reads; zod's own def types are a union too wide to narrow.
interface Def {
  type: string;
  innerType?: Schema;
  in?: Schema;
  out?: Schema;
  shape?: Record<string, Schema>;
  catchall?: Schema;
  element?: Schema;
  valueType?: Schema;
  options?: Schema[];
  values?: unknown[];
  entries?: Record<string, unknown>;
  getter?: () => Schema;
}

/**
 * Passed as the per-parse error map: zod uses a message given in the schema first, and this marker for every
 * other issue, so the translation below knows which messages to write itself.
 */
export const DEFAULT_MESSAGE = '\u0000default';

const def = (s: Schema): Def => s._zod.def as unknown as Def;

/** Looks through wrappers (optional, default, prefault, transform pipes, …) to the schema that checks the shape. */
function unwrap(s: Schema): Schema {
  for (let i = 0; i < 64; i++) {
    const d = def(s);
    switch (d.type) {
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
      case 'readonly':
      case 'catch':
      case 'nonoptional':
        s = d.innerType!;
        break;
      case 'pipe':
        s = def(d.in!).type === 'transform' ? d.out! : d.in!;
        break;
      case 'lazy':
        s = d.getter!();
        break;
      default:
        return s;
    }
  }
  return s;
}

/** The schema itself, or each option of a union, unwrapped. */
function alternatives(s: Schema): Schema[] {
  const u = unwrap(s);
  const d = def(u);
  return d.type === 'union' ? d.options!.flatMap(alternatives) : [u];
}

/** Every schema that could apply at `path` below `schema` (several when the path runs through a union). */
function schemasAt(schema: Schema, path: readonly PathSegment[]): Schema[] {
  let current = [schema];
  for (const seg of path) {
    const next: Schema[] = [];
    for (const s of current.flatMap(alternatives)) {
      const d = def(s);
      if (d.type === 'object') {
        const child =
          d.shape![String(seg)] ?? (d.catchall && def(d.catchall).type !== 'never' ? d.catchall : undefined);
        if (child) next.push(child);
      } else if (d.type === 'array' && typeof seg === 'number') {
        next.push(d.element!);
      } else if (d.type === 'record') {
        next.push(d.valueType!);
      }
    }
    current = next;
  }
  return current;
}

function objectKeys(schemas: readonly Schema[]): string[] {
  const keys = new Set<string>();
  for (const s of schemas.flatMap(alternatives)) {
    const d = def(s);
    if (d.type === 'object') for (const k of Object.keys(d.shape!)) keys.add(k);
  }
  return [...keys];
}

function requiredKeys(s: Schema): string[] {
  const d = def(unwrap(s));
  if (d.type !== 'object') return [];
  return Object.entries(d.shape!)
    .filter(([, v]) => v._zod.optin === undefined)
    .map(([k]) => k);
}

export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const hint = didYouMean(key, known);
  if (hint !== '' || known.length === 0) return `unknown key ${JSON.stringify(key)}${hint}`;
  const list = known.length <= 12 ? `; expected one of: ${known.join(', ')}` : '';
  return `unknown key ${JSON.stringify(key)}${list}`;
}

function valueAt(data: unknown, path: readonly PathSegment[]): unknown {
  let v = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    if (!Object.hasOwn(v, seg)) return undefined;
    v = (v as Record<PathSegment, unknown>)[seg];
  }
  return v;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const samePath = (a: ConfigPath, b: ConfigPath) =>
  a.length === b.length && a.every((s, i) => String(s) === String(b[i]));

// ---------- words ----------

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);
}

/** The value as the user wrote it; never the content of a secret. */
function shown(value: unknown, secret: boolean): string {
  if (secret) return `a value from a \${env:} or \${file:} reference`;
  if (typeof value === 'string') return quote(value);
  if (value === undefined) return 'nothing';
  if (Array.isArray(value))
    return value.length === 0 ? 'an empty array' : `an array of ${plural(value.length, 'item')}`;
  if (isPlainObject(value)) return 'an object';
  return String(value);
}

/** The value's kind first, for type mismatches. */
function typed(value: unknown, secret: boolean): string {
  if (typeof value === 'string')
    return secret ? `a string (from a \${env:} or \${file:} reference)` : `a string (${quote(value)})`;
  return shown(value, secret);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function expectedType(expected: string): string {
  switch (expected) {
    case 'int':
      return 'an integer';
    case 'boolean':
      return 'true or false';
    case 'object':
    case 'array':
      return `an ${expected}`;
    default:
      return `a ${expected}`;
  }
}

function listValues(values: readonly unknown[]): string {
  return values.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ');
}

function joinOr(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

/** The message for an issue whose schema gave none. */
function defaultMessage(iss: Issue, value: unknown, secret: boolean): string {
  const got = `, got ${shown(value, secret)}`;
  switch (iss.code) {
    case 'invalid_type':
      return `expected ${expectedType(iss.expected)}, got ${typed(value, secret)}`;
    case 'too_small':
    case 'too_big': {
      const small = iss.code === 'too_small';
      const bound = Number(
        small ? (iss as { minimum: number | bigint }).minimum : (iss as { maximum: number | bigint }).maximum,
      );
      const inclusive = iss.inclusive !== false;
      if (iss.origin === 'array' || iss.origin === 'set') {
        return `expected ${small ? 'at least' : 'at most'} ${plural(bound, 'item')}${got}`;
      }
      if (iss.origin === 'string') {
        if (small && bound === 1) return 'expected a non-empty string';
        return `expected ${small ? 'at least' : 'at most'} ${plural(bound, 'character')}${got}`;
      }
      const word = small ? (inclusive ? 'at least' : 'greater than') : inclusive ? 'at most' : 'less than';
      return `expected a number ${word} ${bound}${got}`;
    }
    case 'invalid_format': {
      const f = iss as {
        format: string;
        prefix?: string;
        suffix?: string;
        includes?: string;
        pattern?: string;
      };
      if (f.format === 'starts_with') return `expected a string starting with ${quote(f.prefix ?? '')}${got}`;
      if (f.format === 'ends_with') return `expected a string ending with ${quote(f.suffix ?? '')}${got}`;
      if (f.format === 'includes') return `expected a string containing ${quote(f.includes ?? '')}${got}`;
      if (f.format === 'regex') return `expected a string matching ${f.pattern}${got}`;
      return `expected a valid ${f.format}${got}`;
    }
    case 'invalid_value':
      return `expected one of: ${listValues(iss.values)}${got}`;
    case 'not_multiple_of':
      return `expected a multiple of ${iss.divisor}${got}`;
    case 'unrecognized_keys':
      return `unknown keys: ${iss.keys.join(', ')}`;
    case 'invalid_key':
      return 'invalid key';
    default:
      return 'invalid value';
  }
}

function message(iss: Issue, value: unknown, secret: boolean): string {
  if (iss.message !== DEFAULT_MESSAGE) {
    // The schema's own messages say what was expected; add what was found when it is a short scalar.
    const scalar = typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
    return scalar && iss.message.startsWith('expected') && !iss.message.includes(', got ')
      ? `${iss.message}, got ${shown(value, secret)}`
      : iss.message;
  }
  return defaultMessage(iss, value, secret);
}

// ---------- translation ----------

/**
 * Config issues for zod's `issues` from parsing `data` with `schema`. Values at `secretPaths` are never quoted back.
 */
export function translateZodIssues(
  issues: readonly Issue[],
  schema: Schema,
  data: unknown,
  secretPaths: readonly ConfigPath[] = [],
): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const isSecret = (path: ConfigPath) => secretPaths.some((p) => samePath(p, path));

  const translate = (list: readonly Issue[], at: Schema, base: readonly PathSegment[]): void => {
    for (const iss of list) {
      const rel = iss.path.map((s) => (typeof s === 'symbol' ? String(s) : s));
      const path = [...base, ...rel];
      const value = valueAt(data, path);
      const secret = isSecret(path);
      switch (iss.code) {
        case 'unrecognized_keys': {
          const known = objectKeys(schemasAt(at, rel));
          for (const key of iss.keys) {
            out.push({
              path,
              message: unknownKeyMessage(key, known),
              at: { path: [...path, key], key: true },
            });
          }
          break;
        }
        case 'invalid_union': {
          // A union told apart by a field (policies by `type`): name the field's value and the known ones.
          const d = iss as { discriminator?: string; options?: unknown[] };
          if (d.discriminator !== undefined && iss.errors.length === 0) {
            const known = (d.options ?? []).map(String);
            const list = `expected one of: ${known.join(', ')}`;
            out.push({
              path,
              message:
                value === undefined
                  ? `missing required key ${quote(d.discriminator)}; ${list}`
                  : `unknown ${d.discriminator} ${shown(value, secret)}${didYouMean(String(value), known)}; ${list}`,
            });
            break;
          }
          union(iss, schemasAt(at, rel), path, value, secret);
          break;
        }
        case 'invalid_key': {
          const key = String(rel.at(-1));
          const inner = iss.issues[0];
          // The key is quoted already, so the message need not repeat it.
          const why = inner ? message(inner, undefined, false) : 'invalid key';
          out.push({ path, message: `invalid key ${quote(key)}: ${why}`, at: { path, key: true } });
          break;
        }
        case 'invalid_type':
          if (
            value === undefined &&
            typeof path.at(-1) === 'string' &&
            isPlainObject(valueAt(data, path.slice(0, -1)))
          ) {
            out.push({ path, message: `missing required key ${quote(String(path.at(-1)))}` });
            break;
          }
          out.push({
            path,
            message: message(iss, value, secret) + (secret ? ' (references always give strings)' : ''),
          });
          break;
        default:
          out.push({ path, message: message(iss, value, secret) });
      }
    }
  };

  const union = (
    iss: Extract<Issue, { code: 'invalid_union' }>,
    schemas: Schema[],
    path: PathSegment[],
    value: unknown,
    secret: boolean,
  ): void => {
    const u = schemas.map(unwrap).find((s) => def(s).type === 'union');
    if (u === undefined || !('errors' in iss)) {
      out.push({ path, message: message(iss, value, secret) });
      return;
    }
    const options = alternatives(u);
    if (options.every((o) => def(o).type === 'literal' || def(o).type === 'enum')) {
      out.push({ path, message: `expected ${describeUnion(u)}, got ${shown(value, secret)}` });
      return;
    }
    const branches = def(u).options!.map((schema, i) => ({ schema, issues: iss.errors[i] ?? [] }));
    const sameType = branches.filter((b) => accepts(b.schema, value));
    if (sameType.length === 0) {
      out.push({ path, message: `expected ${describeUnion(u)}, got ${typed(value, secret)}` });
      return;
    }
    const fewest = (bs: typeof branches) => bs.reduce((a, b) => (b.issues.length < a.issues.length ? b : a));
    if (sameType.length === 1) {
      translate(sameType[0]!.issues, sameType[0]!.schema, path);
      return;
    }
    // Several object branches: prefer one whose keys fit and whose values are wrong, then one that lacks keys
    // but has no foreign ones; else the keys themselves are the mistake.
    const missingKey = (i: Issue) =>
      i.path.length === 1 &&
      i.code === 'invalid_type' &&
      valueAt(value, i.path as PathSegment[]) === undefined;
    const foreignKey = (i: Issue) => i.path.length === 0 && i.code === 'unrecognized_keys';
    const fitting = sameType.filter((b) => !b.issues.some((i) => missingKey(i) || foreignKey(i)));
    if (fitting.length > 0) {
      const b = fewest(fitting);
      translate(b.issues, b.schema, path);
      return;
    }
    const noForeign = sameType.filter((b) => !b.issues.some(foreignKey));
    if (noForeign.length === 1) {
      translate(noForeign[0]!.issues, noForeign[0]!.schema, path);
      return;
    }
    if (isPlainObject(value) && sameType.every((b) => def(unwrap(b.schema)).type === 'object')) {
      const known = objectKeys(sameType.map((b) => b.schema));
      const foreign = Object.keys(value).filter((k) => !known.includes(k));
      for (const key of foreign) {
        out.push({ path, message: unknownKeyMessage(key, known), at: { path: [...path, key], key: true } });
      }
      if (foreign.length === 0) {
        const present = Object.keys(value).map((k) => JSON.stringify(k));
        const got = present.length === 0 ? 'none of them' : present.join(' and ');
        out.push({
          path,
          message: `expected ${describeKeyChoice(sameType.map((b) => b.schema))}, got ${got}`,
        });
      }
      return;
    }
    const b = fewest(sameType);
    translate(b.issues, b.schema, path);
  };

  translate(issues, schema, []);
  return out;
}

/** Whether `value` is of the kind `schema` checks (an object for an object schema, …), whatever else is wrong. */
function accepts(schema: Schema, value: unknown): boolean {
  const d = def(unwrap(schema));
  switch (d.type) {
    case 'object':
    case 'record':
      return isPlainObject(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
    case 'number':
    case 'boolean':
      return typeof value === d.type;
    case 'literal':
      return (d.values ?? []).some((v) => typeof v === typeof value);
    case 'enum':
      return Object.values(d.entries ?? {}).some((v) => typeof v === typeof value);
    case 'union':
      return d.options!.some((o) => accepts(o, value));
    default:
      return true;
  }
}

/** `exactly one of "exact", "prefix", "template" or "regex"` for a union of objects told apart by their keys. */
function describeKeyChoice(options: readonly Schema[]): string {
  const choices = options.map((o) => {
    const [first, ...rest] = requiredKeys(o).map((k) => JSON.stringify(k));
    return rest.length === 0 ? (first ?? 'an empty object') : `${first} with ${rest.join(' and ')}`;
  });
  return `exactly one of ${joinOr(choices)}`;
}

/** What a union accepts, in words: `a number or a string`, `one of: 301, 302`, `an object with exactly one of …`. */
function describeUnion(u: Schema): string {
  const options = alternatives(u);
  const literals = options.flatMap((o) => {
    const d = def(o);
    if (d.type === 'literal') return d.values ?? [];
    if (d.type === 'enum') return Object.values(d.entries ?? {});
    return [];
  });
  if (literals.length > 0 && options.every((o) => ['literal', 'enum'].includes(def(o).type))) {
    return `one of: ${listValues(literals)}`;
  }
  if (options.every((o) => def(o).type === 'object')) return `an object with ${describeKeyChoice(options)}`;
  const kinds = options.map((o) => {
    const t = def(o).type;
    if (t === 'literal' || t === 'enum')
      return `one of: ${listValues(def(o).values ?? Object.values(def(o).entries ?? {}))}`;
    return expectedType(t);
  });
  return joinOr([...new Set(kinds)]);
}
