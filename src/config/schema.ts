/**
 * The config file model: one zod schema gives runtime validation, the TypeScript types and the JSON Schema
 * that `trellis schema` prints. Field descriptions here are the config reference.
 */
import { z } from 'zod';

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** Node timers overflow above 2^31-1 ms and then fire after 1 ms, so a longer timeout would act as none at all. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * A duration: a number of milliseconds, or a string such as `250ms`, `15s`, `2m`, `1h`.
 * Fields give their defaults with `prefault` (an input value), because JSON Schema export drops a `default` on
 * a transforming schema and editors would not show it.
 */
export const duration = z
  .union([
    z.number().int().nonnegative().max(MAX_TIMER_MS),
    z.string().regex(DURATION, { message: 'expected a duration such as "250ms", "15s", "2m" or "1h"' }),
  ])
  .transform((v) => {
    if (typeof v === 'number') return v;
    const m = DURATION.exec(v)!;
    // Round up: "0.4ms" must not become 0, which turns a timeout off.
    return Math.ceil(Number(m[1]) * UNIT_MS[m[2]!]!);
  })
  .refine((ms) => ms <= MAX_TIMER_MS, {
    message: `expected a duration of at most ${MAX_TIMER_MS}ms (about 24.8 days, the longest Node.js timer)`,
  });

// Case-insensitive by character classes, not the `i` flag: JSON Schema patterns carry no flags, so an editor
// would otherwise reject "10MiB".
const SIZE = /^(\d+)([bB]|[kKmMgG][iI]?[bB])?$/;
const UNIT_BYTES: Record<string, number> = {
  b: 1,
  kb: 1000,
  kib: 1024,
  mb: 1_000_000,
  mib: 1024 * 1024,
  gb: 1_000_000_000,
  gib: 1024 * 1024 * 1024,
};

/** A size in bytes: a number, or a string such as `64KiB`, `10MiB`, `1GiB`. */
export const byteSize = z
  .union([
    z.number().int().nonnegative(),
    z.string().regex(SIZE, { message: 'expected a size such as 65536, "64KiB", "10MiB" or "1GiB"' }),
  ])
  .transform((v) => {
    if (typeof v === 'number') return v;
    const m = SIZE.exec(v)!;
    return Number(m[1]) * UNIT_BYTES[(m[2] ?? 'b').toLowerCase()]!;
  })
  .refine((n) => Number.isSafeInteger(n), { message: 'expected a size below 8 PiB' });

const name = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/, {
    message: 'expected a name of lowercase letters, digits, ".", "_" or "-" (1-63 characters)',
  })
  .describe('Unique name of this object; other objects refer to it by this name.');

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { message: 'expected an HTTP header name (RFC 9110 token)' });

/** RFC 9110 field-value characters: no CR, LF or NUL, which would split or break a header. */
const headerValue = z.string().regex(/^[\t\x20-\x7e\x80-\xff]*$/, {
  message: 'expected a header value without control characters (CR, LF, NUL)',
});

/** A host name or IP literal with an optional port, as in a Host header. */
const hostValue = z.string().regex(/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::\d{1,5})?$/, {
  message: 'expected a host such as "api.example.com", "api.example.com:8443" or "[::1]:8080"',
});

/** A path for a redirect or rewrite: visible ASCII only, starting with "/". */
const pathValue = z
  .string()
  .regex(/^\/[\x21-\x7e]*$/, { message: 'expected a path starting with "/" of visible ASCII characters' });

const httpMethod = z
  .string()
  .regex(/^[A-Z]+$/, { message: 'expected an upper-case HTTP method such as GET or POST' });

// ---------- listeners ----------

export const listenerSchema = z
  .strictObject({
    name,
    address: z.string().default('127.0.0.1').describe('Address to bind: an IPv4 or IPv6 address.'),
    port: z.number().int().min(0).max(65535).describe('TCP port to bind; 0 picks a free port.'),
    protocol: z.enum(['http']).default('http').describe('Only `http` (HTTP/1.1) until TLS and HTTP/2 land.'),
    trustedProxies: z
      .array(z.string())
      .default([])
      .describe(
        'Client addresses or CIDR ranges whose X-Forwarded-For / Forwarded headers are trusted and extended. From anyone else they are replaced.',
      ),
    limits: z
      .strictObject({
        maxHeaderBytes: byteSize
          .pipe(z.number().min(1024, { message: 'expected at least 1024 bytes' }))
          .prefault(16 * 1024)
          .describe('Request line plus headers (431 beyond), at least 1 KiB.'),
        maxHeaderCount: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(100)
          .describe('Most request headers accepted.'),
        maxConnections: z.number().int().min(1).optional().describe('Most open client connections.'),
        maxRequestsPerConnection: z.number().int().min(0).default(0).describe('0 is no limit.'),
      })
      .prefault({}),
    timeouts: z
      .strictObject({
        headers: duration
          .prefault(10_000)
          .describe('Time a client has to send the complete request headers.'),
        request: duration
          .prefault(300_000)
          .describe('Time a client has to send the complete request (body too).'),
        idle: duration
          .prefault(60_000)
          .describe('Keep-alive idle time between requests on a client connection.'),
      })
      .prefault({}),
  })
  .describe('A socket Trellis accepts client connections on.');

// ---------- routes ----------

const stringMatch = z
  .strictObject({
    name: headerName.describe('Header name (any case).'),
    exact: z.string().optional().describe('The value equals this (case-sensitive).'),
    regex: z.string().optional().describe('A regular expression the whole value matches.'),
    present: z.boolean().optional().describe('true: the header is there (any value); false: it is absent.'),
  })
  .refine((m) => [m.exact, m.regex, m.present].filter((x) => x !== undefined).length === 1, {
    message: 'expected exactly one of "exact", "regex" or "present"',
  });

const queryMatch = z
  .strictObject({
    name: z.string().min(1).describe('Query parameter name (decoded; the first value counts).'),
    exact: z.string().optional().describe('The decoded value equals this.'),
    regex: z.string().optional().describe('A regular expression the whole decoded value matches.'),
    present: z.boolean().optional().describe('true: the parameter is there; false: it is absent.'),
  })
  .refine((m) => [m.exact, m.regex, m.present].filter((x) => x !== undefined).length === 1, {
    message: 'expected exactly one of "exact", "regex" or "present"',
  });

const pathMatch = z
  .union([
    z.strictObject({
      exact: z.string().startsWith('/', 'expected a path starting with "/"').describe('The whole path.'),
    }),
    z.strictObject({
      prefix: z.string().startsWith('/', 'expected a path starting with "/"'),
    }),
    z.strictObject({
      template: z
        .string()
        .startsWith('/', 'expected a path starting with "/"')
        .describe('A path with `:name` segments, e.g. `/users/:id/orders/:order`.'),
    }),
    z.strictObject({ regex: z.string().describe('A regular expression matched against the whole path.') }),
  ])
  .describe('Exactly one of `exact`, `prefix` (on segment boundaries), `template` or `regex`.');

export const routeMatchSchema = z.strictObject({
  hosts: z
    .array(
      // No port: routes match the request host with its port removed (listeners own ports).
      z.string().regex(/^(\*\.)?[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$/, {
        message: 'expected a host name without a port, such as "api.example.com" or "*.example.com"',
      }),
    )
    .optional()
    .describe('Host names, exact or `*.suffix` wildcards. Absent: any host.'),
  // One description: an outer `describe` replaces the union's own in the JSON Schema.
  path: pathMatch
    .optional()
    .describe(
      'Exactly one of `exact`, `prefix` (on segment boundaries), `template` or `regex`. Absent: prefix `/`.',
    ),
  methods: z.array(httpMethod).min(1).optional().describe('Absent: any method.'),
  headers: z.array(stringMatch).optional().describe('All must match.'),
  query: z.array(queryMatch).optional().describe('All must match.'),
});

const headerEdits = z.strictObject({
  add: z.record(headerName, headerValue).optional().describe('Append a value (keeps existing values).'),
  set: z.record(headerName, headerValue).optional().describe('Replace any existing value.'),
  remove: z.array(headerName).optional(),
});

const rewrite = z
  .strictObject({
    path: z
      .union([
        z.strictObject({ prefix: pathValue }).describe('Replace the matched path prefix.'),
        z.strictObject({ full: pathValue }).describe('Replace the whole path.'),
        z
          .strictObject({
            regex: z.string().describe('A regular expression searched in the path.'),
            substitution: z.string().describe('The replacement; `$1`, `$2`… are the groups.'),
          })
          .describe('Regex replace on the path; `$1`-style groups in the substitution.'),
      ])
      .optional(),
    host: hostValue.optional().describe('Host header sent upstream.'),
  })
  .describe('Rewrite the request before it goes upstream.');

const redirect = z.strictObject({
  scheme: z.enum(['http', 'https']).optional().describe("Absent: the request's scheme."),
  host: hostValue.optional().describe("Absent: the request's host."),
  port: z
    .number()
    .int()
    .min(1)
    .max(65535)
    .optional()
    .describe("Absent: the request's port, or the scheme's default when the scheme changes."),
  path: z.union([z.strictObject({ prefix: pathValue }), z.strictObject({ full: pathValue })]).optional(),
  statusCode: z
    .union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)])
    .default(302),
});

const directResponse = z.strictObject({
  status: z.number().int().min(200).max(599).describe('HTTP status of the reply.'),
  body: z.string().default('').describe('The reply body.'),
  contentType: headerValue.default('text/plain; charset=utf-8').describe('Content-Type of the reply.'),
});

const backend = z.strictObject({
  service: name.describe('Name of a service in `services`.'),
  weight: z
    .number()
    .int()
    .min(0)
    .max(1_000_000)
    .default(1)
    .describe("Share of the route's traffic, relative to the other backends; 0 sends none."),
});

export const routeSchema = z
  .strictObject({
    name,
    listeners: z.array(name).optional().describe('Listener names this route serves; absent: all.'),
    match: routeMatchSchema.prefault({}),
    backends: z
      .array(backend)
      .optional()
      .describe('Where to send the request. Omit only with redirect or directResponse.'),
    rewrite: rewrite.optional(),
    requestHeaders: headerEdits.optional(),
    responseHeaders: headerEdits.optional(),
    redirect: redirect.optional(),
    directResponse: directResponse.optional(),
    preserveHost: z
      .boolean()
      .default(true)
      .describe('Send the client Host upstream (else the endpoint host).'),
    timeouts: z
      .strictObject({
        request: duration
          .prefault(15_000)
          .describe('Total time for the upstream to answer (504 upstream_timeout).'),
        upstreamIdle: duration.prefault(60_000).describe('Longest silence while a response body streams.'),
      })
      .prefault({}),
    limits: z
      .strictObject({
        maxBodyBytes: byteSize.optional().describe('Largest request body (413 beyond). Absent: no limit.'),
      })
      .prefault({}),
  })
  .describe('Which requests go where, and what happens to them on the way.');

// ---------- services ----------

const endpoint = z.union([
  z.string().describe('`http://host:port`'),
  z.strictObject({
    url: z.string(),
    weight: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(1)
      .describe('Relative share of the service traffic.'),
  }),
]);

export const serviceSchema = z
  .strictObject({
    name,
    endpoints: z.array(endpoint).min(1).describe('Upstream endpoints as `http://host:port` URLs.'),
    connectTimeout: duration
      .prefault(5_000)
      .describe('Time to establish a TCP connection to an endpoint (504 upstream_connect_timeout).'),
    pool: z
      .strictObject({
        connections: z.number().int().min(1).default(128).describe('Most connections per endpoint.'),
        keepAliveTimeout: duration.prefault(4_000).describe('How long an idle upstream connection is kept.'),
        pipelining: z
          .number()
          .int()
          .min(1)
          .max(100)
          .default(1)
          .describe('Requests in flight per upstream connection; 1 (no pipelining) is the safe default.'),
      })
      .prefault({}),
  })
  .describe('An upstream cluster: a set of endpoints and how to reach them.');

// ---------- admin, access log ----------

export const adminSchema = z
  .strictObject({
    address: z
      .string()
      .default('127.0.0.1')
      .describe('Loopback by default: admin endpoints are not for the public.'),
    port: z.number().int().min(0).max(65535).default(9901).describe('TCP port of the admin listener.'),
    enabled: z.boolean().default(true).describe('false: no admin listener at all.'),
  })
  .describe('The admin listener: /live, /ready, /config.');

export const accessLogSchema = z
  .strictObject({
    output: z.string().default('off').describe('`off`, `stdout`, or a file path (appended to).'),
  })
  .describe('One JSON line per request.');

export const gatewaySchema = z
  .strictObject({
    drainTimeout: duration.prefault(30_000).describe('How long SIGTERM waits for in-flight requests.'),
    via: z
      .string()
      .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]*$/, {
        message: 'expected a token such as "trellis" (or "" for none)',
      })
      .default('trellis')
      .describe('Pseudonym in the Via header; empty string: no Via header.'),
  })
  .describe('Process-wide settings.');

export const configSchema = z
  .strictObject({
    $schema: z.string().optional(),
    listeners: z.array(listenerSchema).min(1),
    routes: z.array(routeSchema).prefault([]),
    services: z.array(serviceSchema).prefault([]),
    admin: adminSchema.prefault({}),
    accessLog: accessLogSchema.prefault({}),
    gateway: gatewaySchema.prefault({}),
  })
  .describe('Trellis configuration.');

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type ListenerConfig = Config['listeners'][number];
export type RouteConfig = Config['routes'][number];
export type RouteMatchConfig = RouteConfig['match'];
export type ServiceConfig = Config['services'][number];
export type HeaderEditsConfig = NonNullable<RouteConfig['requestHeaders']>;
