import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';

/**
 * A real OTLP/HTTP trace receiver for tests: POST /v1/traces in JSON or protobuf on 127.0.0.1, decoded into
 * plain spans. The protobuf side decodes with protobufjs from the opentelemetry-proto definitions below (field
 * numbers and types copied from the .proto files), independently of the hand-written encoder it checks.
 */

const OTLP_TRACE_PROTO = `
syntax = "proto3";
package otlp;

message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message InstrumentationScope {
  string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4;
}
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  enum SpanKind {
    SPAN_KIND_UNSPECIFIED = 0; SPAN_KIND_INTERNAL = 1; SPAN_KIND_SERVER = 2; SPAN_KIND_CLIENT = 3;
    SPAN_KIND_PRODUCER = 4; SPAN_KIND_CONSUMER = 5;
  }
  SpanKind kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  uint32 dropped_events_count = 12;
  uint32 dropped_links_count = 14;
  Status status = 15;
}
message Status { string message = 2; enum StatusCode { STATUS_CODE_UNSET = 0; STATUS_CODE_OK = 1; STATUS_CODE_ERROR = 2; } StatusCode code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value {
    string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
    ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`;

const ExportTraceServiceRequest = protobuf
  .parse(OTLP_TRACE_PROTO)
  .root.lookupType('otlp.ExportTraceServiceRequest');

export type AttributeValue = string | number | boolean;

/** One span as it arrived, in plain terms. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' when absent. */
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  flags: number;
  attributes: Record<string, AttributeValue>;
  status: { code: number; message: string };
  resource: Record<string, AttributeValue>;
  scope: { name: string; version: string };
  encoding: 'json' | 'protobuf';
}

export interface ReceivedRequest {
  encoding: 'json' | 'protobuf';
  headers: IncomingHttpHeaders;
  spans: number;
}

/** How the receiver answers: 200, 503 (with an optional Retry-After), or never (the request hangs). */
export type ReceiverMode = 'ok' | '503' | 'hang';

export interface OtlpReceiver {
  readonly url: string;
  readonly port: number;
  readonly spans: ReceivedSpan[];
  /** Every POST /v1/traces, answered or not. */
  readonly requests: ReceivedRequest[];
  mode: ReceiverMode;
  /** Sent with 503 replies when set. */
  retryAfter: string | undefined;
  /** Resolves once at least `n` spans arrived; rejects after `timeoutMs`. */
  waitForSpans(n: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Resolves once at least `n` requests arrived; rejects after `timeoutMs`. */
  waitForRequests(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: ReceivedRequest[] = [];
  const hanging = new Set<ServerResponse>();
  let waiters: Array<() => void> = [];
  const notify = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      const encoding =
        type === 'application/json' ? 'json' : type === 'application/x-protobuf' ? 'protobuf' : undefined;
      if (encoding === undefined) {
        res.writeHead(415).end();
        return;
      }
      let decoded: ReceivedSpan[];
      try {
        decoded = encoding === 'json' ? decodeJson(body.toString('utf8')) : decodeProtobuf(body);
      } catch (err) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err));
        return;
      }
      requests.push({ encoding, headers: req.headers, spans: decoded.length });
      if (r.mode === 'hang') {
        hanging.add(res);
        notify();
        return;
      }
      if (r.mode === '503') {
        res.writeHead(503, r.retryAfter === undefined ? {} : { 'retry-after': r.retryAfter }).end();
        notify();
        return;
      }
      spans.push(...decoded);
      if (encoding === 'json') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      notify();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const waitFor = (done: () => boolean, what: string, timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`receiver: timed out waiting for ${what}`)), timeoutMs);
      const check = () => {
        if (done()) {
          clearTimeout(timer);
          resolve();
        } else waiters.push(check);
      };
      check();
    });

  const r: OtlpReceiver = {
    url: `http://127.0.0.1:${port}/v1/traces`,
    port,
    spans,
    requests,
    mode: 'ok',
    retryAfter: undefined,
    async waitForSpans(n, timeoutMs = 5_000) {
      await waitFor(() => spans.length >= n, `${n} spans (have ${spans.length})`, timeoutMs);
      return spans;
    },
    waitForRequests(n, timeoutMs = 5_000) {
      return waitFor(() => requests.length >= n, `${n} requests (have ${requests.length})`, timeoutMs);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return r;
}

// ---- protobuf ----

interface PbKeyValue {
  key: string;
  value?: {
    stringValue?: string;
    boolValue?: boolean;
    intValue?: string;
    doubleValue?: number;
  };
}

interface PbRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: PbKeyValue[] };
    scopeSpans?: Array<{
      scope?: { name?: string; version?: string };
      spans?: Array<{
        traceId: Uint8Array;
        spanId: Uint8Array;
        parentSpanId: Uint8Array;
        traceState: string;
        flags: number;
        name: string;
        kind: number;
        startTimeUnixNano: string;
        endTimeUnixNano: string;
        attributes?: PbKeyValue[];
        status?: { code: number; message: string };
      }>;
    }>;
  }>;
}

function pbAttributes(list: PbKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of list ?? []) {
    const v = kv.value ?? {};
    if (v.stringValue !== undefined) out[kv.key] = v.stringValue;
    else if (v.intValue !== undefined) out[kv.key] = Number(v.intValue);
    else if (v.boolValue !== undefined) out[kv.key] = v.boolValue;
    else if (v.doubleValue !== undefined) out[kv.key] = v.doubleValue;
  }
  return out;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** An ExportTraceServiceRequest in protobuf, decoded by protobufjs. */
export function decodeProtobuf(body: Uint8Array): ReceivedSpan[] {
  const msg = ExportTraceServiceRequest.decode(body);
  const req = ExportTraceServiceRequest.toObject(msg, {
    longs: String,
    enums: Number,
    defaults: true,
    oneofs: false,
  }) as PbRequest;
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = pbAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      const scope = { name: ss.scope?.name ?? '', version: ss.scope?.version ?? '' };
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          traceState: s.traceState,
          name: s.name,
          kind: s.kind,
          startNs: BigInt(s.startTimeUnixNano),
          endNs: BigInt(s.endTimeUnixNano),
          flags: s.flags,
          attributes: pbAttributes(s.attributes),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
          resource,
          scope,
          encoding: 'protobuf',
        });
      }
    }
  }
  return out;
}

// ---- JSON (OTLP/JSON: hex ids, integer enums, 64-bit integers as strings or numbers) ----

interface JsonKeyValue {
  key: string;
  value?: { stringValue?: string; boolValue?: boolean; intValue?: string | number; doubleValue?: number };
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of list ?? []) {
    const v = kv.value ?? {};
    if (v.stringValue !== undefined) out[kv.key] = v.stringValue;
    else if (v.intValue !== undefined) out[kv.key] = Number(v.intValue);
    else if (v.boolValue !== undefined) out[kv.key] = v.boolValue;
    else if (v.doubleValue !== undefined) out[kv.key] = v.doubleValue;
  }
  return out;
}

/** An ExportTraceServiceRequest in OTLP/JSON. */
export function decodeJson(text: string): ReceivedSpan[] {
  // biome-ignore lint/suspicious/noExplicitAny: a wire document, checked field by field below
  const req = JSON.parse(text) as any;
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      const scope = { name: ss.scope?.name ?? '', version: ss.scope?.version ?? '' };
      for (const s of ss.spans ?? []) {
        for (const id of [s.traceId, s.spanId, s.parentSpanId ?? ''])
          if (typeof id !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(id))
            throw new Error(`not a hex id: ${id}`);
        out.push({
          traceId: s.traceId.toLowerCase(),
          spanId: s.spanId.toLowerCase(),
          parentSpanId: (s.parentSpanId ?? '').toLowerCase(),
          traceState: s.traceState ?? '',
          name: s.name ?? '',
          kind: Number(s.kind ?? 0),
          startNs: BigInt(s.startTimeUnixNano),
          endNs: BigInt(s.endTimeUnixNano),
          flags: Number(s.flags ?? 0),
          attributes: jsonAttributes(s.attributes),
          status: { code: Number(s.status?.code ?? 0), message: s.status?.message ?? '' },
          resource,
          scope,
          encoding: 'json',
        });
      }
    }
  }
  return out;
}
