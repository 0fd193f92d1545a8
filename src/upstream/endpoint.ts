import type { UpstreamPool } from './pools.js';

/**
 * One upstream instance and its live state. Balancers read `active` and the latency estimate; active health
 * checks set `healthy`; outlier detection sets `ejectedUntil`. Both tell the watchers (`watch`) so that the service's
 * endpoint set recomputes which endpoints are eligible (on change, never per request).
 *
 * Endpoint objects are carried across reloads when the endpoint (origin + pool options) did not change, so
 * its health, ejection and latency state survive a reload.
 */
export class Endpoint {
  /** `http://127.0.0.1:3000` */
  readonly origin: string;
  /** `127.0.0.1:3000`: the Host header when a route does not preserve the client's. */
  readonly authority: string;
  readonly pool: UpstreamPool;
  /** Relative share of traffic (weighted balancers, hash rings). Set from config; may change on reload. */
  weight = 1;
  /** Zone label for locality preference; '' when unset. */
  zone = '';
  /** 0 is the most preferred priority group. */
  priority = 0;

  /** Requests in flight on this endpoint (attempts dispatched, not yet ended). */
  active = 0;
  /** Peak-EWMA latency estimate in ms, and when it was last updated (performance.now()). */
  ewma = 0;
  ewmaStamp = 0;

  /** Active health checks' verdict; true when no checks are configured. */
  healthy = true;
  /** Outlier detection: ejected until this performance.now() time; 0 when not ejected. */
  ejectedUntil = 0;

  /**
   * Endpoint sets watching this endpoint, told when `healthy` or `ejectedUntil` changes. Several: two services
   * may list the same endpoint, and during a reload the old and the new set of one service overlap.
   */
  readonly #watchers = new Set<() => void>();

  constructor(origin: string, authority: string, pool: UpstreamPool) {
    this.origin = origin;
    this.authority = authority;
    this.pool = pool;
  }

  /** Eligible for traffic: healthy and not ejected. */
  available(now: number): boolean {
    return this.healthy && this.ejectedUntil <= now;
  }

  watch(fn: () => void): void {
    this.#watchers.add(fn);
  }

  unwatch(fn: () => void): void {
    this.#watchers.delete(fn);
  }

  setHealthy(v: boolean): void {
    if (this.healthy === v) return;
    this.healthy = v;
    this.#changed();
  }

  setEjectedUntil(t: number): void {
    if (this.ejectedUntil === t) return;
    this.ejectedUntil = t;
    this.#changed();
  }

  #changed(): void {
    for (const fn of this.#watchers) fn();
  }
}
