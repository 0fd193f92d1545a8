import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import { PerformanceObserver, constants as perfConstants, performance } from 'node:perf_hooks';
import { type Aggregator, AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { apiVersionTotals } from '../api/metrics.js';
import type { Snapshot } from '../compile/snapshot.js';
import { type MetricsConfig, metricsSchema } from '../config/schema.js';
import type { Outcome } from '../core/outcome.js';
import type { Exchange } from '../proxy/exchange.js';
import { graphqlOperationTotals } from '../stages/graphql/metrics.js';
import type { PolicyDecision } from '../stages/policy.js';
import { storeErrorTotals } from '../stages/rate-limit/events.js';
import type { CircuitEvent, HealthEvent, OutlierEvent } from '../upstream/events.js';
import type { UpstreamService } from '../upstream/service.js';

/**
 * Prometheus metrics of one gateway process. Names follow OpenTelemetry's HTTP semantic conventions mapped to
 * Prometheus (`http.server.request.duration` → `http_server_request_duration_seconds`); Trellis's own metrics
 * start with `trellis_`. Every label value comes from a bounded set: config names (listener, route, service,
 * endpoint authority), HTTP method (unknown ones are `_OTHER`), status class, error code, outcome. Never a path,
 * a host header or anything else a client chooses.
 *
 * The per-request calls (`requestEnd`, `attemptEnd`, the active gauges) do not go through prom-client's
 * label hashing: each label combination resolves once, through nested Maps, to a small series object whose
 * numbers are incremented in place. prom-client renders them at scrape time (histograms through a subclass
 * whose `get()` reads those series, counters and gauges by `collect()` hooks), and does the registry, the text
 * exposition, process metrics and cluster aggregation.
 */

/** What the metrics read at scrape time: the snapshot serving traffic, for the upstream state gauges. */
export interface MetricsHost {
  snapshot(): Snapshot | undefined;
  /** Span counters of the tracer, when tracing is on. */
  spans?(): { exported: number; dropped: number; queued: number } | undefined;
  /** Access log lines lost so far. */
  accessLogDropped?(): number;
}

/** The Prometheus text exposition format, version 0.0.4. */
/** Counted by the process that reads the config file (the cluster primary, or the one process). */
export const CONFIG_REJECTED = {
  name: 'trellis_config_rejected_total',
  help: 'Config reloads refused by validation; the running config kept serving. The error is in the gateway log and /status.',
} as const;

/** The config-reading process's own metrics, appended to the workers' exposition. */
export function supervisorMetricsText(rejected: number): string {
  return `# HELP ${CONFIG_REJECTED.name} ${CONFIG_REJECTED.help}\n# TYPE ${CONFIG_REJECTED.name} counter\n${CONFIG_REJECTED.name} ${rejected}\n`;
}

let processMetrics: Registry | undefined;

// prom-client's default collectors, one by one, so that its GC observer can be left out: a PerformanceObserver
// on 'gc' makes Node build an entry and call into JavaScript after every collection, which cost about 6% of the
// gateway's CPU under load here (docs/benchmarks.md, "Issue 7"). `metrics.gc` turns our own, stoppable one on.
const requireCjs = createRequire(import.meta.url);
const DEFAULT_COLLECTORS = [
  'processCpuTotal',
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
];
type Collector = (registry: Registry, config: Record<string, unknown>) => void;

/** The process-wide registry of prom-client's default process and Node.js metrics (GC left out), created once. */
function processRegistry(): Registry {
  if (processMetrics === undefined) {
    processMetrics = new Registry();
    const names =
      typeof process.getActiveResourcesInfo === 'function'
        ? [...DEFAULT_COLLECTORS, 'processResources']
        : DEFAULT_COLLECTORS;
    for (const n of names) {
      const collect = requireCjs(`prom-client/lib/metrics/${n}`) as Collector;
      collect(processMetrics, { eventLoopMonitoringPrecision: 10 });
    }
  }
  return processMetrics;
}

const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/**
 * `nodejs_gc_duration_seconds{kind}` (prom-client's name and buckets), observed only while some gateway in this
 * process has `metrics.gc` on: the observer is disconnected when the last one closes.
 */
const gcMetrics = {
  registry: undefined as Registry | undefined,
  users: 0,
  observer: undefined as PerformanceObserver | undefined,
  acquire(): Registry {
    if (this.registry === undefined) {
      this.registry = new Registry();
      const h = new Histogram({
        name: 'nodejs_gc_duration_seconds',
        help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
        labelNames: ['kind'],
        buckets: [0.001, 0.01, 0.1, 1, 2, 5],
        registers: [this.registry],
      });
      const children = Object.fromEntries(Object.entries(GC_KINDS).map(([k, v]) => [k, h.labels(v)]));
      this.observer = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          const kind = (e as { detail?: { kind?: number } }).detail?.kind;
          if (kind !== undefined) children[kind]?.observe(e.duration / 1000);
        }
      });
    }
    if (this.users++ === 0) this.observer!.observe({ entryTypes: ['gc'] });
    return this.registry;
  },
  release(): void {
    if (this.users > 0 && --this.users === 0) this.observer!.disconnect();
  },
};

export const METRICS_CONTENT_TYPE: string = Registry.PROMETHEUS_CONTENT_TYPE;

/** Label value for "no route matched", "no service was picked", "no error". */
const NONE = 'none';

/** OpenTelemetry's known HTTP methods; any other becomes `_OTHER` (an unbounded set otherwise). */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', '_OTHER'];

function methodIndex(m: string): number {
  switch (m) {
    case 'GET':
      return 0;
    case 'HEAD':
      return 1;
    case 'POST':
      return 2;
    case 'PUT':
      return 3;
    case 'DELETE':
      return 4;
    case 'CONNECT':
      return 5;
    case 'OPTIONS':
      return 6;
    case 'TRACE':
      return 7;
    case 'PATCH':
      return 8;
    default:
      return 9;
  }
}

/** Index 0 is `none`: no status was sent (the client went away first), or none that is valid. */
const STATUS_CLASSES = [NONE, '1xx', '2xx', '3xx', '4xx', '5xx'];

function statusClassIndex(status: number): number {
  return status >= 100 && status < 600 ? (status / 100) | 0 : 0;
}

const OUTCOMES: readonly Outcome[] = [
  'success',
  'http_5xx',
  'connect_refused',
  'connect_timeout',
  'connect_failed',
  'reset',
  'timeout',
  'protocol_error',
  'refused_stream',
  'grpc_error',
  'client_abort',
  'local_reply',
];

const TIMEOUT_KINDS = ['connect', 'per_try', 'route', 'idle'] as const;

/** The timeout a request's final error code names: an index into TIMEOUT_KINDS, or -1. */
function timeoutKind(code: string | undefined): number {
  switch (code) {
    case 'upstream_connect_timeout':
      return 0;
    case 'upstream_per_try_timeout':
      return 1;
    case 'upstream_timeout':
      return 2;
    case 'upstream_idle_timeout':
      return 3;
    default:
      return -1;
  }
}

const CIRCUIT_STATES = ['closed', 'open', 'half_open'] as const;

/** Small stable integers for a growing set of strings (error codes, outcomes), for composite numeric keys. */
class Indexer {
  readonly #ids = new Map<string, number>();
  readonly names: string[] = [];
  constructor(initial: readonly string[]) {
    for (const n of initial) this.of(n);
  }
  of(name: string): number {
    let id = this.#ids.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.#ids.set(name, id);
      this.names.push(name);
    }
    return id;
  }
}

type Labels = Record<string, string>;

// ---- counters: incremented in place, synced into prom-client when scraped ----

class CounterCell {
  readonly labels: Labels;
  value = 0;
  synced = 0;
  constructor(labels: Labels) {
    this.labels = labels;
  }
}

/** A prom-client Counter whose series are plain numbers the caller increments; `collect()` adds the deltas. */
class CellCounter {
  readonly #cells: CounterCell[] = [];
  readonly #metric: Counter<string>;

  constructor(registry: Registry, name: string, help: string, labelNames: string[]) {
    const cells = this.#cells;
    this.#metric = new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        for (const c of cells) {
          const d = c.value - c.synced;
          if (d > 0) {
            this.inc(c.labels, d);
            c.synced = c.value;
          }
        }
      },
    });
  }

  /** A new series (call once per label combination and keep it). Exported at 0 from now on. */
  cell(labels: Labels): CounterCell {
    const c = new CounterCell(labels);
    this.#cells.push(c);
    this.#metric.inc(labels, 0);
    return c;
  }
}

// ---- histograms: prom-client's Histogram, read from series that the request path updates in place ----

class HistSeries {
  readonly labels: Labels;
  readonly #bounds: readonly number[];
  /** Observations per bucket (not cumulative); the last slot is above the highest bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(labels: Labels, bounds: readonly number[]) {
    this.labels = labels;
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(seconds: number): void {
    const b = this.#bounds;
    const n = b.length;
    let i = 0;
    while (i < n && seconds > b[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

type HistogramData = Awaited<ReturnType<Histogram<string>['get']>>;

/**
 * A prom-client Histogram (so the registry, the exposition and the cluster aggregation treat it as one) whose
 * values live in {@link HistSeries} objects: an observation is a bucket search and three increments, where
 * prom-client's own `observe` builds and hashes a label key each time. Only `series()` records; the inherited
 * `observe`/`labels` are unused.
 */
class SeriesHistogram extends Histogram<string> {
  readonly bounds: readonly number[];
  /** Declared without an initializer: the base constructor calls reset() before subclass fields exist. */
  declare list: HistSeries[] | undefined;

  constructor(registry: Registry, name: string, help: string, labelNames: string[], buckets: number[]) {
    const bounds = [...new Set(buckets)].sort((a, b) => a - b);
    super({ name, help, labelNames, buckets: bounds, registers: [registry] });
    this.bounds = bounds;
    this.list = [];
  }

  series(labels: Labels): HistSeries {
    const s = new HistSeries(labels, this.bounds);
    this.list!.push(s);
    return s;
  }

  override async get(): Promise<HistogramData> {
    const { name, help, type, aggregator } = this as unknown as { [k: string]: string };
    const values: HistogramData['values'] = [];
    const bucket = `${name}_bucket`;
    for (const s of this.list ?? []) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i]!;
        values.push({ labels: { ...s.labels, le: this.bounds[i]! }, value: acc, metricName: bucket });
      }
      values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: bucket });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${name}_count` });
    }
    return { name, help, type, aggregator, values } as unknown as HistogramData;
  }

  /** The registry's text renderer prefers this to get(); the base version reads prom-client's own storage. */
  getForPromString(): Promise<HistogramData> {
    return this.get();
  }

  override reset(): void {
    super.reset();
    for (const s of this.list ?? []) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

/** A plain number per label combination, exported by a Gauge's collect(). */
class GaugeCell {
  readonly labels: Labels;
  value = 0;
  constructor(labels: Labels) {
    this.labels = labels;
  }
}

/** Series of one route on one listener. */
interface RouteNode {
  readonly bytesIn: CounterCell;
  readonly bytesOut: CounterCell;
  /** service name → (method | status class << 4 | error << 7) → series */
  readonly byService: Map<string, Map<number, HistSeries>>;
}

/** Per-service counters of requestEnd and attemptEnd. */
interface ServiceCells {
  readonly retries: CounterCell;
  readonly budgetExhausted: CounterCell;
  readonly timeouts: readonly CounterCell[];
}

/** How the primary combines the workers' values of a metric; metrics not listed use their own (prom-client: sum). */
const AGGREGATION: Readonly<Record<string, Aggregator>> = {
  trellis_config_version: 'max',
  // prom-client omits it; the oldest worker's start is the one a dashboard wants.
  process_start_time_seconds: 'min',
};

export class GatewayMetrics {
  registry: Registry;
  /** This instance holds the GC observer (`metrics.gc`). */
  #gc = false;
  readonly #host: MetricsHost;
  readonly #unsubscribe: Array<() => void> = [];

  readonly #serverDuration: SeriesHistogram;
  readonly #clientDuration: SeriesHistogram;
  readonly #bytesIn: CellCounter;
  readonly #bytesOut: CellCounter;
  readonly #retries: CellCounter;
  readonly #timeouts: CellCounter;
  readonly #budgetExhausted: CellCounter;
  readonly #policyDecisions: CellCounter;
  /** Decision marks (made per route and policy at compile time) → their series; one Map lookup per new mark. */
  readonly #decisionCells = new WeakMap<PolicyDecision, CounterCell>();
  readonly #decisionSeries = new Map<string, CounterCell>();
  readonly #ejections: Counter<string>;
  readonly #circuitTransitions: Counter<string>;
  readonly #healthTransitions: Counter<string>;
  readonly #configVersion: Gauge<string>;
  readonly #reloads: Counter<string>;

  readonly #errors = new Indexer([NONE]);
  readonly #outcomes = new Indexer(OUTCOMES);
  /** listener → route → node */
  readonly #routes = new Map<string, Map<string, RouteNode>>();
  /** route → byte counters, shared by the route's nodes on several listeners */
  readonly #routeBytes = new Map<string, [CounterCell, CounterCell]>();
  readonly #services = new Map<string, ServiceCells>();
  /** service → server address → (outcome << 3 | status class) → series */
  readonly #attempts = new Map<string, Map<string, Map<number, HistSeries>>>();
  readonly #activeRequests = new Map<string, GaugeCell>();
  /** listener → protocol → open connections */
  readonly #connections = new Map<string, Map<string, GaugeCell>>();

  constructor(cfg: MetricsConfig, host: MetricsHost) {
    this.#host = host;
    const reg = new Registry();
    this.registry = reg;
    const buckets = cfg.durationBuckets;

    // ---- requests ----
    this.#serverDuration = new SeriesHistogram(
      reg,
      'http_server_request_duration_seconds',
      'Time from the arrival of a request to the end of its response, in seconds. rate(_count) is requests per second; histogram_quantile() over rate(_bucket) gives latency percentiles; a status class of `none` means the client left before a status was sent. error_type is the Trellis error code (docs/errors.md) of a request Trellis answered itself or cut short, `none` otherwise (an upstream 5xx passed through is `none`, with status class 5xx).',
      [
        'http_request_method',
        'http_response_status_class',
        'trellis_listener',
        'trellis_route',
        'trellis_service',
        'error_type',
      ],
      buckets,
    );
    const active = this.#activeRequests;
    new Gauge({
      name: 'http_server_active_requests',
      help: 'Requests received whose response has not ended yet, by protocol (http1, h2, or grpc for gRPC over HTTP/2; gRPC-Web counts as the HTTP version it came on). A level that keeps rising means requests hang: check upstream latency and timeouts.',
      labelNames: ['protocol'],
      registers: [reg],
      collect() {
        for (const c of active.values()) this.set(c.labels, c.value);
      },
    });
    const connections = this.#connections;
    new Gauge({
      name: 'trellis_active_connections',
      help: 'Client connections open on each listener. Compare with the listener limits, and with http_server_active_requests to see idle keep-alive connections.',
      labelNames: ['trellis_listener', 'protocol'],
      registers: [reg],
      collect() {
        for (const byProto of connections.values())
          for (const c of byProto.values()) this.set(c.labels, c.value);
      },
    });
    this.#bytesIn = new CellCounter(
      reg,
      'trellis_request_body_bytes_total',
      'Request body bytes sent upstream, by route: rate() is the upload throughput a route carries.',
      ['trellis_route'],
    );
    this.#bytesOut = new CellCounter(
      reg,
      'trellis_response_body_bytes_total',
      "Response body bytes relayed from upstreams to clients, by route: rate() is the download throughput a route carries. Trellis's own replies (errors, redirects, direct responses) are not counted.",
      ['trellis_route'],
    );

    // ---- upstream attempts ----
    this.#clientDuration = new SeriesHistogram(
      reg,
      'http_client_request_duration_seconds',
      'Time of each upstream attempt (every retry is an attempt of its own) until it ended, in seconds. trellis_outcome says how it ended (success, http_5xx, connect_refused, connect_timeout, connect_failed, reset, timeout, protocol_error, refused_stream, grpc_error, client_abort): the share of outcomes other than success per server_address shows which endpoint fails and how.',
      ['trellis_service', 'server_address', 'trellis_outcome', 'http_response_status_class'],
      buckets,
    );
    this.#retries = new CellCounter(
      reg,
      'trellis_upstream_retries_total',
      'Retries sent to a service (attempts after the first of a request). Against the request rate it shows how much failure retries are hiding.',
      ['trellis_service'],
    );
    this.#timeouts = new CellCounter(
      reg,
      'trellis_upstream_timeouts_total',
      'Requests that failed because a timeout fired, by kind: connect (connectTimeout), per_try (retries.perTryTimeout, no retry left), route (timeouts.request, retries included) or idle (timeouts.upstreamIdle; the response was cut short). Attempts that timed out and were recovered by a retry are not counted here: see http_client_request_duration_seconds{trellis_outcome=~"timeout|connect_timeout"}.',
      ['trellis_service', 'kind'],
    );
    this.#budgetExhausted = new CellCounter(
      reg,
      'trellis_retry_budget_exhausted_total',
      "Requests whose failed attempt was not retried because the service's retry budget was spent: these failures reached clients. Rising means the service fails broadly, not now and then.",
      ['trellis_service'],
    );

    // ---- policies ----
    this.#policyDecisions = new CellCounter(
      reg,
      'trellis_policy_decisions_total',
      'Decisions of the policies attached to a route (docs/policies.md), by policy name and type: allow (the request went on), deny (the policy answered it: 401, 403, 429, ...), shadow_deny (a policy in shadow mode would have refused it, and let it through), error (the policy failed: its backend unreachable or overloaded, or it threw). A request counts once per policy that ran.',
      ['trellis_route', 'trellis_policy', 'trellis_policy_type', 'decision'],
    );

    // ---- upstream state changes (diagnostics_channel) ----
    this.#ejections = new Counter({
      name: 'trellis_outlier_ejections_total',
      help: 'Endpoints ejected from load balancing by outlier detection, by reason (consecutive_5xx, consecutive_gateway_failure, success_rate): which endpoint misbehaves, and how.',
      labelNames: ['trellis_service', 'server_address', 'reason'],
      registers: [reg],
    });
    this.#circuitTransitions = new Counter({
      name: 'trellis_circuit_transitions_total',
      help: 'State changes of the error-rate circuit breaker of a service, by the state entered (open, half_open, closed). An increase of to="open" is a time when the service failed so often that Trellis stopped sending it requests.',
      labelNames: ['trellis_service', 'to'],
      registers: [reg],
    });
    this.#healthTransitions = new Counter({
      name: 'trellis_health_check_transitions_total',
      help: 'Changes of the active health check verdict of an endpoint: healthy="false" when it started failing its checks, healthy="true" when it passed them again. Frequent changes mean a flapping endpoint or thresholds that are too tight.',
      labelNames: ['trellis_service', 'server_address', 'healthy'],
      registers: [reg],
    });

    // ---- upstream state, read from the live snapshot when scraped ----
    const snapshotGauge = (
      name: string,
      help: string,
      labelNames: string[],
      fill: (g: Gauge<string>, snap: Snapshot, now: number) => void,
    ) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: [reg],
        collect() {
          this.reset();
          const snap = host.snapshot();
          if (snap !== undefined) fill(this, snap, performance.now());
        },
      });
    const perService = (name: string, help: string, value: (s: UpstreamService) => number) =>
      snapshotGauge(name, help, ['trellis_service'], (g, snap) => {
        for (const svc of snap.services.values()) g.set({ trellis_service: svc.name }, value(svc));
      });
    snapshotGauge(
      'trellis_endpoint_healthy',
      'Per worker, 1 when the endpoint passes its active health checks (or has none), 0 when it fails them and gets no traffic. Endpoints discovered through DNS share the server_address of their name and add up; a cluster scrape adds up the workers (divide by trellis_workers).',
      ['trellis_service', 'server_address'],
      (g, snap) => {
        for (const svc of snap.services.values())
          for (const ep of svc.endpoints)
            g.inc({ trellis_service: svc.name, server_address: ep.authority }, ep.healthy ? 1 : 0);
      },
    );
    snapshotGauge(
      'trellis_endpoint_ejected',
      'Per worker, 1 while outlier detection keeps the endpoint out of load balancing, else 0 (DNS endpoints and workers add up as for trellis_endpoint_healthy).',
      ['trellis_service', 'server_address'],
      (g, snap, now) => {
        for (const svc of snap.services.values())
          for (const ep of svc.endpoints)
            g.inc({ trellis_service: svc.name, server_address: ep.authority }, ep.ejectedUntil > now ? 1 : 0);
      },
    );
    snapshotGauge(
      'trellis_circuit_state',
      'Per worker, 1 for the current state of the error-rate circuit breaker of a service (closed, open, half_open) and 0 for the others; only services with circuitBreaker.errorRate. state="open" at 1: requests to the service fail fast with 503 circuit_open.',
      ['trellis_service', 'state'],
      (g, snap) => {
        for (const svc of snap.services.values()) {
          const c = svc.circuit;
          if (c === undefined) continue;
          const now = c.state;
          for (const state of CIRCUIT_STATES)
            g.set({ trellis_service: svc.name, state }, state === now ? 1 : 0);
        }
      },
    );
    perService(
      'trellis_service_active_requests',
      'Requests in flight to a service (a request and its retries count once), against circuitBreaker.maxRequests: at the limit, more requests are refused with 503 overloaded.',
      (s) => s.admission.active,
    );
    perService(
      'trellis_service_pending_requests',
      'Attempts waiting for a connection to an endpoint of the service, against circuitBreaker.maxPending. A queue that persists means too few connections (pool.connections) or a service too slow for the load.',
      (s) => s.admission.pending,
    );
    perService(
      'trellis_service_active_retries',
      'Retries in flight to a service, against circuitBreaker.maxRetries.',
      (s) => s.admission.retries,
    );
    perService(
      'trellis_service_eligible_endpoints',
      'Endpoints the balancer picks from now: healthy and not ejected, in the priority groups and zones in use (all of them in panic). 0 only when the service has no endpoint at all, and its requests fail with 503 no_healthy_upstream.',
      (s) => s.eligible.length,
    );
    perService(
      'trellis_service_panic',
      'Per worker, 1 when so few endpoints of the service are available (below loadBalancer.panicThreshold) that the balancer ignores health and ejection and spreads requests over all of them.',
      (s) => (s.panic ? 1 : 0),
    );
    perService(
      'trellis_retry_budget_balance',
      "Retries the service's retry budget allows right now. At 0, failed attempts are no longer retried (trellis_retry_budget_exhausted_total).",
      (s) => s.budget.balance,
    );

    // ---- config ----
    this.#configVersion = new Gauge({
      name: 'trellis_config_version',
      help: 'Version number of the configuration serving traffic; it increases with every config applied. In a cluster scrape, the highest version among the workers.',
      registers: [reg],
      aggregator: AGGREGATION.trellis_config_version!,
    });
    this.#reloads = new Counter({
      name: 'trellis_config_reloads_total',
      help: 'Configurations applied, the first one included, by result. result="failure": a new configuration was rejected and the previous one kept serving; alert on any increase. A cluster scrape adds up the workers, each of which applies every configuration.',
      labelNames: ['result'],
      registers: [reg],
    });
    this.#reloads.inc({ result: 'success' }, 0);
    this.#reloads.inc({ result: 'failure' }, 0);
    const spans = (key: 'exported' | 'dropped') => host.spans?.()?.[key] ?? 0;
    new Counter({
      name: 'trellis_spans_exported_total',
      help: 'Spans the tracer handed to the OTLP collector (accepted by it). 0 while tracing is off.',
      registers: [reg],
      collect() {
        this.reset();
        this.inc(spans('exported'));
      },
    });
    new Counter({
      name: 'trellis_spans_dropped_total',
      help: 'Spans lost: the export queue was full (a slow or absent collector), or an export failed after its retries. Requests are never slowed instead; alert on a steady increase.',
      registers: [reg],
      collect() {
        this.reset();
        this.inc(spans('dropped'));
      },
    });
    new Counter({
      name: 'trellis_access_log_dropped_total',
      help: 'Access log lines lost: the destination was too slow (more than 512 KiB waiting) or a write failed. Requests are never slowed instead; alert on any increase.',
      registers: [reg],
      collect() {
        this.reset();
        this.inc(host.accessLogDropped?.() ?? 0);
      },
    });
    new Counter({
      name: 'trellis_rate_limit_store_errors_total',
      help: 'Rate-limit and quota checks that their store (Redis) did not answer in time, by policy: each was let through uncounted (onStoreError: allow) or refused with 503 rate_limit_unavailable (deny). Alert on any steady increase (docs/rate-limits.md).',
      labelNames: ['trellis_policy'],
      registers: [reg],
      collect() {
        this.reset();
        for (const [policy, n] of storeErrorTotals) this.inc({ trellis_policy: policy }, n);
      },
    });
    new Counter({
      name: 'trellis_graphql_operations_total',
      help: 'GraphQL operations seen by `graphql` policies (docs/graphql.md), by route, policy, operation, operation type (query, mutation, subscription; unknown when not parsed) and result (allowed, or the error code of the refusal such as graphql_cost_exceeded). graphql_operation is a name the policy knows (its allow-list, metricOperations) or other, anonymous, unknown: clients cannot add series.',
      labelNames: [
        'trellis_route',
        'trellis_policy',
        'graphql_operation',
        'graphql_operation_type',
        'result',
      ],
      registers: [reg],
      collect() {
        this.reset();
        for (const c of graphqlOperationTotals.values()) this.inc(c.labels, c.value);
      },
    });
    new Counter({
      name: 'trellis_api_requests_total',
      help: "Requests to routes of a versioned API (docs/api-versions.md), by API, the version selected (its name from `apis[].versions`, never what the client sent) and that version's status (active, deprecated, retired): who still calls a deprecated version, and how much. Counted when the version is selected, so a retired version's 410s count too.",
      labelNames: ['trellis_api', 'trellis_api_version', 'api_version_status'],
      registers: [reg],
      collect() {
        this.reset();
        for (const c of apiVersionTotals.values()) if (c.value > 0) this.inc(c.labels, c.value);
      },
    });
    new Gauge({
      name: 'trellis_workers',
      help: 'Worker processes in this scrape: 1 per process, so a cluster scrape counts the workers that answered. Divide per-worker state gauges (trellis_endpoint_healthy, ...) by it.',
      registers: [reg],
      collect() {
        this.set(1);
      },
    });

    // Process metrics come from one registry per process: prom-client's collectors (the event loop monitor)
    // cannot be stopped, so a gateway rebuilt by a reload must not add another set.
    const merged = [reg];
    if (cfg.process) merged.push(processRegistry());
    if (cfg.gc) {
      merged.push(gcMetrics.acquire());
      this.#gc = true;
    }
    if (merged.length > 1) this.registry = Registry.merge(merged);

    this.#listen('trellis:outlier', (m) => {
      const e = m as OutlierEvent;
      if (e.event !== 'eject') return;
      this.#ejections.inc({
        trellis_service: e.service,
        server_address: this.#address(e.service, e.endpoint),
        reason: e.reason ?? 'unknown',
      });
    });
    this.#listen('trellis:circuit', (m) => {
      const e = m as CircuitEvent;
      this.#circuitTransitions.inc({ trellis_service: e.service, to: e.to });
    });
    this.#listen('trellis:health', (m) => {
      const e = m as HealthEvent;
      this.#healthTransitions.inc({
        trellis_service: e.service,
        server_address: this.#address(e.service, e.endpoint),
        healthy: e.healthy ? 'true' : 'false',
      });
    });
  }

  #listen(name: string, fn: (m: unknown) => void): void {
    subscribe(name, fn);
    this.#unsubscribe.push(() => unsubscribe(name, fn));
  }

  /** Events name an endpoint by origin (`http://10.0.0.5:8080`); the label is its authority, as elsewhere. */
  #address(service: string, origin: string): string {
    const svc = this.#host.snapshot()?.services.get(service);
    if (svc !== undefined) for (const ep of svc.endpoints) if (ep.origin === origin) return ep.authority;
    const i = origin.indexOf('://');
    return i === -1 ? origin : origin.slice(i + 3);
  }

  requestEnd(ex: Exchange, durationMs: number): void {
    const res = ex.res;
    const status = res.headersSent ? res.statusCode : ex.status;
    const code = ex.errorCode;
    const service = ex.service?.name ?? NONE;
    const node = this.#routeNode(ex.listener.name, ex.route?.name ?? NONE);
    let byKey = node.byService.get(service);
    if (byKey === undefined) {
      byKey = new Map();
      node.byService.set(service, byKey);
    }
    const mi = methodIndex(ex.method);
    const ci = statusClassIndex(status);
    const ei = code === undefined ? 0 : this.#errors.of(code);
    const key = mi | (ci << 4) | (ei << 7);
    let s = byKey.get(key);
    if (s === undefined) {
      s = this.#serverDuration.series({
        http_request_method: METHODS[mi]!,
        http_response_status_class: STATUS_CLASSES[ci]!,
        trellis_listener: ex.listener.name,
        trellis_route: ex.route?.name ?? NONE,
        trellis_service: service,
        error_type: this.#errors.names[ei]!,
      });
      byKey.set(key, s);
    }
    s.observe(durationMs >= 0 ? durationMs / 1000 : 0);
    node.bytesIn.value += ex.bytesIn;
    node.bytesOut.value += ex.bytesOut;
    const decisions = ex.decisions;
    if (decisions !== undefined)
      for (let i = 0; i < decisions.length; i++) this.#decisionCell(decisions[i]!).value++;
    if (service === NONE) return;
    const kind = timeoutKind(code);
    if (kind === -1 && !ex.retryBudgetExhausted) return;
    const sc = this.#serviceCells(service);
    if (kind !== -1) sc.timeouts[kind]!.value++;
    if (ex.retryBudgetExhausted) sc.budgetExhausted.value++;
  }

  attemptEnd(
    service: string,
    endpoint: string,
    outcome: Outcome,
    status: number,
    durationMs: number,
    isRetry: boolean,
  ): void {
    let byAddress = this.#attempts.get(service);
    if (byAddress === undefined) {
      byAddress = new Map();
      this.#attempts.set(service, byAddress);
    }
    let byKey = byAddress.get(endpoint);
    if (byKey === undefined) {
      byKey = new Map();
      byAddress.set(endpoint, byKey);
    }
    const oi = this.#outcomes.of(outcome);
    const ci = statusClassIndex(status);
    const key = (oi << 3) | ci;
    let s = byKey.get(key);
    if (s === undefined) {
      s = this.#clientDuration.series({
        trellis_service: service,
        server_address: endpoint,
        trellis_outcome: this.#outcomes.names[oi]!,
        http_response_status_class: STATUS_CLASSES[ci]!,
      });
      byKey.set(key, s);
    }
    s.observe(durationMs >= 0 ? durationMs / 1000 : 0);
    if (isRetry) this.#serviceCells(service).retries.value++;
  }

  requestStarted(protocol: 'http1' | 'h2' | 'grpc'): void {
    this.#activeCell(protocol).value++;
  }

  requestFinished(protocol: 'http1' | 'h2' | 'grpc'): void {
    this.#activeCell(protocol).value--;
  }

  connectionOpened(listener: string, protocol: 'http1'): void {
    this.#connectionCell(listener, protocol).value++;
  }

  connectionClosed(listener: string, protocol: 'http1'): void {
    this.#connectionCell(listener, protocol).value--;
  }

  configApplied(version: number, ok: boolean): void {
    if (ok) this.#configVersion.set(version);
    this.#reloads.inc({ result: ok ? 'success' : 'failure' });
  }

  close(): void {
    for (const fn of this.#unsubscribe.splice(0)) fn();
    if (this.#gc) gcMetrics.release();
    this.#gc = false;
  }

  #routeNode(listener: string, route: string): RouteNode {
    let byRoute = this.#routes.get(listener);
    if (byRoute === undefined) {
      byRoute = new Map();
      this.#routes.set(listener, byRoute);
    }
    let node = byRoute.get(route);
    if (node === undefined) {
      let bytes = this.#routeBytes.get(route);
      if (bytes === undefined) {
        bytes = [this.#bytesIn.cell({ trellis_route: route }), this.#bytesOut.cell({ trellis_route: route })];
        this.#routeBytes.set(route, bytes);
      }
      node = { bytesIn: bytes[0], bytesOut: bytes[1], byService: new Map() };
      byRoute.set(route, node);
    }
    return node;
  }

  #decisionCell(d: PolicyDecision): CounterCell {
    let c = this.#decisionCells.get(d);
    if (c === undefined) {
      const key = `${d.route}\u0000${d.policy}\u0000${d.type}\u0000${d.decision}`;
      c = this.#decisionSeries.get(key);
      if (c === undefined) {
        c = this.#policyDecisions.cell({
          trellis_route: d.route,
          trellis_policy: d.policy,
          trellis_policy_type: d.type,
          decision: d.decision,
        });
        this.#decisionSeries.set(key, c);
      }
      this.#decisionCells.set(d, c);
    }
    return c;
  }

  #serviceCells(service: string): ServiceCells {
    let sc = this.#services.get(service);
    if (sc === undefined) {
      sc = {
        retries: this.#retries.cell({ trellis_service: service }),
        budgetExhausted: this.#budgetExhausted.cell({ trellis_service: service }),
        timeouts: TIMEOUT_KINDS.map((kind) => this.#timeouts.cell({ trellis_service: service, kind })),
      };
      this.#services.set(service, sc);
    }
    return sc;
  }

  #activeCell(protocol: string): GaugeCell {
    let c = this.#activeRequests.get(protocol);
    if (c === undefined) {
      c = new GaugeCell({ protocol });
      this.#activeRequests.set(protocol, c);
    }
    return c;
  }

  #connectionCell(listener: string, protocol: string): GaugeCell {
    let byProto = this.#connections.get(listener);
    if (byProto === undefined) {
      byProto = new Map();
      this.#connections.set(listener, byProto);
    }
    let c = byProto.get(protocol);
    if (c === undefined) {
      c = new GaugeCell({ trellis_listener: listener, protocol });
      byProto.set(protocol, c);
    }
    return c;
  }
}

interface MetricJSON {
  name: string;
  aggregator?: string;
}

/**
 * Cluster: each worker sends `await registry.getMetricsAsJSON()`; the primary merges them into one exposition
 * text. Counters, histograms and gauges are summed (so 1/0 state gauges count the workers in that state),
 * except `trellis_config_version` (max) and `process_start_time_seconds` (min, the oldest worker). Other
 * process metrics are summed over the workers (CPU seconds, memory, file descriptors, handles), except the
 * event loop lag gauges (averaged; `_min` the least, `_max` the most) and `nodejs_version_info` (the first).
 */
export async function aggregateWorkerMetrics(perWorker: unknown[][]): Promise<string> {
  const lists = perWorker.map((metrics) =>
    (metrics as MetricJSON[]).map((m) => {
      const aggregator = AGGREGATION[m.name] ?? m.aggregator ?? 'sum';
      return aggregator === m.aggregator ? m : { ...m, aggregator };
    }),
  );
  return AggregatorRegistry.aggregate(lists).metrics();
}

interface Described {
  name: string;
  type: string;
  help: string;
  labels: string[];
  aggregator: string;
}

function describe(cfg: MetricsConfig): Described[] {
  const m = new GatewayMetrics(cfg, { snapshot: () => undefined });
  try {
    return m.registry.getMetricsAsArray().map((x) => {
      const metric = x as unknown as { labelNames?: string[] };
      return {
        name: x.name,
        type: String(x.type),
        help: x.help,
        labels: [...(metric.labelNames ?? [])],
        aggregator: AGGREGATION[x.name] ?? x.aggregator ?? 'sum',
      };
    });
  } finally {
    m.close();
  }
}

/** For the docs generator: name, type, help, labels of every metric, from a registry built with default config. */
export function describeMetrics(): Array<{ name: string; type: string; help: string; labels: string[] }> {
  return describe(metricsSchema.parse({})).map(({ name, type, help, labels }) => ({
    name,
    type,
    help,
    labels,
  }));
}

const cell = (s: string) => s.replace(/\|/g, '\\|');

/** docs/metrics.md (`npm run docs:metrics`); a test fails when the file is stale. */
export function renderMetricsDocs(): string {
  const own = describe(metricsSchema.parse({ process: false }));
  const lines = [
    '# Metrics',
    '',
    '<!-- Generated from src/observability/metrics.ts by `npm run docs:metrics`. Do not edit by hand. -->',
    '',
    'Trellis serves Prometheus metrics at `/metrics` on the admin listener, in the text exposition format',
    '(the `metrics` key of [configuration.md](configuration.md#metrics) turns them off, sets the histogram buckets',
    "and the process metrics). Names follow OpenTelemetry's HTTP semantic conventions where one exists",
    '(`http.server.request.duration` is `http_server_request_duration_seconds`); the others start with `trellis_`.',
    '',
    '## Labels are bounded',
    '',
    'A label value is a name from the configuration (`trellis_listener`, `trellis_route`, `trellis_service`), an',
    "endpoint's authority (`server_address`: `host:port` as configured, or the DNS name and port of discovered",
    'endpoints), or one of a fixed set: the method (`GET`, `HEAD`, `POST`, `PUT`, `DELETE`, `CONNECT`, `OPTIONS`,',
    '`TRACE`, `PATCH`, any other is `_OTHER`), the status class (`1xx` to `5xx`, `none` when the client left before',
    'a status was sent), an [error code](errors.md), an upstream outcome. Never a path, a query, a Host header or a',
    'client address: the number of series depends on the configuration, not on the traffic. `none` stands for no',
    'route matched, no service picked, no error (a route or service named `none` is indistinguishable). Counters and',
    'histograms of routes and services that a reload removed stay, frozen, until the process restarts; the state',
    'gauges follow the configuration serving traffic.',
    '',
    '## Several workers',
    '',
    'With several worker processes (`trellis gateway --workers N`), one scrape returns the sum over all workers:',
    'counters and histograms add up, and so do gauges. So a per-worker state gauge such as `trellis_endpoint_healthy`',
    'counts the workers in that state; divide by `trellis_workers` for a fraction. The exceptions are in the',
    '`cluster` column below: `trellis_config_version` is the highest version among the workers.',
    '',
    '## Examples',
    '',
    '99th percentile latency per route over 5 minutes:',
    '',
    '```promql',
    'histogram_quantile(0.99, sum by (trellis_route, le) (rate(http_server_request_duration_seconds_bucket[5m])))',
    '```',
    '',
    'Share of requests per service that failed with a 5xx (from the upstream or from Trellis):',
    '',
    '```promql',
    'sum by (trellis_service) (rate(http_server_request_duration_seconds_count{http_response_status_class="5xx"}[5m]))',
    '  / sum by (trellis_service) (rate(http_server_request_duration_seconds_count[5m]))',
    '```',
    '',
    'Failing attempts per endpoint, retried or not:',
    '',
    '```promql',
    'sum by (trellis_service, server_address, trellis_outcome) (',
    '  rate(http_client_request_duration_seconds_count{trellis_outcome!="success"}[5m]))',
    '```',
    '',
    'Requests Trellis refused or failed itself, by error code:',
    '',
    '```promql',
    'sum by (error_type) (rate(http_server_request_duration_seconds_count{error_type!="none"}[5m]))',
    '```',
    '',
    '## Reference',
    '',
    '| name | type | labels | cluster | what it tells |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const m of own) {
    const labels = m.labels.map((l) => `\`${l}\``).join(', ') || '—';
    lines.push(`| \`${m.name}\` | ${m.type} | ${labels} | ${m.aggregator} | ${cell(m.help)} |`);
  }
  lines.push(
    `| \`${CONFIG_REJECTED.name}\` | counter | — | (primary only) | ${cell(CONFIG_REJECTED.help)} |`,
  );
  lines.push(
    '',
    '## Process metrics',
    '',
    "With `metrics.process` (on by default), prom-client's standard Node.js process metrics are added under their",
    'usual names: `process_cpu_seconds_total` (and `process_cpu_user_seconds_total`, `process_cpu_system_seconds_total`),',
    '`process_resident_memory_bytes`, `process_start_time_seconds`, `nodejs_eventloop_lag_seconds` (and its `_min`,',
    '`_max`, `_mean`, `_stddev`, `_p50`, `_p90`, `_p99` variants), `nodejs_heap_size_total_bytes`,',
    '`nodejs_heap_size_used_bytes`, `nodejs_heap_space_size_{total,used,available}_bytes{space}`,',
    '`nodejs_external_memory_bytes`, `nodejs_active_handles{type}`, `nodejs_active_requests{type}`,',
    '`nodejs_active_resources{type}` (each with a `_total`) and `nodejs_version_info`; on Linux also',
    '`process_virtual_memory_bytes`, `process_heap_bytes`, `process_open_fds` and `process_max_fds`. They describe',
    'the worker processes, not the cluster primary.',
    '',
    "With `metrics.gc` (off by default), `nodejs_gc_duration_seconds{kind}` too (prom-client's name and buckets).",
    "It is off because observing every garbage collection costs: about 6% of the gateway's CPU at full load on the",
    'benchmark machine (docs/benchmarks.md, "Issue 7: cost of telemetry").',
    '',
    'In a cluster scrape they are sums over the workers (CPU seconds, memory, handles, file descriptors and their',
    'limit), except `process_start_time_seconds` (the earliest start), the event loop lag gauges (averaged over the',
    "workers; `_min_seconds` the lowest, `_max_seconds` the highest) and `nodejs_version_info` (one worker's).",
    '',
  );
  return lines.join('\n');
}
