import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Transform, type TransformCallback } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { CompiledRoute, ListenerState } from '../compile/snapshot.js';
import type { ErrorCode } from '../core/errors.js';
import { classifyUpstreamError, type Outcome } from '../core/outcome.js';
import { sendProblem } from '../core/problem.js';
import { normalizePath, type RouterRequest } from '../router/index.js';
import type { Endpoint, UpstreamService } from '../upstream/service.js';
import {
  connectionTokens,
  forwardedNode,
  forwardedQuote,
  HOP_BY_HOP,
  isSaneRequestId,
  linkValues,
  removeFields,
  responseHeaders,
  trailerObject,
} from './headers.js';
import type { LocalReply, StageContext, StageResult } from './stage.js';

/** What an exchange needs from the process it runs in. */
export interface ExchangeHost {
  /** True once SIGTERM started draining: replies close their connection. */
  readonly draining: boolean;
  /** `1.1 <via>` or '' for none. */
  readonly viaValue: string;
  /** Called once per request when it is over, only when something (the access log) listens. */
  readonly onFinish: ((ex: Exchange) => void) | undefined;
}

const VALID_HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::\d{1,5})?$/;

const kPeer = Symbol('trellis.peer');
/** Set on a socket whose current request was answered before its body arrived in full. */
export const kAnswered = Symbol('trellis.answered');
interface PeerInfo {
  address: string;
  trusted: boolean;
  forwardedFor: string;
  /** The last Forwarded element built for this connection, and the Host it was built for. */
  elementHost: string | undefined;
  element: string;
}
type TaggedSocket = Socket & { [kPeer]?: PeerInfo; [kAnswered]?: boolean };

/** Client address without the IPv4-mapped IPv6 prefix. */
function peerOf(socket: TaggedSocket, state: ListenerState): PeerInfo {
  let info = socket[kPeer];
  if (info === undefined) {
    let address = socket.remoteAddress ?? '';
    if (address.startsWith('::ffff:') && address.includes('.')) address = address.slice(7);
    const family = address.includes(':') ? 'ipv6' : 'ipv4';
    const trusted = state.trusted !== undefined && address !== '' && state.trusted.check(address, family);
    info = { address, trusted, forwardedFor: forwardedNode(address), elementHost: undefined, element: '' };
    socket[kPeer] = info;
  }
  return info;
}

/**
 * One client request and its upstream attempt. The same object is the router input, the stage context and
 * the undici dispatch handler, so a proxied request allocates one object for all of its state.
 */
export class Exchange implements StageContext, RouterRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly gw: ExchangeHost;
  readonly listener: ListenerState;
  readonly method: string;
  host = '';
  hostHeader = '';
  path = '/';
  query = '';
  params: Readonly<Record<string, string>> | undefined = undefined;
  upstreamPath = '/';
  upstreamHeaders: string[] = [];
  upstreamHost: string | undefined = undefined;
  requestId = '';
  route: CompiledRoute | undefined = undefined;
  service: UpstreamService | undefined = undefined;
  endpoint: Endpoint | undefined = undefined;
  outcome: Outcome = 'local_reply';
  errorCode: ErrorCode | undefined = undefined;
  status = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** performance.now() marks, only taken when something reads them. */
  readonly timed: boolean;
  startedAt = 0;
  upstreamStartedAt = 0;
  upstreamEndedAt = 0;

  #abort: ((err?: Error) => void) | undefined = undefined;
  #done = false;
  /** The route timeout: from dispatch (queueing for a connection included) to the response headers. */
  #timer: NodeJS.Timeout | undefined = undefined;
  #timedOut = false;
  #bodyLength = -1; // -1: no body; -2: chunked; else Content-Length
  #xff: string | undefined = undefined;
  #xfp: string | undefined = undefined;
  #xfh: string | undefined = undefined;
  #forwarded: string | undefined = undefined;
  #via: string | undefined = undefined;
  #connection: string | undefined = undefined;

  constructor(gw: ExchangeHost, listener: ListenerState, req: IncomingMessage, res: ServerResponse) {
    this.gw = gw;
    this.listener = listener;
    this.req = req;
    this.res = res;
    this.method = req.method ?? 'GET';
    this.timed = gw.onFinish !== undefined;
    if (this.timed) this.startedAt = performance.now();
  }

  get headers(): IncomingHttpHeaders {
    return this.req.headers;
  }

  /** Runs the request to its end: routing, stages, upstream or local reply. */
  start(expectContinue: boolean): void {
    (this.res as ResWithExchange)[kExchange] = this;
    this.res.on('close', onResponseClose);
    if (!this.#parseTarget() || !this.#readHeaders()) {
      this.#localError('bad_request', 'malformed request target or headers');
      return;
    }
    const m = this.listener.router.match(this);
    if (m.kind !== 'match') {
      if (m.kind === 'method_not_allowed') {
        this.#localError('method_not_allowed', `${this.method} is not allowed here`, {
          allow: m.allow.join(', '),
        });
      } else {
        this.#localError('route_not_found', `no route for ${this.host}${this.path}`);
      }
      return;
    }
    const route = m.value;
    this.route = route;
    this.params = m.params;
    if (this.#bodyLength > route.maxBodyBytes) {
      this.#localError('body_too_large', `body of ${this.#bodyLength} bytes exceeds ${route.maxBodyBytes}`);
      return;
    }
    // Added before the stages, so that a route's header edits can override or remove them.
    if (route.pickService !== undefined) this.#addForwardingHeaders();
    this.#runStages(0, expectContinue);
  }

  /**
   * Runs the route's stages from `from` on: synchronously while they answer synchronously; a stage that returns
   * a promise resumes the run when it settles. Then the upstream, unless a stage answered.
   */
  #runStages(from: number, expectContinue: boolean): void {
    if (this.#done) return;
    const stages = this.route!.stages;
    for (let i = from; i < stages.length; i++) {
      const r: StageResult = stages[i]!.onRequest(this);
      if (r === undefined) continue;
      if (r instanceof Promise) {
        r.then(
          (v) => (v === undefined ? this.#runStages(i + 1, expectContinue) : this.#reply(v)),
          (err) => this.#fail('internal_error', err),
        ).catch((err) => this.failInternal(err));
        return;
      }
      this.#reply(r);
      return;
    }
    this.#forward(expectContinue);
  }

  /** Splits the request target; accepts origin-form and absolute-form (RFC 9112 §3.2). */
  #parseTarget(): boolean {
    let url = this.req.url ?? '';
    if (url.charCodeAt(0) !== 47 /* / */) {
      if (!/^https?:\/\//i.test(url)) return false;
      try {
        const u = new URL(url);
        this.host = u.hostname.toLowerCase();
        this.hostHeader = u.host;
        url = u.pathname + u.search;
      } catch {
        return false;
      }
    }
    const q = url.indexOf('?');
    const raw = q === -1 ? url : url.slice(0, q);
    if (q !== -1) this.query = url.slice(q + 1);
    const path = normalizePath(raw);
    if (path === null) return false;
    this.path = path;
    // The upstream gets the path that was routed on.
    this.upstreamPath = path === raw ? url : q === -1 ? path : `${path}?${this.query}`;
    return true;
  }

  /** One pass over the raw headers: the upstream list without hop-by-hop fields, and the fields we act on. */
  #readHeaders(): boolean {
    const raw = this.req.rawHeaders;
    const out = this.upstreamHeaders;
    let requestId: string | undefined;
    let sawHost = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const value = raw[i + 1]!;
      switch (name) {
        case 'host':
          // RFC 9112 §3.2: more than one Host is a 400.
          if (sawHost) return false;
          sawHost = true;
          if (this.hostHeader === '') this.hostHeader = value;
          continue;
        case 'content-length':
          this.#bodyLength = Number(value);
          out.push(name, value);
          continue;
        case 'transfer-encoding':
          this.#bodyLength = -2;
          continue;
        case 'connection':
          this.#connection = this.#connection === undefined ? value : `${this.#connection}, ${value}`;
          continue;
        case 'x-forwarded-for':
          this.#xff = this.#xff === undefined ? value : `${this.#xff}, ${value}`;
          continue;
        case 'x-forwarded-proto':
          this.#xfp ??= value;
          continue;
        case 'x-forwarded-host':
          this.#xfh ??= value;
          continue;
        case 'forwarded':
          this.#forwarded = this.#forwarded === undefined ? value : `${this.#forwarded}, ${value}`;
          continue;
        case 'via':
          this.#via = this.#via === undefined ? value : `${this.#via}, ${value}`;
          continue;
        case 'x-request-id':
          requestId ??= value;
          continue;
        case 'expect':
          continue;
        default:
          if (HOP_BY_HOP.has(name)) continue;
          out.push(name, value);
      }
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
    if (!sawHost && this.req.httpVersionMinor >= 1 && this.req.httpVersionMajor === 1) return false;
    if (this.#connection !== undefined) {
      const tokens = connectionTokens(this.#connection);
      if (tokens) removeFields(out, tokens);
    }
    // RFC 9112 §3.2 / RFC 3986 §3.2.2: a reg-name or IP literal and an optional port, nothing else. A Host
    // such as `evil.example/phish?` must never reach a redirect or an upstream.
    if (this.hostHeader !== '' && !VALID_HOST.test(this.hostHeader)) return false;
    if (this.host === '') {
      const h = this.hostHeader;
      const end = h.charCodeAt(0) === 91 /* [ */ ? h.indexOf(']') + 1 : h.indexOf(':');
      this.host = (end > 0 ? h.slice(0, end) : h).toLowerCase();
    }
    this.requestId = requestId !== undefined && isSaneRequestId(requestId) ? requestId : randomUUID();
    return true;
  }

  /** Adds the forwarding fields (X-Forwarded-*, Forwarded, Via, X-Request-Id) per the listener's trust. */
  #addForwardingHeaders(): void {
    const out = this.upstreamHeaders;
    const peer = peerOf(this.req.socket as TaggedSocket, this.listener);
    const trusted = peer.trusted;
    const proto = this.listener.scheme;
    out.push(
      'x-forwarded-for',
      trusted && this.#xff !== undefined ? `${this.#xff}, ${peer.address}` : peer.address,
      'x-forwarded-proto',
      trusted && this.#xfp !== undefined ? this.#xfp : proto,
    );
    const xfh = trusted && this.#xfh !== undefined ? this.#xfh : this.hostHeader;
    if (xfh !== '') out.push('x-forwarded-host', xfh);
    // A connection nearly always sends one Host: build its Forwarded element once.
    if (peer.elementHost !== this.hostHeader) {
      peer.elementHost = this.hostHeader;
      const host = this.hostHeader === '' ? '' : `;host=${forwardedQuote(this.hostHeader)}`;
      peer.element = `for=${peer.forwardedFor}${host};proto=${proto}`;
    }
    const element = peer.element;
    out.push(
      'forwarded',
      trusted && this.#forwarded !== undefined ? `${this.#forwarded}, ${element}` : element,
    );
    const via = this.gw.viaValue;
    if (via !== '') out.push('via', this.#via === undefined ? via : `${this.#via}, ${via}`);
    else if (this.#via !== undefined) out.push('via', this.#via);
    out.push('x-request-id', this.requestId);
  }

  #forward(expectContinue: boolean): void {
    const route = this.route!;
    const service = route.pickService?.();
    const endpoint = service?.balancer.pick();
    if (endpoint === undefined) {
      this.#localError(
        'no_healthy_upstream',
        service ? `service ${service.name} has no endpoint` : undefined,
      );
      return;
    }
    this.service = service;
    this.endpoint = endpoint;
    const out = this.upstreamHeaders;
    // An HTTP/1.0 client may send no Host: the endpoint's authority stands in.
    const clientHost = route.preserveHost && this.hostHeader !== '' ? this.hostHeader : endpoint.authority;
    out.push('host', this.upstreamHost ?? clientHost);

    let body: Transform | null = null;
    if (this.#bodyLength > 0 || this.#bodyLength === -2) {
      body = new BodyMeter(this, route.maxBodyBytes);
      this.req.pipe(body);
    }
    if (expectContinue) this.res.writeContinue();
    if (this.timed) this.upstreamStartedAt = performance.now();
    if (route.requestTimeout > 0) this.#timer = setTimeout(onRouteTimeout, route.requestTimeout, this);
    endpoint.pool.dispatch(
      {
        path: this.upstreamPath,
        method: this.method,
        headers: out,
        body,
        // The route timer covers the wait for headers, time in the pool's queue included.
        headersTimeout: 0,
        bodyTimeout: route.upstreamIdleTimeout,
      },
      this as unknown as Dispatcher.DispatchHandler,
    );
  }

  // ---- undici handler ----

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#done) abort(new Error('client closed the connection'));
    else if (this.#timedOut) abort(new Error('route timeout while queued'));
  }

  /** The route timeout fired before the response headers. */
  routeTimedOut(): void {
    this.#timer = undefined;
    if (this.#done || this.res.headersSent) return;
    this.#timedOut = true;
    this.outcome = 'timeout';
    if (this.timed) this.upstreamEndedAt = performance.now();
    const ms = this.route!.requestTimeout;
    // Answer now, whether the request is on a connection or still queued for one; then drop the attempt.
    this.#localError(
      'upstream_timeout',
      `${this.endpoint?.authority ?? 'upstream'}: no response in ${ms} ms`,
    );
    this.#abort?.(new Error('route timeout'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    const res = this.res;
    if (this.#done || this.#timedOut) return false;
    if (statusCode < 200) {
      // Informational: 103 Early Hints goes on to the client; others (102) are not forwarded.
      if (statusCode === 103) {
        const links = linkValues(rawHeaders);
        if (links.length > 0) res.writeEarlyHints({ link: links });
      }
      return true;
    }
    clearTimeout(this.#timer);
    const headers = responseHeaders(rawHeaders, this.requestId);
    if (this.gw.viaValue !== '') headers.push('via', this.gw.viaValue);
    // After the gateway's own fields, so that a route can remove or replace them.
    const stages = this.route!.responseStages;
    for (let i = 0; i < stages.length; i++) stages[i]!.onResponse(statusCode, headers);
    this.#beforeReply(false);
    this.status = statusCode;
    this.outcome = statusCode >= 500 ? 'http_5xx' : 'success';
    try {
      if (statusText) res.writeHead(statusCode, statusText, headers);
      else res.writeHead(statusCode, headers);
    } catch (err) {
      // A field Node refuses to write (invalid characters): treat as a protocol error of the upstream.
      this.#abort?.(
        Object.assign(new Error(`invalid response header: ${(err as Error).message}`), {
          code: 'HPE_INVALID_HEADER_TOKEN',
        }),
      );
      return false;
    }
    res.on('drain', resume);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.bytesOut += chunk.length;
    return this.res.write(chunk);
  }

  onComplete(trailers: Array<Buffer | string> | null): void {
    if (this.timed) this.upstreamEndedAt = performance.now();
    if (trailers && trailers.length > 0 && this.res.chunkedEncoding)
      this.res.addTrailers(trailerObject(trailers));
    this.res.end();
  }

  onError(err: Error): void {
    clearTimeout(this.#timer);
    if (this.#timedOut) return; // already answered 504
    if (this.timed) this.upstreamEndedAt = performance.now();
    if (this.#done && !this.res.headersSent) {
      this.outcome = 'client_abort';
      return;
    }
    const te = err as Error & { trellisCode?: ErrorCode };
    const c = classifyUpstreamError(err);
    if (this.res.headersSent) {
      // Too late for an error reply: cut the response so the client sees it is incomplete.
      this.outcome = this.#done ? 'client_abort' : c.outcome;
      this.errorCode = c.code;
      this.res.destroy();
      return;
    }
    if (te.trellisCode !== undefined) {
      this.#localError(te.trellisCode, err.message);
      return;
    }
    this.outcome = c.outcome;
    this.#localError(c.code, `${this.endpoint?.authority ?? 'upstream'}: ${err.message}`);
  }

  onBodySent(chunk: Buffer | string): void {
    this.bytesIn += chunk.length;
  }

  // ---- replies and the end ----

  #reply(r: LocalReply): void {
    if (r.kind === 'error') {
      this.#localError(r.code, r.detail, r.headers);
      return;
    }
    const res = this.res;
    this.status = r.status;
    const headers: string[] = [];
    for (const name in r.headers) headers.push(name, String(r.headers[name]));
    headers.push('x-request-id', this.requestId);
    // The route's response header edits apply to its own replies (direct response, redirect) too.
    const stages = this.route?.responseStages;
    if (stages) for (let i = 0; i < stages.length; i++) stages[i]!.onResponse(r.status, headers);
    this.#beforeReply(false);
    res.writeHead(r.status, headers);
    res.end(this.method === 'HEAD' ? undefined : r.body);
  }

  #localError(code: ErrorCode, detail?: string, headers?: Record<string, string>): void {
    const res = this.res;
    if (res.headersSent || res.destroyed) return;
    this.errorCode = code;
    if (this.requestId === '') this.requestId = randomUUID();
    this.status = 0;
    this.#beforeReply(code === 'body_too_large' || code === 'bad_request');
    sendProblem(res, code, detail, this.requestId, headers);
    this.status = res.statusCode;
  }

  /**
   * Decides whether the connection stays open after this reply. When the client has not finished its body
   * (the upstream or a stage answered early), close after the reply rather than read a body nobody wants, and
   * mark the socket so that a later body timeout never answers the same request twice.
   */
  #beforeReply(close: boolean): void {
    // `req.complete` is false during the request event even without a body, so the framing decides.
    const bodyPending = (this.#bodyLength > 0 || this.#bodyLength === -2) && !this.req.complete;
    if (close || bodyPending || this.gw.draining) this.res.shouldKeepAlive = false;
    if (bodyPending) (this.req.socket as TaggedSocket)[kAnswered] = true;
  }

  #fail(code: ErrorCode, err: unknown): void {
    this.#localError(code, (err as Error)?.message);
  }

  /** Something threw inside the request path: answer 500 if we still can, else cut the response. */
  failInternal(err: unknown): void {
    this.#abort?.(err as Error);
    if (this.res.headersSent) this.res.destroy();
    else {
      this.res.removeHeader('x-request-id');
      this.#localError('internal_error', (err as Error)?.message);
    }
  }

  /** The response closed: finished normally, or the client went away before the end. */
  clientClosed(): void {
    this.#done = true;
    clearTimeout(this.#timer);
    if (!this.res.writableFinished) {
      this.#abort?.(new Error('client closed the connection'));
      if (this.outcome === 'success' || this.outcome === 'local_reply') this.outcome = 'client_abort';
    }
    this.gw.onFinish?.(this);
  }
}

const kExchange = Symbol('trellis.exchange');
type ResWithExchange = ServerResponse & { [kExchange]?: Exchange };

function onRouteTimeout(ex: Exchange): void {
  ex.routeTimedOut();
}

/** One function for every response's 'close' (no closure per request). */
function onResponseClose(this: ResWithExchange): void {
  this[kExchange]?.clientClosed();
}

/** Counts request body bytes and enforces the route's body limit without tearing down the client socket. */
class BodyMeter extends Transform {
  readonly #ex: Exchange;
  readonly #limit: number;
  #seen = 0;
  constructor(ex: Exchange, limit: number) {
    super();
    this.#ex = ex;
    this.#limit = limit;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.#limit) {
      const err = Object.assign(new Error(`body exceeds ${this.#limit} bytes`), {
        trellisCode: 'body_too_large' as const,
      });
      this.#ex.req.unpipe(this);
      cb(err);
      return;
    }
    cb(null, chunk);
  }
}
