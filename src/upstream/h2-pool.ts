/**
 * HTTP/2 to one endpoint (h2 over TLS, or h2c by prior knowledge) on node:http2 sessions, behind the same dispatch
 * interface as undici's Pool: the exchange's Attempt is the handler either way.
 *
 * Why not undici's own HTTP/2 client: it fails every stream of a session on GOAWAY (streams the server promised to
 * finish included), reports trailers as an object after the fact, and tells a refused stream from a reset only on
 * CONNECT. gRPC needs all three: graceful server restarts, grpc-status in the trailers, and refused streams retried
 * as "nothing was processed".
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  constants,
  connect as h2connect,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import type { UpstreamTls } from './upstream-tls.js';

export interface H2PoolOptions {
  /** Most sessions (connections) to the endpoint. */
  readonly connections: number;
  /** Most streams per session; the endpoint's SETTINGS may lower it. */
  readonly maxConcurrentStreams: number;
  /** A session without streams for this long is closed. */
  readonly keepAliveTimeout: number;
  /** TCP (and TLS) connect time limit. */
  readonly connectTimeout: number;
  /** TLS (h2); undefined: cleartext (h2c). */
  readonly tls: UpstreamTls | undefined;
  /** SNI and the name the certificate is checked against; undefined: none (an IP address). */
  readonly servername: string | undefined;
}

/** What an attempt dispatches: the part of undici's DispatchOptions the exchange uses. */
export interface H2DispatchOptions {
  path: string;
  method: string;
  /** Flat [name, value, …], names lower case. */
  headers: string[];
  body: Buffer | Readable | null;
  /** Longest silence once the response started; 0: none. */
  bodyTimeout?: number;
  /** Longest wait for the response headers; 0: none (the exchange's own timers cover attempts). */
  headersTimeout?: number;
}

/** The handler callbacks (undici's legacy handler shape) that the exchange's Attempt implements. */
export interface H2Handler {
  onConnect(abort: (err?: Error) => void): void;
  onHeaders(status: number, raw: Buffer[], resume: () => void, text: string): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: string[] | null): void;
  onError(err: Error): void;
  onBodySent?(chunk: Buffer): void;
  /** Set before onHeaders when the response ended with its headers (a gRPC trailers-only reply). */
  trailersOnly?: boolean;
}

/** Errors with the codes `classifyUpstreamError` knows. */
export function h2Error(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** Fields HTTP/2 forbids (RFC 9113 §8.2.2) or that become pseudo-headers. */
const SKIP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'te',
]);

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = constants;
/** After a failed connect, requests wait for the open sessions this long before another connect is tried. */
const RECONNECT_PAUSE_MS = 250;
const END_STREAM = constants.NGHTTP2_FLAG_END_STREAM;

class Session {
  readonly session: ClientHttp2Session;
  /** Streams open on it. */
  active = 0;
  /** Most streams: ours, or fewer when the endpoint's SETTINGS say so. */
  limit: number;
  ready = false;
  /** GOAWAY received, closing or closed: no new streams. */
  done = false;
  idle: NodeJS.Timeout | undefined = undefined;
  constructor(session: ClientHttp2Session, limit: number) {
    this.session = session;
    this.limit = limit;
  }
}

interface Queued {
  readonly opts: H2DispatchOptions;
  readonly handler: H2Handler;
}

export class H2Pool {
  readonly #origin: URL;
  readonly #scheme: 'http' | 'https';
  readonly #o: H2PoolOptions;
  #sessions: Session[] = [];
  #connecting = 0;
  readonly #queue: Queued[] = [];
  #closing = false;
  /** When a connect last failed: no new session for a moment, so a refusing endpoint is not hammered. */
  #failedAt = 0;
  #closed: Promise<void> | undefined;
  #resolveClosed: (() => void) | undefined;

  constructor(origin: string, o: H2PoolOptions) {
    this.#origin = new URL(origin);
    this.#scheme = o.tls === undefined ? 'http' : 'https';
    this.#o = o;
  }

  /** Sessions open or opening (for tests and views). */
  get sessions(): number {
    return this.#sessions.length;
  }

  dispatch(opts: H2DispatchOptions, handler: H2Handler): boolean {
    if (this.#closing) {
      queueMicrotask(() => handler.onError(h2Error('the upstream pool is closed', 'UND_ERR_CLOSED')));
      return false;
    }
    const s = this.#free();
    if (s !== undefined) this.#start(s, opts, handler);
    else {
      this.#queue.push({ opts, handler });
      this.#grow();
    }
    return true;
  }

  /** Graceful: queued requests are still sent, open streams finish, then the sessions close. */
  close(): Promise<void> {
    if (this.#closed === undefined) {
      this.#closing = true;
      this.#closed = new Promise((resolve) => {
        this.#resolveClosed = resolve;
      });
      this.#maybeClosed();
    }
    return this.#closed;
  }

  /** A ready session with room for one more stream. */
  #free(): Session | undefined {
    let best: Session | undefined;
    for (const s of this.#sessions) {
      if (!s.ready || s.done || s.active >= s.limit) continue;
      // The busiest session with room: the others can go idle and close.
      if (best === undefined || s.active > best.active) best = s;
    }
    return best;
  }

  /** Opens a session when requests wait and none is opening (one at a time: it may take a hundred streams). */
  #grow(): void {
    if (this.#connecting > 0 || this.#queue.length === 0) return;
    if (this.#sessions.length >= this.#o.connections) return;
    if (this.#sessions.length > 0 && performance.now() - this.#failedAt < RECONNECT_PAUSE_MS) return;
    this.#open();
  }

  #open(): void {
    const o = this.#o;
    const host = this.#origin.hostname.startsWith('[')
      ? this.#origin.hostname.slice(1, -1)
      : this.#origin.hostname;
    const port = Number(this.#origin.port) || (this.#scheme === 'https' ? 443 : 80);
    let socket: Socket;
    if (o.tls === undefined) socket = netConnect({ host, port, noDelay: true });
    else
      socket = tlsConnect({
        host,
        port,
        servername: o.servername,
        secureContext: o.tls.context,
        ALPNProtocols: ['h2'],
        // Verification is never off: the certificate must chain to the CA bundle and name `servername`.
        rejectUnauthorized: true,
      });
    const connectEvent = o.tls === undefined ? 'connect' : 'secureConnect';
    const timer = setTimeout(() => {
      socket.destroy(
        h2Error(
          `connect to ${this.#origin.host} timed out after ${o.connectTimeout} ms`,
          'UND_ERR_CONNECT_TIMEOUT',
        ),
      );
    }, o.connectTimeout);
    socket.once(connectEvent, () => {
      clearTimeout(timer);
      if (o.tls !== undefined && (socket as TLSSocket).alpnProtocol !== 'h2')
        socket.destroy(
          h2Error(
            `${this.#origin.host} did not agree to HTTP/2 (ALPN: ${(socket as TLSSocket).alpnProtocol || 'none'})`,
            'TRELLIS_H2_ALPN',
          ),
        );
    });
    const session = h2connect(`${this.#scheme}://${this.#origin.host}`, {
      createConnection: () => socket,
      settings: { enablePush: false },
      peerMaxConcurrentStreams: o.maxConcurrentStreams,
    });
    const s = new Session(session, o.maxConcurrentStreams);
    this.#sessions.push(s);
    this.#connecting++;
    let connected = false;
    session.once('connect', () => {
      connected = true;
      this.#connecting--;
      s.ready = true;
      this.#drain();
    });
    session.on('remoteSettings', (settings) => {
      const max = settings.maxConcurrentStreams;
      s.limit =
        max === undefined ? o.maxConcurrentStreams : Math.max(1, Math.min(max, o.maxConcurrentStreams));
      this.#drain();
    });
    // GOAWAY: streams it covers finish; Node closes the session after them. New streams go elsewhere.
    session.on('goaway', () => this.#retire(s));
    session.on('error', (err: Error) => {
      if (!connected) this.#connectFailed(err);
    });
    session.on('close', () => {
      clearTimeout(timer);
      if (!connected) {
        connected = true;
        this.#connecting--;
        this.#connectFailed(
          h2Error(`connection to ${this.#origin.host} closed before HTTP/2 started`, 'UND_ERR_SOCKET'),
        );
      }
      this.#retire(s);
      clearTimeout(s.idle);
      this.#sessions = this.#sessions.filter((x) => x !== s);
      this.#drain();
      this.#maybeClosed();
    });
  }

  /** A session failed to connect: what waits fails with its error unless another session can take it. */
  #connectFailed(err: Error): void {
    this.#failedAt = performance.now();
    if (this.#sessions.some((x) => x.ready && !x.done)) return;
    for (const q of this.#queue.splice(0)) q.handler.onError(err);
    this.#maybeClosed();
  }

  #retire(s: Session): void {
    s.done = true;
    if (s.active === 0 && !s.session.closed) s.session.close();
  }

  /** Streams freed up or a session became ready: start what waits. */
  #drain(): void {
    while (this.#queue.length > 0) {
      const s = this.#free();
      if (s === undefined) break;
      const q = this.#queue.shift()!;
      this.#start(s, q.opts, q.handler);
    }
    this.#grow();
    this.#maybeClosed();
  }

  #maybeClosed(): void {
    if (!this.#closing || this.#queue.length > 0) return;
    for (const s of this.#sessions) if (s.active === 0) this.#retire(s);
    if (this.#sessions.length === 0 && this.#resolveClosed !== undefined) {
      this.#resolveClosed();
      this.#resolveClosed = undefined;
    }
  }

  #start(s: Session, opts: H2DispatchOptions, handler: H2Handler): void {
    clearTimeout(s.idle);
    s.active++;
    const call = new Call(this, s, handler);
    call.begin(opts, this.#scheme, this.#origin.host);
  }

  /** A stream of `s` closed. */
  released(s: Session): void {
    s.active--;
    if (s.active === 0) {
      if (s.done) s.session.close();
      else if (this.#o.keepAliveTimeout > 0) {
        clearTimeout(s.idle);
        s.idle = setTimeout(() => this.#retire(s), this.#o.keepAliveTimeout);
        s.idle.unref();
      }
    }
    this.#drain();
  }
}

/** One request on one stream: the glue between a ClientHttp2Stream and the attempt's handler callbacks. */
class Call {
  readonly #pool: H2Pool;
  readonly #s: Session;
  readonly #h: H2Handler;
  #stream: ClientHttp2Stream | undefined = undefined;
  #body: Readable | undefined = undefined;
  #trailers: string[] | null = null;
  #settled = false;
  #responded = false;
  #released = false;
  #error: Error | undefined = undefined;

  constructor(pool: H2Pool, s: Session, handler: H2Handler) {
    this.#pool = pool;
    this.#s = s;
    this.#h = handler;
  }

  readonly abort = (err?: Error): void => {
    if (this.#settled) return;
    this.#fail(err ?? new Error('aborted'));
    const st = this.#stream;
    if (st !== undefined && !st.closed) st.close(NGHTTP2_CANCEL);
  };

  begin(opts: H2DispatchOptions, scheme: string, authority: string): void {
    try {
      this.#h.onConnect(this.abort);
    } catch (err) {
      // The attempt was given up on before anything was sent.
      this.#release();
      this.#fail(err as Error);
      return;
    }
    if (this.#settled) {
      this.#release();
      return;
    }
    const headers: OutgoingHttpHeaders = Object.create(null);
    const list = opts.headers;
    let host = authority;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i]!;
      if (SKIP.has(name)) {
        if (name === 'host') host = list[i + 1]!;
        continue;
      }
      const prev = headers[name];
      if (prev === undefined) headers[name] = list[i + 1]!;
      else if (Array.isArray(prev)) prev.push(list[i + 1]!);
      else headers[name] = [prev as string, list[i + 1]!];
    }
    headers[':method'] = opts.method;
    headers[':path'] = opts.path;
    headers[':scheme'] = scheme;
    headers[':authority'] = host;
    // Trailers are relayed (gRPC needs them); RFC 9113 allows `te: trailers` and nothing else.
    headers.te = 'trailers';
    const body = opts.body;
    let stream: ClientHttp2Stream;
    try {
      stream = this.#s.session.request(headers, { endStream: body === null });
    } catch (err) {
      // The session went away between the pick and the request (GOAWAY, close): nothing was sent.
      this.#release();
      this.#fail(h2Error(`stream not opened: ${(err as Error).message}`, 'TRELLIS_H2_REFUSED_STREAM'));
      return;
    }
    this.#stream = stream;
    stream.on('response', (h: IncomingHttpHeaders, flags: number, raw: string[]) => {
      if ((flags & END_STREAM) !== 0) this.#h.trailersOnly = true;
      this.#onResponse(h, raw, opts);
    });
    stream.on('data', (chunk: Buffer) => {
      if (!this.#settled && !this.#h.onData(chunk)) stream.pause();
    });
    stream.on('trailers', (_h: IncomingHttpHeaders, _flags: number, raw: string[]) => {
      this.#trailers = raw;
    });
    stream.on('end', () => {
      if (this.#settled) return;
      this.#settled = true;
      this.#detachBody();
      this.#h.onComplete(this.#trailers);
    });
    stream.on('error', (err: Error) => {
      this.#error ??= err;
    });
    stream.on('timeout', () => {
      if (this.#responded) this.abort(h2Error(`no data for ${opts.bodyTimeout} ms`, 'UND_ERR_BODY_TIMEOUT'));
      else this.abort(h2Error(`no response in ${opts.headersTimeout} ms`, 'UND_ERR_HEADERS_TIMEOUT'));
    });
    if (opts.headersTimeout !== undefined && opts.headersTimeout > 0) stream.setTimeout(opts.headersTimeout);
    stream.on('close', () => {
      this.#release();
      if (this.#settled) return;
      const code = stream.rstCode;
      if (code === NGHTTP2_REFUSED_STREAM)
        this.#fail(h2Error('the endpoint refused the stream (REFUSED_STREAM)', 'TRELLIS_H2_REFUSED_STREAM'));
      else if (
        this.#error !== undefined &&
        (this.#error as { code?: string }).code !== 'ERR_HTTP2_STREAM_ERROR'
      )
        this.#fail(this.#error);
      else this.#fail(h2Error(`the endpoint reset the stream (code ${code ?? 'none'})`, 'TRELLIS_H2_RESET'));
    });
    if (body === null) return;
    if (Buffer.isBuffer(body)) {
      stream.end(body);
      this.#h.onBodySent?.(body);
      return;
    }
    this.#pipe(body, stream);
  }

  #onResponse(h: IncomingHttpHeaders, raw: string[], opts: H2DispatchOptions): void {
    if (this.#settled) return;
    this.#responded = true;
    const status = Number(h[':status']);
    const out: Buffer[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.charCodeAt(0) === 58 /* : */) continue;
      out.push(Buffer.from(name, 'latin1'), Buffer.from(raw[i + 1]!, 'latin1'));
    }
    const stream = this.#stream!;
    stream.setTimeout(opts.bodyTimeout !== undefined && opts.bodyTimeout > 0 ? opts.bodyTimeout : 0);
    if (!this.#h.onHeaders(status, out, () => stream.resume(), '')) stream.pause();
  }

  /** A streamed request body, with backpressure both ways; its own errors (a body limit) fail the call. */
  #pipe(body: Readable, stream: ClientHttp2Stream): void {
    // It may have failed (a body limit) before this stream was open: nobody else will say so.
    if (body.errored !== null || body.destroyed) {
      this.abort(body.errored ?? h2Error('request body closed', 'TRELLIS_H2_RESET'));
      return;
    }
    this.#body = body;
    const onData = (chunk: Buffer) => {
      this.#h.onBodySent?.(chunk);
      if (!stream.write(chunk)) body.pause();
    };
    const onDrain = () => body.resume();
    const onEnd = () => {
      this.#detachBody();
      if (!stream.closed) stream.end();
    };
    const onError = (err: Error) => this.abort(err);
    body.on('data', onData);
    body.once('end', onEnd);
    body.on('error', onError);
    stream.on('drain', onDrain);
    this.#detach = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      stream.off('drain', onDrain);
    };
    body.resume();
  }

  #detach: (() => void) | undefined = undefined;

  #detachBody(): void {
    const d = this.#detach;
    if (d === undefined) return;
    this.#detach = undefined;
    d();
    // Not read any more by this call: a retry that may send it again starts from a paused stream.
    this.#body?.pause();
  }

  #fail(err: Error): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#detachBody();
    this.#h.onError(err);
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#pool.released(this.#s);
  }
}
