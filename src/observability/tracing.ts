import { performance } from 'node:perf_hooks';
import type { TracingConfig } from '../config/schema.js';
import { OtlpExporter } from './otlp.js';
import {
  formatTraceparent,
  newSpanId,
  newTraceId,
  parseTraceparent,
  readB3,
  traceIdLow52,
} from './trace-context.js';

/**
 * A lean span recorder: one RequestTrace per request, an AttemptSpan per upstream attempt of a sampled request,
 * SpanRecords in a bounded queue, exported in batches off the request path. No OpenTelemetry SDK: a proxy
 * cannot afford an SDK span's cost per request.
 */

/** One upstream attempt of a sampled request: the client span. The exchange fills in end, outcome, status and error. */
export interface AttemptSpan {
  spanId: string;
  /** performance.now() */
  start: number;
  /** performance.now(); 0 until the attempt ends (the request's end stands in if it never does). */
  end: number;
  /** The endpoint's authority (`host:port`). */
  endpoint: string;
  /** The attempt's Outcome ('' until known). */
  outcome: string;
  /** The upstream's response status (0: none). */
  status: number;
  /** 1-based. */
  attempt: number;
  /** `error.type`: a Trellis error code for a failed attempt. */
  error: string | undefined;
}

/** The trace context of one request, created by Tracer.begin; the exchange fills it. */
export interface RequestTrace {
  traceId: string;
  /** The server span. */
  spanId: string;
  /** The incoming parent span id ('' for a new trace). */
  parentSpanId: string;
  sampled: boolean;
  traceState: string;
  /** Only filled when sampled. */
  attempts: AttemptSpan[];
}

/** A finished span, as the exporter encodes it. */
export interface SpanRecord {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: SpanKind;
  /** Unix epoch milliseconds (performance.timeOrigin + performance.now()), fractional. */
  startMs: number;
  endMs: number;
  /** OTLP Span.flags: W3C trace flags in bits 0-7, bit 8 "has is_remote", bit 9 "parent is remote". */
  flags: number;
  /** Attribute key, value, key, value, …; a number is an integer (`intValue`). */
  attributes: Array<string | number | boolean>;
  /** OTLP status code: 0 unset, 2 error. */
  statusCode: 0 | 2;
  statusMessage: string;
}

export const SpanKind = { SERVER: 2, CLIENT: 3 } as const;
export type SpanKind = (typeof SpanKind)[keyof typeof SpanKind];

export interface SpanExporter {
  /** Sends one batch; rejects when the batch was not accepted. */
  export(spans: SpanRecord[]): Promise<void>;
  /** Cancels what is in flight and releases connections. */
  shutdown(): Promise<void>;
}

/** What the exchange knows at the end of a request. */
export interface RequestEnd {
  method: string;
  /** The Trellis route name, when one matched. */
  route: string | undefined;
  listener: string;
  /** The response status (0: none was sent). */
  status: number;
  errorCode: string | undefined;
  /** performance.now() */
  start: number;
  end: number;
  scheme: string;
  /** `server.address`: the request's host, without port. */
  host: string;
  clientAddress: string;
  userAgent: string | undefined;
  /** `url.path`, optional: left out of the span when not given. */
  path?: string;
}

const TIME_ORIGIN = performance.timeOrigin;
const FLAG_SAMPLED = 0x01;
const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;
const TWO_52 = 2 ** 52;

/** RFC 9110 methods and PATCH: anything else is `_OTHER` (semantic conventions, bounded span names). */
const KNOWN_METHODS = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
]);

class Trace implements RequestTrace {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  sampled: boolean;
  traceState: string;
  attempts: AttemptSpan[];
  ended = false;
  constructor(traceId: string, spanId: string, parentSpanId: string, sampled: boolean, traceState: string) {
    this.traceId = traceId;
    this.spanId = spanId;
    this.parentSpanId = parentSpanId;
    this.sampled = sampled;
    this.traceState = traceState;
    this.attempts = sampled ? [] : NO_ATTEMPTS;
  }
}

/** Shared by every unsampled trace; never written (attemptStart records nothing for them). */
const NO_ATTEMPTS: AttemptSpan[] = Object.freeze([]) as unknown as AttemptSpan[];

export class Tracer {
  readonly #enabled: boolean;
  readonly #w3c: boolean;
  readonly #b3: boolean;
  /** A new trace is sampled when the low 52 bits of its trace id are below this. */
  readonly #threshold: number;
  readonly #maxQueue: number;
  readonly #batchSize: number;
  readonly #exportTimeout: number;
  readonly #exporter: SpanExporter | undefined;
  #queue: SpanRecord[] = [];
  #inflight: Promise<void> | undefined = undefined;
  #kicked = false;
  #timer: NodeJS.Timeout | undefined = undefined;
  #closed = false;
  /** Past close()'s deadline: no more exports. */
  #stopped = false;
  #dropped = 0;
  #exported = 0;
  #exportFailures = 0;

  constructor(cfg: TracingConfig, exporter?: SpanExporter) {
    this.#enabled = cfg.enabled;
    this.#w3c = cfg.propagation.includes('w3c');
    this.#b3 = cfg.propagation.includes('b3');
    this.#threshold = cfg.enabled ? Math.floor(cfg.sampleRatio * TWO_52) : 0;
    this.#maxQueue = cfg.maxQueue;
    this.#batchSize = cfg.batchSize;
    this.#exportTimeout = cfg.exportTimeout;
    if (!cfg.enabled) return;
    this.#exporter = exporter ?? new OtlpExporter(cfg);
    this.#timer = setInterval(this.#onTimer, cfg.flushInterval);
    this.#timer.unref();
  }

  /** Spans lost: the queue was full, the tracer was closed, or their export failed. */
  get dropped(): number {
    return this.#dropped;
  }
  /** Spans the collector accepted. */
  get exported(): number {
    return this.#exported;
  }
  /** Export requests that failed (after their retries). */
  get exportFailures(): number {
    return this.#exportFailures;
  }
  /** Spans waiting in the queue. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Start of a request: reads the incoming context (W3C first, then B3, as configured) and decides sampling:
   * a parent's sampled flag decides; without one (or a B3 parent that deferred), the trace id's low 52 bits
   * against the ratio. Always returns a context, so that the trace id can go into logs and error replies.
   */
  begin(headers: Record<string, string | string[] | undefined>): RequestTrace {
    if (this.#w3c) {
      const tp = headers.traceparent;
      if (tp !== undefined) {
        const p = parseTraceparent(typeof tp === 'string' ? tp : tp[0], headers.tracestate);
        if (p !== undefined)
          return new Trace(p.traceId, newSpanId(), p.spanId, p.sampled && this.#enabled, p.traceState);
      }
    }
    if (
      this.#b3 &&
      (headers.b3 !== undefined ||
        headers['x-b3-traceid'] !== undefined ||
        headers['x-b3-sampled'] !== undefined ||
        headers['x-b3-flags'] !== undefined)
    ) {
      const b = readB3(headers);
      if (b !== undefined) {
        const fresh = b.traceId === '';
        const traceId = fresh ? newTraceId() : b.traceId;
        const sampled = b.sampled === undefined ? this.#sample(traceId, fresh) : b.sampled && this.#enabled;
        return new Trace(traceId, newSpanId(), b.spanId, sampled, '');
      }
    }
    const traceId = newTraceId();
    return new Trace(traceId, newSpanId(), '', this.#sample(traceId, true), '');
  }

  /** `fresh`: traceId is the one newTraceId just made (its low bits are known without parsing). */
  #sample(traceId: string, fresh: boolean): boolean {
    const t = this.#threshold;
    if (t === 0) return false;
    if (t === TWO_52) return true;
    return traceIdLow52(traceId, fresh) < t;
  }

  /**
   * The `traceparent` for one upstream attempt: a new client span id per attempt when sampled (and its
   * AttemptSpan, pushed onto t.attempts), the server span id otherwise.
   */
  attemptStart(
    t: RequestTrace,
    endpoint: string,
    attempt: number,
    now: number,
  ): { traceparent: string; span: AttemptSpan | undefined } {
    if (!t.sampled) return { traceparent: formatTraceparent(t.traceId, t.spanId, false), span: undefined };
    const span: AttemptSpan = {
      spanId: newSpanId(),
      start: now,
      end: 0,
      endpoint,
      outcome: '',
      status: 0,
      attempt,
      error: undefined,
    };
    t.attempts.push(span);
    return { traceparent: formatTraceparent(t.traceId, span.spanId, true), span };
  }

  /** End of a request: when sampled, queues the server span and the attempts' client spans. Never throws. */
  end(t: RequestTrace, r: RequestEnd): void {
    if (!t.sampled) return;
    if (t instanceof Trace) {
      if (t.ended) return;
      t.ended = true;
    }
    const n = 1 + t.attempts.length;
    if (this.#closed || this.#exporter === undefined) {
      this.#dropped += n;
      return;
    }
    const q = this.#queue;
    let room = this.#maxQueue - q.length;
    if (room <= 0) {
      this.#dropped += n;
      return;
    }
    try {
      q.push(serverSpan(t, r));
      room--;
      const attempts = t.attempts;
      for (let i = 0; i < attempts.length; i++) {
        if (room === 0) {
          this.#dropped += attempts.length - i;
          break;
        }
        q.push(clientSpan(t, attempts[i]!, r));
        room--;
      }
    } catch {
      // A malformed record from the caller: never let tracing fail a request.
    }
    if (q.length >= this.#batchSize) this.#kick();
  }

  /** Exports a full batch soon (not inside end(): encoding is not the request's cost). */
  #kick(): void {
    if (this.#kicked || this.#inflight !== undefined) return;
    this.#kicked = true;
    setImmediate(this.#onKick).unref();
  }

  readonly #onKick = (): void => {
    this.#kicked = false;
    if (this.#queue.length >= this.#batchSize) this.#exportBatch();
  };

  readonly #onTimer = (): void => {
    if (this.#queue.length > 0) this.#exportBatch();
  };

  /** Starts one export unless one is in flight. */
  #exportBatch(): Promise<void> | undefined {
    if (this.#inflight !== undefined) return this.#inflight;
    if (this.#stopped) return undefined;
    const q = this.#queue;
    if (q.length === 0 || this.#exporter === undefined) return undefined;
    let batch: SpanRecord[];
    if (q.length <= this.#batchSize) {
      batch = q;
      this.#queue = [];
    } else batch = q.splice(0, this.#batchSize);
    let p: Promise<void>;
    try {
      p = this.#exporter.export(batch);
    } catch (err) {
      p = Promise.reject(err);
    }
    const inflight = p.then(
      () => {
        this.#exported += batch.length;
      },
      () => {
        this.#exportFailures++;
        this.#dropped += batch.length;
      },
    );
    this.#inflight = inflight.finally(() => {
      this.#inflight = undefined;
      if (!this.#closed && this.#queue.length >= this.#batchSize) this.#kick();
    });
    return this.#inflight;
  }

  /** Exports what is queued now (in batches, one request at a time); resolves when done. Never rejects. */
  async flush(): Promise<void> {
    let batches = Math.ceil(this.#queue.length / this.#batchSize) + 1;
    while (batches-- > 0 && !this.#stopped) {
      if (this.#inflight !== undefined) await this.#inflight;
      else if (this.#queue.length === 0) return;
      else await this.#exportBatch();
    }
  }

  /**
   * Stops recording, exports what is queued within the export timeout, then shuts the exporter down (which
   * cancels a request still in flight). Spans left over count as dropped.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#exporter === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#exportTimeout);
      timer.unref();
    });
    await Promise.race([this.flush(), deadline]);
    clearTimeout(timer);
    this.#stopped = true;
    await this.#exporter.shutdown().catch(() => {});
    // The shutdown cancels the request in flight; its batch counts as dropped when it settles.
    const inflight = this.#inflight;
    if (inflight !== undefined) {
      const grace = new Promise<void>((resolve) => setTimeout(resolve, 1_000).unref());
      await Promise.race([inflight, grace]);
    }
    this.#dropped += this.#queue.length;
    this.#queue = [];
  }
}

function flagsOf(sampled: boolean, remoteParent: boolean): number {
  return (sampled ? FLAG_SAMPLED : 0) | HAS_IS_REMOTE | (remoteParent ? IS_REMOTE : 0);
}

function serverSpan(t: RequestTrace, r: RequestEnd): SpanRecord {
  const known = KNOWN_METHODS.has(r.method);
  const method = known ? r.method : '_OTHER';
  const base = known ? r.method : 'HTTP';
  const attributes: Array<string | number | boolean> = ['http.request.method', method];
  if (!known) attributes.push('http.request.method_original', r.method);
  attributes.push('url.scheme', r.scheme);
  if (r.path !== undefined) attributes.push('url.path', r.path);
  if (r.host !== '') attributes.push('server.address', r.host);
  if (r.clientAddress !== '') attributes.push('client.address', r.clientAddress);
  if (r.userAgent !== undefined) attributes.push('user_agent.original', r.userAgent);
  if (r.status > 0) attributes.push('http.response.status_code', r.status);
  attributes.push('trellis.listener', r.listener);
  if (r.route !== undefined) attributes.push('trellis.route', r.route);
  const errorType = r.errorCode ?? (r.status >= 500 ? String(r.status) : undefined);
  if (errorType !== undefined) attributes.push('error.type', errorType);
  // Server spans: 5xx is an error, 4xx is the client's (semantic conventions, HTTP span status).
  const failed = r.status >= 500;
  const start = TIME_ORIGIN + r.start;
  return {
    traceId: t.traceId,
    spanId: t.spanId,
    parentSpanId: t.parentSpanId,
    traceState: t.traceState,
    name: r.route === undefined ? base : base + ' ' + r.route,
    kind: SpanKind.SERVER,
    startMs: start,
    endMs: r.end >= r.start ? TIME_ORIGIN + r.end : start,
    flags: flagsOf(true, t.parentSpanId !== ''),
    attributes,
    statusCode: failed ? 2 : 0,
    statusMessage: failed ? (errorType ?? '') : '',
  };
}

function clientSpan(t: RequestTrace, a: AttemptSpan, r: RequestEnd): SpanRecord {
  const known = KNOWN_METHODS.has(r.method);
  const attributes: Array<string | number | boolean> = ['http.request.method', known ? r.method : '_OTHER'];
  if (!known) attributes.push('http.request.method_original', r.method);
  const ep = a.endpoint;
  const colon = ep.lastIndexOf(':');
  if (colon > 0 && colon > ep.lastIndexOf(']')) {
    const host = ep.charCodeAt(0) === 91 /* [ */ ? ep.slice(1, colon - 1) : ep.slice(0, colon);
    attributes.push('server.address', host);
    const port = Number(ep.slice(colon + 1));
    if (Number.isInteger(port) && port > 0) attributes.push('server.port', port);
  } else attributes.push('server.address', ep.charCodeAt(0) === 91 ? ep.slice(1, -1) : ep);
  if (a.status > 0) attributes.push('http.response.status_code', a.status);
  if (a.attempt > 1) attributes.push('http.request.resend_count', a.attempt - 1);
  attributes.push('trellis.attempt', a.attempt);
  if (a.outcome !== '') attributes.push('trellis.outcome', a.outcome);
  // Client spans: any 4xx or 5xx is an error, as is an attempt that ended without a usable response.
  const failedOutcome = a.outcome !== '' && a.outcome !== 'success' && a.outcome !== 'http_5xx';
  const errorType = a.error ?? (a.status >= 400 ? String(a.status) : failedOutcome ? a.outcome : undefined);
  if (errorType !== undefined) attributes.push('error.type', errorType);
  const start = TIME_ORIGIN + a.start;
  const end = a.end > 0 ? a.end : r.end;
  return {
    traceId: t.traceId,
    spanId: a.spanId,
    parentSpanId: t.spanId,
    traceState: t.traceState,
    name: known ? r.method : 'HTTP',
    kind: SpanKind.CLIENT,
    startMs: start,
    endMs: end >= a.start ? TIME_ORIGIN + end : start,
    flags: flagsOf(true, false),
    attributes,
    statusCode: errorType !== undefined ? 2 : 0,
    statusMessage: errorType ?? '',
  };
}
