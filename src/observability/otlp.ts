import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Client } from 'undici';
import type { TracingConfig } from '../config/schema.js';
import type { SpanExporter, SpanRecord } from './tracing.js';

/**
 * OTLP/HTTP trace export (https://opentelemetry.io/docs/specs/otlp/#otlphttp): an ExportTraceServiceRequest,
 * protobuf (encoded by hand here) or JSON, POSTed to the collector over a client of its own, never the
 * gateway's upstream pools.
 */

const VERSION = readVersion();

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    return typeof pkg.version === 'string' ? pkg.version : '';
  } catch {
    return '';
  }
}

/** Resource attributes: key, value, key, value, … */
export type Attributes = Array<string | number | boolean>;

/** The resource every span of this process shares. */
export function resourceAttributes(serviceName: string): Attributes {
  return [
    'service.name',
    serviceName,
    'service.version',
    VERSION,
    'telemetry.sdk.name',
    'trellis',
    'telemetry.sdk.language',
    'nodejs',
    'telemetry.sdk.version',
    VERSION,
    'host.name',
    hostname(),
    'process.pid',
    process.pid,
  ];
}

const SCOPE_NAME = 'trellis';

export interface OtlpExporterOptions {
  /** Further tries of a batch the collector could not take (429, 502, 503, 504, or no connection). Default 2. */
  retries?: number;
  /** First wait before a retry, doubled each time, with jitter; a Retry-After (at most 30 s) wins. Default 1000. */
  backoffMs?: number;
}

/** Status codes the OTLP/HTTP specification calls retryable. */
const RETRYABLE = new Set([429, 502, 503, 504]);
const MAX_RETRY_AFTER_MS = 30_000;

export class OtlpExporter implements SpanExporter {
  readonly #client: Client;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  readonly #json: boolean;
  readonly #resource: Attributes;
  readonly #timeout: number;
  readonly #retries: number;
  readonly #backoff: number;
  /** Requests and retry waits in flight, cancelled by shutdown(). */
  readonly #pending = new Set<AbortController>();
  #shut = false;

  constructor(cfg: TracingConfig, options: OtlpExporterOptions = {}) {
    let url: URL;
    try {
      url = new URL(cfg.endpoint);
    } catch {
      throw new TypeError(`tracing.endpoint: not a URL: ${cfg.endpoint}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new TypeError(`tracing.endpoint: expected http or https, got ${url.protocol}`);
    this.#path = url.pathname + url.search;
    this.#json = cfg.encoding === 'json';
    this.#headers = {
      ...cfg.headers,
      'content-type': this.#json ? 'application/json' : 'application/x-protobuf',
      'user-agent': `trellis/${VERSION}`,
    };
    this.#resource = resourceAttributes(cfg.serviceName);
    this.#timeout = cfg.exportTimeout;
    this.#retries = options.retries ?? 2;
    this.#backoff = options.backoffMs ?? 1_000;
    this.#client = new Client(url.origin, {
      pipelining: 1,
      keepAliveTimeout: 4_000,
      connect: { timeout: cfg.exportTimeout },
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  }

  async export(spans: SpanRecord[]): Promise<void> {
    if (this.#shut) throw new Error('exporter is shut down');
    const body = this.#json ? encodeJson(spans, this.#resource) : encodeProtobuf(spans, this.#resource);
    for (let attempt = 0; ; attempt++) {
      const r = await this.#post(body);
      if (r.ok) return;
      if (!r.retryable || attempt >= this.#retries || this.#shut) throw new Error(r.error);
      const wait = r.retryAfter ?? this.#backoff * 2 ** attempt * (0.5 + Math.random() / 2);
      await this.#sleep(wait);
      if (this.#shut) throw new Error('exporter is shut down');
    }
  }

  /** One POST within the export timeout: never rejects. */
  async #post(
    body: Buffer | string,
  ): Promise<{ ok: boolean; retryable: boolean; retryAfter: number | undefined; error: string }> {
    const ac = new AbortController();
    this.#pending.add(ac);
    const timer = setTimeout(() => ac.abort(new Error(`no reply in ${this.#timeout} ms`)), this.#timeout);
    timer.unref();
    try {
      const res = await this.#client.request({
        path: this.#path,
        method: 'POST',
        headers: this.#headers,
        body,
        signal: ac.signal,
      });
      // The reply (a partial success, or a google.rpc.Status) is not read; the connection is kept.
      await res.body.dump({ limit: 64 * 1024 });
      const status = res.statusCode;
      if (status >= 200 && status < 300)
        return { ok: true, retryable: false, retryAfter: undefined, error: '' };
      return {
        ok: false,
        retryable: RETRYABLE.has(status),
        retryAfter: retryAfterMs(res.headers['retry-after']),
        error: `collector answered ${status}`,
      };
    } catch (err) {
      const reason = ac.signal.aborted ? (ac.signal.reason as Error) : (err as Error);
      // No reply in time is not retried: the collector is slow or hangs, and the queue is filling meanwhile.
      return {
        ok: false,
        retryable: !ac.signal.aborted,
        retryAfter: undefined,
        error: reason?.message ?? String(reason),
      };
    } finally {
      clearTimeout(timer);
      this.#pending.delete(ac);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const ac = new AbortController();
      const timer = setTimeout(() => {
        this.#pending.delete(ac);
        resolve();
      }, ms);
      timer.unref();
      ac.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
      this.#pending.add(ac);
    });
  }

  /** Cancels requests and retry waits in flight and closes the connection. */
  async shutdown(): Promise<void> {
    if (this.#shut) return;
    this.#shut = true;
    for (const ac of this.#pending) ac.abort(new Error('exporter shut down'));
    this.#pending.clear();
    await this.#client.destroy().catch(() => {});
  }
}

/** Retry-After as delay-seconds or an HTTP date, in milliseconds, at most 30 s. */
function retryAfterMs(v: string | string[] | undefined): number | undefined {
  const s = typeof v === 'string' ? v : v?.[0];
  if (s === undefined || s === '') return undefined;
  let ms: number;
  if (/^\d+$/.test(s)) ms = Number(s) * 1000;
  else {
    const t = Date.parse(s);
    if (Number.isNaN(t)) return undefined;
    ms = t - Date.now();
  }
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/** Unix epoch milliseconds (fractional) as whole milliseconds and the nanoseconds past them (0-999 999). */
function splitMs(ms: number): [number, number] {
  let whole = Math.floor(ms);
  let ns = Math.round((ms - whole) * 1e6);
  if (ns >= 1e6) {
    whole++;
    ns -= 1e6;
  }
  return [whole, ns];
}

/** Unix nanoseconds as a decimal string (OTLP/JSON), exact. */
function nanosString(ms: number): string {
  const [whole, ns] = splitMs(ms);
  if (whole <= 0) return String(ns);
  return String(whole) + String(ns).padStart(6, '0');
}

const TWO_24 = 2 ** 24;
const TWO_32 = 2 ** 32;

/** Unix nanoseconds as the high and low 32-bit words of a uint64; every step exact in doubles. */
function nanosWords(ms: number): [number, number] {
  const [whole, ns] = splitMs(Math.max(0, ms));
  // whole * 1e6 + ns = (hi24 * 1e6) * 2^24 + (lo24 * 1e6 + ns), with whole = hi24 * 2^24 + lo24.
  const hi24 = Math.floor(whole / TWO_24);
  const x = hi24 * 1e6; // < 2^37
  const sum = (x % 256) * TWO_24 + (whole % TWO_24) * 1e6 + ns; // < 2^45
  return [Math.floor(x / 256) + Math.floor(sum / TWO_32), sum % TWO_32];
}

function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return 0;
}

// ---- OTLP/JSON (protobuf JSON mapping; ids as hex, enums as integers, 64-bit integers as strings) ----

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
}

function jsonAttributes(attrs: Attributes): Array<{ key: string; value: JsonAnyValue }> {
  const out: Array<{ key: string; value: JsonAnyValue }> = [];
  for (let i = 0; i < attrs.length; i += 2) {
    const v = attrs[i + 1]!;
    out.push({
      key: attrs[i] as string,
      value:
        typeof v === 'string'
          ? { stringValue: v }
          : typeof v === 'number'
            ? { intValue: String(Math.trunc(v)) }
            : { boolValue: v },
    });
  }
  return out;
}

/** An ExportTraceServiceRequest in OTLP/JSON. */
export function encodeJson(spans: SpanRecord[], resource: Attributes): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: jsonAttributes(resource) },
        scopeSpans: [
          {
            scope: { name: SCOPE_NAME, version: VERSION },
            spans: spans.map((s) => {
              const span: Record<string, unknown> = {
                traceId: s.traceId,
                spanId: s.spanId,
              };
              if (s.traceState !== '') span.traceState = s.traceState;
              if (s.parentSpanId !== '') span.parentSpanId = s.parentSpanId;
              span.flags = s.flags;
              span.name = s.name;
              span.kind = s.kind;
              span.startTimeUnixNano = nanosString(s.startMs);
              span.endTimeUnixNano = nanosString(s.endMs);
              span.attributes = jsonAttributes(s.attributes);
              if (s.statusCode !== 0)
                span.status =
                  s.statusMessage === ''
                    ? { code: s.statusCode }
                    : { code: s.statusCode, message: s.statusMessage };
              return span;
            }),
          },
        ],
      },
    ],
  });
}

// ---- OTLP/protobuf, by hand ----
// Field numbers from opentelemetry-proto (collector/trace/v1/trace_service.proto, trace/v1/trace.proto,
// common/v1/common.proto, resource/v1/resource.proto).

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/**
 * A protobuf writer into one growing buffer. A nested message reserves one byte for its length, and moves its
 * content when the length needs more (rare: only messages of 128 bytes and more, a few per span).
 */
class Writer {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint(v: number): void {
    this.ensure(10);
    const buf = this.buf;
    while (v >= 0x80) {
      buf[this.pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    buf[this.pos++] = v;
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  /** Starts a length-delimited field; returns its position for end(). */
  begin(field: number): number {
    this.tag(field, WIRE_LEN);
    this.ensure(1);
    return this.pos++;
  }

  /** Ends the field begun at `at`: writes its length there. */
  end(at: number): void {
    const len = this.pos - at - 1;
    if (len < 0x80) {
      this.buf[at] = len;
      return;
    }
    const n = varintSize(len);
    this.ensure(n - 1);
    this.buf.copyWithin(at + n, at + 1, this.pos);
    this.pos += n - 1;
    let v = len;
    let p = at;
    while (v >= 0x80) {
      this.buf[p++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[p] = v;
  }

  string(field: number, s: string): void {
    const len = s.length;
    this.tag(field, WIRE_LEN);
    if (len < 0x80) {
      // Short ASCII (attribute keys, most values) without a call into the native UTF-8 encoder.
      this.ensure(len + 1);
      const buf = this.buf;
      let p = this.pos + 1;
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p++] = c;
      }
      if (i === len) {
        buf[this.pos] = len;
        this.pos = p;
        return;
      }
    }
    this.ensure(len * 3 + 1);
    const at = this.pos++;
    this.pos += this.buf.write(s, this.pos, 'utf8');
    this.end(at);
  }

  /** Bytes from lowercase hex (ids are validated; anything else reads as zero nibbles). */
  hex(field: number, hex: string): void {
    const n = hex.length >> 1;
    this.tag(field, WIRE_LEN);
    this.varint(n);
    this.ensure(n);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < hex.length; i += 2)
      buf[p++] = (nibble(hex.charCodeAt(i)) << 4) | nibble(hex.charCodeAt(i + 1));
    this.pos = p;
  }

  uint(field: number, v: number): void {
    this.tag(field, WIRE_VARINT);
    this.varint(v);
  }

  fixed32(field: number, v: number): void {
    this.tag(field, WIRE_I32);
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
  }

  /** A fixed64 of unix nanoseconds from unix milliseconds, exact in doubles (no BigInt). */
  nanos(field: number, ms: number): void {
    const [hi, lo] = nanosWords(ms);
    this.tag(field, WIRE_I64);
    this.ensure(8);
    this.buf.writeUInt32LE(lo, this.pos);
    this.buf.writeUInt32LE(hi, this.pos + 4);
    this.pos += 8;
  }

  bool(field: number, v: boolean): void {
    this.tag(field, WIRE_VARINT);
    this.varint(v ? 1 : 0);
  }
}

function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** `repeated KeyValue` (KeyValue: key = 1, value = 2; AnyValue: string 1, bool 2, int64 3). */
function writeAttributes(w: Writer, field: number, attrs: Attributes): void {
  for (let i = 0; i < attrs.length; i += 2) {
    const kv = w.begin(field);
    w.string(1, attrs[i] as string);
    const any = w.begin(2);
    const v = attrs[i + 1]!;
    if (typeof v === 'string') w.string(1, v);
    else if (typeof v === 'number') w.uint(3, Math.max(0, Math.trunc(v)));
    else w.bool(2, v);
    w.end(any);
    w.end(kv);
  }
}

/** An ExportTraceServiceRequest in OTLP/protobuf. */
export function encodeProtobuf(spans: SpanRecord[], resource: Attributes): Buffer {
  const w = new Writer(256 + spans.length * 512);
  const rs = w.begin(1); // ExportTraceServiceRequest.resource_spans
  const res = w.begin(1); // ResourceSpans.resource
  writeAttributes(w, 1, resource); // Resource.attributes
  w.end(res);
  const ss = w.begin(2); // ResourceSpans.scope_spans
  const scope = w.begin(1); // ScopeSpans.scope
  w.string(1, SCOPE_NAME); // InstrumentationScope.name
  if (VERSION !== '') w.string(2, VERSION); // InstrumentationScope.version
  w.end(scope);
  for (const s of spans) {
    const sp = w.begin(2); // ScopeSpans.spans
    w.hex(1, s.traceId); // Span.trace_id
    w.hex(2, s.spanId); // Span.span_id
    if (s.traceState !== '') w.string(3, s.traceState); // Span.trace_state
    if (s.parentSpanId !== '') w.hex(4, s.parentSpanId); // Span.parent_span_id
    w.string(5, s.name); // Span.name
    w.uint(6, s.kind); // Span.kind
    w.nanos(7, s.startMs); // Span.start_time_unix_nano
    w.nanos(8, s.endMs); // Span.end_time_unix_nano
    writeAttributes(w, 9, s.attributes); // Span.attributes
    if (s.statusCode !== 0) {
      const st = w.begin(15); // Span.status
      if (s.statusMessage !== '') w.string(2, s.statusMessage); // Status.message
      w.uint(3, s.statusCode); // Status.code
      w.end(st);
    }
    w.fixed32(16, s.flags); // Span.flags
    w.end(sp);
  }
  w.end(ss);
  w.end(rs);
  return w.buf.subarray(0, w.pos);
}
