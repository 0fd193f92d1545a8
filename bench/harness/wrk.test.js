// node --test bench/harness/  (the repo's vitest covers src/ and test/ only)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration } from './options.js';
import { median } from './report.js';
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
