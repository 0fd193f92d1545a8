import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Applier } from './supervisor.js';

export type ToWorker =
  | { type: 'apply'; version: number; hash: string; config: Config }
  | { type: 'drain'; deadlineMs: number };
export type FromWorker =
  | { type: 'hello' }
  | { type: 'applied'; version: number; ports: Record<string, number> }
  | { type: 'failed'; version: number; error: string };

interface WorkerState {
  worker: Worker;
  version: number;
  ports: Record<string, number>;
  waiters: Map<number, { resolve: () => void; reject: (e: Error) => void }>;
}

const APPLY_TIMEOUT_MS = 30_000;

/**
 * `--workers N`: N processes share each listening socket (the kernel spreads connections, SCHED_NONE), and
 * this primary owns config. Every worker applies each version and says so; a worker that dies is replaced
 * and handed the current version.
 */
export class ClusterApplier implements Applier {
  readonly #n: number;
  readonly #log: Logger;
  readonly #workers = new Map<number, WorkerState>();
  #current: { config: Config; version: number; hash: string } | undefined;
  #stopping = false;
  #restarts = 0;

  constructor(n: number, log: Logger) {
    this.#n = n;
    this.#log = log;
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.on('exit', (worker, code, signal) => this.#onExit(worker, code, signal));
  }

  async apply(config: Config, version: number, hash: string): Promise<void> {
    const previous = this.#current;
    this.#current = { config, version, hash };
    if (this.#workers.size === 0) {
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
    const results = await Promise.allSettled([...this.#workers.values()].map((w) => this.#send(w, version)));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) {
      // Workers that failed kept their old version; those that applied serve the new one. Report both.
      if (failed.length === results.length) this.#current = previous;
      throw new Error(
        `${failed.length} of ${results.length} workers failed to apply version ${version}: ${failed[0]!.reason.message}`,
      );
    }
  }

  #fork(): Promise<void> {
    const worker = cluster.fork({ TRELLIS_WORKER: '1' });
    const state: WorkerState = { worker, version: 0, ports: {}, waiters: new Map() };
    this.#workers.set(worker.id, state);
    return new Promise((resolve, reject) => {
      worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'hello') {
          const cur = this.#current;
          if (!cur) return;
          this.#send(state, cur.version).then(resolve, reject);
        } else if (msg.type === 'applied') {
          state.version = msg.version;
          state.ports = msg.ports;
          state.waiters.get(msg.version)?.resolve();
          state.waiters.delete(msg.version);
        } else if (msg.type === 'failed') {
          state.waiters.get(msg.version)?.reject(new Error(msg.error));
          state.waiters.delete(msg.version);
        }
      });
      worker.once('exit', () => reject(new Error(`worker ${worker.process.pid} exited during start`)));
    });
  }

  #send(state: WorkerState, version: number): Promise<void> {
    const cur = this.#current!;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        state.waiters.delete(version);
        reject(new Error(`worker ${state.worker.process.pid} did not answer in ${APPLY_TIMEOUT_MS} ms`));
      }, APPLY_TIMEOUT_MS);
      state.waiters.set(version, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const msg: ToWorker = { type: 'apply', version: cur.version, hash: cur.hash, config: cur.config };
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
      { pid: worker.process.pid, code, signal, restarts: this.#restarts },
      'worker died; starting another',
    );
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.#restarts, 6));
    setTimeout(() => {
      if (!this.#stopping)
        this.#fork().catch((err) => this.#log.error({ err: err.message }, 'worker failed to start'));
    }, delay).unref();
  }

  async drain(deadlineMs: number): Promise<void> {
    this.#stopping = true;
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

  ready(): boolean {
    const cur = this.#current;
    if (!cur || this.#stopping || this.#workers.size < this.#n) return false;
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
