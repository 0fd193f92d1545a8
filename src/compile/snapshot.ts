import { createHash } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { Pool } from 'undici';
import type { Config, ListenerConfig, RouteConfig } from '../config/schema.js';
import type { RequestStage, ResponseStage } from '../proxy/stage.js';
import { compileRouter, type RouteMatchSpec, type Router, RouterCompileError } from '../router/index.js';
import { requestHeaderStage, responseHeaderStage } from '../stages/header-edits.js';
import { directResponseStage, redirectStage } from '../stages/local-replies.js';
import { rewriteStage } from '../stages/rewrite.js';
import type { PoolRegistry } from '../upstream/pools.js';
import { buildService, type UpstreamService } from '../upstream/service.js';

/** A route ready to serve: only the stages it uses, its upstream resolved, nothing looked up by name. */
export interface CompiledRoute {
  readonly name: string;
  /** Where it came from in the config, for logs and errors: `routes[3]`. */
  readonly source: string;
  readonly stages: readonly RequestStage[];
  /** Applied in order: the reverse of the route order. */
  readonly responseStages: readonly ResponseStage[];
  /** Picks the service for one request (weighted split); undefined for routes that answer locally. */
  readonly pickService: (() => UpstreamService) | undefined;
  readonly requestTimeout: number;
  readonly upstreamIdleTimeout: number;
  /** Infinity when the route sets no limit. */
  readonly maxBodyBytes: number;
  readonly preserveHost: boolean;
}

export interface ListenerState {
  readonly name: string;
  readonly config: ListenerConfig;
  readonly router: Router<CompiledRoute>;
  /** Peers whose forwarding headers are trusted; undefined when nobody is. */
  readonly trusted: BlockList | undefined;
  readonly scheme: 'http';
}

export interface Snapshot {
  readonly version: number;
  readonly hash: string;
  readonly config: Config;
  readonly listeners: ReadonlyMap<string, ListenerState>;
  readonly services: ReadonlyMap<string, UpstreamService>;
  /** Pools this snapshot uses: the registry closes the others after the swap. */
  readonly pools: ReadonlySet<Pool>;
  /** `Via` pseudonym, '' for none. */
  readonly via: string;
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
  pools: PoolRegistry,
  hash?: string,
): Snapshot {
  const services = new Map<string, UpstreamService>();
  const usedPools = new Set<Pool>();
  for (const s of config.services) {
    const svc = buildService(s, pools);
    services.set(s.name, svc);
    for (const e of svc.endpoints) usedPools.add(e.pool);
  }

  const listeners = new Map<string, ListenerState>();
  for (const l of config.listeners) {
    const specs: RouteMatchSpec<CompiledRoute>[] = [];
    const configIndex: number[] = [];
    config.routes.forEach((r, i) => {
      if (r.listeners && !r.listeners.includes(l.name)) return;
      configIndex.push(i);
      specs.push({
        hosts: r.match.hosts?.map((h) => h.toLowerCase()),
        path: r.match.path,
        methods: r.match.methods,
        headers: r.match.headers,
        query: r.match.query,
        value: compileRoute(r, i, services, 'http'),
      });
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
        scheme: 'http' as const,
      }),
    );
  }

  return Object.freeze({
    version,
    hash: hash ?? configHash(config),
    config,
    listeners,
    services,
    pools: usedPools,
    via: config.gateway.via,
  });
}

function compileRoute(
  r: RouteConfig,
  index: number,
  services: ReadonlyMap<string, UpstreamService>,
  scheme: string,
): CompiledRoute {
  const matchPrefix = r.match.path && 'prefix' in r.match.path ? r.match.path.prefix : undefined;
  const stages: RequestStage[] = [];
  const push = (s: RequestStage | undefined) => s && stages.push(s);
  if (r.directResponse) push(directResponseStage(r.directResponse));
  else if (r.redirect) push(redirectStage(r.redirect, r.match.path ? matchPrefix : '/', scheme));
  else {
    push(rewriteStage(r.rewrite, r.match.path ? matchPrefix : '/'));
    if (r.requestHeaders) push(requestHeaderStage(r.requestHeaders));
  }
  const responseStages: ResponseStage[] = [];
  if (r.responseHeaders) {
    const s = responseHeaderStage(r.responseHeaders);
    if (s) responseStages.push(s);
  }
  return Object.freeze({
    name: r.name,
    source: `routes[${index}]`,
    stages: Object.freeze(stages),
    responseStages: Object.freeze(responseStages),
    pickService: r.directResponse || r.redirect ? undefined : servicePicker(r, services),
    requestTimeout: r.timeouts.request,
    upstreamIdleTimeout: r.timeouts.upstreamIdle,
    maxBodyBytes: r.limits.maxBodyBytes ?? Number.POSITIVE_INFINITY,
    preserveHost: r.preserveHost,
  });
}

/** Weighted traffic split across a route's backends; a single backend costs nothing per request. */
function servicePicker(
  r: RouteConfig,
  services: ReadonlyMap<string, UpstreamService>,
): () => UpstreamService {
  const backends = (r.backends ?? []).filter((b) => b.weight > 0);
  const resolved = backends.map((b) => {
    const svc = services.get(b.service);
    if (!svc) throw new Error(`route ${r.name}: unknown service ${b.service}`);
    return { svc, weight: b.weight };
  });
  if (resolved.length === 0) throw new Error(`route ${r.name}: no backend with a weight above 0`);
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
