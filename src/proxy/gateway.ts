import type { Logger } from 'pino';
import { routesView, servicesView } from '../admin/views.js';
import { type PolicyGeneration, PolicyStates } from '../compile/policies.js';
import { compileSnapshot, type Snapshot } from '../compile/snapshot.js';
import type { Config } from '../config/schema.js';
import { type AccessLog, createAccessLog } from '../observability/access-log.js';
import { GatewayMetrics } from '../observability/metrics.js';
import { Tracer } from '../observability/tracing.js';
import { logUpstreamEvents } from '../observability/upstream-events.js';
import { UpstreamRegistry } from '../upstream/registry.js';
import type { Exchange, ExchangeHost } from './exchange.js';
import { ListenerRuntime, listenerKey } from './listener.js';
import { WebSocketTunnels } from './websocket.js';
import { CloseCode } from './ws-frames.js';

/**
 * The proxy engine of one process: the live snapshot, the listeners that outlive it, and the pools it shares
 * with the next one. `apply` is a transaction: the new config compiles and binds completely, or nothing changes.
 */
export class Gateway implements ExchangeHost {
  draining = false;
  readonly #shutdown = new AbortController();
  /** Aborted when draining starts: route handlers end long-lived responses (ExchangeHost.shutdown). */
  readonly shutdown: AbortSignal = this.#shutdown.signal;
  viaValue = '';
  onFinish: ((ex: Exchange) => void) | undefined = undefined;
  metrics: GatewayMetrics | undefined = undefined;
  tracer: Tracer | undefined = undefined;
  /** Open WebSockets: they outlive snapshots, and close on SIGTERM or when a reload removed their route. */
  readonly websockets = new WebSocketTunnels();
  /** The tracing settings `tracer` was built with. */
  #tracerKey = '';
  /** The metrics settings `metrics` was built with (a change rebuilds it). */
  #metricsKey = '';
  #snapshot: Snapshot | undefined;
  readonly #listeners = new Map<string, ListenerRuntime>();
  /** Listeners removed by a reload whose connections are still closing. */
  readonly #retired = new Set<ListenerRuntime>();
  readonly #upstreams = new UpstreamRegistry();
  /** State of policies (counters, caches, connections) carried across reloads by `keep`. */
  readonly #policyStates = new PolicyStates();
  #accessLog: AccessLog | undefined;
  #accessLogDropped = 0;
  readonly #log: Logger;

  readonly #stopEventLog: () => void;

  constructor(log: Logger) {
    this.#log = log;
    this.#stopEventLog = logUpstreamEvents(log);
  }

  get snapshot(): Snapshot | undefined {
    return this.#snapshot;
  }

  /** Bound ports by listener name (useful when a config asks for port 0). */
  ports(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const l of this.#listeners.values()) out[l.state.name] = l.port;
    return out;
  }

  async apply(config: Config, version: number, hash: string): Promise<Snapshot> {
    const policyState = this.#policyStates.begin();
    try {
      const snapshot = await this.#apply(config, version, hash, policyState);
      // Live now: policy state the new config did not claim is disposed.
      this.#policyStates.commit(policyState);
      this.metrics?.configApplied(version, true);
      return snapshot;
    } catch (err) {
      this.#policyStates.abort(policyState);
      this.metrics?.configApplied(version, false);
      throw err;
    }
  }

  async #apply(
    config: Config,
    version: number,
    hash: string,
    policyState: PolicyGeneration,
  ): Promise<Snapshot> {
    if (this.draining) throw new Error('draining: not applying new config');
    let snapshot: Snapshot;
    try {
      snapshot = compileSnapshot(config, version, this.#upstreams, hash, policyState);
    } catch (err) {
      this.#keepUpstreams();
      throw err;
    }

    // Open a new access log destination before touching what serves: failing to open it fails the apply.
    let nextLog: AccessLog | undefined | null = null; // null: unchanged
    if ((this.#accessLog?.output ?? 'off') !== config.accessLog.output) {
      try {
        nextLog = await createAccessLog(config.accessLog.output, (err) =>
          this.#log.error(
            { err: err.message },
            'access log write failed; access log lines are being dropped',
          ),
        );
      } catch (err) {
        this.#keepUpstreams();
        throw err;
      }
    }

    // Bind what is new before touching what serves.
    const wanted = new Map<string, ListenerRuntime | undefined>();
    const fresh: ListenerRuntime[] = [];
    try {
      for (const l of config.listeners) {
        const key = listenerKey(l);
        const state = snapshot.listeners.get(l.name)!;
        const existing = this.#listeners.get(key);
        if (existing) {
          // New TLS contexts are built here, so that bad certificate files fail the apply, not the swap.
          existing.prepare(state);
          wanted.set(key, existing);
          continue;
        }
        const rt = new ListenerRuntime(this, state, this.#log);
        await rt.listen();
        fresh.push(rt);
        wanted.set(key, rt);
      }
    } catch (err) {
      await Promise.all(fresh.map((rt) => rt.close()));
      this.#keepUpstreams();
      await nextLog?.close();
      throw err;
    }

    // Health checks and DNS of new services start before they serve (a first DNS answer is awaited, bounded).
    let prepared: unknown;
    try {
      await this.#upstreams.prepare(snapshot.services.values());
    } catch (err) {
      prepared = err;
    }
    if (prepared !== undefined || this.draining) {
      await Promise.all(fresh.map((rt) => rt.close()));
      this.#keepUpstreams();
      await nextLog?.close();
      throw prepared ?? new Error('draining: not applying new config');
    }

    // Swap: every listener points at the new snapshot in one synchronous step.
    for (const l of config.listeners) {
      const rt = wanted.get(listenerKey(l))!;
      rt.apply(snapshot.listeners.get(l.name)!);
      this.#listeners.set(rt.key, rt);
    }
    this.#snapshot = snapshot;
    this.viaValue = snapshot.via === '' ? '' : `1.1 ${snapshot.via}`;
    if (nextLog !== null) this.#swapAccessLog(nextLog);
    this.#accessLog?.setOptions(config.accessLog);
    this.#setMetrics(config);
    this.#setTracer(config);
    this.#composeFinish();

    // Retire what the new config no longer has.
    for (const [key, rt] of this.#listeners) {
      if (!wanted.has(key)) {
        this.#listeners.delete(key);
        this.#retired.add(rt);
        rt.retire(config.gateway.drainTimeout).finally(() => this.#retired.delete(rt));
      }
    }
    this.websockets.reconcile(this.#listeners.values(), config);
    this.#upstreams.commit(snapshot.services.values());
    return snapshot;
  }

  /** Answers an admin query about this process (in a cluster, the primary asks each worker). */
  async query(kind: 'metrics' | 'runtime'): Promise<unknown> {
    if (kind === 'metrics') return this.metrics ? await this.metrics.registry.getMetricsAsJSON() : [];
    const snapshot = this.#snapshot;
    return {
      pid: process.pid,
      routes: snapshot ? routesView(snapshot) : undefined,
      services: snapshot ? servicesView(snapshot) : undefined,
    };
  }

  /** A failed apply: stop what it created, keep what the live snapshot uses. */
  #keepUpstreams(): void {
    this.#upstreams.commit(this.#snapshot?.services.values() ?? []);
  }

  #swapAccessLog(log: AccessLog | undefined): void {
    const old = this.#accessLog;
    this.#accessLog = log;
    if (old !== undefined) {
      // Its count joins the total once its last lines are written (or given up on).
      old
        .close()
        .catch(() => {})
        .finally(() => {
          this.#accessLogDropped += old.dropped;
        });
    }
  }

  /** Access log lines lost (queue full behind a slow destination, or a failed write), by every log this had. */
  get accessLogDropped(): number {
    return this.#accessLogDropped + (this.#accessLog?.dropped ?? 0);
  }

  /** Metrics on, off, or rebuilt when their settings changed (bucket bounds cannot change in place). */
  #setMetrics(config: Config): void {
    const key = config.metrics.enabled ? JSON.stringify(config.metrics) : '';
    if (key === this.#metricsKey) return;
    this.#metricsKey = key;
    this.metrics?.close();
    this.metrics =
      key === ''
        ? undefined
        : new GatewayMetrics(config.metrics, {
            snapshot: () => this.#snapshot,
            spans: () => this.tracer,
            accessLogDropped: () => this.accessLogDropped,
          });
  }

  /** Tracing on, off, or rebuilt (its exporter flushed and closed in the background) when settings changed. */
  #setTracer(config: Config): void {
    const key = config.tracing.enabled ? JSON.stringify(config.tracing) : '';
    if (key === this.#tracerKey) return;
    this.#tracerKey = key;
    this.tracer?.close().catch(() => {});
    this.tracer = key === '' ? undefined : new Tracer(config.tracing);
  }

  /** The one post-request step: metrics, access log, spans; nothing at all (no clock reads) when all are off. */
  #composeFinish(): void {
    const log = this.#accessLog;
    const metrics = this.metrics;
    const tracer = this.tracer;
    if (log === undefined && metrics === undefined && tracer === undefined) this.onFinish = undefined;
    else if (tracer === undefined && metrics === undefined) this.onFinish = (ex) => log!.write(ex);
    else if (tracer === undefined && log === undefined)
      this.onFinish = (ex) => metrics!.requestEnd(ex, performance.now() - ex.startedAt);
    else
      this.onFinish = (ex) => {
        const end = performance.now();
        metrics?.requestEnd(ex, end - ex.startedAt);
        log?.write(ex);
        if (tracer !== undefined && ex.trace?.sampled) endSpan(tracer, ex, end);
      };
  }

  /**
   * SIGTERM: stop accepting, let in-flight requests finish (replies now close their connections), and after
   * `deadlineMs` close whatever is left.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.draining = true;
    this.#shutdown.abort();
    const listeners = [...this.#listeners.values(), ...this.#retired];
    this.#listeners.clear();
    // Open WebSockets are no longer the HTTP server's: they get 1001 Going Away now, and the servers close
    // once they are gone.
    this.websockets.draining = true;
    this.websockets.goAwayAll(CloseCode.goingAway, 'server shutting down');
    const closed = Promise.all([...listeners.map((l) => l.close()), this.websockets.closed()]);
    const idleSweep = setInterval(() => {
      for (const l of listeners) l.closeIdle();
    }, 50);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), deadlineMs);
    });
    const result = await Promise.race([closed.then(() => 'closed' as const), deadline]);
    clearInterval(idleSweep);
    clearTimeout(timer);
    if (result === 'deadline') {
      this.#log.warn({ deadlineMs }, 'drain deadline reached; closing remaining connections');
      for (const l of listeners) l.closeAll();
      this.websockets.destroyAll();
    }
    await this.#upstreams.closeAll();
    this.#policyStates.disposeAll();
    this.#stopEventLog();
    this.metrics?.close();
    // Spans still queued get a short, bounded chance to leave; a dead collector must not hold the exit.
    if (this.tracer !== undefined) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([
        this.tracer.close().catch(() => {}),
        new Promise<void>((resolve) => {
          t = setTimeout(resolve, 2_000);
        }),
      ]);
      clearTimeout(t);
    }
    await this.#accessLog?.close();
  }
}

/** The server span of a sampled request (its attempts' client spans were filled as they ran). */
function endSpan(tracer: Tracer, ex: Exchange, end: number): void {
  const ua = ex.req.headers['user-agent'];
  tracer.end(ex.trace!, {
    method: ex.method,
    route: ex.route?.name,
    listener: ex.listener.name,
    status: ex.res.headersSent ? ex.res.statusCode : ex.status,
    errorCode: ex.errorCode,
    start: ex.startedAt,
    end,
    scheme: ex.listener.scheme,
    host: ex.host,
    clientAddress: ex.clientAddress(),
    userAgent: typeof ua === 'string' ? ua : undefined,
    path: ex.path,
  });
}
