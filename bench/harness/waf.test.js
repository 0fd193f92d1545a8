// node --test bench/harness/: issue 6's WAF targets and their config.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { COMPARISONS } from './report.js';
import { JSON_POST_BODY, TARGETS, WAF_GET_PATH } from './targets.js';
import { requestScript } from './wrk.js';

const benchDir = new URL('..', import.meta.url).pathname;
const load = (file) => parse(readFileSync(`${benchDir}/${file}`, 'utf8'));

test('the WAF config is bench/trellis.yaml plus the CRS at PL1 on the measured route', () => {
  const cfg = load('trellis-waf.yaml');
  assert.equal(cfg.listeners[0].port, TARGETS['trellis-waf'].port);
  assert.deepEqual(cfg.policies, [
    { name: 'crs', type: 'waf', rules: 'crs', paranoiaLevel: 1, mode: 'block' },
  ]);
  const hello = cfg.routes.find((r) => r.name === 'hello');
  assert.deepEqual(hello.policies, ['crs']);
  delete hello.policies;
  delete cfg.policies;
  delete cfg.listeners[0].port;
  const base = load('trellis.yaml');
  delete base.listeners[0].port;
  assert.deepEqual(cfg, base);
});

test('with and without the WAF, the same requests: a typical GET, and a 4 KiB JSON POST', () => {
  assert.equal(TARGETS['trellis-waf'].path, WAF_GET_PATH);
  assert.equal(TARGETS['trellis-get'].path, WAF_GET_PATH);
  assert.deepEqual(TARGETS['trellis-waf-post'].request, TARGETS['trellis-post'].request);
  assert.equal(TARGETS['trellis-waf-post'].path, TARGETS['trellis-post'].path);
  const body = JSON.parse(JSON_POST_BODY);
  assert.ok(JSON_POST_BODY.length > 3900 && JSON_POST_BODY.length <= 4096);
  assert.ok(body.order.items.length > 20);
  assert.ok(COMPARISONS.some(([n, d]) => n === 'trellis-waf' && d === 'trellis-get'));
  assert.ok(COMPARISONS.some(([n, d]) => n === 'trellis-waf-post' && d === 'trellis-post'));
});

test('the POST script escapes what Lua strings need', () => {
  const lua = requestScript({ method: 'POST', body: '{"a":"x\\\\y\n"}', contentType: 'application/json' });
  assert.equal(
    lua,
    'wrk.method = "POST"\nwrk.body = "{\\"a\\":\\"x\\\\\\\\y\\n\\"}"\nwrk.headers["Content-Type"] = "application/json"\n',
  );
});
