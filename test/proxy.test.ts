import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type Echoed,
  echo,
  type Problem,
  simpleConfig,
  startGateway,
  startUpstream,
  type TestGateway,
  type Upstream,
} from './helpers.js';
import { rawRequest, statusOf } from './raw.js';

const client = new Agent({ keepAliveTimeout: 1000 });
afterAll(() => client.close());

async function get(url: string, opts: Parameters<typeof request>[1] = {}) {
  const r = await request(url, { dispatcher: client, ...opts });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) };
}

describe('proxy semantics', () => {
  let up: Upstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream();
    gw = await startGateway(simpleConfig(up.url));
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  test('forwards method, path and query, and answers with the upstream response', async () => {
    const r = await get(`${gw.url}/a/b?x=1&y=2`, { method: 'DELETE' });
    expect(r.status).toBe(200);
    const seen = r.json();
    expect(seen.method).toBe('DELETE');
    expect(seen.url).toBe('/a/b?x=1&y=2');
  });

  test('removes hop-by-hop headers, including those named in Connection', async () => {
    const r = await rawRequest(
      gw.port,
      'GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, x-secret-hop\r\nX-Secret-Hop: 1\r\n' +
        'Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Kept: yes\r\n' +
        'Connection: close\r\n\r\n',
    );
    expect(statusOf(r)).toBe(200);
    const seen = JSON.parse(r.slice(r.indexOf('\r\n\r\n') + 4));
    expect(seen.headers['x-kept']).toBe('yes');
    for (const h of ['x-secret-hop', 'keep-alive', 'te', 'proxy-authorization'])
      expect(seen.headers[h]).toBeUndefined();
  });

  test('adds X-Forwarded-*, Forwarded and Via, and replaces them from an untrusted client', async () => {
    const r = await get(`${gw.url}/fw`, {
      headers: {
        host: 'api.example.test:8080',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-proto': 'https',
        forwarded: 'for=6.6.6.6',
      },
    });
    const h = r.json().headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBe('api.example.test:8080');
    expect(h.forwarded).toBe('for=127.0.0.1;host="api.example.test:8080";proto=http');
    expect(h.via).toBe('1.1 trellis');
    expect(h.host).toBe('api.example.test:8080');
    expect(r.headers.via).toBe('1.1 trellis');
  });

  test('generates x-request-id, keeps a sane one, replaces an unsafe one', async () => {
    const a = await get(`${gw.url}/id`);
    expect(a.json().headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.headers['x-request-id']).toBe(a.json().headers['x-request-id']);
    const b = await get(`${gw.url}/id`, { headers: { 'x-request-id': 'abc-123' } });
    expect(b.json().headers['x-request-id']).toBe('abc-123');
    const c = await get(`${gw.url}/id`, { headers: { 'x-request-id': 'bad id "with" spaces' } });
    expect(c.json().headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('streams a chunked request body and keeps content-length bodies as they are', async () => {
    async function* gen() {
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 5));
        yield Buffer.alloc(1000, 97);
      }
    }
    const chunked = await get(`${gw.url}/up`, { method: 'POST', body: Readable.from(gen()) });
    expect(chunked.json().bytes).toBe(10_000);
    expect(chunked.json().headers['transfer-encoding']).toBe('chunked');
    const fixed = await get(`${gw.url}/up`, { method: 'PUT', body: 'x'.repeat(5000) });
    expect(fixed.json().bytes).toBe(5000);
    expect(fixed.json().headers['content-length']).toBe('5000');
  });

  test('HEAD gets headers without a body', async () => {
    const r = await rawRequest(gw.port, 'HEAD /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(statusOf(r)).toBe(200);
    expect(r.endsWith('\r\n\r\n')).toBe(true);
  });
});

describe('status and body edge cases', () => {
  let up: Upstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      if (req.url === '/204') {
        res.writeHead(204, { 'x-a': '1' });
        res.end();
      } else if (req.url === '/304') {
        res.writeHead(304, { etag: '"v1"' });
        res.end();
      } else if (req.url === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('hello ');
        setTimeout(() => res.end('world'), 10);
      } else if (req.url === '/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('body');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end();
      } else if (req.url === '/cl') {
        res.writeHead(200, {
          'content-length': '5',
          connection: 'close, x-upstream-hop',
          'x-upstream-hop': '1',
        });
        res.end('12345');
      } else {
        res.end('ok');
      }
    });
    gw = await startGateway(simpleConfig(up.url));
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  test('204 and 304 carry no body', async () => {
    const a = await rawRequest(gw.port, 'GET /204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(statusOf(a)).toBe(204);
    expect(a).toContain('x-a: 1');
    expect(a.endsWith('\r\n\r\n')).toBe(true);
    expect(a.toLowerCase()).not.toContain('transfer-encoding');
    const b = await rawRequest(gw.port, 'GET /304 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(statusOf(b)).toBe(304);
    expect(b.endsWith('\r\n\r\n')).toBe(true);
  });

  test('a chunked response stays chunked; a content-length response keeps its length', async () => {
    const a = await rawRequest(gw.port, 'GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(a.toLowerCase()).toContain('transfer-encoding: chunked');
    expect(a).toContain('hello ');
    const b = await rawRequest(gw.port, 'GET /cl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(b.toLowerCase()).toContain('content-length: 5');
    expect(b.toLowerCase()).not.toContain('x-upstream-hop');
    expect(b.endsWith('12345')).toBe(true);
  });

  test('response trailers pass through', async () => {
    const a = await rawRequest(gw.port, 'GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(a).toMatch(/0\r\nx-checksum: abc123\r\n\r\n$/);
  });

  test('Expect: 100-continue gets 100 before the body is sent, and a 404 without 100', async () => {
    const ok = await rawRequest(
      gw.port,
      'POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n',
      300,
    );
    expect(ok).toMatch(/^HTTP\/1\.1 100 Continue/);
  });
});

describe('errors are problem+json with stable codes', () => {
  let up: Upstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      if (req.url === '/reset') req.socket.destroy();
      else if (req.url === '/hang') {
        /* never answers */
      } else res.end('ok');
    });
    gw = await startGateway({
      ...simpleConfig(up.url, [
        {
          name: 'users',
          match: { path: { prefix: '/users' }, methods: ['GET', 'POST'] },
          backends: [{ service: 'svc' }],
        },
        {
          name: 'slow',
          match: { path: { prefix: '/hang' } },
          backends: [{ service: 'svc' }],
          timeouts: { request: '200ms' },
        },
        {
          name: 'limited',
          match: { path: { prefix: '/small' } },
          backends: [{ service: 'svc' }],
          limits: { maxBodyBytes: 100 },
        },
        { name: 'dead', match: { path: { prefix: '/dead' } }, backends: [{ service: 'dead' }] },
        { name: 'rest', match: { path: { prefix: '/reset' } }, backends: [{ service: 'svc' }] },
      ]),
      services: [
        { name: 'svc', endpoints: [up.url] },
        { name: 'dead', endpoints: ['http://127.0.0.1:1'] },
      ],
    });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  async function problem(path: string, opts: Parameters<typeof request>[1] = {}) {
    const r = await get(`${gw.url}${path}`, opts);
    expect(r.headers['content-type']).toBe('application/problem+json');
    const body = r.json();
    expect(body.status).toBe(r.status);
    expect(body.code).toBe(r.headers['x-trellis-error']);
    expect(body.requestId).toBe(r.headers['x-request-id']);
    expect(body.type).toBe(`urn:trellis:error:${body.code}`);
    return { ...r, body };
  }

  test('route_not_found', async () => {
    const r = await problem('/nothing-here');
    expect(r.status).toBe(404);
    expect(r.body.code).toBe('route_not_found');
  });

  test('method_not_allowed lists the methods in Allow', async () => {
    const r = await problem('/users/1', { method: 'DELETE' });
    expect(r.status).toBe(405);
    expect(r.body.code).toBe('method_not_allowed');
    expect(r.headers.allow).toBe('GET, POST');
  });

  test('upstream_connect_refused', async () => {
    const r = await problem('/dead');
    expect(r.status).toBe(502);
    expect(r.body.code).toBe('upstream_connect_refused');
  });

  test('upstream_reset', async () => {
    const r = await problem('/reset');
    expect(r.status).toBe(502);
    expect(r.body.code).toBe('upstream_reset');
  });

  test('upstream_timeout after the route timeout', async () => {
    const t0 = Date.now();
    const r = await problem('/hang');
    expect(r.status).toBe(504);
    expect(r.body.code).toBe('upstream_timeout');
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  test('body_too_large by Content-Length and by a chunked body', async () => {
    const a = await problem('/small', { method: 'POST', body: 'x'.repeat(101) });
    expect(a.status).toBe(413);
    expect(a.body.code).toBe('body_too_large');
    async function* big() {
      for (let i = 0; i < 5; i++) yield Buffer.alloc(50, 98);
    }
    const b = await problem('/small', { method: 'POST', body: Readable.from(big()) });
    expect(b.status).toBe(413);
    const ok = await get(`${gw.url}/small`, { method: 'POST', body: 'x'.repeat(100) });
    expect(ok.status).toBe(200);
  });
});

describe('strict HTTP/1.1 parsing: smuggling attempts get 400 and never reach the upstream', () => {
  let up: Upstream;
  let gw: TestGateway;
  let hits = 0;
  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      hits++;
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    gw = await startGateway(
      simpleConfig(up.url, undefined, {
        listeners: [{ name: 'public', port: 0, limits: { maxHeaderBytes: 4096, maxHeaderCount: 20 } }],
      }),
    );
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  const cases: Array<[string, string, number]> = [
    [
      'Content-Length with Transfer-Encoding',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
    ],
    [
      'duplicate Content-Length',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde',
      400,
    ],
    [
      'same Content-Length twice',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd',
      400,
    ],
    ['malformed Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd', 400],
    [
      'bad chunk size',
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
      400,
    ],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n', 400],
    ['space before colon', 'GET / HTTP/1.1\r\nHost: x\r\nX-Bad : a\r\n\r\n', 400],
    ['missing Host', 'GET / HTTP/1.1\r\n\r\n', 400],
    ['unknown Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc', 400],
    ['headers too large', `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`, 431],
    [
      'too many headers',
      `GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 25 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`,
      431,
    ],
  ];
  test.each(cases)('%s', async (_name, raw, status) => {
    const before = hits;
    const r = await rawRequest(gw.port, raw);
    expect(statusOf(r)).toBe(status);
    expect(r).toContain('application/problem+json');
    expect(hits).toBe(before);
  });
});

describe('keep-alive', () => {
  test('local replies and proxied replies keep the connection open', async () => {
    const up = await startUpstream((_req, res) => res.end('ok'));
    const gw = await startGateway(
      simpleConfig(up.url, [
        { name: 'api', match: { path: { prefix: '/api' } }, backends: [{ service: 'svc' }] },
        { name: 'hi', match: { path: { exact: '/hi' } }, directResponse: { status: 200, body: 'hi' } },
      ]),
    );
    const r = await rawRequest(
      gw.port,
      'GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /hi HTTP/1.1\r\nHost: x\r\n\r\nGET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(r.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 404', 'HTTP/1.1 200', 'HTTP/1.1 200']);
    await gw.close();
    await up.close();
  });
});

describe('path normalization before routing', () => {
  test('dot segments and encoded unreserved characters cannot sneak past a prefix route', async () => {
    const up = await startUpstream();
    const gw = await startGateway(
      simpleConfig(up.url, [
        { name: 'public', match: { path: { prefix: '/public' } }, backends: [{ service: 'svc' }] },
        { name: 'admin', match: { path: { prefix: '/admin' } }, directResponse: { status: 403, body: 'no' } },
      ]),
    );
    const a = await rawRequest(
      gw.port,
      'GET /public/../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(statusOf(a)).toBe(403);
    const b = await rawRequest(
      gw.port,
      'GET /public/%2e%2e/admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(statusOf(b)).toBe(403);
    const c = await rawRequest(
      gw.port,
      'GET /%70ublic/./x?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(statusOf(c)).toBe(200);
    expect(JSON.parse(c.slice(c.indexOf('\r\n\r\n') + 4)).url).toBe('/public/x?q=1');
    const d = await rawRequest(gw.port, 'GET /public/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(statusOf(d)).toBe(400);
    await gw.close();
    await up.close();
  });
});

describe('review fixes', () => {
  let up: Upstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      if (req.url === '/hints') {
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        setTimeout(() => res.end('after hints'), 20);
      } else if (req.url === '/stream-early') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('started');
        req.resume();
      } else if (req.url === '/echo-id') {
        res.setHeader('x-request-id', String(req.headers['x-request-id']));
        res.end('ok');
      } else echo(req, res);
    });
    gw = await startGateway(
      simpleConfig(up.url, [
        {
          name: 'tls-offload',
          match: { path: { prefix: '/edited' } },
          backends: [{ service: 'svc' }],
          requestHeaders: { set: { 'x-forwarded-proto': 'https' }, remove: ['via'] },
          responseHeaders: { remove: ['via'] },
        },
        {
          name: 'limited',
          match: { path: { prefix: '/stream-early' } },
          backends: [{ service: 'svc' }],
          limits: { maxBodyBytes: 1000 },
        },
        { name: 'all', backends: [{ service: 'svc' }] },
      ]),
    );
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  test('103 Early Hints reach the client and the final response follows', async () => {
    const r = await rawRequest(gw.port, 'GET /hints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(r).toMatch(/^HTTP\/1\.1 103 Early Hints\r\n[lL]ink: <\/style\.css>; rel=preload; as=style\r\n/);
    expect(r).toContain('HTTP/1.1 200 OK');
    expect(r.endsWith('after hints')).toBe(true);
  });

  test("a route's header edits override the gateway's forwarding headers, both ways", async () => {
    const r = await fetch(`${gw.url}/edited`);
    const seen = (await r.json()) as Echoed;
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(seen.headers.via).toBeUndefined();
    expect(r.headers.get('via')).toBeNull();
  });

  test('an upstream that echoes x-request-id does not make the client see it twice', async () => {
    const r = await fetch(`${gw.url}/echo-id`, { headers: { 'x-request-id': 'abc' } });
    expect(r.headers.get('x-request-id')).toBe('abc');
  });

  test('a Host that is not a host is a 400 and is never forwarded', async () => {
    for (const host of ['evil.example/phish?', 'a b@c', 'x:80:90']) {
      const r = await rawRequest(gw.port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(statusOf(r)).toBe(400);
    }
  });

  test('an HTTP/1.0 request without Host goes upstream with the endpoint authority', async () => {
    const r = await rawRequest(gw.port, 'GET /ten HTTP/1.0\r\n\r\n');
    expect(statusOf(r)).toBe(200);
    const seen = JSON.parse(r.slice(r.indexOf('\r\n\r\n') + 4));
    expect(seen.headers.host).toBe(`127.0.0.1:${up.port}`);
    expect(seen.headers['x-forwarded-host']).toBeUndefined();
  });

  test('a body over the limit after the response started cuts the response at once', async () => {
    const { connect } = await import('node:net');
    const s = connect(gw.port, '127.0.0.1');
    let got = '';
    s.on('data', (c) => (got += c));
    s.on('error', () => {});
    s.write('POST /stream-early HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    const t0 = Date.now();
    const chunk = `${(600).toString(16)}\r\n${'a'.repeat(600)}\r\n`;
    const timer = setInterval(() => s.writable && s.write(chunk), 20);
    await new Promise((resolve) => s.on('close', resolve));
    clearInterval(timer);
    expect(got).toMatch(/^HTTP\/1\.1 200 /);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

test('doubled slashes cannot bypass a prefix route either', async () => {
  const up = await startUpstream();
  const gw = await startGateway(
    simpleConfig(up.url, [
      { name: 'admin', match: { path: { prefix: '/admin' } }, directResponse: { status: 403, body: 'no' } },
      { name: 'rest', backends: [{ service: 'svc' }] },
    ]),
  );
  const r = await rawRequest(gw.port, 'GET //admin/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  expect(statusOf(r)).toBe(403);
  await gw.close();
  await up.close();
});

test('the route timeout covers time queued for a connection: every request to a hung service gets 504', async () => {
  const up = await startUpstream(() => {
    /* never answers */
  });
  const gw = await startGateway({
    ...simpleConfig(up.url, [
      { name: 'all', backends: [{ service: 'svc' }], timeouts: { request: '300ms' } },
    ]),
    services: [{ name: 'svc', endpoints: [up.url], pool: { connections: 1 } }],
  });
  const t0 = Date.now();
  const replies = await Promise.all(
    [1, 2, 3].map(async () => {
      const r = await fetch(`${gw.url}/`);
      return { status: r.status, code: ((await r.json()) as Problem).code };
    }),
  );
  expect(replies).toEqual(Array(3).fill({ status: 504, code: 'upstream_timeout' }));
  expect(Date.now() - t0).toBeLessThan(2000);
  await gw.close();
  await up.close();
});

describe('more of what a user would notice', () => {
  test('from a trusted proxy, X-Forwarded-For and Forwarded are extended, not replaced', async () => {
    const up = await startUpstream();
    const gw = await startGateway(
      simpleConfig(up.url, undefined, {
        listeners: [{ name: 'public', port: 0, trustedProxies: ['127.0.0.0/8'] }],
      }),
    );
    const r = await request(`${gw.url}/`, {
      dispatcher: client,
      headers: {
        'x-forwarded-for': '203.0.113.7',
        'x-forwarded-proto': 'https',
        forwarded: 'for=203.0.113.7',
      },
    });
    const h = (await r.body.json()) as { headers: Record<string, string> };
    expect(h.headers['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(h.headers['x-forwarded-proto']).toBe('https');
    expect(h.headers.forwarded).toMatch(/^for=203\.0\.113\.7, for=127\.0\.0\.1;host="[^"]+";proto=http$/);
    await gw.close();
    await up.close();
  });

  test('two Host headers are a 400; an absolute-form target routes by its own host', async () => {
    const up = await startUpstream();
    const gw = await startGateway(
      simpleConfig(up.url, [{ name: 'api', match: { hosts: ['api.test'] }, backends: [{ service: 'svc' }] }]),
    );
    const two = await rawRequest(
      gw.port,
      'GET / HTTP/1.1\r\nHost: api.test\r\nHost: other.test\r\nConnection: close\r\n\r\n',
    );
    expect(statusOf(two)).toBe(400);
    const abs = await rawRequest(
      gw.port,
      'GET http://api.test/x?y=1 HTTP/1.1\r\nHost: ignored.test\r\nConnection: close\r\n\r\n',
    );
    expect(statusOf(abs)).toBe(200);
    const seen = JSON.parse(abs.slice(abs.indexOf('\r\n\r\n') + 4));
    expect(seen.url).toBe('/x?y=1');
    expect(seen.headers.host).toBe('api.test');
    await gw.close();
    await up.close();
  });

  test('endpoints share the load by weight, and backends split by weight', async () => {
    const hits = { a: 0, b: 0, c: 0 };
    const a = await startUpstream((_q, s) => {
      hits.a++;
      s.end('a');
    });
    const b = await startUpstream((_q, s) => {
      hits.b++;
      s.end('b');
    });
    const c = await startUpstream((_q, s) => {
      hits.c++;
      s.end('c');
    });
    const gw = await startGateway({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      services: [
        {
          name: 'ab',
          endpoints: [
            { url: a.url, weight: 3 },
            { url: b.url, weight: 1 },
          ],
          loadBalancer: { type: 'round-robin' },
        },
        { name: 'c', endpoints: [c.url] },
      ],
      routes: [
        { name: 'rr', match: { path: { prefix: '/rr' } }, backends: [{ service: 'ab' }] },
        {
          name: 'split',
          match: { path: { prefix: '/split' } },
          backends: [{ service: 'ab', weight: 0 }, { service: 'c' }],
        },
      ],
    });
    for (let i = 0; i < 40; i++) await (await request(`${gw.url}/rr`, { dispatcher: client })).body.text();
    // Smooth weighted round robin is exact over a full cycle.
    expect(hits).toEqual({ a: 30, b: 10, c: 0 });
    for (let i = 0; i < 10; i++) await (await request(`${gw.url}/split`, { dispatcher: client })).body.text();
    expect(hits.c).toBe(10);
    await gw.close();
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  test('maxRequestsPerConnection closes a connection after that many requests', async () => {
    const up = await startUpstream((_q, s) => s.end('ok'));
    const gw = await startGateway(
      simpleConfig(up.url, undefined, {
        listeners: [{ name: 'public', port: 0, limits: { maxRequestsPerConnection: 2 } }],
      }),
    );
    const r = await rawRequest(
      gw.port,
      'GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    const statuses = r.match(/HTTP\/1\.1 \d{3}/g);
    expect(statuses?.[0]).toBe('HTTP/1.1 200');
    expect(statuses?.[1]).toBe('HTTP/1.1 200');
    expect(r).toMatch(/connection: close/i);
    await gw.close();
    await up.close();
  });
});
