import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
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
  const scheme = l.tls === undefined ? l.protocol : `${l.protocol}+tls`;
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
    // An https.Server has the whole request API of an http.Server (it only is not an instanceof one).
    this.server =
      this.tls === undefined
        ? createServer(options)
        : (createHttpsServer({
            ...options,
            ...this.tls.serverOptions(l.timeouts.headers),
          }) as unknown as Server);
    this.tls?.attach(this.server as unknown as TlsServer);
    this.apply(state);
    const onRequest = (req: IncomingMessage, res: ServerResponse, expectContinue: boolean) => {
      const state = this.state;
      if (this.#retired) {
        res.shouldKeepAlive = false;
        sendProblem(res, 'service_unavailable', 'this listener was removed by a config reload', undefined);
        return;
      }
      if (req.rawHeaders.length > this.#maxHeaderCount * 2) {
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
    this.server.on('request', function trellisRequest(req, res) {
      onRequest(req, res, false);
    });
    this.server.on('checkContinue', function trellisExpectContinue(req, res) {
      onRequest(req, res, true);
    });
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
      this.server.closeIdleConnections();
    });
  }

  /**
   * Removed by a reload: stop accepting, let in-flight requests finish, close connections as they go idle, and
   * after `deadlineMs` close whatever is left. Resolves when the last connection is gone.
   */
  retire(deadlineMs: number): Promise<void> {
    this.#retired = true;
    const closed = this.close();
    this.#sweep = setInterval(() => this.server.closeIdleConnections(), 250);
    const hard = setTimeout(() => this.server.closeAllConnections(), deadlineMs);
    return closed.finally(() => {
      clearInterval(this.#sweep);
      clearTimeout(hard);
    });
  }
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
