/**
 * The `ext-authz` policy against real authorization services on loopback: one speaking Envoy's ext_authz HTTP
 * contract, one speaking OPA's data API, and a silent one for timeouts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, test } from 'vitest';
import { closedAfterEach, type Echoed, type Problem, simpleConfig } from './helpers.js';

const t = closedAfterEach();

interface AuthService {
  readonly url: string;
  readonly calls: Array<{ method: string; url: string; headers: IncomingMessage['headers']; body: string }>;
}

async function authService(
  handler: (req: IncomingMessage, body: string, res: ServerResponse) => void,
): Promise<AuthService> {
  const calls: AuthService['calls'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      calls.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      handler(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls };
}

async function gatewayWith(policy: Record<string, unknown>) {
  const up = await t.upstream();
  return t.gateway({
    ...simpleConfig(up.url, [{ name: 'all', backends: [{ service: 'svc' }], policies: ['ext'] }]),
    policies: [{ name: 'ext', type: 'ext-authz', ...policy }],
  } as never);
}

async function req(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as unknown };
}

/** Envoy-style: allow when the token is "good", adding x-user; deny with a 401 challenge otherwise. */
function envoyHandler(req: IncomingMessage, _body: string, res: ServerResponse): void {
  if (req.headers.authorization === 'Bearer good') {
    res.writeHead(200, { 'x-user': 'alice', 'x-internal': 'secret' });
    res.end();
  } else if (req.headers.authorization === undefined) {
    res.writeHead(302, { location: 'https://login.example/start' });
    res.end();
  } else if (req.headers.authorization === 'Bearer boom') {
    res.writeHead(500);
    res.end('crash');
  } else {
    res.writeHead(401, {
      'www-authenticate': 'Bearer realm="authz"',
      'content-type': 'text/plain',
      'x-debug': 'no',
    });
    res.end('go away');
  }
}

describe('envoy mode', () => {
  test('the original method, path and allowed headers reach the service; a 2xx allows with the allowed headers', async () => {
    const svc = await authService(envoyHandler);
    const gw = await gatewayWith({
      url: svc.url,
      pathPrefix: '/check',
      allowedHeaders: ['authorization', 'x-tenant'],
      allowedUpstreamHeaders: ['x-user'],
    });
    const r = await req(`${gw.url}/orders/7?x=1`, {
      method: 'DELETE',
      headers: { authorization: 'Bearer good', 'x-tenant': 't1', cookie: 'c=1', 'x-user': 'mallory' },
    });
    expect(r.status).toBe(200);
    const echoed = r.json() as Echoed;
    expect(echoed.headers['x-user']).toBe('alice');
    expect(echoed.headers['x-internal']).toBeUndefined();
    expect(svc.calls).toHaveLength(1);
    const call = svc.calls[0]!;
    expect(call.method).toBe('DELETE');
    expect(call.url).toBe('/check/orders/7?x=1');
    expect(call.headers.authorization).toBe('Bearer good');
    expect(call.headers['x-tenant']).toBe('t1');
    expect(call.headers.cookie).toBeUndefined();
    expect(call.body).toBe('');
  });

  test('a denial forwards status, body and allowed headers; or becomes a 403 problem', async () => {
    const svc = await authService(envoyHandler);
    const gw = await gatewayWith({
      url: svc.url,
      allowedClientHeaders: ['www-authenticate', 'content-type'],
    });
    const r = await req(`${gw.url}/x`, { headers: { authorization: 'Bearer bad' } });
    expect(r.status).toBe(401);
    expect(r.text).toBe('go away');
    expect(r.headers.get('www-authenticate')).toBe('Bearer realm="authz"');
    expect(r.headers.get('x-debug')).toBeNull();
    const login = await fetch(`${gw.url}/x`, { redirect: 'manual' });
    expect(login.status).toBe(302);
    expect(login.headers.get('location')).toBeNull(); // not in allowedClientHeaders
    const gw3 = await gatewayWith({ url: svc.url });
    const login3 = await fetch(`${gw3.url}/x`, { redirect: 'manual' });
    expect(login3.status).toBe(302);
    expect(login3.headers.get('location')).toBe('https://login.example/start');
    const gw2 = await gatewayWith({ url: svc.url, denyResponse: 'problem' });
    const p = await req(`${gw2.url}/x`, { headers: { authorization: 'Bearer bad' } });
    expect(p.status).toBe(403);
    expect((p.json() as Problem).code).toBe('authz_denied');
  });

  test('a 5xx, a refused connection and a timeout follow failureMode', async () => {
    const svc = await authService(envoyHandler);
    const deny = await gatewayWith({ url: svc.url });
    const r = await req(`${deny.url}/x`, { headers: { authorization: 'Bearer boom' } });
    expect(r.status).toBe(503);
    expect((r.json() as Problem).code).toBe('auth_unavailable');
    expect((r.json() as Problem).detail).toMatch(/answered 500/);
    const allow = await gatewayWith({ url: svc.url, failureMode: 'allow' });
    expect((await req(`${allow.url}/x`, { headers: { authorization: 'Bearer boom' } })).status).toBe(200);

    const silent = await authService(() => {}); // never answers
    const slow = await gatewayWith({ url: silent.url, timeout: '150ms' });
    const started = performance.now();
    const s = await req(`${slow.url}/x`);
    expect(s.status).toBe(503);
    expect((s.json() as Problem).detail).toMatch(/no answer within 150ms/);
    expect(performance.now() - started).toBeLessThan(2000);
    const slowOpen = await gatewayWith({ url: silent.url, timeout: '150ms', failureMode: 'allow' });
    expect((await req(`${slowOpen.url}/x`)).status).toBe(200);

    const refused = await gatewayWith({ url: 'http://127.0.0.1:1' });
    const c = await req(`${refused.url}/x`);
    expect(c.status).toBe(503);
    expect((c.json() as Problem).detail).toMatch(/connection refused/);
  });

  test('withRequestBody: the service reads the body (cut or refused past maxBytes); the upstream gets all of it', async () => {
    // Allows a body that does not mention "drop table".
    const svc = await authService((_req, body, res) => {
      res.writeHead(/drop table/i.test(body) ? 403 : 200);
      res.end();
    });
    const gw = await gatewayWith({ url: svc.url, withRequestBody: { maxBytes: 64 } });
    const ok = await req(`${gw.url}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"note":"hello"}',
    });
    expect(ok.status).toBe(200);
    expect((ok.json() as Echoed).bytes).toBe(16);
    expect(svc.calls[0]).toMatchObject({ method: 'POST', url: '/orders', body: '{"note":"hello"}' });
    expect(svc.calls[0]!.headers['x-envoy-auth-partial-body']).toBe('false');
    expect(svc.calls[0]!.headers['content-type']).toBe('application/json');
    expect((await req(`${gw.url}/orders`, { method: 'POST', body: 'please DROP TABLE x' })).status).toBe(403);
    // Past maxBytes without allowPartial: 413, and the service is not asked.
    const asked = svc.calls.length;
    const big = await req(`${gw.url}/orders`, { method: 'POST', body: 'x'.repeat(65) });
    expect(big.status).toBe(413);
    expect((big.json() as Problem).code).toBe('body_too_large');
    expect(svc.calls.length).toBe(asked);
    // allowPartial: the first maxBytes go, marked; the upstream still gets every byte.
    const partial = await gatewayWith({
      url: svc.url,
      withRequestBody: { maxBytes: 64, allowPartial: true },
    });
    const p = await req(`${partial.url}/orders`, { method: 'POST', body: 'y'.repeat(1000) });
    expect(p.status).toBe(200);
    expect((p.json() as Echoed).bytes).toBe(1000);
    const last = svc.calls.at(-1)!;
    expect(last.body).toBe('y'.repeat(64));
    expect(last.headers['x-envoy-auth-partial-body']).toBe('true');
    // A request without a body is checked with an empty one.
    expect((await req(`${partial.url}/orders`)).status).toBe(200);
    expect(svc.calls.at(-1)!.body).toBe('');
  });

  test('the cache reuses decisions by the attributes named, and never caches failures', async () => {
    const svc = await authService(envoyHandler);
    const gw = await gatewayWith({
      url: svc.url,
      allowedUpstreamHeaders: ['x-user'],
      cache: { ttl: '1m', key: ['method', 'path', 'header:authorization'] },
    });
    const good = { headers: { authorization: 'Bearer good' } };
    for (let i = 0; i < 3; i++) {
      const r = await req(`${gw.url}/a`, good);
      expect(r.status).toBe(200);
      expect((r.json() as Echoed).headers['x-user']).toBe('alice');
    }
    expect(svc.calls).toHaveLength(1);
    await req(`${gw.url}/b`, good); // another path: another key
    expect(svc.calls).toHaveLength(2);
    expect((await req(`${gw.url}/a`, { headers: { authorization: 'Bearer bad' } })).status).toBe(401);
    expect((await req(`${gw.url}/a`, { headers: { authorization: 'Bearer bad' } })).status).toBe(401);
    expect(svc.calls).toHaveLength(3);
    await req(`${gw.url}/a`, { headers: { authorization: 'Bearer boom' } });
    await req(`${gw.url}/a`, { headers: { authorization: 'Bearer boom' } });
    expect(svc.calls).toHaveLength(5);
  });
});

describe('opa mode', () => {
  function opaHandler(_req: IncomingMessage, body: string, res: ServerResponse): void {
    const { input } = JSON.parse(body) as {
      input: {
        attributes: { request: { http: { method: string; path: string; headers: Record<string, string> } } };
        parsed_path: string[];
      };
    };
    const http = input.attributes.request.http;
    let result: unknown;
    if (input.parsed_path[0] === 'bool') result = http.method === 'GET';
    else if (input.parsed_path[0] === 'obj') {
      result =
        http.headers.authorization === 'Bearer good'
          ? { allow: true, headers: { 'X-User': 'alice', 'x-other': 'dropped' } }
          : { allow: false, status: 401, headers: { 'www-authenticate': 'Bearer' }, body: 'who are you?' };
    } else if (input.parsed_path[0] === 'garbage') result = 'yes';
    // else: undefined decision (no `result`)
    const out = JSON.stringify(result === undefined ? {} : { result });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(out);
  }

  test('POST /v1/data/<path> with {input}; a boolean result decides', async () => {
    const opa = await authService(opaHandler);
    const gw = await gatewayWith({ mode: 'opa', url: `${opa.url}/v1/data/httpapi/authz/allow` });
    expect((await req(`${gw.url}/bool/x`)).status).toBe(200);
    const d = await req(`${gw.url}/bool/x`, { method: 'POST', body: 'data' });
    expect(d.status).toBe(403);
    expect((d.json() as Problem).code).toBe('authz_denied');
    const call = opa.calls[0]!;
    expect(call.method).toBe('POST');
    expect(call.url).toBe('/v1/data/httpapi/authz/allow');
    const input = (JSON.parse(call.body) as { input: Record<string, unknown> }).input;
    expect(input).toMatchObject({
      attributes: { request: { http: { method: 'GET', path: '/bool/x' } }, source: { address: '127.0.0.1' } },
      parsed_path: ['bool', 'x'],
      consumer: null,
      claims: null,
      route: 'all',
    });
  });

  test('withRequestBody: the body, and parsed_body for JSON, are in the input', async () => {
    const opa = await authService((_req, body, res) => {
      const { input } = JSON.parse(body) as {
        input: {
          parsed_body: { amount?: number } | null;
          attributes: { request: { http: { body: string } } };
        };
      };
      const allow = (input.parsed_body?.amount ?? Number.POSITIVE_INFINITY) <= 100;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ result: allow }));
    });
    const gw = await gatewayWith({ mode: 'opa', url: `${opa.url}/v1/data/pay`, withRequestBody: {} });
    const send = (body: string, type = 'application/json') =>
      req(`${gw.url}/pay`, { method: 'POST', headers: { 'content-type': type }, body });
    expect((await send('{"amount":50}')).status).toBe(200);
    expect((await send('{"amount":500}')).status).toBe(403);
    expect((await send('amount=50', 'application/x-www-form-urlencoded')).status).toBe(403);
    const input = (JSON.parse(opa.calls.at(-1)!.body) as { input: Record<string, unknown> }).input;
    expect(input).toMatchObject({
      parsed_body: null,
      truncated_body: false,
      attributes: { request: { http: { body: 'amount=50' } } },
    });
  });

  test('an object result allows with headers or denies with status and body; undefined denies', async () => {
    const opa = await authService(opaHandler);
    const gw = await gatewayWith({
      mode: 'opa',
      url: `${opa.url}/v1/data/a`,
      allowedUpstreamHeaders: ['x-user'],
    });
    const ok = await req(`${gw.url}/obj`, { headers: { authorization: 'Bearer good' } });
    expect(ok.status).toBe(200);
    expect((ok.json() as Echoed).headers['x-user']).toBe('alice');
    expect((ok.json() as Echoed).headers['x-other']).toBeUndefined();
    const no = await req(`${gw.url}/obj`);
    expect(no.status).toBe(401);
    expect(no.text).toBe('who are you?');
    expect(no.headers.get('www-authenticate')).toBe('Bearer');
    expect((await req(`${gw.url}/undefined`)).status).toBe(403);
    const g = await req(`${gw.url}/garbage`);
    expect(g.status).toBe(503);
    expect((g.json() as Problem).detail).toMatch(/neither a boolean/);
  });
});
