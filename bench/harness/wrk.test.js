// node --test bench/harness/  (the repo's vitest covers src/ and test/ only)
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { parseDuration, readOptions } from './options.js';
import { median, refComparison } from './report.js';
import { trellisConfigOnPort } from './targets.js';
import { parseWrk } from './wrk.js';

const REPORT = `Running 10s test @ http://127.0.0.1:18081/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms    1.10ms  41.06ms   97.52%
    Req/Sec    30.67k     2.36k   34.49k    77.00%
  Latency Distribution
     50%  812.00us
     75%    1.53ms
     90%    2.01ms
     99%    1.20s
  305334 requests in 10.00s, 47.63MB read
  Socket errors: connect 0, read 3, write 0, timeout 7
  Non-2xx or 3xx responses: 12
Requests/sec:  30530.61
Transfer/sec:      4.76MB
`;

test('parseWrk reads rate, percentiles in every unit, and failures', () => {
  const r = parseWrk(REPORT);
  assert.equal(r.requestsPerSec, 30530.61);
  assert.equal(r.requests, 305334);
  assert.equal(r.seconds, 10);
  assert.deepEqual(r.latencyMs, { p50: 0.812, p75: 1.53, p90: 2.01, p99: 1200 });
  assert.deepEqual(r.errors, { connect: 0, read: 3, write: 0, timeout: 7, non2xx: 12 });
});

test('parseWrk without errors reports zeros', () => {
  const clean = REPORT.replace(/ {2}Socket errors.*\n/, '').replace(/ {2}Non-2xx.*\n/, '');
  assert.deepEqual(parseWrk(clean).errors, { connect: 0, read: 0, write: 0, timeout: 0, non2xx: 0 });
});

test('parseWrk refuses output without the numbers that matter', () => {
  assert.throws(() => parseWrk('unable to connect to 127.0.0.1:18081 Connection refused\n'), /Requests\/sec/);
  assert.throws(() => parseWrk(REPORT.replace(/ {2}Latency Distribution[\s\S]*?99%.*\n/, '')), /latency/);
});

test('parseDuration takes wrk-style durations', () => {
  assert.equal(parseDuration('10s', '--duration'), 10_000);
  assert.equal(parseDuration('500ms', '--warmup'), 500);
  assert.equal(parseDuration('2m', '--duration'), 120_000);
  assert.equal(parseDuration('3', '--duration'), 3000);
  assert.throws(() => parseDuration('ten', '--duration'), /--duration/);
});

test('median of odd and even counts, ignoring gaps', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([null, 5]), 5);
  assert.equal(median([]), null);
});

test('trellis-ref runs only with --trellis-ref, which must be a built checkout', () => {
  const repo = new URL('../..', import.meta.url).pathname;
  assert.ok(!readOptions([], {}).targets.includes('trellis-ref'));
  assert.throws(() => readOptions(['--only', 'trellis-ref'], {}), /--trellis-ref <dir>/);
  assert.throws(() => readOptions(['--trellis-ref', '/nonexistent'], {}), /not a built Trellis checkout/);
  if (existsSync(`${repo}/dist/cli/main.js`)) {
    const opts = readOptions(['--only', 'trellis,trellis-ref'], { BENCH_TRELLIS_REF: repo });
    assert.deepEqual(opts.targets, ['trellis-ref', 'trellis']);
  }
});

test('trellisConfigOnPort moves the one listener and refuses to guess', () => {
  const yaml = 'listeners:\n  - name: bench\n    port: 18080\nservices: []\n';
  assert.equal(trellisConfigOnPort(yaml, 18085), yaml.replace('18080', '18085'));
  assert.throws(() => trellisConfigOnPort('listeners: []\n', 18085), /found 0/);
});

test('refComparison divides trellis by trellis-ref, overall and round by round', () => {
  const s = (rps, us) => ({ runs: 2, requestsPerSec: rps, p50Ms: 2, p99Ms: 8, cpuUsPerRequest: us });
  const run = (round, rps, us) => ({
    round,
    requestsPerSec: rps,
    latencyMs: { p50: 2, p99: 8 },
    cpuUsPerRequest: us,
  });
  assert.equal(refComparison({ trellis: s(15, 60) }, { trellis: [] }), null);
  const runs = {
    // Round 2 ran slower for both: each round's ratio is 0.9, the medians' ratio is not.
    trellis: [run(1, 9000, 66), run(2, 4500, 132), { round: 3, error: 'failed' }],
    'trellis-ref': [run(1, 10000, 60), run(2, 5000, 120), run(3, 10000, 60)],
  };
  assert.equal(
    refComparison({ trellis: s(6750, 99), 'trellis-ref': s(10000, 60) }, runs),
    'trellis / trellis-ref, ratio of medians (median of per-round ratios): req/s 0.675 (0.900), ' +
      'p50 1.000 (1.000), p99 1.000 (1.000), CPU µs/req 1.650 (1.100)',
  );
});
