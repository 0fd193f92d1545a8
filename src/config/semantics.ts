/**
 * Checks the schema cannot express: references resolve, names and addresses are unique, URLs, addresses, regexes
 * and templates are well formed, and fields that only make sense together come together.
 * Runs on a config that passed the schema, so every default is filled in.
 */
import { statSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { checkApis } from '../api/semantics.js';
import { compileRouter, RouterCompileError } from '../router/index.js';
import { checkTranslate } from '../translate/semantics.js';
import type { ConfigIssue, PathSegment } from './errors.js';
import { checkPolicies } from './policy-semantics.js';
import type { Config, RouteConfig, ServiceConfig } from './schema.js';
import { didYouMean } from './suggest.js';
import { inspectTls, inspectUpstreamTls, isInlinePem } from './tls.js';

export interface SemanticsOptions {
  /** Relative `accessLog.output` paths are resolved against this folder (the config file's); default: cwd. */
  baseDir?: string;
  /** Paths whose values came from ${env:} or ${file:}: never quoted back in a message. */
  secretPaths?: readonly (readonly PathSegment[])[];
}

/** Same rule as the router's, so a template that passes here also compiles there. */
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function checkSemantics(config: Config, opts: SemanticsOptions = {}): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (path: PathSegment[], message: string, key = false): void => {
    issues.push(key ? { path, message, at: { path, key: true } } : { path, message });
  };

  uniqueNames('listener', 'listeners', config.listeners, add);
  uniqueNames('route', 'routes', config.routes, add);
  uniqueNames('service', 'services', config.services, add);
  checkPolicies(config, add, opts.baseDir);
  checkListeners(config, add);
  config.listeners.forEach((l, i) => {
    if (l.tls !== undefined) checkListenerTls(l.tls, ['listeners', i, 'tls'], opts, add);
  });
  const serviceNames = config.services.map((s) => s.name);
  const listenerNames = config.listeners.map((l) => l.name);
  config.routes.forEach((route, i) => {
    checkRoute(route, ['routes', i], serviceNames, listenerNames, add);
  });
  if (issues.length === 0) checkRouterCompiles(config, add);
  config.routes.forEach((route, i) => {
    checkResilience(route, ['routes', i], serviceNames, add);
    checkRouteProtocols(route, ['routes', i], config.services, add);
  });
  checkTranslate(config.routes, config.services, opts.baseDir ?? process.cwd(), add);
  checkApis(config, add);
  config.services.forEach((service, i) => {
    checkServiceUpstream(service, ['services', i], add);
    checkServiceProtocol(service, ['services', i], opts, add);
    const seen = new Map<string, number>();
    (service.endpoints ?? []).forEach((endpoint, j) => {
      const path: PathSegment[] =
        typeof endpoint === 'string'
          ? ['services', i, 'endpoints', j]
          : ['services', i, 'endpoints', j, 'url'];
      const url = typeof endpoint === 'string' ? endpoint : endpoint.url;
      const secret = (opts.secretPaths ?? []).some(
        (sp) => sp.length === path.length && sp.every((seg, k) => String(seg) === String(path[k])),
      );
      const problem = endpointProblem(url, secret);
      if (problem !== undefined) {
        add(path, problem);
        return;
      }
      const origin = new URL(url).origin;
      const first = seen.get(origin);
      if (first !== undefined)
        add(path, `duplicate endpoint ${origin} (also services[${i}].endpoints[${first}])`);
      else seen.set(origin, j);
    });
  });
  const admin = config.admin;
  if (admin.enabled && !isLoopbackAddress(admin.address) && admin.token === undefined)
    add(
      ['admin', 'address'],
      `the admin API on ${admin.address} is reachable beyond this machine: set admin.token (use \${env:NAME} or \${file:PATH}) or bind 127.0.0.1`,
    );
  const logProblem = accessLogProblem(config.accessLog.output, opts.baseDir ?? process.cwd());
  if (logProblem !== undefined) add(['accessLog', 'output'], logProblem);
  return issues;
}

type Add = (path: PathSegment[], message: string, key?: boolean) => void;

/** 127.0.0.0/8, ::1 and localhost: only this machine can connect. */
export function isLoopbackAddress(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address === 'localhost';
}

/** Endpoint source, balancer key and health check settings that only make sense together. */
function checkServiceUpstream(s: ServiceConfig, at: PathSegment[], add: Add): void {
  if (s.endpoints === undefined && s.dns === undefined)
    add(at, 'expected `endpoints` or `dns`: a service needs somewhere to send requests');
  else if (s.endpoints !== undefined && s.dns !== undefined)
    add([...at, 'dns'], 'expected `endpoints` or `dns`, not both');
  const lb = s.loadBalancer;
  const hashed = lb.type === 'ring-hash' || lb.type === 'maglev';
  const keys = lb.hashOn ? Object.values(lb.hashOn).filter((v) => v !== undefined && v !== false).length : 0;
  if (hashed && keys !== 1)
    add(
      [...at, 'loadBalancer', 'hashOn'],
      `expected exactly one of header, cookie, query or clientIp: ${lb.type} hashes a request key`,
    );
  else if (!hashed && lb.hashOn !== undefined)
    add([...at, 'loadBalancer', 'hashOn'], `hashOn needs type ring-hash or maglev, not ${lb.type}`);
  s.dns?.servers?.forEach((server, j) => {
    if (!dnsServerValid(server))
      add([...at, 'dns', 'servers', j], `expected an IP address with an optional port, got "${server}"`);
  });
  s.healthCheck?.expectedStatuses.forEach((r, j) => {
    if (typeof r === 'string') {
      const [lo, hi] = r.split('-').map(Number) as [number, number];
      if (lo > hi) add([...at, 'healthCheck', 'expectedStatuses', j], `range ${r} is empty: ${lo} > ${hi}`);
    }
  });
  const hc = s.healthCheck;
  if (hc !== undefined && hc.type !== 'http') {
    for (const k of ['bodyContains', 'host'] as const)
      if (hc[k] !== undefined) add([...at, 'healthCheck', k], `${k} applies to http checks, not ${hc.type}`);
  }
  const er = s.circuitBreaker.errorRate;
  if (er !== undefined && er.openFor > er.maxOpenFor)
    add([...at, 'circuitBreaker', 'errorRate', 'openFor'], 'expected openFor ≤ maxOpenFor');
  const od = s.outlierDetection;
  if (od.baseEjectionTime > od.maxEjectionTime)
    add([...at, 'outlierDetection', 'baseEjectionTime'], 'expected baseEjectionTime ≤ maxEjectionTime');
}

function dnsServerValid(server: string): boolean {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(server) ?? /^([^:]+):(\d+)$/.exec(server);
  const host = m ? m[1]! : server;
  const port = m ? Number(m[2]) : 53;
  return isIP(host) !== 0 && port >= 1 && port <= 65535;
}

/** Retries, mirror and fault settings of a route. */
function checkResilience(r: RouteConfig, at: PathSegment[], services: string[], add: Add): void {
  const rt = r.retries;
  if (rt.on.includes('retriable-status-codes') && rt.statusCodes.length === 0)
    add([...at, 'retries', 'statusCodes'], 'retriable-status-codes is in `on` but no statusCodes are listed');
  if (rt.statusCodes.length > 0 && !rt.on.includes('retriable-status-codes'))
    add([...at, 'retries', 'on'], 'statusCodes are listed but `on` lacks retriable-status-codes');
  if (rt.backoff.base > rt.backoff.max) add([...at, 'retries', 'backoff', 'base'], 'expected base ≤ max');
  if (r.mirror !== undefined && !services.includes(r.mirror.service)) {
    const hint =
      services.length === 0 ? ' (no services are defined)' : didYouMean(r.mirror.service, services);
    add([...at, 'mirror', 'service'], `unknown service "${r.mirror.service}"${hint}`);
  }
  if ((r.mirror || r.fault) && (r.redirect || r.directResponse))
    add(
      [...at, r.mirror ? 'mirror' : 'fault'],
      'a route that answers locally has no upstream to mirror or fault',
    );
  if (r.websocket.enabled && (r.redirect || r.directResponse))
    add(
      [...at, 'websocket', 'enabled'],
      'a route that answers locally has no upstream to relay a WebSocket to',
    );
}

function uniqueNames(kind: string, key: string, items: readonly { name: string }[], add: Add): void {
  const first = new Map<string, number>();
  items.forEach((item, i) => {
    const j = first.get(item.name);
    if (j === undefined) first.set(item.name, i);
    else add([key, i, 'name'], `duplicate ${kind} name "${item.name}" (also ${key}[${j}])`);
  });
}

// ---------- listeners ----------

interface Binding {
  path: PathSegment[];
  label: string;
  address: string;
  port: number;
}

function checkListeners(config: Config, add: Add): void {
  const bindings: Binding[] = [];
  config.listeners.forEach((l, i) => {
    if (isIP(l.address) === 0) {
      add(
        ['listeners', i, 'address'],
        `expected an IPv4 or IPv6 address such as "127.0.0.1" or "::", got "${l.address}"`,
      );
    } else {
      bindings.push({
        path: ['listeners', i, 'port'],
        label: `listeners[${i}] ("${l.name}")`,
        address: l.address,
        port: l.port,
      });
    }
    l.trustedProxies.forEach((entry, k) => {
      if (parseAddressOrCidr(entry) === undefined) {
        add(
          ['listeners', i, 'trustedProxies', k],
          `expected an IP address or CIDR range such as "10.0.0.0/8" or "fd00::/8", got "${entry}"`,
        );
      }
    });
  });
  if (config.admin.enabled) {
    if (isIP(config.admin.address) === 0) {
      add(
        ['admin', 'address'],
        `expected an IPv4 or IPv6 address such as "127.0.0.1", got "${config.admin.address}"`,
      );
    } else {
      bindings.push({
        path: ['admin', 'port'],
        label: 'the admin listener',
        address: config.admin.address,
        port: config.admin.port,
      });
    }
  }
  bindings.forEach((b, i) => {
    // Port 0 asks the kernel for a free port, so those never collide.
    if (b.port === 0) return;
    const other = bindings
      .slice(0, i)
      .find((a) => a.port === b.port && addressesOverlap(a.address, b.address));
    if (other !== undefined) {
      add(
        b.path,
        `${hostPort(b.address, b.port)} is already used by ${other.label} on ${hostPort(other.address, other.port)}`,
      );
    }
  });
}

function hostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

function sameAddress(a: string, b: string): boolean {
  const family = isIP(a);
  if (family !== isIP(b)) return false;
  const list = new BlockList();
  const type = family === 6 ? 'ipv6' : 'ipv4';
  list.addAddress(a, type);
  return list.check(b, type);
}

/** Whether two sockets on one port would collide: equal addresses, or one is a wildcard covering the other. */
function addressesOverlap(a: string, b: string): boolean {
  if (sameAddress(a, b)) return true;
  // `::` listens dual-stack in Node by default, so it covers IPv4 as well.
  if (sameAddress(a, '::') || sameAddress(b, '::')) return true;
  if (sameAddress(a, '0.0.0.0')) return isIP(b) === 4;
  if (sameAddress(b, '0.0.0.0')) return isIP(a) === 4;
  return false;
}

/** `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8` → address, prefix length and family; undefined when invalid. */
export function parseAddressOrCidr(
  s: string,
): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = s.indexOf('/');
  const address = slash < 0 ? s : s.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return undefined;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  const max = version === 4 ? 32 : 128;
  if (slash < 0) return { address, prefix: max, family };
  const bits = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return undefined;
  const prefix = Number(bits);
  try {
    new BlockList().addSubnet(address, prefix, family);
  } catch {
    return undefined;
  }
  return { address, prefix, family };
}

/** Certificates, keys and the client CA: read, parsed and checked now (see tls.ts), each error naming its file. */
function checkListenerTls(
  tls: NonNullable<Config['listeners'][number]['tls']>,
  at: PathSegment[],
  opts: SemanticsOptions,
  add: Add,
): void {
  const secret = (path: PathSegment[]) =>
    (opts.secretPaths ?? []).some(
      (sp) => sp.length === path.length && sp.every((seg, k) => String(seg) === String(path[k])),
    );
  // A key written into the config itself would be shown by the admin API's /config; one from a reference is redacted.
  tls.certificates.forEach((c, j) => {
    const path = [...at, 'certificates', j, 'key'];
    if (isInlinePem(c.key) && !secret(path))
      add(path, 'a private key must not be written into the config: give its file path, or use ${file:PATH}');
  });
  const r = inspectTls(tls, opts.baseDir ?? process.cwd());
  if (!r.ok) for (const p of r.problems) add([...at, ...p.path], p.message);
}

// ---------- upstream protocols and TLS ----------

/** Whether a service talks TLS to its endpoints: https:// URLs, or `tls.enabled` (DNS discovery). */
export function serviceUsesTls(s: ServiceConfig): boolean {
  if (s.tls?.enabled !== undefined) return s.tls.enabled;
  const first = s.endpoints?.[0];
  if (first === undefined) return false;
  return (typeof first === 'string' ? first : first.url).toLowerCase().startsWith('https:');
}

/** Endpoint schemes, `protocol` and `tls` agree; the TLS files are read and checked now. */
function checkServiceProtocol(s: ServiceConfig, at: PathSegment[], opts: SemanticsOptions, add: Add): void {
  const schemes = (s.endpoints ?? []).map((e) => {
    const url = (typeof e === 'string' ? e : e.url).toLowerCase();
    return url.startsWith('https:') ? 'https' : url.startsWith('http:') ? 'http' : undefined;
  });
  const firstScheme = schemes.find((x) => x !== undefined);
  schemes.forEach((scheme, j) => {
    if (scheme !== undefined && scheme !== firstScheme)
      add(
        typeof s.endpoints![j] === 'string' ? [...at, 'endpoints', j] : [...at, 'endpoints', j, 'url'],
        `every endpoint of a service uses one scheme: this one is ${scheme}://, an earlier one ${firstScheme}://`,
      );
  });
  const tls = s.tls;
  if (tls?.enabled === true && firstScheme === 'http')
    add([...at, 'tls', 'enabled'], 'the endpoints are http:// URLs: write them as https:// for TLS');
  else if (tls?.enabled === false && firstScheme === 'https')
    add(
      [...at, 'tls', 'enabled'],
      'the endpoints are https:// URLs, which always use TLS: write http:// ones',
    );
  else if (tls !== undefined && tls.enabled === undefined && firstScheme === 'http')
    add(
      [...at, 'tls'],
      'tls settings have no effect on http:// endpoints: write them as https:// (or with dns, set tls.enabled: true)',
    );
  else if (tls !== undefined && tls.enabled === undefined && s.endpoints === undefined)
    add([...at, 'tls', 'enabled'], 'with dns discovery, set tls.enabled: true to use TLS to the endpoints');
  const secure = serviceUsesTls(s);
  if (s.protocol === 'h2' && !secure)
    add(
      [...at, 'protocol'],
      'h2 is HTTP/2 over TLS: use https:// endpoints (or tls.enabled with dns), or protocol h2c for cleartext HTTP/2',
    );
  else if (s.protocol === 'h2c' && secure)
    add([...at, 'protocol'], 'h2c is cleartext HTTP/2: use protocol h2 for HTTP/2 over TLS');
  if (tls === undefined || !secure) return;
  if (tls.cert !== undefined && tls.key === undefined)
    add([...at, 'tls', 'key'], 'a client certificate (`cert`) needs its private key (`key`)');
  else if (tls.key !== undefined && tls.cert === undefined)
    add([...at, 'tls', 'cert'], 'a private key (`key`) needs its client certificate (`cert`)');
  const keyPath = [...at, 'tls', 'key'];
  const secret = (opts.secretPaths ?? []).some(
    (sp) => sp.length === keyPath.length && sp.every((seg, k) => String(seg) === String(keyPath[k])),
  );
  if (tls.key !== undefined && isInlinePem(tls.key) && !secret)
    add(
      keyPath,
      'a private key must not be written into the config: give its file path, or use ${file:PATH}',
    );
  for (const p of inspectUpstreamTls(tls, opts.baseDir ?? process.cwd()).problems)
    add([...at, 'tls', ...p.path], p.message);
}

/** gRPC and WebSocket routes need services that speak what they carry. */
function checkRouteProtocols(r: RouteConfig, at: PathSegment[], services: ServiceConfig[], add: Add): void {
  const g = r.match.grpc;
  if (g !== undefined) {
    if (r.match.path !== undefined)
      add([...at, 'match', 'path'], 'match.grpc sets the path (/service/method): remove match.path');
    if (r.match.methods !== undefined)
      add(
        [...at, 'match', 'methods'],
        'gRPC calls are POST requests: remove match.methods beside match.grpc',
      );
  }
  r.backends?.forEach((b, j) => {
    const svc = services.find((s) => s.name === b.service);
    if (svc === undefined) return;
    if ((g !== undefined || r.grpcWeb) && svc.protocol === 'http1')
      add(
        [...at, 'backends', j, 'service'],
        `gRPC needs HTTP/2 to the service: service "${svc.name}" has protocol http1; set its protocol to h2c (or h2 with TLS)`,
      );
    if (r.websocket.enabled && svc.protocol !== 'http1')
      add(
        [...at, 'websocket', 'enabled'],
        `WebSockets are relayed over HTTP/1.1: service "${svc.name}" has protocol ${svc.protocol}`,
      );
  });
}

// ---------- routes ----------

function checkRoute(
  route: RouteConfig,
  at: PathSegment[],
  services: string[],
  listeners: string[],
  add: Add,
): void {
  route.listeners?.forEach((name, k) => {
    if (!listeners.includes(name))
      add([...at, 'listeners', k], `unknown listener "${name}"${didYouMean(name, listeners)}`);
  });

  const actions = (['backends', 'redirect', 'directResponse'] as const).filter((k) =>
    k === 'backends' ? route.backends !== undefined && route.backends.length > 0 : route[k] !== undefined,
  );
  const choice = 'a route needs exactly one of "backends", "redirect" or "directResponse"';
  // A route of a versioned API takes its backends from the API (src/api/semantics.ts checks it).
  const own = route.api === undefined;
  if (own && actions.length === 0) {
    if (route.backends !== undefined) add([...at, 'backends'], `"backends" is empty; ${choice}`);
    else add(at, choice);
  } else if (own && actions.length > 1) {
    add([...at, actions[1]!], `"${actions[0]}" and "${actions[1]}" cannot be combined; ${choice}`, true);
  }

  route.backends?.forEach((b, j) => {
    if (services.includes(b.service)) return;
    const hint = services.length === 0 ? ' (no services are defined)' : didYouMean(b.service, services);
    add([...at, 'backends', j, 'service'], `unknown service "${b.service}"${hint}`);
  });
  if (
    route.backends !== undefined &&
    route.backends.length > 0 &&
    route.backends.every((b) => b.weight === 0)
  ) {
    add(
      [...at, 'backends'],
      'every backend has weight 0; at least one needs a weight above 0 to receive traffic',
    );
  }

  const match = route.match;
  match.headers?.forEach((h, k) => {
    if (h.regex !== undefined) regexProblem(h.regex, [...at, 'match', 'headers', k, 'regex'], add);
  });
  match.query?.forEach((q, k) => {
    if (q.regex !== undefined) regexProblem(q.regex, [...at, 'match', 'query', k, 'regex'], add);
  });
  const path = match.path;
  if (path !== undefined && 'regex' in path) regexProblem(path.regex, [...at, 'match', 'path', 'regex'], add);
  if (path !== undefined && 'template' in path) {
    const problem = templateProblem(path.template);
    if (problem !== undefined) add([...at, 'match', 'path', 'template'], problem);
  }

  // A prefix rewrite replaces the matched prefix; other matches have none. An absent path matches prefix "/".
  const matchKind = path === undefined ? 'prefix' : Object.keys(path)[0];
  const needsPrefix = (where: PathSegment[], what: string) =>
    add(
      where,
      `a prefix ${what} needs a "prefix" path match; this route matches by "${matchKind}" (use "full" instead)`,
    );
  const rewritePath = route.rewrite?.path;
  if (rewritePath !== undefined && 'prefix' in rewritePath && matchKind !== 'prefix') {
    needsPrefix([...at, 'rewrite', 'path', 'prefix'], 'rewrite');
  }
  if (rewritePath !== undefined && 'regex' in rewritePath) {
    regexProblem(rewritePath.regex, [...at, 'rewrite', 'path', 'regex'], add);
  }
  const redirectPath = route.redirect?.path;
  if (redirectPath !== undefined && 'prefix' in redirectPath && matchKind !== 'prefix') {
    needsPrefix([...at, 'redirect', 'path', 'prefix'], 'redirect');
  }
}

function regexProblem(pattern: string, path: PathSegment[], add: Add): void {
  try {
    new RegExp(pattern);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    add(path, `invalid regular expression ${JSON.stringify(pattern)}: ${reason}`);
  }
}

function templateProblem(template: string): string | undefined {
  const seen = new Set<string>();
  for (const segment of template.split('/')) {
    if (!segment.startsWith(':')) continue;
    const name = segment.slice(1);
    if (name === '') return `empty parameter name in template "${template}": write ":name"`;
    if (!PARAM_NAME.test(name) || name === '__proto__') {
      return `invalid parameter name "${name}" in template "${template}": expected letters, digits, "_" or "-"`;
    }
    if (seen.has(name)) return `duplicate parameter ":${name}" in template "${template}"`;
    seen.add(name);
  }
  return undefined;
}

// ---------- services, access log ----------

/** Why `url` is not an `http://host:port` endpoint, or undefined when it is one. */
export function endpointProblem(url: string, secret = false): string | undefined {
  const example = 'expected an endpoint URL such as "http://127.0.0.1:3000"';
  // A URL that came from a secret: say what is wrong without quoting it.
  const quote = (v: string) => (secret ? '(a secret value)' : v);
  // Without "scheme://", `localhost:3000` would parse with the scheme "localhost:".
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return `${example}, got ${quote(`"${url}"`)}`;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `${example}, got ${quote(`"${url}"`)}`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    return `expected an http: or https: endpoint, got "${u.protocol}" in ${quote(`"${url}"`)}`;
  if (u.username !== '' || u.password !== '') return `an endpoint URL cannot hold credentials; ${example}`;
  if (u.pathname !== '/' || u.search !== '' || u.hash !== '' || /[?#]/.test(url)) {
    return `an endpoint URL has no path, query or fragment (rewrite paths with "rewrite"); ${example}, got ${quote(`"${url}"`)}`;
  }
  if (u.port === '0') return `an endpoint port must be 1-65535, got 0 in ${quote(`"${url}"`)}`;
  return undefined;
}

function accessLogProblem(output: string, baseDir: string): string | undefined {
  if (output === 'off' || output === 'stdout') return undefined;
  if (output === '') return 'expected "off", "stdout" or a file path';
  const file = resolve(baseDir, output);
  const dir = dirname(file);
  try {
    if (!statSync(dir).isDirectory()) return `"${dir}" is not a directory`;
  } catch {
    return `directory "${dir}" does not exist; expected "off", "stdout" or a file path in an existing directory`;
  }
  try {
    if (statSync(file).isDirectory()) return `"${file}" is a directory; expected a file path`;
  } catch {
    // The file is created on first write.
  }
  return undefined;
}

/** The file an `accessLog.output` value names, absolute; `off` and `stdout` unchanged. */
export function resolveAccessLogOutput(output: string, baseDir: string): string {
  return output === 'off' || output === 'stdout' ? output : resolve(baseDir, output);
}

/**
 * The gateway compiles routes with the router; whatever the router refuses must fail validation too, at the
 * route that caused it, or `validate` would pass a file that `gateway` cannot start with.
 */
function checkRouterCompiles(config: Config, add: (path: PathSegment[], message: string) => void): void {
  try {
    compileRouter(
      config.routes.map((r) => ({
        hosts: r.match.hosts?.map((h) => h.toLowerCase()),
        path: r.match.path,
        methods: r.match.methods,
        headers: r.match.headers,
        query: r.match.query,
        value: null,
      })),
    );
  } catch (err) {
    if (!(err instanceof RouterCompileError)) throw err;
    const field: PathSegment[] = [];
    for (const part of err.field.split('.')) {
      const m = /^([^[\]]+)((?:\[\d+\])*)$/.exec(part);
      if (!m) {
        field.push(part);
        continue;
      }
      field.push(m[1]!);
      for (const idx of m[2]!.matchAll(/\[(\d+)\]/g)) field.push(Number(idx[1]));
    }
    add(['routes', err.routeIndex, 'match', ...field], err.detail);
  }
}
