/**
 * A private redis-server for tests: its own loopback port, no persistence, killed in teardown. CI installs
 * redis-server (.ci/run); a developer machine without it skips the Redis tests with a message saying so.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Whether redis-server can be started here; when not, the reason (for `describe.skipIf` messages). */
export const redisMissing: string | undefined = (() => {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    const msg = 'redis-server is not installed (apt-get install -y redis-server); skipping the Redis tests';
    if (process.env.CI) throw new Error(`${msg}: CI must install it (.ci/run)`);
    console.warn(msg);
    return msg;
  }
})();

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGKILL: no clean shutdown, like a crash); `start()` brings it back on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
      ],
      { stdio: 'ignore' },
    );
    for (let i = 0; i < 200; i++) {
      if (await reachable(port)) return;
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`redis-server did not listen on ${port}`);
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  };
  await start();
  return { port, url: `redis://127.0.0.1:${port}`, stop, start, close: stop };
}

export interface RedisCluster {
  /** `redis://127.0.0.1:<port>` of each node (all masters, no replicas). */
  readonly urls: readonly string[];
  close(): Promise<void>;
}

function redisCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('redis-cli', args, { timeout: 10_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`redis-cli ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
    ),
  );
}

/** A private Redis Cluster of `n` masters on loopback (slots spread by `redis-cli --cluster create`). */
export async function startRedisCluster(n = 3): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-redis-cluster-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  const close = async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < n; i++) {
      const port = await freePort();
      ports.push(port);
      // Each node needs its own working directory: nodes.conf is written there.
      const nodeDir = join(dir, String(port));
      execFileSync('mkdir', ['-p', nodeDir]);
      const child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--protected-mode',
          'no',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-node-timeout',
          '2000',
          '--dir',
          nodeDir,
        ],
        { stdio: 'ignore' },
      );
      children.push(child);
    }
    for (const port of ports) {
      let up = false;
      for (let i = 0; i < 200 && !up; i++) {
        up = await reachable(port);
        if (!up) await new Promise((r) => setTimeout(r, 25));
      }
      if (!up) throw new Error(`redis-server (cluster node) did not listen on ${port}`);
    }
    await redisCli(['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-yes']);
    // The nodes agree on the slot map a moment later.
    for (let i = 0; i < 200; i++) {
      const infos = await Promise.all(ports.map((p) => redisCli(['-p', String(p), 'cluster', 'info'])));
      if (infos.every((s) => s.includes('cluster_state:ok'))) {
        return { urls: ports.map((p) => `redis://127.0.0.1:${p}`), close };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('the Redis Cluster did not reach cluster_state:ok');
  } catch (err) {
    await close();
    throw err;
  }
}
