import { once } from 'node:events';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { Pool } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { Endpoint } from './endpoint.js';
import {
  decodeHealthCheckResponse,
  encodeHealthCheckRequest,
  HealthChecker,
  type HealthCheckOptions,
} from './health.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const base = { interval: 40, jitter: 0.1, timeout: 500, healthyThreshold: 2, unhealthyThreshold: 3 };

function endpoint(port: number): Endpoint {
  const origin = `http://127.0.0.1:${port}`;
  const pool = new Pool(origin);
  cleanups.push(() => pool.close());
  return new Endpoint(origin, `127.0.0.1:${port}`, pool);
}

function checker(eps: Endpoint[], o: HealthCheckOptions): HealthChecker {
  const hc = new HealthChecker(eps, o);
  cleanups.push(() => hc.stop());
  return hc;
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listen(server: net.Server, port = 0): Promise<number> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (server instanceof http.Server) server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

/** A port that nothing listens on (bound, read, released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Records every transition of `healthy` together with a counter snapshot taken at that moment. */
function transitions(ep: Endpoint, snapshot: () => number): Array<[boolean, number]> {
  const seen: Array<[boolean, number]> = [];
  ep.watch(() => seen.push([ep.healthy, snapshot()]));
  return seen;
}

describe('HealthChecker: HTTP', () => {
  it('goes unhealthy after 3 failures, back after 2 successes, and sends its headers', async () => {
    const state = { status: 200, body: 'all ok', sinceFlip: 0 };
    const seenHeaders: http.IncomingHttpHeaders[] = [];
    const paths = new Set<string>();
    const server = http.createServer((req, res) => {
      seenHeaders.push(req.headers);
      state.sinceFlip++;
      paths.add(req.url ?? '');
      res.writeHead(state.status, { 'content-type': 'text/plain' });
      res.end(state.body);
    });
    const port = await listen(server);
    const ep = endpoint(port);
    const seen = transitions(ep, () => state.sinceFlip);
    const hc = checker([ep], {
      ...base,
      type: 'http',
      path: '/healthz',
      method: 'GET',
      expectedStatuses: [[200, 399]],
      bodyContains: 'ok',
    });
    expect(hc.status(ep)).toBeUndefined();
    hc.start();
    await waitFor(() => hc.status(ep) !== undefined);
    expect(hc.status(ep)).toMatchObject({ healthy: true, lastError: undefined });
    expect(ep.healthy).toBe(true);
    expect(seenHeaders[0]!['user-agent']).toBe('trellis-health-check');
    expect(seenHeaders[0]!.host).toBe(`127.0.0.1:${port}`);
    expect([...paths]).toEqual(['/healthz']);

    state.status = 503;
    state.sinceFlip = 0;
    await waitFor(() => !ep.healthy);
    // Exactly the third failed check flipped it (checks of one endpoint never overlap).
    expect(seen).toEqual([[false, 3]]);
    expect(hc.status(ep)).toMatchObject({ healthy: false, lastError: 'status 503' });
    expect(hc.status(ep)!.lastCheckAt).toBeGreaterThan(Date.now() - 5000);

    state.status = 200;
    state.sinceFlip = 0;
    await waitFor(() => ep.healthy);
    expect(seen).toEqual([
      [false, 3],
      [true, 2],
    ]);
    expect(hc.status(ep)).toMatchObject({ healthy: true, lastError: undefined });

    // A 200 whose body lacks the marker is a failure too.
    state.body = 'degraded';
    state.sinceFlip = 0;
    await waitFor(() => !ep.healthy);
    expect(seen.at(-1)).toEqual([false, 3]);
    expect(hc.status(ep)!.lastError).toBe('body did not contain "ok"');
  });

  it('reads at most 64 KiB of body looking for the marker', async () => {
    const big = Buffer.alloc(200 * 1024, 'x');
    let served = 0;
    const server = http.createServer((_req, res) => {
      served++;
      res.writeHead(200);
      // The marker sits past the first 64 KiB: not found.
      res.end(Buffer.concat([big, Buffer.from('MARKER')]));
    });
    const port = await listen(server);
    const ep = endpoint(port);
    const hc = checker([ep], {
      ...base,
      unhealthyThreshold: 1,
      type: 'http',
      path: '/',
      method: 'GET',
      expectedStatuses: [[200, 299]],
      bodyContains: 'MARKER',
    });
    hc.start();
    await waitFor(() => !ep.healthy);
    expect(hc.status(ep)!.lastError).toBe('body did not contain "MARKER"');
    expect(served).toBeGreaterThan(0);
  });

  it('uses the configured Host header, HEAD, and status ranges', async () => {
    let lastHost: string | undefined;
    let lastMethod: string | undefined;
    let status = 204;
    const server = http.createServer((req, res) => {
      lastHost = req.headers.host;
      lastMethod = req.method;
      res.writeHead(status);
      res.end();
    });
    const port = await listen(server);
    const ep = endpoint(port);
    ep.healthy = false; // carried over unhealthy from a previous checker
    const hc = checker([ep], {
      ...base,
      type: 'http',
      path: '/ready',
      method: 'HEAD',
      expectedStatuses: [
        [204, 204],
        [418, 418],
      ],
      host: 'health.internal',
    });
    hc.start();
    await waitFor(() => ep.healthy);
    expect(lastHost).toBe('health.internal');
    expect(lastMethod).toBe('HEAD');
    status = 200; // not in any range
    await waitFor(() => !ep.healthy);
    expect(hc.status(ep)!.lastError).toBe('status 200');
    status = 418;
    await waitFor(() => ep.healthy);
  });

  it('a connection refused is a failure with the error as lastError', async () => {
    const ep = endpoint(await closedPort());
    const hc = checker([ep], {
      ...base,
      type: 'http',
      path: '/',
      method: 'GET',
      expectedStatuses: [[200, 399]],
    });
    hc.start();
    await waitFor(() => !ep.healthy);
    expect(hc.status(ep)!.lastError).toMatch(/^connect ECONNREFUSED/);
  });

  it('a server that never answers times out', async () => {
    const server = http.createServer(() => {
      // never answers
    });
    const port = await listen(server);
    const ep = endpoint(port);
    const hc = checker([ep], {
      ...base,
      timeout: 60,
      type: 'http',
      path: '/',
      method: 'GET',
      expectedStatuses: [[200, 399]],
    });
    hc.start();
    await waitFor(() => !ep.healthy);
    expect(hc.status(ep)).toMatchObject({ healthy: false, lastError: 'timeout after 60 ms' });
  });
});

describe('HealthChecker: TCP', () => {
  it('a closed port is unhealthy, a listening one healthy again', async () => {
    const port = await closedPort();
    const ep = endpoint(port);
    const hc = checker([ep], { ...base, type: 'tcp' });
    hc.start();
    await waitFor(() => !ep.healthy);
    expect(hc.status(ep)!.lastError).toMatch(/ECONNREFUSED/);

    let accepted = 0;
    const server = net.createServer((s) => {
      accepted++;
      s.on('error', () => {});
      s.end();
    });
    await listen(server, port);
    await waitFor(() => ep.healthy);
    expect(accepted).toBeGreaterThanOrEqual(2);
    expect(hc.status(ep)).toMatchObject({ healthy: true, lastError: undefined });
  });
});

describe('HealthChecker: gRPC', () => {
  const CHECK = '/grpc.health.v1.Health/Check';

  async function grpcServer(statuses: Map<string, number>, port = 0, hang = { on: false }) {
    const seen = {
      sessions: 0,
      checks: 0,
      services: [] as string[],
      headers: [] as http2.IncomingHttpHeaders[],
    };
    const server = http2.createServer();
    server.on('session', () => seen.sessions++);
    server.on('stream', (stream, headers) => {
      seen.headers.push(headers);
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        seen.checks++;
        if (hang.on) return;
        if (headers[':path'] !== CHECK) {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' });
          stream.end();
          return;
        }
        // Decode HealthCheckRequest by hand: [flag][len32][0x0a varint utf8].
        const body = Buffer.concat(chunks);
        const len = body.readUInt32BE(1);
        const msg = body.subarray(5, 5 + len);
        const service = msg.length === 0 ? '' : msg.subarray(2, 2 + msg[1]!).toString('utf8');
        seen.services.push(service);
        const status = statuses.get(service);
        if (status === undefined) {
          // Trailers-only response, as gRPC servers send for errors.
          stream.respond(
            {
              ':status': 200,
              'content-type': 'application/grpc',
              'grpc-status': '5',
              'grpc-message': 'unknown%20service',
            },
            { endStream: true },
          );
          return;
        }
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        // HealthCheckResponse { status = 1 (varint) }; also an unknown field 2 to be skipped.
        const proto = Buffer.from([0x12, 0x02, 0x68, 0x69, 0x08, status]);
        const frame = Buffer.alloc(5);
        frame.writeUInt32BE(proto.length, 1);
        stream.end(Buffer.concat([frame, proto]));
      });
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on('session', (s) => {
      sessions.add(s);
      s.on('close', () => sessions.delete(s));
    });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sessions) s.destroy();
          server.close(() => resolve());
        }),
    );
    return { port: (server.address() as net.AddressInfo).port, seen };
  }

  it('follows SERVING / NOT_SERVING over one kept h2c session', async () => {
    const statuses = new Map([
      ['', 1],
      ['orders', 1],
    ]);
    const { port, seen } = await grpcServer(statuses);
    const ep = endpoint(port);
    const hc = checker([ep], { ...base, type: 'grpc', service: 'orders' });
    hc.start();
    await waitFor(() => hc.status(ep) !== undefined);
    expect(hc.status(ep)).toMatchObject({ healthy: true, lastError: undefined });
    expect(seen.headers[0]).toMatchObject({
      ':method': 'POST',
      ':path': CHECK,
      ':authority': `127.0.0.1:${port}`,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'trellis-health-check',
    });
    expect(seen.services[0]).toBe('orders');

    statuses.set('orders', 2);
    await waitFor(() => !ep.healthy);
    expect(hc.status(ep)!.lastError).toBe('NOT_SERVING');
    statuses.set('orders', 1);
    await waitFor(() => ep.healthy);
    expect(seen.checks).toBeGreaterThanOrEqual(6);
    expect(seen.sessions).toBe(1);

    hc.stop();
    await waitFor(() => seen.sessions === 1); // nothing new
  });

  it("checks overall health with service '' and reports grpc errors", async () => {
    const statuses = new Map([['', 1]]);
    const { port, seen } = await grpcServer(statuses);
    const ep = endpoint(port);
    const overall = checker([ep], { ...base, type: 'grpc', service: '', authority: 'grpc.internal' });
    overall.start();
    await waitFor(() => overall.status(ep) !== undefined);
    expect(overall.status(ep)!.lastError).toBeUndefined();
    expect(seen.services[0]).toBe('');
    expect(seen.headers[0]![':authority']).toBe('grpc.internal');
    overall.stop();

    const unknown = checker([ep], { ...base, type: 'grpc', service: 'nope' });
    unknown.start();
    await waitFor(() => !ep.healthy);
    expect(unknown.status(ep)!.lastError).toBe('grpc-status 5 (NOT_FOUND): unknown service');
  });

  it('a closed port fails the gRPC check, and a server appearing there recovers it', async () => {
    const port = await closedPort();
    const ep = endpoint(port);
    const hc = checker([ep], { ...base, type: 'grpc', service: '' });
    hc.start();
    await waitFor(() => !ep.healthy);
    expect(hc.status(ep)!.lastError).toMatch(/ECONNREFUSED/);
    const { seen } = await grpcServer(new Map([['', 1]]), port);
    await waitFor(() => ep.healthy);
    expect(seen.sessions).toBe(1);
  });

  it('a hung server times the check out, and the next check uses a fresh session', async () => {
    const hang = { on: true };
    const { port, seen } = await grpcServer(new Map([['', 1]]), 0, hang);
    const ep = endpoint(port);
    const hc = checker([ep], { ...base, timeout: 60, type: 'grpc', service: '' });
    hc.start();
    await waitFor(() => !ep.healthy);
    expect(hc.status(ep)!.lastError).toBe('timeout after 60 ms');
    expect(seen.sessions).toBeGreaterThanOrEqual(3);
    hang.on = false;
    await waitFor(() => ep.healthy);
    const sessions = seen.sessions;
    const checks = seen.checks;
    await waitFor(() => seen.checks >= checks + 3);
    expect(seen.sessions).toBe(sessions);
  });

  it('the protobuf helpers encode the request and decode the response', () => {
    expect(encodeHealthCheckRequest('')).toEqual(Buffer.from([0, 0, 0, 0, 0]));
    expect(encodeHealthCheckRequest('ab')).toEqual(Buffer.from([0, 0, 0, 0, 4, 0x0a, 2, 0x61, 0x62]));
    const long = 'x'.repeat(300);
    const enc = encodeHealthCheckRequest(long);
    // 300 = 0xac 0x02 as a varint
    expect([...enc.subarray(0, 8)]).toEqual([0, 0, 0, 1, 0x2f, 0x0a, 0xac, 0x02]);
    expect(decodeHealthCheckResponse(Buffer.from([0, 0, 0, 0, 2, 0x08, 1]))).toBe(1);
    // Unknown fields of every wire type are skipped: fixed64, length-delimited, fixed32, varint.
    const skip = [
      0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x1a, 2, 0x61, 0x62, 0x25, 1, 2, 3, 4, 0x20, 0x96, 0x01, 0x08, 2,
    ];
    expect(decodeHealthCheckResponse(Buffer.from([0, 0, 0, 0, skip.length, ...skip]))).toBe(2);
    expect(decodeHealthCheckResponse(Buffer.from([0, 0, 0, 0, 0]))).toBe(0);
    expect(() => decodeHealthCheckResponse(Buffer.from([1, 0, 0, 0, 0]))).toThrow(/compressed/);
    expect(() => decodeHealthCheckResponse(Buffer.from([0, 0, 0, 0, 3, 0x08]))).toThrow(/truncated/);
  });
});

describe('HealthChecker: lifecycle', () => {
  it('spreads first checks, checks every endpoint, and stop() ends all activity', async () => {
    const hits = new Map<string, number>();
    const server = http.createServer((req, res) => {
      const key = req.headers.host!;
      hits.set(key, (hits.get(key) ?? 0) + 1);
      res.end('ok');
    });
    const port = await listen(server);
    const a = endpoint(port);
    const b = new Endpoint(a.origin, 'b.internal', a.pool);
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const hc = checker([a, b], {
      ...base,
      type: 'http',
      path: '/',
      method: 'GET',
      expectedStatuses: [[200, 399]],
    });
    hc.start();
    hc.start(); // idempotent
    await waitFor(() => (hits.get(`127.0.0.1:${port}`) ?? 0) >= 3 && (hits.get('b.internal') ?? 0) >= 3);
    hc.stop();
    const total = () => [...hits.values()].reduce((x, y) => x + y, 0);
    const atStop = total();
    await sleep(250);
    expect(total()).toBe(atStop);
    const timersAfter = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    expect(timersAfter).toBeLessThanOrEqual(timersBefore);
  });

  it('stop() aborts an in-flight check and its verdict is dropped', async () => {
    let closed = 0;
    let started = 0;
    const server = http.createServer((req) => {
      started++;
      req.socket.on('close', () => closed++);
    });
    const port = await listen(server);
    const ep = endpoint(port);
    const hc = checker([ep], {
      ...base,
      unhealthyThreshold: 1,
      timeout: 5000,
      type: 'http',
      path: '/',
      method: 'GET',
      expectedStatuses: [[200, 399]],
    });
    hc.start();
    await waitFor(() => started === 1);
    hc.stop();
    await waitFor(() => closed === 1);
    await sleep(100);
    expect(started).toBe(1);
    expect(ep.healthy).toBe(true);
    expect(hc.status(ep)).toBeUndefined();
  });

  it('a throwing onChange listener does not stop the checks', async () => {
    let status = 503;
    let hits = 0;
    const server = http.createServer((_req, res) => {
      hits++;
      res.writeHead(status);
      res.end();
    });
    const port = await listen(server);
    const ep = endpoint(port);
    ep.watch(() => {
      throw new Error('listener bug');
    });
    const hc = checker([ep], {
      ...base,
      unhealthyThreshold: 1,
      healthyThreshold: 1,
      type: 'http',
      path: '/',
      method: 'GET',
      expectedStatuses: [[200, 399]],
    });
    hc.start();
    await waitFor(() => !ep.healthy);
    status = 200;
    const at = hits;
    await waitFor(() => ep.healthy && hits > at);
  });
});
