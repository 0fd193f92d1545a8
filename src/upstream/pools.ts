import type { Socket } from 'node:net';
import { buildConnector, type Dispatcher, Pool } from 'undici';
import type { UpstreamTlsConfig } from '../config/tls.js';
import { isTlsFailure } from '../core/outcome.js';
import { H2Pool } from './h2-pool.js';
import { UpstreamTls } from './upstream-tls.js';

export interface PoolOptions {
  connections: number;
  pipelining: number;
  keepAliveTimeout: number;
  connectTimeout: number;
  /** http1 (undici), h2 (HTTP/2 over TLS) or h2c (cleartext HTTP/2), both on node:http2. */
  protocol: 'http1' | 'h2' | 'h2c';
  /** h2/h2c: most streams per connection. */
  maxConcurrentStreams: number;
  /** TLS to the endpoint (https:// origins), absent for cleartext. */
  tls: UpstreamTlsConfig | undefined;
  /** SNI and the name the certificate must carry; undefined: none (the endpoint is an IP address). */
  servername: string | undefined;
}

/** What an endpoint sends its attempts through: undici's Pool (HTTP/1.1) or an H2Pool, one dispatch interface. */
export interface UpstreamPool {
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
  close(): Promise<void>;
}

/**
 * Connection pools keyed by origin, protocol, TLS settings and options. A reload asks for pools again; those whose
 * key is unchanged are handed back as they are (their open connections kept), and `retain()` closes the rest
 * gracefully. TLS contexts are shared by the pools of one service TLS config and close with the last of them.
 */
export class PoolRegistry {
  #pools = new Map<string, UpstreamPool>();
  /** TLS contexts by config, and the pools using each. */
  #tls = new Map<string, { tls: UpstreamTls; pools: Set<UpstreamPool> }>();
  readonly #onTlsError: ((message: string) => void) | undefined;

  constructor(onTlsError?: (message: string) => void) {
    this.#onTlsError = onTlsError;
  }

  /** Throws when the TLS files of `o.tls` cannot be loaded. */
  get(origin: string, o: PoolOptions): UpstreamPool {
    const tlsKey = o.tls === undefined ? '' : JSON.stringify(o.tls);
    const key = `${o.protocol}|${origin}|${o.connections}|${o.pipelining}|${o.keepAliveTimeout}|${o.connectTimeout}|${o.maxConcurrentStreams}|${o.servername ?? ''}|${tlsKey}`;
    let pool = this.#pools.get(key);
    if (pool) return pool;
    let shared = o.tls === undefined ? undefined : this.#tls.get(tlsKey);
    if (o.tls !== undefined && shared === undefined) {
      shared = { tls: new UpstreamTls(o.tls, this.#onTlsError), pools: new Set() };
      this.#tls.set(tlsKey, shared);
    }
    const tls = shared?.tls;
    if (o.protocol === 'http1') {
      pool = new Pool(origin, {
        connections: o.connections,
        pipelining: o.pipelining,
        keepAliveTimeout: o.keepAliveTimeout,
        // Never keep a connection past what the endpoint announced in Keep-Alive, minus a safety margin.
        keepAliveTimeoutThreshold: 1000,
        connect: tls === undefined ? { timeout: o.connectTimeout } : tlsConnector(tls, o),
        // Bodies and headers are limited per request by the dispatch options.
        headersTimeout: 0,
        bodyTimeout: 0,
        strictContentLength: true,
      });
    } else {
      pool = new H2Pool(origin, {
        connections: o.connections,
        maxConcurrentStreams: o.maxConcurrentStreams,
        keepAliveTimeout: o.keepAliveTimeout,
        connectTimeout: o.connectTimeout,
        tls,
        servername: o.servername,
      }) as unknown as UpstreamPool;
    }
    shared?.pools.add(pool);
    this.#pools.set(key, pool);
    return pool;
  }

  /** Closes (after in-flight requests finish) every pool not in `keep`. */
  retain(keep: ReadonlySet<UpstreamPool>): void {
    for (const [key, pool] of this.#pools) {
      if (!keep.has(pool)) {
        this.#pools.delete(key);
        pool.close().catch(() => {});
        this.#releaseTls(pool);
      }
    }
  }

  get size(): number {
    return this.#pools.size;
  }

  async closeAll(): Promise<void> {
    const all = [...this.#pools.values()];
    this.#pools.clear();
    for (const { tls } of this.#tls.values()) tls.close();
    this.#tls.clear();
    await Promise.allSettled(all.map((p) => p.close()));
  }

  #releaseTls(pool: UpstreamPool): void {
    for (const [key, shared] of this.#tls) {
      if (!shared.pools.delete(pool) || shared.pools.size > 0) continue;
      shared.tls.close();
      this.#tls.delete(key);
    }
  }
}

/**
 * undici's TLS connector on the service's current secure context: rebuilt when the context is (a file changed),
 * kept otherwise so that TLS sessions resume.
 */
function tlsConnector(tls: UpstreamTls, o: PoolOptions): buildConnector.connector {
  let generation = -1;
  let connector: buildConnector.connector | undefined;
  return function trellisTlsConnect(options, callback) {
    if (connector === undefined || generation !== tls.generation) {
      generation = tls.generation;
      connector = buildConnector({
        timeout: o.connectTimeout,
        secureContext: tls.context,
        rejectUnauthorized: true,
        ...(o.servername === undefined ? {} : { servername: o.servername }),
      });
    }
    connector({ ...options, servername: o.servername }, (...args) => {
      args[1]?.prependListener('error', onTlsAlert);
      callback(...args);
    });
  };
}

/**
 * A TLS alert after the handshake (TLS 1.3: the endpoint wanted a client certificate, or refused ours) arrives as
 * a socket error just before the end of the stream; undici would report the end ("other side closed") and lose
 * why. Destroying the socket with the alert keeps the reason for the request.
 */
function onTlsAlert(this: Socket, err: Error & { code?: string }): void {
  if (typeof err.code === 'string' && isTlsFailure(err.code) && !this.destroyed) this.destroy(err);
}
