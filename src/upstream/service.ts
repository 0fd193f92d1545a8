import type { Pool } from 'undici';
import type { ServiceConfig } from '../config/schema.js';
import { type Balancer, weightedRoundRobin } from './balancer.js';
import type { PoolRegistry } from './pools.js';

export interface Endpoint {
  /** `http://127.0.0.1:3000` */
  readonly origin: string;
  /** `127.0.0.1:3000`: the Host header when a route does not preserve the client's. */
  readonly authority: string;
  readonly weight: number;
  readonly pool: Pool;
}

export interface UpstreamService {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  readonly balancer: Balancer<Endpoint>;
}

export function buildService(cfg: ServiceConfig, pools: PoolRegistry): UpstreamService {
  const endpoints: Endpoint[] = cfg.endpoints.map((e) => {
    const raw = typeof e === 'string' ? e : e.url;
    const weight = typeof e === 'string' ? 1 : e.weight;
    const url = new URL(raw);
    const pool = pools.get(url.origin, {
      connections: cfg.pool.connections,
      pipelining: cfg.pool.pipelining,
      keepAliveTimeout: cfg.pool.keepAliveTimeout,
      connectTimeout: cfg.connectTimeout,
    });
    return Object.freeze({ origin: url.origin, authority: url.host, weight, pool });
  });
  return Object.freeze({ name: cfg.name, endpoints, balancer: weightedRoundRobin(endpoints) });
}
