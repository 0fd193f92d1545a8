import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import {
  computeRows,
  DURATION_METRIC,
  formatLatency,
  histogramQuantile,
  histograms,
  parseExposition,
  parseInterval,
  ROUTE_LABEL,
  renderTable,
  SERVICE_LABEL,
} from '../src/cli/top.js';
import { freePort, runCli } from './process.js';

// `trellis top`: the exposition parser, the histogram math (against hand-computed values and Prometheus's
// histogram_quantile rules), and the command end to end against a server that serves two crafted scrapes.

const M = DURATION_METRIC;
const BOUNDS = ['0.005', '0.01', '0.025', '0.05', '0.1', '+Inf'];

/** One histogram series in exposition text: cumulative counts per bound in BOUNDS order. */
function series(labels: Record<string, string>, cumulative: number[], sum = 0): string {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  const lines = BOUNDS.map((le, i) => `${M}_bucket{${l},le="${le}"} ${cumulative[i]}`);
  lines.push(`${M}_sum{${l}} ${sum}`, `${M}_count{${l}} ${cumulative.at(-1)}`);
  return lines.join('\n');
}

const HEAD = `# HELP ${M} Duration of HTTP server requests.\n# TYPE ${M} histogram`;
const ok = (route: string, service: string) => ({
  [ROUTE_LABEL]: route,
  [SERVICE_LABEL]: service,
  http_request_method: 'GET',
  http_response_status_class: '2xx',
  error_type: 'none',
});
const failed = (route: string, service: string, cls: string, error: string) => ({
  ...ok(route, service),
  http_response_status_class: cls,
  error_type: error,
});

const SCRAPE_1 = [
  HEAD,
  series(ok('users', 'users'), [10, 20, 30, 40, 40, 40]),
  series(ok('orders', 'orders'), [0, 0, 5, 5, 5, 5]),
  series(failed('orders', 'orders', '5xx', 'upstream_5xx'), [0, 0, 0, 1, 2, 2]),
  '# an unrelated metric',
  'process_cpu_seconds_total 12.5',
].join('\n');

const SCRAPE_2 = [
  HEAD,
  // users: +100 ok: 50 in (0.005, 0.01], 40 in (0.01, 0.025], 10 in (0.05, 0.1].
  series(ok('users', 'users'), [10, 70, 120, 130, 140, 140]),
  // users: a new series, 4 × 503 from a breaker (a Trellis error without an upstream status).
  series(failed('users', 'users', '5xx', 'circuit_open'), [4, 4, 4, 4, 4, 4]),
  // users: 1 × 404 from Trellis (no 5xx but a Trellis error) counts as a failure.
  series(failed('users', 'users', '4xx', 'route_not_found'), [1, 1, 1, 1, 1, 1]),
  // orders: +10 ok, all in (0.01, 0.025]; +10 failed, all in +Inf.
  series(ok('orders', 'orders'), [0, 0, 15, 15, 15, 15]),
  series(failed('orders', 'orders', '5xx', 'upstream_5xx'), [0, 0, 0, 1, 2, 12]),
  // No route: a local 404, no service.
  series(failed('none', 'none', '4xx', 'route_not_found'), [3, 3, 3, 3, 3, 3]),
  // An empty error_type is no error either.
  series({ ...ok('status', ''), error_type: '' }, [1, 1, 1, 1, 1, 1]),
  'process_cpu_seconds_total 13',
].join('\n');

describe('the exposition parser', () => {
  test('samples, labels with escapes, special values, timestamps, comments', () => {
    const text = [
      '# HELP a_total A counter',
      '# TYPE a_total counter',
      'a_total 3',
      'b{x="1",y="two words"} 4.5 1700000000000',
      'c{ path="a\\\\b\\"c\\nd" , } -Inf',
      'd{le="+Inf"} +Inf',
      'e NaN',
      'f{x="1"} not-a-number',
      '',
      'g:recorded{x=""} 1e3',
    ].join('\n');
    const s = parseExposition(text);
    expect(s.map((x) => x.name)).toEqual(['a_total', 'b', 'c', 'd', 'e', 'g:recorded']);
    expect(s[1]).toEqual({ name: 'b', labels: { x: '1', y: 'two words' }, value: 4.5 });
    expect(s[2]!.labels.path).toBe('a\\b"c\nd');
    expect(s[2]!.value).toBe(Number.NEGATIVE_INFINITY);
    expect(s[3]!.value).toBe(Number.POSITIVE_INFINITY);
    expect(s[4]!.value).toBeNaN();
    expect(s[5]).toEqual({ name: 'g:recorded', labels: { x: '' }, value: 1000 });
  });

  test('histograms group series by labels other than le', () => {
    const h = histograms(parseExposition(SCRAPE_2), M);
    expect(h.size).toBe(7);
    const users = [...h.values()].find(
      (x) => x.labels[ROUTE_LABEL] === 'users' && x.labels.error_type === 'none',
    )!;
    expect(users.count).toBe(140);
    expect(users.buckets.get(0.01)).toBe(70);
    expect(users.buckets.get(Number.POSITIVE_INFINITY)).toBe(140);
    expect(users.labels.le).toBeUndefined();
  });
});

describe('histogram_quantile', () => {
  const b = (pairs: [number, number][]) => new Map(pairs);
  test('interpolates linearly within the bucket the rank falls in', () => {
    const h = b([
      [0.1, 10],
      [0.2, 20],
      [Number.POSITIVE_INFINITY, 20],
    ]);
    expect(histogramQuantile(0.5, h)).toBeCloseTo(0.1);
    expect(histogramQuantile(0.25, h)).toBeCloseTo(0.05); // from 0 in the first bucket
    expect(histogramQuantile(0.99, h)).toBeCloseTo(0.198);
    expect(histogramQuantile(0.75, h)).toBeCloseTo(0.15);
  });
  test('a rank in +Inf gives the highest finite bound; no observations give null', () => {
    expect(
      histogramQuantile(
        0.99,
        b([
          [0.1, 1],
          [0.5, 1],
          [Number.POSITIVE_INFINITY, 100],
        ]),
      ),
    ).toBe(0.5);
    expect(
      histogramQuantile(
        0.5,
        b([
          [0.1, 0],
          [Number.POSITIVE_INFINITY, 0],
        ]),
      ),
    ).toBeNull();
    expect(histogramQuantile(0.5, b([]))).toBeNull();
  });
  test('empty buckets before the rank are skipped; counts are made monotonic', () => {
    const h = b([
      [0.005, 0],
      [0.01, 0],
      [0.025, 10],
      [0.05, 9], // a torn scrape: treated as 10
      [Number.POSITIVE_INFINITY, 10],
    ]);
    expect(histogramQuantile(0.5, h)).toBeCloseTo(0.01 + 0.015 * 0.5);
    expect(histogramQuantile(1, h)).toBeCloseTo(0.025);
  });
});

describe('rows per route and per service', () => {
  const a = parseExposition(SCRAPE_1);
  const c = parseExposition(SCRAPE_2);

  test('rate, success and latency from the differences between two scrapes', () => {
    const rows = computeRows(a, c, 2, ROUTE_LABEL);
    expect(rows.map((r) => r.name)).toEqual(['users', 'orders', 'none', 'status']);
    const [users, orders, none, status] = rows;
    // users: 100 ok + 4 circuit_open + 1 route_not_found in 2 s.
    expect(users!.requests).toBe(105);
    expect(users!.rps).toBeCloseTo(52.5);
    expect(users!.success).toBeCloseTo(100 / 105);
    // Cumulative over all users series: 0.005:5, 0.01:55, 0.025:95, 0.05:95, 0.1:105.
    // p50: rank 52.5 in (0.005, 0.01]: 0.005 + 0.005 × (52.5 − 5) / 50.
    expect(users!.p50).toBeCloseTo(0.005 + 0.005 * (47.5 / 50));
    // p99: rank 103.95 in (0.05, 0.1]: 0.05 + 0.05 × (103.95 − 95) / 10.
    expect(users!.p99).toBeCloseTo(0.05 + 0.05 * (8.95 / 10));
    // orders: 10 ok in (0.01, 0.025], 10 failed in +Inf.
    expect(orders!.requests).toBe(20);
    expect(orders!.success).toBeCloseTo(0.5);
    expect(orders!.p50).toBeCloseTo(0.025);
    expect(orders!.p99).toBe(0.1); // in +Inf: the highest finite bound
    expect(none!.requests).toBe(3);
    expect(none!.success).toBe(0);
    expect(status).toMatchObject({ requests: 1, success: 1 });
  });

  test('per service; a series that went down was reset and counts from zero', () => {
    const services = computeRows(a, c, 1, SERVICE_LABEL);
    expect(services.find((r) => r.name === 'orders')!.requests).toBe(20);
    const reset = parseExposition(series(ok('users', 'users'), [0, 2, 2, 2, 2, 2]));
    const rows = computeRows(a, reset, 1, ROUTE_LABEL);
    expect(rows.find((r) => r.name === 'users')).toMatchObject({ requests: 2, rps: 2, success: 1 });
    // An idle route keeps its row, without latency.
    const idle = computeRows(c, c, 1, ROUTE_LABEL).find((r) => r.name === 'users')!;
    expect(idle).toMatchObject({ requests: 0, rps: 0, success: null, p50: null, p99: null });
  });

  test('the table', () => {
    const rows = computeRows(a, c, 2, ROUTE_LABEL);
    const t = renderTable('ROUTE', rows).split('\n');
    expect(t[0]).toMatch(/^ROUTE\s+RPS\s+SUCCESS\s+P50\s+P99$/);
    expect(t[1]).toMatch(/^users\s+52\.5\s+95\.24%\s+9\.75ms\s+94\.8ms$/);
    expect(t[2]).toMatch(/^orders\s+10\.0\s+50\.00%\s+25\.0ms\s+100\.0ms$/);
    expect(t[3]).toMatch(/^none\s+1\.5\s+0\.00%/);
    expect(renderTable('ROUTE', rows, 1).split('\n').at(-1)).toBe('… 3 more');
    expect(renderTable('ROUTE', [{ ...rows[0]!, name: '' }])).toContain('(none)');
    expect(renderTable('SERVICE', [])).toContain('(no requests yet)');
    expect(formatLatency(2.5)).toBe('2.50s');
    expect(formatLatency(0.0042)).toBe('4.20ms');
  });

  test('--interval values', () => {
    expect(parseInterval('1s')).toBe(1000);
    expect(parseInterval('250ms')).toBe(250);
    expect(parseInterval('2')).toBe(2000);
    expect(parseInterval('1.5s')).toBe(1500);
    expect(parseInterval('1m')).toBe(60_000);
    expect(parseInterval('50ms')).toBeUndefined();
    expect(parseInterval('soon')).toBeUndefined();
  });
});

describe('trellis top (the command)', () => {
  let server: Server | undefined;
  afterEach(() => {
    server?.close();
    server?.closeAllConnections();
    server = undefined;
  });

  /** Serves SCRAPE_1, then SCRAPE_2 from then on, on /metrics; with a token, only to that bearer. */
  async function admin(opts: { token?: string; status?: number; body?: string } = {}): Promise<string> {
    let n = 0;
    server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized"}');
        return;
      }
      if (opts.status) {
        res.writeHead(opts.status, { 'content-type': 'application/json' }).end(opts.body ?? '');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(n++ === 0 ? SCRAPE_1 : SCRAPE_2);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  test('--once prints one table after two scrapes', async () => {
    const url = await admin({ token: 'tok-123' });
    const r = await runCli(['top', '--admin', url, '--interval', '200ms', '--once'], {
      env: { TRELLIS_ADMIN_TOKEN: 'tok-123' },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('\x1b[');
    const lines = r.stdout.split('\n');
    const route = lines.indexOf(lines.find((l) => l.startsWith('ROUTE'))!);
    const service = lines.indexOf(lines.find((l) => l.startsWith('SERVICE'))!);
    expect(route).toBe(0);
    expect(service).toBeGreaterThan(route);
    const cells = (name: string, from: number) =>
      lines
        .slice(from)
        .find((l) => l.startsWith(`${name} `))!
        .trim()
        .split(/\s+/);
    const users = cells('users', route);
    // 105 requests in a bit more than 0.2 s.
    expect(Number(users[1])).toBeGreaterThan(50);
    expect(Number(users[1])).toBeLessThanOrEqual(525);
    expect(users.slice(2)).toEqual(['95.24%', '9.75ms', '94.8ms']);
    expect(cells('orders', route).slice(2)).toEqual(['50.00%', '25.0ms', '100.0ms']);
    expect(cells('none', route)[2]).toBe('0.00%');
    // Busiest first, in both tables; requests without a service have no service row.
    expect(lines.slice(service + 1, service + 3).map((l) => l.split(/\s+/)[0])).toEqual(['users', 'orders']);
    expect(lines.slice(service).some((l) => l.startsWith('none') || l.startsWith('(none)'))).toBe(false);
  });

  test('errors: a missing token, metrics off, nobody listening; bad options', async () => {
    let url = await admin({ token: 'tok-123' });
    let r = await runCli(['top', '--admin', url, '--once', '--interval', '100ms'], {
      env: { TRELLIS_ADMIN_TOKEN: '' },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/needs a token.*--token or set TRELLIS_ADMIN_TOKEN/);
    r = await runCli(['top', '--admin', url, '--once', '--token', 'wrong-one', '--interval', '100ms']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rejected the token/);
    expect(r.stderr).not.toContain('wrong-one');
    server!.close();
    url = await admin({ status: 404, body: '{"error":"metrics_disabled","detail":"off"}' });
    r = await runCli(['top', '--admin', url.replace('http://', ''), '--once', '--interval', '100ms']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/metrics are off/);
    const closed = await freePort();
    r = await runCli(['top', '--admin', `http://127.0.0.1:${closed}`, '--once', '--interval', '100ms']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot reach http://127.0.0.1:${closed}/metrics: ECONNREFUSED`);
    r = await runCli(['top', '--interval', 'soon']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--interval/);
    r = await runCli(['top', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: trellis top/);
  });
});
