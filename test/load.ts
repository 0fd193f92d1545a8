import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

export interface LoadResult {
  /** Status code per request, in completion order; 0 for a client-side error. */
  statuses: number[];
  /** Response body per request (only when `bodies` is set). */
  bodies: string[];
  /** Latency per request in ms. */
  latencies: number[];
  errors: number;
}

/**
 * Sends at most `total` requests with `concurrency` in flight, and stops after `maxMs` whichever comes first.
 * `onProgress(sent)` runs before each request (to kill an upstream mid-load, say).
 */
export async function load(o: {
  url: string;
  total: number;
  concurrency: number;
  maxMs: number;
  method?: string;
  headers?: (i: number) => Record<string, string>;
  body?: string;
  bodies?: boolean;
  onProgress?: (sent: number) => void;
}): Promise<LoadResult> {
  const agent = new Agent({ connections: o.concurrency, keepAliveTimeout: 10_000 });
  const result: LoadResult = { statuses: [], bodies: [], latencies: [], errors: 0 };
  const deadline = Date.now() + o.maxMs;
  let sent = 0;
  const worker = async () => {
    while (sent < o.total && Date.now() < deadline) {
      const i = sent++;
      o.onProgress?.(i);
      const t0 = performance.now();
      try {
        const r = await request(o.url, {
          method: (o.method ?? 'GET') as 'GET',
          headers: o.headers?.(i),
          body: o.body,
          dispatcher: agent,
        });
        const text = await r.body.text();
        result.statuses.push(r.statusCode);
        if (o.bodies) result.bodies.push(text);
      } catch {
        result.statuses.push(0);
        result.errors++;
      }
      result.latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  await agent.close();
  return result;
}

export interface UpstreamProcess {
  readonly port: number;
  readonly url: string;
  readonly child: ChildProcess;
  kill(): void;
}

/** An upstream in its own process (test/fixtures/upstream.js) that answers with `name`. */
export async function spawnUpstream(name: string): Promise<UpstreamProcess> {
  const script = fileURLToPath(new URL('./fixtures/upstream.js', import.meta.url));
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, NAME: name },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  const port = Number(chunk.toString().trim());
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    child,
    kill: () => child.kill('SIGKILL'),
  };
}

export function count<T>(xs: readonly T[], pred: (x: T) => boolean): number {
  let n = 0;
  for (const x of xs) if (pred(x)) n++;
  return n;
}
