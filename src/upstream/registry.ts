import { isIP } from 'node:net';
import type { ServiceConfig } from '../config/schema.js';
import { serviceUsesTls } from '../config/semantics.js';
import type { UpstreamTlsConfig } from '../config/tls.js';
import { Endpoint } from './endpoint.js';
import { type PoolOptions, PoolRegistry, type UpstreamPool } from './pools.js';
import { type EndpointSource, UpstreamService } from './service.js';

/**
 * Everything upstream that outlives one snapshot: services (with their health, ejection, breaker and budget
 * state), endpoints and their connection pools. A reload asks for services again; one whose config is
 * unchanged is handed back as it is, and an endpoint that stays (same service, origin, weight, zone, priority
 * and pool settings) keeps its object, pool and state even when other settings of its service changed. `commit` stops and closes what the live snapshot no
 * longer uses.
 */
export class UpstreamRegistry implements EndpointSource {
  readonly #pools = new PoolRegistry();
  readonly #endpoints = new Map<string, Endpoint>();
  /** Services by key (canonical config JSON + zone). */
  #services = new Map<string, UpstreamService>();
  /** The services the live snapshot uses. */
  #live = new Set<UpstreamService>();

  /** The service for `cfg`: the existing object when an identical one is live or pending, else a new one. */
  service(cfg: ServiceConfig, zone: string): UpstreamService {
    const key = `${zone}|${JSON.stringify(cfg)}`;
    let svc = this.#services.get(key);
    if (!svc) {
      svc = new UpstreamService(cfg, key, this, zone);
      this.#services.set(key, svc);
    }
    return svc;
  }

  endpoint(
    origin: string,
    authority: string,
    cfg: ServiceConfig,
    place: { weight: number; zone: string; priority: number },
  ): Endpoint {
    const secure = serviceUsesTls(cfg);
    // DNS discovery hands out http:// origins of addresses; a TLS service reaches them over https.
    const target = secure && origin.startsWith('http:') ? `https:${origin.slice(5)}` : origin;
    const o: PoolOptions = {
      connections: cfg.pool.connections,
      pipelining: cfg.pool.pipelining,
      keepAliveTimeout: cfg.pool.keepAliveTimeout,
      connectTimeout: cfg.connectTimeout,
      protocol: cfg.protocol,
      maxConcurrentStreams: cfg.pool.maxConcurrentStreams,
      tls: secure ? (cfg.tls ?? DEFAULT_TLS) : undefined,
      // SNI: the configured name, else the endpoint's host name (DNS: the name resolved); never an IP address.
      servername: secure ? (cfg.tls?.sni ?? serverName(authority)) : undefined,
    };
    // One object per service and endpoint settings: two services listing one URL do not share health,
    // ejection or weight; the pool (keyed by origin, protocol, TLS and pool settings alone) they may share.
    const key = `${cfg.name}|${target}|${authority}|${place.weight}|${place.zone}|${place.priority}|${o.connections}|${o.pipelining}|${o.keepAliveTimeout}|${o.connectTimeout}|${o.protocol}|${o.maxConcurrentStreams}|${o.servername ?? ''}|${o.tls === undefined ? '' : JSON.stringify(o.tls)}`;
    let ep = this.#endpoints.get(key);
    if (!ep) {
      ep = new Endpoint(target, authority, this.#pools.get(target, o));
      ep.weight = place.weight;
      ep.zone = place.zone;
      ep.priority = place.priority;
      this.#endpoints.set(key, ep);
    }
    return ep;
  }

  /**
   * Starts health checks and DNS discovery of services about to go live, waiting (boundedly) for their first
   * DNS answers. Services already running are untouched.
   */
  async prepare(services: Iterable<UpstreamService>): Promise<void> {
    await Promise.all([...services].map((svc) => svc.start()));
  }

  /** Makes `live` the set of services in use: stops the others and closes pools no endpoint uses any more. */
  commit(live: Iterable<UpstreamService>): void {
    const next = new Set(live);
    this.#live = next;
    let byName: Map<string, UpstreamService> | undefined;
    for (const [key, svc] of this.#services) {
      if (!next.has(svc)) {
        this.#services.delete(key);
        if (byName === undefined) {
          byName = new Map();
          for (const s of next) byName.set(s.name, s);
        }
        // Requests still in flight on the old service pick from the new one: the pools of endpoints that
        // changed are about to close.
        svc.stop(byName.get(svc.name));
      }
    }
    this.collect();
  }

  /** Closes pools (after their in-flight requests) and forgets endpoints no live service uses. */
  collect(): void {
    const used = new Set<Endpoint>();
    for (const svc of this.#services.values()) for (const ep of svc.endpoints) used.add(ep);
    const pools = new Set<UpstreamPool>();
    for (const [key, ep] of this.#endpoints) {
      if (used.has(ep)) pools.add(ep.pool);
      else this.#endpoints.delete(key);
    }
    this.#pools.retain(pools);
  }

  get poolCount(): number {
    return this.#pools.size;
  }

  async closeAll(): Promise<void> {
    for (const svc of this.#services.values()) svc.stop();
    this.#services.clear();
    this.#live.clear();
    this.#endpoints.clear();
    await this.#pools.closeAll();
  }
}

/** TLS with the defaults: https:// endpoints and no `tls` settings (system CAs, SNI from the host). */
const DEFAULT_TLS: UpstreamTlsConfig = { minVersion: 'TLSv1.2' };

/** The host of an authority when it is a name (SNI carries names only, RFC 6066 §3). */
function serverName(authority: string): string | undefined {
  if (authority.startsWith('[')) return undefined;
  const colon = authority.lastIndexOf(':');
  const host = colon === -1 ? authority : authority.slice(0, colon);
  return isIP(host) === 0 && host !== '' ? host : undefined;
}
