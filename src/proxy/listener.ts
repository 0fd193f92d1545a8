import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  createSecureServer as createHttp2SecureServer,
  createServer as createHttp2Server,
  type Http2Server,
  type Http2Session,
  type SecureServerOptions,
} from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import type { ListenerState } from '../compile/snapshot.js';
import type { ListenerConfig } from '../config/schema.js';
import type { ErrorCode } from '../core/errors.js';
import { rawProblemResponse, sendProblem } from '../core/problem.js';
import { Exchange, type ExchangeHost, kAnswered } from './exchange.js';
import { TlsTerminator } from './tls.js';
import { handleUpgrade, refuse } from './websocket.js';

/** Listeners are identified by what they bind; everything else is applied in place on reload. */
export function listenerKey(l: ListenerConfig): string {
  // TLS settings and certificates change in place; turning TLS on or off needs another kind of server.
  // HTTP/2 on or off is another kind of server too (an http2 secure server, or the h2c preface sniffer).
  const scheme =
    l.tls === undefined
      ? `${l.protocol}${l.http2.h2c ? '+h2c' : ''}`
      : `${l.protocol}+tls${l.http2.enabled ? '+h2' : ''}`;
  const key = `${scheme}://${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}`;
  // Port 0 binds a new port each time: two such listeners are two sockets.
  return l.port === 0 ? `${key}#${l.name}` : key;
}

/**
 * A bound socket that lives across reloads. Each request reads `state` once, so it finishes on the snapshot it
 * started with while the next request already sees the new one.
 */
export class ListenerRuntime {
  readonly key: string;
  readonly server: Server;
  /** HTTPS listeners: contexts by SNI, client certificate settings, certificate reload. */
  readonly tls: TlsTerminator | undefined;
  state: ListenerState;
  #maxHeaderCount = 100;
  /** Removed by a reload: connections still open get a 503 and close; no new ones are accepted. */
  #retired = false;
  #sweep: NodeJS.Timeout | undefined;
  /** The cleartext HTTP/2 server that h2c connections are handed to (plain listeners with `http2.h2c`). */
  readonly #h2c: Http2Server | undefined;
  /** Open HTTP/2 sessions, closed (GOAWAY) by close() and destroyed by retire's deadline. */
  readonly #sessions = new Set<Http2Session>();
  /** An http2 secure server has no closeAllConnections: its TLS sockets (h2 and HTTP/1.1) are tracked here. */
  readonly #sockets: Set<Socket> | undefined;

  constructor(host: ExchangeHost, state: ListenerState, log?: Logger) {
    this.key = listenerKey(state.config);
    this.state = state;
    const l = state.config;
    const options = {
      maxHeaderSize: l.limits.maxHeaderBytes,
      // Checked by the exchange, so that the 400 is a problem+json reply like every other.
      requireHostHeader: false,
      insecureHTTPParser: false,
      joinDuplicateHeaders: false,
      noDelay: true,
      // Checks headers/request timeouts of open connections (slowloris) every second.
      connectionsCheckingInterval: 1000,
    };
    // Throws on bad certificate material: the apply that creates this listener fails before it binds.
    this.tls = l.tls === undefined ? undefined : new TlsTerminator(l.tls, l.name, log);
    // An https.Server, and an http2 secure server with allowHTTP1, have the whole request API of an http.Server
    // for HTTP/1.1 (they only are not instances of one); HTTP/2 streams arrive on the same 'request' event
    // through the compat API.
    const h2 = http2Options(l);
    if (this.tls === undefined) this.server = createServer(options);
    else if (l.http2.enabled)
      this.server = createHttp2SecureServer({
        ...options,
        ...this.tls.serverOptions(l.timeouts.headers, true),
        ...h2,
        allowHTTP1: true,
      } as SecureServerOptions) as unknown as Server;
    else
      this.server = createHttpsServer({
        ...options,
        ...this.tls.serverOptions(l.timeouts.headers),
      }) as unknown as Server;
    this.tls?.attach(this.server as unknown as TlsServer);
    this.#h2c = this.tls === undefined && l.http2.h2c ? createHttp2Server(h2) : undefined;
    if (typeof this.server.closeAllConnections === 'function') this.#sockets = undefined;
    else {
      const sockets = new Set<Socket>();
      this.#sockets = sockets;
      this.server.on('secureConnection', (socket: Socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      });
    }
    if (this.#h2c !== undefined) sniffPreface(this.server, this.#h2c);
    this.apply(state);
    const onRequest = (req: IncomingMessage, res: ServerResponse, expectContinue: boolean) => {
      const state = this.state;
      if (this.#retired) {
        res.shouldKeepAlive = false;
        sendProblem(res, 'service_unavailable', 'this listener was removed by a config reload', undefined);
        return;
      }
      // HTTP/2 requests carry four pseudo-headers in rawHeaders.
      if (req.rawHeaders.length > this.#maxHeaderCount * 2 + (req.httpVersionMajor === 2 ? 8 : 0)) {
        res.shouldKeepAlive = false;
        sendProblem(res, 'headers_too_large', `more than ${this.#maxHeaderCount} header fields`, undefined);
        return;
      }
      const ex = new Exchange(host, state, req, res);
      try {
        ex.start(expectContinue);
      } catch (err) {
        // A defect must cost one request, never the process.
        ex.failInternal(err);
      }
    };
    for (const server of this.#h2c === undefined ? [this.server] : [this.server, this.#h2c]) {
      server.on('request', function trellisRequest(req: IncomingMessage, res: ServerResponse) {
        onRequest(req, res, false);
      });
      server.on('checkContinue', function trellisExpectContinue(req: IncomingMessage, res: ServerResponse) {
        onRequest(req, res, true);
      });
      server.on('session', (session: Http2Session) => {
        this.#sessions.add(session);
        session.once('close', () => this.#sessions.delete(session));
        // The keep-alive idle time, for a session without open streams; a session that only pings or sends
        // frames that open nothing is idle too (every frame re-arms Node's session timer, so count streams).
        let open = 0;
        session.on('stream', (stream: { once(e: 'close', f: () => void): void }) => {
          open++;
          stream.once('close', () => open--);
        });
        const idle = this.state.config.timeouts.idle;
        if (idle > 0)
          session.setTimeout(idle, () => {
            if (open === 0) session.close();
          });
        // Flood protections end the session with an error (ENHANCE_YOUR_CALM, PROTOCOL_ERROR): never the process.
        session.on('error', () => session.destroy());
        if (this.#retired) session.close();
      });
    }
    // Timed-out and reset streams: an error on the stream would otherwise be unhandled.
    const onStreamError = () => {};
    this.#h2c?.on('stream', (stream) => stream.on('error', onStreamError));
    if (this.tls !== undefined && l.http2.enabled)
      this.server.on('stream', (stream: { on(e: string, f: () => void): void }) =>
        stream.on('error', onStreamError),
      );
    this.server.on('clientError', onClientError);
    // Upgrade requests (WebSocket; others are served as plain requests): see websocket.ts.
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      if (this.#retired)
        refuse(socket, 'service_unavailable', 'this listener was removed by a config reload');
      else if (req.rawHeaders.length > this.#maxHeaderCount * 2)
        refuse(socket, 'headers_too_large', `more than ${this.#maxHeaderCount} header fields`);
      else handleUpgrade(host, this, req, socket, head);
    });
    this.server.on('connection', (socket: Socket) => {
      const metrics = host.metrics;
      if (metrics === undefined) return;
      const name = this.state.name;
      metrics.connectionOpened(name, 'http1');
      socket.once('close', () => metrics.connectionClosed(name, 'http1'));
    });
  }

  /** Before an apply swaps: builds what `apply(state)` will need and may fail (new TLS contexts). Throws. */
  prepare(state: ListenerState): void {
    if (this.tls !== undefined && state.config.tls !== undefined) this.tls.prepare(state.config.tls);
  }

  /** Applies a new snapshot's settings for this listener in place (Node reads them per connection). */
  apply(state: ListenerState): void {
    const l = state.config;
    if (this.tls !== undefined && l.tls !== undefined) this.tls.commit(l.tls);
    // maxHeaderSize is a creation option in the types, but Node reads the property for each new connection.
    const s = this.server as Server & { maxHeaderSize: number };
    s.maxHeaderSize = l.limits.maxHeaderBytes;
    s.requestTimeout = l.timeouts.request;
    s.headersTimeout = Math.min(l.timeouts.headers, l.timeouts.request || l.timeouts.headers);
    s.keepAliveTimeout = l.timeouts.idle;
    s.timeout = 0;
    s.maxRequestsPerSocket = l.limits.maxRequestsPerConnection;
    // One more than the limit, so that a request over it is seen and refused instead of silently cut.
    s.maxHeadersCount = l.limits.maxHeaderCount + 1;
    this.#maxHeaderCount = l.limits.maxHeaderCount;
    s.maxConnections = l.limits.maxConnections ?? Number.POSITIVE_INFINITY;
    this.state = state;
  }

  listen(): Promise<void> {
    const l = this.state.config;
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: l.address, port: l.port, backlog: 511, exclusive: false }, () => {
        this.server.off('error', onError);
        this.tls?.watch();
        resolve();
      });
    });
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  /** Stops accepting; open connections finish their current request and close. */
  close(): Promise<void> {
    this.tls?.close();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.closeIdle();
    });
  }

  /** Closes HTTP/1.1 connections between requests, and sends GOAWAY to HTTP/2 sessions (open streams finish). */
  closeIdle(): void {
    // Not on an http2 secure server in every Node version.
    if (typeof this.server.closeIdleConnections === 'function') this.server.closeIdleConnections();
    for (const s of this.#sessions) if (!s.closed) s.close();
  }

  /** Closes every connection now, requests in flight or not. */
  closeAll(): void {
    if (this.#sockets === undefined) this.server.closeAllConnections();
    else for (const socket of this.#sockets) socket.destroy();
    for (const s of this.#sessions) s.destroy();
  }

  /**
   * Removed by a reload: stop accepting, let in-flight requests finish, close connections as they go idle, and
   * after `deadlineMs` close whatever is left. Resolves when the last connection is gone.
   */
  retire(deadlineMs: number): Promise<void> {
    this.#retired = true;
    const closed = this.close();
    this.#sweep = setInterval(() => this.closeIdle(), 250);
    const hard = setTimeout(() => this.closeAll(), deadlineMs);
    return closed.finally(() => {
      clearInterval(this.#sweep);
      clearTimeout(hard);
    });
  }
}

/** The HTTP/2 server options of a listener: its SETTINGS and the session-level flood limits. */
function http2Options(l: ListenerConfig): SecureServerOptions {
  const h = l.http2;
  return {
    settings: {
      maxConcurrentStreams: h.maxConcurrentStreams,
      maxHeaderListSize: h.maxHeaderListSize ?? l.limits.maxHeaderBytes,
      enablePush: false,
      ...(h.initialWindowSize === undefined ? {} : { initialWindowSize: h.initialWindowSize }),
    },
    // Pseudo-headers count as pairs too; more pairs than this end the stream.
    maxHeaderListPairs: l.limits.maxHeaderCount + 8,
    // Flood limits beside nghttp2's own (it ends a session whose PING/SETTINGS ACKs pile up unread, that resets
    // streams faster than its reset rate limit, or that sends too many CONTINUATION frames): invalid frames and
    // refused streams. A client that keeps opening streams over maxConcurrentStreams is cut off here.
    maxSessionInvalidFrames: 100,
    maxSessionRejectedStreams: 100,
    maxSettings: 32,
    ...(h.maxSessionMemory === undefined ? {} : { maxSessionMemory: h.maxSessionMemory }),
    // A connection that is neither h2 nor HTTP/1.1 is closed after this long.
    unknownProtocolTimeout: Math.max(1000, l.timeouts.headers),
  };
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * h2c by prior knowledge beside HTTP/1.1 on one port: each connection's first bytes decide. The HTTP/2 client
 * preface goes to `h2`; anything else to the HTTP/1.1 server's own connection handler. The bytes read are put
 * back (unshift) before either takes the socket, and the http2 session reads what is buffered first.
 */
function sniffPreface(server: Server, h2: Http2Server): void {
  const [http1] = server.listeners('connection') as Array<(socket: Socket) => void>;
  if (http1 === undefined) throw new Error('http.Server without a connection listener');
  server.off('connection', http1);
  server.prependListener('connection', (socket: Socket) => {
    let seen: Buffer = Buffer.alloc(0);
    const decide = (to: 'h1' | 'h2') => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.pause();
      if (seen.length > 0) socket.unshift(seen);
      // The http2 session reads what is buffered on the next tick and then consumes the handle itself: resuming
      // here would hand the preface to nobody.
      if (to === 'h2') h2.emit('connection', socket);
      else {
        http1.call(server, socket);
        socket.resume();
      }
    };
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      if (seen.compare(PREFACE, 0, n, 0, n) !== 0) decide('h1');
      else if (n === PREFACE.length) decide('h2');
    };
    const onError = () => socket.destroy();
    socket.on('data', onData);
    socket.on('error', onError);
    // Not even a whole preface (or request line) within the headers timeout: closed, as HTTP/1.1 would be.
    const timer = setTimeout(() => socket.destroy(), Math.max(1000, server.headersTimeout));
    socket.once('close', () => clearTimeout(timer));
  });
}

/** Parse errors, header overflow and timeouts, before a request object exists: a raw problem reply. */
function onClientError(err: Error & { code?: string }, socket: Socket): void {
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  const answered = (socket as Socket & { [kAnswered]?: boolean })[kAnswered] === true;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent || answered) {
    socket.destroy();
    return;
  }
  let code: ErrorCode = 'bad_request';
  if (err.code === 'HPE_HEADER_OVERFLOW') code = 'headers_too_large';
  else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') code = 'request_timeout';
  const reason = (err as { reason?: string }).reason ?? err.message;
  socket.end(rawProblemResponse(code, code === 'bad_request' ? `malformed request: ${reason}` : reason));
}
