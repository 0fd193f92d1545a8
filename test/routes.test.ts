import { Pool, request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type Echoed,
  type Problem,
  simpleConfig,
  startGateway,
  startUpstream,
  type TestGateway,
  type Upstream,
} from './helpers.js';

describe('route filters, end to end', () => {
  let up: Upstream;
  let other: Upstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream();
    other = await startUpstream((req, res) => res.end(`other ${req.url}`));
    gw = await startGateway({
      ...simpleConfig(up.url, [
        {
          name: 'api',
          match: { path: { prefix: '/api' } },
          backends: [{ service: 'svc' }],
          rewrite: { path: { prefix: '/' } },
          requestHeaders: { set: { 'x-team': 'core' }, add: { 'x-added': 'yes' }, remove: ['x-drop'] },
          responseHeaders: { set: { 'x-served-by': 'trellis' }, remove: ['x-powered-by'] },
        },
        {
          name: 'full',
          match: { path: { exact: '/full' } },
          backends: [{ service: 'svc' }],
          rewrite: { path: { full: '/replaced' }, host: 'internal.svc' },
          preserveHost: false,
        },
        {
          name: 'regex',
          match: { path: { regex: '/v([0-9]+)/items/(.*)' } },
          backends: [{ service: 'svc' }],
          rewrite: { path: { regex: '^/v([0-9]+)/items/(.*)$', substitution: '/items/$2?version=$1' } },
        },
        {
          name: 'upstream-host',
          match: { path: { exact: '/upstream-host' } },
          backends: [{ service: 'svc' }],
          preserveHost: false,
        },
        {
          name: 'old',
          match: { path: { prefix: '/old' } },
          redirect: { path: { prefix: '/new' }, statusCode: 301 },
        },
        {
          name: 'secure',
          match: { path: { exact: '/login' } },
          redirect: { scheme: 'https', host: 'login.example.test' },
        },
        {
          name: 'health',
          match: { path: { exact: '/healthz' } },
          directResponse: { status: 200, body: 'ok\n' },
          responseHeaders: { set: { 'cache-control': 'no-store', 'x-frame-options': 'DENY' } },
        },
        {
          name: 'canary',
          match: { path: { prefix: '/c' }, headers: [{ name: 'x-canary', present: true }] },
          backends: [{ service: 'other' }],
        },
        {
          name: 'by-query',
          match: { path: { prefix: '/c' }, query: [{ name: 'beta', exact: '1' }] },
          backends: [{ service: 'other' }],
        },
        { name: 'c', match: { path: { prefix: '/c' } }, backends: [{ service: 'svc' }] },
        {
          name: 'host-route',
          match: { hosts: ['*.tenant.test'], path: { prefix: '/' } },
          backends: [{ service: 'other' }],
        },
      ]),
      services: [
        { name: 'svc', endpoints: [up.url] },
        { name: 'other', endpoints: [other.url] },
      ],
    });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
    await other.close();
  });

  test('prefix rewrite and header edits', async () => {
    const r = await fetch(`${gw.url}/api/users?x=1`, {
      headers: { 'x-drop': 'secret', 'x-team': 'spoofed' },
    });
    const seen = (await r.json()) as Echoed;
    expect(seen.url).toBe('/users?x=1');
    expect(seen.headers['x-team']).toBe('core');
    expect(seen.headers['x-added']).toBe('yes');
    expect(seen.headers['x-drop']).toBeUndefined();
    expect(r.headers.get('x-served-by')).toBe('trellis');
    const bare = (await (await fetch(`${gw.url}/api`)).json()) as Echoed;
    expect(bare.url).toBe('/');
  });

  test('full path rewrite and host rewrite', async () => {
    const seen = (await (await fetch(`${gw.url}/full?q=2`)).json()) as Echoed;
    expect(seen.url).toBe('/replaced?q=2');
    expect(seen.headers.host).toBe('internal.svc');
  });

  test('regex rewrite', async () => {
    const seen = (await (await fetch(`${gw.url}/v2/items/abc`)).json()) as Echoed;
    expect(seen.url).toBe('/items/abc?version=2');
  });

  test('preserveHost: false sends the endpoint authority', async () => {
    const seen = (await (await fetch(`${gw.url}/upstream-host`)).json()) as Echoed;
    expect(seen.headers.host).toBe(`127.0.0.1:${up.port}`);
    expect(seen.headers['x-forwarded-host']).toBe(`127.0.0.1:${gw.port}`);
  });

  test('redirects', async () => {
    const a = await fetch(`${gw.url}/old/page?a=1`, { redirect: 'manual' });
    expect(a.status).toBe(301);
    expect(a.headers.get('location')).toBe(`http://127.0.0.1:${gw.port}/new/page?a=1`);
    const b = await fetch(`${gw.url}/login`, { redirect: 'manual' });
    expect(b.status).toBe(302);
    expect(b.headers.get('location')).toBe('https://login.example.test/login');
  });

  test('direct response', async () => {
    const r = await fetch(`${gw.url}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('ok\n');
    expect(r.headers.get('x-request-id')).toBeTruthy();
    // The route's response header edits apply to its own replies too.
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.headers.get('x-frame-options')).toBe('DENY');
    const head = await fetch(`${gw.url}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  test('header and query matches pick their route before the plain one', async () => {
    expect(await (await fetch(`${gw.url}/c/1`, { headers: { 'x-canary': 'on' } })).text()).toBe('other /c/1');
    expect(await (await fetch(`${gw.url}/c/1?beta=1`)).text()).toBe('other /c/1?beta=1');
    expect(((await (await fetch(`${gw.url}/c/1`)).json()) as Echoed).url).toBe('/c/1');
  });

  test('wildcard hosts', async () => {
    // fetch() may not set Host; undici's request() may.
    const r = await request(`${gw.url}/anything`, { headers: { host: 'acme.tenant.test' } });
    expect(await r.body.text()).toBe('other /anything');
    const bare = await request(`${gw.url}/anything`, { headers: { host: 'tenant.test' } });
    // The bare suffix is not covered by the wildcard (Gateway API), and no other route has that path.
    expect(bare.statusCode).toBe(404);
    await bare.body.dump();
  });
});

describe('reload in process', () => {
  test('a new snapshot serves new requests; unchanged pools and listeners are kept', async () => {
    const up = await startUpstream((_req, res) => res.end('v'));
    const gw = await startGateway(simpleConfig(up.url));
    const before = gw.gateway.snapshot!;
    await gw.apply(
      simpleConfig(up.url, [
        { name: 'all', backends: [{ service: 'svc' }], responseHeaders: { set: { 'x-v': '2' } } },
      ]),
    );
    const after = gw.gateway.snapshot!;
    expect(after.version).toBeGreaterThan(before.version);
    // The service config did not change: the same service object (its pool, health and ejection state) serves.
    expect(after.services.get('svc')).toBe(before.services.get('svc'));
    expect(after.services.get('svc')!.endpoints[0]!.pool).toBe(
      before.services.get('svc')!.endpoints[0]!.pool,
    );
    const r = await fetch(gw.url);
    expect(r.headers.get('x-v')).toBe('2');
    await gw.close();
    await up.close();
  });

  test('a config that cannot bind is rejected and the old one keeps serving', async () => {
    const up = await startUpstream((_req, res) => res.end('still here'));
    const blocker = await startUpstream();
    const gw = await startGateway(simpleConfig(up.url));
    const version = gw.gateway.snapshot!.version;
    const cfg = simpleConfig(up.url);
    await expect(
      gw.apply({
        ...cfg,
        listeners: [
          { name: 'public', port: 0 },
          { name: 'taken', port: blocker.port },
        ],
      }),
    ).rejects.toThrow(/EADDRINUSE/);
    expect(gw.gateway.snapshot!.version).toBe(version);
    expect(await (await fetch(gw.url)).text()).toBe('still here');
    await gw.close();
    await up.close();
    await blocker.close();
  });
});

describe('a listener removed by a reload', () => {
  test('closes: a request after the one in flight gets a 503 and the connection closes; the others serve on', async () => {
    const up = await startUpstream((req, res) => {
      if (req.url === '/slow') setTimeout(() => res.end('slow'), 400);
      else res.end('ok');
    });
    const two = {
      ...simpleConfig(up.url),
      listeners: [
        { name: 'a', port: 0 },
        { name: 'b', port: 0 },
      ],
    };
    const gw = await startGateway(two);
    const ports = gw.gateway.ports();
    const pool = new Pool(`http://127.0.0.1:${ports.b}`, { connections: 1 });
    const inflight = pool.request({ path: '/slow', method: 'GET' });
    await new Promise((r) => setTimeout(r, 50));
    await gw.apply({ ...two, listeners: [{ name: 'a', port: 0 }] });
    const first = await inflight;
    expect(await first.body.text()).toBe('slow');
    // The same keep-alive connection, before the idle sweep closes it.
    const second = await pool.request({ path: '/', method: 'GET' });
    expect(second.statusCode).toBe(503);
    expect(second.headers.connection).toBe('close');
    expect(((await second.body.json()) as Problem).code).toBe('service_unavailable');
    await pool.close();
    await expect(fetch(`http://127.0.0.1:${ports.b}/`)).rejects.toThrow();
    expect(await (await fetch(`http://127.0.0.1:${ports.a}/`)).text()).toBe('ok');
    await gw.close();
    await up.close();
  });
});
