import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { aggregateWorkerMetrics, METRICS_CONTENT_TYPE } from '../observability/metrics.js';
import type { Applier } from './supervisor.js';

/** What the admin API asks every worker for: its metrics (prom-client JSON) or its runtime view. */
export type QueryKind = 'metrics' | 'runtime';

export type ToWorker =
  | { type: 'apply'; seq: number; version: number; hash: string; config: Config }
  | { type: 'drain'; deadlineMs: number }
  | { type: 'query'; id: number; kind: QueryKind };
export type FromWorker =
  | { type: 'hello' }
  | { type: 'answer'; id: number; data: unknown }
  | { type: 'applied'; seq: number; version: number; ports: Record<string, number> }
  | { type: 'failed'; seq: number; version: number; error: string };

interface WorkerState {
  readonly worker: Worker;
  /** Said hello: its message handler is installed, it can take an apply. */
  hello: boolean;
  version: number;
  ports: Record<string, number>;
  /** Pending applies by send sequence number (one per send, never overwritten). */
  readonly waiters: Map<number, { resolve: () => void; reject: (e: Error) => void }>;
}

const APPLY_TIMEOUT_MS = 30_000;
/** A worker that does not answer an admin query in this time is left out of that answer. */
const QUERY_TIMEOUT_MS = 2_000;

/**
 * `--workers N`: N processes share each listening socket (the kernel spreads connections, SCHED_NONE), and
 * this primary owns config. A worker gets the current version when it says hello and every later version as it
 * comes; it answers each send by sequence number. A worker that dies is replaced, with backoff, and picks up
 * the current version on its hello.
 */
export class ClusterApplier implements Applier {
  readonly #n: number;
  readonly #log: Logger;
  readonly #workers = new Map<number, WorkerState>();
  readonly #restartTimers = new Set<NodeJS.Timeout>();
  #current: { config: Config; version: number; hash: string } | undefined;
  #started = false;
  #stopping = false;
  #restarts = 0;
  #seq = 0;
  #queryId = 0;
  readonly #queries = new Map<number, (data: unknown) => void>();

  constructor(n: number, log: Logger) {
    this.#n = n;
    this.#log = log;
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.on('exit', (worker, code, signal) => this.#onExit(worker, code, signal));
  }

  async apply(config: Config, version: number, hash: string): Promise<void> {
    const previous = this.#current;
    this.#current = { config, version, hash };
    if (!this.#started) {
      this.#started = true;
      const started: Promise<void>[] = [];
      for (let i = 0; i < this.#n; i++) started.push(this.#fork());
      try {
        await Promise.all(started);
      } catch (err) {
        this.#current = previous;
        throw err;
      }
      return;
    }
    // Workers that have not said hello yet get this version when they do.
    const ready = [...this.#workers.values()].filter((w) => w.hello);
    if (ready.length === 0) return;
    const results = await Promise.allSettled(ready.map((w) => this.#send(w)));
    const failed = ready.filter((_, i) => results[i]!.status === 'rejected');
    if (failed.length === 0) return;
    const reason = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error;
    if (failed.length === ready.length) {
      this.#current = previous;
      throw new Error(`no worker could apply version ${version}: ${reason.message}`);
    }
    // Some applied, some did not: the fleet must not serve two versions. Replace the ones that failed; their
    // successors start on the current version (or fail to start, and are replaced again with backoff).
    this.#log.error(
      { version, failed: failed.map((w) => w.worker.process.pid), err: reason.message },
      'some workers failed to apply the new config; replacing them',
    );
    for (const w of failed) w.worker.process.kill('SIGKILL');
  }

  #fork(): Promise<void> {
    const worker = cluster.fork({ TRELLIS_WORKER: '1' });
    const state: WorkerState = { worker, hello: false, version: 0, ports: {}, waiters: new Map() };
    this.#workers.set(worker.id, state);
    return new Promise((resolve, reject) => {
      worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'answer') {
          this.#queries.get(msg.id)?.(msg.data);
          return;
        }
        if (msg.type === 'hello') {
          if (this.#stopping || !this.#current) return;
          state.hello = true;
          this.#send(state).then(resolve, reject);
          return;
        }
        const waiter = state.waiters.get(msg.seq);
        state.waiters.delete(msg.seq);
        if (msg.type === 'applied') {
          if (msg.version > state.version) {
            state.version = msg.version;
            state.ports = msg.ports;
          }
          waiter?.resolve();
        } else {
          waiter?.reject(new Error(msg.error));
        }
      });
      worker.once('exit', () => reject(new Error(`worker ${worker.process.pid} exited during start`)));
    });
  }

  /**
   * Asks every serving worker (for the admin API) and returns the answers that came within the timeout, in
   * worker order. Per-process state (health, ejections, breakers, metrics) lives in the workers.
   */
  async query(kind: QueryKind): Promise<unknown[]> {
    const serving = [...this.#workers.values()].filter((w) => w.hello && w.version > 0);
    const answers = await Promise.all(
      serving.map(
        (w) =>
          new Promise<unknown>((resolve) => {
            const id = ++this.#queryId;
            const timer = setTimeout(() => {
              this.#queries.delete(id);
              resolve(undefined);
            }, QUERY_TIMEOUT_MS);
            this.#queries.set(id, (data) => {
              clearTimeout(timer);
              this.#queries.delete(id);
              resolve(data);
            });
            const msg: ToWorker = { type: 'query', id, kind };
            w.worker.send(msg);
          }),
      ),
    );
    return answers.filter((a) => a !== undefined);
  }

  /** Sends the current version to one worker; resolves when it says it applied that send. */
  #send(state: WorkerState): Promise<void> {
    const cur = this.#current!;
    const seq = ++this.#seq;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        state.waiters.delete(seq);
        reject(new Error(`worker ${state.worker.process.pid} did not answer in ${APPLY_TIMEOUT_MS} ms`));
      }, APPLY_TIMEOUT_MS);
      state.waiters.set(seq, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const msg: ToWorker = { type: 'apply', seq, version: cur.version, hash: cur.hash, config: cur.config };
      state.worker.send(msg);
    });
  }

  #onExit(worker: Worker, code: number | null, signal: string | null): void {
    const state = this.#workers.get(worker.id);
    this.#workers.delete(worker.id);
    for (const w of state?.waiters.values() ?? []) w.reject(new Error('worker exited'));
    if (this.#stopping) return;
    this.#restarts++;
    this.#log.error(
      { workerPid: worker.process.pid, code, signal, restarts: this.#restarts },
      'worker died; starting another',
    );
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.#restarts, 6));
    const timer = setTimeout(() => {
      this.#restartTimers.delete(timer);
      if (!this.#stopping) {
        this.#fork().catch((err) => this.#log.error({ err: err.message }, 'worker failed to start'));
      }
    }, delay);
    timer.unref();
    this.#restartTimers.add(timer);
  }

  async drain(deadlineMs: number): Promise<void> {
    this.#stopping = true;
    for (const t of this.#restartTimers) clearTimeout(t);
    this.#restartTimers.clear();
    const exits = [...this.#workers.values()].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.worker.isDead()) return resolve();
          s.worker.once('exit', () => resolve());
          const msg: ToWorker = { type: 'drain', deadlineMs };
          s.worker.send(msg);
        }),
    );
    const hardStop = setTimeout(() => {
      for (const s of this.#workers.values()) s.worker.process.kill('SIGKILL');
    }, deadlineMs + 5000);
    await Promise.all(exits);
    clearTimeout(hardStop);
  }

  config(): Config | undefined {
    return this.#current?.config;
  }

  /** One exposition for the whole fleet: the workers' registries merged (counters and histograms summed). */
  metrics(): Promise<{ contentType: string; body: string }> | undefined {
    if (!this.#current?.config.metrics.enabled) return undefined;
    return this.query('metrics').then(async (perWorker) => ({
      contentType: METRICS_CONTENT_TYPE,
      body: await aggregateWorkerMetrics(perWorker as unknown[][]),
    }));
  }

  async runtime(): Promise<Array<{ pid: number; routes: unknown; services: unknown }>> {
    return (await this.query('runtime')) as Array<{ pid: number; routes: unknown; services: unknown }>;
  }

  ready(): boolean {
    const cur = this.#current;
    if (!cur || this.#stopping || this.#workers.size < this.#n) return false;
    // Every worker serves some version with its listeners bound. Readiness must not flap during a reload;
    // convergence on the newest version shows in status().
    for (const s of this.#workers.values()) if (s.version === 0) return false;
    return true;
  }

  status(): Record<string, unknown> {
    return {
      version: this.#current?.version ?? 0,
      draining: this.#stopping,
      workers: [...this.#workers.values()].map((s) => ({
        pid: s.worker.process.pid,
        version: s.version,
        ports: s.ports,
      })),
    };
  }
}
