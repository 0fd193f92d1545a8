import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, test, vi } from 'vitest';
import type { ConfigInput } from '../src/config/schema.js';
import { closedAfterEach, serviceConfig, startUpstream, type TestGateway } from './helpers.js';

// Edge paths of the upstream attempt machinery (retries, timeouts, aborts, replay, mirror), on real sockets.
// Every scenario runs a few dozen times and then checks that nothing stayed counted: a leaked admission or
// endpoint count means maxRequests (or the balancer) eventually refuses everything.

const { cleanup, upstream, gateway } = closedAfterEach();
afterEach(() => {
  vi.restoreAllMocks();
});
const config = serviceConfig;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function deadUrl(): Promise<string> {
  const up = await startUpstream();
  const url = up.url;
  await up.close();
  return url;
}

interface Raw {
  socket: Socket;
  /** Everything read until the server closed the connection (or the client destroyed it). */
  reply: Promise<string>;
  /** Resolves at the first byte of the response. */
  firstByte: Promise<void>;
}

/** A raw client connection that sends `head` (and keeps the socket for more). */
function send(port: number, head: string): Raw {
  const socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  let first!: () => void;
  const firstByte = new Promise<void>((r) => {
    first = r;
  });
  const reply = new Promise<string>((resolve) => {
    socket.on('data', (c) => {
      chunks.push(c);
      first();
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
  socket.write(head);
  return { socket, reply, firstByte };
}

const statusOf = (raw: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);

/** Runs `n` scenarios, `concurrency` at a time. */
async function times(n: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

interface Counts {
  active: number;
  pending: number;
  retries: number;
  endpoints: number[];
  probes: number;
}

function counts(gw: TestGateway, name = 'svc'): Counts {
  const svc = gw.gateway.snapshot!.services.get(name)!;
  return {
    active: svc.admission.active,
    pending: svc.admission.pending,
    retries: svc.admission.retries,
    endpoints: svc.endpoints.map((e) => e.active),
    probes: (svc.circuit as unknown as { probesInFlight: number } | undefined)?.probesInFlight ?? 0,
  };
}

/** Waits (boundedly) for every counter of the services to go back to zero, then asserts it. */
async function expectQuiet(gw: TestGateway, names: string[] = ['svc']): Promise<void> {
  const zero = (c: Counts) =>
    c.active === 0 &&
    c.pending === 0 &&
    c.retries === 0 &&
    c.probes === 0 &&
    c.endpoints.every((n) => n === 0);
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline && !names.every((n) => zero(counts(gw, n)))) await sleep(20);
  for (const n of names) {
    const c = counts(gw, n);
    expect({ service: n, ...c }).toEqual({
      service: n,
      active: 0,
      pending: 0,
      retries: 0,
      endpoints: c.endpoints.map(() => 0),
      probes: 0,
    });
  }
}

function events(channel: string): Array<Record<string, unknown>> {
  const list: Array<Record<string, unknown>> = [];
  const fn = (m: unknown) => list.push(m as Record<string, unknown>);
  subscribe(channel, fn);
  cleanup.push(() => unsubscribe(channel, fn));
  return list;
}

/** Records uncaught exceptions for the test (in production there is no handler: the process would exit). */
function uncaught(): unknown[] {
  const list: unknown[] = [];
  const fn = (err: unknown) => list.push(err);
  process.on('uncaughtException', fn);
  cleanup.push(() => process.off('uncaughtException', fn));
  return list;
}

const GET = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n`;
const CHUNKED_POST = 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n';

const breaker = { errorRate: { failureRatio: 1, minimumRequests: 1000, window: '10s' } };
/** Settings of a service whose counters are watched: a breaker that never opens, retries never refused. */
const watched = {
  circuitBreaker: breaker,
  retryBudget: { minPerSecond: 1000 },
  outlierDetection: { enabled: false },
};

describe('counters return to zero on every path', () => {
  test('success, errors before and after the response headers', async () => {
    const up = await upstream((req, res) => {
      req.resume();
      if (req.url === '/cut') {
        res.writeHead(200, { 'content-length': 100 });
        res.write('partial');
        setTimeout(() => res.destroy(), 5);
      } else res.end('ok');
    });
    const dead = await deadUrl();
    const gw = await gateway({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      services: [
        { name: 'svc', endpoints: [up.url], circuitBreaker: breaker },
        { name: 'dead', endpoints: [dead], circuitBreaker: breaker },
      ],
      routes: [
        { name: 'dead', match: { path: { prefix: '/dead' } }, backends: [{ service: 'dead' }] },
        { name: 'all', backends: [{ service: 'svc' }] },
      ],
    } as ConfigInput);
    const statuses: number[] = [];
    await times(30, 6, async () => statuses.push((await fetch(gw.url)).status));
    await times(30, 6, async () => statuses.push((await fetch(`${gw.url}/dead`)).status));
    await times(30, 6, async () => {
      const c = send(gw.port, 'GET /cut HTTP/1.1\r\nHost: x\r\n\r\n');
      const r = await c.reply;
      statuses.push(statusOf(r));
    });
    expect(statuses.filter((s) => s === 200).length).toBe(60);
    expect(statuses.filter((s) => s === 502).length).toBe(30);
    await expectQuiet(gw, ['svc', 'dead']);
  });
});

describe('counters, timeouts', () => {
  test('per-try timeout on a connection and while queued for one; route timeout during a backoff', async () => {
    const up = await upstream((req, res) => {
      req.resume();
      if (req.url === '/hang') return;
      if (req.url === '/503') {
        res.statusCode = 503;
        res.end('busy');
        return;
      }
      setTimeout(() => res.end('slow'), 60);
    });
    const gw = await gateway(
      config(
        [up.url],
        {
          retries: {
            attempts: 3,
            on: ['timeout', '5xx'],
            perTryTimeout: '30ms',
            backoff: { base: '5ms', max: '5ms' },
          },
        },
        { ...watched, pool: { connections: 1 } },
      ),
    );
    const statuses: number[] = [];
    // On a connection: the upstream never answers.
    await times(20, 5, async () => statuses.push((await fetch(`${gw.url}/hang`)).status));
    expect(statuses.every((s) => s === 504)).toBe(true);
    await expectQuiet(gw);
    // Queued: one connection, 60 ms per request, 30 ms per try, 10 at once.
    statuses.length = 0;
    await times(30, 10, async () => statuses.push((await fetch(`${gw.url}/slow`)).status));
    expect(statuses.filter((s) => s === 504).length).toBeGreaterThan(0);
    await expectQuiet(gw);
    // A route timeout while the retry waits out its backoff (the jitter is at least 100 ms of 1 s).
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    await gw.apply(
      config(
        [up.url],
        {
          timeouts: { request: '50ms' },
          retries: { attempts: 3, on: ['5xx'], backoff: { base: '1s', max: '1s' } },
        },
        { ...watched, pool: { connections: 1 } },
      ),
    );
    statuses.length = 0;
    await times(20, 5, async () => statuses.push((await fetch(`${gw.url}/503`)).status));
    expect(statuses).toEqual(statuses.map(() => 504));
    await expectQuiet(gw);
  });
});

describe('counters, client aborts', () => {
  test('while the body is buffered, during a backoff, while queued, while the response streams', async () => {
    const up = await upstream((req, res) => {
      req.resume();
      if (req.url === '/503') {
        res.statusCode = 503;
        res.end();
      } else if (req.url === '/stream') {
        res.writeHead(200);
        res.write('x'.repeat(1000));
      } else if (req.url === '/slow') setTimeout(() => res.end('slow'), 200);
      else req.on('end', () => res.end('ok'));
    });
    const gw = await gateway(
      config(
        [up.url],
        { retries: { attempts: 3, on: ['5xx'], backoff: { base: '1s', max: '1s' } } },
        { ...watched, pool: { connections: 1 } },
      ),
    );
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const abortAfter = async (head: string, ms: number | 'first-byte') => {
      const c = send(gw.port, head);
      if (ms === 'first-byte') await c.firstByte;
      else await sleep(ms);
      c.socket.destroy();
      await c.reply;
    };
    // Buffering: half a chunked body, then gone.
    await times(20, 5, () => abortAfter(`${CHUNKED_POST}${chunk('abc')}`, 20));
    await expectQuiet(gw);
    // Backoff: the first attempt got a 503, the retry waits 500 ms.
    await times(20, 5, () => abortAfter('GET /503 HTTP/1.1\r\nHost: x\r\n\r\n', 50));
    await expectQuiet(gw);
    // Queued: one connection busy for 200 ms.
    await times(20, 10, () => abortAfter('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n', 30));
    await expectQuiet(gw);
    // Streaming: headers and some body arrived.
    await times(20, 5, () => abortAfter('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n', 'first-byte'));
    await expectQuiet(gw);
    // And the service still answers.
    expect((await fetch(gw.url)).status).toBe(200);
  });
});

describe('counters, other paths', () => {
  test('retry on a status whose body is discarded; fault delay then abort; mirror failures; 413', async () => {
    const seen = new Set<string>();
    const up = await upstream((req, res) => {
      req.resume();
      const id = String(req.headers['x-request-id']);
      if (req.url === '/flaky' && !seen.has(id)) {
        seen.add(id);
        // A large 503 body that the gateway reads and drops while the retry goes out.
        res.writeHead(503, { 'content-type': 'text/plain' });
        res.end('e'.repeat(200_000));
      } else req.on('end', () => res.end('ok'));
    });
    const resetting = await upstream((req) => req.socket.destroy());
    const hanging = await upstream(() => {});
    const dead = await deadUrl();
    const gw = await gateway({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      services: [
        { name: 'svc', endpoints: [up.url], ...watched },
        { name: 'shadow-dead', endpoints: [dead] },
        { name: 'shadow-reset', endpoints: [resetting.url] },
        { name: 'shadow-hang', endpoints: [hanging.url] },
      ],
      routes: [
        {
          name: 'flaky',
          match: { path: { prefix: '/flaky' } },
          backends: [{ service: 'svc' }],
          retries: { attempts: 3, on: ['5xx'], nonIdempotent: true, backoff: { base: '1ms', max: '1ms' } },
        },
        {
          name: 'fault',
          match: { path: { prefix: '/fault' } },
          backends: [{ service: 'svc' }],
          fault: { delay: { duration: '100ms', percent: 100 } },
        },
        {
          name: 'm1',
          match: { path: { prefix: '/m1' } },
          backends: [{ service: 'svc' }],
          mirror: { service: 'shadow-dead' },
        },
        {
          name: 'm2',
          match: { path: { prefix: '/m2' } },
          backends: [{ service: 'svc' }],
          mirror: { service: 'shadow-reset' },
        },
        {
          name: 'm3',
          match: { path: { prefix: '/m3' } },
          backends: [{ service: 'svc' }],
          mirror: { service: 'shadow-hang' },
          timeouts: { request: '100ms' },
        },
        {
          name: 'small',
          match: { path: { prefix: '/small' } },
          backends: [{ service: 'svc' }],
          limits: { maxBodyBytes: 1000 },
          retries: { attempts: 2, on: ['5xx'] },
        },
        {
          name: 'small-stream',
          match: { path: { prefix: '/stream-small' } },
          backends: [{ service: 'svc' }],
          limits: { maxBodyBytes: 1000 },
        },
      ],
    } as ConfigInput);
    const statuses: number[] = [];
    await times(30, 5, async () => {
      const r = await fetch(`${gw.url}/flaky`, { method: 'POST', body: 'abc' });
      expect(await r.text()).toBe('ok');
      statuses.push(r.status);
    });
    expect(statuses).toEqual(statuses.map(() => 200));
    await expectQuiet(gw);
    await times(20, 5, async () => {
      const c = send(gw.port, 'GET /fault HTTP/1.1\r\nHost: x\r\n\r\n');
      await sleep(30);
      c.socket.destroy();
      await c.reply;
    });
    await sleep(150);
    await expectQuiet(gw);
    for (const m of ['m1', 'm2', 'm3']) {
      statuses.length = 0;
      await times(20, 5, async () =>
        statuses.push((await fetch(`${gw.url}/${m}`, { method: 'POST', body: 'abc' })).status),
      );
      expect(statuses).toEqual(statuses.map(() => 200));
    }
    await sleep(150);
    await expectQuiet(gw, ['svc', 'shadow-dead', 'shadow-reset', 'shadow-hang']);
    // Over the limit while buffered for a retry, and while streamed.
    for (const path of ['/small', '/stream-small']) {
      statuses.length = 0;
      await times(20, 5, async () => {
        const c = send(gw.port, CHUNKED_POST.replace('/', path) + chunk('a'.repeat(600)));
        await sleep(10);
        c.socket.write(chunk('a'.repeat(600)) + '0\r\n\r\n');
        statuses.push(statusOf(await c.reply));
      });
      expect(statuses).toEqual(statuses.map(() => 413));
    }
    await expectQuiet(gw);
  });
});

describe('circuit breaker probes', () => {
  test('half-open probes that end in a client abort, a timeout or a local reply give their slot back', async () => {
    const up = await upstream((req, res) => {
      req.resume();
      if (req.url === '/fail') {
        res.statusCode = 500;
        res.end();
      } else if (req.url === '/stream') {
        res.writeHead(200);
        res.write('x');
      } else if (req.url === '/slow') setTimeout(() => res.end('slow'), 300);
      else req.on('end', () => res.end('ok'));
    });
    const gw = await gateway(
      config(
        [up.url],
        { retries: { attempts: 2, on: ['5xx'] }, limits: { maxBodyBytes: 10 } },
        {
          outlierDetection: { enabled: false },
          circuitBreaker: {
            errorRate: { failureRatio: 0.5, minimumRequests: 4, openFor: '50ms', halfOpenProbes: 2 },
          },
        },
      ),
    );
    const svc = gw.gateway.snapshot!.services.get('svc')!;
    for (let i = 0; i < 4; i++) await fetch(`${gw.url}/fail`);
    expect(svc.circuit!.state).toBe('open');
    await sleep(60);
    const abortAfter = async (head: string, ms: number | 'first-byte') => {
      const c = send(gw.port, head);
      if (ms === 'first-byte') await c.firstByte;
      else await sleep(ms);
      c.socket.destroy();
      await c.reply;
    };
    for (let i = 0; i < 5; i++) {
      await abortAfter(`${CHUNKED_POST}${chunk('a')}`, 20); // buffering
      await abortAfter('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n', 20); // waiting for headers
      await abortAfter('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n', 'first-byte'); // streaming
      const c = send(gw.port, `${CHUNKED_POST}${chunk('a'.repeat(20))}0\r\n\r\n`); // 413
      expect(statusOf(await c.reply)).toBe(413);
    }
    await expectQuiet(gw);
    expect(svc.circuit!.state).toBe('half_open');
    expect((await fetch(gw.url)).status).toBe(200);
    expect((await fetch(gw.url)).status).toBe(200);
    expect(svc.circuit!.state).toBe('closed');
  });
});

describe('a streamed body over the limit', () => {
  test('during a retry backoff is a 413, not an uncaught error that takes the process down', async () => {
    const errors = uncaught();
    const good = await upstream((req, res) => {
      req.resume();
      req.on('end', () => res.end('good'));
    });
    const gw = await gateway(
      config(
        [await deadUrl(), good.url],
        // Default retries (connect-failure) stream the body; a 400 ms backoff (random pinned to 0.9 of 400 ms).
        { limits: { maxBodyBytes: 1000 }, retries: { backoff: { base: '400ms', max: '400ms' } } },
        { ...watched, loadBalancer: { type: 'round-robin' } },
      ),
    );
    vi.spyOn(Math, 'random').mockReturnValue(0.9);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      // Round robin: every other request meets the dead endpoint first and waits for its retry.
      const c = send(gw.port, CHUNKED_POST + chunk('a'.repeat(100)));
      await sleep(100);
      c.socket.write(`${chunk('a'.repeat(5000))}0\r\n\r\n`);
      statuses.push(statusOf(await c.reply));
    }
    expect(errors).toEqual([]);
    expect(statuses).toEqual([413, 413, 413, 413]);
    await expectQuiet(gw);
  });
});

describe('what is not the endpoint’s fault is not held against it', () => {
  test('clients that close mid-download do not get a healthy endpoint ejected', async () => {
    const ejections = events('trellis:outlier');
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('x'.repeat(1000)); // and more later, or never
    });
    const gw = await gateway(config([up.url], {}, { circuitBreaker: breaker }));
    for (let i = 0; i < 8; i++) {
      const c = send(gw.port, GET);
      await c.firstByte;
      c.socket.destroy();
      await c.reply;
    }
    await expectQuiet(gw);
    expect(ejections).toEqual([]);
  });

  test('a streamed body over the route limit does not get the endpoint ejected', async () => {
    const ejections = events('trellis:outlier');
    const up = await upstream((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    const gw = await gateway(
      config([up.url], { limits: { maxBodyBytes: 1000 } }, { circuitBreaker: breaker }),
    );
    for (let i = 0; i < 8; i++) {
      const c = send(gw.port, CHUNKED_POST + chunk('a'.repeat(100)));
      await sleep(20); // the request is on its way upstream when the limit is crossed
      c.socket.write(`${chunk('a'.repeat(5000))}0\r\n\r\n`);
      expect(statusOf(await c.reply)).toBe(413);
    }
    await expectQuiet(gw);
    expect(ejections).toEqual([]);
  });
});

describe('an attempt given up while queued for a connection', () => {
  test('is dropped without closing the connection it was waiting for, nor what is pipelined on it', async () => {
    let connections = 0;
    const up = await upstream((req, res) => {
      req.resume();
      setTimeout(() => res.end(req.url), 150);
    });
    up.server.on('connection', () => connections++);
    const gw = await gateway(config([up.url], {}, { ...watched, pool: { connections: 1, pipelining: 2 } }));
    // a and b fill the one connection (2 in flight); c waits for it, and its client leaves.
    const a = fetch(`${gw.url}/a`).then(async (r) => `${r.status} ${await r.text()}`);
    await sleep(20);
    const b = fetch(`${gw.url}/b`).then(
      async (r) => `${r.status} ${await r.text()}`,
      (err: Error) => String(err.cause ?? err),
    );
    await sleep(20);
    const c = send(gw.port, 'GET /c HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(30);
    c.socket.destroy();
    expect(await a).toBe('200 /a');
    expect(await b).toBe('200 /b');
    expect(await (await fetch(`${gw.url}/d`)).text()).toBe('/d');
    expect(connections).toBe(1);
    await expectQuiet(gw);
  });

  test('by its per-try timeout: the connection is kept for the next request', async () => {
    let connections = 0;
    const up = await upstream((req, res) => {
      req.resume();
      setTimeout(() => res.end(req.url), req.url === '/slow' ? 150 : 0);
    });
    up.server.on('connection', () => connections++);
    const gw = await gateway({
      ...config(
        [up.url],
        { retries: { attempts: 1, perTryTimeout: '50ms' } },
        { ...watched, pool: { connections: 1 } },
      ),
      routes: [
        { name: 'slow', match: { path: { exact: '/slow' } }, backends: [{ service: 'svc' }] },
        { name: 'all', backends: [{ service: 'svc' }], retries: { attempts: 1, perTryTimeout: '50ms' } },
      ],
    } as ConfigInput);
    const slow = fetch(`${gw.url}/slow`);
    await sleep(10);
    const queued = await fetch(`${gw.url}/q`); // waits behind /slow and times out in the queue
    expect(queued.status).toBe(504);
    expect(await (await slow).text()).toBe('/slow');
    expect(await (await fetch(`${gw.url}/after`)).text()).toBe('/after');
    expect(connections).toBe(1);
    await expectQuiet(gw);
  });
});

describe('timers', () => {
  test('a client that leaves during a fault delay leaves no timer behind', async () => {
    const up = await upstream((_req, res) => res.end('ok'));
    const gw = await gateway(config([up.url], { fault: { headers: true } }));
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    await sleep(50);
    const before = timers();
    for (let i = 0; i < 10; i++) {
      const c = send(gw.port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Trellis-Fault-Delay: 10000\r\n\r\n');
      await sleep(10);
      c.socket.destroy();
      await c.reply;
    }
    await sleep(50);
    expect(timers() - before).toBeLessThan(5);
    await expectQuiet(gw);
  });
});

/** What an upstream received: Host, how many Host and other fields, the body. */
interface Recorded {
  name: string;
  host: string;
  hosts: number;
  fields: number;
  bytes: number;
  body: string;
}

/** An upstream that answers with what it received (as JSON), and keeps it in `seen`. */
function recorder(name: string, seen: Recorded[] = [], status = 200) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const raw = req.rawHeaders;
      const r: Recorded = {
        name,
        host: req.headers.host ?? '',
        hosts: raw.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'host').length,
        fields: raw.length / 2,
        bytes: body.length,
        body: body.toString('latin1'),
      };
      seen.push(r);
      res.statusCode = status;
      res.end(JSON.stringify(r));
    });
  };
}

describe('what a retry sends', () => {
  test('the Host of the endpoint it goes to, once, and no more fields than the first attempt', async () => {
    const failed: Recorded[] = [];
    const bad = await upstream(recorder('bad', failed, 503));
    const good = await upstream(recorder('good'));
    const gw = await gateway(
      config(
        [bad.url, good.url],
        { preserveHost: false, retries: { attempts: 2, on: ['5xx'] } },
        { ...watched, loadBalancer: { type: 'round-robin' } },
      ),
    );
    for (let i = 0; i < 4; i++) {
      const r = (await (await fetch(`${gw.url}/x`, { headers: { host: 'client.test' } })).json()) as Recorded;
      expect(r.name).toBe('good');
      expect(r.host).toBe(`127.0.0.1:${good.port}`);
      expect(r.hosts).toBe(1);
      for (const f of failed) {
        expect(f.host).toBe(`127.0.0.1:${bad.port}`);
        expect(f.hosts).toBe(1);
        expect(f.fields).toBe(r.fields);
      }
    }
    expect(failed.length).toBeGreaterThan(0);
  });
});

describe('body replay', () => {
  /** Sends `parts` as chunks, 15 ms apart, and returns the raw reply. */
  async function chunked(port: number, parts: string[]): Promise<string> {
    const c = send(port, CHUNKED_POST);
    for (const p of parts) {
      await sleep(15);
      c.socket.write(chunk(p));
    }
    c.socket.write('0\r\n\r\n');
    const timer = setTimeout(() => c.socket.destroy(), 3000);
    await c.firstByte;
    await sleep(50);
    c.socket.destroy();
    clearTimeout(timer);
    return c.reply;
  }
  const bodyOf = (raw: string) => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Recorded;

  test('chunked bodies under and over the replay buffer, with a 503 and with a failed connect first', async () => {
    const all: Recorded[] = [];
    const bad = await upstream(recorder('bad', all, 503));
    const good = await upstream(recorder('good', all));
    const dead = await deadUrl();
    const bytesIn: number[] = [];
    const route = { retries: { attempts: 2, on: ['5xx'], nonIdempotent: true, replayBuffer: '1KiB' } };
    const svc = { ...watched, loadBalancer: { type: 'round-robin' } };
    const gw = await gateway(config([bad.url, good.url], route, svc));
    gw.gateway.onFinish = (ex) => bytesIn.push(ex.bytesIn);
    const small = ['a'.repeat(300), 'b'.repeat(300), 'c'.repeat(300)];
    const large = ['a'.repeat(600), 'b'.repeat(600), 'c'.repeat(600), 'd'.repeat(600)];
    // Under the buffer: kept and replayed after the 503, whichever endpoint comes first.
    for (let i = 0; i < 2; i++) {
      const r = await chunked(gw.port, small);
      expect(statusOf(r)).toBe(200);
      expect(bodyOf(r).body).toBe(small.join(''));
    }
    // Over it: streamed on (what was read goes first), not retried after the 503.
    for (let i = 0; i < 2; i++) {
      const r = await chunked(gw.port, large);
      expect(bodyOf(r).body).toBe(large.join(''));
    }
    expect(all.every((r) => r.body === small.join('') || r.body === large.join(''))).toBe(true);
    expect(bytesIn).toEqual([900, 900, 2400, 2400]);
    // Over it, with a refused connect first: the stream was not read, so it goes again, whole.
    await gw.apply(config([dead, good.url], route, svc));
    gw.gateway.onFinish = (ex) => bytesIn.push(ex.bytesIn); // an apply composes its own post-request step
    bytesIn.length = 0;
    for (let i = 0; i < 4; i++) {
      const r = await chunked(gw.port, large);
      expect(statusOf(r)).toBe(200);
      expect(bodyOf(r).body).toBe(large.join(''));
    }
    expect(bytesIn).toEqual([2400, 2400, 2400, 2400]);
    await expectQuiet(gw);
  });

  test('Expect: 100-continue: the client gets 100 once, and the buffered body is replayed', async () => {
    const bad = await upstream(recorder('bad', [], 503));
    const good = await upstream(recorder('good'));
    const gw = await gateway(
      config(
        [bad.url, good.url],
        { retries: { attempts: 2, on: ['5xx'], nonIdempotent: true } },
        { ...watched, loadBalancer: { type: 'round-robin' } },
      ),
    );
    for (let i = 0; i < 4; i++) {
      const c = send(
        gw.port,
        'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n',
      );
      await c.firstByte;
      c.socket.write('hello world');
      const r = await c.reply;
      expect(r.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK')).toBe(true);
      expect(r.match(/100 Continue/g)!.length).toBe(1);
      expect(bodyOf(r.slice(r.indexOf('HTTP/1.1 200'))).body).toBe('hello world');
    }
    await expectQuiet(gw);
  });
});

describe('a reload that replaces the pools', () => {
  test('requests that began before it still go out: a retry after a backoff, and after a slow body', async () => {
    const seen = new Set<string>();
    const up = await upstream((req, res) => {
      req.resume();
      const id = String(req.headers['x-request-id']);
      // /flaky: the first attempt of each request gets a 503.
      if (req.url === '/flaky' && !seen.has(id)) {
        seen.add(id);
        res.statusCode = 503;
        res.end();
      } else req.on('end', () => res.end('ok'));
    });
    const cfg = (connections: number) =>
      config(
        [up.url],
        { retries: { attempts: 3, on: ['5xx'], backoff: { base: '200ms', max: '200ms' } } },
        { ...watched, pool: { connections } },
      );
    const gw = await gateway(cfg(4));
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const retried = fetch(`${gw.url}/flaky`).then(async (r) => `${r.status} ${await r.text()}`);
    const slow = send(gw.port, CHUNKED_POST + chunk('abc'));
    await sleep(30);
    // New pool settings: new endpoint objects and pools; the old pools close.
    await gw.apply(cfg(8));
    slow.socket.write(`${chunk('def')}0\r\n\r\n`);
    expect(await retried).toBe('200 ok');
    await slow.firstByte;
    slow.socket.destroy();
    expect(statusOf(await slow.reply)).toBe(200);
    await expectQuiet(gw);
  });
});
