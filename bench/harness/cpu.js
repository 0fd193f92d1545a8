// CPU accounting from /proc: per-core busy time, the CPU time of each process group the harness started,
// and of wrk (a reaped child: it shows in our own cutime/cstime). What is left over is other load on the
// machine, which the harness waits out before measuring and reports if it shows up during a measurement.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Above this much of a core used by other processes during a measurement, the run is redone or flagged. */
export const NOISY = 0.15;

// USER_HZ is 100 on every Linux that Node supports in practice (x86-64 and arm64 kernels fix it there).
const TICK_MS = 10;

/** Jiffies per core: { cpu0: { busy, total }, ... }. */
export function sampleCores() {
  const cores = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^(cpu\d+)\s+(.+)$/.exec(line);
    if (!m) continue;
    const f = m[2].split(/\s+/).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal; guest is already in user
    cores[m[1]] = { busy: total - f[3] - f[4], total }; // minus idle and iowait
  }
  return cores;
}

/** Busy share (0..1) of each core between two samples. */
export function busyBetween(before, after) {
  const out = {};
  for (const core of Object.keys(after)) {
    const total = after[core].total - (before[core]?.total ?? 0);
    out[core] = total > 0 ? (after[core].busy - (before[core]?.busy ?? 0)) / total : 0;
  }
  return out;
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null; // gone
  }
}

/** CPU milliseconds used so far by every live process in process group `pgid`. */
export function groupCpuMs(pgid) {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(entry);
    // f[2] is pgrp; f[11], f[12] are utime, stime (fields 5, 14, 15 of proc(5)).
    if (f && Number(f[2]) === pgid) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks * TICK_MS;
}

/** CPU milliseconds of our children that have exited and been waited for (cutime + cstime). */
export function reapedChildrenCpuMs() {
  const f = statFields('self');
  return f ? (Number(f[13]) + Number(f[14])) * TICK_MS : 0;
}

/**
 * Waits until the machine is quiet: less than `threshold` of a core busy over a 1 s sample, for at most
 * `timeoutMs`. Returns the last busy level (cores' worth) so that a run on a busy machine can say so.
 */
export async function waitQuiet({ threshold = 0.1, timeoutMs = 30_000, onBusy } = {}) {
  const deadline = Date.now() + timeoutMs;
  let warned = false;
  for (;;) {
    const before = sampleCores();
    await sleep(1000);
    const busy = Object.values(busyBetween(before, sampleCores())).reduce((a, b) => a + b, 0);
    if (busy < threshold || Date.now() >= deadline) return busy;
    if (!warned) onBusy?.(busy);
    warned = true;
  }
}
