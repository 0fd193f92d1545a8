// Makes sure wrk, nginx and the peers' packages are there, and reports the versions that go in the results.
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from './processes.js';

async function has(command) {
  const { code } = await run('sh', ['-c', `command -v ${command}`], { timeoutMs: 5000 });
  return code === 0;
}

/** apt-get install, with one `apt-get update` and a retry only if the first install fails. */
async function aptInstall(packages) {
  if (process.getuid?.() !== 0) {
    throw new Error(
      `missing ${packages.join(', ')}: install them (apt-get install -y ${packages.join(' ')}) or run as root`,
    );
  }
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    run('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
      timeoutMs: 600_000,
      env,
      echo: true,
    });
  console.log(`installing ${packages.join(', ')} with apt-get`);
  let result = await install();
  if (result.code !== 0) {
    console.log('apt-get install failed; running apt-get update once and trying again');
    await run('apt-get', ['update'], { timeoutMs: 300_000, env, echo: true });
    result = await install();
  }
  if (result.code !== 0)
    throw new Error(`apt-get install ${packages.join(' ')} failed (exit ${result.code})`);
}

/** Installs what the chosen targets need: wrk always, nginx for the nginx target, bench/node_modules for Node peers. */
export async function ensureTools({ targets, benchDir }) {
  const needed = [
    'taskset',
    'wrk',
    ...(targets.includes('nginx') ? ['nginx'] : []),
    ...(targets.includes('trellis-ratelimit-redis') ? ['redis-server'] : []),
  ];
  const missing = [];
  for (const tool of needed) if (!(await has(tool))) missing.push(tool);
  if (missing.includes('taskset')) throw new Error('taskset is missing (Debian package util-linux)');
  if (missing.length) await aptInstall(missing);

  const nodePeers = ['node-minimal', 'fast-gateway', 'fastify-http-proxy'];
  if (targets.some((t) => nodePeers.includes(t)) && !existsSync(path.join(benchDir, 'node_modules'))) {
    const lock = existsSync(path.join(benchDir, 'package-lock.json'));
    const args = lock ? ['ci', '--prefix', benchDir] : ['install', '--prefix', benchDir];
    console.log(`npm ${args.join(' ')}`);
    const result = await run('npm', [...args, '--no-audit', '--no-fund'], { timeoutMs: 600_000, echo: true });
    if (result.code !== 0) throw new Error(`npm ${args[0]} in ${benchDir} failed (exit ${result.code})`);
  }
}

function firstLine(text) {
  return text.trim().split('\n')[0] ?? '';
}

function packageVersion(dir, name) {
  try {
    return JSON.parse(readFileSync(path.join(dir, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}

/** What the numbers were measured on and with. */
export async function describeMachine({ benchDir, repoDir, trellisRef }) {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const nproc = firstLine((await run('nproc', [], { timeoutMs: 5000 })).stdout);
  const nginx = await run('nginx', ['-v'], { timeoutMs: 5000 }); // prints to stderr
  const wrk = await run('wrk', ['-v'], { timeoutMs: 5000 }); // prints usage and exits 1
  const commitOf = async (dir) =>
    firstLine((await run('git', ['rev-parse', '--short', 'HEAD'], { cwd: dir, timeoutMs: 5000 })).stdout) ||
    null;
  const commit = await commitOf(repoDir);
  return {
    nproc: Number(nproc) || os.cpus().length,
    cpu: model,
    kernel: os.release(),
    node: process.version,
    nginx: /nginx\/(\S+)/.exec(nginx.stderr + nginx.stdout)?.[1] ?? null,
    wrk: /wrk (\S+)/.exec(wrk.stdout + wrk.stderr)?.[1] ?? null,
    trellisCommit: commit,
    ...(trellisRef ? { trellisRef: { dir: trellisRef, commit: await commitOf(trellisRef) } } : {}),
    peers: Object.fromEntries(
      ['fast-gateway', 'fast-proxy-lite', 'fastify', '@fastify/http-proxy', 'undici'].map((name) => [
        name,
        packageVersion(benchDir, name),
      ]),
    ),
  };
}
