import { channel } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { compileSnapshot, type Snapshot } from '../compile/snapshot.js';
import { configSchema, metricsSchema } from '../config/schema.js';
import type { ErrorCode } from '../core/errors.js';
import type { Outcome } from '../core/outcome.js';
import type { Exchange } from '../proxy/exchange.js';
import type { CircuitEvent, HealthEvent, OutlierEvent } from '../upstream/events.js';
import { UpstreamRegistry } from '../upstream/registry.js';
import {
  aggregateWorkerMetrics,
  describeMetrics,
  GatewayMetrics,
  METRICS_CONTENT_TYPE,
  type MetricsHost,
} from './metrics.js';

// Real prom-client registries, read back through their text exposition.

const upstreams = new UpstreamRegistry();
let snapshot: Snapshot;
const host: MetricsHost = { snapshot: () => snapshot };
const created: GatewayMetrics[] = [];

beforeAll(() => {
  const config = configSchema.parse({
    listeners: [{ name: 'public', port: 0 }],
    services: [
      {
        name: 'users',
        endpoints: ['http://127.0.0.1:3001', 'http://127.0.0.1:3002'],
        circuitBreaker: { errorRate: {} },
      },
      { name: 'orders', endpoints: ['http://127.0.0.1:3011'] },
    ],
    routes: [
      { name: 'api-users', match: { path: { prefix: '/users' } }, backends: [{ service: 'users' }] },
      { name: 'api-orders', match: { path: { prefix: '/orders' } }, backends: [{ service: 'orders' }] },
    ],
  });
  snapshot = compileSnapshot(config, 7, upstreams);
});

afterAll(async () => {
  for (const m of created) m.close();
  await upstreams.closeAll();
});

function metrics(cfg: Record<string, unknown> = { process: false }): GatewayMetrics {
  const m = new GatewayMetrics(metricsSchema.parse(cfg), host);
  created.push(m);
  return m;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a text exposition. */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[3]) });
  }
  return out;
}

/** Samples of `name` whose labels include `labels`. */
function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

/** The value of the one sample of `name` with `labels`. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = find(samples, name, labels);
  if (found.length !== 1)
    throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}: ${JSON.stringify(found)}`);
  return found[0]!.value;
}

async function scrape(m: GatewayMetrics): Promise<Sample[]> {
  return parse(await m.registry.metrics());
}

interface FakeExchange {
  method?: string;
  listener?: string;
  route?: string;
  service?: string;
  status?: number;
  headersSent?: boolean;
  errorCode?: ErrorCode;
  outcome?: Outcome;
  bytesIn?: number;
  bytesOut?: number;
  retryBudgetExhausted?: boolean;
  attempts?: number;
}

/** Only the fields requestEnd reads, plus a client-chosen path and host that must never become labels. */
function exchange(f: FakeExchange): Exchange {
  const status = f.status ?? 200;
  const headersSent = f.headersSent ?? status !== 0;
  return {
    method: f.method ?? 'GET',
    host: 'client-chosen.example',
    path: '/users/12345/secret-path',
    listener: { name: f.listener ?? 'public' },
    route: f.route === undefined ? undefined : { name: f.route },
    service: f.service === undefined ? undefined : { name: f.service },
    status,
    res: { headersSent, statusCode: headersSent ? status : 200 },
    errorCode: f.errorCode,
    outcome: f.outcome ?? 'success',
    bytesIn: f.bytesIn ?? 0,
    bytesOut: f.bytesOut ?? 0,
    retryBudgetExhausted: f.retryBudgetExhausted ?? false,
    attempts: f.attempts ?? 1,
  } as unknown as Exchange;
}

const DURATION = 'http_server_request_duration_seconds';

test('requestEnd: one histogram series per method, status class, listener, route, service and error', async () => {
  const m = metrics();
  m.requestEnd(exchange({ route: 'api-users', service: 'users', bytesIn: 10, bytesOut: 1000 }), 3);
  m.requestEnd(exchange({ route: 'api-users', service: 'users', bytesIn: 5, bytesOut: 500 }), 40);
  m.requestEnd(exchange({ route: 'api-users', service: 'users', status: 503 }), 2000);
  m.requestEnd(exchange({ status: 404, errorCode: 'route_not_found' }), 0.2);
  const s = await scrape(m);
  const ok = {
    http_request_method: 'GET',
    http_response_status_class: '2xx',
    trellis_listener: 'public',
    trellis_route: 'api-users',
    trellis_service: 'users',
    error_type: 'none',
  };
  expect(value(s, `${DURATION}_count`, ok)).toBe(2);
  expect(value(s, `${DURATION}_sum`, ok)).toBeCloseTo(0.043, 9);
  // Cumulative buckets: 3 ms in le=0.005, 40 ms in le=0.05.
  expect(value(s, `${DURATION}_bucket`, { ...ok, le: '0.005' })).toBe(1);
  expect(value(s, `${DURATION}_bucket`, { ...ok, le: '0.025' })).toBe(1);
  expect(value(s, `${DURATION}_bucket`, { ...ok, le: '0.05' })).toBe(2);
  expect(value(s, `${DURATION}_bucket`, { ...ok, le: '10' })).toBe(2);
  expect(value(s, `${DURATION}_bucket`, { ...ok, le: '+Inf' })).toBe(2);
  expect(value(s, `${DURATION}_count`, { ...ok, http_response_status_class: '5xx' })).toBe(1);
  expect(value(s, `${DURATION}_bucket`, { ...ok, http_response_status_class: '5xx', le: '2.5' })).toBe(1);
  expect(value(s, `${DURATION}_bucket`, { ...ok, http_response_status_class: '5xx', le: '1' })).toBe(0);
  expect(
    value(s, `${DURATION}_count`, {
      http_response_status_class: '4xx',
      trellis_route: 'none',
      trellis_service: 'none',
      error_type: 'route_not_found',
    }),
  ).toBe(1);
  expect(value(s, 'trellis_request_body_bytes_total', { trellis_route: 'api-users' })).toBe(15);
  expect(value(s, 'trellis_response_body_bytes_total', { trellis_route: 'api-users' })).toBe(1500);
  expect(value(s, 'trellis_response_body_bytes_total', { trellis_route: 'none' })).toBe(0);
});

test('methods outside the known set are _OTHER; a client that left before a status is class none', async () => {
  const m = metrics();
  for (const method of ['PROPFIND', 'MKCOL', 'get', 'BREW']) m.requestEnd(exchange({ method }), 1);
  m.requestEnd(exchange({ method: 'PATCH' }), 1);
  m.requestEnd(exchange({ route: 'api-users', service: 'users', status: 0, outcome: 'client_abort' }), 5);
  const s = await scrape(m);
  expect(value(s, `${DURATION}_count`, { http_request_method: '_OTHER' })).toBe(4);
  expect(value(s, `${DURATION}_count`, { http_request_method: 'PATCH' })).toBe(1);
  expect(
    value(s, `${DURATION}_count`, { http_response_status_class: 'none', trellis_route: 'api-users' }),
  ).toBe(1);
  const methods = new Set(find(s, `${DURATION}_count`).map((x) => x.labels.http_request_method));
  expect([...methods].sort()).toEqual(['GET', 'PATCH', '_OTHER']);
});

test('label values never hold a path, a host or other client values', async () => {
  const m = metrics();
  m.requestEnd(exchange({ route: 'api-users', service: 'users', bytesIn: 1 }), 1);
  m.requestEnd(exchange({ method: '/etc/passwd', status: 400, errorCode: 'bad_request' }), 1);
  m.attemptEnd('users', '127.0.0.1:3001', 'success', 200, 1, false);
  for (const sample of await scrape(m)) {
    for (const v of Object.values(sample.labels)) {
      expect(v).not.toContain('/');
      expect(v).not.toContain('client-chosen');
      expect(v).not.toContain('secret');
    }
  }
});

test('attemptEnd: upstream attempt durations by endpoint, outcome and status class; retries counted', async () => {
  const m = metrics();
  m.attemptEnd('users', '127.0.0.1:3001', 'connect_refused', 0, 0.4, false);
  m.attemptEnd('users', '127.0.0.1:3002', 'success', 200, 12, true);
  m.attemptEnd('users', '127.0.0.1:3002', 'http_5xx', 503, 8, false);
  m.attemptEnd('users', '127.0.0.1:3002', 'http_5xx', 502, 9, true);
  const s = await scrape(m);
  const client = 'http_client_request_duration_seconds';
  expect(
    value(s, `${client}_count`, {
      trellis_service: 'users',
      server_address: '127.0.0.1:3001',
      trellis_outcome: 'connect_refused',
      http_response_status_class: 'none',
    }),
  ).toBe(1);
  expect(
    value(s, `${client}_count`, {
      server_address: '127.0.0.1:3002',
      trellis_outcome: 'http_5xx',
      http_response_status_class: '5xx',
    }),
  ).toBe(2);
  expect(
    value(s, `${client}_sum`, { server_address: '127.0.0.1:3002', trellis_outcome: 'success' }),
  ).toBeCloseTo(0.012, 9);
  expect(value(s, 'trellis_upstream_retries_total', { trellis_service: 'users' })).toBe(2);
});

test('requestEnd: timeouts by kind, from the error code, and an exhausted retry budget', async () => {
  const m = metrics();
  const failed = (errorCode: ErrorCode, extra: FakeExchange = {}) =>
    m.requestEnd(exchange({ route: 'api-users', service: 'users', status: 504, errorCode, ...extra }), 1);
  failed('upstream_connect_timeout');
  failed('upstream_per_try_timeout', { retryBudgetExhausted: true });
  failed('upstream_timeout');
  failed('upstream_timeout');
  failed('upstream_idle_timeout', { status: 200 });
  failed('upstream_connect_refused', { status: 502, retryBudgetExhausted: true });
  const s = await scrape(m);
  const t = (kind: string) => value(s, 'trellis_upstream_timeouts_total', { trellis_service: 'users', kind });
  expect([t('connect'), t('per_try'), t('route'), t('idle')]).toEqual([1, 1, 2, 1]);
  expect(value(s, 'trellis_retry_budget_exhausted_total', { trellis_service: 'users' })).toBe(2);
  expect(value(s, 'trellis_upstream_retries_total', { trellis_service: 'users' })).toBe(0);
  expect(
    value(s, `${DURATION}_count`, { error_type: 'upstream_idle_timeout', http_response_status_class: '2xx' }),
  ).toBe(1);
});

test('diagnostics channel events: ejections, breaker and health check transitions; none after close()', async () => {
  const m = metrics();
  const outlier = channel('trellis:outlier');
  const circuit = channel('trellis:circuit');
  const health = channel('trellis:health');
  outlier.publish({
    service: 'users',
    endpoint: 'http://127.0.0.1:3001',
    event: 'eject',
    reason: 'consecutive_5xx',
    ejectionMs: 30_000,
  } satisfies OutlierEvent);
  outlier.publish({
    service: 'users',
    endpoint: 'http://127.0.0.1:3001',
    event: 'uneject',
  } satisfies OutlierEvent);
  circuit.publish({
    service: 'users',
    from: 'closed',
    to: 'open',
    reason: 'failure_ratio',
  } satisfies CircuitEvent);
  circuit.publish({
    service: 'users',
    from: 'open',
    to: 'half_open',
    reason: 'open_elapsed',
  } satisfies CircuitEvent);
  health.publish({
    service: 'orders',
    endpoint: 'http://127.0.0.1:3011',
    healthy: false,
    lastError: 'status 500',
  } satisfies HealthEvent);
  let s = await scrape(m);
  expect(
    value(s, 'trellis_outlier_ejections_total', {
      trellis_service: 'users',
      server_address: '127.0.0.1:3001',
      reason: 'consecutive_5xx',
    }),
  ).toBe(1);
  expect(find(s, 'trellis_outlier_ejections_total')).toHaveLength(1);
  expect(value(s, 'trellis_circuit_transitions_total', { trellis_service: 'users', to: 'open' })).toBe(1);
  expect(value(s, 'trellis_circuit_transitions_total', { trellis_service: 'users', to: 'half_open' })).toBe(
    1,
  );
  expect(
    value(s, 'trellis_health_check_transitions_total', {
      trellis_service: 'orders',
      server_address: '127.0.0.1:3011',
      healthy: 'false',
    }),
  ).toBe(1);

  m.close();
  circuit.publish({
    service: 'users',
    from: 'half_open',
    to: 'open',
    reason: 'probe_failed',
  } satisfies CircuitEvent);
  s = await scrape(m);
  expect(value(s, 'trellis_circuit_transitions_total', { trellis_service: 'users', to: 'open' })).toBe(1);
});

test('collect-time gauges read the live snapshot: health, ejection, breaker, admission, budget', async () => {
  const m = metrics();
  const users = snapshot.services.get('users')!;
  const [a, b] = users.endpoints;
  a!.setHealthy(false);
  b!.setEjectedUntil(performance.now() + 60_000);
  users.admission.tryRequest();
  users.admission.tryRequest();
  users.admission.tryPending();
  try {
    const s = await scrape(m);
    const ep = (addr: string) => ({ trellis_service: 'users', server_address: addr });
    expect(value(s, 'trellis_endpoint_healthy', ep('127.0.0.1:3001'))).toBe(0);
    expect(value(s, 'trellis_endpoint_healthy', ep('127.0.0.1:3002'))).toBe(1);
    expect(value(s, 'trellis_endpoint_ejected', ep('127.0.0.1:3001'))).toBe(0);
    expect(value(s, 'trellis_endpoint_ejected', ep('127.0.0.1:3002'))).toBe(1);
    expect(value(s, 'trellis_endpoint_healthy', { trellis_service: 'orders' })).toBe(1);
    // Only `users` has an error-rate breaker.
    expect(value(s, 'trellis_circuit_state', { trellis_service: 'users', state: 'closed' })).toBe(1);
    expect(value(s, 'trellis_circuit_state', { trellis_service: 'users', state: 'open' })).toBe(0);
    expect(value(s, 'trellis_circuit_state', { trellis_service: 'users', state: 'half_open' })).toBe(0);
    expect(find(s, 'trellis_circuit_state', { trellis_service: 'orders' })).toHaveLength(0);
    expect(value(s, 'trellis_service_active_requests', { trellis_service: 'users' })).toBe(2);
    expect(value(s, 'trellis_service_pending_requests', { trellis_service: 'users' })).toBe(1);
    expect(value(s, 'trellis_service_active_requests', { trellis_service: 'orders' })).toBe(0);
    // Both endpoints are out: panic, and the balancer spreads over both.
    expect(value(s, 'trellis_service_panic', { trellis_service: 'users' })).toBe(1);
    expect(value(s, 'trellis_service_panic', { trellis_service: 'orders' })).toBe(0);
    expect(value(s, 'trellis_service_eligible_endpoints', { trellis_service: 'users' })).toBe(2);
    expect(value(s, 'trellis_service_eligible_endpoints', { trellis_service: 'orders' })).toBe(1);
    expect(value(s, 'trellis_retry_budget_balance', { trellis_service: 'users' })).toBeGreaterThan(0);
  } finally {
    a!.setHealthy(true);
    b!.setEjectedUntil(0);
    users.admission.endRequest();
    users.admission.endRequest();
    users.admission.endPending();
  }
  // Without a snapshot (before the first config), no upstream gauges at all.
  const bare = new GatewayMetrics(metricsSchema.parse({ process: false }), { snapshot: () => undefined });
  created.push(bare);
  const s = await scrape(bare);
  expect(find(s, 'trellis_endpoint_healthy')).toHaveLength(0);
  expect(find(s, 'trellis_service_active_requests')).toHaveLength(0);
});

test('active requests and connections, config version and reloads', async () => {
  const m = metrics();
  m.requestStarted('http1');
  m.requestStarted('http1');
  m.requestFinished('http1');
  m.connectionOpened('public', 'http1');
  m.connectionOpened('public', 'http1');
  m.connectionOpened('admin', 'http1');
  m.connectionClosed('public', 'http1');
  let s = await scrape(m);
  expect(value(s, 'trellis_config_reloads_total', { result: 'success' })).toBe(0);
  expect(value(s, 'trellis_config_reloads_total', { result: 'failure' })).toBe(0);
  m.configApplied(1, true);
  m.configApplied(2, true);
  m.configApplied(3, false);
  s = await scrape(m);
  expect(value(s, 'http_server_active_requests', { protocol: 'http1' })).toBe(1);
  expect(value(s, 'trellis_active_connections', { trellis_listener: 'public', protocol: 'http1' })).toBe(1);
  expect(value(s, 'trellis_active_connections', { trellis_listener: 'admin', protocol: 'http1' })).toBe(1);
  expect(value(s, 'trellis_config_version')).toBe(2);
  expect(value(s, 'trellis_config_reloads_total', { result: 'success' })).toBe(2);
  expect(value(s, 'trellis_config_reloads_total', { result: 'failure' })).toBe(1);
  expect(value(s, 'trellis_workers')).toBe(1);
});

test('counters keep counting across scrapes (deltas are synced once)', async () => {
  const m = metrics();
  m.requestEnd(exchange({ route: 'api-orders', service: 'orders', bytesOut: 100 }), 1);
  await scrape(m);
  m.requestEnd(exchange({ route: 'api-orders', service: 'orders', bytesOut: 50 }), 1);
  const s = await scrape(m);
  await scrape(m);
  expect(value(s, 'trellis_response_body_bytes_total', { trellis_route: 'api-orders' })).toBe(150);
  expect(value(await scrape(m), `${DURATION}_count`, { trellis_route: 'api-orders' })).toBe(2);
});

test('process metrics with metrics.process; the configured buckets', async () => {
  const m = metrics({ process: true, durationBuckets: [1, 0.1] });
  m.requestEnd(exchange({}), 50);
  const s = await scrape(m);
  expect(find(s, 'process_cpu_seconds_total')).toHaveLength(1);
  expect(find(s, 'nodejs_eventloop_lag_seconds')).toHaveLength(1);
  expect(find(s, `${DURATION}_bucket`).map((x) => x.labels.le)).toEqual(['0.1', '1', '+Inf']);
  expect(find(await scrape(metrics()), 'process_cpu_seconds_total')).toHaveLength(0);
});

test('GC durations only with metrics.gc, and the observer stops with the last gateway that asked', async () => {
  const churn = async () => {
    // Enough short-lived garbage for several young-generation collections, then a turn of the event loop for
    // the observer's callback.
    for (let round = 0; round < 3; round++) {
      const kept: object[] = [];
      for (let i = 0; i < 200_000; i++) kept.push({ i, s: `x${i}` });
      expect(kept).toHaveLength(200_000);
    }
    await new Promise((r) => setTimeout(r, 20));
  };
  const plain = metrics({ process: true });
  await churn();
  expect(find(await scrape(plain), 'nodejs_gc_duration_seconds_count')).toHaveLength(0);

  const m = metrics({ process: true, gc: true });
  const counted = async () =>
    find(await scrape(m), 'nodejs_gc_duration_seconds_count').reduce((sum, x) => sum + x.value, 0);
  // When a collection happens, and when the observer hears of it, depends on V8's heap sizing (Node 24's young
  // generation can take a round of garbage without one): churn until one is counted, boundedly.
  for (let i = 0; i < 20 && (await counted()) === 0; i++) await churn();
  const before = await counted();
  expect(before).toBeGreaterThan(0);
  m.close();
  await churn();
  expect(await counted()).toBe(before);
});

test('aggregateWorkerMetrics sums counters, histograms and gauges, takes the highest config version', async () => {
  const w1 = metrics({ process: true });
  const w2 = metrics({ process: true });
  for (const [w, version] of [
    [w1, 4],
    [w2, 5],
  ] as const) {
    w.configApplied(version, true);
    w.requestStarted('http1');
    w.requestEnd(exchange({ route: 'api-users', service: 'users', bytesOut: 10 }), 3);
    w.attemptEnd('users', '127.0.0.1:3001', 'success', 200, 2, false);
  }
  w2.requestEnd(exchange({ route: 'api-users', service: 'users', bytesOut: 5 }), 300);
  w2.configApplied(6, false);
  const j1 = await w1.registry.getMetricsAsJSON();
  // Through JSON, as it crosses the IPC channel.
  const j2 = JSON.parse(JSON.stringify(await w2.registry.getMetricsAsJSON())) as typeof j1;
  // A worker restarted later than the other.
  j1.find((x) => x.name === 'process_start_time_seconds')!.values[0]!.value += 60;
  const text = await aggregateWorkerMetrics([j1, j2]);
  const s = parse(text);
  const ok = { trellis_route: 'api-users', http_response_status_class: '2xx' };
  expect(value(s, `${DURATION}_count`, ok)).toBe(3);
  expect(value(s, `${DURATION}_bucket`, { ...ok, le: '0.005' })).toBe(2);
  expect(value(s, `${DURATION}_bucket`, { ...ok, le: '0.5' })).toBe(3);
  expect(value(s, `${DURATION}_sum`, ok)).toBeCloseTo(0.306, 9);
  expect(value(s, 'http_client_request_duration_seconds_count', { server_address: '127.0.0.1:3001' })).toBe(
    2,
  );
  expect(value(s, 'trellis_response_body_bytes_total', { trellis_route: 'api-users' })).toBe(25);
  expect(value(s, 'http_server_active_requests', { protocol: 'http1' })).toBe(2);
  expect(value(s, 'trellis_config_version')).toBe(5);
  expect(value(s, 'trellis_config_reloads_total', { result: 'success' })).toBe(2);
  expect(value(s, 'trellis_config_reloads_total', { result: 'failure' })).toBe(1);
  expect(value(s, 'trellis_workers')).toBe(2);
  // Both workers see the same snapshot here: state gauges count the workers.
  expect(value(s, 'trellis_endpoint_healthy', { server_address: '127.0.0.1:3001' })).toBe(2);
  // Process metrics: summed, except the start time (the earliest).
  const of = (j: typeof j1, name: string) => j.find((x) => x.name === name)!.values[0]!.value;
  const rss = 'process_resident_memory_bytes';
  expect(value(s, rss)).toBe(of(j1, rss) + of(j2, rss));
  const start = 'process_start_time_seconds';
  expect(value(s, start)).toBe(Math.min(of(j1, start), of(j2, start)));
  expect(text).toContain('# TYPE http_server_request_duration_seconds histogram');
});

test('exposition content type, and the described metric set', () => {
  expect(METRICS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8');
  const described = describeMetrics();
  const byName = new Map(described.map((d) => [d.name, d]));
  expect(byName.get(DURATION)).toMatchObject({
    type: 'histogram',
    labels: [
      'http_request_method',
      'http_response_status_class',
      'trellis_listener',
      'trellis_route',
      'trellis_service',
      'error_type',
    ],
  });
  for (const name of [
    'http_server_active_requests',
    'trellis_active_connections',
    'trellis_request_body_bytes_total',
    'trellis_response_body_bytes_total',
    'http_client_request_duration_seconds',
    'trellis_upstream_retries_total',
    'trellis_upstream_timeouts_total',
    'trellis_retry_budget_exhausted_total',
    'trellis_outlier_ejections_total',
    'trellis_circuit_transitions_total',
    'trellis_health_check_transitions_total',
    'trellis_endpoint_healthy',
    'trellis_endpoint_ejected',
    'trellis_circuit_state',
    'trellis_service_active_requests',
    'trellis_service_pending_requests',
    'trellis_service_eligible_endpoints',
    'trellis_service_panic',
    'trellis_retry_budget_balance',
    'trellis_config_version',
    'trellis_config_reloads_total',
    'process_cpu_seconds_total',
  ])
    expect(byName.has(name), name).toBe(true);
});
