/**
 * The admin API's OpenAPI 3.1 document, served at /openapi.json. Reply schemas are closed
 * (`additionalProperties: false`) wherever Trellis decides the shape, so the tests that validate every
 * endpoint's real reply against this document catch any drift between the two.
 */

type Schema = Record<string, unknown>;

const str: Schema = { type: 'string' };
const int: Schema = { type: 'integer' };
const num: Schema = { type: 'number' };
const bool: Schema = { type: 'boolean' };
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const arr = (items: Schema): Schema => ({ type: 'array', items });
const nullable = (s: Schema): Schema =>
  typeof s.type === 'string' ? { ...s, type: [s.type, 'null'] } : { anyOf: [s, { type: 'null' }] };

/** A closed object; every property required unless listed in `optional`. */
function obj(properties: Record<string, Schema>, optional: string[] = [], description?: string): Schema {
  return {
    type: 'object',
    ...(description ? { description } : {}),
    properties,
    required: Object.keys(properties).filter((k) => !optional.includes(k)),
    additionalProperties: false,
  };
}

const described = (s: Schema, description: string): Schema => ({ ...s, description });

const valueMatch = obj(
  { name: str, exact: str, regex: str, present: bool },
  ['exact', 'regex', 'present'],
  'A header or query matcher: exactly one of exact, regex, present.',
);

const worker: Schema = {
  type: 'object',
  description: 'A process serving traffic (the gateway process itself with --workers 1).',
  properties: {
    pid: int,
    version: described(int, 'Config version it serves; 0 before its first.'),
    ports: { type: 'object', additionalProperties: int, description: 'Bound port by listener name.' },
  },
  required: ['pid', 'version', 'ports'],
};

const retry = obj({
  attempts: int,
  on: arr(str),
  statusCodes: arr(int),
  perTryTimeoutMs: int,
  backoff: obj({ baseMs: int, maxMs: int }),
  nonIdempotent: bool,
  replayBufferBytes: int,
  attemptsHeader: bool,
});

const backends = arr(obj({ service: str, weight: int }));
const timeouts = obj({ requestMs: int, upstreamIdleMs: int });
const mirror = nullable(obj({ service: str, percent: num }));
const fault = nullable(
  obj({
    delay: nullable(obj({ ms: int, percent: num })),
    abort: nullable(obj({ status: int, percent: num })),
    headers: bool,
  }),
);
const kind: Schema = { type: 'string', enum: ['proxy', 'redirect', 'direct-response'] };
const policies = described(
  arr(
    obj({
      name: str,
      type: described(str, 'The policy kind: api-key, jwt, rate-limit, ...'),
      phase: described(
        str,
        'ipFilter, cors, authn, authz, rateLimit, waf, validate or transform (docs/policies.md).',
      ),
      shadow: bool,
      from: { type: 'string', enum: ['listener', 'route'] },
    }),
  ),
  'The policies the route runs, in the order they run, before its own stages.',
);

const schemas: Record<string, Schema> = {
  Error: obj(
    {
      error: described(str, 'A short code: unauthorized, not_found, method_not_allowed, bad_request, ...'),
      detail: str,
      endpoints: arr(str),
    },
    ['endpoints'],
  ),
  Index: obj({ endpoints: arr(str) }),
  Live: obj({ live: bool }),
  Ready: {
    type: 'object',
    properties: { ready: bool, version: int, draining: bool, workers: arr(ref('Worker')) },
    required: ['ready', 'version', 'draining', 'workers'],
  },
  Worker: worker,
  Status: obj({
    trellis: described(str, 'Trellis version.'),
    node: described(str, 'Node.js version.'),
    pid: described(int, 'The process that owns the config and this listener.'),
    mode: { type: 'string', enum: ['single', 'cluster'] },
    startedAt: described(str, 'ISO 8601.'),
    uptimeSeconds: num,
    ready: bool,
    draining: bool,
    config: obj({
      version: int,
      hash: nullable(str),
      loadedAt: nullable(str),
      lastError: described(
        nullable({ type: 'object' }),
        'The last rejected reload (the previous config kept serving); null after a good one.',
      ),
    }),
    listeners: arr(
      obj({
        name: str,
        address: str,
        port: described(int, 'As configured (0: any free port).'),
        boundPort: described(nullable(int), 'The port actually bound; null until a worker reports it.'),
        protocol: str,
      }),
    ),
    workers: arr(ref('Worker')),
  }),
  ValueMatch: valueMatch,
  Route: obj({
    name: str,
    source: described(str, 'Where it is in the config: routes[3].'),
    match: obj({
      hosts: nullable(arr(str)),
      path: obj({ kind: { type: 'string', enum: ['exact', 'prefix', 'template', 'regex'] }, value: str }),
      methods: nullable(arr(str)),
      headers: nullable(arr(ref('ValueMatch'))),
      query: nullable(arr(ref('ValueMatch'))),
    }),
    kind,
    policies,
    stages: described(arr(str), 'Request stages by name, in order (after the policies).'),
    responseStages: arr(str),
    backends,
    preserveHost: bool,
    timeouts,
    maxBodyBytes: nullable(int),
    retry,
    mirror,
    fault,
    translate: described(
      nullable(str),
      'translate.type of a route that translates its requests (grpc, graphql, websocket); null: none.',
    ),
  }),
  ListenerRoutes: obj({
    name: str,
    address: str,
    port: int,
    protocol: str,
    routes: described(arr(ref('Route')), 'In precedence order.'),
  }),
  Routes: obj({
    pid: described(int, 'The worker whose routes these are.'),
    workers: described(arr(int), 'Every worker that answered.'),
    consistent: described(bool, 'Every worker that answered serves the same config version and hash.'),
    note: str,
    version: int,
    hash: str,
    listeners: arr(ref('ListenerRoutes')),
  }),
  Endpoint: obj({
    origin: str,
    authority: str,
    weight: int,
    zone: str,
    priority: int,
    active: described(int, 'Requests in flight on it.'),
    eligible: described(bool, 'The balancer picks it now.'),
    healthy: bool,
    health: nullable(obj({ lastCheckAt: str, lastError: nullable(str) })),
    ejection: nullable(
      obj({
        ejected: bool,
        until: nullable(str),
        remainingMs: int,
        reason: nullable(str),
        count: described(int, 'Ejection multiplier: the next ejection lasts base × (count + 1).'),
      }),
    ),
    latencyEwmaMs: num,
  }),
  Service: obj({
    name: str,
    loadBalancer: obj({
      type: str,
      panicThreshold: num,
      hashOn: nullable({ type: 'object', additionalProperties: { type: ['string', 'boolean'] } }),
    }),
    discovery: {
      oneOf: [
        obj({ type: { const: 'static' } }),
        obj({ type: { const: 'dns' }, name: str, port: nullable(int), lastError: nullable(str) }),
      ],
    },
    healthCheck: nullable(obj({ type: str, intervalMs: int })),
    panic: bool,
    eligible: int,
    endpoints: arr(ref('Endpoint')),
    circuitBreaker: obj({ state: { type: 'string', enum: ['closed', 'open', 'half_open', 'disabled'] } }),
    admission: obj({
      active: int,
      pending: int,
      retries: int,
      maxRequests: int,
      maxPending: int,
      maxRetries: int,
    }),
    retryBudget: obj({ balance: num }),
  }),
  Services: obj({
    workers: described(
      arr(obj({ pid: int, version: int, services: arr(ref('Service')) })),
      'Per worker: this state is per process.',
    ),
  }),
  Config: {
    type: 'object',
    description: 'The active config, secrets redacted, with its version, hash and when it loaded.',
    properties: { version: int, hash: str, loadedAt: str, file: str, config: { type: 'object' } },
    required: ['version'],
  },
  ExplainRequest: obj(
    {
      method: described(str, 'Default GET.'),
      host: described(str, 'The Host header; a port is removed as the gateway does.'),
      path: described(str, 'The request target: a path, optionally with ?query.'),
      headers: {
        type: 'object',
        additionalProperties: { anyOf: [str, arr(str)] },
        description: 'Header values; a repeated header as a list.',
      },
      query: {
        anyOf: [str, { type: 'object', additionalProperties: { anyOf: [str, arr(str)] } }],
        description: 'A raw query string, or parameters by name.',
      },
      listener: described(str, 'Only this listener.'),
    },
    ['method', 'host', 'headers', 'query', 'listener'],
  ),
  Explain: obj({
    request: obj({
      method: str,
      host: described(str, 'Lower case, without the port: what the router compares.'),
      path: described(str, 'Normalized: what the router compares and the upstream gets.'),
      query: str,
      headers: { type: 'object', additionalProperties: { anyOf: [str, arr(str)] } },
    }),
    listeners: arr(ref('ListenerExplain')),
  }),
  ListenerExplain: obj({
    listener: str,
    outcome: { type: 'string', enum: ['match', 'method_not_allowed', 'not_found'] },
    localReply: nullable(obj({ status: int, code: str, allow: nullable(arr(str)) })),
    route: nullable(
      obj({
        name: str,
        source: str,
        hostGroup: described(str, 'host NAME, wildcard *.SUFFIX or any host.'),
        path: described(str, 'The path rule that matched.'),
        params: nullable({ type: 'object', additionalProperties: str }),
      }),
    ),
    policies: nullable(
      obj({
        kind,
        pipeline: described(arr(str), 'What the request goes through, in order.'),
        policies,
        stages: arr(str),
        responseStages: arr(str),
        backends,
        retry,
        timeouts,
        maxBodyBytes: nullable(int),
        mirror,
        fault,
      }),
    ),
    routes: described(
      arr(
        obj({
          name: str,
          source: str,
          verdict: { type: 'string', enum: ['match', 'lower_precedence', 'no_match'] },
          hostGroup: nullable(str),
          reasons: arr(str),
        }),
      ),
      'Every route of the listener in config order, with why it did not win.',
    ),
  }),
};

const json = (schema: string, description: string) => ({
  description,
  content: { 'application/json': { schema: ref(schema) } },
});

const errors = {
  '401': json('Error', 'admin.token is set and the request has no valid `Authorization: Bearer` token.'),
};

const get = (summary: string, description: string, ok: Record<string, unknown>, extra = {}) => ({
  get: { summary, description, responses: { ...ok, ...errors, ...extra } },
});

/** The document; `version` is Trellis's. */
export function openApiDocument(version: string): Record<string, unknown> {
  const explainResponses = {
    '200': json('Explain', 'The explanation, listener by listener.'),
    '400': json(
      'Error',
      'A missing or malformed path, an unknown listener, or a body that is not the JSON described.',
    ),
    ...errors,
    '503': json('Error', 'No config is active yet.'),
  };
  const explainParams = [
    { name: 'path', in: 'query', required: true, schema: str, description: 'Path, optionally with ?query.' },
    { name: 'method', in: 'query', schema: str, description: 'Default GET.' },
    { name: 'host', in: 'query', schema: str, description: 'The Host header.' },
    {
      name: 'header',
      in: 'query',
      schema: arr(str),
      style: 'form',
      explode: true,
      description: 'NAME:VALUE, repeatable.',
    },
    {
      name: 'query',
      in: 'query',
      schema: arr(str),
      style: 'form',
      explode: true,
      description: 'NAME=VALUE (or any raw query string), repeatable.',
    },
    { name: 'listener', in: 'query', schema: str, description: 'Only this listener.' },
  ];
  return {
    openapi: '3.1.0',
    info: {
      title: 'Trellis admin API',
      version,
      description:
        'Read-only view of a running Trellis gateway. When `admin.token` is set every endpoint but /live and /ready needs `Authorization: Bearer <token>`. Replies are JSON with `cache-control: no-store`, except /metrics.',
    },
    servers: [{ url: 'http://127.0.0.1:9901' }],
    security: [{ bearerAuth: [] }],
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'Only when admin.token is set.' },
      },
      schemas,
    },
    paths: {
      '/': get('Index', 'The endpoints.', { '200': json('Index', 'The endpoints.') }),
      '/live': {
        get: {
          summary: 'Liveness',
          description: 'The process answers. Never needs the token.',
          security: [],
          responses: { '200': json('Live', 'Alive.') },
        },
      },
      '/ready': {
        get: {
          summary: 'Readiness',
          description:
            'Config loaded and every listener bound in every worker. Never needs the token. 503 while starting or draining.',
          security: [],
          responses: { '200': json('Ready', 'Ready.'), '503': json('Ready', 'Not ready.') },
        },
      },
      '/status': get(
        'Status',
        'Versions, uptime, workers, config version and hash, listeners with bound ports.',
        {
          '200': json('Status', 'Status.'),
        },
      ),
      '/routes': get(
        'Routes',
        'Each listener’s compiled routes in precedence order. Every worker runs the same snapshot, so one worker’s view is shown (`pid`); `consistent` says whether every worker serves the same version.',
        { '200': json('Routes', 'Routes.') },
        { '503': json('Error', 'No worker is serving yet.') },
      ),
      '/services': get(
        'Services',
        'Each service with endpoint health, ejections, breaker, admission and retry budget, per worker (this state is per process).',
        { '200': json('Services', 'Services.') },
        { '503': json('Error', 'No worker is serving yet.') },
      ),
      '/config': get('Config', 'The active config, secrets redacted.', { '200': json('Config', 'Config.') }),
      '/metrics': get(
        'Prometheus metrics',
        'Text exposition format; with several workers, the sum of all workers.',
        {
          '200': {
            description: 'Metrics.',
            content: { 'text/plain': { schema: str } },
          },
        },
        { '404': json('Error', 'metrics.enabled is false.') },
      ),
      '/explain': {
        get: {
          summary: 'Explain a request',
          description:
            'Which route a request would match on each listener, why every other route did not, and what would run. `/explain?method=GET&host=api.example.com&path=/v1/users/7&header=x-version:2&query=debug=1`.',
          parameters: explainParams,
          responses: explainResponses,
        },
        post: {
          summary: 'Explain a request (JSON body)',
          requestBody: { required: true, content: { 'application/json': { schema: ref('ExplainRequest') } } },
          responses: {
            ...explainResponses,
            '413': json('Error', 'The body is larger than 64 KiB.'),
          },
        },
      },
      '/openapi.json': get('This document', 'OpenAPI 3.1.', {
        '200': {
          description: 'The document.',
          content: { 'application/json': { schema: { type: 'object' } } },
        },
      }),
    },
  };
}
