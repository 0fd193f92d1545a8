import { Pool } from 'undici';

export interface PoolOptions {
  connections: number;
  pipelining: number;
  keepAliveTimeout: number;
  connectTimeout: number;
}

/**
 * Connection pools keyed by origin and options. A reload asks for pools again; those whose key is unchanged
 * are handed back as they are (their open connections kept), and `retain()` closes the rest gracefully.
 */
export class PoolRegistry {
  #pools = new Map<string, Pool>();

  get(origin: string, o: PoolOptions): Pool {
    const key = `${origin}|${o.connections}|${o.pipelining}|${o.keepAliveTimeout}|${o.connectTimeout}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new Pool(origin, {
        connections: o.connections,
        pipelining: o.pipelining,
        keepAliveTimeout: o.keepAliveTimeout,
        // Never keep a connection past what the endpoint announced in Keep-Alive, minus a safety margin.
        keepAliveTimeoutThreshold: 1000,
        connect: { timeout: o.connectTimeout },
        // Bodies and headers are limited per request by the dispatch options.
        headersTimeout: 0,
        bodyTimeout: 0,
        strictContentLength: true,
      });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** Closes (after in-flight requests finish) every pool not in `keep`. */
  retain(keep: ReadonlySet<Pool>): void {
    for (const [key, pool] of this.#pools) {
      if (!keep.has(pool)) {
        this.#pools.delete(key);
        pool.close().catch(() => {});
      }
    }
  }

  get size(): number {
    return this.#pools.size;
  }

  async closeAll(): Promise<void> {
    const all = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.allSettled(all.map((p) => p.close()));
  }
}
