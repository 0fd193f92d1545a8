import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'trellis.js');

/** A port that was free a moment ago (bind to 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The config most process tests start from: one listener, the admin listener, one service at `{{UPSTREAM}}`, and
 * one catch-all route to it. `routeExtra` is YAML appended to that route (indented 4 spaces).
 */
export function gatewayYaml(routeExtra = ''): string {
  return `
listeners:
  - name: public
    port: {{PORT}}
admin:
  port: {{ADMIN_PORT}}
services:
  - name: svc
    endpoints: ["{{UPSTREAM}}"]
routes:
  - name: all
    backends: [{ service: svc }]
${routeExtra}`;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the trellis CLI to completion. */
export function runCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly file: string;
  readonly port: number;
  readonly adminPort: number;
  readonly url: string;
  stderr(): string;
  stdout(): string;
  /** GET on the admin listener, parsed. */
  // biome-ignore lint/suspicious/noExplicitAny: admin JSON, read field by field in tests
  admin(path: string): Promise<{ status: number; body: any }>;
  waitReady(timeoutMs?: number): Promise<void>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  writeConfig(text: string): void;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts `trellis gateway` as a real process on free ports. The config text may use `{{PORT}}`,
 * `{{ADMIN_PORT}}` and `{{UPSTREAM}}`, filled in here.
 */
export async function spawnGateway(
  configTemplate: string,
  opts: { workers?: number; upstream?: string; env?: NodeJS.ProcessEnv; fileName?: string } = {},
): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-test-'));
  const file = join(dir, opts.fileName ?? 'trellis.yaml');
  const port = await freePort();
  const adminPort = await freePort();
  const fill = (t: string) =>
    t
      .replaceAll('{{PORT}}', String(port))
      .replaceAll('{{ADMIN_PORT}}', String(adminPort))
      .replaceAll('{{UPSTREAM}}', opts.upstream ?? 'http://127.0.0.1:1');
  writeFileSync(file, fill(configTemplate));
  const child = spawn(
    process.execPath,
    [BIN, 'gateway', '--config', file, '--workers', String(opts.workers ?? 1)],
    {
      cwd: ROOT,
      env: { ...process.env, TRELLIS_LOG_LEVEL: 'info', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (c) => (stderr += c));
  child.stdout!.on('data', (c) => (stdout += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const admin = async (path: string) => {
    const r = await fetch(`http://127.0.0.1:${adminPort}${path}`);
    return { status: r.status, body: await r.json() };
  };
  const gp: GatewayProcess = {
    child,
    dir,
    file,
    port,
    adminPort,
    url: `http://127.0.0.1:${port}`,
    stderr: () => stderr,
    stdout: () => stdout,
    admin,
    exited,
    writeConfig: (text) => writeFileSync(file, fill(text)),
    kill: (signal = 'SIGTERM') => child.kill(signal),
    async waitReady(timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}: ${stderr}`);
        try {
          const r = await admin('/ready');
          if (r.status === 200) return;
        } catch {
          // not listening yet
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`gateway not ready after ${timeoutMs} ms: ${stderr}`);
    },
  };
  return gp;
}
