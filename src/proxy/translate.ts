/**
 * Protocol translation hooks: the two ways a route can be something other than a plain proxy.
 *
 * - A **Translator** rewrites the request before it goes upstream and the response on its way back, and the request
 *   otherwise takes the normal forwarding path: balancer, admission and breaker, retries, per-try and route
 *   timeouts, outlier detection, tracing, metrics, the access log (as Envoy's grpc_json_transcoder filter sits in
 *   front of its router). REST → gRPC transcoding is one (src/translate/grpc/).
 * - A **RouteHandler** takes the request over after the route's policy stages instead of forwarding it: it reads
 *   the body, talks to the route's service in its own way and writes the response itself (REST → WebSocket bridge).
 *
 * How to add a translator (or handler):
 * 1. Write its config schema as a `z.strictObject({ ... })` (without `type`; the framework adds it) in
 *    `src/translate/<mine>/`, importing shared pieces from `src/config/primitives.ts` (never
 *    `src/config/schema.ts`: that imports the kinds).
 * 2. Write a `TranslateKind` (src/translate/kinds.ts): `resolvePaths` makes file references absolute (relative to
 *    the config file); `validate` reports what the schema cannot say (a proto that does not parse, a backend of the
 *    wrong protocol) with `ctx.issue(path, message)`, so `trellis validate` shows it at `routes[i].translate...`;
 *    `compile` returns `{ translator }` or `{ handler }`, doing every parse and lookup once per config version
 *    (a throw there fails the apply: it is a defect when validate passed).
 * 3. Append the kind to `translateKinds` in src/translate/kinds.ts. `routes[].translate` is the union on `type` of
 *    all kinds' schemas (src/translate/schema.ts); the compiled route gets `translator` or `handler`, and the
 *    Exchange (src/proxy/exchange.ts) runs it after the route's stages: `#translate` or `#handle`.
 *
 * These interfaces are shared by several translators: extend them (new optional members), never break them.
 */
import type { ErrorCode } from '../core/errors.js';
import type { UpstreamService } from '../upstream/service.js';
import type { LocalReply, StageContext } from './stage.js';

// ---------------------------------------------------------------------------------------------------------------
// The client-facing response

/**
 * Where a translator or handler writes the client's response. The gateway's own fields (x-request-id, Via) and the
 * route's response stages (header edits, CORS, rate-limit fields) apply at `writeHead`, as they do to a proxied
 * response.
 */
export interface ResponseSink {
  /** Status and headers went out (by writeHead, or by fail before them). */
  readonly headersSent: boolean;
  /** The client went away or the response ended: further writes are dropped. */
  readonly closed: boolean;
  /** The request's id (x-request-id), for a body that names it. */
  readonly requestId: string;
  /** Sends the status and headers, once. Names lower case. */
  writeHead(status: number, headers: Readonly<Record<string, string | number>>): void;
  /**
   * Writes body bytes (after writeHead). False: the client is slow, the bytes are queued; a translator returns
   * that false from `ResponseTranslation.data` (the upstream is paused until the client drains), a handler awaits
   * `drained()` before writing more.
   */
  write(chunk: Buffer | string): boolean;
  /** Resolves when the client has taken what was queued (at once if nothing is, or when it went away). */
  drained(): Promise<void>;
  /** Ends the response, with an optional last chunk (sends status 200 and no headers first if none went out). */
  end(chunk?: Buffer | string): void;
  /**
   * Ends with a catalogued error: before the headers a problem+json reply (`status` overrides the catalog's), after
   * them the response is cut (write your own final error event first if the format has one). The request's
   * `errorCode` in logs and metrics becomes `code`. `extra` adds members to the problem+json body (`grpcStatus`),
   * `headers` fields to the reply (the upstream's metadata), names lower case.
   */
  fail(
    code: ErrorCode,
    detail?: string,
    status?: number,
    extra?: Readonly<Record<string, unknown>>,
    headers?: Readonly<Record<string, string>>,
  ): void;
  /** Records `code` as the request's error (logs, metrics) without answering: for an error the stream reports itself. */
  noteError(code: ErrorCode): void;
}

// ---------------------------------------------------------------------------------------------------------------
// Translator: request and response rewritten, forwarding unchanged

/** The request to send upstream instead of the client's. */
export interface TranslatedRequest {
  readonly method: string;
  /** Path and query sent upstream (replaces the route's rewrite result). */
  readonly path: string;
  /**
   * Fields to set on the upstream request, names lower case; they replace any of the same name (content-type,
   * te, ...). A value of `null` removes the field. `content-length` is set from `body` by the exchange.
   */
  readonly headers?: Readonly<Record<string, string | null>>;
  /** The whole upstream body: kept in memory, so retries send it again. */
  readonly body: Buffer;
  /**
   * The upstream speaks gRPC: its grpc-status (headers of a trailers-only reply, or trailers) classifies the attempt
   * (`grpc_error` for outlier detection, breakers and retries), and a route timeout becomes the call's deadline sent
   * as `grpc-timeout`.
   */
  readonly grpc?: boolean;
  /**
   * The route timeout covers the whole upstream response, not only the wait for its headers: for a reply the
   * translator buffers until its end (a unary call). Off for a response that streams to the client.
   */
  readonly wholeResponse?: boolean;
  /** Translates this request's response back. */
  readonly response: ResponseTranslation;
}

/**
 * The per-request response side of a translation. The exchange calls `headers` once (for the attempt whose response
 * it keeps: retried responses never reach it), then `data` per chunk, then `end` or `error`, exactly one of them.
 */
export interface ResponseTranslation {
  /** The upstream's status and headers (names lower case; repeated names joined with ", "). */
  headers(status: number, headers: Readonly<Record<string, string>>, sink: ResponseSink): void;
  /** A chunk of the upstream body. Return the sink's `write` result (or true when buffering): false pauses it. */
  data(chunk: Buffer, sink: ResponseSink): boolean;
  /** The upstream response ended; `trailers` (names lower case) or an empty object. Must end the sink. */
  end(trailers: Readonly<Record<string, string>>, sink: ResponseSink): void;
  /**
   * The upstream failed after `headers` (reset, idle timeout, the call's deadline). Must end the sink: `sink.fail`
   * (a problem+json reply, or a cut stream), or a final error in the stream's own format and `sink.end()`.
   */
  error(code: ErrorCode, detail: string, sink: ResponseSink): void;
}

/** A route whose requests and responses are translated (see the top of this file). */
export interface Translator {
  /** Largest client body read for translation (413 body_too_large beyond); the route's `maxBodyBytes` caps it. */
  readonly maxBodyBytes: number;
  /**
   * Translates one request: `body` is the client's whole body (empty when none). A LocalReply answers the client
   * instead (400 naming the bad field, 404/405 when no binding matches). May throw: 500 internal_error.
   */
  request(ctx: StageContext, body: Buffer): TranslatedRequest | LocalReply;
  /**
   * Whether this translator wants the body at all for a request; false skips reading it (a GET).
   * Absent: always read.
   */
  wantsBody?(ctx: StageContext): boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// RouteHandler: a terminal handler instead of forwarding

/** What a RouteHandler gets for one request, after the route's policy stages accepted it. */
export interface HandlerContext {
  /** The request as the stages saw it (method, path, params, headers, consumer, claims, upstreamHeaders...). */
  readonly stage: StageContext;
  /** The exchange's request id (also sent back as x-request-id). */
  readonly requestId: string;
  /** The route's request timeout in ms (0: none); the handler enforces it (answer `upstream_timeout`). */
  readonly requestTimeout: number;
  /** The route's body limit (Infinity: none). */
  readonly maxBodyBytes: number;
  /**
   * The service the route's backends pick for this request (weighted split), or undefined for a route without
   * backends. `service.pick(0, undefined)` gives an endpoint (its `origin`, `authority`), undefined when none is
   * eligible (answer `no_healthy_upstream`). The exchange takes no admission slot and asks no breaker for a
   * handler: what it sends to the service (and `service.recordAttempt`) is the handler's business.
   */
  readonly service: UpstreamService | undefined;
  /** Aborted when the client goes away (or the response ended): stop work, release what the request holds. */
  readonly signal: AbortSignal;
  /**
   * Aborted when the gateway starts draining (SIGTERM): a long-lived response (an event stream) should end soon,
   * so that shutdown does not wait for `drainTimeout`. Absent in hand-built hosts.
   */
  readonly shutdown?: AbortSignal | undefined;
  /**
   * The whole request body, at most `limit` bytes (default and cap: the route's `maxBodyBytes`); a longer one gets
   * 413 body_too_large (the promise then resolves undefined: the request is answered). Empty when there is none.
   */
  readBody(limit?: number): Promise<Buffer | undefined>;
  /** Answers with a local reply (a catalogued error, or a response), the route's response stages applied. */
  reply(r: LocalReply): void;
  /** The response, to stream: writeHead, write (backpressure), end, fail. */
  readonly sink: ResponseSink;
  /**
   * Records what the request did with its service for logs and metrics: the outcome of the upstream work
   * (`success`, `reset`, `timeout`, ...) and the endpoint used. Optional; default `local_reply`.
   */
  record(
    outcome: import('../core/outcome.js').Outcome,
    endpoint?: import('../upstream/endpoint.js').Endpoint,
  ): void;
}

/** A route answered by code of its own (see the top of this file). */
export interface RouteHandler {
  /**
   * Handles one request; must end the response (`sink.end`, `sink.fail`, `reply`) or see `signal` abort. A promise
   * that rejects, or a throw, answers 500 internal_error if nothing went out yet (else the response is cut).
   */
  handle(ctx: HandlerContext): void | Promise<void>;
}

/** A route's `translate` compiled: exactly one of the two. */
export type CompiledTranslation =
  | { readonly translator: Translator; readonly handler?: undefined }
  | { readonly handler: RouteHandler; readonly translator?: undefined };
