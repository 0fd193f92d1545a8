/** The config's JSON Schema (draft 2020-12) for editors, e.g. the YAML language server's `# yaml-language-server: $schema=`. */
import { z } from 'zod';
import { configSchema } from './schema.js';

export const CONFIG_SCHEMA_ID = 'urn:trellis:config';

/** The `format` values draft 2020-12 defines; zod adds its own (`starts_with`) that strict validators reject. */
const STANDARD_FORMATS = new Set([
  'date-time',
  'date',
  'time',
  'duration',
  'email',
  'idn-email',
  'hostname',
  'idn-hostname',
  'ipv4',
  'ipv6',
  'uri',
  'uri-reference',
  'iri',
  'iri-reference',
  'uuid',
  'uri-template',
  'json-pointer',
  'relative-json-pointer',
  'regex',
]);

/**
 * The schema of what may be written in a file (`io: 'input'`): durations and sizes as numbers or strings, defaults
 * shown, fields with defaults not required.
 */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, {
    io: 'input',
    target: 'draft-2020-12',
    override: ({ jsonSchema }) => {
      if (typeof jsonSchema.format === 'string' && !STANDARD_FORMATS.has(jsonSchema.format))
        delete jsonSchema.format;
    },
  });
  const { $schema, ...rest } = schema;
  return { $schema, $id: CONFIG_SCHEMA_ID, title: 'Trellis configuration', ...rest };
}
