/**
 * The `apis` section: an API with versions, how a request names one, which version each consumer gets when it
 * names none, and each version's lifecycle. Routes join an API with `api: NAME` and then take their upstream from
 * the selected version. Imports only config/primitives.ts (config/schema.ts imports this file).
 */
import { z } from 'zod';
import { headerName, name } from '../config/primitives.js';

/** A version's name: a path segment, a header or query value, and a metric label (`v2`, `2024-06-01`, `v3-beta`). */
export const versionName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, {
  message: 'expected a version name such as "v2", "2024-06-01" or "v3-beta" (letters, digits, . _ -)',
});

const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const instant = z
  .string()
  .regex(INSTANT, { message: 'expected an RFC 3339 date-time such as "2026-06-30T00:00:00Z"' })
  .refine((s) => !Number.isNaN(Date.parse(s)), { message: 'expected a date-time that exists' });

const backend = z.strictObject({
  service: name.describe('Name of a service in `services`.'),
  weight: z.number().int().min(0).max(10_000).default(1).describe('Relative share of the traffic.'),
});

export const apiVersionSchema = z
  .strictObject({
    name: versionName.describe('How requests name the version (path segment, header, media type, query).'),
    aliases: z
      .array(versionName)
      .optional()
      .describe('Other names requests may use for it (`2`, `2.0`); the metric label is always `name`.'),
    status: z
      .enum(['active', 'deprecated', 'retired'])
      .default('active')
      .describe(
        '`active`; `deprecated`: served, with `Deprecation`, `Sunset` and `Link` response fields; `retired`: answered 410 `api_version_retired`.',
      ),
    deprecatedAt: instant
      .optional()
      .describe(
        'When the version is (or will be) deprecated: the `Deprecation` field (RFC 9745). Required with `status: deprecated`.',
      ),
    sunset: instant
      .optional()
      .describe(
        'When the version stops being served: the `Sunset` field (RFC 8594). Informational: retire it with `status`.',
      ),
    link: z
      .string()
      .regex(/^https?:\/\/[^\s<>"]+$/, { message: 'expected an http(s) URL of the migration docs' })
      .optional()
      .describe(
        'Migration docs: `Link: <URL>; rel="deprecation"` on deprecated responses, and on the 410 of a retired version.',
      ),
    backends: z
      .array(backend)
      .min(1)
      .optional()
      .describe('Where requests for this version go. Required unless `status: retired`.'),
  })
  .describe('One version of the API.');

export const apiSchema = z
  .strictObject({
    name,
    select: z
      .strictObject({
        path: z
          .boolean()
          .default(false)
          .describe(
            'The first path segment names the version (`/v2/orders`): routes of the API also match with the segment in front.',
          ),
        stripPath: z
          .boolean()
          .default(true)
          .describe(
            "With `path`: remove the version segment from the path sent upstream. false: the upstream path always starts with the version's segment (added when the request named the version another way, or named none).",
          ),
        header: headerName
          .optional()
          .describe('A request header whose value names the version, e.g. `Accept-Version`.'),
        mediaType: z
          .string()
          .regex(/^[a-z0-9][a-z0-9.+-]*$/, {
            message: 'expected a vendor media type name such as "vnd.acme"',
          })
          .optional()
          .describe(
            'Vendor media type in `Accept`: `vnd.acme` reads `application/vnd.acme.v2+json` and `application/vnd.acme+json; version=v2`.',
          ),
        query: z.string().min(1).optional().describe('A query parameter whose value names the version.'),
      })
      .prefault({})
      .describe(
        "Where a request names its version, tried in this order: path, header, media type, query. None: the consumer's pin, then `default`.",
      ),
    default: versionName.describe('The version of a request that names none and has no pin.'),
    pins: z
      .strictObject({
        consumers: z
          .record(name, versionName)
          .optional()
          .describe('Consumer name → the version it gets when its requests name none.'),
        groups: z
          .record(z.string().min(1), versionName)
          .optional()
          .describe('Consumer group → version (a `beta` group on a beta version); a consumer pin wins.'),
      })
      .optional()
      .describe(
        'Versions by consumer profile, decided after authentication (so routes of the API need an authentication policy for them to apply).',
      ),
    versions: z.array(apiVersionSchema).min(1),
  })
  .describe('A versioned API: routes with `api: NAME` take their backends from the selected version.');

export type ApiConfig = z.output<typeof apiSchema>;
export type ApiVersionConfig = ApiConfig['versions'][number];
