import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { isIP, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Transform, type TransformCallback } from 'node:stream';
import type { Dispatcher } from 'undici';
import {
  type CompiledRoute,
  type FaultPolicy,
  type ListenerState,
  type MirrorPolicy,
  RetryOn,
  type RetryPolicy,
} from '../compile/snapshot.js';
import { type ErrorCode, errorCatalog } from '../core/errors.js';
import { classifyUpstreamError, isGrpcFailure, type Outcome } from '../core/outcome.js';
import { encodeGrpcMessage, problemBody, sendGrpcError, sendProblem } from '../core/problem.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import type { AttemptSpan, RequestTrace, Tracer } from '../observability/tracing.js';
import { normalizePath, type RouterRequest } from '../router/index.js';
import type { Consumer, PolicyDecision } from '../stages/policy.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { UpstreamService } from '../upstream/service.js';
import { type ClientCertificate, clientCertOf, forwardedClientCert } from './client-cert.js';
import {
  Base64Decoder,
  Base64Encoder,
  errorContentType,
  formatGrpcTimeout,
  GRPC,
  GRPC_NONE,
  GRPC_WEB_TEXT,
  type GrpcKind,
  grpcKindOf,
  parseGrpcTimeout,
  trailerFrame,
  upstreamContentType,
  webContentType,
} from './grpc.js';
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
import type { ApiVersionRef, LocalReply, StageContext, StageResult, WafSummary } from './stage.js';
import type { HandlerContext, ResponseSink, ResponseTranslation, TranslatedRequest } from './translate.js';
import type { WebSocketTunnels } from './websocket.js';

/** What an exchange needs from the process it runs in. */
export interface ExchangeHost {
  /** True once SIGTERM started draining: replies close their connection. */
  readonly draining: boolean;
  /** `1.1 <via>` or '' for none. */
  readonly viaValue: string;
  /** Called once per request when it is over, only when something (access log, metrics, tracing) listens. */
  readonly onFinish: ((ex: Exchange) => void) | undefined;
  /** Prometheus metrics, when on. */
  readonly metrics: GatewayMetrics | undefined;
  /** Tracing, when on. */
  readonly tracer: Tracer | undefined;
  /** Open WebSockets and their per-route counts (absent: the listener keeps its own). */
  readonly websockets?: WebSocketTunnels;
  /** Aborted when draining starts (SIGTERM): route handlers end long-lived responses (event streams). */
  readonly shutdown?: AbortSignal;
}

/**
 * An HTTP/1.1 Upgrade the exchange proxies (WebSocket). The request is routed and runs its stages like any
 * other; the upstream attempt asks undici for the upgrade, and a 101 hands both sockets to `switched`.
 */
export interface UpgradeHandler {
  /** The token sent upstream in `Upgrade`, and required back in the 101. */
  readonly protocol: string;
  /** Called once the route is known: false when it answered the request itself (refused). */
  routed(ex: Exchange, route: CompiledRoute): boolean;
  /**
   * The upstream switched protocols. `headers` is the 101's field list for the client, hop-by-hop fields
   * removed, the gateway's and the route's response edits applied; `upstream` is the raw connection.
   */
  switched(ex: Exchange, headers: string[], upstream: Socket): void;
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
type H2Request = IncomingMessage & { stream: { endAfterHeaders: boolean } };
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
  /** An HTTP/2 stream (the compat API's Http2ServerRequest/Response, which stand in for IncomingMessage/ServerResponse). */
  readonly h2: boolean;
  host = '';
  hostHeader = '';
  path = '/';
  query = '';
  params: Readonly<Record<string, string>> | undefined = undefined;
  upstreamPath = '/';
  upstreamHeaders: string[] = [];
  upstreamHost: string | undefined = undefined;
  consumer: Consumer | undefined = undefined;
  claims: Readonly<Record<string, unknown>> | undefined = undefined;
  /** Decisions of the route's policies, in the order they ran (see compile/policies.ts); undefined: none ran. */
  decisions: PolicyDecision[] | undefined = undefined;
  /** The API operation (GraphQL operation name, ...) a stage or translator named: the access log's `operation`. */
  operation: string | undefined = undefined;
  /** The API version the route's version stage selected (routes with `api`): the access log's `apiVersion`. */
  apiVersion: ApiVersionRef | undefined = undefined;
  /** A `waf` policy's findings (rule ids, anomaly score): the access log's `waf` field. */
  waf: WafSummary | undefined = undefined;
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

  /** Attempts sent upstream so far. */
  attempts = 0;
  /** Trace context when tracing is on. */
  trace: RequestTrace | undefined = undefined;
  /** A retry was refused because the service's retry budget was spent. */
  retryBudgetExhausted = false;
  /** Set (before `start`) for an upgrade request that is proxied as one (WebSocket). */
  upgrade: UpgradeHandler | undefined = undefined;
  /** gRPC kind by the request's content type (GRPC_NONE: not gRPC); gRPC requests get gRPC errors. */
  grpc: GrpcKind = GRPC_NONE;
  /** The `protocol` label of the active-requests gauge: http1, h2, or grpc (gRPC over HTTP/2). */
  readonly protocol: 'http1' | 'h2' | 'grpc';
  /** The request's `grpc-timeout` in ms (-1: none). */
  #grpcTimeout = -1;
  /** The route timer is a gRPC deadline: it covers the whole call, not just the wait for response headers. */
  #wholeCall = false;
  /** That deadline in ms. */
  #deadline = 0;
  /** gRPC-Web translated to gRPC for this request (the route's `grpcWeb`). */
  #web = false;
  /** grpc-web-text: the response body's base64 encoder. */
  #webText: Base64Encoder | undefined = undefined;
  /** The current upstream attempt. */
  #attempt: Attempt | undefined = undefined;
  /** The request body kept for a retry or mirror (EMPTY: no body); undefined when it streams. */
  #replay: Buffer | undefined = undefined;
  #stream: BodyMeter | undefined = undefined;
  /** Index of the Host value in upstreamHeaders, set by the first attempt. */
  #hostIndex = -1;
  /** Trace context fields the client sent (traceparent, tracestate, b3, x-b3-*), when tracing is on. */
  #traceHeaders: Record<string, string> | undefined = undefined;
  /** Index of the traceparent value in upstreamHeaders, set by the first traced attempt. */
  #traceIndex = -1;
  /** A retry's backoff, or before any attempt a fault delay. */
  #retryTimer: NodeJS.Timeout | undefined = undefined;
  #pendingRetry = false;
  /** Counted in the service's admission (maxRequests) until #finishUpstream. */
  #admitted = false;
  /** The breaker admitted this request and waits for its result. */
  #circuitProbe = false;
  #faulted = false;
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
  /** The method sent upstream: the client's, or a translator's. */
  #upMethod: string;
  /** A translated request's response side (the route's `translator`); undefined for every other request. */
  #translation: ResponseTranslation | undefined = undefined;
  /** Where a translation or a route handler writes the client's response. */
  #sink: ExchangeSink | undefined = undefined;
  /** The upstream of a translated request speaks gRPC (its status classifies the attempt). */
  #upGrpc = false;
  /** The translation has the upstream response headers: failures after that are its to report. */
  #translating = false;
  /** A route handler's signal: aborted when the client goes away. */
  #handlerAbort: AbortController | undefined = undefined;

  constructor(gw: ExchangeHost, listener: ListenerState, req: IncomingMessage, res: ServerResponse) {
    this.gw = gw;
    this.listener = listener;
    this.req = req;
    this.res = res;
    this.method = req.method ?? 'GET';
    this.#upMethod = this.method;
    this.h2 = req.httpVersionMajor === 2;
    this.timed = gw.onFinish !== undefined;
    if (this.timed) this.startedAt = performance.now();
    // An HTTP/2 request's headers object already exists (the compat API builds it); HTTP/1.1 never builds it here.
    this.protocol = !this.h2
      ? 'http1'
      : grpcKindOf(req.headers['content-type'] as string | undefined) === GRPC
        ? 'grpc'
        : 'h2';
    gw.metrics?.requestStarted(this.protocol);
  }

  get headers(): IncomingHttpHeaders {
    return this.req.headers;
  }

  get clientCert(): ClientCertificate | undefined {
    return clientCertOf(this.req.socket);
  }

  get rawTarget(): string {
    return this.req.url ?? '';
  }

  /** A body read whole by peekBody, sent upstream as a buffered body. */
  #peeked: Buffer | undefined = undefined;
  #continued = false;

  /**
   * Reads the request body for a stage that inspects it (WAF), up to `limit` bytes: a body that ends within the
   * limit is kept and later sent upstream from memory; a longer one is put back on the request and streams on,
   * and the stage gets its first `limit` bytes. Undefined: no body, or a gRPC stream (never held back).
   */
  peekBody(limit: number): Promise<{ data: Buffer; complete: boolean }> | undefined {
    if (this.#bodyLength === -1 || this.grpc !== GRPC_NONE || this.upgrade !== undefined) return undefined;
    const req = this.req;
    if (this.req.headers.expect !== undefined && !this.#continued && !this.res.headersSent) {
      this.#continued = true;
      this.res.writeContinue();
    }
    // Never hold more than the route lets through: a longer body streams on and meets the route's limit.
    limit = Math.min(limit, this.route?.maxBodyBytes ?? limit);
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = (complete: boolean) => {
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', onError);
        const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
        if (complete) this.#peeked = all;
        else {
          req.pause();
          req.unshift(all);
        }
        resolve({ data: complete ? all : all.subarray(0, limit), complete });
      };
      const onData = (c: Buffer) => {
        chunks.push(c);
        size += c.length;
        if (size > limit) done(false);
      };
      const onEnd = () => done(true);
      const onError = (err: Error) => {
        req.off('data', onData);
        req.off('end', onEnd);
        reject(err);
      };
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('error', onError);
    });
  }

  /** Runs the request to its end: routing, stages, upstream or local reply. */
  start(expectContinue: boolean): void {
    (this.res as ResWithExchange)[kExchange] = this;
    this.res.on('close', onResponseClose);
    const ok = this.#parseTarget() && this.#readHeaders();
    // The incoming trace context comes from the raw header pass: reading req.headers would make Node build the
    // whole headers object for every request (it is lazy), which cost more than all the rest of tracing.
    const tracer = this.gw.tracer;
    if (tracer !== undefined) this.trace = tracer.begin(this.#traceHeaders ?? NO_TRACE_HEADERS);
    if (!ok) {
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
    if (this.upgrade !== undefined && !this.upgrade.routed(this, route)) return;
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
    const route = this.route!;
    if (route.translator !== undefined) this.#translate(expectContinue);
    else if (route.handler !== undefined) this.#handle(expectContinue);
    else this.#forward(expectContinue);
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

  /** Keeps an incoming trace context field for the tracer (repeated fields joined, as Node joins them). */
  #traceHeader(name: string, value: string): void {
    const h = (this.#traceHeaders ??= {});
    const had = h[name];
    h[name] = had === undefined ? value : `${had}, ${value}`;
  }

  /** One pass over the raw headers: the upstream list without hop-by-hop fields, and the fields we act on. */
  #readHeaders(): boolean {
    const raw = this.req.rawHeaders;
    const out = this.upstreamHeaders;
    let requestId: string | undefined;
    let sawHost = false;
    // With tracing on, Trellis sends its own trace context upstream; the client's would name a stale parent.
    const traced = this.gw.tracer !== undefined;
    // The client certificate header is the gateway's to set: whatever a client sends under that name goes.
    const certHeader = this.listener.clientCertHeader;
    const h2 = this.h2;
    let authority: string | undefined;
    let cookie: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const value = raw[i + 1]!;
      if (h2) {
        // Pseudo-headers (RFC 9113 §8.3) are the request line; :authority stands for Host.
        if (name.charCodeAt(0) === 58 /* : */) {
          if (name === ':authority') authority = value;
          continue;
        }
        switch (name) {
          // RFC 9113 §8.2.2: connection-specific fields make an HTTP/2 request malformed.
          case 'connection':
          case 'keep-alive':
          case 'proxy-connection':
          case 'transfer-encoding':
          case 'upgrade':
            return false;
          case 'te':
            if (value.trim().toLowerCase() !== 'trailers') return false;
            continue;
          // RFC 9113 §8.2.3: split cookies are joined again for an HTTP/1.1 upstream.
          case 'cookie':
            cookie = cookie === undefined ? value : `${cookie}; ${value}`;
            continue;
        }
      }
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
        case 'content-type':
          this.grpc = grpcKindOf(value);
          out.push(name, value);
          continue;
        case 'grpc-timeout':
          this.#grpcTimeout = parseGrpcTimeout(value);
          out.push(name, value);
          continue;
        case 'traceparent':
        case 'tracestate':
        case 'b3':
          if (traced) this.#traceHeader(name, value);
          else out.push(name, value);
          continue;
        default:
          if (traced && name.startsWith('x-b3-')) this.#traceHeader(name, value);
          else if (!HOP_BY_HOP.has(name) && name !== certHeader) out.push(name, value);
      }
    }
    if (h2) {
      if (cookie !== undefined) out.push('cookie', cookie);
      // RFC 9113 §8.3.1: :authority over Host; the upstream's Host is built from hostHeader.
      if (authority !== undefined && authority !== '') {
        this.hostHeader = authority;
        sawHost = true;
      }
      if (!sawHost) return false;
      // No Content-Length: a body comes in DATA frames unless END_STREAM came with the headers.
      if (this.#bodyLength === -1 && !(this.req as H2Request).stream.endAfterHeaders) this.#bodyLength = -2;
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
    else if (!sawHost && this.req.httpVersionMinor >= 1 && this.req.httpVersionMajor === 1) return false;
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
    const certHeader = this.listener.clientCertHeader;
    if (certHeader !== undefined) {
      const cert = forwardedClientCert(this.req.socket);
      if (cert !== undefined) out.push(certHeader, cert);
    }
  }

  // ---- translated routes and route handlers (src/proxy/translate.ts) ----

  /**
   * Reads the whole request body, at most `limit` bytes; a longer one is answered with 413 body_too_large and the
   * promise resolves undefined. A body a stage already read (peekBody) is reused; no body is an empty buffer.
   */
  #readWhole(limit: number, expectContinue: boolean): Promise<Buffer | undefined> {
    if (this.#peeked !== undefined) {
      if (this.#peeked.length <= limit) return Promise.resolve(this.#peeked);
      this.#localError('body_too_large', `body of ${this.#peeked.length} bytes exceeds ${limit}`);
      return Promise.resolve(undefined);
    }
    if (this.#bodyLength === -1 || this.req.readableEnded) return Promise.resolve(EMPTY);
    if (this.#bodyLength > limit) {
      this.#localError('body_too_large', `body of ${this.#bodyLength} bytes exceeds ${limit}`);
      return Promise.resolve(undefined);
    }
    if (expectContinue && !this.#continued && !this.res.headersSent) {
      this.#continued = true;
      this.res.writeContinue();
    }
    const req = this.req;
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const cleanup = () => {
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', onError);
        req.off('close', onError);
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) {
          cleanup();
          this.#localError('body_too_large', `body exceeds ${limit} bytes`);
          resolve(undefined);
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = () => {
        cleanup();
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
        this.#peeked = body;
        resolve(body);
      };
      // The client went away mid-body: nothing to answer (clientClosed ends the request).
      const onError = () => {
        cleanup();
        resolve(undefined);
      };
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('error', onError);
      req.on('close', onError);
    });
  }

  /** A route with a translator: read the body, translate it, then forward as any request (retries and all). */
  #translate(expectContinue: boolean): void {
    const route = this.route!;
    const translator = route.translator!;
    // Errors are the client's protocol's (problem+json), whatever content type it sent.
    this.grpc = GRPC_NONE;
    const limit = Math.min(translator.maxBodyBytes, route.maxBodyBytes);
    const wants = translator.wantsBody === undefined || translator.wantsBody(this);
    const body = wants ? this.#readWhole(limit, expectContinue) : Promise.resolve(EMPTY);
    body
      .then((b) => {
        if (b === undefined || this.#done || this.res.headersSent) return;
        const t = translator.request(this, b);
        if ('kind' in t) {
          this.#reply(t);
          return;
        }
        this.#applyTranslation(t);
        this.#forward(false);
      })
      .catch((err) => this.failInternal(err));
  }

  /** The translated request replaces the client's: method, path, fields, a buffered body. */
  #applyTranslation(t: TranslatedRequest): void {
    const route = this.route!;
    this.#upMethod = t.method;
    this.upstreamPath = t.path;
    const out = this.upstreamHeaders;
    const set = t.headers;
    const drop = ['content-length', 'transfer-encoding'];
    if (set !== undefined) for (const name in set) drop.push(name);
    removeFields(out, drop);
    if (set !== undefined) {
      for (const name in set) {
        const v = set[name];
        if (v !== null && v !== undefined) out.push(name, v);
      }
    }
    const body = t.body;
    this.#peeked = body;
    this.#bodyLength = body.length > 0 ? body.length : -1;
    if (body.length > 0 || t.method === 'POST' || t.method === 'PUT' || t.method === 'PATCH')
      out.push('content-length', String(body.length));
    this.#translation = t.response;
    this.#sink = new ExchangeSink(this);
    this.#upGrpc = t.grpc === true;
    if (t.wholeResponse === true && route.requestTimeout > 0) {
      this.#wholeCall = true;
      this.#deadline = route.requestTimeout;
    }
    if (this.#upGrpc && this.#wholeCall) out.push('grpc-timeout', formatGrpcTimeout(this.#deadline));
  }

  /** A route with a handler: it takes the request over after the stages. */
  #handle(expectContinue: boolean): void {
    const route = this.route!;
    this.grpc = GRPC_NONE;
    const abort = new AbortController();
    this.#handlerAbort = abort;
    const sink = new ExchangeSink(this);
    this.#sink = sink;
    let service: UpstreamService | undefined;
    try {
      service = route.pickService?.(this);
    } catch (err) {
      this.failInternal(err);
      return;
    }
    this.service = service;
    const ctx: HandlerContext = {
      stage: this,
      requestId: this.requestId,
      requestTimeout: route.requestTimeout,
      maxBodyBytes: route.maxBodyBytes,
      service,
      signal: abort.signal,
      shutdown: this.gw.shutdown,
      readBody: (limit?: number) =>
        this.#readWhole(
          limit === undefined ? route.maxBodyBytes : Math.min(limit, route.maxBodyBytes),
          expectContinue,
        ),
      reply: (r: LocalReply) => {
        if (!this.res.headersSent && !this.#done) this.#reply(r);
      },
      sink,
      record: (outcome: Outcome, endpoint?: Endpoint) => {
        this.outcome = outcome;
        if (endpoint !== undefined) this.endpoint = endpoint;
      },
    };
    try {
      const r = route.handler!.handle(ctx);
      if (r instanceof Promise) r.catch((err) => this.failInternal(err));
    } catch (err) {
      this.failInternal(err);
    }
  }

  /** The sink's writeHead: the gateway's fields and the route's response stages, as for a proxied response. */
  sinkHead(status: number, fields: Readonly<Record<string, string | number>>): void {
    const res = this.res;
    if (res.headersSent || res.destroyed) return;
    const headers: string[] = [];
    for (const name in fields) headers.push(name, String(fields[name]));
    headers.push('x-request-id', this.requestId);
    if (this.gw.viaValue !== '') headers.push('via', this.gw.viaValue);
    if (this.attempts > 0 && this.route!.retry.attemptsHeader)
      headers.push('x-trellis-attempts', String(this.attempts));
    const stages = this.route!.responseStages;
    for (let i = 0; i < stages.length; i++) stages[i]!.onResponse(status, headers, this);
    this.#beforeReply(false);
    this.status = status;
    res.writeHead(status, headers);
  }

  /** The sink's fail: a problem+json reply before the headers, a cut response after them. */
  sinkFail(
    code: ErrorCode,
    detail: string | undefined,
    status: number | undefined,
    extra: Readonly<Record<string, unknown>> | undefined,
    fields: Readonly<Record<string, string>> | undefined,
  ): void {
    const res = this.res;
    if (res.headersSent) {
      this.errorCode = code;
      if (!res.writableEnded) res.destroy();
      return;
    }
    if (extra === undefined && fields === undefined) {
      this.#localError(code, detail, undefined, status);
      return;
    }
    // A problem with members of its own (a gRPC status): the same body and fields as #localError's, and more.
    this.errorCode = code;
    const body = JSON.stringify({
      ...JSON.parse(problemBody(code, detail, this.requestId, status, this.trace?.traceId)),
      ...extra,
    });
    this.sinkHead(status ?? errorCatalog[code].status, {
      ...fields,
      'content-type': 'application/problem+json',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-trellis-error': code,
    });
    res.end(this.method === 'HEAD' ? undefined : body);
  }

  /** Response headers of a translated request's upstream: handed to the translation. */
  #translatedHeaders(a: Attempt, statusCode: number, raw: Buffer[], resume: () => void): boolean {
    this.#beforeReply(false);
    let outcome: Outcome = statusCode >= 500 ? 'http_5xx' : 'success';
    const fields: Record<string, string> = Object.create(null);
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toString('latin1').toLowerCase();
      const v = raw[i + 1]!.toString('latin1');
      const had = fields[name];
      fields[name] = had === undefined ? v : `${had}, ${v}`;
    }
    // A trailers-only gRPC reply carries its status in the headers.
    const grpcStatus = this.#upGrpc ? fields['grpc-status'] : undefined;
    if (grpcStatus !== undefined && outcome === 'success' && isGrpcFailure(grpcStatus))
      outcome = 'grpc_error';
    this.outcome = outcome;
    a.outcome = outcome;
    this.#translating = true;
    this.res.on('drain', resume);
    this.#translation!.headers(statusCode, fields, this.#sink!);
    return true;
  }

  /** The upstream of a translated request failed after its headers: the translation reports it. */
  #translationFailed(code: ErrorCode, detail: string): void {
    const t = this.#translation!;
    this.#translation = undefined; // once
    if (this.res.writableEnded || this.res.destroyed) return;
    t.error(code, detail, this.#sink!);
  }

  // ---- upstream: admission, body, attempts, retries ----

  #forward(expectContinue: boolean): void {
    const route = this.route!;
    const fault = route.fault;
    if (fault !== undefined && !this.#faulted) {
      this.#faulted = true;
      if (this.#injectFault(fault, expectContinue)) return;
    }
    const service = route.pickService!(this);
    this.service = service;
    const limit = service.admission.tryRequest();
    if (limit !== undefined) {
      this.#localError('overloaded', `service ${service.name}: ${limitDetail(service, limit)}`);
      return;
    }
    this.#admitted = true;
    const circuit = service.circuit;
    if (circuit !== undefined && !circuit.allow()) {
      this.#localError('circuit_open', `service ${service.name}: too many recent failures`, {
        'retry-after': String(Math.max(1, Math.ceil(circuit.retryAfterMs() / 1000))),
      });
      return;
    }
    this.#circuitProbe = circuit !== undefined;
    service.budget.deposit();
    if (expectContinue && !this.#continued) this.res.writeContinue();
    const grpc = this.grpc !== GRPC_NONE;
    if (grpc) this.#prepareGrpc(route);
    const hasBody = this.#bodyLength > 0 || this.#bodyLength === -2;
    if (!hasBody) this.#replay = EMPTY;
    else if (this.#peeked !== undefined) {
      // A stage read it whole (peekBody, within route.maxBodyBytes): send it from memory, as a buffered body.
      this.#replay = this.#peeked.length === 0 ? EMPTY : this.#peeked;
      this.bytesIn = this.#peeked.length;
    } else if (route.buffersBody && !grpc && this.#bodyLength <= route.retry.replayBuffer) {
      // Small enough to keep: read it all first, so that a retry or a mirror can send it again.
      this.#bufferBody(route.retry.replayBuffer);
      return;
    } else {
      // gRPC streams both ways at once, so its body is never held back; a copy of a small one is kept for a retry.
      // So is one streamed to an HTTP/2 service that may refuse the stream after reading some of it.
      const keep =
        (grpc && route.buffersBody) ||
        (service.http2 && route.retry.attempts > 1 && (route.retry.on & RetryOn.refusedStream) !== 0)
          ? route.retry.replayBuffer
          : 0;
      const meter = new BodyMeter(this, route.maxBodyBytes, keep);
      this.#stream = meter;
      if (this.#web && this.grpc === GRPC_WEB_TEXT) {
        const decoder = new Base64Decoder();
        decoder.on('error', (err) => meter.destroy(err));
        this.req.pipe(decoder).pipe(meter);
      } else this.req.pipe(meter);
    }
    this.#begin();
  }

  /**
   * A gRPC request about to go upstream: gRPC-Web becomes gRPC (the route's `grpcWeb`), and a `grpc-timeout` becomes
   * the call's deadline, capped by the route timeout; the capped value goes upstream.
   */
  #prepareGrpc(route: CompiledRoute): void {
    const out = this.upstreamHeaders;
    if (route.grpcWeb && this.grpc !== GRPC) {
      this.#web = true;
      for (let i = 0; i < out.length; i += 2) {
        if (out[i] === 'content-type') out[i + 1] = upstreamContentType(out[i + 1]!, this.grpc);
      }
      if (this.grpc === GRPC_WEB_TEXT) {
        // The body shrinks by a quarter on the way: its length is the decoder's business.
        removeFields(out, CONTENT_LENGTH);
        if (this.#bodyLength > 0) this.#bodyLength = -2;
        this.#webText = new Base64Encoder();
      }
    }
    if (this.#grpcTimeout < 0) return;
    const cap = route.requestTimeout;
    const deadline = cap > 0 && cap < this.#grpcTimeout ? cap : this.#grpcTimeout;
    this.#wholeCall = true;
    this.#deadline = deadline;
    if (deadline !== this.#grpcTimeout) {
      for (let i = 0; i < out.length; i += 2) {
        if (out[i] === 'grpc-timeout') out[i + 1] = formatGrpcTimeout(deadline);
      }
    }
  }

  /** Fault injection: true when the request was answered (abort) or deferred (delay). */
  #injectFault(f: FaultPolicy, expectContinue: boolean): boolean {
    let abort = 0;
    let delay = 0;
    if (f.headers) {
      const a = Number(this.req.headers['x-trellis-fault-abort']);
      if (Number.isInteger(a) && a >= 400 && a <= 599) abort = a;
      const d = Number(this.req.headers['x-trellis-fault-delay']);
      if (Number.isInteger(d) && d > 0) delay = Math.min(d, this.route!.requestTimeout || d);
      // The fault request fields are for this gateway, not for the upstream.
      removeFields(this.upstreamHeaders, FAULT_HEADERS);
    }
    if (abort === 0 && f.abortStatus !== 0 && Math.random() < f.abortFraction) abort = f.abortStatus;
    if (abort !== 0) {
      this.#localError('fault_injected', `fault injected by route ${this.route!.name}`, undefined, abort);
      return true;
    }
    if (delay === 0 && f.delayMs > 0 && Math.random() < f.delayFraction) delay = f.delayMs;
    if (delay === 0) return false;
    // Cleared with the backoff timer when the client goes away: an abandoned request holds nothing.
    this.#retryTimer = setTimeout(onFaultDelay, delay, this, expectContinue);
    return true;
  }

  faultDelayed(expectContinue: boolean): void {
    this.#retryTimer = undefined;
    if (!this.#done) this.#forward(expectContinue);
  }

  /** Reads a body of at most `keep` bytes into memory; a longer one streams on without replay. */
  #bufferBody(keep: number): void {
    const req = this.req;
    const chunks: Buffer[] = [];
    let size = 0;
    const limit = this.route!.maxBodyBytes;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        this.#localError('body_too_large', `body exceeds ${limit} bytes`);
        return;
      }
      chunks.push(chunk);
      if (size > keep) {
        // Too long to replay: stream what was read and the rest.
        cleanup();
        req.pause();
        req.unshift(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
        this.#stream = new BodyMeter(this, limit);
        req.pipe(this.#stream);
        req.resume();
        this.#begin();
      }
    };
    const onEnd = () => {
      cleanup();
      this.#replay = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      this.bytesIn = size;
      this.#begin();
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
    };
    req.on('data', onData);
    req.on('end', onEnd);
  }

  /** The body is ready (buffered, streaming or none): mirror, start the route timer, send the first attempt. */
  #begin(): void {
    if (this.#done || this.res.headersSent) return;
    const route = this.route!;
    if (route.mirror !== undefined && this.#replay !== undefined && this.upgrade === undefined)
      this.#sendMirror(route.mirror);
    if (this.timed) this.upstreamStartedAt = performance.now();
    const timeout = this.#wholeCall ? this.#deadline : route.requestTimeout;
    if (timeout > 0) this.#timer = setTimeout(onRouteTimeout, timeout, this);
    this.#dispatch();
  }

  /** One attempt on an endpoint the balancer picks (another than the last one that failed, if it can). */
  #dispatch(): void {
    this.#retryTimer = undefined;
    const isRetry = this.#pendingRetry;
    this.#pendingRetry = false;
    if (this.#done || this.#timedOut) {
      if (isRetry) this.service!.admission.endRetry();
      return;
    }
    const svc = this.service!;
    const route = this.route!;
    const hash = svc.hashOf === undefined ? 0 : svc.hashOf(this);
    const ep = svc.pick(hash, this.endpoint);
    if (ep === undefined) {
      if (isRetry) this.service!.admission.endRetry();
      this.#finishUpstream();
      this.#localError('no_healthy_upstream', `service ${svc.name} has no endpoint`);
      return;
    }
    const queued = ep.active >= svc.endpointCapacity;
    if (queued && svc.admission.tryPending() !== undefined) {
      if (isRetry) this.service!.admission.endRetry();
      this.#finishUpstream();
      this.#localError('overloaded', `service ${svc.name}: ${limitDetail(svc, 'pending')}`);
      return;
    }
    this.endpoint = ep;
    ep.active++;
    const a = new Attempt(this, ep, queued, isRetry);
    this.#attempt = a;
    this.attempts++;
    if (svc.observesLatency || this.timed) a.sentAt = performance.now();
    const out = this.upstreamHeaders;
    // An HTTP/1.0 client may send no Host: the endpoint's authority stands in.
    const host =
      this.upstreamHost ?? (route.preserveHost && this.hostHeader !== '' ? this.hostHeader : ep.authority);
    if (this.#hostIndex === -1) {
      this.#hostIndex = out.length + 1;
      out.push('host', host);
    } else out[this.#hostIndex] = host;
    const trace = this.trace;
    if (trace !== undefined) {
      // Each attempt its own client span: a retry carries a new parent id.
      const t = this.gw.tracer!.attemptStart(
        trace,
        ep.authority,
        this.attempts,
        a.sentAt || performance.now(),
      );
      a.span = t.span;
      if (this.#traceIndex === -1) {
        this.#traceIndex = out.length + 1;
        out.push('traceparent', t.traceparent);
        if (trace.traceState !== '') out.push('tracestate', trace.traceState);
      } else out[this.#traceIndex] = t.traceparent;
    }
    const perTry = route.retry.perTryTimeout;
    if (perTry > 0) a.timer = setTimeout(onPerTryTimeout, perTry, a);
    ep.pool.dispatch(
      {
        path: this.upstreamPath,
        method: this.#upMethod,
        headers: out,
        body: this.#replay === EMPTY ? null : (this.#replay ?? this.#stream),
        // The route and per-try timers cover the wait for headers, time in the pool's queue included.
        headersTimeout: 0,
        bodyTimeout: route.upstreamIdleTimeout,
        upgrade: this.upgrade?.protocol,
      },
      // undici's legacy handler callbacks (onConnect … onBodySent), which its types no longer describe.
      a as unknown as Dispatcher.DispatchHandler,
    );
  }

  /** Copies the request to the mirror service; its reply and failures are ignored. */
  #sendMirror(m: MirrorPolicy): void {
    if (m.fraction < 1 && Math.random() >= m.fraction) return;
    const svc = m.service;
    const ep = svc.pick(svc.hashOf === undefined ? 0 : svc.hashOf(this), undefined);
    if (ep === undefined || ep.active >= svc.endpointCapacity) return;
    const headers = this.upstreamHeaders.slice();
    const host =
      this.upstreamHost ??
      (this.route!.preserveHost && this.hostHeader !== '' ? this.hostHeader : ep.authority);
    headers.push('host', shadowHost(host));
    ep.active++;
    ep.pool.dispatch(
      {
        path: this.upstreamPath,
        method: this.method,
        headers,
        body: this.#replay === EMPTY ? null : this.#replay!,
        headersTimeout: this.route!.requestTimeout,
        bodyTimeout: this.route!.upstreamIdleTimeout,
      },
      new MirrorHandler(ep) as unknown as Dispatcher.DispatchHandler,
    );
  }

  /**
   * An attempt ended without a usable response (error, per-try timeout, or a status worth retrying): retry it
   * on another endpoint when the route, the method, the body and the budget allow; true when a retry is coming.
   */
  #retryAfter(condition: number, nothingSent: boolean): boolean {
    const route = this.route!;
    const rp = route.retry;
    if (this.attempts >= rp.attempts || (rp.on & condition) === 0) return false;
    if (this.#done || this.#timedOut || this.res.headersSent) return false;
    // A streamed body can go again when none of it was read (a failed connect reads nothing), or when all of it
    // came and a copy was kept (gRPC).
    if (this.#replay === undefined) {
      const copy = this.#stream?.copy();
      if (copy !== undefined) this.#replay = copy;
      else if (!(nothingSent && this.bytesIn === 0 && !this.#stream!.readableDidRead)) return false;
    }
    // Nothing was sent on a failed connect: any method may go again. Otherwise only idempotent ones.
    if (!nothingSent && !rp.nonIdempotent && !IDEMPOTENT.has(this.method)) return false;
    const svc = this.service!;
    if (svc.admission.tryRetry() !== undefined) return false;
    if (!svc.budget.tryWithdraw()) {
      svc.admission.endRetry();
      this.retryBudgetExhausted = true;
      return false;
    }
    this.#pendingRetry = true;
    const n = this.attempts; // retries so far + 1
    const ceiling = Math.min(rp.backoffMax, rp.backoffBase * 2 ** (n - 1));
    const wait = Math.floor(Math.random() * ceiling);
    this.#retryTimer = setTimeout(onRetry, wait, this);
    return true;
  }

  retryNow(): void {
    this.#dispatch();
  }

  /** Drops a retry waiting out its backoff, and its count in the admission limits. */
  #cancelRetry(): void {
    if (this.#retryTimer === undefined) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#pendingRetry) {
      this.#pendingRetry = false;
      this.service!.admission.endRetry();
    }
  }

  /**
   * The streamed body failed. An attempt using it hears of it from undici (attemptError); with none in flight (a
   * retry's backoff) the body limit is answered here. Other failures, and any after the reply, are dropped.
   */
  bodyFailed(err: Error): void {
    const code = (err as Error & { trellisCode?: ErrorCode }).trellisCode;
    const a = this.#attempt;
    if (code === undefined || (a !== undefined && !a.ended)) return;
    this.#cancelRetry();
    this.#finishUpstream();
    this.#localError(code, err.message);
  }

  // ---- attempt callbacks (undici handler, per attempt) ----

  attemptConnect(a: Attempt, abort: (err?: Error) => void): void {
    a.abort = abort;
    if (a.queued) {
      a.queued = false;
      this.service!.admission.endPending();
    }
    // Dropped before a byte was written. Throwing makes undici fail just this request; abort() would destroy the
    // connection, and with it the responses pipelined on it (undici even sends those again).
    if (a.abandoned || this.#done || this.#timedOut) throw ABANDONED;
  }

  /** The per-try timeout fired before response headers. */
  perTryTimedOut(a: Attempt): void {
    a.timer = undefined;
    if (a.ended || a !== this.#attempt) return;
    a.timedOut = true;
    if (a.abort) a.abort(new Error('per-try timeout'));
    else {
      // Still queued for a connection: give up on it (it is dropped when it gets one) and move on.
      a.abandoned = true;
      this.attemptError(a, new Error('per-try timeout'));
    }
  }

  /** The route timeout fired before the response headers. */
  routeTimedOut(): void {
    this.#timer = undefined;
    if (this.#done) return;
    // A gRPC deadline covers the whole call; the route timeout of any other request only the wait for headers.
    const late = this.res.headersSent;
    if (late && !this.#wholeCall) return;
    this.#timedOut = true;
    this.#cancelRetry();
    // A stream that outlived its caller's deadline is no failure of the endpoint: the outcome stays what it was.
    if (!late) this.outcome = 'timeout';
    if (this.timed) this.upstreamEndedAt = performance.now();
    const a = this.#attempt;
    const where = this.endpoint?.authority ?? 'upstream';
    if (this.#translation !== undefined) {
      const detail = `${where}: no complete response in ${this.#deadline || this.route!.requestTimeout} ms`;
      if (this.#translating) {
        this.errorCode = 'upstream_timeout';
        this.#translationFailed('upstream_timeout', detail);
      } else this.#localError('upstream_timeout', detail);
    } else if (this.#wholeCall) {
      const asked =
        this.#grpcTimeout === this.#deadline ? 'grpc-timeout' : 'grpc-timeout capped by the route timeout';
      const detail = `${where}: deadline of ${this.#deadline} ms (${asked}) exceeded`;
      if (late) this.#grpcFailLate('upstream_timeout', detail);
      else this.#localError('upstream_timeout', detail);
    } else {
      // Answer now, whether the request is on a connection or still queued for one; then drop the attempt.
      this.#localError(
        'upstream_timeout',
        `${where}: no response in ${this.route!.requestTimeout} ms${this.attempts > 1 ? ` (${this.attempts} attempts)` : ''}`,
      );
    }
    if (a !== undefined && !a.ended) {
      // A hung endpoint's latency estimate learns the wait, as a per-try timeout would teach it.
      const svc = this.service!;
      if (svc.observesLatency && !a.discard && !late) {
        const now = performance.now();
        svc.observe(a.ep, now - a.sentAt, now, true);
      }
      this.#endAttempt(a, late ? 'local_reply' : 'timeout');
      if (a.abort) a.abort(new Error('route timeout'));
      else a.abandoned = true;
    }
    this.#finishUpstream();
  }

  attemptHeaders(
    a: Attempt,
    statusCode: number,
    rawHeaders: Buffer[],
    resume: () => void,
    statusText: string,
  ): boolean {
    const res = this.res;
    if (a.ended || a !== this.#attempt || this.#done || this.#timedOut) return false;
    if (statusCode < 200) {
      // Informational: 103 Early Hints goes on to the client; others (102) are not forwarded.
      if (statusCode === 103) {
        const links = linkValues(rawHeaders);
        if (links.length > 0) res.writeEarlyHints({ link: links });
      }
      return true;
    }
    clearTimeout(a.timer);
    a.status = statusCode;
    if (a.span !== undefined) a.span.status = statusCode;
    const svc = this.service!;
    if (svc.observesLatency) {
      const now = performance.now();
      svc.observe(a.ep, now - a.sentAt, now, false);
    }
    const rp = this.route!.retry;
    if (this.attempts < rp.attempts && rp.on !== 0) {
      const cond = statusCondition(statusCode, rp, rawHeaders);
      if (cond !== 0 && this.#retryAfter(cond, false)) {
        // Read and drop this response (keeping its connection) while the retry goes out.
        a.discard = true;
        a.outcome = statusCode >= 500 ? 'http_5xx' : 'success';
        return true;
      }
    }
    if (!this.#wholeCall) clearTimeout(this.#timer);
    if (this.#translation !== undefined) return this.#translatedHeaders(a, statusCode, rawHeaders, resume);
    const headers = responseHeaders(rawHeaders, this.requestId);
    if (this.#web) webResponseHeaders(headers, this.grpc);
    if (this.gw.viaValue !== '') headers.push('via', this.gw.viaValue);
    if (rp.attemptsHeader) headers.push('x-trellis-attempts', String(this.attempts));
    // After the gateway's own fields, so that a route can remove or replace them.
    const stages = this.route!.responseStages;
    for (let i = 0; i < stages.length; i++) stages[i]!.onResponse(statusCode, headers, this);
    this.#beforeReply(false);
    this.status = statusCode;
    let outcome: Outcome = statusCode >= 500 ? 'http_5xx' : 'success';
    // A trailers-only gRPC reply carries its status in the headers.
    const grpcStatus = this.grpc === GRPC_NONE ? undefined : fieldValue(rawHeaders, 'grpc-status');
    if (grpcStatus !== undefined && outcome === 'success' && isGrpcFailure(grpcStatus))
      outcome = 'grpc_error';
    this.outcome = outcome;
    a.outcome = outcome;
    try {
      if (a.trailersOnly && this.h2 && grpcStatus !== undefined && !this.#web) {
        // One HEADERS frame that ends the stream, as it came: gRPC clients read a status only from such a frame
        // or from trailers (the compat API's writeHead + end would send an empty DATA frame after the headers).
        const stream = (res as unknown as { stream: ServerHttp2Stream }).stream;
        stream.respond(headerObject(statusCode, headers), { endStream: true });
        return true;
      }
      // HTTP/2 has no reason phrase.
      if (statusText && !this.h2) res.writeHead(statusCode, statusText, headers);
      else res.writeHead(statusCode, headers);
    } catch (err) {
      // A field Node refuses to write (invalid characters): treat as a protocol error of the upstream.
      a.abort?.(
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
    if (this.#translating) return this.#translation?.data(chunk, this.#sink!) ?? true;
    this.bytesOut += chunk.length;
    const enc = this.#webText;
    if (enc !== undefined) {
      const text = enc.push(chunk);
      return text === '' ? true : this.res.write(text);
    }
    return this.res.write(chunk);
  }

  /**
   * The upstream answered an upgrade request with 101: the attempt succeeded (outlier detection, latency, the
   * breaker learn it now), and the upgrade handler takes both sockets. The admission slot stays taken until
   * `upgradeEnded`, so that `circuitBreaker.maxRequests` counts open WebSockets.
   */
  attemptUpgrade(a: Attempt, statusCode: number, raw: Buffer[], socket: Socket): void {
    const upgrade = this.upgrade;
    if (a.ended || a !== this.#attempt || this.#done || this.#timedOut || upgrade === undefined) {
      socket.destroy();
      return;
    }
    clearTimeout(a.timer);
    clearTimeout(this.#timer);
    a.status = statusCode;
    if (a.span !== undefined) a.span.status = statusCode;
    const svc = this.service!;
    if (this.timed) this.upstreamEndedAt = performance.now();
    const switchedTo = fieldValue(raw, 'upgrade');
    if (switchedTo === undefined || !hasToken(switchedTo, upgrade.protocol)) {
      socket.destroy();
      this.#endAttempt(a, 'protocol_error');
      this.outcome = 'protocol_error';
      this.#finishUpstream();
      this.#localError(
        'websocket_upgrade_failed',
        `${a.ep.authority} answered 101 with Upgrade: ${switchedTo ?? '(none)'}, not ${upgrade.protocol}`,
      );
      return;
    }
    if (svc.observesLatency) {
      const now = performance.now();
      svc.observe(a.ep, now - a.sentAt, now, false);
    }
    this.status = statusCode;
    this.outcome = 'success';
    a.outcome = 'success';
    this.#endAttempt(a, 'success');
    if (this.#circuitProbe) {
      // A half-open probe must not stay in flight for the life of a WebSocket.
      this.#circuitProbe = false;
      svc.circuit!.record('success');
    }
    const headers = responseHeaders(raw, this.requestId);
    if (this.gw.viaValue !== '') headers.push('via', this.gw.viaValue);
    const stages = this.route!.responseStages;
    for (let i = 0; i < stages.length; i++) stages[i]!.onResponse(statusCode, headers, this);
    try {
      upgrade.switched(this, headers, socket);
    } catch (err) {
      // A defect must cost this WebSocket, never the process (nor leave the client waiting).
      socket.destroy();
      this.req.socket.destroy(err as Error);
      this.upgradeEnded();
    }
  }

  /** The connection of an upgraded request closed (`bytesIn`/`bytesOut` counted by the tunnel): the request is over. */
  upgradeEnded(): void {
    if (this.#done) return;
    this.#done = true;
    this.#finishUpstream();
    this.gw.metrics?.requestFinished(this.protocol);
    this.gw.onFinish?.(this);
  }

  /** Answers the request with a catalogued error (for an upgrade handler that refuses it). */
  replyError(code: ErrorCode, detail: string): void {
    this.#localError(code, detail);
  }

  /** Request body bytes sent upstream, counted here only when the body streams (a buffered one is counted once). */
  onBodySent(chunk: Buffer | string): void {
    if (this.#replay === undefined) this.bytesIn += chunk.length;
  }

  attemptComplete(a: Attempt, trailers: Array<Buffer | string> | null): void {
    if (
      (this.grpc !== GRPC_NONE || this.#upGrpc) &&
      trailers !== null &&
      a.outcome === 'success' &&
      !a.discard
    ) {
      // The one classification of a gRPC call: its status, from the trailers.
      const status = trailerValue(trailers, 'grpc-status');
      if (status !== undefined && isGrpcFailure(status)) {
        a.outcome = 'grpc_error';
        if (a === this.#attempt) this.outcome = 'grpc_error';
      }
    }
    this.#endAttempt(a, a.outcome);
    if (a.discard) return;
    if (this.#wholeCall) clearTimeout(this.#timer);
    this.#finishUpstream();
    if (this.timed) this.upstreamEndedAt = performance.now();
    if (this.#translating) {
      const t = this.#translation;
      this.#translation = undefined;
      if (t !== undefined && !this.res.writableEnded && !this.res.destroyed)
        t.end(trailers === null ? NO_TRAILERS : trailerRecord(trailers), this.#sink!);
      return;
    }
    if (this.#web) {
      this.#endWeb(trailers);
      return;
    }
    if (trailers && trailers.length > 0 && (this.res.chunkedEncoding || this.h2))
      this.res.addTrailers(trailerObject(trailers));
    this.res.end();
  }

  attemptError(a: Attempt, err: Error): void {
    clearTimeout(a.timer);
    if (a.ended) return;
    const c = a.timedOut ? PER_TRY_TIMEOUT : classifyUpstreamError(err);
    if (a.span !== undefined) a.span.error = c.code;
    const te = err as Error & { trellisCode?: ErrorCode };
    // Not the endpoint's failure: the client went away (before or after the response headers), or its body broke
    // a limit of the route. Outlier detection and latency must not hold it against the endpoint.
    const clientGone = err === CLIENT_CLOSED || (this.#done && !this.res.headersSent);
    const local = clientGone || te.trellisCode !== undefined;
    const svc = this.service!;
    if (!local && !a.discard && !this.res.headersSent && svc.observesLatency) {
      const now = performance.now();
      svc.observe(a.ep, now - a.sentAt, now, true);
    }
    this.#endAttempt(a, clientGone ? 'client_abort' : local ? 'local_reply' : c.outcome);
    if (a.discard || a !== this.#attempt || this.#timedOut) return;
    if (clientGone) {
      this.outcome = 'client_abort';
      this.#finishUpstream();
      return;
    }
    if (this.#translating) {
      // The translation had the response headers: it reports the failure in its own format.
      this.outcome = c.outcome;
      this.errorCode = te.trellisCode ?? c.code;
      if (this.#wholeCall) clearTimeout(this.#timer);
      this.#finishUpstream();
      this.#translationFailed(te.trellisCode ?? c.code, `${a.ep.authority}: ${err.message}`);
      return;
    }
    if (this.res.headersSent) {
      // Too late for an error reply: cut the response so the client sees it is incomplete.
      this.outcome = this.#done ? 'client_abort' : c.outcome;
      this.errorCode = te.trellisCode ?? c.code;
      this.#finishUpstream();
      // gRPC: the status goes in the trailers instead, so the client reads why.
      if (this.grpc !== GRPC_NONE && !this.#done) {
        if (this.#wholeCall) clearTimeout(this.#timer);
        this.#grpcFailLate(te.trellisCode ?? c.code, `${a.ep.authority}: ${err.message}`);
      } else this.res.destroy();
      return;
    }
    if (te.trellisCode !== undefined) {
      this.#finishUpstream();
      this.#localError(te.trellisCode, err.message);
      return;
    }
    if (this.#retryAfter(errorCondition(c.outcome), isConnectFailure(c.outcome))) return;
    if (this.timed) this.upstreamEndedAt = performance.now();
    this.outcome = c.outcome;
    this.#finishUpstream();
    const tries = this.attempts > 1 ? ` (attempt ${this.attempts} of ${this.route!.retry.attempts})` : '';
    const what = a.timedOut ? `no response in ${this.route!.retry.perTryTimeout} ms` : err.message;
    this.#localError(c.code, `${a.ep.authority}: ${what}${tries}`);
  }

  /** One attempt is over: endpoint load, outlier detection, retry accounting. Idempotent. */
  #endAttempt(a: Attempt, outcome: Outcome): void {
    if (a.ended) return;
    a.ended = true;
    clearTimeout(a.timer);
    a.ep.active--;
    if (a.queued) {
      a.queued = false;
      this.service!.admission.endPending();
    }
    const retry = a.isRetry;
    if (retry) {
      a.isRetry = false;
      this.service!.admission.endRetry();
    }
    if (outcome !== 'client_abort' && outcome !== 'local_reply') this.service!.recordAttempt(a.ep, outcome);
    const span = a.span;
    if (span !== undefined) {
      span.end = performance.now();
      span.outcome = outcome;
    }
    const m = this.gw.metrics;
    if (m !== undefined)
      m.attemptEnd(
        this.service!.name,
        a.ep.authority,
        outcome,
        a.status,
        performance.now() - a.sentAt,
        retry,
      );
  }

  /** The request is done with its service: admission and breaker get their one result. */
  #finishUpstream(): void {
    if (!this.#admitted) return;
    this.#admitted = false;
    const svc = this.service!;
    svc.admission.endRequest();
    if (this.#circuitProbe) {
      this.#circuitProbe = false;
      const o = this.outcome;
      // Every admitted request reports back, aborted ones too: a half-open probe slot is freed by it.
      svc.circuit!.record(o);
    }
  }

  // ---- replies and the end ----

  #reply(r: LocalReply): void {
    if (r.kind === 'error') {
      this.#localError(r.code, r.detail, r.headers, undefined, r.extensions);
      return;
    }
    const res = this.res;
    this.status = r.status;
    const headers: string[] = [];
    for (const name in r.headers) headers.push(name, String(r.headers[name]));
    headers.push('x-request-id', this.requestId);
    // The route's response header edits apply to its own replies (direct response, redirect) too.
    const stages = this.route?.responseStages;
    if (stages) for (let i = 0; i < stages.length; i++) stages[i]!.onResponse(r.status, headers, this);
    this.#beforeReply(false);
    res.writeHead(r.status, headers);
    res.end(this.method === 'HEAD' ? undefined : r.body);
  }

  #localError(
    code: ErrorCode,
    detail?: string,
    headers?: Record<string, string>,
    status?: number,
    extensions?: Readonly<Record<string, unknown>>,
  ): void {
    const res = this.res;
    if (res.headersSent || res.destroyed) return;
    this.errorCode = code;
    if (this.requestId === '') this.requestId = randomUUID();
    this.status = 0;
    this.#beforeReply(code === 'body_too_large' || code === 'bad_request');
    // After a route matched, its response stages see the error reply too: CORS fields, so that a page can read
    // a 401 or a 429 (and its Retry-After); the route's own response header edits.
    const stages = this.route?.responseStages;
    if (stages !== undefined && stages.length > 0) {
      const list: string[] = [];
      if (headers !== undefined) for (const name in headers) list.push(name, headers[name]!);
      const st = status ?? errorCatalog[code].status;
      for (let i = 0; i < stages.length; i++) stages[i]!.onResponse(st, list, this);
      headers = {};
      for (let i = 0; i < list.length; i += 2) headers[list[i]!.toLowerCase()] = list[i + 1]!;
    }
    // A gRPC client reads a status, never a body: the same catalog entry as a gRPC error.
    if (this.grpc !== GRPC_NONE)
      sendGrpcError(
        res,
        code,
        detail,
        this.requestId,
        errorContentType(this.grpc),
        this.trace?.traceId,
        headers,
      );
    else sendProblem(res, code, detail, this.requestId, headers, status, this.trace?.traceId, extensions);
    this.status = res.statusCode;
  }

  /**
   * A gRPC call fails after its response headers went out: the status goes in the trailers (gRPC-Web: the trailer
   * frame), so the client reads DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED instead of a broken stream.
   */
  #grpcFailLate(code: ErrorCode, detail: string): void {
    const res = this.res;
    if (res.writableEnded || res.destroyed) return;
    this.errorCode = code;
    const trailers = [
      'grpc-status',
      String(errorCatalog[code].grpc),
      'grpc-message',
      encodeGrpcMessage(detail),
    ];
    if (this.#web) this.#endWeb(trailers);
    else if (this.h2 || res.chunkedEncoding) {
      res.addTrailers(trailerObject(trailers));
      res.end();
    } else res.destroy();
  }

  /** Ends a translated gRPC-Web response: the trailer frame in the body (base64 with grpc-web-text). */
  #endWeb(trailers: ReadonlyArray<Buffer | string> | null): void {
    const frame = trailers !== null && trailers.length > 0 ? trailerFrame(trailers) : undefined;
    const enc = this.#webText;
    if (enc !== undefined) {
      const tail = enc.end(frame);
      if (tail !== '') this.res.write(tail);
    } else if (frame !== undefined) this.res.write(frame);
    this.res.end();
  }

  /**
   * Decides whether the connection stays open after this reply. When the client has not finished its body
   * (the upstream or a stage answered early), close after the reply rather than read a body nobody wants, and
   * mark the socket so that a later body timeout never answers the same request twice.
   */
  #beforeReply(close: boolean): void {
    // `req.complete` is false during the request event even without a body, so the framing decides.
    // HTTP/2 has no connection to close for one stream: an unread body ends with the stream (RST_STREAM).
    if (this.h2) return;
    const bodyPending = (this.#bodyLength > 0 || this.#bodyLength === -2) && !this.req.complete;
    if (close || bodyPending || this.gw.draining) this.res.shouldKeepAlive = false;
    if (bodyPending) (this.req.socket as TaggedSocket)[kAnswered] = true;
  }

  #fail(code: ErrorCode, err: unknown): void {
    this.#localError(code, (err as Error)?.message);
  }

  /** Something threw inside the request path: answer 500 if we still can, else cut the response. */
  failInternal(err: unknown): void {
    this.#attempt?.abort?.(err as Error);
    if (this.res.headersSent) this.res.destroy();
    else {
      this.res.removeHeader('x-request-id');
      this.#localError('internal_error', (err as Error)?.message);
    }
  }

  /** The response closed: finished normally, or the client went away before the end. */
  clientClosed(): void {
    this.#done = true;
    this.#handlerAbort?.abort();
    clearTimeout(this.#timer);
    this.#cancelRetry();
    if (!this.res.writableFinished) {
      if (this.outcome === 'success' || this.outcome === 'local_reply') this.outcome = 'client_abort';
      const a = this.#attempt;
      if (a !== undefined && !a.ended) {
        if (a.abort) a.abort(CLIENT_CLOSED);
        else {
          a.abandoned = true;
          this.#endAttempt(a, 'client_abort');
        }
      }
    }
    this.#finishUpstream();
    this.gw.metrics?.requestFinished(this.protocol);
    this.gw.onFinish?.(this);
  }

  /** The client's address: the peer, or through trusted proxies the nearest untrusted X-Forwarded-For hop. */
  clientAddress(): string {
    const peer = peerOf(this.req.socket as TaggedSocket, this.listener);
    if (!peer.trusted || this.#xff === undefined) return peer.address;
    const hops = this.#xff.split(',');
    const trusted = this.listener.trusted!;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!.trim();
      const family = hop.includes(':') ? 'ipv6' : 'ipv4';
      if (!isIP(hop)) return peer.address;
      if (i === 0 || !trusted.check(hop, family)) return hop;
    }
    return peer.address;
  }
}

const kExchange = Symbol('trellis.exchange');
/** A translated response's trailers when there were none. */
const NO_TRAILERS: Readonly<Record<string, string>> = Object.freeze({});

/** Raw trailers as an object, names lower case, repeated names joined with ", ". */
function trailerRecord(raw: ReadonlyArray<Buffer | string>): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString().toLowerCase();
    const v = raw[i + 1]!.toString();
    const had = out[name];
    out[name] = had === undefined ? v : `${had}, ${v}`;
  }
  return out;
}

/** What the tracer reads when a request carries no trace context: nothing. */
const NO_TRACE_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
type ResWithExchange = ServerResponse & { [kExchange]?: Exchange };

function onRouteTimeout(ex: Exchange): void {
  ex.routeTimedOut();
}

function onRetry(ex: Exchange): void {
  ex.retryNow();
}

function onFaultDelay(ex: Exchange, expectContinue: boolean): void {
  ex.faultDelayed(expectContinue);
}

function onPerTryTimeout(a: Attempt): void {
  a.ex.perTryTimedOut(a);
}

/** No body (EMPTY) versus a buffered empty body are the same to the upstream: nothing to send. */
const EMPTY = Buffer.alloc(0);

const FAULT_HEADERS = ['x-trellis-fault-abort', 'x-trellis-fault-delay'];
const CONTENT_LENGTH = ['content-length'];

/** RFC 9110 §9.2.2: methods a retry cannot make worse. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

const PER_TRY_TIMEOUT = { outcome: 'timeout', code: 'upstream_per_try_timeout' } as const;

/** The abort reason when the client went away: told apart from upstream failures by identity. */
const CLIENT_CLOSED = new Error('client closed the connection');
/** Thrown from onConnect to drop an attempt the exchange gave up on while it waited for a connection. */
const ABANDONED = new Error('attempt abandoned');

const GRPC_BITS =
  RetryOn.grpcCancelled |
  RetryOn.grpcDeadlineExceeded |
  RetryOn.grpcInternal |
  RetryOn.grpcResourceExhausted |
  RetryOn.grpcUnavailable;

/** Retry conditions a response meets (0: none). gRPC codes count only in a trailers-only reply. */
function statusCondition(status: number, rp: RetryPolicy, raw: Buffer[]): number {
  let c = 0;
  if (status >= 500) {
    c |= RetryOn.status5xx;
    if (status >= 502 && status <= 504) c |= RetryOn.gatewayError;
  }
  if (rp.statusCodes.size > 0 && rp.statusCodes.has(status)) c |= RetryOn.statusCodes;
  if ((rp.on & GRPC_BITS) !== 0 && status === 200) {
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i]!.length === 11 && raw[i]!.toString('latin1').toLowerCase() === 'grpc-status') {
        switch (raw[i + 1]!.toString('latin1')) {
          case '1':
            c |= RetryOn.grpcCancelled;
            break;
          case '4':
            c |= RetryOn.grpcDeadlineExceeded;
            break;
          case '8':
            c |= RetryOn.grpcResourceExhausted;
            break;
          case '13':
            c |= RetryOn.grpcInternal;
            break;
          case '14':
            c |= RetryOn.grpcUnavailable;
            break;
        }
      }
    }
  }
  return c;
}

/** Retry conditions a failed attempt meets. `5xx` and `gateway-error` include failures to connect (as Envoy). */
function errorCondition(o: Outcome): number {
  switch (o) {
    case 'connect_refused':
    case 'connect_timeout':
    case 'connect_failed':
      return RetryOn.connectFailure | RetryOn.gatewayError | RetryOn.status5xx;
    case 'reset':
      return RetryOn.reset | RetryOn.gatewayError | RetryOn.status5xx;
    case 'refused_stream':
      return RetryOn.refusedStream | RetryOn.reset | RetryOn.gatewayError | RetryOn.status5xx;
    case 'timeout':
      return RetryOn.timeout | RetryOn.gatewayError | RetryOn.status5xx;
    case 'protocol_error':
      return RetryOn.gatewayError | RetryOn.status5xx;
    default:
      return 0;
  }
}

/** Nothing of the request reached the endpoint's application: any method may go again. */
function isConnectFailure(o: Outcome): boolean {
  return (
    o === 'connect_refused' || o === 'connect_timeout' || o === 'connect_failed' || o === 'refused_stream'
  );
}

function limitDetail(svc: UpstreamService, limit: 'requests' | 'pending' | 'retries'): string {
  const cb = svc.config.circuitBreaker;
  if (limit === 'requests') return `maxRequests (${cb.maxRequests}) requests in flight`;
  if (limit === 'pending') return `maxPending (${cb.maxPending}) requests waiting for a connection`;
  return `maxRetries (${cb.maxRetries}) retries in flight`;
}

/** The first value of a trailer field (`name` lower case) in a raw list. */
function trailerValue(raw: ReadonlyArray<Buffer | string>, name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === name.length && n.toString().toLowerCase() === name) return raw[i + 1]!.toString();
  }
  return undefined;
}

/** The first value of a response field (`name` lower case) in undici's raw list. */
function fieldValue(raw: readonly Buffer[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === name.length && raw[i]!.toString('latin1').toLowerCase() === name)
      return raw[i + 1]!.toString('latin1');
  }
  return undefined;
}

/** Whether a comma-separated field value lists `token` (case-insensitive), as `Upgrade: websocket` does. */
export function hasToken(value: string, token: string): boolean {
  for (const part of value.split(',')) if (part.trim().toLowerCase() === token) return true;
  return false;
}

/** `api.example.com:8080` → `api.example.com-shadow:8080`, as Envoy marks mirrored requests. */
function shadowHost(host: string): string {
  const colon = host.lastIndexOf(':');
  if (colon > 0 && host.indexOf(']') < colon && /^\d+$/.test(host.slice(colon + 1)))
    return `${host.slice(0, colon)}-shadow${host.slice(colon)}`;
  return `${host}-shadow`;
}

/** A translated gRPC-Web reply's headers: the gRPC-Web content type; no length (the body changes on the way). */
function webResponseHeaders(headers: string[], kind: GrpcKind): void {
  let type: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() === 'content-type') type = headers[i + 1];
  }
  removeFields(headers, ['content-type', 'content-length'], false);
  headers.push('content-type', webContentType(type, kind));
}

/** A flat header list as an HTTP/2 headers object (repeated names as arrays), with `:status`. */
function headerObject(status: number, list: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = Object.create(null);
  out[':status'] = status;
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!.toLowerCase();
    const prev = out[name];
    if (prev === undefined) out[name] = list[i + 1]!;
    else if (Array.isArray(prev)) prev.push(list[i + 1]!);
    else out[name] = [String(prev), list[i + 1]!];
  }
  return out;
}

/**
 * The undici handler of one upstream attempt. A small object per attempt, so that callbacks of an attempt the
 * exchange gave up on (timed out, retried) can never touch the attempt that replaced it.
 */
class Attempt {
  readonly ex: Exchange;
  readonly ep: Endpoint;
  /** Waiting in the pool's queue (counted as pending) until it gets a connection. */
  queued: boolean;
  /** Counted in the service's active retries. */
  isRetry: boolean;
  abort: ((err?: Error) => void) | undefined = undefined;
  timer: NodeJS.Timeout | undefined = undefined;
  sentAt = 0;
  /** Response status, 0 until headers arrive. */
  status = 0;
  /** The client span of this attempt, when the request is sampled. */
  span: AttemptSpan | undefined = undefined;
  ended = false;
  timedOut = false;
  /** The exchange gave up on it before it had a connection: abort it when it gets one. */
  abandoned = false;
  /** A response the exchange retries instead of forwarding: read and dropped. */
  discard = false;
  outcome: Outcome = 'success';
  /** Set by the HTTP/2 pool: the response ended with its headers (a gRPC trailers-only reply). */
  trailersOnly = false;

  constructor(ex: Exchange, ep: Endpoint, queued: boolean, isRetry: boolean) {
    this.ex = ex;
    this.ep = ep;
    this.queued = queued;
    this.isRetry = isRetry;
  }
  onConnect(abort: (err?: Error) => void): void {
    this.ex.attemptConnect(this, abort);
  }
  onHeaders(status: number, raw: Buffer[], resume: () => void, text: string): boolean {
    return this.ex.attemptHeaders(this, status, raw, resume, text);
  }
  onData(chunk: Buffer): boolean {
    return this.discard || this.ended ? true : this.ex.onData(chunk);
  }
  onComplete(trailers: Array<Buffer | string> | null): void {
    this.ex.attemptComplete(this, trailers);
  }
  onUpgrade(status: number, raw: Buffer[], socket: Socket): void {
    this.ex.attemptUpgrade(this, status, raw, socket);
  }
  onError(err: Error): void {
    this.ex.attemptError(this, err);
  }
  onBodySent(chunk: Buffer | string): void {
    if (!this.discard) this.ex.onBodySent(chunk);
  }
}

/** Handler of a mirrored request: reads and drops the reply, never affects the real request. */
class MirrorHandler {
  readonly #ep: Endpoint;
  #done = false;
  constructor(ep: Endpoint) {
    this.#ep = ep;
  }
  onConnect(): void {}
  onHeaders(): boolean {
    return true;
  }
  onData(): boolean {
    return true;
  }
  onComplete(): void {
    this.#end();
  }
  onError(): void {
    this.#end();
  }
  #end(): void {
    if (this.#done) return;
    this.#done = true;
    this.#ep.active--;
  }
}

/** One function for every response's 'close' (no closure per request). */
function onResponseClose(this: ResWithExchange): void {
  this[kExchange]?.clientClosed();
}

function onBodyError(this: BodyMeter, err: Error): void {
  this.failed(err);
}

/** Counts request body bytes and enforces the route's body limit without tearing down the client socket. */
class BodyMeter extends Transform {
  readonly #ex: Exchange;
  readonly #limit: number;
  #seen = 0;
  /** A copy of the body while it is at most `keep` bytes (gRPC: streamed, and still retryable when small). */
  #kept: Buffer[] | undefined;
  readonly #keep: number;
  #complete = false;
  constructor(ex: Exchange, limit: number, keep = 0) {
    super();
    this.#ex = ex;
    this.#limit = limit;
    this.#keep = keep;
    this.#kept = keep > 0 ? [] : undefined;
    // undici listens for body errors only while a request uses the stream. Between attempts (a retry's backoff)
    // or after the reply nobody would, and an 'error' without a listener takes the process down.
    this.on('error', onBodyError);
  }
  failed(err: Error): void {
    this.#ex.bodyFailed(err);
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
    if (this.#kept !== undefined) {
      if (this.#seen <= this.#keep) this.#kept.push(chunk);
      else this.#kept = undefined;
    }
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    this.#complete = true;
    cb();
  }
  /** The whole body, when it has arrived and was kept; else undefined. */
  copy(): Buffer | undefined {
    if (!this.#complete || this.#kept === undefined) return undefined;
    return this.#kept.length === 1 ? this.#kept[0]! : Buffer.concat(this.#kept);
  }
}

/** The ResponseSink of a translated request or a route handler: the exchange's response, with its accounting. */
class ExchangeSink implements ResponseSink {
  readonly #ex: Exchange;
  constructor(ex: Exchange) {
    this.#ex = ex;
  }
  get headersSent(): boolean {
    return this.#ex.res.headersSent;
  }
  get closed(): boolean {
    const res = this.#ex.res;
    return res.writableEnded || res.destroyed;
  }
  writeHead(status: number, headers: Readonly<Record<string, string | number>>): void {
    this.#ex.sinkHead(status, headers);
  }
  write(chunk: Buffer | string): boolean {
    const res = this.#ex.res;
    if (res.writableEnded || res.destroyed) return true;
    if (!res.headersSent) this.#ex.sinkHead(200, {});
    this.#ex.bytesOut += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    return res.write(chunk);
  }
  drained(): Promise<void> {
    const res = this.#ex.res;
    if (!res.writableNeedDrain || res.destroyed || res.writableEnded) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }
  end(chunk?: Buffer | string): void {
    const res = this.#ex.res;
    if (res.writableEnded || res.destroyed) return;
    if (!res.headersSent) this.#ex.sinkHead(200, {});
    if (chunk !== undefined)
      this.#ex.bytesOut += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    res.end(chunk);
  }
  get requestId(): string {
    return this.#ex.requestId;
  }
  fail(
    code: ErrorCode,
    detail?: string,
    status?: number,
    extra?: Readonly<Record<string, unknown>>,
    headers?: Readonly<Record<string, string>>,
  ): void {
    this.#ex.sinkFail(code, detail, status, extra, headers);
  }
  noteError(code: ErrorCode): void {
    this.#ex.errorCode = code;
  }
}
