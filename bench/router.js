// Micro benchmark of the compiled router: ns per match for named scenarios, on tables of 10, 1,000 and 10,000
// routes. Run `npm run build` first (it imports dist/).
//
// The three routers live in one process, as they would in a gateway with a big config, and are timed in short
// bursts taking turns (scenario by scenario, the order of sizes rotating), so that a noisy neighbour or a
// frequency change hits every size alike. Each cell is the median of the bursts; the ratio is the median of the
// per-turn ratios 10k/10.
//
//   node bench/router.js              full run (about a minute on a small VM)
//   node bench/router.js --quick      fewer bursts, for a smoke test
import { cpus } from 'node:os';
import { compileRouter } from '../dist/router/index.js';

const SIZES = [10, 1_000, 10_000];
const QUICK = process.argv.includes('--quick');
const TURNS = QUICK ? 5 : 21;
const BURST = QUICK ? 100_000 : 200_000;
const WARMUP = QUICK ? 200_000 : 1_000_000;

const RESOURCES = ['users', 'orders', 'products', 'carts', 'invoices', 'payments', 'accounts', 'sessions'];

/** Routes every table has, so each scenario hits the same route whatever the size. */
const PROBES = [
  { value: 'health', path: { exact: '/health' }, methods: ['GET'] },
  { value: 'orders', path: { template: '/users/:id/orders/:oid' }, methods: ['GET'] },
  { value: 'assets', path: { prefix: '/assets' } },
  { value: 'legacy', path: { regex: '/legacy/[0-9]+\\.php' } },
  { value: 'api-host', hosts: ['api.example.com'], path: { prefix: '/v1' } },
  { value: 'tenants', hosts: ['*.tenants.example.com'], path: { prefix: '/' } },
];

const KINDS = ['exact', 'template', 'prefix', 'host'];

/**
 * Filler in the proportions of a real API: exact 3, template 3, prefix 2, host 2 in every 10. The first four
 * are one of each kind, so even the 10-route table has every kind for the "10k routes" scenario.
 */
function filler(i) {
  const res = RESOURCES[i % RESOURCES.length];
  const svc = `svc${i}`;
  const version = `v${(i % 3) + 1}`;
  const value = `f${i}`;
  switch (i % 10) {
    case 0:
      return { value, path: { exact: `/${svc}/${res}` } };
    case 1:
      return { value, path: { template: `/api/${version}/${svc}/${res}/:id` } };
    case 2:
      return { value, path: { prefix: `/static/${svc}` } };
    case 4:
      return { value, path: { exact: `/${svc}/${res}` }, methods: ['GET'] };
    case 5:
      return { value, path: { template: `/api/${version}/${svc}/${res}/:id` }, methods: ['PUT', 'DELETE'] };
    case 6:
      return { value, path: { exact: `/api/${version}/${res}/${svc}/status` }, methods: ['GET', 'HEAD'] };
    case 7:
      return { value, path: { template: `/${svc}/${res}/:id/items/:item` }, methods: ['GET'] };
    case 8:
      return {
        value,
        path: { prefix: `/docs/${svc}/${res}` },
        headers: i % 3 === 0 ? [{ name: 'x-api-version', exact: 'v2' }] : undefined,
      };
    default:
      return i % 50 === 3
        ? { value, hosts: [`*.${svc}.example.net`], path: { prefix: `/${res}` } }
        : { value, hosts: [`${svc}.internal.example.com`], path: { prefix: `/${res}` } };
  }
}

function kindOf(route) {
  if (route.hosts) return 'host';
  return Object.keys(route.path)[0];
}

function makeRoutes(size) {
  const routes = [...PROBES];
  for (let i = 0; routes.length < size; i++) routes.push(filler(i));
  return routes;
}

function req(path, { method = 'GET', host = 'example.com', headers = {} } = {}) {
  return { method, host, path, query: '', headers };
}

/** A request that the given route serves (used to spread the "10k routes" scenario over the table). */
function requestFor(route, i) {
  const headers = route.headers ? { 'x-api-version': 'v2' } : {};
  const method = route.methods ? route.methods[0] : 'GET';
  let host = 'example.com';
  if (route.hosts)
    host = route.hosts[0].startsWith('*.') ? `t${i}${route.hosts[0].slice(1)}` : route.hosts[0];
  const path = route.path;
  let p;
  if ('exact' in path) p = path.exact;
  else if ('template' in path) p = path.template.replace(/:[a-z]+/g, () => String(1000 + i));
  else if ('prefix' in path) p = `${path.prefix === '/' ? '' : path.prefix}/x/${i}`;
  else p = `/legacy/${i}.php`;
  return { req: req(p, { method, host, headers }), value: route.value };
}

function scenarios(routes) {
  // 1,024 requests (a power of two, for the index mask) for filler routes picked at random across the table,
  // the four kinds in turn, so the mix is the same at every size and only the size of the table changes.
  const fillers = routes.slice(PROBES.length);
  const byKind = KINDS.map((kind) => fillers.filter((r) => kindOf(r) === kind));
  const spread = [];
  let seed = 12345;
  for (let i = 0; i < 1024; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const pool = byKind[i % KINDS.length];
    spread.push(requestFor(pool[seed % pool.length], i));
  }
  return [
    { name: 'short static', reqs: [{ req: req('/health'), value: 'health' }] },
    { name: 'param route', reqs: [{ req: req('/users/42/orders/7'), value: 'orders' }] },
    { name: 'prefix', reqs: [{ req: req('/assets/img/logo.png'), value: 'assets' }] },
    { name: 'regex', reqs: [{ req: req('/legacy/123.php'), value: 'legacy' }] },
    {
      name: 'exact host',
      reqs: [{ req: req('/v1/things', { host: 'api.example.com' }), value: 'api-host' }],
    },
    {
      name: 'wildcard host',
      reqs: [{ req: req('/dashboard', { host: 'acme.tenants.example.com' }), value: 'tenants' }],
    },
    { name: 'miss 404', reqs: [{ req: req('/nothing/here'), value: undefined }] },
    { name: '10k routes', reqs: spread },
  ];
}

function check(router, { req, value }) {
  const result = router.match(req);
  const got = result.kind === 'match' ? result.value : undefined;
  if (got !== value)
    throw new Error(`${req.host}${req.path}: expected ${value}, got ${JSON.stringify(result)}`);
}

/** One timed loop; the sink keeps the work observable so it cannot be optimized away. */
function loop(router, reqs, iterations) {
  const mask = reqs.length - 1;
  let sink = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink += router.match(reqs[i & mask]).kind.length;
  const ns = Number(process.hrtime.bigint() - start) / iterations;
  if (sink === 0) throw new Error('unreachable');
  return ns;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function main() {
  const tables = SIZES.map((size) => {
    const routes = makeRoutes(size);
    const router = compileRouter(routes);
    const list = scenarios(routes);
    for (const { reqs } of list) for (const r of reqs) check(router, r);
    return {
      size,
      router,
      scenarios: list.map(({ name, reqs }) => ({ name, reqs: reqs.map((r) => r.req) })),
    };
  });
  const names = tables[0].scenarios.map((s) => s.name);
  for (const t of tables) for (const s of t.scenarios) loop(t.router, s.reqs, WARMUP);

  const samples = names.map(() => SIZES.map(() => []));
  for (let turn = 0; turn < TURNS; turn++) {
    names.forEach((_, si) => {
      for (let k = 0; k < tables.length; k++) {
        const ti = (k + turn) % tables.length;
        const t = tables[ti];
        samples[si][ti].push(loop(t.router, t.scenarios[si].reqs, BURST));
      }
    });
  }

  const cell = (s, w) => String(s).padStart(w);
  const last = SIZES.length - 1;
  console.log(
    `router match, ns/op: median of ${TURNS} bursts of ${BURST.toLocaleString('en')} matches per cell`,
  );
  console.log(`node ${process.version}, ${cpus()[0]?.model ?? 'unknown cpu'}, ${cpus().length} cpus`);
  console.log('');
  const header = [
    'scenario'.padEnd(14),
    ...SIZES.map((s) => cell(`${s.toLocaleString('en')} routes`, 14)),
    '10k/10',
  ];
  console.log(header.join('  '));
  names.forEach((name, si) => {
    const cols = SIZES.map((_, ti) => cell(`${median(samples[si][ti]).toFixed(1)} ns`, 14));
    const ratio = median(samples[si][last].map((ns, turn) => ns / samples[si][0][turn]));
    console.log([name.padEnd(14), ...cols, cell(ratio.toFixed(2), 6)].join('  '));
  });
  console.log('');
  console.log(
    '"10k routes": 1,024 requests for routes spread over the whole table, exact, template, prefix and',
  );
  console.log('host routes in turn; every other scenario repeats one request.');
}

main();
