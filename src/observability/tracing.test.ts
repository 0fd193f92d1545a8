import { performance } from 'node:perf_hooks';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { type TracingConfig, tracingSchema } from '../config/schema.js';
import { type RequestEnd, type SpanExporter, type SpanRecord, Tracer } from './tracing.js';

function config(over: Partial<TracingConfig> = {}): TracingConfig {
  return { ...tracingSchema.parse({ enabled: true }), ...over };
}

/** An exporter that records batches; `mode` decides how export() settles. */
class FakeExporter implements SpanExporter {
  batches: SpanRecord[][] = [];
  mode: 'ok' | 'fail' | 'hang' | 'throw' = 'ok';
  shutdowns = 0;
  #hanging: Array<(err: Error) => void> = [];
  get spans(): SpanRecord[] {
    return this.batches.flat();
  }
  export(spans: SpanRecord[]): Promise<void> {
    if (this.mode === 'throw') throw new Error('sync failure');
    this.batches.push(spans);
    if (this.mode === 'ok') return Promise.resolve();
    if (this.mode === 'fail') return Promise.reject(new Error('collector failed'));
    return new Promise((_resolve, reject) => this.#hanging.push(reject));
  }
  async shutdown(): Promise<void> {
    this.shutdowns++;
    for (const reject of this.#hanging) reject(new Error('shut down'));
    this.#hanging = [];
  }
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

function ending(over: Partial<RequestEnd> = {}): RequestEnd {
  const now = performance.now();
  return {
    method: 'GET',
    route: 'orders',
    listener: 'public',
    status: 200,
    errorCode: undefined,
    start: now - 5,
    end: now,
    scheme: 'https',
    host: 'api.example.com',
    clientAddress: '203.0.113.9',
    userAgent: 'curl/8.5.0',
    ...over,
  };
}

/** Attributes of a record as an object. */
function attrs(s: SpanRecord): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (let i = 0; i < s.attributes.length; i += 2) out[s.attributes[i] as string] = s.attributes[i + 1]!;
  return out;
}

describe('Tracer.begin: propagation and sampling', () => {
  it('continues a W3C parent: its trace id, its span as parent, its tracestate, a new server span', () => {
    const tracer = new Tracer(config({ sampleRatio: 0 }), new FakeExporter());
    const t = tracer.begin({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'rojo=00f067aa0ba902b7' });
    expect(t).toMatchObject({
      traceId: TRACE,
      parentSpanId: PARENT,
      sampled: true,
      traceState: 'rojo=00f067aa0ba902b7',
    });
    expect(t.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(t.spanId).not.toBe(PARENT);
  });

  it("follows the parent's sampled flag whatever the ratio", () => {
    const never = new Tracer(config({ sampleRatio: 0 }), new FakeExporter());
    const always = new Tracer(config({ sampleRatio: 1 }), new FakeExporter());
    expect(never.begin({ traceparent: `00-${TRACE}-${PARENT}-01` }).sampled).toBe(true);
    expect(always.begin({ traceparent: `00-${TRACE}-${PARENT}-00` }).sampled).toBe(false);
    expect(never.begin({ b3: `${TRACE}-${PARENT}-1` }).sampled).toBe(true);
    expect(never.begin({ b3: `${TRACE}-${PARENT}-d` }).sampled).toBe(true);
    expect(always.begin({ b3: `${TRACE}-${PARENT}-0` }).sampled).toBe(false);
    expect(always.begin({ 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-sampled': '0' }).sampled).toBe(
      false,
    );
  });

  it('decides by ratio for a B3 parent that deferred, and for a bare B3 sampling state without ids', () => {
    const never = new Tracer(config({ sampleRatio: 0 }), new FakeExporter());
    const always = new Tracer(config({ sampleRatio: 1 }), new FakeExporter());
    expect(always.begin({ b3: `${TRACE}-${PARENT}` })).toMatchObject({
      traceId: TRACE,
      parentSpanId: PARENT,
      sampled: true,
    });
    expect(never.begin({ b3: `${TRACE}-${PARENT}` }).sampled).toBe(false);
    const denied = always.begin({ b3: '0' });
    expect(denied).toMatchObject({ parentSpanId: '', sampled: false });
    expect(denied.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(never.begin({ b3: '1' })).toMatchObject({ parentSpanId: '', sampled: true });
  });

  it('reads W3C first, then B3; an invalid traceparent falls back to B3', () => {
    const tracer = new Tracer(config(), new FakeExporter());
    const b3 = `${'1'.repeat(32)}-${'2'.repeat(16)}-1`;
    expect(tracer.begin({ traceparent: `00-${TRACE}-${PARENT}-01`, b3 }).traceId).toBe(TRACE);
    expect(tracer.begin({ traceparent: `00-${TRACE.toUpperCase()}-${PARENT}-01`, b3 }).traceId).toBe(
      '1'.repeat(32),
    );
  });

  it('ignores the headers propagation leaves out', () => {
    const w3c = new Tracer(config({ propagation: ['w3c'] }), new FakeExporter());
    const b3 = new Tracer(config({ propagation: ['b3'] }), new FakeExporter());
    expect(w3c.begin({ b3: `${TRACE}-${PARENT}-1` }).traceId).not.toBe(TRACE);
    expect(b3.begin({ traceparent: `00-${TRACE}-${PARENT}-01` }).traceId).not.toBe(TRACE);
    expect(b3.begin({ 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT }).traceId).toBe(TRACE);
  });

  it('starts a new trace without a (valid) parent; ratio 0 never samples it, ratio 1 always does', () => {
    const never = new Tracer(config({ sampleRatio: 0 }), new FakeExporter());
    const always = new Tracer(config({ sampleRatio: 1 }), new FakeExporter());
    for (let i = 0; i < 5_000; i++) {
      expect(never.begin({}).sampled).toBe(false);
      expect(always.begin({ traceparent: 'garbage' }).sampled).toBe(true);
    }
    const t = never.begin({});
    expect(t).toMatchObject({ parentSpanId: '', traceState: '', attempts: [] });
    expect(t.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('samples about the ratio of new traces (0.25 over 20k, within ±2%)', () => {
    const tracer = new Tracer(config({ sampleRatio: 0.25 }), new FakeExporter());
    let sampled = 0;
    for (let i = 0; i < 20_000; i++) if (tracer.begin({}).sampled) sampled++;
    expect(sampled / 20_000).toBeGreaterThan(0.23);
    expect(sampled / 20_000).toBeLessThan(0.27);
  });

  it('a disabled tracer samples nothing and makes no exporter, but still gives ids', () => {
    const tracer = new Tracer(config({ enabled: false, sampleRatio: 1 }));
    const t = tracer.begin({ traceparent: `00-${TRACE}-${PARENT}-01` });
    expect(t).toMatchObject({ traceId: TRACE, sampled: false });
    tracer.end(t, ending());
    expect(tracer.dropped + tracer.exported + tracer.queued).toBe(0);
  });
});

describe('Tracer.attemptStart', () => {
  it('unsampled: the server span id goes upstream, nothing is recorded', () => {
    const tracer = new Tracer(config({ sampleRatio: 0 }), new FakeExporter());
    const t = tracer.begin({});
    const a = tracer.attemptStart(t, '10.0.0.1:8080', 1, performance.now());
    expect(a).toEqual({ traceparent: `00-${t.traceId}-${t.spanId}-00`, span: undefined });
    expect(t.attempts).toEqual([]);
  });

  it('sampled: a client span per attempt, its id upstream', () => {
    const tracer = new Tracer(config({ sampleRatio: 1 }), new FakeExporter());
    const t = tracer.begin({});
    const now = performance.now();
    const a1 = tracer.attemptStart(t, '10.0.0.1:8080', 1, now);
    const a2 = tracer.attemptStart(t, '10.0.0.2:8080', 2, now + 1);
    expect(a1.span).toEqual({
      spanId: a1.span!.spanId,
      start: now,
      end: 0,
      endpoint: '10.0.0.1:8080',
      outcome: '',
      status: 0,
      attempt: 1,
      error: undefined,
    });
    expect(a1.traceparent).toBe(`00-${t.traceId}-${a1.span!.spanId}-01`);
    expect(a2.traceparent).toBe(`00-${t.traceId}-${a2.span!.spanId}-01`);
    expect(new Set([t.spanId, a1.span!.spanId, a2.span!.spanId]).size).toBe(3);
    expect(t.attempts).toEqual([a1.span, a2.span]);
  });
});

describe('Tracer.end: span records', () => {
  it('a server span and a client span per attempt, with semantic-convention names and attributes', async () => {
    const ex = new FakeExporter();
    const tracer = new Tracer(config(), ex);
    const t = tracer.begin({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'congo=t61rcWkgMzE' });
    const r = ending();
    const a1 = tracer.attemptStart(t, '10.0.0.1:8080', 1, r.start + 1).span!;
    a1.end = r.start + 2;
    a1.outcome = 'connect_refused';
    a1.error = 'upstream_connect_refused';
    const a2 = tracer.attemptStart(t, '[2001:db8::1]:9443', 2, r.start + 3).span!;
    a2.end = r.end - 1;
    a2.outcome = 'success';
    a2.status = 200;
    tracer.end(t, { ...r, path: '/orders/7' });
    await tracer.flush();
    const [server, c1, c2] = ex.spans;
    expect(ex.spans).toHaveLength(3);
    expect(server).toMatchObject({
      traceId: TRACE,
      spanId: t.spanId,
      parentSpanId: PARENT,
      traceState: 'congo=t61rcWkgMzE',
      name: 'GET orders',
      kind: 2,
      flags: 0x301,
      statusCode: 0,
    });
    expect(server!.startMs).toBeCloseTo(performance.timeOrigin + r.start, 3);
    expect(server!.endMs).toBeCloseTo(performance.timeOrigin + r.end, 3);
    expect(attrs(server!)).toEqual({
      'http.request.method': 'GET',
      'url.scheme': 'https',
      'url.path': '/orders/7',
      'server.address': 'api.example.com',
      'client.address': '203.0.113.9',
      'user_agent.original': 'curl/8.5.0',
      'http.response.status_code': 200,
      'trellis.listener': 'public',
      'trellis.route': 'orders',
    });
    expect(c1).toMatchObject({
      traceId: TRACE,
      spanId: a1.spanId,
      parentSpanId: t.spanId,
      name: 'GET',
      kind: 3,
      flags: 0x101,
      statusCode: 2,
      statusMessage: 'upstream_connect_refused',
    });
    expect(attrs(c1!)).toEqual({
      'http.request.method': 'GET',
      'server.address': '10.0.0.1',
      'server.port': 8080,
      'trellis.attempt': 1,
      'trellis.outcome': 'connect_refused',
      'error.type': 'upstream_connect_refused',
    });
    expect(c2).toMatchObject({ spanId: a2.spanId, parentSpanId: t.spanId, statusCode: 0 });
    expect(attrs(c2!)).toEqual({
      'http.request.method': 'GET',
      'server.address': '2001:db8::1',
      'server.port': 9443,
      'http.response.status_code': 200,
      'http.request.resend_count': 1,
      'trellis.attempt': 2,
      'trellis.outcome': 'success',
    });
    expect(c2!.startMs).toBeCloseTo(performance.timeOrigin + r.start + 3, 3);
    expect(c2!.endMs).toBeCloseTo(performance.timeOrigin + r.end - 1, 3);
  });

  it('errors: a Trellis error code, 5xx as span error, 4xx not on the server span; unknown methods', async () => {
    const ex = new FakeExporter();
    const tracer = new Tracer(config({ sampleRatio: 1 }), ex);
    tracer.end(tracer.begin({}), ending({ route: undefined, status: 404, errorCode: 'route_not_found' }));
    tracer.end(tracer.begin({}), ending({ status: 502, errorCode: 'upstream_connect_refused' }));
    tracer.end(tracer.begin({}), ending({ status: 503 }));
    const t = tracer.begin({});
    const a = tracer.attemptStart(t, 'backend', 1, performance.now()).span!;
    a.outcome = 'http_5xx';
    a.status = 503;
    tracer.end(t, ending({ method: 'BREW', status: 503, userAgent: undefined, clientAddress: '' }));
    await tracer.flush();
    const [notFound, refused, plain503, brew, brewClient] = ex.spans;
    expect(notFound).toMatchObject({ name: 'GET', parentSpanId: '', flags: 0x101, statusCode: 0 });
    expect(attrs(notFound!)['error.type']).toBe('route_not_found');
    expect(attrs(notFound!)['trellis.route']).toBeUndefined();
    expect(refused).toMatchObject({ statusCode: 2, statusMessage: 'upstream_connect_refused' });
    expect(plain503).toMatchObject({ statusCode: 2, statusMessage: '503' });
    expect(attrs(plain503!)['error.type']).toBe('503');
    expect(brew).toMatchObject({ name: 'HTTP orders' });
    expect(attrs(brew!)).toMatchObject({
      'http.request.method': '_OTHER',
      'http.request.method_original': 'BREW',
    });
    expect(attrs(brew!)['user_agent.original']).toBeUndefined();
    expect(attrs(brew!)['client.address']).toBeUndefined();
    expect(brewClient).toMatchObject({ name: 'HTTP', statusCode: 2, statusMessage: '503' });
    expect(attrs(brewClient!)).toMatchObject({ 'server.address': 'backend', 'error.type': '503' });
    expect(attrs(brewClient!)['server.port']).toBeUndefined();
    // An attempt that never ended takes the request's end.
    expect(brewClient!.endMs).toBeGreaterThanOrEqual(brewClient!.startMs);
  });

  it('records nothing for unsampled requests, and a request once', async () => {
    const ex = new FakeExporter();
    const tracer = new Tracer(config({ sampleRatio: 0 }), ex);
    tracer.end(tracer.begin({}), ending());
    const t = tracer.begin({ traceparent: `00-${TRACE}-${PARENT}-01` });
    tracer.end(t, ending());
    tracer.end(t, ending());
    await tracer.flush();
    expect(ex.spans).toHaveLength(1);
    expect(tracer.exported).toBe(1);
  });

  it('clamps an end before the start to the start', async () => {
    const ex = new FakeExporter();
    const tracer = new Tracer(config({ sampleRatio: 1 }), ex);
    const t = tracer.begin({});
    const a = tracer.attemptStart(t, 'h:1', 1, 100).span!;
    a.end = 50;
    tracer.end(t, ending({ start: 100, end: 90 }));
    await tracer.flush();
    for (const s of ex.spans) expect(s.endMs).toBe(s.startMs);
  });
});

describe('Tracer: batching and the bounded queue', () => {
  const sampledEnd = (tracer: Tracer) => tracer.end(tracer.begin({}), ending());

  it('exports a full batch soon, and a partial one on the flush interval', async () => {
    const ex = new FakeExporter();
    const tracer = new Tracer(config({ sampleRatio: 1, batchSize: 4, flushInterval: 50 }), ex);
    for (let i = 0; i < 5; i++) sampledEnd(tracer);
    expect(ex.batches).toHaveLength(0); // never inside end()
    await tick();
    expect(ex.batches.map((b) => b.length)).toEqual([4]);
    await new Promise((r) => setTimeout(r, 120));
    expect(ex.batches.map((b) => b.length)).toEqual([4, 1]);
    expect(tracer.exported).toBe(5);
    await tracer.close();
  });

  it('a hanging exporter: one export in flight, the queue caps at maxQueue, the rest is dropped and counted', async () => {
    const ex = new FakeExporter();
    ex.mode = 'hang';
    const tracer = new Tracer(config({ sampleRatio: 1, maxQueue: 10, batchSize: 5, exportTimeout: 200 }), ex);
    for (let i = 0; i < 100; i++) sampledEnd(tracer);
    expect(tracer.queued).toBe(10);
    expect(tracer.dropped).toBe(90);
    await tick();
    expect(ex.batches).toHaveLength(1);
    expect(tracer.queued).toBe(5);
    const begun = performance.now();
    for (let i = 0; i < 10_000; i++) sampledEnd(tracer);
    const perEnd = (performance.now() - begun) / 10_000;
    expect(perEnd).toBeLessThan(0.05); // begin + end, when full: a few µs at most
    await tick();
    expect(ex.batches).toHaveLength(1); // still one in flight
    expect(tracer.queued).toBe(10);
    expect(tracer.dropped).toBe(90 + 10_000 - 5);
    // close(): waits up to exportTimeout for the flush, then shuts the exporter down.
    const closing = performance.now();
    await tracer.close();
    expect(performance.now() - closing).toBeLessThan(1_000);
    expect(ex.shutdowns).toBe(1);
    expect(tracer.queued).toBe(0);
    expect(tracer.exported).toBe(0);
    expect(tracer.exportFailures).toBe(1);
    expect(tracer.dropped).toBe(10_100);
    sampledEnd(tracer); // after close: dropped
    expect(tracer.dropped).toBe(10_101);
  });

  it('a failing exporter: failures counted, their spans dropped, never thrown', async () => {
    const ex = new FakeExporter();
    ex.mode = 'fail';
    const tracer = new Tracer(config({ sampleRatio: 1, batchSize: 3 }), ex);
    for (let i = 0; i < 6; i++) sampledEnd(tracer);
    await tracer.flush();
    expect(tracer.exportFailures).toBe(2);
    expect(tracer.dropped).toBe(6);
    ex.mode = 'throw';
    sampledEnd(tracer);
    await tracer.flush();
    expect(tracer.exportFailures).toBe(3);
    expect(tracer.dropped).toBe(7);
    ex.mode = 'ok';
    sampledEnd(tracer);
    await tracer.close();
    expect(tracer.exported).toBe(1);
  });

  it('close() flushes what is queued, in batches', async () => {
    const ex = new FakeExporter();
    const tracer = new Tracer(config({ sampleRatio: 1, batchSize: 4, flushInterval: 60_000 }), ex);
    for (let i = 0; i < 10; i++) sampledEnd(tracer);
    await tracer.close();
    expect(ex.batches.map((b) => b.length)).toEqual([4, 4, 2]);
    expect(tracer.exported).toBe(10);
    expect(ex.shutdowns).toBe(1);
  });
});
