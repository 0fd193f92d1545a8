// node --test bench/harness/: issue 5's full edge chain target and its config.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { COMPARISONS } from './report.js';
import { EDGE_KEY, TARGETS } from './targets.js';

const benchDir = new URL('..', import.meta.url).pathname;
const load = (file) => parse(readFileSync(`${benchDir}/${file}`, 'utf8'));

test('the edge config is bench/trellis.yaml plus key, CORS and rate-limit policies and the access log on', () => {
  const cfg = load('trellis-edge.yaml');
  const t = TARGETS['trellis-edge'];
  assert.equal(cfg.listeners[0].port, t.port);
  assert.equal(t.config, 'bench/trellis-edge.yaml');
  // The load carries the one consumer's key, so every measured request passes the whole chain.
  assert.equal(t.path, `/?api_key=${EDGE_KEY}`);
  const hash = `sha256:${createHash('sha256').update(EDGE_KEY).digest('hex')}`;
  assert.deepEqual(cfg.consumers, [{ name: 'bench', credentials: { apiKeys: [{ hash }] } }]);
  assert.deepEqual(
    cfg.policies.map((p) => p.type),
    ['api-key', 'cors', 'rate-limit'],
  );
  assert.deepEqual(cfg.policies[2].limits, [{ requests: 1_000_000_000, per: '1s' }]);
  const hello = cfg.routes.find((r) => r.name === 'hello');
  assert.deepEqual(hello.policies, ['keys', 'browser', 'per-client']);
  assert.equal(cfg.accessLog.output, '/dev/null');
  delete hello.policies;
  for (const k of ['policies', 'consumers', 'accessLog']) delete cfg[k];
  delete cfg.listeners[0].port;
  const base = load('trellis.yaml');
  delete base.listeners[0].port;
  delete base.accessLog;
  assert.deepEqual(cfg, base);
  assert.ok(COMPARISONS.some(([n, d]) => n === 'trellis-edge' && d === 'trellis'));
  assert.ok(COMPARISONS.some(([n, d]) => n === 'trellis-edge' && d === 'fast-gateway'));
});
