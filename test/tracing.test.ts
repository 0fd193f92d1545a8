import { mkdtempSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import type { ConfigInput } from '../src/config/schema.js';
import { type Problem, startGateway, startUpstream } from './helpers.js';
import { startOtlpReceiver } from './otlp-receiver.js';

// Tracing end to end: a real gateway, a real upstream, and a real OTLP/HTTP receiver that decodes what arrives.

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const PARENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN = '00f067aa0ba902b7';

function seenHeaders(): {
  list: Array<Record<string, string | string[] | undefined>>;
  handler: (req: IncomingMessage, res: ServerResponse) => void;
} {
  const list: Array<Record<string, string | string[] | undefined>> = [];
  return {
    list,
    handler: (req, res) => {
      list.push(req.headers);
      res.end('ok');
    },
  };
}

async function setup(tracing: Record<string, unknown>, extra: Partial<ConfigInput> = {}, handler?: never) {
  const receiver = await startOtlpReceiver();
  cleanup.push(() => receiver.close());
  const seen = seenHeaders();
  const up = await startUpstream(handler ?? seen.handler);
  cleanup.push(() => up.close());
  const gw = await startGateway({
    listeners: [{ name: 'public', port: 0 }],
    admin: { enabled: false },
    services: [{ name: 'svc', endpoints: [up.url] }],
    routes: [{ name: 'orders', backends: [{ service: 'svc' }] }],
    tracing: { enabled: true, endpoint: receiver.url, flushInterval: '50ms', ...tracing },
    ...extra,
  } as ConfigInput);
  cleanup.push(() => gw.close());
  return { receiver, seen, up, gw };
}

describe('tracing', () => {
  test('a sampled request: server span under the incoming parent, a client span per attempt, context upstream', async () => {
    const { receiver, seen, gw } = await setup({ sampleRatio: 0, encoding: 'protobuf' });
    const res = await fetch(`${gw.url}/orders/7`, {
      headers: {
        traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01`,
        tracestate: 'vendor=abc',
        'user-agent': 'test-agent',
      },
    });
    expect(res.status).toBe(200);
    const spans = await receiver.waitForSpans(2);
    const server = spans.find((s) => s.kind === 2)!;
    const client = spans.find((s) => s.kind === 3)!;
    expect(server.traceId).toBe(PARENT_TRACE);
    expect(server.parentSpanId).toBe(PARENT_SPAN);
    expect(server.name).toBe('GET orders');
    expect(server.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.response.status_code': 200,
      'trellis.route': 'orders',
      'user_agent.original': 'test-agent',
    });
    expect(client.traceId).toBe(PARENT_TRACE);
    expect(client.parentSpanId).toBe(server.spanId);
    expect(client.attributes['trellis.attempt']).toBe(1);
    expect(client.startNs).toBeGreaterThanOrEqual(server.startNs);
    expect(client.endNs).toBeLessThanOrEqual(server.endNs);
    // The upstream saw the client span as its parent, and the tracestate passed on.
    expect(seen.list[0]!.traceparent).toBe(`00-${PARENT_TRACE}-${client.spanId}-01`);
    expect(seen.list[0]!.tracestate).toBe('vendor=abc');
    expect(server.resource['service.name']).toBe('trellis');
  });

  test('each retry is its own client span with its endpoint and outcome', async () => {
    const { receiver, up } = await setup({ sampleRatio: 1, encoding: 'json' });
    const dead = await startUpstream();
    const deadUrl = dead.url;
    await dead.close();
    const gw = await startGateway({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      services: [
        {
          name: 'svc',
          endpoints: [deadUrl, up.url],
          loadBalancer: { type: 'round-robin' },
          outlierDetection: { enabled: false },
        },
      ],
      routes: [{ name: 'orders', backends: [{ service: 'svc' }] }],
      tracing: {
        enabled: true,
        endpoint: receiver.url,
        flushInterval: '50ms',
        sampleRatio: 1,
        encoding: 'json',
      },
    });
    cleanup.push(() => gw.close());
    // Round robin: one of two requests meets the dead endpoint first and is retried.
    for (let i = 0; i < 2; i++) expect((await fetch(gw.url)).status).toBe(200);
    const spans = await receiver.waitForSpans(5);
    const clients = spans.filter((s) => s.kind === 3);
    const retried = clients.filter((s) => s.attributes['trellis.attempt'] === 2);
    expect(retried.length).toBeGreaterThanOrEqual(1);
    const first = clients.find(
      (s) => s.traceId === retried[0]!.traceId && s.attributes['trellis.attempt'] === 1,
    )!;
    expect(first.attributes['trellis.outcome']).toBe('connect_refused');
    expect(first.attributes['error.type']).toBe('upstream_connect_refused');
    expect(first.status.code).toBe(2);
    expect(retried[0]!.attributes['trellis.outcome']).toBe('success');
    expect(first.spanId).not.toBe(retried[0]!.spanId);
  });

  test('unsampled requests export nothing; trace ids still reach problem replies and the access log', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'trellis-trace-')), 'access.log');
    const { receiver, seen, gw } = await setup({ sampleRatio: 0 }, { accessLog: { output: file } });
    await (await fetch(`${gw.url}/a`)).text();
    // An unsampled parent stays unsampled; the upstream hears it so.
    await (
      await fetch(`${gw.url}/b`, { headers: { traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-00` } })
    ).text();
    expect(seen.list[1]!.traceparent).toMatch(new RegExp(`^00-${PARENT_TRACE}-[0-9a-f]{16}-00$`));
    // A local error carries the trace id.
    await gw.apply({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      routes: [],
      tracing: { enabled: true, endpoint: receiver.url, sampleRatio: 0 },
      accessLog: { output: file },
    });
    const r = await fetch(`${gw.url}/nowhere`, {
      headers: { traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-00` },
    });
    const p = (await r.json()) as Problem & { traceId: string };
    expect(p.code).toBe('route_not_found');
    expect(p.traceId).toBe(PARENT_TRACE);
    await gw.close();
    cleanup.pop();
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.at(-1).traceId).toBe(PARENT_TRACE);
    expect(lines[0].traceId).toMatch(/^[0-9a-f]{32}$/);
    await new Promise((r) => setTimeout(r, 150));
    expect(receiver.spans).toHaveLength(0);
  });

  test('B3 headers are accepted and replaced by W3C context upstream', async () => {
    const { receiver, seen, gw } = await setup({ sampleRatio: 0 });
    await (
      await fetch(gw.url, { headers: { b3: `${PARENT_TRACE}-${PARENT_SPAN}-1`, 'x-b3-sampled': '1' } })
    ).text();
    const spans = await receiver.waitForSpans(2);
    expect(spans.every((s) => s.traceId === PARENT_TRACE)).toBe(true);
    expect(seen.list[0]!.b3).toBeUndefined();
    expect(seen.list[0]!['x-b3-sampled']).toBeUndefined();
    expect(seen.list[0]!.traceparent).toMatch(new RegExp(`^00-${PARENT_TRACE}-`));
  });

  test('a collector that hangs never slows requests', async () => {
    const { receiver, gw } = await setup({
      sampleRatio: 1,
      maxQueue: 50,
      batchSize: 10,
      exportTimeout: '300ms',
    });
    receiver.mode = 'hang';
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) expect((await fetch(gw.url)).status).toBe(200);
    // 200 requests on loopback take well under a second; a blocked exporter would stall them.
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(gw.gateway.tracer!.dropped).toBeGreaterThan(0);
    // And an operator sees it.
    const text = await gw.gateway.metrics!.registry.metrics();
    const dropped = Number(/^trellis_spans_dropped_total (\d+)/m.exec(text)?.[1]);
    expect(dropped).toBe(gw.gateway.tracer!.dropped);
  });
});
