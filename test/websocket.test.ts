import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { ConfigInput } from '../src/config/schema.js';
import { type Problem, simpleConfig, startGateway, type TestGateway } from './helpers.js';
import { freePort, gatewayYaml, ROOT, spawnGateway } from './process.js';
import { rawRequest, statusOf } from './raw.js';

/** A `ws` server upstream that echoes every message, plus a plain HTTP handler for non-upgrade requests. */
interface WsUpstream {
  readonly url: string;
  readonly server: Server;
  readonly wss: WebSocketServer;
  /** The handshake request of each connection, in order. */
  readonly requests: IncomingMessage[];
  /** Close codes the upstream received, in order. */
  readonly closes: { code: number; reason: string }[];
  close(): Promise<void>;
}

async function startWsUpstream(): Promise<WsUpstream> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`plain ${req.method} ${req.url} upgrade=${req.headers.upgrade ?? '-'}`);
  });
  const requests: IncomingMessage[] = [];
  const closes: { code: number; reason: string }[] = [];
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: true,
    // The client offers several; the server picks b.v2 when offered.
    handleProtocols: (protocols) => (protocols.has('b.v2') ? 'b.v2' : false),
    verifyClient: (info, cb) => {
      if (info.req.url?.endsWith('/deny')) cb(false, 401, 'not you');
      else cb(true);
    },
  });
  wss.on('connection', (ws, req) => {
    requests.push(req);
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString();
      if (text === 'please close') ws.close(4002, 'upstream says bye');
      else if (text === 'please drop') ws.terminate();
      else ws.send(data, { binary: isBinary });
    });
    ws.on('close', (code, reason) => closes.push({ code, reason: reason.toString() }));
    ws.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    wss,
    requests,
    closes,
    close: () =>
      new Promise((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Opens a WebSocket and waits until it is open. */
async function connect(
  url: string,
  protocols: string[] = [],
  opts: { perMessageDeflate?: boolean } = {},
): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: opts.perMessageDeflate ?? false });
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) =>
      reject(new Error(`handshake answered ${res.statusCode} ${res.headers['x-trellis-error'] ?? ''}`)),
    );
    ws.once('error', reject);
  });
  return ws;
}

/** A handshake the gateway (or the upstream) refuses: its HTTP status, headers and body. */
function refused(
  url: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('error', () => {});
    ws.once('open', () => reject(new Error('the handshake succeeded')));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      const closed = res.socket.destroyed ? Promise.resolve() : once(res.socket, 'close').then(() => {});
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, closed }));
    });
  });
}

/** Sends a message and waits for its echo. */
async function roundTrip(ws: WebSocket, data: string | Buffer): Promise<{ data: Buffer; binary: boolean }> {
  const reply = once(ws, 'message') as Promise<[Buffer, boolean]>;
  ws.send(data);
  const [got, binary] = await reply;
  return { data: got, binary };
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.reject(new Error('already closed'));
  return new Promise((resolve) =>
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })),
  );
}

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

type RouteInput = NonNullable<ConfigInput['routes']>[number];

const wsRoutes = (extra: Partial<RouteInput> = {}): RouteInput[] => [
  {
    name: 'chat',
    match: { path: { prefix: '/chat' } },
    backends: [{ service: 'svc' }],
    rewrite: { path: { prefix: '/rooms' } },
    requestHeaders: { set: { 'x-from-route': 'chat' } },
    responseHeaders: { set: { 'x-route': 'chat' } },
    websocket: { enabled: true },
    ...extra,
  },
  {
    name: 'limited',
    match: { path: { prefix: '/limited' } },
    backends: [{ service: 'svc' }],
    websocket: { enabled: true, maxConnections: 2 },
  },
  {
    name: 'idle',
    match: { path: { prefix: '/idle' } },
    backends: [{ service: 'svc' }],
    websocket: { enabled: true, idleTimeout: 500 },
  },
  {
    name: 'small',
    match: { path: { prefix: '/small' } },
    backends: [{ service: 'svc' }],
    websocket: { enabled: true, maxMessageBytes: 1024 },
  },
  { name: 'plain', backends: [{ service: 'svc' }] },
  {
    name: 'moved',
    match: { path: { exact: '/moved' } },
    redirect: { path: { full: '/chat/x' }, statusCode: 301 },
  },
];

describe('WebSocket proxying', () => {
  let up: WsUpstream;
  let gw: TestGateway;
  let base: string;

  beforeAll(async () => {
    up = await startWsUpstream();
    gw = await startGateway(simpleConfig(up.url, wsRoutes()));
    base = `ws://127.0.0.1:${gw.port}`;
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  test('echoes text and binary messages, through the route rewrite, header edits and forwarding headers', async () => {
    const ws = await connect(`${base}/chat/lobby?user=ann`);
    const text = await roundTrip(ws, 'hello');
    expect(text.binary).toBe(false);
    expect(text.data.toString()).toBe('hello');
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    const bin = await roundTrip(ws, bytes);
    expect(bin.binary).toBe(true);
    expect(bin.data.equals(bytes)).toBe(true);
    const req = up.requests.at(-1)!;
    expect(req.url).toBe('/rooms/lobby?user=ann');
    expect(req.headers['x-from-route']).toBe('chat');
    expect(req.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(req.headers.via).toBe('1.1 trellis');
    expect(req.headers.host).toBe(`127.0.0.1:${gw.port}`);
    ws.close();
    await closed(ws);
  });

  test('the 101 carries the upstream accept key, the gateway fields and the route response edits', async () => {
    const ws = new WebSocket(`${base}/chat/x`);
    const opened = once(ws, 'open');
    const [res] = (await once(ws, 'upgrade')) as [IncomingMessage];
    expect(res.statusCode).toBe(101);
    expect(res.headers['sec-websocket-accept']).toBeTruthy();
    expect(res.headers['x-route']).toBe('chat');
    expect(res.headers.via).toBe('1.1 trellis');
    expect(res.headers['x-request-id']).toBeTruthy();
    await opened;
    ws.close();
    await closed(ws);
  });

  test('subprotocol negotiation is end to end: the client offers two, the upstream picks one', async () => {
    const ws = await connect(`${base}/chat/p`, ['a.v1', 'b.v2']);
    expect(ws.protocol).toBe('b.v2');
    expect(up.requests.at(-1)!.headers['sec-websocket-protocol']).toBe('a.v1,b.v2');
    ws.close();
    await closed(ws);
  });

  test('permessage-deflate is negotiated between client and upstream', async () => {
    const ws = await connect(`${base}/chat/z`, [], { perMessageDeflate: true });
    expect(ws.extensions).toContain('permessage-deflate');
    expect(up.requests.at(-1)!.headers['sec-websocket-extensions']).toContain('permessage-deflate');
    const big = 'compress me '.repeat(2_000);
    const echo = await roundTrip(ws, big);
    expect(echo.data.toString()).toBe(big);
    ws.close();
    await closed(ws);
  });

  test('close codes go both ways: client 4001 reaches the upstream, upstream 4002 reaches the client', async () => {
    const a = await connect(`${base}/chat/c1`);
    const seen = up.closes.length;
    a.close(4001, 'client says bye');
    expect(await closed(a)).toEqual({ code: 4001, reason: 'client says bye' });
    await until(() => up.closes.length > seen);
    expect(up.closes.at(-1)).toEqual({ code: 4001, reason: 'client says bye' });

    const b = await connect(`${base}/chat/c2`);
    const done = closed(b);
    b.send('please close');
    expect(await done).toEqual({ code: 4002, reason: 'upstream says bye' });
  });

  test('a connection dropped on one side is dropped on the other (1006, no close frame)', async () => {
    const a = await connect(`${base}/chat/d1`);
    const done = closed(a);
    a.send('please drop');
    expect((await done).code).toBe(1006);

    const b = await connect(`${base}/chat/d2`);
    const seen = up.closes.length;
    b.terminate();
    await until(() => up.closes.length > seen);
    expect(up.closes.at(-1)!.code).toBe(1006);
    await until(() => gw.gateway.websockets.size === 0);
  });

  test('backpressure: a client that stops reading stops the upstream; the gateway does not buffer for it', async () => {
    const ws = await connect(`${base}/chat/bp`);
    const server = [...up.wss.clients].at(-1)!;
    ws.pause();
    const chunk = Buffer.alloc(1024 * 1024, 7);
    for (let i = 0; i < 64; i++) server.send(chunk);
    await new Promise((r) => setTimeout(r, 500));
    // At most the loopback socket buffers of two hops left the upstream; the rest waits there.
    expect(server.bufferedAmount).toBeGreaterThan(16 * 1024 * 1024);
    let got = 0;
    const all = new Promise<void>((resolve) =>
      ws.on('message', (d: Buffer) => {
        got += d.length;
        if (got === 64 * chunk.length) resolve();
      }),
    );
    ws.resume();
    await all;
    ws.close();
    await closed(ws);
  });

  test('an upgrade on a route without websocket enabled is refused with 403', async () => {
    const r = await refused(`${base}/other`);
    expect(r.status).toBe(403);
    expect(r.headers['content-type']).toBe('application/problem+json');
    const p = JSON.parse(r.body) as Problem;
    expect(p.code).toBe('websocket_not_enabled');
    expect(p.detail).toContain('routes[4].websocket.enabled');
    await r.closed;
  });

  test('a route that answers locally answers the upgrade request with its reply, then closes', async () => {
    const r = await refused(`${base}/moved`);
    expect(r.status).toBe(301);
    expect(r.headers.location).toBe('http://127.0.0.1:' + gw.port + '/chat/x');
    expect(r.headers.connection).toBe('close');
    await r.closed;
  });

  test('the upstream refusing the handshake reaches the client as its own reply', async () => {
    const r = await refused(`${base}/chat/deny`);
    expect(r.status).toBe(401);
    await r.closed;
  });

  test('maxConnections: the route takes 2, the third gets 503 until one closes', async () => {
    const a = await connect(`${base}/limited`);
    const b = await connect(`${base}/limited`);
    const r = await refused(`${base}/limited`);
    expect(r.status).toBe(503);
    expect((JSON.parse(r.body) as Problem).code).toBe('websocket_limit_reached');
    a.close();
    await closed(a);
    await until(() => gw.gateway.websockets.connections('limited') < 2);
    const c = await connect(`${base}/limited`);
    expect((await roundTrip(c, 'again')).data.toString()).toBe('again');
    b.close();
    c.close();
    await Promise.all([closed(b), closed(c)]);
  });

  test('an idle WebSocket is closed with 1001 on both sides', async () => {
    const ws = await connect(`${base}/idle`);
    const seen = up.closes.length;
    const t0 = Date.now();
    // Traffic keeps it open...
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 200));
      await roundTrip(ws, 'tick');
    }
    expect(ws.readyState).toBe(WebSocket.OPEN);
    // ...silence closes it.
    expect(await closed(ws)).toEqual({ code: 1001, reason: 'idle timeout' });
    expect(Date.now() - t0).toBeGreaterThan(1_200);
    await until(() => up.closes.length > seen);
    expect(up.closes.at(-1)).toEqual({ code: 1001, reason: 'idle timeout' });
  });

  test('a message over maxMessageBytes closes the WebSocket with 1009, and the message never arrives', async () => {
    const ws = await connect(`${base}/small`);
    expect((await roundTrip(ws, Buffer.alloc(1000, 1))).data.length).toBe(1000);
    const seen = up.closes.length;
    let got = 0;
    ws.on('message', () => got++);
    const done = closed(ws);
    ws.send(Buffer.alloc(5000, 2));
    expect(await done).toEqual({ code: 1009, reason: 'message too big' });
    expect(got).toBe(0);
    await until(() => up.closes.length > seen);
    expect(up.closes.at(-1)!.code).toBe(1009);
  });

  test('an Upgrade to another protocol (h2c) is served as a plain request, and the connection closes', async () => {
    const raw = await rawRequest(
      gw.port,
      'GET /other HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n',
    );
    expect(statusOf(raw)).toBe(200);
    expect(raw).toMatch(/\r\nConnection: close\r\n/i);
    expect(raw).toContain('plain GET /other upgrade=-');
  });

  test('an Upgrade request with a body is refused with 400', async () => {
    const raw = await rawRequest(
      gw.port,
      'POST /other HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\nhello',
    );
    expect(statusOf(raw)).toBe(400);
    expect(raw).toContain('upgrade_not_supported');
  });

  test('a WebSocket upgrade that is not a GET is refused with 400', async () => {
    const raw = await rawRequest(
      gw.port,
      'PUT /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    expect(statusOf(raw)).toBe(400);
    expect(raw).toContain('upgrade_not_supported');
  });
});

describe('WebSocket upstream failures', () => {
  test('upstream down: the handshake fails with 502 upstream_connect_refused, nothing upgraded', async () => {
    const port = await freePort();
    const gw = await startGateway(
      simpleConfig(`http://127.0.0.1:${port}`, [
        { name: 'ws', backends: [{ service: 'svc' }], websocket: { enabled: true } },
      ]),
    );
    try {
      const r = await refused(`ws://127.0.0.1:${gw.port}/`);
      expect(r.status).toBe(502);
      expect((JSON.parse(r.body) as Problem).code).toBe('upstream_connect_refused');
      expect(r.headers.connection).toBe('close');
      await r.closed;
      expect(gw.gateway.websockets.size).toBe(0);
    } finally {
      await gw.close();
    }
  });
});

describe('examples/ws-echo-service.js (the upstream of examples/websocket.yaml)', () => {
  test('echoes through the gateway, picks echo.v1, echoes the close code', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [join(ROOT, 'examples', 'ws-echo-service.js'), String(port)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await once(child.stderr!, 'data');
    const gw = await startGateway(
      simpleConfig(`http://127.0.0.1:${port}`, [
        { name: 'ws', backends: [{ service: 'svc' }], websocket: { enabled: true } },
      ]),
    );
    try {
      const ws = await connect(`ws://127.0.0.1:${gw.port}/rooms/a`, ['echo.v1']);
      expect(ws.protocol).toBe('echo.v1');
      expect((await roundTrip(ws, 'hi')).data.toString()).toBe('hi');
      const big = Buffer.alloc(100_000, 5);
      expect((await roundTrip(ws, big)).data.equals(big)).toBe(true);
      const done = closed(ws);
      ws.close(4005);
      expect((await done).code).toBe(4005);
    } finally {
      await gw.close();
      child.kill();
    }
  });
});

describe('WebSocket admission', () => {
  test("an open WebSocket holds one of the service's circuitBreaker.maxRequests until it closes", async () => {
    const up = await startWsUpstream();
    const gw = await startGateway({
      ...simpleConfig(up.url, [{ name: 'ws', backends: [{ service: 'svc' }], websocket: { enabled: true } }]),
      services: [{ name: 'svc', endpoints: [up.url], circuitBreaker: { maxRequests: 1 } }],
    });
    const url = `ws://127.0.0.1:${gw.port}/`;
    try {
      const a = await connect(url);
      const r = await refused(url);
      expect(r.status).toBe(503);
      expect((JSON.parse(r.body) as Problem).code).toBe('overloaded');
      a.close();
      await closed(a);
      await until(() => gw.gateway.websockets.size === 0);
      const b = await connect(url);
      expect((await roundTrip(b, 'in')).data.toString()).toBe('in');
      b.close();
      await closed(b);
    } finally {
      await gw.close();
      await up.close();
    }
  });
});

describe('WebSocket lifetime across reloads and drain', () => {
  let up: WsUpstream;
  beforeAll(async () => {
    up = await startWsUpstream();
  });
  afterAll(async () => {
    await up.close();
  });

  test('1,000 concurrent WebSockets keep echoing through 5 reloads, then all get 1001 on drain', async () => {
    const t0 = Date.now();
    // Each reload changes the route and the service (a new pool: the old one closes under the open tunnels).
    const config = (tag: string): ConfigInput => ({
      ...simpleConfig(up.url, wsRoutes({ responseHeaders: { set: { 'x-config': tag } } })),
      services: [
        {
          name: 'svc',
          endpoints: [up.url],
          circuitBreaker: { maxRequests: 5_000 },
          pool: { keepAliveTimeout: tag === 'a' ? 4_000 : 5_000 },
        },
      ],
    });
    const gw = await startGateway(config('a'));
    const url = `ws://127.0.0.1:${gw.port}/chat/load`;
    const clients: WebSocket[] = [];
    let closes = 0;
    let drained = false;
    try {
      for (let batch = 0; batch < 10; batch++) {
        const opened = await Promise.all(Array.from({ length: 100 }, () => connect(url)));
        for (const ws of opened) ws.on('close', () => closes++);
        clients.push(...opened);
      }
      expect(gw.gateway.websockets.size).toBe(1_000);
      const exchange = async (round: number) => {
        const replies = await Promise.all(clients.map((ws, i) => roundTrip(ws, `r${round} c${i}`)));
        replies.forEach((r, i) => {
          expect(r.data.toString()).toBe(`r${round} c${i}`);
        });
      };
      await exchange(0);
      for (let round = 1; round <= 5; round++) {
        // The reload lands while messages are in flight.
        const during = exchange(round);
        await gw.apply(config(round % 2 === 0 ? 'a' : 'b'));
        await during;
      }
      expect(closes).toBe(0);
      expect(clients.every((ws) => ws.readyState === WebSocket.OPEN)).toBe(true);
      expect(gw.gateway.websockets.size).toBe(1_000);

      const codes = clients.map((ws) => closed(ws));
      drained = true;
      await gw.close();
      const all = await Promise.all(codes);
      expect(all.every((c) => c.code === 1001)).toBe(true);
      expect(gw.gateway.websockets.size).toBe(0);
    } finally {
      for (const ws of clients) ws.terminate();
      if (!drained) await gw.close();
    }
    expect(Date.now() - t0).toBeLessThan(30_000);
  }, 60_000);

  test('a reload that removes the route closes its WebSockets with 1001 after websocketGrace; kept routes stay', async () => {
    const config = (withChat: boolean): ConfigInput =>
      simpleConfig(
        up.url,
        wsRoutes().filter((r) => withChat || r.name !== 'chat'),
        { gateway: { websocketGrace: 1_000 } },
      );
    const gw = await startGateway(config(true));
    const base = `ws://127.0.0.1:${gw.port}`;
    try {
      const chat = await connect(`${base}/chat/a`);
      const kept = await connect(`${base}/limited`);
      // Removed and brought back within the grace period: nothing happens.
      await gw.apply(config(false));
      await new Promise((r) => setTimeout(r, 50));
      await gw.apply(config(true));
      await new Promise((r) => setTimeout(r, 1_200));
      expect(chat.readyState).toBe(WebSocket.OPEN);
      expect((await roundTrip(chat, 'still here')).data.toString()).toBe('still here');

      const t0 = Date.now();
      const done = closed(chat);
      await gw.apply(config(false));
      expect(await done).toEqual({ code: 1001, reason: 'route removed' });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
      expect(kept.readyState).toBe(WebSocket.OPEN);
      expect((await roundTrip(kept, 'kept')).data.toString()).toBe('kept');
      kept.close();
      await closed(kept);
    } finally {
      await gw.close();
    }
  });

  test('trellis gateway: SIGHUP reloads keep WebSockets open, SIGTERM closes them with 1001 and exits 0', async () => {
    const yaml = (tag: string) =>
      gatewayYaml(`    websocket: { enabled: true }
    responseHeaders:
      set: { x-config: "${tag}" }
`);
    const gp = await spawnGateway(yaml('a'), { upstream: up.url });
    try {
      await gp.waitReady();
      const clients = await Promise.all(
        Array.from({ length: 20 }, () => connect(`ws://127.0.0.1:${gp.port}/p`)),
      );
      for (const tag of ['b', 'c']) {
        const before = (await gp.admin('/ready')).body.version as number;
        gp.writeConfig(yaml(tag));
        gp.kill('SIGHUP');
        for (let i = 0; ; i++) {
          if (((await gp.admin('/ready')).body.version as number) > before) break;
          if (i === 200) throw new Error('reload not applied');
          await new Promise((r) => setTimeout(r, 25));
        }
        const replies = await Promise.all(clients.map((ws, i) => roundTrip(ws, `${tag}${i}`)));
        expect(replies.map((r) => r.data.toString())).toEqual(clients.map((_, i) => `${tag}${i}`));
      }
      const codes = Promise.all(clients.map((ws) => closed(ws)));
      gp.kill('SIGTERM');
      expect((await codes).map((c) => c.code)).toEqual(clients.map(() => 1001));
      expect(await gp.exited).toBe(0);
    } finally {
      gp.kill('SIGKILL');
    }
  }, 30_000);
});
