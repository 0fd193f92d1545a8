/**
 * `translate: { type: websocket }`: the REST → WebSocket bridge (docs/websocket-bridge.md), a route handler.
 *
 * - `mode: request-reply`: an HTTP request becomes one JSON message on a pooled WebSocket to the route's service,
 *   carrying a correlation id the gateway makes (in the field `correlationField`); the message with the same id
 *   is the reply, awaited within the route's `timeouts.request`.
 * - `mode: events`: a GET becomes a Server-Sent Events stream of the messages the upstream WebSocket sends (one
 *   shared connection per endpoint, an optional subscribe message when it opens, an optional filter per client).
 *
 * Connections are bounded (`poolSize`), as are replies outstanding (`maxPending`), event-stream clients
 * (`maxSubscribers`) and messages both ways (`maxMessageBytes`). Connects that fail back off; idle connections
 * close. A bridge is kept across reloads while its route's config is unchanged, so its connections are too.
 */
import { z } from 'zod';
import { byteSize, duration, headerName, headerValue, pathValue } from '../../config/primitives.js';
import type { LocalReply } from '../../proxy/stage.js';
import type { HandlerContext, RouteHandler } from '../../proxy/translate.js';
import type { TranslateKind } from '../kinds.js';
import { BridgeFailure, WsPool } from './pool.js';

const fieldName = z.string().min(1).max(100);

const schema = z
  .strictObject({
    mode: z
      .enum(['request-reply', 'events'])
      .default('request-reply')
      .describe(
        '`request-reply`: each HTTP request is a message and waits for its reply; `events`: a GET is a Server-Sent Events stream of the messages the upstream sends.',
      ),
    path: pathValue.default('/').describe('Path (and query) of the WebSocket endpoint on the upstream.'),
    subprotocol: z
      .string()
      .min(1)
      .optional()
      .describe('WebSocket subprotocol asked for (`Sec-WebSocket-Protocol`).'),
    headers: z
      .record(headerName, headerValue)
      .default({})
      .describe(
        "Fields sent with the upgrade request (the connection is shared: never a client's own credentials).",
      ),
    correlationField: fieldName
      .default('id')
      .describe(
        "The message field that carries the correlation id: set by the gateway in each request message (a new id, never the client's), and read from replies.",
      ),
    envelope: z
      .enum(['request', 'body'])
      .default('request')
      .describe(
        "`request`: the message is `{ <correlationField>, method, path, params, query, consumer, body }` (body as JSON when the request is JSON, else text); `body`: the request's JSON object body itself, with the correlation field added.",
      ),
    replyField: fieldName
      .optional()
      .describe(
        'The field of the reply sent to the client as the body; absent: the whole reply without the correlation field.',
      ),
    statusField: fieldName
      .optional()
      .describe(
        'A reply field holding the HTTP status to answer with (an integer 200-599); absent or invalid: 200.',
      ),
    poolSize: z
      .number()
      .int()
      .min(1)
      .max(64)
      .default(4)
      .describe('WebSocket connections per upstream endpoint.'),
    maxPending: z
      .number()
      .int()
      .min(1)
      .default(1000)
      .describe(
        'Requests waiting for a reply, over all connections; more are refused with 503 `websocket_bridge_overloaded`.',
      ),
    maxMessageBytes: byteSize
      .default(1024 * 1024)
      .describe(
        'Largest message either way: a larger request 413 `websocket_bridge_request_too_large`; a larger upstream message closes that connection (1009) and its waiting requests get 502 `websocket_bridge_reply_too_large`.',
      ),
    connectTimeout: duration.prefault('5s').describe('Time for the WebSocket handshake with the upstream.'),
    idleTimeout: duration
      .prefault('60s')
      .describe('A connection with nothing outstanding is closed after this long.'),
    reconnect: z
      .strictObject({
        initial: duration.prefault('100ms').describe('Wait after the first failed connect.'),
        max: duration
          .prefault('10s')
          .describe('Longest wait (the wait doubles after each failed connect, with jitter).'),
      })
      .prefault({})
      .describe(
        'Backoff after failed connects; meanwhile requests fail fast with 502 `websocket_bridge_unavailable`.',
      ),
    events: z
      .strictObject({
        subscribe: z
          .string()
          .optional()
          .describe('A message (JSON text) sent on each new upstream connection, to subscribe.'),
        eventField: fieldName
          .optional()
          .describe('A message field whose value becomes the SSE `event:` name.'),
        filter: z
          .strictObject({
            field: fieldName.describe('The message field compared.'),
            param: fieldName.describe('The path parameter (or else query parameter) it must equal.'),
          })
          .optional()
          .describe(
            'Relay to a client only the messages whose `field` equals its `param` (`/events/:topic`).',
          ),
        heartbeat: duration
          .prefault('15s')
          .describe('An SSE comment this often, so idle streams stay open through proxies. 0: none.'),
        maxSubscribers: z
          .number()
          .int()
          .min(1)
          .default(1000)
          .describe('Event-stream clients at once; more are refused with 503 `websocket_bridge_overloaded`.'),
      })
      .prefault({})
      .describe('The `events` mode.'),
  })
  .refine((c) => c.events.subscribe === undefined || isJson(c.events.subscribe), {
    path: ['events', 'subscribe'],
    message: 'expected JSON text',
  })
  .describe('REST → WebSocket bridge (docs/websocket-bridge.md).');

function isJson(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

export type WebSocketTranslateConfig = z.output<typeof schema>;

const JSON_TYPE = /^application\/(?:[a-z0-9.+-]*\+)?json\s*(?:;|$)/i;

function overloaded(detail: string): LocalReply {
  return { kind: 'error', code: 'websocket_bridge_overloaded', detail, headers: { 'retry-after': '1' } };
}

interface Subscriber {
  message(msg: Record<string, unknown>): void;
  lost(f: BridgeFailure): void;
}

/** The state of one route's bridge: its pools by endpoint, counters, event-stream clients. */
class Bridge {
  readonly pools = new Map<string, WsPool>();
  readonly subscribers = new Map<WsPool, Set<Subscriber>>();
  pending = 0;
  streams = 0;
  constructor(readonly c: WebSocketTranslateConfig) {}

  pool(origin: string): WsPool {
    let p = this.pools.get(origin);
    if (p !== undefined) return p;
    const c = this.c;
    const url = `${origin.replace(/^http/, 'ws')}${c.path}`;
    p = new WsPool({
      url,
      size: c.mode === 'events' ? 1 : c.poolSize,
      maxMessageBytes: c.maxMessageBytes,
      connectTimeout: c.connectTimeout,
      idleTimeout: c.idleTimeout,
      backoffInitial: c.reconnect.initial,
      backoffMax: c.reconnect.max,
      subprotocol: c.subprotocol,
      headers: c.headers,
      correlationField: c.correlationField,
    });
    const subs = new Set<Subscriber>();
    this.subscribers.set(p, subs);
    const subscribe = c.events.subscribe;
    if (subscribe !== undefined) p.onOpen = (ws) => ws.send(subscribe);
    p.onEvent = (msg) => {
      for (const s of subs) s.message(msg);
    };
    p.onLost = (f) => {
      for (const s of [...subs]) s.lost(f);
    };
    this.pools.set(origin, p);
    return p;
  }
}

// Bridges by route name and config: a reload that leaves the route's `translate` (and name) alone keeps its
// connections. Bounded; a bridge dropped from here closes nothing (its connections close when idle).
const bridges = new Map<string, Bridge>();

function bridgeFor(route: string, c: WebSocketTranslateConfig): Bridge {
  const key = `${route}\u0000${JSON.stringify(c)}`;
  let b = bridges.get(key);
  if (b === undefined) {
    b = new Bridge(c);
    if (bridges.size >= 256) bridges.delete(bridges.keys().next().value!);
    bridges.set(key, b);
  }
  return b;
}

export const websocketTranslateKind: TranslateKind<WebSocketTranslateConfig> = {
  type: 'websocket',
  schema: schema as unknown as TranslateKind<WebSocketTranslateConfig>['schema'],
  validate(_c, ctx) {
    if (ctx.route.backends === undefined || ctx.route.backends.length === 0)
      ctx.issue([], 'the WebSocket bridge needs `backends` (the service it connects to)');
  },
  compile(c, ctx) {
    const bridge = bridgeFor(ctx.route.name, c);
    const handler: RouteHandler =
      c.mode === 'events' ? { handle: (h) => events(bridge, h) } : { handle: (h) => requestReply(bridge, h) };
    return { handler };
  },
};

function endpointOf(h: HandlerContext) {
  const ep = h.service?.pick(0, undefined);
  if (ep === undefined)
    h.reply({ kind: 'error', code: 'no_healthy_upstream', detail: 'no endpoint to connect to' });
  return ep;
}

async function requestReply(bridge: Bridge, h: HandlerContext): Promise<void> {
  const c = bridge.c;
  const sc = h.stage;
  const declared = Number(sc.headers['content-length'] ?? 0);
  if (declared > c.maxMessageBytes) {
    h.reply({
      kind: 'error',
      code: 'websocket_bridge_request_too_large',
      detail: `body of ${declared} bytes exceeds maxMessageBytes ${c.maxMessageBytes}`,
    });
    return;
  }
  if (bridge.pending >= c.maxPending) {
    h.reply(overloaded(`${bridge.pending} requests wait for replies (maxPending ${c.maxPending})`));
    return;
  }
  const ep = endpointOf(h);
  if (ep === undefined) return;
  const body = await h.readBody(c.maxMessageBytes);
  if (body === undefined || h.signal.aborted) return;
  const pool = bridge.pool(ep.origin);
  const id = pool.nextId();
  let message: string;
  const isJson = JSON_TYPE.test(String(sc.headers['content-type'] ?? ''));
  let parsed: unknown;
  if (body.length > 0 && (isJson || c.envelope === 'body')) {
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      h.reply({
        kind: 'error',
        code: 'websocket_bridge_request_invalid',
        detail: 'the body is not valid JSON',
      });
      return;
    }
  }
  if (c.envelope === 'body') {
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      h.reply({
        kind: 'error',
        code: 'websocket_bridge_request_invalid',
        detail: 'expected a JSON object body',
      });
      return;
    }
    message = JSON.stringify({ ...(parsed as object), [c.correlationField]: id });
  } else {
    const query = sc.query === '' ? {} : Object.fromEntries(new URLSearchParams(sc.query));
    message = JSON.stringify({
      [c.correlationField]: id,
      method: sc.method,
      path: sc.path,
      params: sc.params ?? {},
      query,
      consumer: sc.consumer?.name,
      body: body.length === 0 ? undefined : isJson ? parsed : body.toString('utf8'),
    });
  }
  const size = Buffer.byteLength(message);
  if (size > c.maxMessageBytes) {
    h.reply({
      kind: 'error',
      code: 'websocket_bridge_request_too_large',
      detail: `message of ${size} bytes exceeds maxMessageBytes ${c.maxMessageBytes}`,
    });
    return;
  }

  // One signal for "stop waiting": the client went away, or the route timeout fired.
  const stop = new AbortController();
  const onClientGone = () => stop.abort(h.signal.reason);
  h.signal.addEventListener('abort', onClientGone, { once: true });
  const timeout = h.requestTimeout;
  const timer =
    timeout > 0
      ? setTimeout(
          () =>
            stop.abort(
              new BridgeFailure('websocket_bridge_timeout', `no reply within ${timeout} ms`, 'timeout'),
            ),
          timeout,
        )
      : undefined;
  bridge.pending++;
  try {
    const reply = await pool.request(id, message, stop.signal);
    h.record('success', ep);
    let status = 200;
    if (c.statusField !== undefined) {
      const s = reply[c.statusField];
      if (typeof s === 'number' && Number.isInteger(s) && s >= 200 && s <= 599) status = s;
    }
    let out: unknown;
    if (c.replyField !== undefined) out = reply[c.replyField] ?? null;
    else {
      const { [c.correlationField]: _, ...rest } = reply;
      out = rest;
    }
    const json = JSON.stringify(out);
    h.sink.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(json),
    });
    h.sink.end(json);
  } catch (err) {
    if (h.signal.aborted) return; // the client left: nothing to answer
    if (!(err instanceof BridgeFailure)) throw err;
    h.record(err.outcome, ep);
    h.sink.fail(err.code, err.message);
  } finally {
    bridge.pending--;
    if (timer !== undefined) clearTimeout(timer);
    h.signal.removeEventListener('abort', onClientGone);
  }
}

async function events(bridge: Bridge, h: HandlerContext): Promise<void> {
  const c = bridge.c;
  const e = c.events;
  if (bridge.streams >= e.maxSubscribers) {
    h.reply(overloaded(`${bridge.streams} event streams are open (maxSubscribers ${e.maxSubscribers})`));
    return;
  }
  const ep = endpointOf(h);
  if (ep === undefined) return;
  const sc = h.stage;
  let want: string | undefined;
  if (e.filter !== undefined) {
    want = sc.params?.[e.filter.param] ?? new URLSearchParams(sc.query).get(e.filter.param) ?? undefined;
    if (want === undefined) {
      h.reply({
        kind: 'error',
        code: 'websocket_bridge_request_invalid',
        detail: `no path or query parameter "${e.filter.param}" to filter events by`,
      });
      return;
    }
  }
  const pool = bridge.pool(ep.origin);
  const subs = bridge.subscribers.get(pool)!;
  bridge.streams++;
  pool.subscribers++;
  let heartbeat: NodeJS.Timeout | undefined;
  let done = false;
  let congested = false;
  let backlog = 0;
  const sink = h.sink;
  const sub: Subscriber = {
    message(msg) {
      if (want !== undefined && String(msg[e.filter!.field]) !== want) return;
      const name = e.eventField !== undefined ? msg[e.eventField] : undefined;
      const frame = `${typeof name === 'string' && !/[\r\n]/.test(name) ? `event: ${name}\n` : ''}data: ${JSON.stringify(msg)}\n\n`;
      write(frame);
    },
    lost(f) {
      write(`event: error\ndata: ${JSON.stringify({ code: f.code, detail: f.message })}\n\n`);
      h.record(f.outcome, ep);
      finish();
      sink.end();
    },
  };
  // A client that cannot keep up is let go once a message's worth is queued for it (EventSource reconnects).
  const write = (frame: string) => {
    if (done) return;
    if (congested) {
      backlog += frame.length;
      if (backlog > c.maxMessageBytes) {
        finish();
        sink.end();
        return;
      }
    }
    if (!sink.write(frame) && !congested) {
      congested = true;
      backlog = 0;
      sink.drained().then(() => {
        congested = false;
      });
    }
  };
  const finish = () => {
    if (done) return;
    done = true;
    subs.delete(sub);
    bridge.streams--;
    pool.subscribers--;
    if (heartbeat !== undefined) clearInterval(heartbeat);
    h.signal.removeEventListener('abort', gone);
    h.shutdown?.removeEventListener('abort', shutdown);
  };
  // The gateway is draining (SIGTERM): end the stream now, so the client reconnects elsewhere and the drain does
  // not wait for its deadline.
  const shutdown = () => {
    finish();
    sink.end();
  };
  // The client went away (or the response ended): forget it. Ending the response too leaves no half-open reply
  // on a connection the client did not close after all (a cancelled body reader).
  const gone = () => {
    finish();
    sink.end();
  };
  h.signal.addEventListener('abort', gone, { once: true });
  if (h.shutdown?.aborted) {
    shutdown();
    return;
  }
  h.shutdown?.addEventListener('abort', shutdown, { once: true });
  try {
    await pool.connection();
  } catch (err) {
    finish();
    if (!(err instanceof BridgeFailure)) throw err;
    h.record(err.outcome, ep);
    sink.fail(err.code, err.message);
    return;
  }
  if (done) return;
  h.record('success', ep);
  subs.add(sub);
  sink.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  sink.write(': connected\n\n');
  if (e.heartbeat > 0) {
    heartbeat = setInterval(() => write(':\n\n'), e.heartbeat);
    heartbeat.unref();
  }
}
