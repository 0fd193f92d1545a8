// Every process the harness starts goes through here: pinned with taskset, in its own process group (so a
// proxy's workers die with it), output to a log file, and killed on any way out of the harness.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const live = new Set();

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** Kills everything still running, at once and without waiting: safe inside an 'exit' handler. */
export function killAll() {
  for (const child of live) killGroup(child.pid, 'SIGKILL');
  live.clear();
}

let hooked = false;
/** Makes sure nothing outlives the harness: normal exit, Ctrl-C, SIGTERM, or a crash. */
export function killAllOnExit() {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      console.error(`\n${signal}: stopping everything the benchmark started`);
      killAll();
      process.exit(130);
    });
  }
}

/** The taskset prefix for a core, or none when pinning is off. */
export function pinned(cpu, command, args, pin) {
  return pin && cpu !== undefined ? ['taskset', ['-c', String(cpu), command, ...args]] : [command, args];
}

/**
 * Starts a long-running process. Output goes to `logFile`; `tail()` reads its end for error messages.
 * Resolves once spawned (not once ready: see waitReady).
 */
export function start({ name, command, args, cwd, env, logFile }) {
  const fd = openSync(logFile, 'a');
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd],
    detached: true, // own process group: one kill reaches the workers too
  });
  closeSync(fd);
  live.add(child);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
    child.once('error', (err) => resolve({ code: null, signal: null, error: err }));
  });
  const proc = {
    name,
    pid: child.pid,
    exited,
    exitStatus: null,
    tail(lines = 20) {
      try {
        return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
    /** SIGTERM to the group, SIGKILL after `graceMs`; resolves when the main process has exited. */
    async stop(graceMs = 5000) {
      if (proc.exitStatus === null) {
        killGroup(child.pid, 'SIGTERM');
        const timer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      killGroup(child.pid, 'SIGKILL'); // stragglers in the group (workers)
      live.delete(child);
    },
  };
  exited.then((status) => {
    proc.exitStatus = status;
  });
  return proc;
}

/**
 * Runs a command to completion with a hard time limit; resolves with its output, whatever the exit code.
 */
export function run(command, args, { timeoutMs, cwd, env, echo = false } = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => {
      stdout += d;
      if (echo) process.stdout.write(d);
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      if (echo) process.stderr.write(d);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid, 'SIGKILL');
    }, timeoutMs);
    const finish = (code, error) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, stdout, stderr, timedOut, error });
    };
    child.once('error', (err) => finish(null, err));
    child.once('close', (code) => finish(code));
  });
}

/** True when something accepts connections on the port. */
export function portInUse(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

function getOnce(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', (err) => resolve({ error: err }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 1s')));
    req.on('error', (err) => resolve({ error: err }));
  });
}

/**
 * Polls `url` until it answers 200 with `expectBody`. Fails early if the process exits, and after
 * `timeoutMs` with the last answer seen, so a target that never comes up says why.
 */
export async function waitReady(proc, url, { timeoutMs, expectBody }) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (proc.exitStatus) {
      const { code, signal, error } = proc.exitStatus;
      const how = error ? error.message : signal ? `killed by ${signal}` : `exit code ${code}`;
      throw new Error(`${proc.name} exited before it was ready (${how})`);
    }
    const answer = await getOnce(url);
    if (answer.error) last = answer.error.code ?? answer.error.message;
    else if (answer.status !== 200) last = `HTTP ${answer.status}: ${answer.body.slice(0, 200)}`;
    else if (expectBody !== undefined && answer.body !== expectBody) {
      last = `HTTP 200 but the body is not the upstream's: ${JSON.stringify(answer.body.slice(0, 200))}`;
    } else return;
    await sleep(100);
  }
  throw new Error(`${proc.name} did not answer 200 on ${url} within ${timeoutMs / 1000}s (last: ${last})`);
}
