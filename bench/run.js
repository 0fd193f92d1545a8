#!/usr/bin/env node
// `npm run bench`: Trellis and its peers behind the same upstream under the same wrk load, interleaved
// over several rounds, medians reported. See bench/README.md and docs/benchmarks.md.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  busyBetween,
  groupCpuMs,
  NOISY,
  reapedChildrenCpuMs,
  sampleCores,
  waitQuiet,
} from './harness/cpu.js';
import { readOptions } from './harness/options.js';
import { killAll, killAllOnExit, portInUse, waitReady } from './harness/processes.js';
import {
  comparisons,
  docsBlock,
  markdownTable,
  otlpSummary,
  summarize,
  updateDocs,
  writeJson,
} from './harness/report.js';
import {
  REDIS_PORT,
  SINK_PORT,
  SINK_URL,
  sinkStats,
  startRedis,
  startSink,
  startUpstream,
  TARGETS,
  UPSTREAM_BODY,
  UPSTREAM_PORT,
  UPSTREAM_URL,
} from './harness/targets.js';
import { describeMachine, ensureTools } from './harness/tools.js';
import { requestScript, runWrk } from './harness/wrk.js';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoDir = path.dirname(benchDir);
const LOAD_CPU = 0;
const PROXY_CPU = 1;
// A measurement during which other processes took more than NOISY of a core is done again, this many times.
const NOISY_RETRIES = 2;

function shellQuote(arg) {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

function formatMs(ms) {
  return ms < 1 ? `${Math.round(ms * 1000)}us` : `${ms.toFixed(2)}ms`;
}

/**
 * CPU time so far of the target's processes, the upstream's, wrk's (once reaped), the harness's own, and the
 * Redis of the rate-limit target (part of that target's work, not other load).
 */
function cpuSnapshot(proc, upstream, redis) {
  const self = process.cpuUsage();
  return {
    at: performance.now(),
    cores: sampleCores(),
    proxyMs: proc ? groupCpuMs(proc.pid) : 0,
    upstreamMs: groupCpuMs(upstream.pid),
    redisMs: redis ? groupCpuMs(redis.pid) : 0,
    wrkMs: reapedChildrenCpuMs(),
    selfMs: (self.user + self.system) / 1000,
  };
}

/** CPU used between two snapshots, in cores' worth (1 = one core busy the whole time). */
function cpuBetween(a, b) {
  const wallMs = b.at - a.at;
  const coreBusy = busyBetween(a.cores, b.cores);
  const total = Object.values(coreBusy).reduce((x, y) => x + y, 0);
  const share = (key) => (b[key] - a[key]) / wallMs;
  const proxy = share('proxyMs');
  const upstream = share('upstreamMs');
  const wrk = share('wrkMs');
  // Whatever the cores did that was not ours (tick accounting is coarse: a few % either way is noise).
  const redis = share('redisMs');
  const other = Math.max(0, total - proxy - upstream - wrk - redis - share('selfMs'));
  return { cores: coreBusy, proxy, upstream, wrk, redis, other };
}

/** One round for one target: start, wait for 200, warm up, measure, stop. Never throws. */
async function measure(name, round, ctx, opts) {
  const target = TARGETS[name];
  const url = `http://127.0.0.1:${target.port}${target.path ?? '/'}`;
  let proc = null;
  try {
    if (name !== 'direct' && (await portInUse(target.port))) {
      throw new Error(`port ${target.port} is already in use by something else`);
    }
    // Other work on the machine (a build, a test run) would be measured as the proxy's slowness.
    const idleLoad = await waitQuiet({
      timeoutMs: opts.quietTimeoutMs,
      onBusy: (busy) =>
        console.log(
          `  (machine busy: ${Math.round(busy * 100)}% of a core used by others; ` +
            `waiting up to ${opts.quietTimeoutMs / 1000} s)`,
        ),
    });
    // A target that exports spans: the sink's counts before it starts and after it has stopped (and flushed).
    const sinkBefore = target.otlp ? await sinkStats() : null;
    proc = target.start(ctx);
    if (proc) await waitReady(proc, url, { timeoutMs: opts.startTimeoutMs, expectBody: UPSTREAM_BODY });
    let script;
    if (target.request !== undefined) {
      script = path.join(ctx.tmpDir, `${name}.lua`);
      writeFileSync(script, requestScript(target.request));
    }
    const load = {
      connections: opts.connections,
      threads: opts.threads,
      cpu: LOAD_CPU,
      pin: opts.pin,
      script,
    };
    const warmup = await runWrk(url, { ...load, durationMs: opts.warmupMs });
    const redis = target.redis ? ctx.redis : undefined;
    const before = cpuSnapshot(proc, ctx.upstream, redis);
    const result = await runWrk(url, { ...load, durationMs: opts.durationMs });
    const cpu = cpuBetween(before, cpuSnapshot(proc, ctx.upstream, redis));
    if (proc?.exitStatus) throw new Error(`${name} exited during the measurement`);
    // For direct the upstream is the target: its cost per request is the baseline the proxies add to.
    const targetCpu = proc ? cpu.proxy : cpu.upstream;
    const cpuUsPerRequest = (targetCpu * 1e6) / result.requestsPerSec;
    let otlp;
    if (sinkBefore) {
      await proc.stop(); // SIGTERM: the gateway drains and flushes its span queue (bounded at 2 s) first
      const after = await sinkStats();
      otlp = { served: warmup.requests + result.requests };
      for (const key of ['requests', 'bytes', 'spans', 'serverSpans', 'badRequests'])
        otlp[key] = after[key] - sinkBefore[key];
    }
    const { raw, ...numbers } = result;
    return { round, ...numbers, cpu, cpuUsPerRequest, otlp, idleLoadBefore: idleLoad, wrkOutput: raw };
  } catch (err) {
    const tail = proc?.tail(15);
    return {
      round,
      error:
        err.message +
        (tail ? `\n    --- last lines of its output ---\n    ${tail.replaceAll('\n', '\n    ')}` : ''),
    };
  } finally {
    await proc?.stop();
  }
}

async function main() {
  const opts = readOptions();
  if (opts.help) {
    console.log(opts.help);
    return 0;
  }
  killAllOnExit();
  await ensureTools({ targets: opts.targets, benchDir });

  // Everything must end: the whole run gets a budget, and overrunning it kills everything.
  const perMeasurement =
    opts.quietTimeoutMs + 1000 + opts.startTimeoutMs + opts.warmupMs + opts.durationMs + 2 * 15_000 + 10_000;
  const budgetMs = opts.runs * opts.targets.length * perMeasurement * (1 + NOISY_RETRIES) + 60_000;
  const deadline = setTimeout(() => {
    console.error(`\nbench: still running after ${Math.round(budgetMs / 1000)}s; killing everything`);
    killAll();
    process.exit(1);
  }, budgetMs);
  deadline.unref();

  const tmpDir = mkdtempSync(path.join(os.tmpdir(), 'trellis-bench-'));
  // Configs and logs of the targets: kept only when a target failed, to read why.
  let keepTmp = false;
  process.on('exit', () => {
    if (!keepTmp) rmSync(tmpDir, { recursive: true, force: true });
  });
  const ctx = {
    repoDir,
    benchDir,
    tmpDir,
    pin: opts.pin,
    proxyCpu: PROXY_CPU,
    upstreamCpu: opts.upstreamCpu,
    trellisRef: opts.trellisRef,
  };

  if (await portInUse(UPSTREAM_PORT)) throw new Error(`upstream port ${UPSTREAM_PORT} is already in use`);
  const upstream = startUpstream(ctx);
  ctx.upstream = upstream;
  await waitReady(upstream, UPSTREAM_URL, { timeoutMs: 10_000, expectBody: UPSTREAM_BODY });
  let sink = null;
  if (opts.targets.some((t) => TARGETS[t].otlp)) {
    if (await portInUse(SINK_PORT)) throw new Error(`OTLP sink port ${SINK_PORT} is already in use`);
    sink = startSink(ctx);
    await waitReady(sink, `${SINK_URL}/stats`, { timeoutMs: 10_000 });
  }
  let redis = null;
  if (opts.targets.some((t) => TARGETS[t].redis)) {
    if (await portInUse(REDIS_PORT)) throw new Error(`Redis port ${REDIS_PORT} is already in use`);
    redis = startRedis(ctx);
    ctx.redis = redis;
    for (let i = 0; !(await portInUse(REDIS_PORT)); i++) {
      if (i > 100 || redis.exitStatus) throw new Error(`redis-server did not listen on ${REDIS_PORT}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const machine = await describeMachine({ benchDir, repoDir, trellisRef: opts.trellisRef });

  const pinning = opts.pin
    ? `wrk on core ${LOAD_CPU}, proxy on core ${PROXY_CPU}, upstream on core ${opts.upstreamCpu}`
    : 'no pinning';
  console.log(
    `bench: ${opts.targets.join(', ')}; ${opts.runs} round(s) of wrk -t${opts.threads} -c${opts.connections} ` +
      `-d${opts.durationMs / 1000}s after ${opts.warmupMs / 1000}s warm-up; ${pinning}`,
  );
  const runsByTarget = Object.fromEntries(opts.targets.map((t) => [t, []]));
  for (let round = 1; round <= opts.runs; round++) {
    for (const name of opts.targets) {
      let r = await measure(name, round, ctx, opts);
      let discarded = 0;
      while (!r.error && r.cpu.other > NOISY && discarded < NOISY_RETRIES) {
        discarded++;
        console.log(
          `  (${name}: other processes took ${Math.round(r.cpu.other * 100)}% of a core during the run; measuring again)`,
        );
        r = await measure(name, round, ctx, opts);
      }
      r.discardedAsNoisy = discarded;
      runsByTarget[name].push(r);
      const label = `[${round}/${opts.runs}] ${name.padEnd(22)}`;
      if (r.error) console.log(`${label} FAILED: ${r.error}`);
      else {
        const failed = Object.values(r.errors).reduce((a, b) => a + b, 0);
        const pct = (x) => `${Math.round(x * 100)}%`;
        const { cpu } = r;
        console.log(
          `${label} ${Math.round(r.requestsPerSec).toLocaleString('en-US').padStart(7)} req/s  ` +
            `p50 ${formatMs(r.latencyMs.p50)}  p99 ${formatMs(r.latencyMs.p99)}  ` +
            `cpu: proxy ${pct(cpu.proxy)} upstream ${pct(cpu.upstream)} wrk ${pct(cpu.wrk)} other ${pct(cpu.other)} ` +
            `(cores ${Object.values(cpu.cores).map(pct).join('/')})  ${r.cpuUsPerRequest.toFixed(1)} µs/req` +
            (failed ? `  (${failed} failed requests)` : '') +
            (r.otlp
              ? `  otlp: ${r.otlp.serverSpans}/${r.otlp.served} traced, ${r.otlp.requests} exports`
              : ''),
        );
      }
    }
  }
  await upstream.stop();
  await sink?.stop();
  await redis?.stop();

  const summary = summarize(opts.targets, runsByTarget);
  const table = markdownTable(opts.targets, summary);
  const command = `npm run bench${opts.argv.length ? ` -- ${opts.argv.map(shellQuote).join(' ')}` : ''}`;
  const date = new Date().toISOString().slice(0, 10);
  console.log(`\n${table}\n`);
  const ratios = comparisons(summary, runsByTarget);
  if (ratios) console.log(`${ratios}\n`);
  const spans = otlpSummary(opts.targets, runsByTarget);
  if (spans) console.log(`${spans}\n`);

  const jsonFile = path.join(benchDir, 'results', 'latest.json');
  const { argv: _argv, ...settings } = opts;
  writeJson(jsonFile, {
    date: new Date().toISOString(),
    command,
    machine,
    settings: { ...settings, loadCpu: LOAD_CPU, proxyCpu: PROXY_CPU },
    summary,
    runs: runsByTarget,
  });
  console.log(`wrote ${path.relative(repoDir, jsonFile)}`);
  if (opts.writeDocs) {
    const docs = path.join(repoDir, 'docs', 'benchmarks.md');
    updateDocs(docs, docsBlock({ table, date, machine, command, options: opts }));
    console.log(`updated ${path.relative(repoDir, docs)}`);
  }

  const failed = opts.targets.filter((t) => runsByTarget[t].some((r) => r.error));
  if (failed.length) {
    keepTmp = true;
    console.log(`target logs kept in ${tmpDir}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`bench: ${err.message}`);
    killAll();
    process.exit(1);
  },
);
