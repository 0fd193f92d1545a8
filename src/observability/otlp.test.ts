import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setImmediate as tick } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decodeJson,
  decodeProtobuf,
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
} from '../../test/otlp-receiver.js';
import { type TracingConfig, tracingSchema } from '../config/schema.js';
import { encodeJson, encodeProtobuf, OtlpExporter, resourceAttributes } from './otlp.js';
import { type RequestEnd, type SpanRecord, Tracer } from './tracing.js';

let receiver: OtlpReceiver;
beforeEach(async () => {
  receiver = await startOtlpReceiver();
});
afterEach(async () => {
  await receiver.close();
});

function config(over: Partial<TracingConfig> = {}): TracingConfig {
  return {
    ...tracingSchema.parse({ enabled: true, sampleRatio: 1, endpoint: receiver.url }),
    ...over,
  };
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

function ending(start: number, over: Partial<RequestEnd> = {}): RequestEnd {
  return {
    method: 'POST',
    route: 'checkout',
    listener: 'edge',
    status: 201,
    errorCode: undefined,
    start,
    end: performance.now(),
    scheme: 'http',
    host: 'shop.example',
    clientAddress: '198.51.100.7',
    userAgent: 'test-agent/1.0 ☃',
    ...over,
  };
}

/** One sampled request through the Tracer: a refused attempt, then a good one. */
function request(tracer: Tracer): { traceId: string; server: string; clients: string[] } {
  const start = performance.now();
  const t = tracer.begin({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=abc' });
  const a1 = tracer.attemptStart(t, '127.0.0.1:9001', 1, performance.now()).span!;
  a1.end = performance.now();
  a1.outcome = 'connect_refused';
  a1.error = 'upstream_connect_refused';
  const a2 = tracer.attemptStart(t, 'backend.internal:9002', 2, performance.now()).span!;
  a2.status = 201;
  a2.outcome = 'success';
  a2.end = performance.now();
  tracer.end(t, ending(start));
  return { traceId: t.traceId, server: t.spanId, clients: [a1.spanId, a2.spanId] };
}

describe.each(['protobuf', 'json'] as const)('OTLP/HTTP export, %s', (encoding) => {
  it('delivers server and client spans with ids, parent links, kinds, names, attributes and times', async () => {
    const wallStart = Date.now();
    const tracer = new Tracer(config({ encoding, headers: { 'x-api-key': 'secret-1' } }));
    const ids = request(tracer);
    await tracer.flush();
    const wallEnd = Date.now();
    const spans = await receiver.waitForSpans(3);
    expect(receiver.requests).toHaveLength(1);
    expect(receiver.requests[0]!.encoding).toBe(encoding);
    expect(receiver.requests[0]!.headers['x-api-key']).toBe('secret-1');
    expect(receiver.requests[0]!.headers['user-agent']).toMatch(/^trellis\//);
    expect(tracer.exported).toBe(3);
    expect(tracer.exportFailures).toBe(0);

    const server = spans.find((s) => s.kind === 2)!;
    const clients = spans.filter((s) => s.kind === 3);
    expect(server).toMatchObject({
      traceId: TRACE,
      spanId: ids.server,
      parentSpanId: PARENT,
      traceState: 'vendor=abc',
      name: 'POST checkout',
      flags: 0x301,
      status: { code: 0, message: '' },
      scope: { name: 'trellis' },
      encoding,
    });
    expect(server.attributes).toEqual({
      'http.request.method': 'POST',
      'url.scheme': 'http',
      'server.address': 'shop.example',
      'client.address': '198.51.100.7',
      'user_agent.original': 'test-agent/1.0 ☃',
      'http.response.status_code': 201,
      'trellis.listener': 'edge',
      'trellis.route': 'checkout',
    });
    expect(server.resource).toMatchObject({
      'service.name': 'trellis',
      'telemetry.sdk.name': 'trellis',
      'telemetry.sdk.language': 'nodejs',
      'process.pid': process.pid,
    });
    expect(server.resource['service.version']).toMatch(/^\d+\.\d+\.\d+/);

    expect(clients.map((c) => c.spanId)).toEqual(ids.clients);
    for (const c of clients) {
      expect(c).toMatchObject({ traceId: TRACE, parentSpanId: ids.server, name: 'POST', flags: 0x101 });
    }
    expect(clients[0]!.status).toEqual({ code: 2, message: 'upstream_connect_refused' });
    expect(clients[0]!.attributes).toEqual({
      'http.request.method': 'POST',
      'server.address': '127.0.0.1',
      'server.port': 9001,
      'trellis.attempt': 1,
      'trellis.outcome': 'connect_refused',
      'error.type': 'upstream_connect_refused',
    });
    expect(clients[1]!.status.code).toBe(0);
    expect(clients[1]!.attributes).toEqual({
      'http.request.method': 'POST',
      'server.address': 'backend.internal',
      'server.port': 9002,
      'http.response.status_code': 201,
      'http.request.resend_count': 1,
      'trellis.attempt': 2,
      'trellis.outcome': 'success',
    });

    // Times: unix nanoseconds inside the test's wall-clock window (1 ms slack for the clocks' rounding).
    const lo = BigInt(wallStart - 1) * 1_000_000n;
    const hi = BigInt(wallEnd + 1) * 1_000_000n;
    for (const s of spans) {
      expect(s.startNs >= lo && s.startNs <= hi).toBe(true);
      expect(s.endNs >= s.startNs && s.endNs <= hi).toBe(true);
    }
    // Client spans lie within the server span, in order.
    expect(clients[0]!.startNs >= server.startNs).toBe(true);
    expect(clients[1]!.startNs >= clients[0]!.endNs).toBe(true);
    expect(clients[1]!.endNs <= server.endNs).toBe(true);
    await tracer.close();
  });

  it('a root span has no parent id; a 5xx with a Trellis error code is a span error', async () => {
    const tracer = new Tracer(config({ encoding, serviceName: 'edge-gw' }));
    const t = tracer.begin({});
    tracer.end(
      t,
      ending(performance.now(), { status: 503, errorCode: 'no_healthy_upstream', route: undefined }),
    );
    await tracer.close();
    const [s] = await receiver.waitForSpans(1);
    expect(s).toMatchObject({
      traceId: t.traceId,
      spanId: t.spanId,
      parentSpanId: '',
      traceState: '',
      name: 'POST',
      flags: 0x101,
      status: { code: 2, message: 'no_healthy_upstream' },
    });
    expect(s!.attributes['error.type']).toBe('no_healthy_upstream');
    expect(s!.resource['service.name']).toBe('edge-gw');
  });

  it('a collector answering 503: end() stays cheap, the queue caps at maxQueue, the rest is dropped', async () => {
    receiver.mode = '503';
    const cfg = config({ encoding, maxQueue: 50, batchSize: 10, flushInterval: 20 });
    const tracer = new Tracer(cfg, new OtlpExporter(cfg, { retries: 0 }));
    const start = performance.now();
    for (let i = 0; i < 2_000; i++) {
      tracer.end(tracer.begin({}), ending(performance.now()));
      expect(tracer.queued).toBeLessThanOrEqual(50);
      if (i % 200 === 0) await tick(); // let exports start and fail meanwhile
    }
    expect((performance.now() - start) / 2_000).toBeLessThan(0.2); // loop overhead included
    await receiver.waitForRequests(2);
    await tracer.flush();
    expect(tracer.exportFailures).toBeGreaterThanOrEqual(2);
    expect(tracer.exported).toBe(0);
    // Every span is accounted for: lost (queue full or export failed) or still queued.
    expect(tracer.dropped + tracer.queued).toBe(2_000);
    expect(receiver.spans).toHaveLength(0);
    await tracer.close();
    expect(tracer.dropped).toBe(2_000);
  });

  it('retries a 503 (Retry-After honoured), then delivers', async () => {
    receiver.mode = '503';
    receiver.retryAfter = '0';
    const cfg = config({ encoding });
    const tracer = new Tracer(cfg, new OtlpExporter(cfg, { retries: 2, backoffMs: 10 }));
    request(tracer);
    const flushed = tracer.flush();
    await receiver.waitForRequests(1);
    receiver.mode = 'ok';
    await flushed;
    expect(receiver.requests.length).toBeGreaterThanOrEqual(2);
    expect(receiver.spans).toHaveLength(3);
    expect(tracer.exported).toBe(3);
    expect(tracer.exportFailures).toBe(0);
    await tracer.close();
  });

  it('a hanging collector: the export times out, one request at a time, memory stays bounded', async () => {
    receiver.mode = 'hang';
    const cfg = config({ encoding, maxQueue: 20, batchSize: 5, flushInterval: 10, exportTimeout: 300 });
    const tracer = new Tracer(cfg, new OtlpExporter(cfg, { retries: 0 }));
    for (let i = 0; i < 500; i++) tracer.end(tracer.begin({}), ending(performance.now()));
    await receiver.waitForRequests(1);
    for (let i = 0; i < 500; i++) tracer.end(tracer.begin({}), ending(performance.now()));
    expect(tracer.queued).toBeLessThanOrEqual(20);
    expect(receiver.requests).toHaveLength(1); // at most one export in flight
    // After exportTimeout the request is abandoned and counted; the next batch goes out (and hangs too).
    await receiver.waitForRequests(2, 3_000);
    expect(tracer.exportFailures).toBeGreaterThanOrEqual(1);
    const closing = performance.now();
    await tracer.close();
    expect(performance.now() - closing).toBeLessThan(1_500); // the deadline is exportTimeout
    expect(tracer.dropped).toBe(1_000);
    expect(tracer.exported).toBe(0);
  });

  it('close() flushes what is queued before the flush interval', async () => {
    const tracer = new Tracer(config({ encoding, batchSize: 512, flushInterval: 60_000 }));
    for (let i = 0; i < 30; i++) tracer.end(tracer.begin({}), ending(performance.now()));
    await tick();
    expect(receiver.requests).toHaveLength(0);
    await tracer.close();
    expect(receiver.spans).toHaveLength(30);
    expect(tracer.exported).toBe(30);
  });

  it('a collector that is not there: failures counted, nothing thrown', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const cfg = config({ encoding, endpoint: `http://127.0.0.1:${port}/v1/traces` });
    const tracer = new Tracer(cfg, new OtlpExporter(cfg, { retries: 1, backoffMs: 5 }));
    request(tracer);
    await tracer.flush();
    expect(tracer.exportFailures).toBe(1);
    expect(tracer.dropped).toBe(3);
    await tracer.close();
  });
});

describe('protobuf encoding', () => {
  function span(i: number, over: Partial<SpanRecord> = {}): SpanRecord {
    return {
      traceId: TRACE,
      spanId: (i + 1).toString(16).padStart(16, '0'),
      parentSpanId: PARENT,
      traceState: '',
      name: `span ${i}`,
      kind: 3,
      startMs: 1_700_000_000_123.456,
      endMs: 1_700_000_000_124.5,
      flags: 0x101,
      attributes: ['a.string', 'x', 'a.int', 4_000_000_000, 'a.bool', true, 'a.false', false],
      statusCode: 0,
      statusMessage: '',
      ...over,
    };
  }

  it('decodes with protobufjs: long strings, unicode, big integers, precise nanoseconds', () => {
    const long = 'é☃'.repeat(5_000); // 25 000 bytes: a 3-byte length
    const [s] = decodeProtobuf(
      encodeProtobuf(
        [span(0, { name: long, traceState: 'a=1,b=2', statusCode: 2, statusMessage: long.slice(0, 200) })],
        resourceAttributes('svc'),
      ),
    );
    expect(s!.name).toBe(long);
    expect(s!.traceState).toBe('a=1,b=2');
    expect(s!.status).toEqual({ code: 2, message: long.slice(0, 200) });
    expect(s!.attributes).toEqual({
      'a.string': 'x',
      'a.int': 4_000_000_000,
      'a.bool': true,
      'a.false': false,
    });
    // A double holds unix milliseconds to about 0.24 µs.
    const err = s!.startNs - 1_700_000_000_123_456_000n;
    expect(err < 0n ? -err : err).toBeLessThan(500n);
    expect(s!.endNs).toBe(1_700_000_000_124_500_000n);
    expect(s!.flags).toBe(0x101);
  });

  it('times: both encodings give the exact nanoseconds of the milliseconds, across magnitudes', () => {
    const reference = (ms: number) => {
      const whole = Math.floor(ms);
      return BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6));
    };
    const values = [
      0.5,
      1,
      1.9999999, // rounds up to the next millisecond
      1_700_000_000_123.5,
      4_102_444_800_000.25,
      2 ** 32 + 0.125,
    ];
    for (let i = 0; i < 200; i++) values.push(Date.now() + Math.random() * 1e9);
    const spans = values.map((ms, i) => span(i, { startMs: ms, endMs: ms }));
    const res = resourceAttributes('svc');
    const pb = decodeProtobuf(encodeProtobuf(spans, res));
    const json = decodeJson(encodeJson(spans, res));
    values.forEach((ms, i) => {
      expect(pb[i]!.startNs).toBe(reference(ms));
      expect(json[i]!.startNs).toBe(reference(ms));
    });
  });

  it('decodes a large batch (lengths of several bytes at every level)', () => {
    const spans = Array.from({ length: 2_000 }, (_, i) => span(i));
    const decoded: ReceivedSpan[] = decodeProtobuf(encodeProtobuf(spans, resourceAttributes('svc')));
    expect(decoded).toHaveLength(2_000);
    expect(decoded[1_999]!.spanId).toBe((2_000).toString(16).padStart(16, '0'));
    expect(decoded[1_999]!.name).toBe('span 1999');
    expect(decoded[0]!.resource['service.name']).toBe('svc');
  });

  it('JSON and protobuf carry the same content', () => {
    const spans = [span(0), span(1, { parentSpanId: '', kind: 2, statusCode: 2, statusMessage: 'boom' })];
    const res = resourceAttributes('svc');
    const fromPb = decodeProtobuf(encodeProtobuf(spans, res)).map((s) => ({ ...s, encoding: '' }));
    const fromJson = decodeJson(encodeJson(spans, res)).map((s) => ({ ...s, encoding: '' }));
    expect(fromJson).toEqual(fromPb);
    const json = JSON.parse(encodeJson(spans, res));
    expect(json.resourceSpans[0].scopeSpans[0].spans[0].endTimeUnixNano).toBe('1700000000124500000');
    expect(json.resourceSpans[0].scopeSpans[0].spans[1].parentSpanId).toBeUndefined();
    expect(fromPb[1]!.parentSpanId).toBe('');
    expect(fromPb[1]!.status).toEqual({ code: 2, message: 'boom' });
  });
});

describe('OtlpExporter configuration', () => {
  it('rejects an endpoint that is not an http(s) URL', () => {
    expect(() => new OtlpExporter(config({ endpoint: 'not a url' }))).toThrow(/tracing.endpoint/);
    expect(() => new OtlpExporter(config({ endpoint: 'ftp://x/v1/traces' }))).toThrow(/http or https/);
  });
});
