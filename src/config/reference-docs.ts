/**
 * docs/configuration.md, generated from the config's JSON Schema (`npm run docs:config`), so that the `.describe()`
 * texts in schema.ts stay the one source of the reference; a test fails when the file is stale.
 */
import { z } from 'zod';
import { configJsonSchema } from './json-schema.js';
import { byteSize, duration } from './schema.js';

/** The part of JSON Schema that `configJsonSchema()` uses. */
interface Schema {
  type?: string;
  description?: string;
  default?: unknown;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  propertyNames?: Schema;
  items?: Schema;
  minItems?: number;
  anyOf?: Schema[];
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  minLength?: number;
  minimum?: number;
  maximum?: number;
}

/** The string pattern and largest number of the duration and size schemas, to recognise them in the export. */
function signature(s: z.ZodType): { pattern: string; max: number } {
  const alternatives = (z.toJSONSchema(s, { io: 'input', target: 'draft-2020-12' }) as Schema).anyOf ?? [];
  return {
    pattern: alternatives.find((a) => a.type === 'string')?.pattern ?? '',
    max: alternatives.find((a) => a.type === 'integer')?.maximum ?? Number.MAX_SAFE_INTEGER,
  };
}

const DURATION = signature(duration);
const SIZE = signature(byteSize);

function isScaled(s: Schema, sig: { pattern: string }): boolean {
  return (
    s.anyOf?.length === 2 &&
    s.anyOf.some((a) => a.type === 'integer') &&
    s.anyOf.some((a) => a.type === 'string' && a.pattern === sig.pattern)
  );
}

const isDuration = (s: Schema) => isScaled(s, DURATION);
const isSize = (s: Schema) => isScaled(s, SIZE);
const isObject = (s: Schema) => s.type === 'object' && s.properties !== undefined;
const isMap = (s: Schema) => s.type === 'object' && typeof s.additionalProperties === 'object';
const enumValues = (s: Schema): unknown[] | undefined =>
  s.enum ?? (s.anyOf?.every((a) => 'const' in a) ? s.anyOf.map((a) => a.const) : undefined);
/** A union that is neither a duration, a size nor a set of constants. */
const isUnion = (s: Schema) =>
  s.anyOf !== undefined && !isDuration(s) && !isSize(s) && enumValues(s) === undefined;
/** Objects, and unions with an object among their forms, get a section of their own. */
const hasSection = (s: Schema) => isObject(s) || (isUnion(s) && s.anyOf!.some(isObject));

/** Inline code that survives backticks in the text (as in the header-name pattern). */
function code(text: string): string {
  return text.includes('`') ? `\`\` ${text} \`\`` : `\`${text}\``;
}

/** A table cell: `|` would end the cell, even inside inline code. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

/** The anchor GitHub gives a heading. */
function anchor(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

const link = (text: string, path: string) => `[${text}](#${anchor(code(path))})`;

function orList(items: string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

/** Milliseconds in the largest unit that divides them: 300000 → `5m`. */
function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms > 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Bytes in the largest binary unit that divides them: 16384 → `16KiB`. */
function formatSize(bytes: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes > 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

function formatDefault(s: Schema): string {
  if (!('default' in s)) return '';
  const v = s.default;
  if (typeof v === 'number' && isDuration(s)) return code(formatDuration(v));
  if (typeof v === 'number' && isSize(s)) return code(formatSize(v));
  return code(JSON.stringify(v));
}

/** `^\/.*` (zod's `startsWith('/')`) → `/`. */
function literalPrefix(pattern: string): string | undefined {
  const m = /^\^((?:\\.|[^\\.*+?()[\]{}|^$])+)\.\*$/.exec(pattern);
  return m ? m[1]!.replace(/\\(.)/g, '$1') : undefined;
}

function stringType(s: Schema): string {
  let text = s.minLength !== undefined && s.minLength > 0 ? 'non-empty string' : 'string';
  if (s.pattern !== undefined) {
    const prefix = literalPrefix(s.pattern);
    text += prefix !== undefined ? ` starting with ${code(prefix)}` : ` matching ${code(s.pattern)}`;
  }
  return text;
}

function numberType(s: Schema): string {
  const type = s.type === 'integer' ? 'integer' : 'number';
  const max = s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER ? s.maximum : undefined;
  if (s.minimum !== undefined && max !== undefined) return `${type}, ${s.minimum} to ${max}`;
  if (s.minimum !== undefined) return `${type}, at least ${s.minimum}`;
  if (max !== undefined) return `${type}, at most ${max}`;
  return type;
}

/**
 * How a union form is named: `type: api-key` for an object told apart by a constant `type` (policies),
 * `{ regex, substitution }` for another object, its type otherwise.
 */
function formLabel(s: Schema, path: string): string {
  const tag = s.properties?.type?.const;
  if (isObject(s) && typeof tag === 'string') return code(`type: ${tag}`);
  return isObject(s) ? code(`{ ${Object.keys(s.properties!).join(', ')} }`) : typeOf(s, path);
}

/** zod exports a union told apart by a field (`z.discriminatedUnion`) as `oneOf`; the tables treat it as `anyOf`. */
function oneOfAsAnyOf(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(oneOfAsAnyOf);
  if (s === null || typeof s !== 'object') return s;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) out[k === 'oneOf' ? 'anyOf' : k] = oneOfAsAnyOf(v);
  return out;
}

/** The type column; `path` is where the value sits, for links to its section. */
function typeOf(s: Schema, path: string): string {
  if (isDuration(s)) return 'duration';
  if (isSize(s)) return 'size';
  const values = enumValues(s);
  if (values !== undefined) return orList(values.map((v) => code(String(v))));
  if (isUnion(s)) {
    const forms = s.anyOf!.map((a) => formLabel(a, path)).join(', ');
    return `${hasSection(s) ? link('one of', path) : 'one of'}: ${forms}`;
  }
  if (isObject(s)) return link('object', path);
  if (isMap(s)) {
    const key = s.propertyNames ? stringType(s.propertyNames) : 'string';
    return `map of ${key} to ${typeOf(s.additionalProperties as Schema, `${path}.*`)}`;
  }
  switch (s.type) {
    case 'array': {
      const items = s.items ?? {};
      const itemPath = `${path}[]`;
      const of = isObject(items)
        ? link('objects', itemPath)
        : isUnion(items)
          ? `(${typeOf(items, itemPath)})`
          : typeOf(items, itemPath);
      return `list of ${of}${s.minItems ? `, at least ${s.minItems}` : ''}`;
    }
    case 'string':
      return stringType(s);
    case 'integer':
    case 'number':
      return numberType(s);
    case 'boolean':
      return 'boolean';
    default:
      return s.type ?? 'any';
  }
}

const TABLE_HEAD = ['| field | type | default | required | description |', '| --- | --- | --- | --- | --- |'];

/** The rows for the fields of an object at `path`. */
function fieldRows(s: Schema, path: string): string[] {
  const required = new Set(s.required ?? []);
  return Object.entries(s.properties ?? {}).map(([key, field]) => {
    const fieldPath = `${path}.${key}`;
    const description = field.description ?? field.items?.description ?? '';
    const cells = [
      code(fieldPath),
      typeOf(field, fieldPath),
      formatDefault(field),
      required.has(key) ? 'yes' : 'no',
      description,
    ];
    return `| ${cells.map(cell).join(' | ')} |`;
  });
}

/** The sections of the objects and unions below the fields of `s`, in field order, depth first. */
function childSections(s: Schema, path: string): string[] {
  const lines: string[] = [];
  for (const [key, field] of Object.entries(s.properties ?? {})) {
    const fieldPath = `${path}.${key}`;
    if (hasSection(field)) lines.push(...section(field, fieldPath));
    if (field.type === 'array' && field.items && hasSection(field.items)) {
      lines.push(...section(field.items, `${fieldPath}[]`));
    }
  }
  return lines;
}

/** A `###` section: an object's table, or a union's forms with a table for each object form. */
function section(s: Schema, path: string): string[] {
  const lines = [`### ${code(path)}`, ''];
  if (s.description) lines.push(s.description, '');
  if (isObject(s)) return [...lines, ...TABLE_HEAD, ...fieldRows(s, path), '', ...childSections(s, path)];
  lines.push(`One of these ${s.anyOf!.length} forms:`, '');
  const nested: string[] = [];
  // Forms told apart by `type` (policies) may each have a field of the same name: one section when they are
  // the same, else a section per form, its heading naming the type.
  const seen = new Map<string, string>();
  for (const form of s.anyOf!) {
    lines.push(`**${formLabel(form, path)}**${form.description ? `: ${form.description}` : ''}`, '');
    if (!isObject(form)) continue;
    let rows = fieldRows(form, path);
    const tag = form.properties?.type?.const;
    for (const chunk of splitSections(childSections(form, path))) {
      const heading = chunk[0]!;
      const text = chunk.join('\n');
      const first = seen.get(heading);
      if (first === text) continue;
      if (first === undefined) {
        seen.set(heading, text);
        nested.push(...chunk);
        continue;
      }
      const renamed = `${heading} (${String(tag)})`;
      const from = `](#${anchor(heading.slice(4))})`;
      const to = `](#${anchor(renamed.slice(4))})`;
      rows = rows.map((r) => r.split(from).join(to));
      nested.push(renamed, ...chunk.slice(1));
    }
    lines.push(...TABLE_HEAD, ...rows, '');
  }
  return [...lines, ...nested];
}

/** `### ` sections, each a list of lines starting with its heading. */
function splitSections(lines: string[]): string[][] {
  const out: string[][] = [];
  for (const l of lines) {
    if (l.startsWith('### ') || out.length === 0) out.push([l]);
    else out.at(-1)!.push(l);
  }
  return out;
}

/** A `##` section for a top-level key: what it is, then the table of its object (or of each item). */
function topSection(key: string, s: Schema, required: boolean): string[] {
  const lines = [`## ${key}`, ''];
  const item = s.type === 'array' ? s.items : undefined;
  const description = s.description ?? item?.description;
  if (description) lines.push(description, '');
  const presence = required ? '**Required**' : `Optional (default ${formatDefault(s) || 'none'})`;
  if (item !== undefined && isObject(item)) {
    const size = s.minItems
      ? ` of at least ${s.minItems} ${s.minItems === 1 ? 'object' : 'objects'}`
      : ' of objects';
    lines.push(`${presence}: a list${size}, each with these fields.`, '');
    return [...lines, ...TABLE_HEAD, ...fieldRows(item, `${key}[]`), '', ...childSections(item, `${key}[]`)];
  }
  if (isObject(s)) {
    lines.push(`${presence}: an object with these fields.`, '');
    return [...lines, ...TABLE_HEAD, ...fieldRows(s, key), '', ...childSections(s, key)];
  }
  if (item !== undefined && hasSection(item)) {
    // A list of a union (policies, one form per type): each form's table, in the item's own section.
    lines.push(`${presence}: ${typeOf(s, key)}.`, '');
    // Its forms go straight under this heading: `### policies[]` would have the same anchor as `## policies`.
    const forms = section({ ...item, description: undefined }, `${key}[]`).slice(2);
    return [...lines, ...forms];
  }
  return [...lines, `${presence}: ${typeOf(s, key)}.`, ''];
}

const EXAMPLE = `listeners:
  - name: public
    port: 8080
    timeouts:
      idle: 2m
services:
  - name: users
    endpoints: [http://127.0.0.1:3000]
routes:
  - name: users
    match:
      path: { prefix: /users }
    backends:
      - service: users
    requestHeaders:
      set:
        authorization: Bearer \${env:USERS_TOKEN}
    limits:
      maxBodyBytes: 1MiB`;

/** docs/configuration.md; a test fails when the file differs from this. */
export function renderConfigReference(): string {
  const root = oneOfAsAnyOf(configJsonSchema()) as Schema;
  const rootRequired = new Set(root.required ?? []);
  const keys = Object.entries(root.properties ?? {});
  const lines = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs:config`. Do not edit by hand. -->',
    '',
    'Trellis reads one config file, in YAML or JSON (JSON is read as YAML 1.2, so either works whatever the',
    'file is called). `trellis validate FILE` checks a file and prints every problem with its line, column and',
    'config path. A small one:',
    '',
    '```yaml',
    EXAMPLE,
    '```',
    '',
    '- **Durations** are a number of milliseconds, or a string of a number and a unit `ms`, `s`, `m` or `h`:',
    `  \`250ms\`, \`15s\`, \`1.5m\`, \`1h\`. At most ${DURATION.max} ms (about 24.8 days, the longest Node.js timer).`,
    '- **Sizes** are a number of bytes, or a string of a whole number and a unit in any case: `B`, `KB`, `MB`,',
    '  `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024): `65536`, `64KiB`, `10MiB`.',
    '- **Secrets**: any string value may contain `${env:NAME}` (an environment variable) or `${file:PATH}` (the',
    "  file's contents without a final newline, at most 1 MiB; a relative path is from the config file's folder).",
    '  `$${` writes a literal `${`; any other `${…}` is an error. `/config` on the admin listener shows values',
    '  that came from a reference as `<redacted>`.',
    '- **Unknown keys are errors**, in every object: a misspelt key is reported (with a suggestion when one is',
    '  close), never ignored.',
    '- **Editors**: `trellis schema > trellis.schema.json` prints the JSON Schema (draft 2020-12) these tables are',
    '  made from. Put `# yaml-language-server: $schema=./trellis.schema.json` at the top of a YAML file, or a',
    '  `"$schema"` key in a JSON file, to get completion, descriptions and checks.',
    '',
    'In the tables, `[]` in a field path stands for each item of a list. A field that is not required may be left',
    'out; it then takes its default, or, without one, is absent (the description says what that means).',
    '',
    '## Top-level keys',
    '',
    '| key | type | default | required | description |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const [key, s] of keys) {
    const name = hasSection(s) || s.items !== undefined ? `[${code(key)}](#${anchor(key)})` : code(key);
    const description = s.description ?? s.items?.description ?? '';
    const cells = [name, typeOf(s, key), formatDefault(s), rootRequired.has(key) ? 'yes' : 'no', description];
    lines.push(`| ${cells.map(cell).join(' | ')} |`);
  }
  lines.push('');
  for (const [key, s] of keys) {
    if (hasSection(s) || (s.items !== undefined && hasSection(s.items))) {
      lines.push(...topSection(key, s, rootRequired.has(key)));
    }
  }
  while (lines.at(-1) === '') lines.pop();
  return `${lines.join('\n')}\n`;
}
