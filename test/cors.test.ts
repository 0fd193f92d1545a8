/** CORS on real sockets: preflights answered at the gateway before authentication, fields on proxied responses. */
import { describe, expect, test } from 'vitest';
import type { ConfigInput } from '../src/config/schema.js';
import { hashApiKey } from '../src/stages/credentials.js';
import { closedAfterEach, type Problem, simpleConfig } from './helpers.js';

const t = closedAfterEach();
const KEY = 'web-app-key-0123456789abcdef';

async function setup(upstreamHeaders: Record<string, string> = {}) {
  const seen: string[] = [];
  const up = await t.upstream((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'content-type': 'text/plain', ...upstreamHeaders });
    res.end('ok');
  });
  const config = {
    ...simpleConfig(up.url, [{ name: 'api', backends: [{ service: 'svc' }], policies: ['keys', 'browser'] }]),
    consumers: [{ name: 'web', credentials: { apiKeys: [{ hash: hashApiKey(KEY) }] } }],
    policies: [
      { name: 'keys', type: 'api-key' },
      {
        name: 'browser',
        type: 'cors',
        origins: ['https://app.example.com', 'https://*.preview.example.com'],
        methods: ['GET', 'PUT', 'DELETE'],
        headers: ['x-api-key', 'content-type'],
        exposeHeaders: ['x-request-id'],
        credentials: true,
        maxAge: '2h',
      },
    ],
  } as ConfigInput;
  const gw = await t.gateway(config);
  return { gw, seen };
}

const preflight = (origin: string, method: string, headers?: string) => ({
  method: 'OPTIONS',
  headers: {
    origin,
    'access-control-request-method': method,
    ...(headers ? { 'access-control-request-headers': headers } : {}),
  },
});

describe('cors policy', () => {
  test('a preflight is answered 204 at the gateway, before authentication, and never reaches the upstream', async () => {
    const { gw, seen } = await setup();
    const r = await fetch(
      `${gw.url}/items/1`,
      preflight('https://app.example.com', 'PUT', 'x-api-key, content-type'),
    );
    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(r.headers.get('access-control-allow-methods')).toBe('GET, PUT, DELETE');
    expect(r.headers.get('access-control-allow-headers')).toBe('x-api-key, content-type');
    expect(r.headers.get('access-control-allow-credentials')).toBe('true');
    expect(r.headers.get('access-control-max-age')).toBe('7200');
    expect(r.headers.get('vary')).toMatch(/Origin/);
    expect(await r.text()).toBe('');
    const sub = await fetch(`${gw.url}/`, preflight('https://pr-42.preview.example.com', 'DELETE'));
    expect(sub.status).toBe(204);
    expect(seen).toEqual([]);
    // Answering a preflight is an `allow` decision, not a refusal.
    const metrics = await (
      gw.gateway as unknown as { metrics: { registry: { metrics(): Promise<string> } } }
    ).metrics.registry.metrics();
    expect(metrics).toContain(
      'trellis_policy_decisions_total{trellis_route="api",trellis_policy="browser",trellis_policy_type="cors",decision="allow"} 2',
    );
  });

  test('a preflight from another origin, or for a method or header not allowed, is refused with 403', async () => {
    const { gw, seen } = await setup();
    for (const [origin, method, headers] of [
      ['https://evil.example.net', 'GET', undefined],
      ['https://preview.example.com', 'GET', undefined],
      ['https://app.example.com', 'PATCH', undefined],
      ['https://app.example.com', 'GET', 'x-admin'],
    ] as const) {
      const r = await fetch(`${gw.url}/`, preflight(origin, method, headers));
      expect(r.status).toBe(403);
      const p = (await r.json()) as Problem;
      expect(p.code).toBe('cors_origin_not_allowed');
      expect(r.headers.get('access-control-allow-origin')).toBeNull();
    }
    expect(seen).toEqual([]);
  });

  test('actual requests: CORS fields for an allowed origin (the upstream’s replaced), none for others, Vary always', async () => {
    const { gw, seen } = await setup({ 'access-control-allow-origin': '*', vary: 'Accept-Encoding' });
    const ok = await fetch(`${gw.url}/x`, {
      headers: { origin: 'https://app.example.com', 'x-api-key': KEY },
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(ok.headers.get('access-control-allow-credentials')).toBe('true');
    expect(ok.headers.get('access-control-expose-headers')).toBe('x-request-id');
    expect(ok.headers.get('vary')).toBe('Accept-Encoding, Origin');

    const other = await fetch(`${gw.url}/x`, {
      headers: { origin: 'https://evil.example.net', 'x-api-key': KEY },
    });
    expect(other.status).toBe(200);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    expect(other.headers.get('vary')).toBe('Accept-Encoding, Origin');

    const noOrigin = await fetch(`${gw.url}/x`, { headers: { 'x-api-key': KEY } });
    expect(noOrigin.headers.get('access-control-allow-origin')).toBe('*');
    expect(noOrigin.headers.get('vary')).toBe('Accept-Encoding, Origin');
    expect(seen).toHaveLength(3);
  });

  test('error replies carry the CORS fields too, so a page can read a 401 or a 429 and its Retry-After', async () => {
    const up = await t.upstream((_req, res) => res.end('ok'));
    const gw = await t.gateway({
      ...simpleConfig(up.url, [
        { name: 'api', backends: [{ service: 'svc' }], policies: ['keys', 'rl', 'browser'] },
      ]),
      consumers: [{ name: 'web', credentials: { apiKeys: [{ hash: hashApiKey(KEY) }] } }],
      policies: [
        { name: 'keys', type: 'api-key' },
        { name: 'rl', type: 'rate-limit', limits: [{ requests: 1, per: '1h' }] },
        {
          name: 'browser',
          type: 'cors',
          origins: ['https://app.example.com'],
          exposeHeaders: ['retry-after', 'ratelimit', 'ratelimit-policy'],
        },
      ],
    } as ConfigInput);
    const origin = { origin: 'https://app.example.com' };
    const anonymous = await fetch(`${gw.url}/`, { headers: origin });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect((await fetch(`${gw.url}/`, { headers: { ...origin, 'x-api-key': KEY } })).status).toBe(200);
    const limited = await fetch(`${gw.url}/`, { headers: { ...origin, 'x-api-key': KEY } });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(limited.headers.get('access-control-expose-headers')).toBe(
      'retry-after, ratelimit, ratelimit-policy',
    );
    expect(limited.headers.get('retry-after')).toBe('3600');
    expect(limited.headers.get('vary')).toBe('Origin');
  });

  test('gRPC-Web: a preflight route beside the gRPC route answers the browser', async () => {
    const up = await t.upstream((_req, res) => res.end('ok'));
    const grpcWeb = {
      name: 'grpc-web',
      type: 'cors',
      origins: ['https://app.example.com'],
      methods: ['POST'],
      headers: ['content-type', 'x-grpc-web', 'x-user-agent', 'grpc-timeout'],
      exposeHeaders: ['grpc-status', 'grpc-message'],
    };
    const gw = await t.gateway({
      ...simpleConfig(up.url, [
        {
          name: 'grpc',
          match: { grpc: { service: 'demo.v1.Echo' } },
          grpcWeb: true,
          backends: [{ service: 'svc' }],
          policies: ['grpc-web'],
        },
        {
          name: 'grpc-preflight',
          match: { path: { prefix: '/demo.v1.Echo' }, methods: ['OPTIONS'] },
          backends: [{ service: 'svc' }],
          policies: ['grpc-web'],
        },
      ]),
      policies: [grpcWeb],
    } as ConfigInput);
    const r = await fetch(
      `${gw.url}/demo.v1.Echo/Say`,
      preflight('https://app.example.com', 'POST', 'content-type,x-grpc-web,x-user-agent,grpc-timeout'),
    );
    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-headers')).toBe(
      'content-type, x-grpc-web, x-user-agent, grpc-timeout',
    );
  });

  test('an OPTIONS request that is not a preflight goes upstream (and still needs its credential)', async () => {
    const { gw, seen } = await setup();
    expect((await fetch(`${gw.url}/x`, { method: 'OPTIONS' })).status).toBe(401);
    const r = await fetch(`${gw.url}/x`, { method: 'OPTIONS', headers: { 'x-api-key': KEY } });
    expect(r.status).toBe(200);
    expect(seen).toEqual(['OPTIONS /x']);
  });
});
