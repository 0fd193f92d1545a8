// node --test bench/harness/: the issue 5 rate-limit targets and their configs.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { COMPARISONS } from './report.js';
import { REDIS_PORT, TARGETS } from './targets.js';

const benchDir = new URL('..', import.meta.url).pathname;
const load = (file) => parse(readFileSync(`${benchDir}/${file}`, 'utf8'));

test('rate-limit configs are bench/trellis.yaml plus one never-reached limit on the benchmarked route', () => {
  const base = load('trellis.yaml');
  for (const [name, store] of [
    ['trellis-ratelimit', undefined],
    ['trellis-ratelimit-redis', 'redis'],
  ]) {
    const cfg = load(`${name}.yaml`);
    assert.equal(cfg.listeners[0].port, TARGETS[name].port, `${name}: listener port`);
    assert.equal(TARGETS[name].config, `bench/${name}.yaml`);
    assert.equal(TARGETS[name].redis, store === 'redis');
    const [policy, ...others] = cfg.policies;
    assert.equal(others.length, 0);
    assert.equal(policy.type, 'rate-limit');
    assert.equal(policy.key, 'client-ip');
    assert.equal(policy.store, store);
    if (store === 'redis') assert.equal(policy.redis.url, `redis://127.0.0.1:${REDIS_PORT}`);
    // No run can reach it: a billion a second.
    assert.deepEqual(policy.limits, [{ requests: 1_000_000_000, per: '1s' }]);
    const hello = cfg.routes.find((r) => r.name === 'hello');
    assert.deepEqual(hello.policies, ['per-client']);
    delete hello.policies;
    delete cfg.policies;
    delete cfg.listeners[0].port;
    const b = structuredClone(base);
    delete b.listeners[0].port;
    assert.deepEqual(cfg, b, `${name}: differs from bench/trellis.yaml beyond port and the policy`);
    assert.ok(COMPARISONS.some(([num, den]) => num === name && den === 'trellis'));
  }
});
