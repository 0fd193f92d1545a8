// Micro benchmark of a local rate-limit check (the request stage of a `rate-limit` policy, store: local): one
// limit and two, one hot key and keys spread over a full map, GCRA and token bucket. It imports dist/:
// `npm run bench:rate-limit` builds first. Bounded: a fixed number of calls per scenario, seconds in all.
//
//   node bench/rate-limit.js            full run
//   node bench/rate-limit.js --quick    fewer calls, for a smoke test
import { rateLimitPolicy } from '../dist/stages/rate-limit/rate-limit.js';

const QUICK = process.argv.includes('--quick');
const N = QUICK ? 100_000 : 2_000_000;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function compile(input) {
  const kept = new Map();
  return rateLimitPolicy.compile(rateLimitPolicy.schema.parse(input), {
    source: 'policies[0]',
    name: 'bench',
    shadow: false,
    consumers: new Map(),
    credentials: undefined,
    keep: (key, create) => {
      if (!kept.has(key)) kept.set(key, create());
      return kept.get(key);
    },
  });
}

/** A request context as the stage reads it; `address` picks the key. */
function request(address) {
  return { clientAddress: () => address, consumer: undefined, headers: {}, route: { name: 'r' } };
}

/** ns per check: the median of 5 bursts of N checks. */
function time(stage, requests) {
  const m = requests.length - 1;
  for (let i = 0; i < 50_000; i++) stage.onRequest(requests[i & m]);
  const bursts = [];
  for (let b = 0; b < 5; b++) {
    const start = process.hrtime.bigint();
    let refused = 0;
    for (let i = 0; i < N; i++) if (stage.onRequest(requests[i & m]) !== undefined) refused++;
    bursts.push(Number(process.hrtime.bigint() - start) / N);
    if (refused > 0)
      throw new Error(`the limit refused ${refused} requests: the benchmark would measure refusals`);
  }
  return median(bursts);
}

const never = { requests: 1_000_000_000, per: '1s' };
const one = [request('192.0.2.1')];
// 2^17 distinct addresses against the default cap of 100 000: the map stays full and evicts.
const spread = Array.from({ length: 1 << 17 }, (_, i) =>
  request(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`),
);

const scenarios = [
  ['gcra, 1 limit, one key', { key: 'client-ip', limits: [never] }, one],
  [
    'gcra, 2 limits, one key',
    { key: 'client-ip', limits: [never, { name: 'day', requests: 1_000_000_000, per: '24h' }] },
    one,
  ],
  ['token bucket, 1 limit, one key', { key: 'client-ip', algorithm: 'token-bucket', limits: [never] }, one],
  ['gcra, 1 limit, 131 072 keys over a 100 000 cap', { key: 'client-ip', limits: [never] }, spread],
  ['gcra, headers: always (one key)', { key: 'client-ip', headers: 'always', limits: [never] }, one],
];

console.log(`rate-limit check, local store: ns per request (median of 5 × ${N.toLocaleString('en-US')})`);
for (const [name, input, requests] of scenarios) {
  const p = compile(input);
  console.log(`  ${name.padEnd(48)} ${time(p.request, requests).toFixed(0).padStart(6)} ns`);
}
