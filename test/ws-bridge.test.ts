/**
 * The REST → WebSocket bridge (`translate: { type: websocket }`) against a real `ws` server: requests become
 * messages with a gateway-made correlation id on a bounded pool of connections and get their own replies, in any
 * order; timeouts, lost connections, oversized messages and full queues each get their own code; an event stream
 * relays what the upstream sends as Server-Sent Events; nothing is left behind when clients go away.
 */
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import { describe, expect, test } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import type { ConfigInput } from '../src/config/schema.js';
import { closedAfterEach, type Problem } from './helpers.js';
import { freePort, spawnGateway } from './process.js';

// biome-ignore lint/suspicious/noExplicitAny: JSON read field by field
type Json = any;
const t = closedAfterEach();

interface WsUpstream {
  readonly url: string;
  readonly port: number;
  /** Connections opened so far, and open now. */
  opened: number;
  readonly open: Set<WebSocket>;
  /** Messages received, parsed. */
  readonly received: Record<string, unknown>[];
  /** Sends to every open connection. */
  broadcast(msg: unknown): void;
  close(): Promise<void>;
}

/** A ws server: replies `{ id, status, result }` to each message, with behaviours chosen by the request path. */
async function wsUpstream(): Promise<WsUpstream> {
  const server: Server = createServer();
  const wss = new WebSocketServer({ server, maxPayload: 64 * 1024 * 1024 });
  const up: WsUpstream = {
    url: '',
    port: 0,
    opened: 0,
    open: new Set(),
    received: [],
    broadcast(msg) {
      for (const ws of up.open) ws.send(JSON.stringify(msg));
    },
    close: async () => {
      for (const ws of up.open) ws.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  wss.on('connection', (ws, req) => {
    up.opened++;
    up.open.add(ws);
    ws.on('close', () => up.open.delete(ws));
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as Record<string, unknown>;
      up.received.push({ ...m, url: req.url });
      const path = String(m.path ?? '');
      if (path === '/slow') return; // never answers
      if (path === '/close') {
        ws.terminate();
        return;
      }
      if (path === '/big') {
        ws.send(JSON.stringify({ id: m.id, result: 'x'.repeat(200_000) }));
        return;
      }
      const delay = path.startsWith('/delay/') ? Number(path.slice(7)) : 0;
      const reply = () =>
        ws.send(
          JSON.stringify({ id: m.id, status: path === '/created' ? 201 : undefined, result: { echo: m } }),
        );
      if (delay > 0) setTimeout(reply, delay);
      else reply();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  Object.assign(up, { url: `http://127.0.0.1:${port}`, port });
  t.cleanup.push(() => up.close());
  return up;
}

function config(
  endpoint: string,
  translate: Record<string, unknown>,
  route: Record<string, unknown> = {},
): ConfigInput {
  return {
    listeners: [{ name: 'public', port: 0 }],
    admin: { enabled: false },
    services: [{ name: 'ws', endpoints: [endpoint] }],
    routes: [
      {
        name: `bridge-${Math.random().toString(36).slice(2)}`,
        backends: [{ service: 'ws' }],
        translate: { type: 'websocket', path: '/rpc', ...translate },
        ...route,
      },
    ],
  } as ConfigInput;
}

async function call(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: Json }> {
  const r = await fetch(url, init);
  return { status: r.status, headers: r.headers, body: await r.json() };
}

describe('request-reply', () => {
  test('a request becomes a message with a correlation id; its reply is the response', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(
      config(
        up.url,
        { statusField: 'status', replyField: 'result' },
        { match: { path: { template: '/things/:id' } } },
      ),
    );
    const r = await call(`${gw.url}/things/7?color=red`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'abc' },
      body: JSON.stringify({ n: 1 }),
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    const echo = r.body.echo;
    expect(echo).toMatchObject({
      method: 'POST',
      path: '/things/7',
      params: { id: '7' },
      query: { color: 'red' },
      body: { n: 1 },
    });
    expect(typeof echo.id).toBe('string');
    expect(echo.id).not.toBe('abc'); // the gateway's id, not the client's
    expect(up.received.at(-1)!.url).toBe('/rpc');
  });

  test('concurrent requests on a bounded pool each get their own reply, whatever the order', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(config(up.url, { poolSize: 2, replyField: 'result' }));
    const delays = Array.from({ length: 30 }, (_, i) => ((i * 37) % 7) * 15 + 1);
    const replies = await Promise.all(delays.map((d, i) => call(`${gw.url}/delay/${d}?i=${i}`)));
    replies.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(r.body.echo.query.i).toBe(String(i));
    });
    expect(up.opened).toBeLessThanOrEqual(2);
    expect(up.opened).toBeGreaterThanOrEqual(1);
  });

  test('the whole reply without the correlation field; envelope body; a reply status', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(
      config(up.url, { envelope: 'body', statusField: 'status', correlationField: 'id' }),
    );
    const r = await call(`${gw.url}/created`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ path: '/created', op: 'make' }),
    });
    expect(r.status).toBe(201);
    expect(r.body.id).toBeUndefined();
    expect(r.body.result.echo).toMatchObject({ path: '/created', op: 'make' });
    const bad = await call(`${gw.url}/x`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '[1]',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('websocket_bridge_request_invalid');
  });

  test('no reply within the route timeout: 504 websocket_bridge_timeout', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(config(up.url, {}, { timeouts: { request: '200ms' } }));
    const started = performance.now();
    const r = await call(`${gw.url}/slow`);
    expect(r.status).toBe(504);
    expect(r.body).toMatchObject({ code: 'websocket_bridge_timeout', detail: 'no reply within 200 ms' });
    expect(performance.now() - started).toBeLessThan(1500);
  });

  test('a handshake that hangs: the route timeout still answers in time (504), not the connect timeout', async () => {
    // Accepts TCP and never answers the WebSocket handshake.
    const openSockets: Socket[] = [];
    const silent = createNetServer((socket) => {
      openSockets.push(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    const gw = await t.gateway(
      config(`http://127.0.0.1:${port}`, { connectTimeout: '5s' }, { timeouts: { request: '200ms' } }),
    );
    const started = performance.now();
    const r = await call(`${gw.url}/x`);
    expect(r.status).toBe(504);
    expect(r.body.code).toBe('websocket_bridge_timeout');
    expect(performance.now() - started).toBeLessThan(1500);
    silent.close();
    for (const s of openSockets) s.destroy();
  });

  test('the connection lost before the reply: 502 websocket_bridge_unavailable; the next request reconnects', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(config(up.url, { replyField: 'result' }));
    const r = await call(`${gw.url}/close`);
    expect(r.status).toBe(502);
    expect((r.body as Problem).code).toBe('websocket_bridge_unavailable');
    expect(r.body.detail).toMatch(/^the upstream WebSocket closed \(1006\) before the reply$/);
    const again = await call(`${gw.url}/ok`);
    expect(again.status).toBe(200);
    expect(up.opened).toBe(2);
  });

  test('nothing listening: 502 websocket_bridge_unavailable, then fail fast during the backoff', async () => {
    const port = await freePort();
    const gw = await t.gateway(
      config(`http://127.0.0.1:${port}`, { reconnect: { initial: '5s', max: '5s' } }),
    );
    const r = await call(`${gw.url}/x`);
    expect(r.status).toBe(502);
    expect(r.body.code).toBe('websocket_bridge_unavailable');
    expect(r.body.detail).toMatch(/^cannot open a WebSocket to the upstream: .*ECONNREFUSED/);
    const started = performance.now();
    const fast = await call(`${gw.url}/x`);
    expect(fast.body.code).toBe('websocket_bridge_unavailable');
    expect(fast.body.detail).toMatch(/\(next attempt in \d+ ms\)$/);
    expect(performance.now() - started).toBeLessThan(200);
  });

  test('oversized messages: 413 for the request, 502 websocket_bridge_reply_too_large for the reply', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(config(up.url, { maxMessageBytes: '64KiB' }));
    const big = await call(`${gw.url}/x`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'y'.repeat(100_000),
    });
    expect(big.status).toBe(413);
    expect(big.body).toMatchObject({
      code: 'websocket_bridge_request_too_large',
      detail: 'body of 100000 bytes exceeds maxMessageBytes 65536',
    });
    const reply = await call(`${gw.url}/big`);
    expect(reply.status).toBe(502);
    expect(reply.body.code).toBe('websocket_bridge_reply_too_large');
    expect((await call(`${gw.url}/ok`)).status).toBe(200);
  });

  test('maxPending full: 503 websocket_bridge_overloaded; a client that leaves frees its place', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(config(up.url, { maxPending: 1 }, { timeouts: { request: '10s' } }));
    const leaving = new AbortController();
    const first = fetch(`${gw.url}/slow`, { signal: leaving.signal }).catch(() => undefined);
    while (up.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    const second = await call(`${gw.url}/ok`);
    expect(second.status).toBe(503);
    expect(second.body.code).toBe('websocket_bridge_overloaded');
    expect(second.headers.get('retry-after')).toBe('1');
    leaving.abort();
    await first;
    let after = await call(`${gw.url}/ok`);
    for (let i = 0; i < 50 && after.status === 503; i++) {
      await new Promise((r) => setTimeout(r, 10));
      after = await call(`${gw.url}/ok`);
    }
    expect(after.status).toBe(200);
  });

  test('a reload that keeps the route keeps its connections', async () => {
    const up = await wsUpstream();
    const cfg = config(up.url, {});
    const gw = await t.gateway(cfg);
    expect((await call(`${gw.url}/ok`)).status).toBe(200);
    await gw.apply({ ...cfg, accessLog: { output: 'off', sample: 0.5 } } as ConfigInput);
    expect((await call(`${gw.url}/ok`)).status).toBe(200);
    expect(up.opened).toBe(1);
  });

  test('an idle connection is closed after idleTimeout', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(config(up.url, { idleTimeout: '150ms' }));
    expect((await call(`${gw.url}/ok`)).status).toBe(200);
    expect(up.open.size).toBe(1);
    const deadline = Date.now() + 2000;
    while (up.open.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(up.open.size).toBe(0);
  });
});

/** Reads Server-Sent Events from a response until `n` data events arrived (or the stream ended). */
async function readEvents(res: Response, n: number): Promise<{ event?: string; data: unknown }[]> {
  const out: { event?: string; data: unknown }[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  while (out.length < n) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i = buf.indexOf('\n\n');
    while (i !== -1) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event: string | undefined;
      let data: string | undefined;
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        if (line.startsWith('data: ')) data = line.slice(6);
      }
      if (data !== undefined) out.push({ event, data: JSON.parse(data) });
      i = buf.indexOf('\n\n');
    }
  }
  await reader.cancel().catch(() => {});
  return out;
}

describe('events (Server-Sent Events)', () => {
  test('upstream messages reach every client as SSE; the subscribe message goes once per connection; filters', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(
      config(
        up.url,
        {
          mode: 'events',
          path: '/events',
          events: {
            subscribe: '{"subscribe":"prices"}',
            eventField: 'type',
            filter: { field: 'symbol', param: 'symbol' },
          },
        },
        { match: { path: { template: '/prices/:symbol' } } },
      ),
    );
    const a = await fetch(`${gw.url}/prices/ACME`);
    const b = await fetch(`${gw.url}/prices/INIT`);
    expect(a.status).toBe(200);
    expect(a.headers.get('content-type')).toBe('text/event-stream');
    while (up.received.length < 1) await new Promise((r) => setTimeout(r, 5));
    expect(up.opened).toBe(1); // one shared connection
    expect(up.received).toEqual([{ subscribe: 'prices', url: '/events' }]);
    const readA = readEvents(a, 2);
    const readB = readEvents(b, 1);
    up.broadcast({ type: 'tick', symbol: 'ACME', price: 1 });
    up.broadcast({ type: 'tick', symbol: 'INIT', price: 2 });
    up.broadcast({ type: 'tick', symbol: 'ACME', price: 3 });
    expect(await readA).toEqual([
      { event: 'tick', data: { type: 'tick', symbol: 'ACME', price: 1 } },
      { event: 'tick', data: { type: 'tick', symbol: 'ACME', price: 3 } },
    ]);
    expect(await readB).toEqual([{ event: 'tick', data: { type: 'tick', symbol: 'INIT', price: 2 } }]);
  });

  test('the upstream connection lost: an error event with the code, and the stream ends', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(config(up.url, { mode: 'events', path: '/events' }));
    const res = await fetch(`${gw.url}/feed`);
    while (up.open.size < 1) await new Promise((r) => setTimeout(r, 5));
    const reading = readEvents(res, 2);
    up.broadcast({ n: 1 });
    await new Promise((r) => setTimeout(r, 50));
    for (const ws of up.open) ws.terminate();
    const events = await reading;
    expect(events[0]).toEqual({ data: { n: 1 } });
    expect(events[1]).toMatchObject({ event: 'error', data: { code: 'websocket_bridge_unavailable' } });
  });

  test('clients that leave are forgotten; the last one leaving lets the connection go idle', async () => {
    const up = await wsUpstream();
    const gw = await t.gateway(
      config(up.url, {
        mode: 'events',
        path: '/events',
        idleTimeout: '100ms',
        events: { maxSubscribers: 2 },
      }),
    );
    const c1 = new AbortController();
    const c2 = new AbortController();
    const r1 = await fetch(`${gw.url}/feed`, { signal: c1.signal });
    const r2 = await fetch(`${gw.url}/feed`, { signal: c2.signal });
    expect(r1.status).toBe(200);
    expect(r2.status).toBe(200);
    const third = await call(`${gw.url}/feed`);
    expect(third.status).toBe(503);
    expect(third.body.code).toBe('websocket_bridge_overloaded');
    c1.abort();
    c2.abort();
    const deadline = Date.now() + 3000;
    while (up.open.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(up.open.size).toBe(0);
    const again = await fetch(`${gw.url}/feed`);
    expect(again.status).toBe(200);
    await again.body!.cancel();
  });
});

describe('built gateway', () => {
  test('trellis gateway with a websocket bridge in YAML: a reply and an event stream', async () => {
    const up = await wsUpstream();
    const gw = await spawnGateway(
      `
listeners:
  - name: public
    port: {{PORT}}
admin:
  port: {{ADMIN_PORT}}
services:
  - name: ws
    endpoints: ["{{UPSTREAM}}"]
routes:
  - name: feed
    match: { path: { exact: /feed } }
    backends: [{ service: ws }]
    translate: { type: websocket, mode: events, path: /events }
  - name: rpc
    backends: [{ service: ws }]
    timeouts: { request: 2s }
    translate: { type: websocket, path: /rpc, replyField: result }
`,
      { upstream: up.url },
    );
    t.cleanup.push(async () => {
      gw.kill();
      await gw.exited;
    });
    await gw.waitReady();
    const r = await call(`${gw.url}/hello?x=1`);
    expect(r.status).toBe(200);
    expect(r.body.echo).toMatchObject({ method: 'GET', path: '/hello', query: { x: '1' } });
    // An event stream relays the upstream's messages; SIGTERM ends it at once, so the drain does not wait for
    // its 30 s deadline.
    const res = await fetch(`${gw.url}/feed`);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    while (up.open.size < 2) await new Promise((r) => setTimeout(r, 5));
    const reader = res.body!.getReader();
    await reader.read(); // ": connected"
    up.broadcast({ hello: 'sse' });
    let text = '';
    while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    expect(text).toBe('data: {"hello":"sse"}\n\n');
    const started = performance.now();
    gw.kill('SIGTERM');
    while (!(await reader.read()).done);
    expect(await gw.exited).toBe(0);
    expect(performance.now() - started).toBeLessThan(5000);
  }, 30_000);
});
