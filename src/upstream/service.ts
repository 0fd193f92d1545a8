import type { ServiceConfig } from '../config/schema.js';
import type { Outcome } from '../core/outcome.js';
import { type Balancer, createBalancer, observeLatency } from './balancer.js';
import { Admission, CircuitBreaker } from './circuit.js';
import { DnsDiscovery, type ResolvedAddress } from './discovery.js';
import type { Endpoint } from './endpoint.js';
import { EndpointSet } from './endpoint-set.js';
import { hashString } from './hash.js';
import { HealthChecker, type HealthCheckOptions } from './health.js';
import { OutlierDetector, type OutlierOptions } from './outlier.js';
import { RetryBudget } from './retry-budget.js';
import { upstreamSecureContext } from './upstream-tls.js';

/** What a consistent-hash key is read from: the exchange provides it. */
export interface HashSource {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly query: string;
  clientAddress(): string;
}

/** Where endpoints come from: the registry hands out one Endpoint object per origin and pool settings. */
export interface EndpointSource {
  endpoint(
    origin: string,
    authority: string,
    cfg: ServiceConfig,
    place: { weight: number; zone: string; priority: number },
  ): Endpoint;
  /** Endpoint membership changed outside a reload (DNS): pools nobody uses any more can close. */
  collect(): void;
}

/** How long the first DNS answer may hold up a config apply before the service starts empty. */
const FIRST_RESOLVE_WAIT_MS = 5_000;

/**
 * A service at run time: its endpoints and their set (health, priority, zone), the balancer, outlier detection,
 * health checks, admission limits, the error-rate breaker and the retry budget. One object per service config:
 * a reload that leaves a service's config unchanged keeps this object, so none of that state is lost.
 */
export class UpstreamService {
  readonly name: string;
  /** Canonical JSON of the config that built it: equal keys mean the object can be carried across a reload. */
  readonly key: string;
  readonly config: ServiceConfig;
  readonly admission: Admission;
  readonly circuit: CircuitBreaker | undefined;
  readonly budget: RetryBudget;
  /** Reads the consistent-hash key of a request; undefined for balancers that do not hash. */
  readonly hashOf: ((src: HashSource) => number) | undefined;
  /** Most requests an endpoint takes at once before more wait in its pool's queue. */
  readonly endpointCapacity: number;
  /** Whether latency observations matter (P2C peak-EWMA): saves a clock read per attempt otherwise. */
  readonly observesLatency: boolean;
  /** HTTP/2 to the endpoints (h2, h2c): a stream may be refused after part of a request body was read. */
  readonly http2: boolean;
  #set: EndpointSet;
  readonly #balancer: Balancer;
  readonly #source: EndpointSource;
  #health: HealthChecker | undefined = undefined;
  #outlier: OutlierDetector | undefined = undefined;
  #dns: DnsDiscovery | undefined = undefined;
  #started = false;
  #stopped = false;
  /** The service a reload replaced this one with (same name), if any. */
  #successor: UpstreamService | undefined = undefined;
  readonly #zone: string;
  #lastDnsError: string | undefined = undefined;

  constructor(cfg: ServiceConfig, key: string, source: EndpointSource, zone: string) {
    this.name = cfg.name;
    this.key = key;
    this.config = cfg;
    this.#source = source;
    this.#zone = zone;
    const lb = cfg.loadBalancer;
    this.#balancer = createBalancer({ kind: lb.type });
    this.observesLatency = lb.type === 'p2c-ewma';
    this.http2 = cfg.protocol !== 'http1';
    this.hashOf = lb.hashOn ? hashReader(lb.hashOn) : undefined;
    this.endpointCapacity =
      cfg.pool.connections * (cfg.protocol === 'http1' ? cfg.pool.pipelining : cfg.pool.maxConcurrentStreams);
    const cb = cfg.circuitBreaker;
    this.admission = new Admission({
      maxRequests: cb.maxRequests,
      maxPending: cb.maxPending,
      maxRetries: cb.maxRetries,
    });
    this.circuit = cb.errorRate ? new CircuitBreaker(cfg.name, cb.errorRate) : undefined;
    this.budget = new RetryBudget(cfg.name, cfg.retryBudget);
    const endpoints = (cfg.endpoints ?? []).map((e) => {
      const raw = typeof e === 'string' ? e : e.url;
      const url = new URL(raw);
      return source.endpoint(
        url.origin,
        url.host,
        cfg,
        typeof e === 'string' ? { weight: 1, zone: '', priority: 0 } : e,
      );
    });
    this.#set = this.#newSet(endpoints);
  }

  get endpoints(): readonly Endpoint[] {
    return this.#set.all;
  }

  get eligible(): readonly Endpoint[] {
    return this.#set.eligible;
  }

  get panic(): boolean {
    return this.#set.panic;
  }

  get lastDnsError(): string | undefined {
    return this.#lastDnsError;
  }

  healthOf(ep: Endpoint): ReturnType<HealthChecker['status']> {
    return this.#health?.status(ep);
  }

  outlierOf(ep: Endpoint): ReturnType<OutlierDetector['state']> {
    return this.#outlier?.state(ep);
  }

  /** An endpoint for one attempt; `avoid` is the one the previous attempt failed on. */
  pick(hash: number, avoid: Endpoint | undefined): Endpoint | undefined {
    // A request that began before a reload can retry (or, after a slow body, first go out) once the pools of the
    // endpoints that changed are closed: it picks among the endpoints of the service that replaced this one.
    if (this.#successor !== undefined) return this.#successor.pick(hash, avoid);
    return this.#set.pick(hash, avoid);
  }

  /** One finished attempt: feeds outlier detection (latency goes through `observe`). */
  recordAttempt(ep: Endpoint, outcome: Outcome): void {
    this.#outlier?.record(ep, outcome);
  }

  /**
   * Response headers (or a failure) arrived `latencyMs` after the attempt was sent. A failure never makes an
   * endpoint look faster than it was (a refused connect takes microseconds), so a dead endpoint cannot become a
   * black hole; nor does it get an artificial penalty that would starve it of the traffic through which outlier
   * detection sees it fail and ejects it, visibly and with backoff.
   */
  observe(ep: Endpoint, latencyMs: number, now: number, failed: boolean): void {
    if (!failed) observeLatency(ep, latencyMs, now);
    // An endpoint without an estimate stays unmeasured (costed like its peer) rather than learn a fast failure.
    else if (ep.ewma > 0) observeLatency(ep, Math.max(latencyMs, ep.ewma), now);
  }

  /**
   * Starts health checks and DNS discovery. Waits (boundedly) for the first DNS answer, so that a service the
   * config just added does not answer 503 for its first requests.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const dns = this.config.dns;
    if (dns) {
      this.#dns = new DnsDiscovery(
        {
          target: {
            hostname: dns.name,
            port: dns.port,
            family: dns.family === 'ipv4' ? 4 : dns.family === 'ipv6' ? 6 : 'any',
          },
          minRefresh: dns.minRefresh,
          maxRefresh: dns.maxRefresh,
          failureRefresh: Math.min(5_000, dns.maxRefresh),
          servers: dns.servers,
        },
        (addrs) => this.#setAddresses(addrs),
        (err) => {
          this.#lastDnsError = err.message;
        },
      );
      this.#lastDnsError = undefined;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#dns.start().then(
          (addrs) => this.#setAddresses(addrs),
          (err: Error) => {
            this.#lastDnsError = err.message;
          },
        ),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, FIRST_RESOLVE_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    if (this.#stopped) return;
    this.#startHealth();
  }

  /** Stops health checks and discovery; `successor`, the service replacing this one, gets its late picks. */
  stop(successor?: UpstreamService): void {
    this.#stopped = true;
    this.#successor = successor;
    this.#dns?.stop();
    this.#health?.stop();
    this.#outlier?.close();
    this.#set.close();
  }

  #newSet(endpoints: readonly Endpoint[]): EndpointSet {
    const cfg = this.config;
    const set = new EndpointSet(endpoints, this.#balancer, {
      localZone: this.#zone,
      panicThreshold: cfg.loadBalancer.panicThreshold,
      overprovisioning: 1.4,
    });
    const od = cfg.outlierDetection;
    const prev = this.#outlier;
    this.#outlier = od.enabled ? new OutlierDetector(cfg.name, endpoints, outlierOptions(od)) : undefined;
    if (prev !== undefined) {
      // Endpoints that stayed keep their counters and ejection multiplier.
      this.#outlier?.adopt(prev);
      prev.close();
    }
    return set;
  }

  #startHealth(): void {
    const hc = this.config.healthCheck;
    this.#health?.stop();
    this.#health = undefined;
    if (!hc || this.#set.all.length === 0) return;
    this.#health = new HealthChecker(this.#set.all, healthOptions(hc, this.config), this.name);
    this.#health.start();
  }

  /** DNS answered with a different set: endpoints that stayed keep their objects, pools and state. */
  #setAddresses(addrs: readonly ResolvedAddress[]): void {
    if (this.#stopped) return;
    const dns = this.config.dns!;
    // SRV priorities become priority groups by rank (the lowest SRV priority is group 0).
    const ranks = [...new Set(addrs.map((a) => a.priority ?? 0))].sort((x, y) => x - y);
    const endpoints = addrs.map((a) => {
      const host = a.family === 6 ? `[${a.address}]` : a.address;
      return this.#source.endpoint(
        `http://${host}:${a.port}`,
        // SRV: the target's name, as the instance knows itself; A/AAAA: the configured name.
        `${a.target ?? dns.name}:${a.port}`,
        this.config,
        {
          zone: dns.zone,
          priority: Math.min(9, ranks.indexOf(a.priority ?? 0)),
          // SRV weight 0 means "rarely": a small share, never none.
          weight: a.weight === undefined ? 1 : Math.max(1, a.weight),
        },
      );
    });
    this.#set.close();
    this.#set = this.#newSet(endpoints);
    if (this.#started) this.#startHealth();
    this.#source.collect();
  }
}

function outlierOptions(od: ServiceConfig['outlierDetection']): OutlierOptions {
  return {
    consecutive5xx: od.consecutive5xx,
    consecutiveGatewayFailure: od.consecutiveGatewayFailure,
    successRate: od.successRate,
    interval: od.interval,
    baseEjectionTime: od.baseEjectionTime,
    maxEjectionTime: od.maxEjectionTime,
    maxEjectionPercent: od.maxEjectionPercent,
  };
}

function healthOptions(
  hc: NonNullable<ServiceConfig['healthCheck']>,
  cfg: ServiceConfig,
): HealthCheckOptions {
  const common = {
    interval: hc.interval,
    jitter: hc.jitter,
    timeout: hc.timeout,
    healthyThreshold: hc.healthyThreshold,
    unhealthyThreshold: hc.unhealthyThreshold,
    // Checks reach a TLS service as its requests do: its CA bundle, client certificate and SNI name.
    tls: cfg.tls === undefined ? undefined : healthTls(cfg.tls),
  };
  if (hc.type === 'tcp') return { ...common, type: 'tcp' };
  if (hc.type === 'grpc') return { ...common, type: 'grpc', service: hc.grpcService };
  return {
    ...common,
    type: 'http',
    path: hc.path,
    method: hc.method,
    expectedStatuses: hc.expectedStatuses.map((s): [number, number] => {
      if (typeof s === 'number') return [s, s];
      const [lo, hi] = s.split('-').map(Number) as [number, number];
      return [lo, hi];
    }),
    bodyContains: hc.bodyContains,
    host: hc.host,
  };
}

/** Compiles `hashOn` into one reader; a request without the key gets a random hash (no stickiness). */
function hashReader(on: NonNullable<ServiceConfig['loadBalancer']['hashOn']>): (src: HashSource) => number {
  const random = () => (Math.random() * 0x1_0000_0000) >>> 0;
  if (on.header !== undefined) {
    const name = on.header.toLowerCase();
    return (src) => {
      const v = src.headers[name];
      if (v === undefined) return random();
      return hashString(typeof v === 'string' ? v : v.join(','));
    };
  }
  if (on.cookie !== undefined) {
    const prefix = `${on.cookie}=`;
    return (src) => {
      const header = src.headers.cookie;
      const v = typeof header === 'string' ? cookieValue(header, prefix) : undefined;
      return v === undefined ? random() : hashString(v);
    };
  }
  if (on.query !== undefined) {
    const name = on.query;
    return (src) => {
      if (src.query === '') return random();
      const v = new URLSearchParams(src.query).get(name);
      return v === null ? random() : hashString(v);
    };
  }
  return (src) => hashString(src.clientAddress());
}

function cookieValue(header: string, prefix: string): string | undefined {
  for (const part of header.split(';')) {
    const p = part.trim();
    if (p.startsWith(prefix)) return p.slice(prefix.length);
  }
  return undefined;
}

function healthTls(tls: NonNullable<ServiceConfig['tls']>): HealthCheckOptions['tls'] {
  try {
    return { context: upstreamSecureContext(tls), servername: tls.sni };
  } catch {
    // Unreadable files fail the requests with a clear error already; checks then use the system defaults.
    return undefined;
  }
}
