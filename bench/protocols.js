// Protocol benchmarks (issue 3): gRPC unary through Trellis against the same calls straight to the grpc-js
// server, and HTTPS (TLS 1.3, keep-alive; wrk) and h2 over TLS (h2load) through Trellis against nginx. Each
// scenario runs `--runs` rounds, interleaved, with the load generator and the upstream on core 0 and the proxy on
// core 1 (as `npm run bench`). Bounded: every child is killed on the way out, every run has a time limit.
//
//   npm run build && node bench/protocols.js [--runs 3] [--duration 10s] [--only grpc-direct,grpc-trellis,...]
//
// Needs wrk, h2load (Debian: nghttp2-client), nginx and taskset.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { groupCpuMs } from './harness/cpu.js';
import { killAllOnExit, pinned, portInUse, run, start } from './harness/processes.js';
import { median } from './harness/report.js';
import { nginxConfig, UPSTREAM_PORT as UPSTREAM } from './harness/targets.js';
import { parseWrk } from './harness/wrk.js';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoDir = path.dirname(benchDir);
const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? dflt : args[i + 1];
};
const RUNS = Number(flag('runs', '3'));
const DURATION_S = Number(String(flag('duration', '10s')).replace(/s$/, ''));
const WARMUP_S = 2;
const CONNECTIONS = 50;

const GRPC_UPSTREAM = 18003;
const TRELLIS_GRPC = 18091;
const TRELLIS_TLS = 18443;
const NGINX_TLS = 18444;
const CERT = path.join(repoDir, 'examples/certs/default.crt');
const KEY = path.join(repoDir, 'examples/certs/default.key');

const tmp = mkdtempSync(path.join(tmpdir(), 'trellis-bench-protocols-'));
killAllOnExit();
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

async function waitPort(port, proc) {
  for (let i = 0; i < 100; i++) {
    if (proc?.exitStatus) throw new Error(`${proc.name} exited: ${proc.tail()}`);
    if (await portInUse(port)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

function startPinned(name, cpu, command, argv, cwd = repoDir) {
  const [cmd, a] = pinned(cpu, command, argv, true);
  return start({ name, command: cmd, args: a, cwd, logFile: path.join(tmp, `${name}.log`) });
}

const trellis = (config) => () =>
  startPinned('trellis', 1, process.execPath, [
    'bin/trellis.js',
    'gateway',
    '--config',
    config,
    '--workers',
    '1',
  ]);

const SCENARIOS = {
  'grpc-direct': { load: 'grpc', port: GRPC_UPSTREAM, proxy: null },
  'grpc-trellis': { load: 'grpc', port: TRELLIS_GRPC, proxy: trellis('bench/trellis-grpc.yaml') },
  'https-nginx': {
    load: 'wrk',
    port: NGINX_TLS,
    proxy: () => {
      const dir = path.join(tmp, 'nginx');
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        path.join(dir, 'nginx.conf'),
        nginxConfig({ dir, port: NGINX_TLS, tls: { cert: CERT, key: KEY } }),
      );
      return startPinned('nginx', 1, 'nginx', [
        '-p',
        dir,
        '-e',
        `${dir}/error.log`,
        '-c',
        `${dir}/nginx.conf`,
        '-g',
        'daemon off;',
      ]);
    },
  },
  'https-trellis': { load: 'wrk', port: TRELLIS_TLS, proxy: trellis('bench/trellis-tls.yaml') },
};
SCENARIOS['h2-nginx'] = { ...SCENARIOS['https-nginx'], load: 'h2load' };
SCENARIOS['h2-trellis'] = { ...SCENARIOS['https-trellis'], load: 'h2load' };

async function loadGrpc(port) {
  const [cmd, a] = pinned(
    0,
    process.execPath,
    [
      path.join(benchDir, 'harness/grpc-load.js'),
      `127.0.0.1:${port}`,
      '--duration',
      `${DURATION_S}s`,
      '--warmup',
      `${WARMUP_S}s`,
      '--connections',
      '2',
      '--concurrency',
      String(CONNECTIONS),
    ],
    true,
  );
  const r = await run(cmd, a, { timeoutMs: (DURATION_S + WARMUP_S + 20) * 1000 });
  if (r.code !== 0) throw new Error(`grpc-load failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout);
  return {
    rps: j.callsPerSec,
    p50: j.latencyMs.p50,
    p99: j.latencyMs.p99,
    errors: j.errors,
    requests: j.calls,
  };
}

async function loadWrk(port) {
  const url = `https://127.0.0.1:${port}/`;
  const warm = pinned(0, 'wrk', ['-t1', `-c${CONNECTIONS}`, `-d${WARMUP_S}s`, url], true);
  await run(warm[0], warm[1], { timeoutMs: (WARMUP_S + 15) * 1000 });
  const [cmd, a] = pinned(0, 'wrk', ['-t1', `-c${CONNECTIONS}`, `-d${DURATION_S}s`, '--latency', url], true);
  const r = await run(cmd, a, { timeoutMs: (DURATION_S + 15) * 1000 });
  const w = parseWrk(r.stdout);
  const errors = Object.values(w.errors).reduce((x, y) => x + y, 0);
  return { rps: w.requestsPerSec, p50: w.latencyMs.p50, p99: w.latencyMs.p99, errors, requests: w.requests };
}

async function loadH2(port) {
  const url = `https://127.0.0.1:${port}/`;
  // 50 connections, 10 streams each; h2load reports the mean time per request, not percentiles.
  const [cmd, a] = pinned(
    0,
    'h2load',
    [
      '-c',
      String(CONNECTIONS),
      '-m',
      '10',
      '-t',
      '1',
      '-D',
      String(DURATION_S),
      '--warm-up-time',
      `${WARMUP_S}s`,
      url,
    ],
    true,
  );
  const r = await run(cmd, a, { timeoutMs: (DURATION_S + WARMUP_S + 20) * 1000 });
  const rps = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(r.stdout);
  const reqs =
    /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
      r.stdout,
    );
  const time = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(r.stdout);
  if (!rps || !reqs) throw new Error(`h2load printed no result:\n${r.stdout}\n${r.stderr}`);
  const toMs = (v, u) => Number(v) * (u === 'us' ? 0.001 : u === 's' ? 1000 : 1);
  return {
    rps: Number(rps[1]),
    p50: time ? toMs(time[5], time[6]) : Number.NaN, // the mean, shown in the p50 column
    p99: time ? toMs(time[3], time[4]) : Number.NaN, // the max
    errors: Number(reqs[3]) + Number(reqs[4]),
    requests: Number(reqs[2]),
  };
}

const only = flag('only', Object.keys(SCENARIOS).join(',')).split(',');
const upstream = startPinned('upstream', 0, process.execPath, [
  path.join(benchDir, 'upstream.js'),
  String(UPSTREAM),
]);
const grpcUpstream = startPinned('grpc-upstream', 0, process.execPath, [
  path.join(benchDir, 'grpc-upstream.js'),
  String(GRPC_UPSTREAM),
]);
await waitPort(UPSTREAM, upstream);
await waitPort(GRPC_UPSTREAM, grpcUpstream);

const results = {};
for (let round = 1; round <= RUNS; round++) {
  for (const name of only) {
    const s = SCENARIOS[name];
    const proxy = s.proxy?.() ?? null;
    try {
      if (proxy) await waitPort(s.port, proxy);
      const cpu0 = proxy ? groupCpuMs(proxy.pid) : 0;
      const r =
        s.load === 'grpc'
          ? await loadGrpc(s.port)
          : s.load === 'wrk'
            ? await loadWrk(s.port)
            : await loadH2(s.port);
      // CPU over warm-up and measurement; per request of the measurement only (an upper bound).
      r.cpuUsPerReq = proxy ? ((groupCpuMs(proxy.pid) - cpu0) * 1000) / r.requests : Number.NaN;
      (results[name] ??= []).push(r);
      console.log(
        `round ${round} ${name.padEnd(14)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  errors ${r.errors}  cpu ${r.cpuUsPerReq.toFixed(0)} µs/req`,
      );
    } finally {
      await proxy?.stop();
    }
  }
}
await upstream.stop();
await grpcUpstream.stop();

const med = (name, key) =>
  median(results[name]?.map((r) => r[key]).filter((v) => !Number.isNaN(v)) ?? []) ?? Number.NaN;
console.log('\nmedians');
console.log('| scenario | req/s | p50 ms (h2load: mean) | p99 ms (h2load: max) | proxy CPU µs/req |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const name of only)
  console.log(
    `| ${name} | ${med(name, 'rps').toFixed(0)} | ${med(name, 'p50').toFixed(2)} | ${med(name, 'p99').toFixed(2)} | ${Number.isNaN(med(name, 'cpuUsPerReq')) ? '–' : med(name, 'cpuUsPerReq').toFixed(0)} |`,
  );
const ratio = (a, b) => (results[a] && results[b] ? (med(a, 'rps') / med(b, 'rps')).toFixed(2) : '–');
console.log(`\ngrpc-trellis / grpc-direct: ${ratio('grpc-trellis', 'grpc-direct')}`);
console.log(`https-trellis / https-nginx: ${ratio('https-trellis', 'https-nginx')}`);
console.log(`h2-trellis / h2-nginx: ${ratio('h2-trellis', 'h2-nginx')}`);
writeFileSync(
  path.join(benchDir, 'results/protocols.json'),
  `${JSON.stringify({ date: new Date().toISOString(), runs: RUNS, durationS: DURATION_S, results }, null, 2)}\n`,
);
