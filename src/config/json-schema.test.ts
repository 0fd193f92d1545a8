import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONFIG_SCHEMA_ID, configJsonSchema } from './json-schema.js';

type Json = Record<string, unknown>;
const schema = configJsonSchema() as Json;

// Every keyword of the draft 2020-12 vocabularies (core, applicator, validation, meta-data, format, content).
const KEYWORDS = new Set(
  (
    '$schema $id $ref $defs $anchor $dynamicRef $dynamicAnchor $vocabulary $comment allOf anyOf oneOf not if then else ' +
    'dependentSchemas prefixItems items contains properties patternProperties additionalProperties propertyNames ' +
    'unevaluatedItems unevaluatedProperties type enum const multipleOf maximum exclusiveMaximum minimum ' +
    'exclusiveMinimum maxLength minLength pattern maxItems minItems uniqueItems maxContains minContains ' +
    'maxProperties minProperties required dependentRequired title description default deprecated readOnly ' +
    'writeOnly examples format contentEncoding contentMediaType contentSchema'
  ).split(' '),
);
const TYPES = new Set(['null', 'boolean', 'object', 'array', 'number', 'string', 'integer']);

/** Calls `visit` on every subschema, with its JSON pointer. */
function eachSchema(s: Json, visit: (s: Json, at: string) => void, at = '#'): void {
  visit(s, at);
  for (const k of ['properties', '$defs', 'patternProperties'] as const) {
    for (const [name, sub] of Object.entries((s[k] as Record<string, Json> | undefined) ?? {})) {
      eachSchema(sub, visit, `${at}/${k}/${name}`);
    }
  }
  for (const k of ['items', 'additionalProperties', 'propertyNames', 'not'] as const) {
    if (typeof s[k] === 'object') eachSchema(s[k] as Json, visit, `${at}/${k}`);
  }
  for (const k of ['anyOf', 'oneOf', 'allOf', 'prefixItems'] as const) {
    for (const [i, sub] of ((s[k] as Json[] | undefined) ?? []).entries())
      eachSchema(sub, visit, `${at}/${k}/${i}`);
  }
}

/** A small validator for the keywords the exported schema uses; enough to check real files against it. */
function validate(s: Json, v: unknown, at = ''): string[] {
  const errors: string[] = [];
  const typeOf = (x: unknown) =>
    x === null ? 'null' : Array.isArray(x) ? 'array' : Number.isInteger(x) ? 'integer' : typeof x;
  if (s.type !== undefined) {
    const types = [s.type].flat() as string[];
    const t = typeOf(v);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) return [`${at}: type ${t}`];
  }
  if (s.anyOf && !(s.anyOf as Json[]).some((sub) => validate(sub, v, at).length === 0))
    errors.push(`${at}: anyOf`);
  if (s.enum && !(s.enum as unknown[]).includes(v)) errors.push(`${at}: enum`);
  if ('const' in s && s.const !== v) errors.push(`${at}: const`);
  if (typeof v === 'string') {
    if (s.pattern && !new RegExp(s.pattern as string, 'u').test(v)) errors.push(`${at}: pattern`);
    if (s.minLength !== undefined && v.length < (s.minLength as number)) errors.push(`${at}: minLength`);
  }
  if (typeof v === 'number') {
    if (s.minimum !== undefined && v < (s.minimum as number)) errors.push(`${at}: minimum`);
    if (s.maximum !== undefined && v > (s.maximum as number)) errors.push(`${at}: maximum`);
  }
  if (Array.isArray(v)) {
    if (s.minItems !== undefined && v.length < (s.minItems as number)) errors.push(`${at}: minItems`);
    if (s.items)
      for (const [i, item] of v.entries()) errors.push(...validate(s.items as Json, item, `${at}[${i}]`));
  }
  if (typeOf(v) === 'object') {
    const obj = v as Record<string, unknown>;
    const props = (s.properties as Record<string, Json> | undefined) ?? {};
    for (const r of (s.required as string[] | undefined) ?? [])
      if (!(r in obj)) errors.push(`${at}.${r}: required`);
    for (const [k, val] of Object.entries(obj)) {
      if (props[k]) errors.push(...validate(props[k], val, `${at}.${k}`));
      else if (s.additionalProperties === false) errors.push(`${at}.${k}: additional`);
      else if (typeof s.additionalProperties === 'object') {
        errors.push(...validate(s.additionalProperties as Json, val, `${at}.${k}`));
      }
      if (s.propertyNames) errors.push(...validate(s.propertyNames as Json, k, `${at}.${k} (name)`));
    }
  }
  return errors;
}

const at = (pointer: string): Json =>
  pointer
    .split('/')
    .slice(1)
    .reduce<Json>((s, k) => (s as Record<string, Json>)[k]!, schema);

describe('configJsonSchema', () => {
  it('is a draft 2020-12 schema with an id and a title', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.$id).toBe(CONFIG_SCHEMA_ID);
    expect(schema.title).toBe('Trellis configuration');
    expect(schema.type).toBe('object');
    expect(schema.required).toEqual(['listeners']);
    expect(() => JSON.parse(JSON.stringify(schema))).not.toThrow();
  });

  it('uses only draft 2020-12 keywords, valid types and patterns, and standard formats', () => {
    eachSchema(schema, (s, where) => {
      for (const k of Object.keys(s)) expect(KEYWORDS.has(k), `${where}: keyword ${k}`).toBe(true);
      for (const t of [s.type ?? []].flat()) expect(TYPES.has(t as string), `${where}: type ${t}`).toBe(true);
      if (s.pattern !== undefined) expect(() => new RegExp(s.pattern as string, 'u'), where).not.toThrow();
      expect(s.format, where).toBeUndefined();
      if (s.required !== undefined) {
        expect(Object.keys(s.properties as Json)).toEqual(expect.arrayContaining(s.required as string[]));
      }
    });
  });

  it('shows defaults and descriptions, durations and sizes included', () => {
    const listener = '#/properties/listeners/items/properties';
    expect(at(`${listener}/port`).description).toBe('TCP port to bind; 0 picks a free port.');
    expect(at(`${listener}/address`).default).toBe('127.0.0.1');
    expect(at(`${listener}/timeouts/properties/headers`)).toMatchObject({
      default: 10_000,
      description: 'Time a client has to send the complete request headers.',
    });
    expect(at(`${listener}/limits/properties/maxHeaderBytes`).default).toBe(16_384);
    expect(at('#/properties/routes').default).toEqual([]);
    expect(at('#/properties/admin/properties/port').default).toBe(9901);
    expect(at('#/properties/routes/items/properties/timeouts/properties/request').default).toBe(15_000);
    expect(at('#/properties/routes/items/properties/match/properties/path').description).toMatch(
      /^Exactly one of/,
    );
  });

  it('accepts the quickstart and every default it shows', () => {
    const quickstart = parse(
      readFileSync(new URL('../../examples/quickstart.yaml', import.meta.url), 'utf8'),
    );
    expect(validate(schema, quickstart)).toEqual([]);
    eachSchema(schema, (s, where) => {
      if ('default' in s) expect(validate(s, s.default), where).toEqual([]);
    });
  });

  it('rejects what the loader rejects', () => {
    const base = { listeners: [{ name: 'a', port: 1 }] };
    expect(validate(schema, base)).toEqual([]);
    expect(validate(schema, { ...base, bogus: 1 })).toEqual(['.bogus: additional']);
    expect(validate(schema, { listeners: [{ name: 'A', port: 1 }] })).toEqual([
      '.listeners[0].name: pattern',
    ]);
    expect(validate(schema, { ...base, gateway: { drainTimeout: '15 s' } })).toEqual([
      '.gateway.drainTimeout: anyOf',
    ]);
    expect(validate(schema, { ...base, gateway: { drainTimeout: '1.5m' } })).toEqual([]);
    expect(
      validate(schema, { listeners: [{ name: 'a', port: 1, limits: { maxHeaderBytes: '64KiB' } }] }),
    ).toEqual([]);
  });
});
