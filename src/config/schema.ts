/**
 * The config file model: one zod schema gives runtime validation, the TypeScript types and the JSON Schema
 * that `trellis schema` prints. Field descriptions here are the config reference.
 */
import { z } from 'zod';

import {
  byteSize,
  duration,
  headerName,
  headerValue,
  hostValue,
  httpMethod,
  name,
  pathValue,
  percent,
} from './primitives.js';

export { byteSize, duration } from './primitives.js';

import { apiSchema } from '../api/schema.js';
import { translateSchema } from '../translate/schema.js';
import { consumerSchema, policySchema } from './policies.js';

/** Policy names attached to a route or listener. */
const policyRefs = z.array(name);

// ---------- listeners ----------

const tlsVersion = z.enum(['TLSv1.2', 'TLSv1.3']);

/** A PEM file path (relative to the config file), or PEM text from `${file:PATH}` / `${env:NAME}`. */
const pemSource = z.string().min(1, { message: 'expected a PEM file path' });

const listenerTls = z
  .strictObject({
    certificates: z
      .array(
        z.strictObject({
          cert: pemSource.describe(
            'PEM file with the certificate, then its intermediates; relative to the config file. Reloaded when it changes.',
          ),
          key: pemSource.describe(
            'PEM file with the unencrypted private key (or `${file:PATH}`); reloaded when it changes.',
          ),
          names: z
            .array(
              z.string().regex(/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/, {
                message: 'expected a host name such as "api.example.com" or "*.example.com"',
              }),
            )
            .min(1)
            .optional()
            .describe(
              'SNI names this certificate serves: exact, or `*.suffix` for one more label. Each must be covered by the certificate. Absent: its DNS names.',
            ),
        }),
      )
      .min(1)
      .describe(
        'Chosen per connection by SNI: exact name, then wildcard, then the first certificate (the default, also for clients that send no SNI).',
      ),
    minVersion: tlsVersion
      .default('TLSv1.2')
      .describe('Oldest TLS version accepted (1.0 and 1.1 never are).'),
    maxVersion: tlsVersion.optional().describe('Newest TLS version accepted. Absent: TLSv1.3.'),
    ciphers: z
      .string()
      .min(1)
      .optional()
      .describe(
        "OpenSSL cipher list, colon-separated; TLS 1.3 suites (`TLS_AES_128_GCM_SHA256`…) may be listed too. Absent: Node.js's defaults.",
      ),
    clientAuth: z
      .strictObject({
        mode: z
          .enum(['none', 'optional', 'required'])
          .default('none')
          .describe(
            'Client certificates: none (not asked for); optional (asked for; an absent or unverified one is no identity); required (the handshake fails without a valid one).',
          ),
        ca: pemSource
          .optional()
          .describe('PEM bundle of the CAs client certificates must chain to. Required unless mode is none.'),
        forwardHeader: headerName
          .optional()
          .describe(
            'Send the verified client certificate upstream in this header (`By=…;Hash=…;Subject="…";URI=…;DNS=…`, as x-forwarded-client-cert). A client-sent header of this name is always removed.',
          ),
      })
      .prefault({})
      .describe('Client certificates (mutual TLS) at the edge; see docs/tls.md.'),
  })
  .describe('Serve HTTPS: certificates by SNI, TLS versions, client certificates. Absent: plain HTTP.');

export const listenerSchema = z
  .strictObject({
    name,
    address: z.string().default('127.0.0.1').describe('Address to bind: an IPv4 or IPv6 address.'),
    port: z.number().int().min(0).max(65535).describe('TCP port to bind; 0 picks a free port.'),
    protocol: z
      .enum(['http'])
      .default('http')
      .describe('`http`: HTTP/1.1, plus HTTP/2 over TLS (ALPN) or h2c as `http2` says.'),
    tls: listenerTls.optional(),
    http2: z
      .strictObject({
        enabled: z
          .boolean()
          .default(true)
          .describe('TLS listeners: offer HTTP/2 by ALPN (h2, then http/1.1). No effect without `tls`.'),
        h2c: z
          .boolean()
          .default(false)
          .describe(
            'Plain listeners: also accept cleartext HTTP/2 with prior knowledge (h2c) beside HTTP/1.1 on the same port.',
          ),
        maxConcurrentStreams: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(100)
          .describe('Most open streams per HTTP/2 connection; more are refused (REFUSED_STREAM).'),
        maxHeaderListSize: byteSize
          .pipe(z.number().min(1024, { message: 'expected at least 1024 bytes' }))
          .optional()
          .describe("Largest HTTP/2 header list (HPACK-decoded). Default: the listener's maxHeaderBytes."),
        initialWindowSize: z
          .number()
          .int()
          .min(1024)
          .max(2 ** 31 - 1)
          .optional()
          .describe('HTTP/2 initial stream flow-control window in bytes (default 65535).'),
        maxSessionMemory: z
          .number()
          .int()
          .min(1)
          .max(1024)
          .optional()
          .describe(
            'MiB one HTTP/2 connection may hold in buffers before new streams are refused (Node default 10).',
          ),
      })
      .prefault({})
      .describe('HTTP/2 downstream: over TLS by ALPN, and cleartext h2c by prior knowledge.'),
    policies: policyRefs
      .optional()
      .describe(
        "Policies (names in `policies`) applied to every route of this listener, before the route's own within a phase.",
      ),
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
  grpc: z
    .strictObject({
      service: z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/, {
          message: 'expected a fully qualified gRPC service name such as "shop.v1.Orders"',
        })
        .optional()
        .describe('Fully qualified service, e.g. `shop.v1.Orders`. Absent: any service.'),
      method: z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'expected a gRPC method name such as "GetOrder"' })
        .optional()
        .describe('Method name, e.g. `GetOrder`. Absent: any method.'),
    })
    .optional()
    .describe(
      'Match gRPC calls (as the Gateway API GRPCRoute): POST `/service/method` with a `content-type` of application/grpc (or application/grpc-web with `grpcWeb`). Takes the place of `path` and `methods`. See docs/grpc.md.',
    ),
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

const retryOn = z.enum([
  'connect-failure',
  'refused-stream',
  'reset',
  'timeout',
  'gateway-error',
  '5xx',
  'retriable-status-codes',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
]);

const retries = z
  .strictObject({
    attempts: z
      .number()
      .int()
      .min(1)
      .max(10)
      .default(2)
      .describe('Most attempts per request, the first included; 1: no retries.'),
    on: z
      .array(retryOn)
      .default(['connect-failure', 'refused-stream'])
      .describe(
        'When to retry. connect-failure and refused-stream (nothing was sent) retry any method; the others only idempotent methods unless `nonIdempotent`. cancelled … unavailable are gRPC status codes.',
      ),
    statusCodes: z
      .array(z.number().int().min(100).max(599))
      .default([])
      .describe('Statuses retried with `retriable-status-codes`.'),
    perTryTimeout: duration.prefault(0).describe('Time for one attempt to get response headers; 0: none.'),
    backoff: z
      .strictObject({
        base: duration.prefault(25).describe('First backoff ceiling; doubles per retry (full jitter).'),
        max: duration.prefault(250).describe('Largest backoff ceiling.'),
      })
      .prefault({}),
    nonIdempotent: z
      .boolean()
      .default(false)
      .describe('Also retry POST, PATCH and others on every condition.'),
    replayBuffer: byteSize
      .prefault(65_536)
      .describe('Request bodies up to this size are kept for a retry; larger ones are not retried.'),
    attemptsHeader: z.boolean().default(false).describe('Add `x-trellis-attempts: N` to the response.'),
  })
  .describe('Retries, capped by the service retry budget; each retry prefers another endpoint.');

const mirror = z
  .strictObject({
    service: name.describe('The shadow service.'),
    percent: percent.default(100).describe('Share of requests copied.'),
  })
  .describe('Copies requests to a shadow service, fire and forget: its replies and failures are ignored.');

const fault = z
  .strictObject({
    delay: z
      .strictObject({
        duration: duration.describe('Added before the request goes upstream.'),
        percent: percent.default(100),
      })
      .optional(),
    abort: z
      .strictObject({
        status: z.number().int().min(400).max(599).describe('Status of the injected reply.'),
        percent: percent.default(100),
      })
      .optional(),
    headers: z
      .boolean()
      .default(false)
      .describe(
        'Let requests ask for faults with `x-trellis-fault-delay: <ms>` and `x-trellis-fault-abort: <status>` (for chaos tests; never on a public route).',
      ),
  })
  .describe('Fault injection for chaos tests: delays and aborts for a share of requests.');

const websocket = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        'Accept WebSocket upgrades (HTTP/1.1 `Upgrade: websocket`) on this route; else they get 403.',
      ),
    idleTimeout: duration
      .prefault(300_000)
      .describe(
        'Close (1001) a WebSocket after this long without a byte either way (pings count); 0: never.',
      ),
    maxConnections: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'Most open WebSockets on this route, per worker (503 websocket_limit_reached beyond). Absent: no limit but the service `circuitBreaker.maxRequests`.',
      ),
    maxMessageBytes: byteSize
      .pipe(z.number().min(1, { message: 'expected at least 1 byte' }))
      .optional()
      .describe(
        'Largest message either way, as sent on the wire (compressed, with permessage-deflate): a bigger one closes the WebSocket with 1009. Absent: no limit.',
      ),
  })
  .describe(
    'WebSocket proxying over HTTP/1.1: the handshake is routed like any request, then bytes are relayed.',
  );

export const routeSchema = z
  .strictObject({
    name,
    listeners: z.array(name).optional().describe('Listener names this route serves; absent: all.'),
    policies: policyRefs
      .optional()
      .describe(
        "Policies (names in `policies`) applied to this route, after its listeners' own. They run in phase order (ip-filter, cors, authentication, authorization, rate limits, ...; docs/policies.md), listed order within a phase.",
      ),
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
    retries: retries.prefault({}),
    mirror: mirror.optional(),
    fault: fault.optional(),
    limits: z
      .strictObject({
        maxBodyBytes: byteSize.optional().describe('Largest request body (413 beyond). Absent: no limit.'),
      })
      .prefault({}),
    websocket: websocket.prefault({}),
    grpcWeb: z
      .boolean()
      .default(false)
      .describe(
        'Translate gRPC-Web (application/grpc-web, grpc-web+proto, grpc-web-text) from HTTP/1.1 or HTTP/2 clients to gRPC for an h2/h2c service and back, trailers as the trailer frame. Off: gRPC-Web passes through untouched.',
      ),
    translate: translateSchema.optional(),
    api: name
      .optional()
      .describe(
        "A versioned API (a name in `apis`) this route belongs to: the request's version is selected and its backends serve it (instead of `backends`). See docs/api-versions.md.",
      ),
  })
  .describe('Which requests go where, and what happens to them on the way.');

// ---------- services ----------

const endpoint = z.union([
  z.string().describe('`http://host:port`, or `https://host:port` for TLS to the endpoint'),
  z.strictObject({
    url: z.string().describe('`http://host:port`, or `https://host:port` for TLS to the endpoint'),
    weight: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(1)
      .describe('Relative share of the service traffic.'),
    zone: z
      .string()
      .max(63)
      .default('')
      .describe('Zone of this endpoint; endpoints in `gateway.zone` are preferred within a priority.'),
    priority: z
      .number()
      .int()
      .min(0)
      .max(9)
      .default(0)
      .describe('Priority group, 0 first; traffic fails over to the next group when too few are available.'),
  }),
]);

const hashOn = z
  .strictObject({
    header: headerName.optional().describe('Hash this request header.'),
    cookie: z.string().min(1).optional().describe('Hash this cookie.'),
    query: z.string().min(1).optional().describe('Hash this query parameter.'),
    clientIp: z.boolean().optional().describe('Hash the client address (after trusted proxies).'),
  })
  .describe('The key of a consistent-hash balancer: exactly one of header, cookie, query, clientIp.');

const loadBalancer = z
  .strictObject({
    type: z
      .enum(['p2c-ewma', 'least-request', 'round-robin', 'random', 'ring-hash', 'maglev'])
      .default('p2c-ewma')
      .describe(
        'p2c-ewma: two random endpoints, the one with the lower latency × load wins (Linkerd, Finagle). ring-hash and maglev need `hashOn`.',
      ),
    hashOn: hashOn.optional(),
    panicThreshold: percent
      .default(50)
      .describe('Below this % of available endpoints, balance over all of them, ignoring health.'),
  })
  .describe('How an endpoint is chosen for each attempt.');

const dnsDiscovery = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/, { message: 'expected a DNS name' })
      .describe('The DNS name to resolve.'),
    port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe('Port of every address; absent: SRV records give targets and ports.'),
    family: z.enum(['any', 'ipv4', 'ipv6']).default('any').describe('Which address records to use.'),
    servers: z
      .array(z.string())
      .optional()
      .describe('DNS servers (`ip` or `ip:port`); absent: the system resolvers.'),
    minRefresh: duration.prefault(1_000).describe('Shortest time between resolutions, whatever the TTL.'),
    maxRefresh: duration.prefault(300_000).describe('Longest time between resolutions, whatever the TTL.'),
    zone: z.string().max(63).default('').describe('Zone of the discovered endpoints.'),
  })
  .describe(
    "Endpoints from DNS, refreshed by the records' TTL. With `preserveHost: false` the Host sent upstream is `name:port` (SRV: `target:port`).",
  );

const statusRange = z.union([
  z.number().int().min(100).max(599),
  z.string().regex(/^[1-5]\d\d-[1-5]\d\d$/, {
    message: 'expected a status such as 200 or a range such as "200-399"',
  }),
]);

const healthCheck = z
  .strictObject({
    type: z
      .enum(['http', 'tcp', 'grpc'])
      .default('http')
      .describe('http: a request; tcp: a connect; grpc: grpc.health.v1.'),
    path: pathValue.default('/healthz').describe('http: the path to request.'),
    method: z.enum(['GET', 'HEAD']).default('GET').describe('http: the method.'),
    expectedStatuses: z
      .array(statusRange)
      .min(1)
      .default(['200-399'])
      .describe('http: statuses that count as healthy.'),
    bodyContains: z.string().optional().describe('http: the body must contain this text (first 64 KiB).'),
    host: hostValue.optional().describe('http: the Host header; absent: the endpoint host.'),
    grpcService: z.string().default('').describe('grpc: the service name to ask about; "" is the server.'),
    interval: duration.prefault(5_000).describe('Time between checks of one endpoint (± jitter).'),
    jitter: z.number().min(0).max(1).default(0.1).describe('Random spread of the interval, as a fraction.'),
    timeout: duration.prefault(2_000).describe('A check that takes longer fails.'),
    healthyThreshold: z.number().int().min(1).max(100).default(2).describe('Successes in a row to return.'),
    unhealthyThreshold: z.number().int().min(1).max(100).default(3).describe('Failures in a row to leave.'),
  })
  .describe('Active health checks. Endpoints start healthy, so a fresh gateway serves at once.');

const outlierDetection = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Passive outlier detection is on unless disabled.'),
    consecutive5xx: z
      .number()
      .int()
      .min(0)
      .default(5)
      .describe('Eject after this many 5xx or gateway failures in a row; 0: off.'),
    consecutiveGatewayFailure: z
      .number()
      .int()
      .min(0)
      .default(5)
      .describe(
        'Eject after this many connect failures, resets, timeouts or protocol errors in a row; 0: off.',
      ),
    successRate: z
      .strictObject({
        minimumHosts: z.number().int().min(2).default(5),
        requestVolume: z.number().int().min(1).default(100),
        stdevFactor: z.number().positive().default(1.9),
      })
      .optional()
      .describe('Eject endpoints whose success rate is this many standard deviations below the mean.'),
    interval: duration.prefault(10_000).describe('Period of success-rate analysis and ejection decay.'),
    baseEjectionTime: duration.prefault(30_000).describe('First ejection; the n-th lasts n times as long.'),
    maxEjectionTime: duration.prefault(300_000).describe('Longest ejection.'),
    maxEjectionPercent: percent
      .default(10)
      .describe('Most endpoints ejected at once, in %; one endpoint can always be ejected.'),
  })
  .describe('Passive outlier detection: endpoints that fail are taken out for a while.');

const circuitBreaker = z
  .strictObject({
    maxRequests: z.number().int().min(1).default(1024).describe('Requests in flight to the service.'),
    maxPending: z
      .number()
      .int()
      .min(0)
      .default(1024)
      .describe('Requests waiting for an upstream connection.'),
    maxRetries: z
      .number()
      .int()
      .min(0)
      .default(1024)
      .describe('Retries in flight (the retry budget is the main control).'),
    errorRate: z
      .strictObject({
        failureRatio: z.number().gt(0).max(1).default(0.5).describe('Open at this share of failed requests.'),
        minimumRequests: z
          .number()
          .int()
          .min(1)
          .default(20)
          .describe('Requests in the window before it can open.'),
        window: duration.prefault(10_000).describe('Rolling window of the failure ratio.'),
        openFor: duration
          .prefault(5_000)
          .describe('Time open before half-open probes; doubles on each re-open.'),
        maxOpenFor: duration.prefault(60_000).describe('Longest time open.'),
        halfOpenProbes: z.number().int().min(1).default(3).describe('Probes that must succeed to close.'),
      })
      .optional()
      .describe('An error-rate breaker (503 circuit_open while open). Off unless set.'),
  })
  .describe('Limits that answer 503 overloaded instead of queueing without end.');

const retryBudget = z
  .strictObject({
    ratio: z.number().min(0).max(10).default(0.2).describe('Retries allowed per request, over the window.'),
    minPerSecond: z.number().min(0).default(10).describe('Retries always allowed per second.'),
    ttl: duration.prefault(10_000).describe('Window over which requests and retries are counted.'),
  })
  .describe('Caps retries to this service so that an outage never becomes a retry storm. Always on.');

const upstreamTls = z
  .strictObject({
    enabled: z
      .boolean()
      .optional()
      .describe(
        'TLS to the endpoints. Absent: on when the endpoints are `https://` URLs (set `true` with `dns` discovery).',
      ),
    sni: z
      .string()
      .regex(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/, {
        message: 'expected a host name such as "api.internal.example"',
      })
      .optional()
      .describe(
        "Server name sent in the TLS handshake (SNI) and checked against the endpoint's certificate. Absent: the endpoint's host name (none for an IP address, whose certificate must then list that IP).",
      ),
    ca: pemSource
      .optional()
      .describe(
        "PEM bundle of the CAs the endpoint's certificate must chain to (relative to the config file). Absent: the system's CAs. Verification is never turned off.",
      ),
    cert: pemSource
      .optional()
      .describe(
        'PEM client certificate (then its intermediates) presented to endpoints that ask for one (mTLS).',
      ),
    key: pemSource
      .optional()
      .describe('PEM file with the unencrypted private key of `cert` (or `${file:PATH}`).'),
    minVersion: tlsVersion.default('TLSv1.2').describe('Oldest TLS version offered to the endpoint.'),
    maxVersion: tlsVersion.optional().describe('Newest TLS version offered. Absent: TLSv1.3.'),
  })
  .describe(
    'TLS to the endpoints: server name, CA bundle, client certificate. Files are re-read when they change (new connections use them). See docs/tls.md.',
  );

export const serviceSchema = z
  .strictObject({
    name,
    endpoints: z
      .array(endpoint)
      .min(1)
      .optional()
      .describe(
        'Upstream endpoints as `http://host:port` (or `https://host:port`) URLs. One of `endpoints` and `dns` is required.',
      ),
    dns: dnsDiscovery.optional(),
    protocol: z
      .enum(['http1', 'h2', 'h2c'])
      .default('http1')
      .describe(
        'Protocol to the endpoints: http1 (HTTP/1.1, over TLS with https:// endpoints), h2 (HTTP/2 over TLS, by ALPN) or h2c (cleartext HTTP/2 by prior knowledge). gRPC needs h2 or h2c.',
      ),
    tls: upstreamTls.optional(),
    loadBalancer: loadBalancer.prefault({}),
    healthCheck: healthCheck.optional(),
    outlierDetection: outlierDetection.prefault({}),
    circuitBreaker: circuitBreaker.prefault({}),
    retryBudget: retryBudget.prefault({}),
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
          .describe(
            'http1: requests in flight per upstream connection; 1 (no pipelining) is the safe default. h2/h2c: not used (see maxConcurrentStreams).',
          ),
        maxConcurrentStreams: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(100)
          .describe(
            "h2/h2c: most streams in flight per upstream connection (fewer when the endpoint's SETTINGS say so); another connection opens beyond, up to `connections`.",
          ),
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
    token: z
      .string()
      .min(16)
      .optional()
      .describe(
        'Bearer token the admin API asks for (`Authorization: Bearer …`), except /live and /ready. Required when `address` is not loopback; use `${env:NAME}` or `${file:PATH}`.',
      ),
  })
  .describe('The admin listener: health, status, metrics, config and request explain.');

export const ACCESS_LOG_FIELDS = [
  'time',
  'requestId',
  'traceId',
  'client',
  'method',
  'host',
  'path',
  'listener',
  'route',
  'service',
  'endpoint',
  'status',
  'code',
  'outcome',
  'attempts',
  'retryBudgetExhausted',
  'bytesIn',
  'bytesOut',
  'durationMs',
  'upstreamMs',
  'consumer',
  'decisions',
  'operation',
  'api',
  'apiVersion',
  'waf',
] as const;

export const accessLogSchema = z
  .strictObject({
    output: z.string().default('off').describe('`off`, `stdout`, or a file path (appended to).'),
    sample: z
      .number()
      .min(0)
      .max(1)
      .default(1)
      .describe('Share of requests logged; errors (status ≥ 500 or a Trellis error code) are always logged.'),
    fields: z
      .array(z.enum(ACCESS_LOG_FIELDS))
      .min(1)
      .optional()
      .describe('Fields written, in this order; absent: all.'),
  })
  .describe('One JSON line per request. Never contains query strings, credentials, tokens or cookies.');

export const metricsSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Prometheus `/metrics` on the admin listener.'),
    durationBuckets: z
      .array(z.number().positive())
      .min(1)
      .default([0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10])
      .describe('Histogram bucket bounds in seconds (OpenTelemetry HTTP defaults).'),
    process: z.boolean().default(true).describe('Process metrics: CPU, memory, event loop lag, handles.'),
    gc: z
      .boolean()
      .default(false)
      .describe(
        '`nodejs_gc_duration_seconds`: observes every garbage collection, which costs about 6% CPU at full load.',
      ),
  })
  .describe(
    'Prometheus metrics with bounded labels (route and service names, never paths or client values).',
  );

export const tracingSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Record spans and export them over OTLP.'),
    endpoint: z
      .string()
      .default('http://127.0.0.1:4318/v1/traces')
      .describe('OTLP/HTTP traces endpoint of a collector.'),
    encoding: z.enum(['json', 'protobuf']).default('protobuf').describe('OTLP/HTTP body encoding.'),
    headers: z
      .record(headerName, headerValue)
      .default({})
      .describe('Extra headers to the collector (an API key, say: use `${env:NAME}`).'),
    sampleRatio: z
      .number()
      .min(0)
      .max(1)
      .default(0.01)
      .describe('Share of new traces sampled; a sampled or unsampled parent decides for its children.'),
    propagation: z
      .array(z.enum(['w3c', 'b3']))
      .min(1)
      .default(['w3c', 'b3'])
      .describe('Incoming trace headers accepted (W3C traceparent first); W3C is always sent upstream.'),
    serviceName: z.string().min(1).default('trellis').describe('`service.name` of the spans.'),
    maxQueue: z
      .number()
      .int()
      .min(1)
      .default(2048)
      .describe('Spans waiting for export; more are dropped and counted.'),
    batchSize: z.number().int().min(1).default(512).describe('Most spans per export request.'),
    flushInterval: duration.prefault(5_000).describe('Longest wait before a partial batch is sent.'),
    exportTimeout: duration.prefault(10_000).describe('Time an export request may take.'),
  })
  .describe('OpenTelemetry tracing: a server span per request and a client span per upstream attempt.');

export const gatewaySchema = z
  .strictObject({
    drainTimeout: duration.prefault(30_000).describe('How long SIGTERM waits for in-flight requests.'),
    websocketGrace: duration
      .prefault(30_000)
      .describe(
        'How long an open WebSocket stays after a reload removed its route (or its listener, or turned its `websocket` off) before it is closed with 1001.',
      ),
    via: z
      .string()
      .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]*$/, {
        message: 'expected a token such as "trellis" (or "" for none)',
      })
      .default('trellis')
      .describe('Pseudonym in the Via header; empty string: no Via header.'),
    zone: z
      .string()
      .max(63)
      .default('')
      .describe("This gateway's zone: endpoints in it are preferred (locality-aware balancing)."),
  })
  .describe('Process-wide settings.');

export const configSchema = z
  .strictObject({
    $schema: z.string().optional(),
    listeners: z.array(listenerSchema).min(1),
    routes: z.array(routeSchema).prefault([]),
    services: z.array(serviceSchema).prefault([]),
    policies: z.array(policySchema).prefault([]),
    consumers: z.array(consumerSchema).prefault([]),
    apis: z.array(apiSchema).prefault([]),
    admin: adminSchema.prefault({}),
    accessLog: accessLogSchema.prefault({}),
    metrics: metricsSchema.prefault({}),
    tracing: tracingSchema.prefault({}),
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
export type AdminConfig = Config['admin'];
export type AccessLogConfig = Config['accessLog'];
export type MetricsConfig = Config['metrics'];
export type TracingConfig = Config['tracing'];
export type { ConsumerConfig, PolicyConfig } from './policies.js';
