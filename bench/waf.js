// Per-request cost of the waf policy's rule engine with the installed OWASP CRS at paranoia level 1: a clean API
// GET, a 4 KiB JSON POST and a malicious GET, each run a bounded number of times (no sockets: the engine alone).
// Usage: npm run build && node bench/waf.js [iterations=2000]
import { existsSync } from 'node:fs';
import { Transaction } from '../dist/stages/waf/engine.js';
import { CRS_PATH, loadRules } from '../dist/stages/waf/kind.js';
import { loadRe2 } from '../dist/stages/waf/regex.js';
import { parseBody } from '../dist/stages/waf/request.js';

if (!existsSync(CRS_PATH)) {
  console.log(`no CRS at ${CRS_PATH} (apt-get install modsecurity-crs)`);
  process.exit(0);
}
const n = Math.min(Number(process.argv[2] ?? 2000), 20000);
let t = performance.now();
const { compiled } = loadRules({
  rules: 'crs',
  crsPath: CRS_PATH,
  extraRules: [],
  ruleFiles: [],
  removeRules: [],
});
console.log(
  `load+compile ${(performance.now() - t).toFixed(0)} ms, ${compiled.ruleCount} rules, regex engine ${loadRe2() ? 're2' : 'v8'}`,
);
const preset = new Map([
  ['paranoia_level', '1'],
  ['executing_paranoia_level', '1'],
  ['inbound_anomaly_score_threshold', '5'],
]);
const headers = {
  host: 'api.example.com',
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
  accept: 'application/json',
  'accept-encoding': 'gzip, deflate, br',
  authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl',
};
const json = Buffer.from(
  JSON.stringify({
    items: Array.from({ length: 40 }, (_, i) => ({
      sku: `SKU-${i}`,
      qty: i,
      note: 'Leave it at the door, please.',
    })),
  }).slice(0, 4096),
);
function run(method, target, body, ct) {
  const q = target.indexOf('?');
  const h = body ? { ...headers, 'content-type': ct, 'content-length': String(body.length) } : headers;
  const tx = new Transaction(
    compiled,
    {
      method,
      rawTarget: target,
      path: q < 0 ? target : target.slice(0, q),
      query: q < 0 ? '' : target.slice(q + 1),
      protocol: 'HTTP/1.1',
      headers: h,
      remoteAddr: '203.0.113.9',
    },
    'On',
    preset,
  );
  tx.runPhase(1);
  if (body) tx.setBody(parseBody(body, ct));
  tx.runPhase(2);
  return tx;
}
const cases = [
  ['clean GET', () => run('GET', '/api/v1/orders?page=2&per_page=50&sort=-created_at')],
  ['4 KiB JSON POST', () => run('POST', '/api/v1/orders', json, 'application/json')],
  ['SQLi GET', () => run('GET', `/api/v1/items?id=${encodeURIComponent("1' OR '1'='1")}`)],
];
for (const [name, fn] of cases) {
  for (let i = 0; i < 200; i++) fn();
  t = performance.now();
  for (let i = 0; i < n; i++) fn();
  const us = ((performance.now() - t) * 1000) / n;
  console.log(
    `${name.padEnd(16)} ${us.toFixed(0).padStart(6)} µs/request  blocked=${fn().interruption !== undefined}`,
  );
}
