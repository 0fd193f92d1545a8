import { variantRoutes } from '../api/versions.js';
import { inRunOrder, policyKind } from '../compile/policies.js';
import { routeMatchSpec, type Snapshot } from '../compile/snapshot.js';
import { REDACTED } from '../config/redact.js';
import type { Config, RouteConfig } from '../config/schema.js';
import {
  createExplainer,
  type ExplainInput,
  type Explanation,
  pathText,
  templateText,
  toRouterRequest,
} from '../router/explain.js';
import type { RouteMatchSpec, ValueMatchSpec } from '../router/index.js';
import { compileRoute } from '../router/route.js';
import { requestHeaderStage, responseHeaderStage } from '../stages/header-edits.js';
import { directResponseStage, redirectStage } from '../stages/local-replies.js';
import { PolicyPhase } from '../stages/policy.js';
import { rewriteStage } from '../stages/rewrite.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { UpstreamService } from '../upstream/service.js';

/**
 * What the admin API shows about routes, services and request explain. Pure functions of a snapshot or a config
 * that return plain JSON (no undefined, no Infinity, no Map): in a cluster each worker computes its own and sends
 * it to the primary over IPC.
 */

// ---------------------------------------------------------------- routes

export interface ValueMatchView {
  name: string;
  exact?: string;
  regex?: string;
  present?: boolean;
}

export interface RouteView {
  name: string;
  /** Where it is in the config: `routes[3]`. */
  source: string;
  match: {
    /** Lower case; null: any host. */
    hosts: string[] | null;
    /** The path rule after normalization (`prefix /api/` is `/api`). */
    path: { kind: 'exact' | 'prefix' | 'template' | 'regex'; value: string };
    methods: string[] | null;
    headers: ValueMatchView[] | null;
    query: ValueMatchView[] | null;
  };
  /** `proxy`: to backends; `redirect` and `direct-response` answer locally. */
  kind: 'proxy' | 'redirect' | 'direct-response';
  /**
   * The policies the route runs, in the order they run (before its own stages): its listener's and its own,
   * by phase. `from`: attached by the listener or by the route.
   */
  policies: { name: string; type: string; phase: string; shadow: boolean; from: 'listener' | 'route' }[];
  /** Request stages by name, in the order they run (after the policies). */
  stages: string[];
  /** Response stages by name, in the order they run. */
  responseStages: string[];
  backends: { service: string; weight: number }[];
  preserveHost: boolean;
  timeouts: { requestMs: number; upstreamIdleMs: number };
  /** null: no limit. */
  maxBodyBytes: number | null;
  retry: {
    attempts: number;
    on: string[];
    statusCodes: number[];
    perTryTimeoutMs: number;
    backoff: { baseMs: number; maxMs: number };
    nonIdempotent: boolean;
    replayBufferBytes: number;
    attemptsHeader: boolean;
  };
  mirror: { service: string; percent: number } | null;
  fault: {
    delay: { ms: number; percent: number } | null;
    abort: { status: number; percent: number } | null;
    headers: boolean;
  } | null;
  /** `translate.type` of a route that translates its requests (grpc, graphql, websocket); null: none. */
  translate: string | null;
}

export interface ListenerRoutesView {
  name: string;
  address: string;
  port: number;
  protocol: string;
  /** In precedence order: routes naming hosts exactly, then wildcards (longest first), then any host; within each, the router's order (exact, template, regex, prefix, then the tie-breakers). */
  routes: RouteView[];
}

export interface RoutesView {
  version: number;
  hash: string;
  listeners: ListenerRoutesView[];
}

/** The routes of one listener, as compileSnapshot builds its router: config order, hosts lower-cased. */
export function listenerRoutes(
  config: Config,
  listener: string,
): { specs: RouteMatchSpec<number>[]; routes: { route: RouteConfig; index: number }[] } {
  const specs: RouteMatchSpec<number>[] = [];
  const routes: { route: RouteConfig; index: number }[] = [];
  config.routes.forEach((r, index) => {
    if (r.listeners && !r.listeners.includes(listener)) return;
    // A route of a versioned API takes one router entry more per version path segment (src/api/versions.ts);
    // `routes` stays parallel to `specs`.
    const api = r.api === undefined ? undefined : config.apis?.find((a) => a.name === r.api);
    const entries = api === undefined ? [r] : variantRoutes(r, api).map((v) => v.route);
    for (const route of entries) {
      routes.push({ route, index });
      specs.push(routeMatchSpec(route, index));
    }
  });
  return { specs, routes };
}

/**
 * The stage names of a route, in the order they run, built with the same stage factories and arguments as
 * compileSnapshot (a factory that has nothing to do returns no stage). The explain endpoint runs in the cluster
 * primary, which has the config but no snapshot, so names come from here for the views as well.
 */
export function routeStageNames(r: RouteConfig, scheme = 'http'): { request: string[]; response: string[] } {
  const matchPrefix = r.match.path && 'prefix' in r.match.path ? r.match.path.prefix : undefined;
  const request: string[] = [];
  const push = (s: { name: string } | undefined) => s && request.push(s.name);
  if (r.directResponse) push(directResponseStage(r.directResponse));
  else if (r.redirect) push(redirectStage(r.redirect, r.match.path ? matchPrefix : '/', scheme));
  else {
    push(rewriteStage(r.rewrite, r.match.path ? matchPrefix : '/'));
    if (r.requestHeaders) push(requestHeaderStage(r.requestHeaders));
  }
  const response: string[] = [];
  if (r.responseHeaders) {
    const s = responseHeaderStage(r.responseHeaders);
    if (s) response.push(s.name);
  }
  return { request, response };
}

function valueMatches(list: readonly ValueMatchSpec[] | undefined, lower: boolean): ValueMatchView[] | null {
  if (!list || list.length === 0) return null;
  return list.map((m) => {
    const name = lower ? m.name.toLowerCase() : m.name;
    if (m.exact !== undefined) return { name, exact: m.exact };
    if (m.regex !== undefined) return { name, regex: m.regex };
    return { name, present: m.present ?? true };
  });
}

const PHASE_NAMES = new Map<number, string>(Object.entries(PolicyPhase).map(([k, v]) => [v, k]));

/** The policies a route runs on `listener`, in run order (the same order compileSnapshot gives its stages). */
export function routePolicies(config: Config, listener: string, r: RouteConfig): RouteView['policies'] {
  const byName = new Map(config.policies.map((p) => [p.name, p]));
  const listenerPolicies = config.listeners.find((l) => l.name === listener)?.policies ?? [];
  const attached = [
    ...listenerPolicies.map((n) => ({ n, from: 'listener' as const })),
    ...(r.policies ?? []).map((n) => ({ n, from: 'route' as const })),
  ].flatMap(({ n, from }) => {
    const p = byName.get(n);
    if (p === undefined) return [];
    const phase = policyKind(p.type)?.phase ?? 0;
    return [{ name: n, type: p.type, phase, shadow: p.shadow, from }];
  });
  return inRunOrder(attached).map((p) => ({ ...p, phase: PHASE_NAMES.get(p.phase) ?? String(p.phase) }));
}

export function routeView(
  r: RouteConfig,
  index: number,
  spec: RouteMatchSpec<number>,
  policies: RouteView['policies'] = [],
): RouteView {
  const compiled = compileRoute(spec, index);
  const p = compiled.path;
  const path =
    p.kind === 'exact'
      ? { kind: p.kind, value: p.path }
      : p.kind === 'prefix'
        ? { kind: p.kind, value: p.prefix }
        : p.kind === 'template'
          ? { kind: p.kind, value: templateText(p.template) }
          : { kind: p.kind, value: p.source };
  const stages = routeStageNames(r);
  const rt = r.retries;
  return {
    name: r.name,
    source: `routes[${index}]`,
    match: {
      hosts: spec.hosts && spec.hosts.length > 0 ? [...spec.hosts] : null,
      path,
      methods: compiled.methods ? [...compiled.methods] : null,
      headers: valueMatches(r.match.headers, true),
      query: valueMatches(r.match.query, false),
    },
    kind: r.directResponse ? 'direct-response' : r.redirect ? 'redirect' : 'proxy',
    policies,
    stages: stages.request,
    responseStages: stages.response,
    backends: r.directResponse || r.redirect ? [] : (r.backends ?? []).map((b) => ({ ...b })),
    preserveHost: r.preserveHost,
    timeouts: { requestMs: r.timeouts.request, upstreamIdleMs: r.timeouts.upstreamIdle },
    maxBodyBytes: r.limits.maxBodyBytes ?? null,
    retry: {
      attempts: rt.attempts,
      on: [...rt.on],
      statusCodes: [...rt.statusCodes],
      perTryTimeoutMs: rt.perTryTimeout,
      backoff: { baseMs: rt.backoff.base, maxMs: rt.backoff.max },
      nonIdempotent: rt.nonIdempotent,
      replayBufferBytes: rt.replayBuffer,
      attemptsHeader: rt.attemptsHeader,
    },
    mirror: r.mirror ? { service: r.mirror.service, percent: r.mirror.percent } : null,
    fault: r.fault
      ? {
          delay: r.fault.delay ? { ms: r.fault.delay.duration, percent: r.fault.delay.percent } : null,
          abort: r.fault.abort ? { status: r.fault.abort.status, percent: r.fault.abort.percent } : null,
          headers: r.fault.headers,
        }
      : null,
    translate: r.translate?.type ?? null,
  };
}

/** Every listener's routes in precedence order, in their compiled form. */
export function routesView(snapshot: Snapshot): RoutesView {
  const config = snapshot.config;
  return {
    version: snapshot.version,
    hash: snapshot.hash,
    listeners: config.listeners.map((l) => {
      const { specs, routes } = listenerRoutes(config, l.name);
      const order = createExplainer(specs).order;
      return {
        name: l.name,
        address: l.address,
        port: l.port,
        protocol: l.protocol,
        routes: order.map((i) =>
          routeView(
            routes[i]!.route,
            routes[i]!.index,
            specs[i]!,
            routePolicies(config, l.name, routes[i]!.route),
          ),
        ),
      };
    }),
  };
}

// ---------------------------------------------------------------- secrets

/**
 * Match values can come from secrets (`exact: ${env:API_KEY}` on a header gate). Views are built from the
 * resolved config, so before they leave the admin API the values that are redacted in `shown` (the redacted
 * config, as /config shows it) are redacted in them too. Without a usable `shown`, every header and query value
 * is redacted.
 */
function shownRoute(shown: unknown, index: number): Record<string, unknown> | undefined {
  const routes = isRecord(shown) ? shown.routes : undefined;
  const r = Array.isArray(routes) ? routes[index] : undefined;
  return isRecord(r) ? r : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `shownList[j]` says which of `list[j]`'s values to hide. */
function maskValues<M extends { exact?: string | undefined; regex?: string | undefined }>(
  list: readonly M[] | null | undefined,
  shownList: unknown,
  known: boolean,
): M[] | undefined {
  if (!list) return undefined;
  return list.map((m, j) => {
    const s = Array.isArray(shownList) && isRecord(shownList[j]) ? shownList[j] : undefined;
    const hide = (key: 'exact' | 'regex') => !known || s === undefined || s[key] === REDACTED;
    const out = { ...m };
    if (m.exact !== undefined && hide('exact')) out.exact = REDACTED;
    if (m.regex !== undefined && hide('regex')) out.regex = REDACTED;
    return out;
  });
}

function matchOf(shown: Record<string, unknown> | undefined): Record<string, unknown> {
  return shown && isRecord(shown.match) ? shown.match : {};
}

/** A route view with the match values that came from secrets redacted (`shown`: the redacted config). */
export function redactRouteView(v: RouteView, shown: unknown): RouteView {
  const index = Number(/^routes\[(\d+)\]$/.exec(v.source)?.[1] ?? -1);
  const sr = shownRoute(shown, index);
  const m = matchOf(sr);
  const hosts = Array.isArray(m.hosts) ? m.hosts : [];
  const path = isRecord(m.path) ? Object.values(m.path)[0] : undefined;
  return {
    ...v,
    match: {
      ...v.match,
      hosts: v.match.hosts ? v.match.hosts.map((h, k) => (hosts[k] === REDACTED ? REDACTED : h)) : null,
      path: path === REDACTED ? { kind: v.match.path.kind, value: REDACTED } : v.match.path,
      headers: maskValues(v.match.headers, m.headers, sr !== undefined) ?? null,
      query: maskValues(v.match.query, m.query, sr !== undefined) ?? null,
    },
  };
}

export function redactRoutesView(v: RoutesView, shown: unknown): RoutesView {
  return {
    ...v,
    listeners: v.listeners.map((l) => ({ ...l, routes: l.routes.map((r) => redactRouteView(r, shown)) })),
  };
}

/** The specs explain quotes from: the listener's specs with secret hosts and values redacted. */
function displaySpecs(config: Config, listener: string, shown: unknown): RouteMatchSpec<number>[] {
  const { specs, routes } = listenerRoutes(config, listener);
  return specs.map((spec, i) => {
    const sr = shownRoute(shown, routes[i]!.index);
    const m = matchOf(sr);
    const hosts = Array.isArray(m.hosts) ? m.hosts : [];
    return {
      ...spec,
      hosts: spec.hosts?.map((h, k) => (hosts[k] === REDACTED ? REDACTED : h)),
      headers: maskValues(spec.headers, m.headers, sr !== undefined),
      query: maskValues(spec.query, m.query, sr !== undefined),
    };
  });
}

// ---------------------------------------------------------------- services

export interface EndpointView {
  origin: string;
  authority: string;
  weight: number;
  zone: string;
  priority: number;
  /** Requests in flight on it. */
  active: number;
  /** Picked by the balancer now: healthy, not ejected, in the priority group in use (or the service is in panic). */
  eligible: boolean;
  healthy: boolean;
  /** Last active health check; null without health checks or before the first one ended. */
  health: { lastCheckAt: string; lastError: string | null } | null;
  /** Outlier detection; null when it is off. */
  ejection: {
    ejected: boolean;
    /** When the current ejection ends. */
    until: string | null;
    remainingMs: number;
    reason: string | null;
    /** The ejection multiplier: the next ejection lasts base × (count + 1). */
    count: number;
  } | null;
  /** Peak-EWMA latency estimate (p2c-ewma), ms. */
  latencyEwmaMs: number;
}

export interface ServiceView {
  name: string;
  loadBalancer: { type: string; panicThreshold: number; hashOn: Record<string, string | boolean> | null };
  discovery:
    | { type: 'static' }
    | { type: 'dns'; name: string; port: number | null; lastError: string | null };
  healthCheck: { type: string; intervalMs: number } | null;
  /** Balancing over all endpoints because too few are available. */
  panic: boolean;
  eligible: number;
  endpoints: EndpointView[];
  circuitBreaker: { state: 'closed' | 'open' | 'half_open' | 'disabled' };
  admission: {
    active: number;
    pending: number;
    retries: number;
    maxRequests: number;
    maxPending: number;
    maxRetries: number;
  };
  /** Retries that may be made now (fractional). */
  retryBudget: { balance: number };
}

export interface ServicesView {
  version: number;
  services: ServiceView[];
}

/** performance.now() time → wall clock. */
function wallClock(t: number): string {
  return new Date(performance.timeOrigin + t).toISOString();
}

function endpointView(
  svc: UpstreamService,
  ep: Endpoint,
  eligible: ReadonlySet<Endpoint>,
  now: number,
): EndpointView {
  const health = svc.healthOf(ep);
  const outlier = svc.outlierOf(ep);
  // The endpoint's own field decides eligibility; the detector knows why and how often.
  const ejectedUntil = ep.ejectedUntil;
  const ejected = ejectedUntil > now;
  return {
    origin: ep.origin,
    authority: ep.authority,
    weight: ep.weight,
    zone: ep.zone,
    priority: ep.priority,
    active: ep.active,
    eligible: eligible.has(ep),
    healthy: ep.healthy,
    health: health
      ? { lastCheckAt: new Date(health.lastCheckAt).toISOString(), lastError: health.lastError ?? null }
      : null,
    ejection: outlier
      ? {
          ejected,
          until: ejected ? wallClock(ejectedUntil) : null,
          remainingMs: ejected ? Math.ceil(ejectedUntil - now) : 0,
          reason: ejected ? (outlier.reason ?? null) : null,
          count: outlier.ejections,
        }
      : null,
    latencyEwmaMs: Math.round(ep.ewma * 1000) / 1000,
  };
}

function serviceView(svc: UpstreamService, now: number): ServiceView {
  const cfg = svc.config;
  const eligible = new Set(svc.eligible);
  const hashOn = cfg.loadBalancer.hashOn;
  const a = svc.admission;
  return {
    name: svc.name,
    loadBalancer: {
      type: cfg.loadBalancer.type,
      panicThreshold: cfg.loadBalancer.panicThreshold,
      hashOn: hashOn ? (JSON.parse(JSON.stringify(hashOn)) as Record<string, string | boolean>) : null,
    },
    discovery: cfg.dns
      ? { type: 'dns', name: cfg.dns.name, port: cfg.dns.port ?? null, lastError: svc.lastDnsError ?? null }
      : { type: 'static' },
    healthCheck: cfg.healthCheck
      ? { type: cfg.healthCheck.type, intervalMs: cfg.healthCheck.interval }
      : null,
    panic: svc.panic,
    eligible: eligible.size,
    endpoints: svc.endpoints.map((ep) => endpointView(svc, ep, eligible, now)),
    circuitBreaker: { state: svc.circuit?.state ?? 'disabled' },
    admission: {
      active: a.active,
      pending: a.pending,
      retries: a.retries,
      maxRequests: a.limits.maxRequests,
      maxPending: a.limits.maxPending,
      maxRetries: a.limits.maxRetries,
    },
    retryBudget: { balance: Math.round(svc.budget.balance * 100) / 100 },
  };
}

/** Every service of the snapshot with its live state in this process (health, ejections, breaker, budget). */
export function servicesView(snapshot: Snapshot): ServicesView {
  const now = performance.now();
  return {
    version: snapshot.version,
    services: [...snapshot.services.values()].map((svc) => serviceView(svc, now)),
  };
}

// ---------------------------------------------------------------- explain

export interface PolicyView {
  kind: RouteView['kind'];
  /** What the request goes through, in order: `max-body-bytes`, `policy:NAME` for each policy, the request stages, `fault`, `mirror`, `upstream`, the response stages. */
  pipeline: string[];
  policies: RouteView['policies'];
  stages: string[];
  responseStages: string[];
  backends: RouteView['backends'];
  retry: RouteView['retry'];
  timeouts: RouteView['timeouts'];
  maxBodyBytes: number | null;
  mirror: RouteView['mirror'];
  fault: RouteView['fault'];
}

export interface ListenerExplainView {
  listener: string;
  outcome: Explanation['outcome'];
  /** What the gateway answers when nothing else does: 404 route_not_found, 405 method_not_allowed; null on a match. */
  localReply: { status: number; code: string; allow: string[] | null } | null;
  route: {
    name: string;
    source: string;
    hostGroup: string;
    path: string;
    params: Record<string, string> | null;
  } | null;
  policies: PolicyView | null;
  /** Every route of the listener, in config order, with its verdict. */
  routes: { name: string; source: string; verdict: string; hostGroup: string | null; reasons: string[] }[];
}

export interface ExplainView {
  request: {
    method: string;
    host: string;
    path: string;
    query: string;
    headers: Record<string, string | string[]>;
  };
  listeners: ListenerExplainView[];
}

function policyView(v: RouteView): PolicyView {
  const pipeline: string[] = [];
  if (v.maxBodyBytes !== null) pipeline.push('max-body-bytes');
  for (const p of v.policies) pipeline.push(`policy:${p.name}`);
  pipeline.push(...v.stages);
  if (v.kind === 'proxy') {
    if (v.fault) pipeline.push('fault');
    if (v.mirror) pipeline.push('mirror');
    if (v.translate !== null) pipeline.push(`translate:${v.translate}`);
    pipeline.push('upstream', ...v.responseStages);
  }
  return {
    kind: v.kind,
    pipeline,
    policies: v.policies,
    stages: v.stages,
    responseStages: v.responseStages,
    backends: v.backends,
    retry: v.retry,
    timeouts: v.timeouts,
    maxBodyBytes: v.maxBodyBytes,
    mirror: v.mirror,
    fault: v.fault,
  };
}

/**
 * Explains a request against the config, listener by listener (or only `listener`). `shown` is the redacted
 * config: reasons quote its values, never a secret. Errors are for the caller to answer 400 with.
 */
export function explainView(
  config: Config,
  input: ExplainInput,
  listener: string | undefined,
  shown: unknown,
): { ok: true; view: ExplainView } | { ok: false; error: string } {
  const r = toRouterRequest(input);
  if (!r.ok) return r;
  const req = r.request;
  const names = config.listeners.map((l) => l.name);
  if (listener !== undefined && !names.includes(listener)) {
    return { ok: false, error: `unknown listener "${listener}"; listeners: ${names.join(', ')}` };
  }
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = v;
  const listeners = config.listeners
    .filter((l) => listener === undefined || l.name === listener)
    .map((l): ListenerExplainView => {
      const { specs, routes } = listenerRoutes(config, l.name);
      const label = (i: number) => `route ${routes[i]!.route.name} (routes[${routes[i]!.index}])`;
      const e = createExplainer(specs, displaySpecs(config, l.name, shown)).explain(req, label);
      const win = e.winner === undefined ? undefined : routes[e.winner]!;
      const winView = win
        ? routeView(win.route, win.index, specs[e.winner!]!, routePolicies(config, l.name, win.route))
        : undefined;
      return {
        listener: l.name,
        outcome: e.outcome,
        localReply:
          e.outcome === 'match'
            ? null
            : e.outcome === 'method_not_allowed'
              ? { status: 405, code: 'method_not_allowed', allow: e.allow! }
              : { status: 404, code: 'route_not_found', allow: null },
        route:
          win && winView
            ? {
                name: win.route.name,
                source: `routes[${win.index}]`,
                hostGroup: e.hostGroup!,
                path: pathText(compileRoute(specs[e.winner!]!, e.winner!).path),
                params: e.params ?? null,
              }
            : null,
        policies: winView ? policyView(winView) : null,
        routes: e.routes.map((x) => ({
          name: routes[x.index]!.route.name,
          source: `routes[${routes[x.index]!.index}]`,
          verdict: x.verdict,
          hostGroup: x.hostGroup,
          reasons: x.reasons,
        })),
      };
    });
  return {
    ok: true,
    view: {
      request: { method: req.method, host: req.host, path: req.path, query: req.query, headers },
      listeners,
    },
  };
}
