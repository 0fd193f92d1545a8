import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { validateConfig } from '../src/config/load.js';
import type { ConfigInput } from '../src/config/schema.js';
import { type Echo, EchoClient, type EchoServer, seen, startEchoServer, unary } from './grpc-echo.js';
import { closedAfterEach } from './helpers.js';
import { ROOT } from './process.js';

// gRPC through Trellis on real sockets: a @grpc/grpc-js server behind the gateway (h2c, and h2 over TLS), a grpc-js
// client in front of it (h2c, and TLS), all four call kinds, metadata and trailers, deadlines, and the errors the
// gateway makes itself as gRPC statuses. gRPC-Web by hand over HTTP/1.1.

const run = promisify(execFile);
const { cleanup, gateway } = closedAfterEach();
let dir: string;
let echo: EchoServer;
const at = (name: string) => join(dir, name);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-grpc-'));
  await run(process.execPath, [join(ROOT, 'scripts/gen-test-certs.js'), dir, '--years', '1']);
  echo = await startEchoServer();
});

afterAll(async () => {
  await echo?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Route = Partial<NonNullable<ConfigInput['routes']>[number]>;
type Service = Partial<NonNullable<ConfigInput['services']>[number]>;

function grpcConfig(port: number, route: Route = {}, service: Service = {}): ConfigInput {
  return {
    listeners: [{ name: 'h2c', port: 0, http2: { h2c: true } }],
    admin: { enabled: false },
    services: [{ name: 'echo', protocol: 'h2c', endpoints: [`http://127.0.0.1:${port}`], ...service }],
    routes: [
      { name: 'echo', match: { grpc: { service: 'demo.Echo' } }, backends: [{ service: 'echo' }], ...route },
    ],
  } as ConfigInput;
}

function client(target: string, creds = grpc.credentials.createInsecure(), options = {}): Echo {
  const c = new EchoClient(target, creds, options) as Echo;
  cleanup.push(() => c.close());
  return c;
}

async function through(route: Route = {}, service: Service = {}): Promise<Echo> {
  const gw = await gateway(grpcConfig(echo.port, route, service));
  return client(`127.0.0.1:${gw.port}`);
}

/** Reads a whole server stream: its messages, then its status. */
function collect(
  call: grpc.ClientReadableStream<unknown>,
): Promise<{ messages: unknown[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const messages: unknown[] = [];
    call.on('data', (m) => messages.push(m));
    call.on('error', () => {});
    call.on('status', (status) => resolve({ messages, status }));
  });
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('gRPC through the gateway (h2c both sides)', () => {
  test('unary: reply, metadata both ways, trailers', async () => {
    const c = await through();
    const md = new grpc.Metadata();
    md.set('x-client', 'hello');
    const r = await unary(c, 'Say', { text: 'hi' }, { metadata: md });
    expect(r.error).toBeUndefined();
    expect(r.reply.text).toBe('hi');
    // Request metadata reached the upstream, with the gateway's forwarding headers beside it.
    expect(r.reply.metadata['x-client']).toBe('hello');
    expect(r.reply.metadata['x-forwarded-for']).toBe('127.0.0.1');
    // Response headers and trailers came back.
    expect(r.headers?.get('x-client')).toEqual(['hello']);
    expect(r.trailers?.get('x-echo-trailer')).toEqual(['done']);
  });

  test('an upstream error status and its message (non-ASCII) pass through, trailers included', async () => {
    const c = await through();
    const r = await unary(c, 'Say', { code: grpc.status.NOT_FOUND, message: 'no order 7 — ünïcode' });
    expect(r.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(r.error?.details).toBe('no order 7 — ünïcode');
    expect(r.trailers?.get('x-echo-trailer')).toEqual(['done']);
  });

  test('server streaming', async () => {
    const c = await through();
    const { messages, status } = await collect(c.Count({ n: 5 }));
    expect(messages).toEqual([0, 1, 2, 3, 4].map((i) => ({ i })));
    expect(status.code).toBe(grpc.status.OK);
    expect(status.metadata.get('x-echo-trailer')).toEqual(['done']);
  });

  test('client streaming', async () => {
    const c = await through();
    const result = await new Promise<{
      err: grpc.ServiceError | null;
      reply: { sum: number; count: number };
    }>((resolve) => {
      const call = c.Sum((err: grpc.ServiceError | null, reply: { sum: number; count: number }) =>
        resolve({ err, reply }),
      );
      for (let i = 1; i <= 10; i++) call.write({ value: i });
      call.end();
    });
    expect(result.err).toBeNull();
    expect(result.reply).toEqual({ sum: 55, count: 10 });
  });

  test('bidi streaming: each reply arrives before the next message is sent', async () => {
    const c = await through();
    const call = c.Chat();
    const replies: string[] = [];
    const next = () => new Promise<{ text: string }>((resolve) => call.once('data', resolve));
    for (const text of ['one', 'two', 'three']) {
      const reply = next();
      call.write({ text });
      // The upstream answers each message as it comes: nothing waits for the end of the request stream.
      replies.push((await reply).text);
    }
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.end();
    expect(replies).toEqual(['one', 'two', 'three']);
    expect((await status).code).toBe(grpc.status.OK);
  });

  test('a client deadline reaches the upstream as grpc-timeout, capped by the route timeout', async () => {
    const c = await through({ timeouts: { request: '300ms' } });
    seen.length = 0;
    const started = Date.now();
    const r = await unary(c, 'Say', { text: 'slow', delayMs: 2000 }, { deadline: 10_000 });
    expect(r.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(r.error?.details).toMatch(/deadline of 300 ms \(grpc-timeout capped by the route timeout\)/);
    expect(Date.now() - started).toBeLessThan(1500);
    // The upstream learned the capped deadline (grpc-timeout: 300m), not the client's 10 s.
    const left = seen.at(-1)!.deadlineMs;
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(300);
  });

  test('a client deadline shorter than the route timeout is the deadline', async () => {
    const c = await through({ timeouts: { request: '10s' } });
    seen.length = 0;
    const r = await unary(c, 'Say', { text: 'slow', delayMs: 2000 }, { deadline: 300 });
    expect(r.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // The upstream heard of the client's own deadline.
    const left = seen.at(-1)!.deadlineMs;
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(300);
  });

  test('a deadline covers the whole call: a stream past it ends with DEADLINE_EXCEEDED in the trailers', async () => {
    const c = await through({ timeouts: { request: '400ms' } });
    const started = Date.now();
    const { messages, status } = await collect(
      c.Count({ n: 100, delayMs: 50 }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }),
    );
    expect(status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(status.details).toMatch(/deadline of 400 ms/);
    expect(messages.length).toBeGreaterThan(0);
    expect(messages.length).toBeLessThan(100);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  test('without a client deadline the route timeout bounds only the wait for headers: a long stream lives', async () => {
    const c = await through({ timeouts: { request: '300ms' } });
    const { messages, status } = await collect(c.Count({ n: 10, delayMs: 100 }));
    expect(status.code).toBe(grpc.status.OK);
    expect(messages).toHaveLength(10);
  });

  test('no upstream → UNAVAILABLE with the gateway error code', async () => {
    const port = await closedPort();
    const gw = await gateway(grpcConfig(port, { retries: { attempts: 1 } }));
    const c = client(`127.0.0.1:${gw.port}`);
    const r = await unary(c, 'Say', { text: 'hi' });
    expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.error?.details).toMatch(/ECONNREFUSED|refused/);
    expect(r.error?.metadata.get('x-trellis-error')).toEqual(['upstream_connect_refused']);
  });

  test('no route → UNIMPLEMENTED', async () => {
    const gw = await gateway(grpcConfig(echo.port));
    const Other = grpc.makeGenericClientConstructor(
      {
        Do: {
          path: '/other.Service/Do',
          requestStream: false,
          responseStream: false,
          requestSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
          requestDeserialize: (b: Buffer) => JSON.parse(b.toString()),
          responseSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
          responseDeserialize: (b: Buffer) => JSON.parse(b.toString()),
          originalName: 'Do',
        },
      } as grpc.ServiceDefinition,
      'other.Service',
    );
    const c = new Other(`127.0.0.1:${gw.port}`, grpc.credentials.createInsecure()) as Echo;
    cleanup.push(() => c.close());
    const r = await unary(c, 'Do', {});
    expect(r.error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(r.error?.metadata.get('x-trellis-error')).toEqual(['route_not_found']);
  });

  test('a route matching one method leaves the others unrouted', async () => {
    const gw = await gateway(
      grpcConfig(echo.port, { match: { grpc: { service: 'demo.Echo', method: 'Say' } } }),
    );
    const c = client(`127.0.0.1:${gw.port}`);
    expect((await unary(c, 'Say', { text: 'ok' })).reply?.text).toBe('ok');
    const { status } = await collect(c.Count({ n: 1 }));
    expect(status.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  test('a body over the route limit → RESOURCE_EXHAUSTED', async () => {
    const c = await through({ limits: { maxBodyBytes: 200 } });
    const r = await unary(c, 'Say', { text: 'x'.repeat(1000) });
    expect(r.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(r.error?.metadata.get('x-trellis-error')).toEqual(['body_too_large']);
    // Under the limit it goes through.
    expect((await unary(c, 'Say', { text: 'small' })).reply?.text).toBe('small');
  });

  test('an UNAVAILABLE reply is retried on another endpoint with retries.on unavailable', async () => {
    // The first endpoint always answers UNAVAILABLE (trailers-only); the second serves.
    const failing = new grpc.Server();
    failing.addService(
      (await import('./grpc-echo.js')).echoService,
      new Proxy(
        {},
        {
          get: () => (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
            cb({ code: grpc.status.UNAVAILABLE, details: 'down' }),
        },
      ) as grpc.UntypedServiceImplementation,
    );
    const failPort = await new Promise<number>((resolve, reject) =>
      failing.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    cleanup.push(() => failing.forceShutdown());
    const gw = await gateway({
      ...grpcConfig(echo.port, {
        retries: { attempts: 3, on: ['unavailable'], nonIdempotent: true, attemptsHeader: true },
      }),
      services: [
        {
          name: 'echo',
          protocol: 'h2c',
          endpoints: [`http://127.0.0.1:${failPort}`, `http://127.0.0.1:${echo.port}`],
          loadBalancer: { type: 'round-robin' },
        },
      ],
    } as ConfigInput);
    const c = client(`127.0.0.1:${gw.port}`);
    for (let i = 0; i < 4; i++) {
      const r = await unary(c, 'Say', { text: `try ${i}` });
      expect(r.error).toBeUndefined();
      expect(r.reply.text).toBe(`try ${i}`);
    }
    // Without a retry, the trailers-only reply reaches the client as it came: one HEADERS frame with the status.
    const direct = await gateway(grpcConfig(failPort, { retries: { attempts: 1 } }));
    const r = await unary(client(`127.0.0.1:${direct.port}`), 'Say', { text: 'x' });
    expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.error?.details).toBe('down');
  });
});

describe('gRPC over TLS', () => {
  test('TLS listener (h2 by ALPN) → TLS upstream (h2) with the CA bundle and SNI', async () => {
    const ca = readFileSync(at('ca.crt'));
    const secure = await startEchoServer(
      grpc.ServerCredentials.createSsl(null, [
        { cert_chain: readFileSync(at('api.crt')), private_key: readFileSync(at('api.key')) },
      ]),
    );
    cleanup.push(() => secure.close());
    const gw = await gateway({
      listeners: [
        {
          name: 'tls',
          port: 0,
          tls: { certificates: [{ cert: at('default.crt'), key: at('default.key') }] },
        },
      ],
      admin: { enabled: false },
      services: [
        {
          name: 'echo',
          protocol: 'h2',
          endpoints: [`https://127.0.0.1:${secure.port}`],
          tls: { ca: at('ca.crt'), sni: 'api.example.test' },
        },
      ],
      routes: [{ name: 'echo', match: { grpc: { service: 'demo.Echo' } }, backends: [{ service: 'echo' }] }],
    } as ConfigInput);
    const c = client(`localhost:${gw.port}`, grpc.credentials.createSsl(ca));
    const r = await unary(c, 'Say', { text: 'secure' });
    expect(r.error).toBeUndefined();
    expect(r.reply.text).toBe('secure');
    expect(r.reply.metadata['x-forwarded-proto']).toBe('https');
    const { messages, status } = await collect(c.Count({ n: 3 }));
    expect(status.code).toBe(grpc.status.OK);
    expect(messages).toHaveLength(3);
  });

  test('an upstream certificate that does not chain to the CA → UNAVAILABLE, upstream_tls_failed', async () => {
    const secure = await startEchoServer(
      grpc.ServerCredentials.createSsl(null, [
        { cert_chain: readFileSync(at('api.crt')), private_key: readFileSync(at('api.key')) },
      ]),
    );
    cleanup.push(() => secure.close());
    const c = await through(
      { retries: { attempts: 1 } },
      {
        protocol: 'h2',
        endpoints: [`https://127.0.0.1:${secure.port}`],
        // Trusts another CA only.
        tls: { ca: at('other-ca.crt'), sni: 'api.example.test' },
      },
    );
    const r = await unary(c, 'Say', { text: 'x' });
    expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.error?.metadata.get('x-trellis-error')).toEqual(['upstream_tls_failed']);
  });
});

describe('gRPC-Web', () => {
  const frame = (msg: unknown): Buffer => {
    const body = Buffer.from(JSON.stringify(msg));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(body.length, 1);
    return Buffer.concat([head, body]);
  };

  /** Splits a gRPC-Web body into its data messages and its trailer frame (parsed). */
  function parse(body: Buffer): { messages: unknown[]; trailers: Record<string, string> } {
    const messages: unknown[] = [];
    const trailers: Record<string, string> = {};
    let off = 0;
    while (off + 5 <= body.length) {
      const flag = body[off]!;
      const len = body.readUInt32BE(off + 1);
      const payload = body.subarray(off + 5, off + 5 + len);
      off += 5 + len;
      if ((flag & 0x80) !== 0) {
        for (const line of payload.toString('latin1').split('\r\n')) {
          const i = line.indexOf(':');
          if (i > 0) trailers[line.slice(0, i)] = line.slice(i + 1).trim();
        }
      } else messages.push(JSON.parse(payload.toString()));
    }
    expect(off).toBe(body.length);
    return { messages, trailers };
  }

  test('binary over HTTP/1.1: messages, then the trailer frame', async () => {
    const gw = await gateway(grpcConfig(echo.port, { grpcWeb: true }));
    const res = await fetch(`${gw.url}/demo.Echo/Count`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', 'x-user-agent': 'test' },
      body: frame({ n: 3 }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/grpc-web+proto');
    const { messages, trailers } = parse(Buffer.from(await res.arrayBuffer()));
    expect(messages).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
    expect(trailers['grpc-status']).toBe('0');
    expect(trailers['x-echo-trailer']).toBe('done');
  });

  test('grpc-web-text (base64) both ways', async () => {
    const gw = await gateway(grpcConfig(echo.port, { grpcWeb: true }));
    const body = frame({ text: 'über text' }).toString('base64');
    const res = await fetch(`${gw.url}/demo.Echo/Say`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web-text', accept: 'application/grpc-web-text' },
      body,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/grpc-web-text+proto');
    const text = await res.text();
    expect(text).toMatch(/^[A-Za-z0-9+/=]+$/);
    // Padded runs may follow one another: decode group by group.
    const bytes: Buffer[] = [];
    for (let i = 0; i < text.length; i += 4) bytes.push(Buffer.from(text.slice(i, i + 4), 'base64'));
    const { messages, trailers } = parse(Buffer.concat(bytes));
    expect((messages[0] as { text: string }).text).toBe('über text');
    expect(trailers['grpc-status']).toBe('0');
  });

  test('an upstream error status arrives in the trailer frame', async () => {
    const gw = await gateway(grpcConfig(echo.port, { grpcWeb: true }));
    const res = await fetch(`${gw.url}/demo.Echo/Say`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto' },
      body: frame({ code: grpc.status.PERMISSION_DENIED, message: 'nope' }),
    });
    expect(res.status).toBe(200);
    const raw = Buffer.from(await res.arrayBuffer());
    // Trailers-only upstream replies keep their status in the headers; otherwise in the frame.
    const status = res.headers.get('grpc-status') ?? parse(raw).trailers['grpc-status'];
    expect(status).toBe(String(grpc.status.PERMISSION_DENIED));
  });

  test('errors the gateway makes are gRPC-Web errors (headers), never problem+json', async () => {
    const gw = await gateway(grpcConfig(echo.port, { grpcWeb: true }));
    const res = await fetch(`${gw.url}/other.Service/Do`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto' },
      body: frame({}),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/grpc-web+proto');
    expect(res.headers.get('grpc-status')).toBe(String(grpc.status.UNIMPLEMENTED));
    expect(res.headers.get('grpc-message')).toMatch(/no route/);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  test('without grpcWeb a gRPC-Web request does not match a gRPC route', async () => {
    const gw = await gateway(grpcConfig(echo.port));
    const res = await fetch(`${gw.url}/demo.Echo/Say`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto' },
      body: frame({ text: 'x' }),
    });
    expect(res.headers.get('grpc-status')).toBe(String(grpc.status.UNIMPLEMENTED));
  });
});

describe('gRPC config checks', () => {
  const validate = (input: ConfigInput) => validateConfig(input);

  test('a gRPC route to an http1 service is refused, naming the backend', () => {
    const r = validate(grpcConfig(50051, {}, { protocol: 'http1' }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => `${e.path}: ${e.message}`).join('\n')).toMatch(
      /routes\[0\]\.backends\[0\]\.service: gRPC needs HTTP\/2 to the service/,
    );
  });

  test('match.grpc beside match.path is refused', () => {
    const r = validate(
      grpcConfig(50051, { match: { grpc: { service: 'demo.Echo' }, path: { prefix: '/x' } } }),
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.path).join('\n')).toMatch(/routes\[0\]\.match\.path/);
  });

  test('an invalid service name is refused by the schema', () => {
    const r = validate(grpcConfig(50051, { match: { grpc: { service: 'demo/Echo' } } }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.path).join('\n')).toMatch(/routes\[0\]\.match\.grpc\.service/);
  });
});
