import { readFileSync } from 'node:fs';
import { request as httpRequest, type Server } from 'node:http';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type AdminSource, createAdminServer, listenAdmin } from '../src/admin/server.js';
import { routePolicies, routeStageNames, routesView, servicesView } from '../src/admin/views.js';
import type { Snapshot } from '../src/compile/snapshot.js';
import { loadConfigText, redactConfig } from '../src/config/index.js';
import type { Config } from '../src/config/schema.js';
import { Gateway } from '../src/proxy/gateway.js';
import { startUpstream, type Upstream } from './helpers.js';
import { type GatewayProcess, runCli, spawnGateway } from './process.js';

// The admin API on a real Gateway: every reply is validated against the OpenAPI document the server itself
// serves, explain is checked against what the gateway really does with the same requests, and the token rule.

// ---------------------------------------------------------------- a small JSON Schema validator

/**
 * Validates against the subset of JSON Schema 2020-12 the document uses, and refuses any other keyword, so the
 * document cannot use something this validator would silently ignore. (No validator dependency.)
 */
type JsonSchema = Record<string, unknown>;
const ANNOTATIONS = new Set(['description', 'title', 'example', 'examples', 'default', 'format']);
const KEYWORDS = new Set([
  '$ref',
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'enum',
  'const',
  'anyOf',
  'oneOf',
  'minimum',
]);

function validate(doc: JsonSchema, schema: JsonSchema, value: unknown, at = '$'): string[] {
  for (const k of Object.keys(schema)) {
    if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k))
      throw new Error(`${at}: the test validator does not know "${k}"`);
  }
  if (typeof schema.$ref === 'string') {
    const name = /^#\/components\/schemas\/(.+)$/.exec(schema.$ref)?.[1];
    const target = name ? ((doc.components as JsonSchema).schemas as JsonSchema)[name] : undefined;
    if (!target) throw new Error(`${at}: unresolved $ref ${schema.$ref}`);
    return validate(doc, target as JsonSchema, value, at);
  }
  const errors: string[] = [];
  if (schema.anyOf) {
    const ok = (schema.anyOf as JsonSchema[]).some((s) => validate(doc, s, value, at).length === 0);
    if (!ok) errors.push(`${at}: matches none of anyOf (${JSON.stringify(value)?.slice(0, 80)})`);
  }
  if (schema.oneOf) {
    const n = (schema.oneOf as JsonSchema[]).filter((s) => validate(doc, s, value, at).length === 0).length;
    if (n !== 1) errors.push(`${at}: matches ${n} of oneOf`);
  }
  if ('const' in schema && value !== schema.const)
    errors.push(`${at}: expected ${JSON.stringify(schema.const)}`);
  if (schema.enum && !(schema.enum as unknown[]).includes(value)) {
    errors.push(`${at}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    const actual =
      value === null
        ? 'null'
        : Array.isArray(value)
          ? 'array'
          : typeof value === 'number' && Number.isInteger(value)
            ? 'integer'
            : typeof value;
    const fits = types.includes(actual) || (actual === 'integer' && types.includes('number'));
    if (!fits) return [...errors, `${at}: expected ${types.join('|')}, got ${actual}`];
  }
  if (typeof schema.minimum === 'number' && typeof value === 'number' && value < schema.minimum) {
    errors.push(`${at}: below ${schema.minimum}`);
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) errors.push(`${at}: missing ${r}`);
    for (const [k, v] of Object.entries(obj)) {
      if (props[k]) errors.push(...validate(doc, props[k], v, `${at}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${at}: unexpected property ${k}`);
      else if (typeof schema.additionalProperties === 'object') {
        errors.push(...validate(doc, schema.additionalProperties as JsonSchema, v, `${at}.${k}`));
      }
    }
  }
  if (Array.isArray(value) && schema.items) {
    value.forEach((v, i) => {
      errors.push(...validate(doc, schema.items as JsonSchema, v, `${at}[${i}]`));
    });
  }
  return errors;
}

// ---------------------------------------------------------------- the gateway and its admin listener

const SECRET = 'sekrit-value-1234567';
const TOKEN = 'admin-token-0123456789abcdef';

const YAML = `
listeners:
  - name: public
    port: 0
    policies: [loopback-only]
  - name: internal
    port: 0
policies:
  - name: loopback-only
    type: ip-filter
    allow: [127.0.0.0/8, "::1"]
  - name: per-address
    type: rate-limit
    shadow: true
    key: client-ip
    limits: [{ requests: 1000, per: 1s }]
  - name: browser
    type: cors
    origins: [https://app.example.com]
services:
  - name: users
    endpoints: ["{{UPSTREAM}}", "http://127.0.0.1:1"]
    healthCheck: { path: /healthz, interval: 100ms, timeout: 500ms, unhealthyThreshold: 1 }
    circuitBreaker: { errorRate: {} }
  - name: shadow
    endpoints: [{ url: "{{UPSTREAM}}", weight: 2, zone: z1, priority: 1 }]
    loadBalancer: { type: ring-hash, hashOn: { header: x-user } }
routes:
  - name: status
    match: { path: { exact: /status } }
    directResponse: { status: 200, body: status }
  - name: users
    match:
      hosts: [API.example.com]
      path: { template: /v1/users/:id }
      methods: [GET]
      headers: [{ name: X-Version, exact: "2" }]
    backends: [{ service: users, weight: 3 }, { service: shadow, weight: 1 }]
    rewrite: { path: { full: /u } }
    requestHeaders: { set: { x-a: "1" } }
    responseHeaders: { set: { x-route: users } }
    retries: { attempts: 3, on: [5xx, connect-failure] }
    mirror: { service: shadow, percent: 50 }
    fault: { delay: { duration: 1ms, percent: 0 } }
    limits: { maxBodyBytes: 1MiB }
    policies: [per-address, browser]
  - name: gated
    match: { path: { prefix: /v1 }, headers: [{ name: x-api-key, exact: "\${env:TRELLIS_ADMIN_TEST_KEY}" }] }
    backends: [{ service: users }]
    responseHeaders: { set: { x-route: gated } }
  - name: api
    match: { path: { prefix: /v1/ } }
    backends: [{ service: users }]
    responseHeaders: { set: { x-route: api } }
  - name: old
    match: { path: { prefix: /old }, methods: [GET, HEAD] }
    redirect: { path: { prefix: /v1 } }
  - name: debug
    match: { path: { regex: "/v[0-9]+/debug/.*" }, query: [{ name: debug, present: true }] }
    directResponse: { status: 200, body: debug }
  - name: internal-only
    listeners: [internal]
    match: { path: { prefix: / } }
    directResponse: { status: 200, body: internal-only }
`;

let up: Upstream;
let gateway: Gateway;
let snapshot: Snapshot;
let config: Config;
let hash: string;
let secretPaths: string[][];
const servers: Server[] = [];
let doc: JsonSchema;

/** JSON through a round trip, as the views travel from a worker to the primary. */
const ipc = <T>(v: T): T => JSON.parse(JSON.stringify(v));

function source(opts: { token?: string; metrics?: boolean; workers?: number } = {}): AdminSource {
  const pids = Array.from({ length: opts.workers ?? 1 }, (_, i) => (i === 0 ? process.pid : 100_000 + i));
  const active = opts.token ? { ...config, admin: { ...config.admin, token: opts.token } } : config;
  return {
    ready: () => true,
    status: () => ({
      version: 1,
      draining: false,
      workers: pids.map((pid) => ({ pid, version: 1, ports: gateway.ports() })),
    }),
    configView: () => ({
      version: 1,
      hash,
      loadedAt: new Date().toISOString(),
      file: '/etc/trellis.yaml',
      lastError: undefined,
      config: redactConfig(active, secretPaths),
    }),
    config: () => active,
    metrics: () =>
      opts.metrics
        ? Promise.resolve({
            contentType: 'text/plain; version=0.0.4; charset=utf-8',
            body: '# TYPE up gauge\nup 1\n',
          })
        : undefined,
    runtime: async () =>
      pids.map((pid) => ({ pid, routes: ipc(routesView(snapshot)), services: ipc(servicesView(snapshot)) })),
  };
}

async function adminOn(src: AdminSource): Promise<string> {
  const server = createAdminServer(src);
  servers.push(server);
  const port = await listenAdmin(server, '127.0.0.1', 0);
  return `http://127.0.0.1:${port}`;
}

let base = '';
let secured = '';
let cluster = '';

beforeAll(async () => {
  up = await startUpstream();
  const r = loadConfigText(YAML.replaceAll('{{UPSTREAM}}', up.url), 'admin-test.yaml', {
    env: { TRELLIS_ADMIN_TEST_KEY: SECRET },
  });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  config = r.config;
  hash = r.source.hash;
  secretPaths = r.source.secretPaths;
  gateway = new Gateway(pino({ level: 'silent' }));
  snapshot = await gateway.apply(config, 1, hash);
  base = await adminOn(source({ metrics: true }));
  secured = await adminOn(source({ token: TOKEN }));
  cluster = await adminOn(source({ workers: 3 }));
  doc = (await (await fetch(`${base}/openapi.json`)).json()) as JsonSchema;
});

afterAll(async () => {
  for (const s of servers) {
    s.close();
    s.closeAllConnections();
  }
  await gateway?.drain(1000);
  await up?.close();
});

/** Admin JSON, read field by field in the tests. */
// biome-ignore lint/suspicious/noExplicitAny: see above
type Json = any;

/** GET and validate the reply against the document's schema for that path and status. */
async function getValid(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Json; res: Response }> {
  const res = await fetch(url, init);
  const text = await res.text();
  const path = new URL(url).pathname;
  const method = (init.method ?? 'GET').toLowerCase();
  const op = ((doc.paths as JsonSchema)[path] as JsonSchema)[method] as JsonSchema;
  const response = (op.responses as JsonSchema)[String(res.status)] as JsonSchema | undefined;
  expect(response, `${method} ${path} ${res.status} is in the document`).toBeDefined();
  const content = response!.content as Record<string, { schema: JsonSchema }>;
  if (content['application/json']) {
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = JSON.parse(text);
    expect(validate(doc, content['application/json'].schema, body), `${method} ${path}`).toEqual([]);
    return { status: res.status, body, res };
  }
  return { status: res.status, body: text, res };
}

/** A request to the gateway itself (fetch cannot set Host). */
function gw(
  port: number,
  r: { method?: string; host?: string; path: string; headers?: Record<string, string> },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: r.method ?? 'GET',
        path: r.path,
        headers: { host: r.host ?? 'www.test', ...r.headers },
      },
      (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------- tests

describe('the OpenAPI document', () => {
  test('is OpenAPI 3.1, describes every endpoint, and every $ref resolves', () => {
    expect(doc.openapi).toBe('3.1.0');
    const paths = Object.keys(doc.paths as JsonSchema).sort();
    expect(paths).toEqual(
      [
        '/',
        '/config',
        '/explain',
        '/live',
        '/metrics',
        '/openapi.json',
        '/ready',
        '/routes',
        '/services',
        '/status',
      ].sort(),
    );
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(10);
    for (const r of refs) validate(doc, { $ref: JSON.parse(`{${r}}`).$ref }, null); // throws on a dangling $ref
    expect((doc.info as JsonSchema).version).toBe(
      JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version,
    );
  });

  test('every endpoint’s reply validates against its schema', async () => {
    for (const p of ['/', '/live', '/ready', '/status', '/routes', '/services', '/config', '/openapi.json']) {
      const r = await getValid(`${base}${p}`);
      expect(r.status, p).toBe(200);
      expect(r.res.headers.get('cache-control'), p).toBe('no-store');
    }
    for (const p of ['/status', '/routes', '/services'])
      expect((await getValid(`${cluster}${p}`)).status).toBe(200);
    const explain = await getValid(
      `${base}/explain?method=GET&host=api.example.com&path=/v1/users/7&header=x-version:2&query=debug=1`,
    );
    expect(explain.status).toBe(200);
    const post = await getValid(`${base}/explain`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ path: '/old/x', method: 'DELETE' }),
    });
    expect(post.status).toBe(200);
    expect((await getValid(`${base}/explain?host=x`)).status).toBe(400);
    expect((await getValid(`${secured}/status`)).status).toBe(401);
    expect((await getValid(`${cluster}/metrics`)).status).toBe(404);
  });
});

describe('endpoints', () => {
  test('/status: versions, uptime, config version and hash, listeners with bound ports', async () => {
    const { body } = await getValid(`${base}/status`);
    expect(body.trellis).toBe(
      JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version,
    );
    expect(body.node).toBe(process.version);
    expect(body.pid).toBe(process.pid);
    expect(body.mode).toBe('single');
    expect(body.uptimeSeconds).toBeGreaterThan(0);
    expect(Date.parse(body.startedAt)).toBeLessThanOrEqual(Date.now());
    expect(body.config).toMatchObject({ version: 1, hash, lastError: null });
    const ports = gateway.ports();
    expect(body.listeners).toEqual([
      { name: 'public', address: '127.0.0.1', port: 0, boundPort: ports.public, protocol: 'http' },
      { name: 'internal', address: '127.0.0.1', port: 0, boundPort: ports.internal, protocol: 'http' },
    ]);
    expect((await getValid(`${cluster}/status`)).body.mode).toBe('cluster');
  });

  test('/routes: per listener, in precedence order, in compiled form; secrets redacted', async () => {
    const { body } = await getValid(`${base}/routes`);
    expect(body).toMatchObject({
      pid: process.pid,
      workers: [process.pid],
      consistent: true,
      version: 1,
      hash,
    });
    const pub = body.listeners.find((l: { name: string }) => l.name === 'public');
    // users names a host: first; then exact, regex, prefixes longest first (/old, then /v1 with more header matchers first).
    expect(pub.routes.map((r: { name: string }) => r.name)).toEqual([
      'users',
      'status',
      'debug',
      'old',
      'gated',
      'api',
    ]);
    const users = pub.routes[0];
    expect(users).toMatchObject({
      source: 'routes[1]',
      match: {
        hosts: ['api.example.com'],
        path: { kind: 'template', value: '/v1/users/:id' },
        methods: ['GET'],
        headers: [{ name: 'x-version', exact: '2' }],
        query: null,
      },
      kind: 'proxy',
      stages: ['rewrite', 'request-headers'],
      responseStages: ['response-headers'],
      backends: [
        { service: 'users', weight: 3 },
        { service: 'shadow', weight: 1 },
      ],
      timeouts: { requestMs: 15000, upstreamIdleMs: 60000 },
      maxBodyBytes: 1024 * 1024,
      mirror: { service: 'shadow', percent: 50 },
      fault: { delay: { ms: 1, percent: 0 }, abort: null, headers: false },
    });
    expect(users.retry).toMatchObject({ attempts: 3, on: ['5xx', 'connect-failure'] });
    const api = pub.routes.find((r: { name: string }) => r.name === 'api');
    expect(api.match.path).toEqual({ kind: 'prefix', value: '/v1' });
    expect(api.maxBodyBytes).toBeNull();
    const gated = pub.routes.find((r: { name: string }) => r.name === 'gated');
    expect(gated.match.headers).toEqual([{ name: 'x-api-key', exact: '<redacted>' }]);
    const internal = body.listeners.find((l: { name: string }) => l.name === 'internal');
    expect(internal.routes.at(-1).name).toBe('internal-only');
    expect(JSON.stringify(body)).not.toContain(SECRET);

    const c = (await getValid(`${cluster}/routes`)).body;
    expect(c.workers).toHaveLength(3);
    expect(c.pid).toBe(c.workers[0]);
    expect(c.note).toMatch(/same config/);
  });

  test('the stage names in the views are the compiled routes’ stages', () => {
    const router = snapshot.listeners.get('public')!.router;
    const requests: Record<
      string,
      { method?: string; host?: string; path: string; headers?: Record<string, string>; query?: string }
    > = {
      status: { path: '/status' },
      users: { host: 'api.example.com', path: '/v1/users/7', headers: { 'x-version': '2' } },
      gated: { path: '/v1/x', headers: { 'x-api-key': SECRET } },
      api: { path: '/v1/x' },
      old: { path: '/old/x' },
      debug: { path: '/v1/debug/x', query: 'debug' },
    };
    for (const route of config.routes) {
      const r = requests[route.name];
      if (!r) continue;
      const m = router.match({
        method: r.method ?? 'GET',
        host: r.host ?? 'www.test',
        path: r.path,
        query: r.query ?? '',
        headers: r.headers ?? {},
      });
      expect(m.kind === 'match' && m.value.name, route.name).toBe(route.name);
      if (m.kind !== 'match') continue;
      // Policies run first (their stages are named after them), in the order the views give; then the route's
      // own stages. Response stages: the route's own, then those policies add (CORS headers, ...).
      const own = routeStageNames(route);
      const policies = routePolicies(config, 'public', route).map((p) => p.name);
      expect([...policies, ...own.request]).toEqual(m.value.stages.map((s) => s.name));
      expect(m.value.responseStages.map((s) => s.name).slice(0, own.response.length)).toEqual(own.response);
    }
  });

  test('/services: endpoints with health, ejection, breaker, admission and budget, per worker', async () => {
    // Wait for the first health checks (every 100 ms).
    const deadline = Date.now() + 5000;
    let users: ReturnType<typeof servicesView>['services'][number] | undefined;
    while (Date.now() < deadline) {
      users = servicesView(snapshot).services.find((s) => s.name === 'users');
      if (users?.endpoints.every((e) => e.health !== null)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const { body } = await getValid(`${base}/services`);
    expect(body.workers).toHaveLength(1);
    expect(body.workers[0].pid).toBe(process.pid);
    const svc = body.workers[0].services.find((s: { name: string }) => s.name === 'users');
    expect(svc).toMatchObject({
      loadBalancer: { type: 'p2c-ewma', panicThreshold: 50, hashOn: null },
      discovery: { type: 'static' },
      healthCheck: { type: 'http', intervalMs: 100 },
      circuitBreaker: { state: 'closed' },
      admission: { active: 0, pending: 0, retries: 0, maxRequests: 1024 },
    });
    expect(svc.retryBudget.balance).toBeGreaterThanOrEqual(0);
    const [live, dead] = svc.endpoints;
    expect(live).toMatchObject({ origin: up.url, healthy: true, eligible: true, weight: 1, priority: 0 });
    expect(live.health.lastError).toBeNull();
    expect(Date.parse(live.health.lastCheckAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(live.ejection).toEqual({ ejected: false, until: null, remainingMs: 0, reason: null, count: 0 });
    expect(dead).toMatchObject({ origin: 'http://127.0.0.1:1', healthy: false, eligible: false });
    expect(dead.health.lastError).toMatch(/ECONNREFUSED|refused/i);
    expect(svc.eligible).toBe(1);
    const shadow = body.workers[0].services.find((s: { name: string }) => s.name === 'shadow');
    expect(shadow).toMatchObject({
      loadBalancer: { type: 'ring-hash', hashOn: { header: 'x-user' } },
      circuitBreaker: { state: 'disabled' },
      healthCheck: null,
    });
    expect(shadow.endpoints[0]).toMatchObject({ weight: 2, zone: 'z1', priority: 1, health: null });
    const c = (await getValid(`${cluster}/services`)).body;
    expect(c.workers.map((w: { pid: number }) => w.pid)).toEqual([process.pid, 100_001, 100_002]);
  });

  test('/metrics: the source’s exposition and content type; 404 when metrics are off', async () => {
    const r = await fetch(`${base}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(await r.text()).toBe('# TYPE up gauge\nup 1\n');
    const off = await getValid(`${cluster}/metrics`);
    expect(off.status).toBe(404);
    expect(off.body).toEqual({
      error: 'metrics_disabled',
      detail: expect.stringMatching(/metrics\.enabled: false/),
    });
  });

  test('404 lists the endpoints; 405 names what is allowed; HEAD has no body', async () => {
    const nf = await fetch(`${base}/nope`);
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as Json).endpoints).toContain('/explain');
    const del = await fetch(`${base}/status`, { method: 'DELETE' });
    expect(del.status).toBe(405);
    expect(del.headers.get('allow')).toBe('GET, HEAD');
    expect((await fetch(`${base}/routes`, { method: 'POST' })).status).toBe(405);
    const put = await fetch(`${base}/explain`, { method: 'PUT' });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, HEAD, POST');
    const head = await fetch(`${base}/status`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBeGreaterThan(0);
    expect(await head.text()).toBe('');
  });
});

describe('/explain', () => {
  test('the example: which route, why not the others, what would run', async () => {
    const { body } = await getValid(
      `${base}/explain?method=GET&host=API.example.com:8080&path=/v1/users/7&header=X-Version:2&query=debug=1`,
    );
    expect(body.request).toMatchObject({
      method: 'GET',
      host: 'api.example.com',
      path: '/v1/users/7',
      query: 'debug=1',
    });
    expect(body.listeners.map((l: { listener: string }) => l.listener)).toEqual(['public', 'internal']);
    const pub = body.listeners[0];
    expect(pub).toMatchObject({
      outcome: 'match',
      localReply: null,
      route: {
        name: 'users',
        source: 'routes[1]',
        hostGroup: 'host api.example.com',
        path: 'template /v1/users/:id',
        params: { id: '7' },
      },
      policies: {
        kind: 'proxy',
        // The listener's policy first; then the route's by phase (CORS before rate limits), not as listed.
        pipeline: [
          'max-body-bytes',
          'policy:loopback-only',
          'policy:browser',
          'policy:per-address',
          'rewrite',
          'request-headers',
          'fault',
          'mirror',
          'upstream',
          'response-headers',
        ],
        backends: [
          { service: 'users', weight: 3 },
          { service: 'shadow', weight: 1 },
        ],
      },
    });
    expect(pub.policies.retry.attempts).toBe(3);
    expect(pub.policies.policies).toEqual([
      { name: 'loopback-only', type: 'ip-filter', phase: 'ipFilter', shadow: false, from: 'listener' },
      { name: 'browser', type: 'cors', phase: 'cors', shadow: false, from: 'route' },
      { name: 'per-address', type: 'rate-limit', phase: 'rateLimit', shadow: true, from: 'route' },
    ]);
    const why = Object.fromEntries(
      pub.routes.map((r: { name: string; verdict: string; reasons: string[] }) => [
        r.name,
        [r.verdict, ...r.reasons],
      ]),
    );
    expect(why.users).toEqual(['match']);
    expect(why.status).toEqual(['no_match', 'path /v1/users/7 is not exactly /status']);
    expect(why.gated).toEqual(['no_match', 'header x-api-key: expected "<redacted>", got (absent)']);
    expect(why.api).toEqual([
      'lower_precedence',
      'matched, but route users (routes[1]) comes first: routes naming the host api.example.com exactly are tried before routes for any host',
    ]);
    expect(why.old).toEqual(['no_match', 'path /v1/users/7 does not start with prefix /old']);
    expect(why.debug).toEqual([
      'no_match',
      'path /v1/users/7 does not match regex /v[0-9]+/debug/.* (the whole path must match)',
    ]);
    expect(pub.routes.map((r: { name: string }) => r.name)).not.toContain('internal-only');

    // Without the header: the users route says why, and api wins.
    const b = (await getValid(`${base}/explain?host=api.example.com&path=/v1/users/7&listener=public`)).body;
    expect(b.listeners).toHaveLength(1);
    expect(b.listeners[0].route.name).toBe('api');
    const users = b.listeners[0].routes.find((r: { name: string }) => r.name === 'users');
    expect(users.reasons).toEqual(['header x-version: expected "2", got (absent)']);
  });

  test('POST with a JSON body; 405 with Allow; errors', async () => {
    const post = await getValid(`${base}/explain`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'delete', path: '/old/x', listener: 'public', query: { a: 'b c' } }),
    });
    expect(post.body.request).toMatchObject({ method: 'DELETE', query: 'a=b%20c' });
    expect(post.body.listeners[0]).toMatchObject({
      outcome: 'method_not_allowed',
      localReply: { status: 405, code: 'method_not_allowed', allow: ['GET', 'HEAD'] },
      route: null,
      policies: null,
    });
    const old = post.body.listeners[0].routes.find((r: { name: string }) => r.name === 'old');
    expect(old.reasons).toEqual(['method DELETE is not in [GET, HEAD]']);
    const nf = (await getValid(`${base}/explain?path=/nothing&listener=public`)).body.listeners[0];
    expect(nf.localReply).toEqual({ status: 404, code: 'route_not_found', allow: null });

    const bad = async (init: RequestInit, url = `${base}/explain`) => {
      const r = await getValid(url, init);
      return [r.status, r.body.error];
    };
    expect(await bad({ method: 'POST', body: '{' })).toEqual([400, 'bad_request']);
    expect(await bad({ method: 'POST', body: JSON.stringify({ method: 'GET' }) })).toEqual([
      400,
      'bad_request',
    ]);
    expect(await bad({ method: 'POST', body: JSON.stringify({ path: '/', extra: 1 }) })).toEqual([
      400,
      'bad_request',
    ]);
    expect(
      await bad({ method: 'POST', body: JSON.stringify({ path: '/', host: 'x'.repeat(70_000) }) }),
    ).toEqual([413, 'body_too_large']);
    expect(await bad({}, `${base}/explain?path=/&listener=nope`)).toEqual([400, 'bad_request']);
    expect(await bad({}, `${base}/explain?path=/%zz`)).toEqual([400, 'bad_request']);
    expect(await bad({}, `${base}/explain?path=/&header=novalue`)).toEqual([400, 'bad_request']);
  });

  test('agrees with what the gateway does with the same requests', async () => {
    const ports = gateway.ports();
    const cases: {
      listener: 'public' | 'internal';
      method?: string;
      host?: string;
      path: string;
      headers?: Record<string, string>;
      want: string;
    }[] = [
      { listener: 'public', path: '/status', want: 'status' },
      {
        listener: 'public',
        host: 'api.example.com',
        path: '/v1/users/7',
        headers: { 'x-version': '2' },
        want: 'users',
      },
      { listener: 'public', host: 'api.example.com', path: '/v1/users/7', want: 'api' },
      {
        listener: 'public',
        host: 'api.example.com',
        method: 'POST',
        path: '/v1/users/7',
        headers: { 'x-version': '2' },
        want: 'api',
      },
      { listener: 'public', path: '/v1/users/7', headers: { 'x-api-key': SECRET }, want: 'gated' },
      { listener: 'public', path: '/v1/./a/../b', want: 'api' },
      { listener: 'public', path: '/v1/debug/x?debug', want: 'debug' },
      { listener: 'public', path: '/v1/debug/x', want: 'api' },
      { listener: 'public', path: '/old/x', want: 'old' },
      { listener: 'public', method: 'DELETE', path: '/old/x', want: '405 GET, HEAD' },
      { listener: 'public', path: '/oldies', want: '404' },
      { listener: 'public', path: '//status', want: 'status' },
      { listener: 'internal', path: '/anything', want: 'internal-only' },
      { listener: 'internal', path: '/status', want: 'status' },
    ];
    for (const c of cases) {
      const res = await gw(ports[c.listener]!, c);
      const served =
        res.status === 404
          ? '404'
          : res.status === 405
            ? `405 ${res.headers.allow}`
            : res.status === 302
              ? 'old'
              : ((res.headers['x-route'] as string | undefined) ?? res.body);
      const q = new URLSearchParams({
        method: c.method ?? 'GET',
        host: c.host ?? 'www.test',
        path: c.path,
        listener: c.listener,
      });
      for (const [k, v] of Object.entries(c.headers ?? {})) q.append('header', `${k}:${v}`);
      const e = (await getValid(`${base}/explain?${q}`)).body.listeners[0];
      const explained =
        e.outcome === 'match'
          ? e.route.name
          : e.outcome === 'not_found'
            ? '404'
            : `405 ${e.localReply.allow.join(', ')}`;
      expect([served, explained], JSON.stringify(c)).toEqual([c.want, c.want]);
    }
  });
});

describe('the token', () => {
  test('every endpoint but /live and /ready needs Authorization: Bearer', async () => {
    for (const p of ['/live', '/ready']) expect((await fetch(`${secured}${p}`)).status, p).toBe(200);
    for (const p of [
      '/',
      '/status',
      '/routes',
      '/services',
      '/config',
      '/metrics',
      '/explain?path=/',
      '/openapi.json',
      '/nope',
    ]) {
      const r = await fetch(`${secured}${p}`);
      expect(r.status, p).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer realm="trellis-admin"');
      expect(((await r.json()) as Json).error).toBe('unauthorized');
    }
    const wrong = await fetch(`${secured}/status`, { headers: { authorization: `Bearer ${TOKEN}x` } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="trellis-admin", error="invalid_token"');
    const text = await wrong.text();
    expect(text).not.toContain(TOKEN);
    expect((await fetch(`${secured}/status`, { headers: { authorization: TOKEN } })).status).toBe(401);
    expect((await fetch(`${secured}/status`, { headers: { authorization: `Basic ${TOKEN}` } })).status).toBe(
      401,
    );
    for (const auth of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`]) {
      const ok = await fetch(`${secured}/status`, { headers: { authorization: auth } });
      expect(ok.status).toBe(200);
    }
    const ok = await fetch(`${secured}/explain?path=/status`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(ok.status).toBe(200);
    expect(await ok.text()).not.toContain(TOKEN);
    const cfg = await fetch(`${secured}/config`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(cfg.status).toBe(200);
  });
});

// ---------------------------------------------------------------- through the CLI, single process and cluster

const PROCESS_YAML = `
listeners:
  - name: public
    port: {{PORT}}
admin:
  port: {{ADMIN_PORT}}
  token: \${env:TRELLIS_TEST_ADMIN_TOKEN}
services:
  - name: svc
    endpoints: ["{{UPSTREAM}}"]
routes:
  - name: gated
    match: { path: { prefix: /private }, headers: [{ name: x-key, exact: "\${env:TRELLIS_TEST_ROUTE_KEY}" }] }
    backends: [{ service: svc }]
  - name: all
    backends: [{ service: svc }]
`;

describe.each([1, 2])('the admin API of `trellis gateway --workers %i`', (workers) => {
  let upstream: Upstream;
  let gp: GatewayProcess;
  const auth = { authorization: `Bearer ${TOKEN}` };
  /** A 200 from the admin API, validated against the document. */
  const admin = async (path: string, init: RequestInit = {}) => {
    const r = await getValid(`http://127.0.0.1:${gp.adminPort}${path}`, {
      ...init,
      headers: { ...auth, ...init.headers },
    });
    expect(r.status, `${path}: ${JSON.stringify(r.body)}`).toBe(200);
    return r;
  };

  beforeAll(async () => {
    upstream = await startUpstream();
    gp = await spawnGateway(PROCESS_YAML, {
      workers,
      upstream: upstream.url,
      env: { TRELLIS_TEST_ADMIN_TOKEN: TOKEN, TRELLIS_TEST_ROUTE_KEY: SECRET },
    });
    await gp.waitReady();
  });
  afterAll(async () => {
    gp?.kill('SIGTERM');
    await gp?.exited;
    await upstream?.close();
  });

  test('status, routes, services, explain, config; the token; nothing secret in replies or logs', async () => {
    expect((await fetch(`http://127.0.0.1:${gp.adminPort}/status`)).status).toBe(401);
    const status = (await admin('/status')).body;
    expect(status.mode).toBe(workers === 1 ? 'single' : 'cluster');
    expect(status.workers).toHaveLength(workers);
    expect(status.listeners).toEqual([
      { name: 'public', address: '127.0.0.1', port: gp.port, boundPort: gp.port, protocol: 'http' },
    ]);
    expect(status.config.version).toBe(1);
    expect(status.config.hash).toMatch(/^[0-9a-f]{64}$/);

    const routes = (await admin('/routes')).body;
    expect(routes.workers).toHaveLength(workers);
    expect(routes.consistent).toBe(true);
    expect(routes.listeners[0].routes.map((r: { name: string }) => r.name)).toEqual(['gated', 'all']);
    expect(routes.listeners[0].routes[0].match.headers).toEqual([{ name: 'x-key', exact: '<redacted>' }]);

    const services = (await admin('/services')).body;
    expect(services.workers).toHaveLength(workers);
    for (const w of services.workers) expect(w.services[0].endpoints[0].origin).toBe(upstream.url);

    const explain = (await admin('/explain?path=/private/x&header=x-key:nope')).body;
    expect(explain.listeners[0].route.name).toBe('all');
    const gated = explain.listeners[0].routes.find((r: { name: string }) => r.name === 'gated');
    expect(gated.reasons).toEqual(['header x-key: expected "<redacted>", got "nope"']);

    const config = (await admin('/config')).body;
    expect(config.config.admin.token).toBe('<redacted>');
    for (const p of [
      '/status',
      '/routes',
      '/services',
      '/config',
      '/explain?path=/private/x',
      '/openapi.json',
    ]) {
      const text = JSON.stringify((await admin(p)).body);
      expect(text, p).not.toContain(TOKEN);
      expect(text, p).not.toContain(SECRET);
    }
    expect(gp.stderr() + gp.stdout()).not.toContain(TOKEN);
  });

  test('/metrics, and `trellis top --once` against it', async () => {
    for (let i = 0; i < 5; i++) expect((await fetch(`${gp.url}/x`)).status).toBe(200);
    const m = await fetch(`http://127.0.0.1:${gp.adminPort}/metrics`, { headers: auth });
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await m.text()).toMatch(/http_server_request_duration_seconds_count\{[^}]*trellis_route="all"/);

    let stop = false;
    const traffic = (async () => {
      while (!stop) await (await fetch(`${gp.url}/x`)).text();
    })();
    const top = await runCli(
      ['top', '--admin', `http://127.0.0.1:${gp.adminPort}`, '--interval', '500ms', '--once'],
      { env: { TRELLIS_ADMIN_TOKEN: TOKEN } },
    );
    stop = true;
    await traffic;
    expect(top.stderr).toBe('');
    expect(top.code).toBe(0);
    const row = top.stdout.split('\n').find((l) => l.startsWith('all '));
    expect(row, top.stdout).toBeDefined();
    const [, rps, success] = row!.trim().split(/\s+/);
    expect(Number(rps)).toBeGreaterThan(0);
    expect(success).toBe('100.00%');
    expect(top.stdout).toMatch(/^svc\s+\d/m);
  });
});
