// Command-line flags (each with an environment variable for CI and wrappers); flags win.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

export const TARGET_NAMES = [
  'direct',
  'nginx',
  'node-minimal',
  'fast-gateway',
  'fastify-http-proxy',
  'trellis-ref', // only with --trellis-ref
  'trellis',
  // Issue 7, only when named in --only: telemetry off, metrics + 1% tracing, metrics + 100% tracing.
  'trellis-telemetry-off',
  'trellis-telemetry',
  'trellis-telemetry-full',
  // Issue 5, only when named in --only: a rate limit that never triggers, local and in Redis.
  'trellis-ratelimit',
  'trellis-ratelimit-redis',
  // Issue 5, only when named in --only: the full edge chain (API key, CORS, local rate limit, access log).
  'trellis-edge',
  // Issue 6, only when named in --only: the CRS at PL1 on a typical API GET and a 4 KiB JSON POST, and the same
  // requests without a WAF.
  'trellis-waf',
  'trellis-get',
  'trellis-waf-post',
  'trellis-post',
];

/** Targets left out of a run without --only. */
const OPT_IN = [
  'trellis-ref',
  'trellis-telemetry-off',
  'trellis-telemetry',
  'trellis-telemetry-full',
  'trellis-ratelimit',
  'trellis-ratelimit-redis',
  'trellis-edge',
  'trellis-waf',
  'trellis-get',
  'trellis-waf-post',
  'trellis-post',
];

const HELP = `Usage: npm run bench -- [flags]

  --duration <time>      measured wrk run per target and round (BENCH_DURATION, default 10s)
  --warmup <time>        unmeasured wrk run before each measurement (BENCH_WARMUP, default 2s)
  --connections <n>      wrk connections (BENCH_CONNECTIONS, default 50)
  --threads <n>          wrk threads (BENCH_THREADS, default 1)
  --runs <n>             rounds over all targets, interleaved (BENCH_RUNS, default 3)
  --only <a,b,...>       targets to run (BENCH_ONLY), of: ${TARGET_NAMES.join(', ')}
  --trellis-ref <dir>    also run target trellis-ref: another Trellis checkout, built, on bench/trellis.yaml
                         (BENCH_TRELLIS_REF; e.g. a git worktree of an older commit, to measure a change)
                         The telemetry targets (trellis-telemetry-off, trellis-telemetry, trellis-telemetry-full:
                         bench/<name>.yaml, spans to a local OTLP sink on 18001) run only when --only names them.
  --upstream-cpu <0|1>   core the upstream is pinned to (BENCH_UPSTREAM_CPU, default 0)
  --no-pin               run without taskset (to see what pinning changes)
  --start-timeout <time> how long a target may take to answer 200 (default 20s)
  --quiet-timeout <time> how long to wait for other processes to go quiet before each measurement
                         (default 60s; a run disturbed by them anyway is redone up to twice, then flagged)
  --write-docs           also rewrite the results block in docs/benchmarks.md
  --help                 this text

Cores: wrk on 0, each proxy on 1, the upstream on --upstream-cpu.`;

/** Parses a wrk-style duration (`10s`, `500ms`, `1m`, or bare seconds) into milliseconds. */
export function parseDuration(text, flag) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(text).trim());
  if (!m) throw new Error(`${flag}: expected a duration such as 10s, 500ms or 1m, got "${text}"`);
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] ?? 's'];
  if (ms <= 0) throw new Error(`${flag}: must be more than zero`);
  return ms;
}

function positiveInt(text, flag) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${flag}: expected a whole number of 1 or more, got "${text}"`);
  return n;
}

export function readOptions(argv = process.argv.slice(2), env = process.env) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      threads: { type: 'string' },
      runs: { type: 'string' },
      only: { type: 'string' },
      'trellis-ref': { type: 'string' },
      'upstream-cpu': { type: 'string' },
      'no-pin': { type: 'boolean', default: false },
      'start-timeout': { type: 'string' },
      'quiet-timeout': { type: 'string' },
      'write-docs': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return { help: HELP };

  const refFlag = values['trellis-ref'] ?? env.BENCH_TRELLIS_REF;
  const trellisRef = refFlag ? path.resolve(refFlag) : null;
  if (trellisRef && !existsSync(path.join(trellisRef, 'dist', 'cli', 'main.js')))
    throw new Error(
      `--trellis-ref: ${trellisRef} is not a built Trellis checkout (run npm ci && npm run build there)`,
    );
  const available = TARGET_NAMES.filter(
    (name) => !OPT_IN.includes(name) || (name === 'trellis-ref' && trellisRef),
  );

  const only = (values.only ?? env.BENCH_ONLY ?? available.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = only.filter((name) => !TARGET_NAMES.includes(name));
  if (unknown.length)
    throw new Error(`--only: unknown target(s) ${unknown.join(', ')}; known: ${TARGET_NAMES.join(', ')}`);
  if (only.length === 0) throw new Error('--only: no targets named');
  if (only.includes('trellis-ref') && !trellisRef)
    throw new Error('--only: trellis-ref needs --trellis-ref <dir> (the checkout to run)');

  const upstreamCpu = values['upstream-cpu'] ?? env.BENCH_UPSTREAM_CPU ?? '0';
  if (upstreamCpu !== '0' && upstreamCpu !== '1') throw new Error('--upstream-cpu: expected 0 or 1');

  return {
    durationMs: parseDuration(values.duration ?? env.BENCH_DURATION ?? '10s', '--duration'),
    warmupMs: parseDuration(values.warmup ?? env.BENCH_WARMUP ?? '2s', '--warmup'),
    connections: positiveInt(values.connections ?? env.BENCH_CONNECTIONS ?? '50', '--connections'),
    threads: positiveInt(values.threads ?? env.BENCH_THREADS ?? '1', '--threads'),
    runs: positiveInt(values.runs ?? env.BENCH_RUNS ?? '3', '--runs'),
    // Keep the order of TARGET_NAMES whatever order --only lists them in, so `direct` leads each round.
    targets: TARGET_NAMES.filter((name) => only.includes(name)),
    pin: !values['no-pin'],
    upstreamCpu: Number(upstreamCpu),
    trellisRef,
    startTimeoutMs: parseDuration(values['start-timeout'] ?? '20s', '--start-timeout'),
    quietTimeoutMs: parseDuration(values['quiet-timeout'] ?? '60s', '--quiet-timeout'),
    writeDocs: values['write-docs'],
    argv,
  };
}
