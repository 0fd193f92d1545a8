// Runs wrk and reads its report. Latencies are kept in milliseconds.
import { pinned, run } from './processes.js';

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function toMs(value, unit) {
  const factor = UNIT_MS[unit];
  if (factor === undefined) throw new Error(`wrk: unknown time unit "${unit}"`);
  return Number(value) * factor;
}

/** Parses the text `wrk --latency` prints. Throws if the numbers that matter are missing. */
export function parseWrk(text) {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  if (!rps) throw new Error(`wrk printed no Requests/sec line:\n${text.trim()}`);
  const latency = {};
  const dist = /Latency Distribution\n((?:\s+\d+%\s+[\d.]+\w+\n?)+)/.exec(text);
  if (!dist) throw new Error(`wrk printed no latency distribution (was --latency passed?):\n${text.trim()}`);
  for (const m of dist[1].matchAll(/(\d+)%\s+([\d.]+)(us|ms|s|m|h)\b/g))
    latency[`p${m[1]}`] = toMs(m[2], m[3]);
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m|h)/.exec(text);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    requestsPerSec: Number(rps[1]),
    requests: total ? Number(total[1]) : null,
    seconds: total ? toMs(total[2], total[3]) / 1000 : null,
    latencyMs: latency,
    errors: {
      connect: socket ? Number(socket[1]) : 0,
      read: socket ? Number(socket[2]) : 0,
      write: socket ? Number(socket[3]) : 0,
      timeout: socket ? Number(socket[4]) : 0,
      non2xx: non2xx ? Number(non2xx[1]) : 0,
    },
  };
}

/**
 * A wrk Lua script that sends every request as `method` with `body` of `contentType` (wrk's own `wrk.*` fields:
 * the request is built once, not per request).
 */
export function requestScript({ method, body, contentType }) {
  const lua = (s) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
  return [
    `wrk.method = ${lua(method)}`,
    `wrk.body = ${lua(body)}`,
    `wrk.headers["Content-Type"] = ${lua(contentType)}`,
    '',
  ].join('\n');
}

/**
 * One wrk run against `url`, pinned to `cpu`, killed if it overruns its duration by 15 s. `script`: a wrk Lua
 * file (requestScript) for requests other than a plain GET.
 */
export async function runWrk(url, { durationMs, connections, threads, cpu, pin, script }) {
  const args = [
    `-t${threads}`,
    `-c${connections}`,
    `-d${Math.max(1, Math.round(durationMs / 1000))}s`,
    '--latency',
    ...(script === undefined ? [] : ['-s', script]),
    url,
  ];
  const [command, argv] = pinned(cpu, 'wrk', args, pin);
  const result = await run(command, argv, { timeoutMs: durationMs + 15_000 });
  if (result.timedOut)
    throw new Error(`wrk did not finish within ${(durationMs + 15_000) / 1000}s and was killed`);
  if (result.error) throw new Error(`wrk could not start: ${result.error.message}`);
  if (result.code !== 0)
    throw new Error(`wrk exited with ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
  return { ...parseWrk(result.stdout), raw: result.stdout };
}
