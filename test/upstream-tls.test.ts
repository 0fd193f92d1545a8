import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import {
  createServer as createH2cServer,
  createSecureServer as createH2Server,
  type Http2SecureServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  constants as h2constants,
} from 'node:http2';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { validateConfig } from '../src/config/load.js';
import type { ConfigInput } from '../src/config/schema.js';
import { upstreamCertificateReload } from '../src/upstream/upstream-tls.js';
import { closedAfterEach, type Problem } from './helpers.js';
import { ROOT } from './process.js';

// Upstream TLS and upstream HTTP/2 on real sockets: SNI, CA verification, client certificates (mTLS), h2 over TLS
// and h2c for plain HTTP services, pools kept across reloads, client certificates re-read when their files change.

const run = promisify(execFile);
const { cleanup, gateway } = closedAfterEach();
let dir: string;
const at = (name: string) => join(dir, name);
const read = (name: string) => readFileSync(at(name));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-upstream-tls-'));
  await run(process.execPath, [join(ROOT, 'scripts/gen-test-certs.js'), dir, '--years', '1']);
  upstreamCertificateReload.intervalMs = 100;
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface Seen {
  servername: string | false | undefined;
  alpn: string | false | null | undefined;
  httpVersion: string;
  clientSubject: string | undefined;
  remotePort: number | undefined;
}

type Req = { httpVersion: string; socket: TLSSocket | { remotePort?: number } };
type Res = { writeHead(s: number, h: Record<string, string>): unknown; end(b: string): unknown };

function answer(req: Req, res: Res): void {
  const s = req.socket as TLSSocket;
  const peer = typeof s.getPeerCertificate === 'function' ? s.getPeerCertificate() : undefined;
  const seen: Seen = {
    servername: (s as TLSSocket & { servername?: string | false }).servername,
    alpn: s.alpnProtocol,
    httpVersion: req.httpVersion,
    clientSubject: peer && Object.keys(peer).length > 0 ? peer.subjectaltname : undefined,
    remotePort: s.remotePort,
  };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(seen));
}

/** An HTTPS (HTTP/1.1) upstream with `cert`; `clientCa` asks for (and requires) client certificates. */
async function httpsUpstream(cert: string, clientCa?: string): Promise<number> {
  const server: HttpsServer = createHttpsServer(
    {
      cert: read(`${cert}.crt`),
      key: read(`${cert}.key`),
      ...(clientCa ? { ca: read(clientCa), requestCert: true, rejectUnauthorized: true } : {}),
    },
    answer as never,
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return (server.address() as AddressInfo).port;
}

async function h2Upstream(tls: boolean): Promise<number> {
  const handler = (req: Http2ServerRequest, res: Http2ServerResponse) => answer(req as never, res as never);
  const server: Http2Server | Http2SecureServer = tls
    ? createH2Server({ cert: read('api.crt'), key: read('api.key') }, handler)
    : createH2cServer(handler);
  const sessions = new Set<{ destroy(): void }>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  );
  return (server.address() as AddressInfo).port;
}

function config(endpoint: string, service: Record<string, unknown> = {}): ConfigInput {
  return {
    listeners: [{ name: 'public', port: 0 }],
    admin: { enabled: false },
    services: [{ name: 'svc', endpoints: [endpoint], ...service }],
    routes: [{ name: 'all', backends: [{ service: 'svc' }], retries: { attempts: 1 } }],
  } as ConfigInput;
}

async function get(url: string): Promise<{ status: number; seen?: Seen; problem?: Problem }> {
  const res = await fetch(url);
  const body = await res.json();
  return res.status === 200
    ? { status: 200, seen: body as Seen }
    : { status: res.status, problem: body as Problem };
}

describe('upstream TLS (HTTP/1.1)', () => {
  test('https:// endpoint with the CA bundle and an SNI name: verified, and the name is sent', async () => {
    const port = await httpsUpstream('api');
    const gw = await gateway(
      config(`https://127.0.0.1:${port}`, { tls: { ca: at('ca.crt'), sni: 'api.example.test' } }),
    );
    const r = await get(`${gw.url}/x`);
    expect(r.status).toBe(200);
    expect(r.seen?.servername).toBe('api.example.test');
    expect(r.seen?.alpn).toBe('http/1.1');
  });

  test('without `sni` the endpoint host name is sent and checked', async () => {
    const port = await httpsUpstream('default');
    const gw = await gateway(config(`https://localhost:${port}`, { tls: { ca: at('ca.crt') } }));
    const r = await get(`${gw.url}/x`);
    expect(r.status).toBe(200);
    expect(r.seen?.servername).toBe('localhost');
  });

  test('a certificate that does not chain to the CA bundle → 502 upstream_tls_failed', async () => {
    const port = await httpsUpstream('api');
    const gw = await gateway(
      config(`https://127.0.0.1:${port}`, { tls: { ca: at('other-ca.crt'), sni: 'api.example.test' } }),
    );
    const r = await get(`${gw.url}/x`);
    expect(r.status).toBe(502);
    expect(r.problem?.code).toBe('upstream_tls_failed');
  });

  test('system CAs by default: a private CA is not trusted', async () => {
    const port = await httpsUpstream('api');
    const gw = await gateway(config(`https://127.0.0.1:${port}`, { tls: { sni: 'api.example.test' } }));
    const r = await get(`${gw.url}/x`);
    expect(r.status).toBe(502);
    expect(r.problem?.code).toBe('upstream_tls_failed');
  });

  test('an SNI name the certificate does not carry → 502 upstream_tls_failed', async () => {
    const port = await httpsUpstream('api');
    const gw = await gateway(
      config(`https://127.0.0.1:${port}`, { tls: { ca: at('ca.crt'), sni: 'other.example.test' } }),
    );
    const r = await get(`${gw.url}/x`);
    expect(r.status).toBe(502);
    expect(r.problem?.code).toBe('upstream_tls_failed');
    expect(r.problem?.detail).toMatch(/other\.example\.test/);
  });

  test('mTLS: the client certificate is presented to an upstream that requires one', async () => {
    const port = await httpsUpstream('api', 'ca.crt');
    const tls = { ca: at('ca.crt'), sni: 'api.example.test' };
    const withCert = await gateway(
      config(`https://127.0.0.1:${port}`, { tls: { ...tls, cert: at('client.crt'), key: at('client.key') } }),
    );
    const ok = await get(`${withCert.url}/x`);
    expect(ok.status).toBe(200);
    expect(ok.seen?.clientSubject).toMatch(/spiffe:\/\/trellis\.test\/ns\/default\/sa\/client/);
    const without = await gateway(config(`https://127.0.0.1:${port}`, { tls }));
    const refused = await get(`${without.url}/x`);
    expect(refused.status).toBe(502);
    expect(refused.problem?.code).toBe('upstream_tls_failed');
  });

  test('a client certificate file that changes is used for new connections', async () => {
    const port = await httpsUpstream('api', 'ca.crt');
    const certDir = mkdtempSync(join(tmpdir(), 'trellis-upstream-cert-'));
    cleanup.push(() => rmSync(certDir, { recursive: true, force: true }));
    // Starts with a certificate the upstream does not trust, then the right one is written over it.
    copyFileSync(at('client-other-ca.crt'), join(certDir, 'client.crt'));
    copyFileSync(at('client-other-ca.key'), join(certDir, 'client.key'));
    const gw = await gateway(
      config(`https://127.0.0.1:${port}`, {
        tls: {
          ca: at('ca.crt'),
          sni: 'api.example.test',
          cert: join(certDir, 'client.crt'),
          key: join(certDir, 'client.key'),
        },
        pool: { keepAliveTimeout: 1 },
      }),
    );
    expect((await get(`${gw.url}/x`)).status).toBe(502);
    copyFileSync(at('client.crt'), join(certDir, 'client.crt'));
    copyFileSync(at('client.key'), join(certDir, 'client.key'));
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await get(`${gw.url}/x`)).status;
    }
    expect(status).toBe(200);
  });
});

describe('health checks of a TLS service', () => {
  test('use its CA bundle, client certificate and SNI name', async () => {
    const port = await httpsUpstream('api', 'ca.crt');
    const tls = { ca: at('ca.crt'), sni: 'api.example.test', cert: at('client.crt'), key: at('client.key') };
    const healthCheck = { path: '/healthz', interval: 50, jitter: 0, unhealthyThreshold: 1 };
    const gw = await gateway(config(`https://127.0.0.1:${port}`, { tls, healthCheck }));
    const svc = gw.gateway.snapshot!.services.get('svc')!;
    const ep = svc.endpoints[0]!;
    let status = svc.healthOf(ep);
    for (let i = 0; i < 40 && status === undefined; i++) {
      await new Promise((r) => setTimeout(r, 25));
      status = svc.healthOf(ep);
    }
    expect(status).toEqual(expect.objectContaining({ healthy: true, lastError: undefined }));
    // Without the client certificate the same checks fail.
    const other = await gateway(
      config(`https://127.0.0.1:${port}`, {
        tls: { ca: at('ca.crt'), sni: 'api.example.test' },
        healthCheck,
      }),
    );
    const svc2 = other.gateway.snapshot!.services.get('svc')!;
    let failed = svc2.healthOf(svc2.endpoints[0]!);
    for (let i = 0; i < 40 && failed?.healthy !== false; i++) {
      await new Promise((r) => setTimeout(r, 25));
      failed = svc2.healthOf(svc2.endpoints[0]!);
    }
    expect(failed?.healthy).toBe(false);
  });
});

describe('upstream HTTP/2 for plain HTTP services', () => {
  test('protocol h2: HTTP/2 over TLS by ALPN', async () => {
    const port = await h2Upstream(true);
    const gw = await gateway(
      config(`https://127.0.0.1:${port}`, {
        protocol: 'h2',
        tls: { ca: at('ca.crt'), sni: 'api.example.test' },
      }),
    );
    const r = await get(`${gw.url}/x`);
    expect(r.status).toBe(200);
    expect(r.seen?.httpVersion).toBe('2.0');
    expect(r.seen?.alpn).toBe('h2');
    expect(r.seen?.servername).toBe('api.example.test');
  });

  test('protocol h2c: cleartext HTTP/2, one connection for concurrent requests', async () => {
    const port = await h2Upstream(false);
    const gw = await gateway(config(`http://127.0.0.1:${port}`, { protocol: 'h2c' }));
    const all = await Promise.all(Array.from({ length: 20 }, () => get(`${gw.url}/x`)));
    expect(all.every((r) => r.status === 200 && r.seen?.httpVersion === '2.0')).toBe(true);
    // Streams of one session, not a connection each.
    expect(new Set(all.map((r) => r.seen?.remotePort)).size).toBe(1);
  });

  test('request and response bodies stream over h2c', async () => {
    const port = await h2Upstream(false);
    const gw = await gateway(config(`http://127.0.0.1:${port}`, { protocol: 'h2c' }));
    const res = await fetch(`${gw.url}/x`, { method: 'POST', body: 'x'.repeat(100_000) });
    expect(res.status).toBe(200);
  });

  test('an HTTP/1.1-only upstream behind protocol h2 → 502 upstream_tls_failed (no h2 by ALPN)', async () => {
    const port = await httpsUpstream('api');
    const gw = await gateway(
      config(`https://127.0.0.1:${port}`, {
        protocol: 'h2',
        tls: { ca: at('ca.crt'), sni: 'api.example.test' },
      }),
    );
    const r = await get(`${gw.url}/x`);
    expect(r.status).toBe(502);
    expect(r.problem?.code).toBe('upstream_tls_failed');
  });

  test('a refused stream (REFUSED_STREAM) is retried, even for a POST: nothing was processed', async () => {
    let n = 0;
    const server = createH2cServer();
    server.on('stream', (stream) => {
      // Closing with an error code emits it on the server's own stream too.
      stream.on('error', () => {});
      if (n++ === 0) stream.close(h2constants.NGHTTP2_REFUSED_STREAM);
      else {
        stream.resume();
        stream.respond({ ':status': 200 });
        stream.end(`served ${n}`);
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as AddressInfo).port;
    const input = config(`http://127.0.0.1:${port}`, { protocol: 'h2c' });
    input.routes![0]!.retries = { attempts: 2, attemptsHeader: true };
    const gw = await gateway(input);
    const res = await fetch(`${gw.url}/x`, { method: 'POST', body: 'payload' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-trellis-attempts')).toBe('2');
    expect(await res.text()).toBe('served 2');
  });

  test('GOAWAY: the streams it covers finish, later requests use a new connection', async () => {
    const server = createH2cServer();
    const ports: number[] = [];
    let first = true;
    server.on('stream', (stream) => {
      ports.push(stream.session!.socket.remotePort!);
      if (first) {
        first = false;
        // Graceful shutdown of this session: the stream in hand is still answered.
        stream.session!.goaway(h2constants.NGHTTP2_NO_ERROR, stream.id!);
        setTimeout(() => {
          stream.respond({ ':status': 200 });
          stream.end('after goaway');
        }, 50);
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end('fresh');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as AddressInfo).port;
    const gw = await gateway(config(`http://127.0.0.1:${port}`, { protocol: 'h2c' }));
    const a = await fetch(`${gw.url}/a`);
    expect(a.status).toBe(200);
    expect(await a.text()).toBe('after goaway');
    const b = await fetch(`${gw.url}/b`);
    expect(await b.text()).toBe('fresh');
    expect(ports[1]).not.toBe(ports[0]);
  });

  test('a reload that keeps the service keeps its HTTP/2 connection', async () => {
    const port = await h2Upstream(false);
    const input = config(`http://127.0.0.1:${port}`, { protocol: 'h2c' });
    const gw = await gateway(input);
    const first = await get(`${gw.url}/x`);
    await gw.apply({ ...input, gateway: { via: 'changed' } });
    const second = await get(`${gw.url}/x`);
    expect(second.seen?.remotePort).toBe(first.seen?.remotePort);
    // A protocol change is another pool.
    const before = await get(`${gw.url}/x`);
    await gw.apply(
      config(`http://127.0.0.1:${port}`, { protocol: 'h2c', pool: { maxConcurrentStreams: 7 } }),
    );
    const after = await get(`${gw.url}/x`);
    expect(after.seen?.remotePort).not.toBe(before.seen?.remotePort);
  });
});

describe('upstream protocol and TLS config checks', () => {
  const errors = (input: ConfigInput): string => {
    const r = validateConfig(input);
    return r.ok ? '' : r.errors.map((e) => `${e.path}: ${e.message}`).join('\n');
  };

  test('h2 needs TLS, h2c refuses it', () => {
    expect(errors(config('http://127.0.0.1:1', { protocol: 'h2' }))).toMatch(
      /services\[0\]\.protocol: h2 is HTTP\/2 over TLS/,
    );
    expect(errors(config('https://127.0.0.1:1', { protocol: 'h2c' }))).toMatch(
      /services\[0\]\.protocol: h2c is cleartext/,
    );
  });

  test('tls settings on http:// endpoints, and mixed schemes', () => {
    expect(errors(config('http://127.0.0.1:1', { tls: { ca: at('ca.crt') } }))).toMatch(
      /services\[0\]\.tls: /,
    );
    const mixed = config('http://127.0.0.1:1');
    (mixed.services![0] as { endpoints: string[] }).endpoints.push('https://127.0.0.1:2');
    expect(errors(mixed)).toMatch(
      /services\[0\]\.endpoints\[1\]: every endpoint of a service uses one scheme/,
    );
  });

  test('files are read: a missing CA, a cert without key, a key of another cert', () => {
    expect(errors(config('https://127.0.0.1:1', { tls: { ca: at('nope.crt') } }))).toMatch(
      /services\[0\]\.tls\.ca: cannot read CA file .*nope\.crt.*no such file/,
    );
    expect(errors(config('https://127.0.0.1:1', { tls: { cert: at('client.crt') } }))).toMatch(
      /services\[0\]\.tls\.key: a client certificate/,
    );
    expect(
      errors(config('https://127.0.0.1:1', { tls: { cert: at('client.crt'), key: at('api.key') } })),
    ).toMatch(/services\[0\]\.tls\.key: .* is not the private key of/);
  });

  test('a valid TLS service passes', () => {
    expect(
      errors(
        config('https://127.0.0.1:1', {
          protocol: 'h2',
          tls: { ca: at('ca.crt'), cert: at('client.crt'), key: at('client.key'), sni: 'api.example.test' },
        }),
      ),
    ).toBe('');
  });
});
