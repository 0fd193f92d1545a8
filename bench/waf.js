// Per-request cost of the waf policy's rule engine with the installed OWASP CRS at paranoia level 1 on five
// requests (a clean API GET, a GET with query arguments, a 4 KiB JSON POST, a urlencoded form POST, an SQL
// injection GET), the engine alone (no sockets). Each case runs in batches; the median batch is reported.
//
// Usage: npm run build && node bench/waf.js [iterations=2000] [--baseline <module>] [--engine <module>]
//
// --baseline: another build of the engine, as one ES module exporting Transaction, loadRules, loadRe2, parseBody
// and CRS_PATH (e.g. an esbuild bundle of an older src/stages/waf); both run in the same process, batches
// interleaved, and the table shows the two medians side by side. --engine: such a module instead of dist/.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const bi = args.indexOf('--baseline');
const baselinePath = bi >= 0 ? args.splice(bi, 2)[1] : undefined;
const ei = args.indexOf('--engine');
const enginePath = ei >= 0 ? args.splice(ei, 2)[1] : undefined;
const n = Math.min(Number(args[0] ?? 2000), 20000);

async function engineFrom(dir) {
  if (dir !== undefined) return import(pathToFileURL(dir).href);
  const [engine, kind, regex, request] = await Promise.all([
    import('../dist/stages/waf/engine.js'),
    import('../dist/stages/waf/kind.js'),
    import('../dist/stages/waf/regex.js'),
    import('../dist/stages/waf/request.js'),
  ]);
  return { ...engine, ...kind, ...regex, ...request };
}

const current = await engineFrom(enginePath);
if (!existsSync(current.CRS_PATH)) {
  console.log(`no CRS at ${current.CRS_PATH} (apt-get install modsecurity-crs)`);
  process.exit(0);
}

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
const form = Buffer.from(
  'username=alice&email=alice%40example.com&password=correct-horse-battery-staple&remember=on' +
    '&message=Hello%2C+I+would+like+a+quote+for+100+units+of+the+blue+model.',
);
const CASES = [
  ['clean GET', 'GET', '/api/v1/orders/12345'],
  ['GET query args', 'GET', '/api/v1/orders?page=2&per_page=50&sort=-created_at&status=open'],
  ['4 KiB JSON POST', 'POST', '/api/v1/orders', json, 'application/json'],
  ['form POST', 'POST', '/api/v1/login', form, 'application/x-www-form-urlencoded'],
  ['SQLi GET', 'GET', `/api/v1/items?id=${encodeURIComponent("1' OR '1'='1")}`],
];
// The engine remembers the regex answers for short values across requests (names, header values repeat in an
// API's traffic); this case sends values it has never seen (each request's differ), so every value is matched.
let fresh = 0;
const unseen = () =>
  Buffer.from(
    JSON.stringify({
      items: Array.from({ length: 40 }, (_, i) => ({
        sku: `SKU-${fresh}-${i}`,
        qty: fresh + i,
        note: `Leave it at the door, please (${fresh++}).`,
      })),
    }).slice(0, 4096),
  );
CASES.push(['JSON, unseen values', 'POST', '/api/v1/orders', unseen, 'application/json']);

function setup(mod, label) {
  const t = performance.now();
  const { compiled } = mod.loadRules({
    rules: 'crs',
    crsPath: mod.CRS_PATH,
    extraRules: [],
    ruleFiles: [],
    removeRules: [],
  });
  console.log(
    `${label}: load+compile ${(performance.now() - t).toFixed(0)} ms, ${compiled.ruleCount} rules, regex engine ${mod.loadRe2() ? 're2' : 'v8'}`,
  );
  const preset = new Map([
    ['paranoia_level', '1'],
    ['executing_paranoia_level', '1'],
    ['inbound_anomaly_score_threshold', '5'],
  ]);
  return (method, target, bodyOrMake, ct) => {
    const body = typeof bodyOrMake === 'function' ? bodyOrMake() : bodyOrMake;
    const q = target.indexOf('?');
    const h = body ? { ...headers, 'content-type': ct, 'content-length': String(body.length) } : headers;
    const tx = new mod.Transaction(
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
    if (body) tx.setBody(mod.parseBody(body, ct));
    tx.runPhase(2);
    return tx;
  };
}

const engines = [['current', setup(current, 'current')]];
if (baselinePath !== undefined)
  engines.unshift(['baseline', setup(await engineFrom(baselinePath), 'baseline')]);

const batches = 10;
const per = Math.max(1, Math.floor(n / batches));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
for (const [name, ...req] of CASES) {
  const times = engines.map(() => []);
  const blocked = engines.map(([, run]) => run(...req).interruption !== undefined);
  for (const [, run] of engines) for (let i = 0; i < Math.min(200, n); i++) run(...req);
  for (let b = 0; b < batches; b++) {
    engines.forEach(([, run], k) => {
      // CPU time of this thread, not wall time: the machine may be shared.
      const t = process.threadCpuUsage?.() ?? process.cpuUsage();
      for (let i = 0; i < per; i++) run(...req);
      const d = process.threadCpuUsage?.(t) ?? process.cpuUsage(t);
      times[k].push((d.user + d.system) / per);
    });
  }
  rows.push([name, times.map(median), blocked]);
}
const head = engines.map(([label]) => `${label} µs`.padStart(12)).join('');
console.log(`\n${'request'.padEnd(18)}${head}${engines.length > 1 ? '   speedup' : ''}  blocked`);
for (const [name, meds, blocked] of rows) {
  const cells = meds.map((m) => m.toFixed(1).padStart(12)).join('');
  const ratio = meds.length > 1 ? `${(meds[0] / meds[1]).toFixed(1).padStart(9)}x` : '';
  console.log(`${name.padEnd(18)}${cells}${ratio}  ${blocked.join('/')}`);
}
console.log(`(CPU µs per request: median of ${batches} batches of ${per} requests per engine)`);
