// node --test bench/harness/: the issue 7 telemetry targets, their configs and the OTLP sink.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { readOptions } from './options.js';
import { countSpans, createSink } from './otlp-sink.js';
import { comparison, otlpSummary } from './report.js';
import { SINK_PORT, TARGETS } from './targets.js';

const benchDir = new URL('..', import.meta.url).pathname;
const repoDir = new URL('../..', import.meta.url).pathname;
const TELEMETRY = ['trellis-telemetry-off', 'trellis-telemetry', 'trellis-telemetry-full'];
const load = (file) => parse(readFileSync(`${benchDir}/${file}`, 'utf8'));

test('telemetry configs are bench/trellis.yaml but for their port and telemetry sections', () => {
  const strip = (cfg) => {
    delete cfg.listeners[0].port;
    delete cfg.metrics;
    delete cfg.tracing;
    delete cfg.accessLog;
    return cfg;
  };
  const base = strip(load('trellis.yaml'));
  for (const name of TELEMETRY) {
    const cfg = load(`${name}.yaml`);
    assert.equal(cfg.listeners[0].port, TARGETS[name].port, `${name}: listener port`);
    assert.equal(TARGETS[name].config, `bench/${name}.yaml`);
    assert.deepEqual(strip(cfg), base, `${name}: differs from bench/trellis.yaml beyond port and telemetry`);
  }
  const off = load('trellis-telemetry-off.yaml');
  assert.deepEqual([off.metrics.enabled, off.tracing.enabled, off.accessLog.output], [false, false, 'off']);
  for (const [name, ratio] of [
    ['trellis-telemetry', 0.01],
    ['trellis-telemetry-full', 1],
  ]) {
    const cfg = load(`${name}.yaml`);
    assert.equal(cfg.metrics.enabled, true);
    assert.equal(cfg.accessLog.output, 'off');
    assert.deepEqual(cfg.tracing, {
      enabled: true,
      sampleRatio: ratio,
      endpoint: `http://127.0.0.1:${SINK_PORT}/v1/traces`,
    });
    assert.equal(TARGETS[name].otlp, true);
  }
  assert.ok(!TARGETS['trellis-telemetry-off'].otlp);
});

test('telemetry targets run only when --only names them, in off, 1%, full order', () => {
  const all = readOptions([], {}).targets;
  for (const name of TELEMETRY) assert.ok(!all.includes(name));
  const opts = readOptions(['--only', 'trellis-telemetry-full,trellis-telemetry,trellis-telemetry-off'], {});
  assert.deepEqual(opts.targets, TELEMETRY);
});

test('countSpans reads protobuf exports of the build, and JSON', async (t) => {
  const otlp = `${repoDir}/dist/observability/otlp.js`;
  const span = (spanId, kind) => ({
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId,
    parentSpanId: '',
    traceState: '',
    name: 'GET hello',
    kind,
    startMs: 1_700_000_000_000.5,
    endMs: 1_700_000_000_001.25,
    flags: 0x101,
    attributes: ['http.request.method', 'GET', 'http.response.status_code', 200, 'x', true],
    statusCode: 0,
    statusMessage: '',
  });
  const spans = [span('b7ad6b7169203331', 2), span('b7ad6b7169203332', 3), span('b7ad6b7169203333', 2)];
  assert.deepEqual(countSpans(Buffer.from('')), { spans: 0, server: 0 });
  assert.throws(() => countSpans(Buffer.from([0x0a, 0x05, 0x01])), /truncated/);
  if (!existsSync(otlp)) {
    t.diagnostic('dist/ not built: protobuf case skipped');
    return;
  }
  const { encodeJson, encodeProtobuf, resourceAttributes } = await import(otlp);
  const resource = resourceAttributes('trellis');
  assert.deepEqual(countSpans(encodeProtobuf(spans, resource)), { spans: 3, server: 2 });
  const json = Buffer.from(encodeJson(spans, resource));
  assert.deepEqual(countSpans(json, 'application/json'), { spans: 3, server: 2 });
});

test('the sink answers exports with 200 and counts them', async () => {
  const { server, stats } = createSink();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    const body = JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [{ kind: 2 }, { kind: 3 }] }] }] });
    const post = await fetch(`${base}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    assert.equal(post.status, 200);
    assert.equal((await fetch(`${base}/other`)).status, 404);
    const got = await (await fetch(`${base}/stats`)).json();
    assert.deepEqual(got, { requests: 1, bytes: body.length, spans: 2, serverSpans: 1, badRequests: 0 });
    assert.deepEqual(got, stats);
  } finally {
    server.close();
    server.closeAllConnections();
  }
});

test('comparison and otlpSummary of the telemetry targets', () => {
  const run = (round, rps, otlp) => ({
    round,
    requestsPerSec: rps,
    latencyMs: { p50: 2, p99: 8 },
    cpuUsPerRequest: 1e6 / rps,
    otlp,
  });
  const s = (rps) => ({ runs: 2, requestsPerSec: rps, p50Ms: 2, p99Ms: 8, cpuUsPerRequest: 1e6 / rps });
  const runs = {
    'trellis-telemetry-off': [run(1, 10000), run(2, 5000)],
    'trellis-telemetry': [
      run(1, 9500, { served: 1000, serverSpans: 10, spans: 20, requests: 1, bytes: 4000, badRequests: 0 }),
      run(2, 4750, { served: 1000, serverSpans: 12, spans: 24, requests: 1, bytes: 4800, badRequests: 0 }),
    ],
  };
  const line = comparison(
    { 'trellis-telemetry-off': s(7500), 'trellis-telemetry': s(7125) },
    runs,
    'trellis-telemetry',
    'trellis-telemetry-off',
  );
  assert.match(line, /^trellis-telemetry \/ trellis-telemetry-off, .*req\/s 0\.950 \(0\.950\)/);
  assert.equal(
    otlpSummary(['trellis-telemetry-off', 'trellis-telemetry'], runs),
    'OTLP sink, server spans / requests:\n' +
      'trellis-telemetry: 2,000 requests, 22 server spans (1.10%), 44 spans in 2 exports, 0.0 MB; per round: 0.0100 0.0120',
  );
});
