import { createHash } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { compileApis, type RouteVersioning, routeVariants, routeVersioning } from '../api/versions.js';
import type { Config, ListenerConfig, RouteConfig } from '../config/schema.js';
import type { RequestStage, ResponseStage, StageContext } from '../proxy/stage.js';
import type { RouteHandler, Translator } from '../proxy/translate.js';
import { grpcMatchParts } from '../router/grpc.js';
import { compileRouter, type RouteMatchSpec, type Router, RouterCompileError } from '../router/index.js';
import { requestHeaderStage, responseHeaderStage } from '../stages/header-edits.js';
import { directResponseStage, redirectStage } from '../stages/local-replies.js';
import { type CompiledPolicy, PolicyPhase } from '../stages/policy.js';
import { rewriteStage } from '../stages/rewrite.js';
import { translateKind } from '../translate/kinds.js';
import type { UpstreamRegistry } from '../upstream/registry.js';
import type { UpstreamService } from '../upstream/service.js';
import { compilePolicies, type PolicyGeneration, PolicyStates, routePolicyStages } from './policies.js';

/** Retry conditions as bits, tested once per failed attempt. */
export const RetryOn = {
  connectFailure: 1,
  refusedStream: 2,
  reset: 4,
  timeout: 8,
  gatewayError: 16,
  status5xx: 32,
  statusCodes: 64,
  grpcCancelled: 128,
  grpcDeadlineExceeded: 256,
  grpcInternal: 512,
  grpcResourceExhausted: 1024,
  grpcUnavailable: 2048,
} as const;

const RETRY_BITS: Record<string, number> = {
  'connect-failure': RetryOn.connectFailure,
  'refused-stream': RetryOn.refusedStream,
  reset: RetryOn.reset,
  timeout: RetryOn.timeout,
  'gateway-error': RetryOn.gatewayError,
  '5xx': RetryOn.status5xx,
  'retriable-status-codes': RetryOn.statusCodes,
  cancelled: RetryOn.grpcCancelled,
  'deadline-exceeded': RetryOn.grpcDeadlineExceeded,
  internal: RetryOn.grpcInternal,
  'resource-exhausted': RetryOn.grpcResourceExhausted,
  unavailable: RetryOn.grpcUnavailable,
};

export interface RetryPolicy {
  /** Most attempts, the first included. */
  readonly attempts: number;
  /** RetryOn bits. */
  readonly on: number;
  readonly statusCodes: ReadonlySet<number>;
  /** 0: none. */
  readonly perTryTimeout: number;
  readonly backoffBase: number;
  readonly backoffMax: number;
  readonly nonIdempotent: boolean;
  readonly replayBuffer: number;
  readonly attemptsHeader: boolean;
}

export interface MirrorPolicy {
  readonly service: UpstreamService;
  /** 0..1 */
  readonly fraction: number;
}

export interface FaultPolicy {
  readonly delayMs: number;
  readonly delayFraction: number;
  /** 0: no abort. */
  readonly abortStatus: number;
  readonly abortFraction: number;
  /** Honour x-trellis-fault-delay / x-trellis-fault-abort request headers. */
  readonly headers: boolean;
}

/** A route's WebSocket settings (present only when `websocket.enabled`). */
export interface WebSocketPolicy {
  /** ms without a byte either way before the WebSocket is closed with 1001; 0: never. */
  readonly idleTimeout: number;
  /** Infinity when the route sets no limit. */
  readonly maxConnections: number;
  /** Infinity when the route sets no limit. */
  readonly maxMessageBytes: number;
}

/** A route ready to serve: only the stages it uses, its upstream resolved, nothing looked up by name. */
export interface CompiledRoute {
  readonly name: string;
  /** Where it came from in the config, for logs and errors: `routes[3]`. */
  readonly source: string;
  readonly stages: readonly RequestStage[];
  /** Applied in order: the reverse of the route order. */
  readonly responseStages: readonly ResponseStage[];
  /**
   * Picks the service for one request (weighted split; a versioned API's route asks the request's version);
   * undefined for routes that answer locally.
   */
  readonly pickService: ((ctx: StageContext) => UpstreamService) | undefined;
  readonly requestTimeout: number;
  readonly upstreamIdleTimeout: number;
  /** Infinity when the route sets no limit. */
  readonly maxBodyBytes: number;
  readonly preserveHost: boolean;
  readonly retry: RetryPolicy;
  readonly mirror: MirrorPolicy | undefined;
  readonly fault: FaultPolicy | undefined;
  /**
   * Bodies are buffered (up to `retry.replayBuffer`) when a retry or a mirror may need them again; a retry
   * after a failed connect resends a streamed body that was not read yet.
   */
  readonly buffersBody: boolean;
  /** Upgrades to WebSocket are accepted when set. */
  readonly websocket: WebSocketPolicy | undefined;
  /** gRPC-Web requests are translated to gRPC for the (h2/h2c) service and back. */
  readonly grpcWeb: boolean;
  /** `translate` with a translator: requests and responses rewritten, forwarded as usual (src/proxy/translate.ts). */
  readonly translator?: Translator | undefined;
  /** `translate` with a handler: it answers the request after the route's stages, instead of forwarding. */
  readonly handler?: RouteHandler | undefined;
}

export interface ListenerState {
  readonly name: string;
  readonly config: ListenerConfig;
  readonly router: Router<CompiledRoute>;
  /** Peers whose forwarding headers are trusted; undefined when nobody is. */
  readonly trusted: BlockList | undefined;
  /** `https` when the listener has `tls`: X-Forwarded-Proto, Forwarded and redirects say so. */
  readonly scheme: 'http' | 'https';
  /** Lower-case name of the header that carries the client certificate upstream (and is stripped from requests). */
  readonly clientCertHeader?: string | undefined;
}

export interface Snapshot {
  readonly version: number;
  readonly hash: string;
  readonly config: Config;
  readonly listeners: ReadonlyMap<string, ListenerState>;
  /** Services by name: the registry stops the others after the swap. */
  readonly services: ReadonlyMap<string, UpstreamService>;
  /** `Via` pseudonym, '' for none. */
  readonly via: string;
}

/** A route's match as the router takes it, carrying `value` (the compiled route, or an index for views). */
export function routeMatchSpec<T>(r: RouteConfig, value: T): RouteMatchSpec<T> {
  const hosts = r.match.hosts?.map((h) => h.toLowerCase());
  if (r.match.grpc !== undefined) {
    // gRPC: compiled into a path, POST and a content-type match, so the router needs no gRPC of its own.
    const g = grpcMatchParts(r.match.grpc, r.grpcWeb);
    const headers = r.match.headers === undefined ? [g.header] : [...r.match.headers, g.header];
    return { hosts, path: g.path, methods: g.methods, headers, query: r.match.query, value };
  }
  return {
    hosts,
    path: r.match.path,
    methods: r.match.methods,
    headers: r.match.headers,
    query: r.match.query,
    value,
  };
}

export function configHash(config: Config): string {
  return createHash('sha256').update(JSON.stringify(config)).digest('hex');
}

/**
 * Config (already validated) → frozen Snapshot. Throws on what validation should have caught; the caller
 * keeps the old snapshot serving.
 */
export function compileSnapshot(
  config: Config,
  version: number,
  upstreams: UpstreamRegistry,
  hash?: string,
  policyState?: PolicyGeneration,
): Snapshot {
  const services = new Map<string, UpstreamService>();
  for (const s of config.services) services.set(s.name, upstreams.service(s, config.gateway.zone));
  // Without a gateway's state store (views, tests), state made by `keep` lives as long as this snapshot.
  const policies = compilePolicies(config, policyState ?? new PolicyStates().begin());
  const apis = compileApis(config.apis ?? [], (backends, where) => backendPicker(backends, services, where));

  const listeners = new Map<string, ListenerState>();
  for (const l of config.listeners) {
    const scheme = l.tls === undefined ? ('http' as const) : ('https' as const);
    const specs: RouteMatchSpec<CompiledRoute>[] = [];
    const configIndex: number[] = [];
    config.routes.forEach((r, i) => {
      if (r.listeners && !r.listeners.includes(l.name)) return;
      const attached = [...(l.policies ?? []), ...(r.policies ?? [])].map((n) => {
        const p = policies.get(n);
        if (p === undefined) throw new Error(`routes[${i}]: unknown policy ${n}`);
        return p;
      });
      const api = r.api === undefined ? undefined : apis.get(r.api);
      if (r.api !== undefined && api === undefined) throw new Error(`routes[${i}].api: unknown API ${r.api}`);
      if (api === undefined) {
        configIndex.push(i);
        specs.push(routeMatchSpec(r, compileRoute(r, i, services, scheme, attached)));
        return;
      }
      // A route of a versioned API may take several router entries (a version's path segment in front).
      for (const v of routeVariants(r, api)) {
        configIndex.push(i);
        const compiled = compileRoute(v.route, i, services, scheme, attached, routeVersioning(api, v));
        specs.push(routeMatchSpec(v.route, compiled));
      }
    });
    let router: Router<CompiledRoute>;
    try {
      router = compileRouter(specs);
    } catch (err) {
      // Validation compiles the same router, so this is a defect; still name the route as the file does.
      if (err instanceof RouterCompileError) {
        throw new Error(`routes[${configIndex[err.routeIndex]}].match.${err.field}: ${err.detail}`);
      }
      throw err;
    }
    listeners.set(
      l.name,
      Object.freeze({
        name: l.name,
        config: l,
        router,
        trusted: trustedList(l.trustedProxies),
        scheme,
        clientCertHeader: l.tls?.clientAuth.forwardHeader?.toLowerCase(),
      }),
    );
  }

  return Object.freeze({
    version,
    hash: hash ?? configHash(config),
    config,
    listeners,
    services,
    via: config.gateway.via,
  });
}

function compileRoute(
  r: RouteConfig,
  index: number,
  services: ReadonlyMap<string, UpstreamService>,
  scheme: string,
  policies: readonly CompiledPolicy[] = [],
  versioning?: RouteVersioning,
): CompiledRoute {
  const matchPrefix = r.match.path && 'prefix' in r.match.path ? r.match.path.prefix : undefined;
  // Policies first (in phase order: address, CORS, authentication, authorization, limits, ...), so that nothing
  // of the route, a direct response included, happens for a request they refuse.
  const fromPolicies = policies.length === 0 ? undefined : routePolicyStages(r.name, policies);
  const stages: RequestStage[] = fromPolicies === undefined ? [] : fromPolicies.request;
  const push = (s: RequestStage | undefined) => s && stages.push(s);
  if (versioning !== undefined) {
    // The version a request names is read before anything else; a consumer's pin once authentication ran.
    if (versioning.pin !== undefined) {
      const authn = policies.filter((p) => p.request !== undefined && p.phase <= PolicyPhase.authn).length;
      stages.splice(authn, 0, versioning.pin);
    }
    stages.unshift(versioning.select);
  }
  if (r.directResponse) push(directResponseStage(r.directResponse));
  else if (r.redirect) push(redirectStage(r.redirect, r.match.path ? matchPrefix : '/', scheme));
  else {
    push(rewriteStage(r.rewrite, r.match.path ? matchPrefix : '/'));
    if (r.requestHeaders) push(requestHeaderStage(r.requestHeaders));
  }
  const retry = retryPolicy(r);
  let mirror: MirrorPolicy | undefined;
  if (r.mirror) {
    const svc = services.get(r.mirror.service);
    if (!svc) throw new Error(`route ${r.name}: unknown mirror service ${r.mirror.service}`);
    mirror = Object.freeze({ service: svc, fraction: r.mirror.percent / 100 });
  }
  const fault = r.fault ? faultPolicy(r.fault) : undefined;
  const maxBodyBytes = r.limits.maxBodyBytes ?? Number.POSITIVE_INFINITY;
  let translation: ReturnType<NonNullable<ReturnType<typeof translateKind>>['compile']> | undefined;
  if (r.translate !== undefined) {
    const kind = translateKind(r.translate.type);
    if (kind === undefined) throw new Error(`routes[${index}].translate: unknown type ${r.translate.type}`);
    translation = kind.compile(r.translate, {
      route: { name: r.name, requestTimeout: r.timeouts.request, maxBodyBytes },
      services,
    });
  }
  const responseStages: ResponseStage[] = [];
  // Before the route's header edits, so that they can remove a deprecated version's fields.
  if (versioning !== undefined) responseStages.push(versioning.response);
  if (r.responseHeaders) {
    const s = responseHeaderStage(r.responseHeaders);
    if (s) responseStages.push(s);
  }
  // Response stages run in reverse request order: the route's header edits, then the policies' (last first).
  if (fromPolicies !== undefined) responseStages.push(...fromPolicies.response);
  return Object.freeze({
    name: r.name,
    source: `routes[${index}]`,
    stages: Object.freeze(stages),
    responseStages: Object.freeze(responseStages),
    pickService:
      r.directResponse || r.redirect
        ? undefined
        : versioning !== undefined
          ? versioning.pickService
          : servicePicker(r, services),
    requestTimeout: r.timeouts.request,
    upstreamIdleTimeout: r.timeouts.upstreamIdle,
    maxBodyBytes,
    preserveHost: r.preserveHost,
    retry,
    mirror,
    fault,
    // Retries on connect failure or a refused stream need no copy: nothing of the body was sent.
    buffersBody:
      mirror !== undefined ||
      (retry.attempts > 1 && (retry.on & ~(RetryOn.connectFailure | RetryOn.refusedStream)) !== 0),
    websocket: r.websocket.enabled ? webSocketPolicy(r.websocket) : undefined,
    grpcWeb: r.grpcWeb,
    translator: translation?.translator,
    handler: translation?.handler,
  });
}

export function webSocketPolicy(w: RouteConfig['websocket']): WebSocketPolicy {
  return Object.freeze({
    idleTimeout: w.idleTimeout,
    maxConnections: w.maxConnections ?? Number.POSITIVE_INFINITY,
    maxMessageBytes: w.maxMessageBytes ?? Number.POSITIVE_INFINITY,
  });
}

function retryPolicy(r: RouteConfig): RetryPolicy {
  const rt = r.retries;
  let on = 0;
  for (const c of rt.on) on |= RETRY_BITS[c] ?? 0;
  return Object.freeze({
    attempts: rt.attempts,
    on,
    statusCodes: new Set(rt.statusCodes),
    perTryTimeout: rt.perTryTimeout,
    backoffBase: rt.backoff.base,
    backoffMax: rt.backoff.max,
    nonIdempotent: rt.nonIdempotent,
    replayBuffer: rt.replayBuffer,
    attemptsHeader: rt.attemptsHeader,
  });
}

function faultPolicy(f: NonNullable<RouteConfig['fault']>): FaultPolicy {
  return Object.freeze({
    delayMs: f.delay?.duration ?? 0,
    delayFraction: (f.delay?.percent ?? 0) / 100,
    abortStatus: f.abort?.status ?? 0,
    abortFraction: (f.abort?.percent ?? 0) / 100,
    headers: f.headers,
  });
}

/** Weighted traffic split across a route's backends; a single backend costs nothing per request. */
function servicePicker(
  r: RouteConfig,
  services: ReadonlyMap<string, UpstreamService>,
): () => UpstreamService {
  return backendPicker(r.backends ?? [], services, `route ${r.name}`);
}

/** Weighted split across backends (a route's, or an API version's); `where` names them in errors. */
function backendPicker(
  list: readonly { service: string; weight: number }[],
  services: ReadonlyMap<string, UpstreamService>,
  where: string,
): () => UpstreamService {
  const backends = list.filter((b) => b.weight > 0);
  const resolved = backends.map((b) => {
    const svc = services.get(b.service);
    if (!svc) throw new Error(`${where}: unknown service ${b.service}`);
    return { svc, weight: b.weight };
  });
  if (resolved.length === 0) throw new Error(`${where}: no backend with a weight above 0`);
  if (resolved.length === 1) {
    const only = resolved[0]!.svc;
    return () => only;
  }
  const total = resolved.reduce((s, b) => s + b.weight, 0);
  return function weightedSplit() {
    let n = Math.random() * total;
    for (const b of resolved) {
      n -= b.weight;
      if (n < 0) return b.svc;
    }
    return resolved[resolved.length - 1]!.svc;
  };
}

function trustedList(entries: readonly string[]): BlockList | undefined {
  if (entries.length === 0) return undefined;
  const list = new BlockList();
  for (const e of entries) {
    const [addr, bits] = e.split('/') as [string, string | undefined];
    const family = isIPv6(addr) ? 'ipv6' : 'ipv4';
    if (!isIPv4(addr) && !isIPv6(addr)) throw new Error(`invalid trusted proxy address ${e}`);
    if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  return list;
}
