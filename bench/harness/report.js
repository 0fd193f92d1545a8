// Turns the runs into medians, a markdown table, bench/results/latest.json and the docs block.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { NOISY } from './cpu.js';

export const DOCS_START = '<!-- bench:start -->';
export const DOCS_END = '<!-- bench:end -->';

export function median(values) {
  const sorted = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Per target: the median of each number over the runs that completed, and why any did not. */
export function summarize(targets, runsByTarget) {
  const summary = {};
  for (const name of targets) {
    const runs = runsByTarget[name] ?? [];
    const ok = runs.filter((r) => !r.error);
    const errors = [...new Set(runs.filter((r) => r.error).map((r) => r.error))];
    const failedRequests = ok.reduce(
      (n, r) => n + r.errors.non2xx + r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout,
      0,
    );
    summary[name] = {
      runs: ok.length,
      requestsPerSec: median(ok.map((r) => r.requestsPerSec)),
      minRequestsPerSec: ok.length ? Math.min(...ok.map((r) => r.requestsPerSec)) : null,
      maxRequestsPerSec: ok.length ? Math.max(...ok.map((r) => r.requestsPerSec)) : null,
      p50Ms: median(ok.map((r) => r.latencyMs.p50)),
      p99Ms: median(ok.map((r) => r.latencyMs.p99)),
      // The target's own CPU: for direct the upstream, else the proxy (all its processes).
      targetCpu: median(ok.map((r) => (name === 'direct' ? r.cpu.upstream : r.cpu.proxy))),
      cpuUsPerRequest: median(ok.map((r) => r.cpuUsPerRequest)),
      cores: ok.length
        ? Object.fromEntries(
            Object.keys(ok[0].cpu.cores).map((c) => [c, median(ok.map((r) => r.cpu.cores[c]))]),
          )
        : null,
      otherLoad: ok.length ? Math.max(...ok.map((r) => r.cpu.other)) : null,
      failedRequests,
      errors,
    };
  }
  const direct = summary.direct?.requestsPerSec;
  for (const s of Object.values(summary)) {
    s.vsDirect = direct && s.requestsPerSec !== null ? s.requestsPerSec / direct : null;
  }
  return summary;
}

function formatRate(n) {
  return n === null ? '–' : Math.round(n).toLocaleString('en-US');
}

function formatLatency(ms) {
  if (ms === null) return '–';
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms.toFixed(2)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function markdownTable(targets, summary) {
  const rows = [
    '| target | req/s (median) | vs direct | p50 | p99 | req/s min–max | target CPU | CPU µs/req |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const notes = [];
  for (const name of targets) {
    const s = summary[name];
    if (s.runs === 0) {
      rows.push(`| ${name} | failed | | | | | | |`);
      notes.push(`- ${name}: ${s.errors[0]?.split('\n')[0] ?? 'no run completed'}`);
      continue;
    }
    const mark = s.failedRequests > 0 || s.errors.length || s.otherLoad > NOISY ? ' ⚠' : '';
    rows.push(
      `| ${name}${mark} | ${formatRate(s.requestsPerSec)} | ${s.vsDirect === null ? '–' : s.vsDirect.toFixed(2)} | ` +
        `${formatLatency(s.p50Ms)} | ${formatLatency(s.p99Ms)} | ` +
        `${formatRate(s.minRequestsPerSec)}–${formatRate(s.maxRequestsPerSec)} | ` +
        `${Math.round(s.targetCpu * 100)}% | ${s.cpuUsPerRequest.toFixed(1)} |`,
    );
    if (s.failedRequests > 0)
      notes.push(`- ${name}: ${s.failedRequests} failed requests (non-2xx or socket errors)`);
    if (s.errors.length)
      notes.push(`- ${name}: ${s.errors.length} run(s) failed: ${s.errors[0].split('\n')[0]}`);
    if (s.otherLoad > NOISY) {
      notes.push(
        `- ${name}: other processes used up to ${Math.round(s.otherLoad * 100)}% of a core during a run`,
      );
    }
  }
  return rows.join('\n') + (notes.length ? `\n\n${notes.join('\n')}` : '');
}

/** Pairs compared when both ran: [numerator, denominator]. */
export const COMPARISONS = [
  ['trellis', 'trellis-ref'],
  // bench/trellis.yaml has metrics on (the default): trellis over trellis-telemetry-off is the cost of metrics alone.
  ['trellis', 'trellis-telemetry-off'],
  ['trellis-telemetry', 'trellis-telemetry-off'],
  ['trellis-telemetry-full', 'trellis-telemetry-off'],
  // Issue 5: the cost of a rate-limit check, local and through Redis.
  ['trellis-ratelimit', 'trellis'],
  ['trellis-ratelimit-redis', 'trellis'],
  ['trellis-edge', 'trellis'],
  ['trellis-edge', 'fast-gateway'],
  // Issue 6: the CRS at PL1, on the same GET and POST without it.
  ['trellis-waf', 'trellis-get'],
  ['trellis-waf-post', 'trellis-post'],
];

/**
 * `num` over `den` for req/s, p50, p99 and CPU µs/req, as the ratio of the medians and as the median of the
 * per-round ratios (the targets of one round ran back to back, so the second is the one the VM's drift from
 * round to round disturbs least). Null without both.
 */
export function comparison(summary, runsByTarget, num, den) {
  const now = summary[num];
  const ref = summary[den];
  if (!now?.runs || !ref?.runs) return null;
  const refByRound = new Map(runsByTarget[den].filter((r) => !r.error).map((r) => [r.round, r]));
  const pairs = runsByTarget[num].filter((r) => !r.error && refByRound.has(r.round));
  const metrics = [
    ['req/s', 'requestsPerSec', (r) => r.requestsPerSec],
    ['p50', 'p50Ms', (r) => r.latencyMs.p50],
    ['p99', 'p99Ms', (r) => r.latencyMs.p99],
    ['CPU µs/req', 'cpuUsPerRequest', (r) => r.cpuUsPerRequest],
  ];
  const parts = metrics.map(([label, key, of]) => {
    const perRound = median(pairs.map((r) => of(r) / of(refByRound.get(r.round))));
    return `${label} ${(now[key] / ref[key]).toFixed(3)} (${perRound === null ? '–' : perRound.toFixed(3)})`;
  });
  return `${num} / ${den}, ratio of medians (median of per-round ratios): ${parts.join(', ')}`;
}

/** With --trellis-ref: trellis over trellis-ref (see comparison). */
export function refComparison(summary, runsByTarget) {
  return comparison(summary, runsByTarget, 'trellis', 'trellis-ref');
}

/** Every pair of COMPARISONS that ran, one line each; '' if none. */
export function comparisons(summary, runsByTarget) {
  return COMPARISONS.map(([num, den]) => comparison(summary, runsByTarget, num, den))
    .filter(Boolean)
    .join('\n');
}

/**
 * Span export of the targets that traced (runs with `otlp`): over all their runs, requests wrk completed
 * (warm-up and measurement), server spans and spans the sink received, export requests and bytes. A traced
 * request is one server span, so server spans / requests is the share of requests whose spans arrived (a few
 * more than wrk counted come from readiness probes and requests still in flight when wrk stopped).
 */
export function otlpSummary(targets, runsByTarget) {
  const lines = [];
  for (const name of targets) {
    const runs = (runsByTarget[name] ?? []).filter((r) => !r.error && r.otlp);
    if (runs.length === 0) continue;
    const sum = (key) => runs.reduce((n, r) => n + r.otlp[key], 0);
    const served = sum('served');
    const server = sum('serverSpans');
    const perRound = runs.map((r) => (r.otlp.serverSpans / r.otlp.served).toFixed(4)).join(' ');
    lines.push(
      `${name}: ${served.toLocaleString('en-US')} requests, ${server.toLocaleString('en-US')} server spans ` +
        `(${((100 * server) / served).toFixed(2)}%), ${sum('spans').toLocaleString('en-US')} spans in ` +
        `${sum('requests').toLocaleString('en-US')} exports, ${(sum('bytes') / 1e6).toFixed(1)} MB` +
        `${sum('badRequests') ? `, ${sum('badRequests')} unreadable exports` : ''}; per round: ${perRound}`,
    );
  }
  return lines.length ? `OTLP sink, server spans / requests:\n${lines.join('\n')}` : '';
}

export function writeJson(file, data) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
}

/** The block that goes between the markers in docs/benchmarks.md. */
export function docsBlock({ table, date, machine, command, options }) {
  const peers = Object.entries(machine.peers)
    .filter(([, v]) => v)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    `Measured ${date} with \`${command}\``,
    `(wrk -t${options.threads} -c${options.connections}, ${options.durationMs / 1000} s measured after a ` +
      `${options.warmupMs / 1000} s warm-up, median of ${options.runs} interleaved runs` +
      `${options.pin ? `; wrk on core 0, proxy on core 1, upstream on core ${options.upstreamCpu}` : '; not pinned'}).`,
    '',
    table,
    '',
    `Machine: ${machine.nproc} cores, ${machine.cpu}, Linux ${machine.kernel}; Node ${machine.node}, ` +
      `nginx ${machine.nginx ?? '–'}, wrk ${machine.wrk ?? '–'}; ${peers}; Trellis at ${machine.trellisCommit ?? '–'}` +
      `${machine.trellisRef ? `, trellis-ref at ${machine.trellisRef.commit ?? machine.trellisRef.dir}` : ''}.`,
  ].join('\n');
}

/** Replaces what is between the markers; fails loudly if they are missing rather than guessing where to write. */
export function updateDocs(file, block) {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf(DOCS_START);
  const end = text.indexOf(DOCS_END);
  if (start === -1 || end === -1 || end < start) {
    throw new Error(`${file} has no ${DOCS_START} … ${DOCS_END} block to write the results into`);
  }
  writeFileSync(file, `${text.slice(0, start + DOCS_START.length)}\n${block}\n${text.slice(end)}`);
}
