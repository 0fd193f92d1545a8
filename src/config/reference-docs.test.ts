import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configJsonSchema } from './json-schema.js';
import { loadConfigText } from './load.js';
import { renderConfigReference } from './reference-docs.js';

interface Schema {
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  anyOf?: Schema[];
}

const out = renderConfigReference();
/** As the text stands in a table cell. */
const inCell = (text: string) => text.replace(/\|/g, '\\|');

/** Every described subschema with its field path (`routes[].match.path.prefix`); `field` when it is an object key. */
function described(
  s: Schema,
  path: string,
  field: boolean,
  found: { path: string; text: string; field: boolean }[],
) {
  if (s.description !== undefined && path !== '') found.push({ path, text: s.description, field });
  for (const [key, sub] of Object.entries(s.properties ?? {})) {
    described(sub, path === '' ? key : `${path}.${key}`, true, found);
  }
  if (s.items) described(s.items, `${path}[]`, false, found);
  for (const form of s.anyOf ?? []) described(form, path, false, found);
  return found;
}

describe('renderConfigReference', () => {
  it('docs/configuration.md is generated from the schema (run `npm run docs:config` if this fails)', () => {
    const onDisk = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    expect(onDisk, 'docs/configuration.md is stale: run `npm run docs:config`').toBe(out);
  });

  it('shows the described fields with their path, type, default and description', () => {
    const row = (path: string) => out.split('\n').find((l) => l.startsWith(`| \`${path}\` |`));
    expect(row('listeners[].trustedProxies')).toBe(
      '| `listeners[].trustedProxies` | list of string | `[]` | no | Client addresses or CIDR ranges whose ' +
        'X-Forwarded-For / Forwarded headers are trusted and extended. From anyone else they are replaced. |',
    );
    expect(row('routes[].timeouts.request')).toBe(
      '| `routes[].timeouts.request` | duration | `15s` | no | ' +
        'Total time for the upstream to answer (504 upstream_timeout). |',
    );
    expect(row('services[].pool.connections')).toBe(
      '| `services[].pool.connections` | integer, at least 1 | `128` | no | Most connections per endpoint. |',
    );
    expect(row('listeners[].port')).toMatch(/\| integer, 0 to 65535 \| {2}\| yes \|/);
    expect(row('listeners[].limits.maxHeaderBytes')).toContain('| size | `16KiB` |');
    expect(row('routes[].redirect.statusCode')).toContain('| `301`, `302`, `303`, `307` or `308` | `302` |');
  });

  it('has every `.describe()` text of the schema, each field under its path', () => {
    const all = described(configJsonSchema() as Schema, '', false, []);
    expect(all.length).toBeGreaterThan(30);
    for (const { path, text, field } of all) {
      expect(out, path).toContain(inCell(text));
      if (!field) continue;
      // A field's row; a top-level key's row links to its section.
      const rows = [`| \`${path}\` |`, `| [\`${path}\`](#`];
      expect(
        rows.some((row) => out.includes(row)),
        `no row for ${path}`,
      ).toBe(true);
    }
  });

  it('renders unions as their forms, each with its fields', () => {
    expect(out).toContain(
      '| `routes[].match.path` | [one of](#routesmatchpath): `{ exact }`, `{ prefix }`, `{ template }`, `{ regex }` |',
    );
    const section = out.slice(out.indexOf('### `routes[].match.path`'));
    for (const form of ['exact', 'prefix', 'template', 'regex']) {
      expect(section).toContain(`**\`{ ${form} }\`**`);
      expect(section).toContain(`| \`routes[].match.path.${form}\` |`);
    }
    expect(out).toContain('**`{ regex, substitution }`**: Regex replace on the path');
    expect(out).toContain('| `routes[].rewrite.path.substitution` | string |  | yes |');
    expect(out).toContain('**string**: `http://host:port`');
    expect(out).toContain('| `services[].endpoints[].url` | string |  | yes |');
  });

  it('has one section per top-level key, and every link leads to a heading', () => {
    const headings = [...out.matchAll(/^#+ (.*)$/gm)].map((m) => m[1]!);
    for (const key of ['listeners', 'routes', 'services', 'admin', 'accessLog', 'gateway']) {
      expect(headings).toContain(key);
    }
    const anchors = headings.map((h) =>
      h
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    );
    expect(new Set(anchors).size).toBe(anchors.length);
    const links = [...out.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(10);
    for (const target of links) expect(anchors, target).toContain(target);
  });

  it('has a valid example and no dates', () => {
    const example = /```yaml\n([\s\S]*?)```/.exec(out)![1]!;
    const loaded = loadConfigText(example, 'example.yaml', { env: { USERS_TOKEN: 'secret' }, baseDir: '/' });
    expect(loaded.ok ? [] : loaded.errors).toEqual([]);
    expect(out).not.toMatch(/\d{4}-\d{2}-\d{2}/);
    expect(renderConfigReference()).toBe(out);
  });
});
