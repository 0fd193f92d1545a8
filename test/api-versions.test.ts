import { mkdtempSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { explainView } from '../src/admin/views.js';
import { loadConfigText } from '../src/config/load.js';
import type { ConfigInput } from '../src/config/schema.js';
import { hashApiKey } from '../src/stages/credentials.js';
import { closedAfterEach, type Problem } from './helpers.js';

const t = closedAfterEach();

/** An upstream that says which version it is and what it received. */
function versionServer(name: string) {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ served: name, url: req.url });
      res.writeHead(200, { 'content-type': 'application/json', link: '</orders?page=2>; rel="next"' });
      res.end(body);
    });
  };
}

const KEYS = { legacy: 'legacy-key-0123456789', beta: 'beta-key-0123456789', plain: 'plain-key-0123456789' };

async function start(select: Record<string, unknown>, extra: Partial<ConfigInput> = {}) {
  const v1 = await t.upstream(versionServer('v1'));
  const v2 = await t.upstream(versionServer('v2'));
  const v3 = await t.upstream(versionServer('v3-beta'));
  const config = {
    listeners: [{ name: 'public', port: 0 }],
    admin: { enabled: false },
    services: [
      { name: 'orders-v1', endpoints: [v1.url] },
      { name: 'orders-v2', endpoints: [v2.url] },
      { name: 'orders-v3', endpoints: [v3.url] },
    ],
    consumers: [
      { name: 'legacy-corp', credentials: { apiKeys: [{ hash: hashApiKey(KEYS.legacy) }] } },
      { name: 'early-bird', groups: ['beta'], credentials: { apiKeys: [{ hash: hashApiKey(KEYS.beta) }] } },
      { name: 'plain', credentials: { apiKeys: [{ hash: hashApiKey(KEYS.plain) }] } },
    ],
    policies: [{ name: 'keys', type: 'api-key' }],
    apis: [
      {
        name: 'orders',
        select,
        default: 'v2',
        pins: { consumers: { 'legacy-corp': 'v1' }, groups: { beta: 'v3-beta' } },
        versions: [
          { name: 'v0', status: 'retired', link: 'https://docs.example.com/orders/v0-to-v2' },
          {
            name: 'v1',
            aliases: ['1'],
            status: 'deprecated',
            deprecatedAt: '2026-01-01T00:00:00Z',
            sunset: '2027-01-01T00:00:00Z',
            link: 'https://docs.example.com/orders/v1-to-v2',
            backends: [{ service: 'orders-v1' }],
          },
          { name: 'v2', aliases: ['2'], backends: [{ service: 'orders-v2' }] },
          { name: 'v3-beta', backends: [{ service: 'orders-v3' }] },
        ],
      },
    ],
    routes: [{ name: 'orders', api: 'orders', policies: ['keys'], match: { path: { prefix: '/orders' } } }],
    ...extra,
  } as ConfigInput;
  return t.gateway(config);
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await fetch(url, { headers: { 'x-api-key': KEYS.plain, ...headers } });
  const text = await r.text();
  return { r, body: JSON.parse(text) as { served: string; url: string } & Problem & Record<string, unknown> };
}

describe('API versions through the gateway', () => {
  test('the default version serves a request that names none; active versions carry no lifecycle fields', async () => {
    const gw = await start({ header: 'Accept-Version' });
    const { r, body } = await get(`${gw.url}/orders/42`);
    expect(r.status).toBe(200);
    expect(body).toEqual({ served: 'v2', url: '/orders/42' });
    expect(r.headers.get('deprecation')).toBeNull();
    expect(r.headers.get('sunset')).toBeNull();
  });

  test('a header names the version (by name or alias, any case)', async () => {
    const gw = await start({ header: 'Accept-Version' });
    expect((await get(`${gw.url}/orders`, { 'accept-version': 'v3-beta' })).body.served).toBe('v3-beta');
    expect((await get(`${gw.url}/orders`, { 'accept-version': '2' })).body.served).toBe('v2');
    expect((await get(`${gw.url}/orders`, { 'accept-version': 'V1' })).body.served).toBe('v1');
  });

  test('a deprecated version answers with Deprecation (RFC 9745), Sunset (RFC 8594) and a deprecation Link', async () => {
    const gw = await start({ header: 'Accept-Version' });
    const { r, body } = await get(`${gw.url}/orders`, { 'accept-version': 'v1' });
    expect(body.served).toBe('v1');
    expect(r.headers.get('deprecation')).toBe(`@${Date.parse('2026-01-01T00:00:00Z') / 1000}`);
    expect(r.headers.get('sunset')).toBe('Fri, 01 Jan 2027 00:00:00 GMT');
    // The upstream's own Link stays; the deprecation link is added beside it.
    const link = r.headers.get('link')!;
    expect(link).toContain('</orders?page=2>; rel="next"');
    expect(link).toContain('<https://docs.example.com/orders/v1-to-v2>; rel="deprecation"; type="text/html"');
  });

  test('a retired version gets 410 api_version_retired with the Link, before credentials are asked for', async () => {
    const gw = await start({ header: 'Accept-Version' });
    const r = await fetch(`${gw.url}/orders`, { headers: { 'accept-version': 'v0' } });
    expect(r.status).toBe(410);
    expect(r.headers.get('content-type')).toBe('application/problem+json');
    expect(r.headers.get('x-trellis-error')).toBe('api_version_retired');
    expect(r.headers.get('link')).toBe(
      '<https://docs.example.com/orders/v0-to-v2>; rel="deprecation"; type="text/html"',
    );
    const p = (await r.json()) as Problem;
    expect(p.code).toBe('api_version_retired');
    expect(p.detail).toContain('use v1 or v2 or v3-beta');
  });

  test('an unknown version gets 400 api_version_unknown listing the known ones', async () => {
    const gw = await start({ header: 'Accept-Version' });
    const { r, body } = await get(`${gw.url}/orders`, { 'accept-version': 'v9' });
    expect(r.status).toBe(400);
    expect(body.code).toBe('api_version_unknown');
    expect(body.detail).toBe(
      'API orders has no version "v9" (from the Accept-Version header); known: v0, v1 (1), v2 (2), v3-beta',
    );
    expect(body.knownVersions).toEqual(['v0', 'v1', 'v2', 'v3-beta']);
  });

  test('the path prefix names the version and is removed upstream; an unknown prefix is refused', async () => {
    const gw = await start({ path: true, header: 'Accept-Version' });
    let x = await get(`${gw.url}/v1/orders/7?expand=items`);
    expect(x.body).toEqual({ served: 'v1', url: '/orders/7?expand=items' });
    expect(x.r.headers.get('deprecation')).not.toBeNull();
    x = await get(`${gw.url}/2/orders`);
    expect(x.body).toEqual({ served: 'v2', url: '/orders' });
    x = await get(`${gw.url}/orders`);
    expect(x.body).toEqual({ served: 'v2', url: '/orders' });
    // The path wins over the header.
    x = await get(`${gw.url}/v3-beta/orders`, { 'accept-version': 'v1' });
    expect(x.body.served).toBe('v3-beta');
    x = await get(`${gw.url}/v7/orders/1`);
    expect(x.r.status).toBe(400);
    expect(x.body.detail).toContain('no version "v7" (from the path)');
    // Not a path of the API at all: no route.
    x = await get(`${gw.url}/v1/customers`);
    expect(x.r.status).toBe(404);
    expect(x.body.code).toBe('route_not_found');
  });

  test('the path segment can be kept for an upstream that serves every version under its own prefix', async () => {
    const gw = await start({ path: true, stripPath: false });
    let x = await get(`${gw.url}/v1/orders/7`);
    expect(x.body).toEqual({ served: 'v1', url: '/v1/orders/7' });
    // Named by a pin or the default, the version's segment is added.
    x = await get(`${gw.url}/orders/7`);
    expect(x.body).toEqual({ served: 'v2', url: '/v2/orders/7' });
    x = await get(`${gw.url}/orders/7`, { 'x-api-key': KEYS.legacy });
    expect(x.body).toEqual({ served: 'v1', url: '/v1/orders/7' });
  });

  test('a vendor media type in Accept names the version, as a suffix or a parameter', async () => {
    const gw = await start({ mediaType: 'vnd.acme' });
    let x = await get(`${gw.url}/orders`, { accept: 'application/vnd.acme.v1+json' });
    expect(x.body.served).toBe('v1');
    x = await get(`${gw.url}/orders`, {
      accept: 'text/html;q=0.1, application/vnd.acme+json; version=v3-beta',
    });
    expect(x.body.served).toBe('v3-beta');
    x = await get(`${gw.url}/orders`, { accept: 'application/json' });
    expect(x.body.served).toBe('v2');
    x = await get(`${gw.url}/orders`, { accept: 'application/vnd.acme.v5+json' });
    expect(x.r.status).toBe(400);
    expect(x.body.detail).toContain('(from the Accept media type)');
  });

  test('a query parameter names the version', async () => {
    const gw = await start({ query: 'api-version' });
    const x = await get(`${gw.url}/orders?api-version=v1&x=1`);
    expect(x.body).toEqual({ served: 'v1', url: '/orders?api-version=v1&x=1' });
  });

  test("a consumer's pin and its group's pin apply when the request names no version; a named one wins", async () => {
    const gw = await start({ header: 'Accept-Version' });
    expect((await get(`${gw.url}/orders`, { 'x-api-key': KEYS.legacy })).body.served).toBe('v1');
    expect((await get(`${gw.url}/orders`, { 'x-api-key': KEYS.beta })).body.served).toBe('v3-beta');
    expect((await get(`${gw.url}/orders`, { 'x-api-key': KEYS.plain })).body.served).toBe('v2');
    const named = await get(`${gw.url}/orders`, { 'x-api-key': KEYS.legacy, 'accept-version': 'v2' });
    expect(named.body.served).toBe('v2');
    // Without credentials the authentication policy refuses first: a pin needs a consumer.
    const anon = await fetch(`${gw.url}/orders`);
    expect(anon.status).toBe(401);
  });

  test('metrics and the access log carry the API and its version', async () => {
    const gw = await start({ header: 'Accept-Version' }, {
      metrics: { enabled: true },
    } as Partial<ConfigInput>);
    await get(`${gw.url}/orders`, { 'accept-version': 'v1' });
    await get(`${gw.url}/orders`, { 'accept-version': 'v1' });
    const text = await gw.gateway.metrics!.registry.metrics();
    const line = text
      .split('\n')
      .find((l) => l.startsWith('trellis_api_requests_total{') && l.includes('trellis_api_version="v1"'));
    expect(line).toMatch(/trellis_api="orders".*api_version_status="deprecated".* \d+$/);
    expect(Number(line!.split(' ').pop())).toBeGreaterThanOrEqual(2);
  });
});

test('the access log names the API and the version of each request', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'trellis-log-')), 'access.log');
  const gw = await start({ header: 'Accept-Version' }, {
    accessLog: { output: file, fields: ['route', 'api', 'apiVersion', 'status', 'code'] },
  } as Partial<ConfigInput>);
  await get(`${gw.url}/orders`, { 'accept-version': 'v1' });
  await get(`${gw.url}/orders`);
  await get(`${gw.url}/orders`, { 'accept-version': 'v0' });
  await get(`${gw.url}/orders`, { 'accept-version': 'nope' });
  await gw.close();
  const lines = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(lines).toEqual([
    { route: 'orders', api: 'orders', apiVersion: 'v1', status: 200 },
    { route: 'orders', api: 'orders', apiVersion: 'v2', status: 200 },
    { route: 'orders', api: 'orders', apiVersion: 'v0', status: 410, code: 'api_version_retired' },
    { route: 'orders', status: 400, code: 'api_version_unknown' },
  ]);
});

describe('API versions in the config', () => {
  const base = {
    listeners: [{ name: 'l', port: 0 }],
    services: [{ name: 'svc', endpoints: ['http://127.0.0.1:1'] }],
    admin: { enabled: false },
  };
  const errors = (c: unknown) => {
    const r = loadConfigText(JSON.stringify(c), 'test.json');
    return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
  };

  test('references, lifecycle fields and route actions are checked', () => {
    const e = errors({
      ...base,
      consumers: [{ name: 'acme' }],
      apis: [
        {
          name: 'orders',
          select: { header: 'Accept-Version' },
          default: 'v3',
          pins: { consumers: { acmee: 'v1' }, groups: { beta: 'v2' } },
          versions: [
            { name: 'v1', status: 'deprecated', backends: [{ service: 'svc' }] },
            { name: 'v2', aliases: ['V1'], backends: [{ service: 'svx' }] },
          ],
        },
      ],
      routes: [
        { name: 'a', api: 'order', match: { path: { prefix: '/a' } } },
        { name: 'b', api: 'orders', backends: [{ service: 'svc' }] },
      ],
    });
    expect(e).toEqual(
      expect.arrayContaining([
        'apis[0].versions[0].deprecatedAt: a deprecated version needs "deprecatedAt" (the date its Deprecation field carries, RFC 9745)',
        'apis[0].versions[1].aliases[0]: version name "V1" is already used by version "v1"',
        'apis[0].versions[1].backends[0].service: unknown service "svx" (did you mean "svc"?)',
        expect.stringMatching(/^apis\[0\]\.default: unknown version "v3"/),
        expect.stringMatching(/^apis\[0\]\.pins\.consumers\.acmee: unknown consumer "acmee"/),
        expect.stringMatching(/^apis\[0\]\.pins\.groups\.beta: no consumer is in group "beta"/),
        expect.stringMatching(/^routes\[0\]\.api: unknown API "order" \(did you mean "orders"\?\)/),
        expect.stringMatching(/^routes\[1\]\.backends: a route of an API takes its backends/),
      ]),
    );
  });

  test('a valid versioned config loads', () => {
    expect(
      errors({
        ...base,
        apis: [
          {
            name: 'orders',
            select: { path: true },
            default: 'v1',
            versions: [
              { name: 'v1', backends: [{ service: 'svc' }] },
              { name: 'v0', status: 'retired' },
            ],
          },
        ],
        routes: [{ name: 'a', api: 'orders', match: { path: { template: '/orders/:id' } } }],
      }),
    ).toEqual([]);
  });

  test('the admin explain sees the version path entries the gateway routes by', () => {
    const r = loadConfigText(
      JSON.stringify({
        ...base,
        apis: [
          {
            name: 'orders',
            select: { path: true },
            default: 'v1',
            versions: [{ name: 'v1', backends: [{ service: 'svc' }] }],
          },
        ],
        routes: [
          { name: 'other', match: { path: { prefix: '/' } }, backends: [{ service: 'svc' }] },
          { name: 'orders', api: 'orders', match: { path: { prefix: '/orders' } } },
        ],
      }),
      'test.json',
    );
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    const winner = (path: string) => {
      const v = explainView(r.config, { path }, undefined, r.config);
      if (!v.ok) throw new Error(v.error);
      return v.view.listeners[0]!.route?.name;
    };
    expect(winner('/v1/orders/1')).toBe('orders');
    expect(winner('/orders/1')).toBe('orders');
    expect(winner('/customers')).toBe('other');
  });
});
