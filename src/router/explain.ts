import type { IncomingHttpHeaders } from 'node:http';
import { normalizePath } from './normalize.js';
import { compareTemplates, compareTies } from './precedence.js';
import { parseQuery } from './query.js';
import { type CompiledPath, type CompiledRoute, compileHosts, compileRoute, type Template } from './route.js';
import type { RouteMatchSpec, RouterRequest, ValueMatchSpec } from './types.js';

/**
 * Request explain: which route a request matches and why every other route did not. It is a second, plain
 * implementation of the router's rules (host groups, then exact / template / regex / prefix, then the
 * tie-breakers), built from the router's own pieces (compileRoute, compileHosts, the precedence comparators,
 * parseQuery, normalizePath), and slow on purpose: every route is checked on every condition, so each can say
 * what failed. A differential test holds it to the real router's answer.
 */

/** Where a route sits among host groups: one exact host, one wildcard suffix, or any host. */
type Group =
  | { readonly kind: 'exact'; readonly host: string }
  | { readonly kind: 'wildcard'; readonly suffix: string }
  | { readonly kind: 'any' };

export interface RouteExplanation {
  /** Position in the specs the explainer was built from. */
  readonly index: number;
  /** `match`: the winner; `lower_precedence`: matched everything but another route comes first. */
  readonly verdict: 'match' | 'lower_precedence' | 'no_match';
  /** What failed, one line per condition (empty for the winner); for `lower_precedence`, the rule. */
  readonly reasons: string[];
  /** The first host group the route is in for this host (`host a.example.com`, `wildcard *.example.com`, `any host`); null when its hosts do not cover the request host. */
  readonly hostGroup: string | null;
}

export interface Explanation {
  readonly outcome: 'match' | 'method_not_allowed' | 'not_found';
  /** Index of the winning spec. */
  readonly winner: number | undefined;
  /** The host group the winner was found in. */
  readonly hostGroup: string | undefined;
  /** Template parameters of the winner, raw as the router gives them. */
  readonly params: Record<string, string> | undefined;
  /** With `method_not_allowed`: the Allow list, as the router builds it. */
  readonly allow: string[] | undefined;
  /** Spec indices in the order the router tries them for this request (routes whose hosts do not cover it left out). */
  readonly tried: number[];
  /** One per spec, in spec order. */
  readonly routes: RouteExplanation[];
}

export interface Explainer {
  /** `label(i)` names spec i in the reasons (default `routes[i]`). */
  explain(req: RouterRequest, label?: (index: number) => string): Explanation;
  /** Spec indices in precedence order, for listings: routes with an exact host, then wildcards (longest suffix first), then any host; within each, the order of a host group. */
  readonly order: readonly number[];
}

interface Entry {
  readonly route: CompiledRoute<number>;
  /** What the reasons quote: the spec, or its display twin (secret values redacted). */
  readonly spec: RouteMatchSpec<unknown>;
  readonly exactHosts: readonly string[];
  readonly wildcards: readonly string[];
  readonly anyHost: boolean;
  /** First position of its regex among all specs (regex buckets are tried in order of first appearance). */
  regexRank: number;
}

const KIND_RANK = { exact: 0, template: 1, regex: 2, prefix: 3 } as const;
const KIND_NAME = { exact: 'exact', template: 'template', regex: 'regex', prefix: 'prefix' } as const;

/**
 * Compiles the specs once; `explain` then runs per request. Throws RouterCompileError as compileRouter does.
 * `display`, parallel to `specs`, is what the reasons quote for hosts and header and query values (the same
 * specs with secret values redacted, say); matching always uses `specs`.
 */
export function createExplainer(
  specs: readonly RouteMatchSpec<unknown>[],
  display?: readonly RouteMatchSpec<unknown>[],
): Explainer {
  const entries: Entry[] = specs.map((spec, index) => {
    const route = compileRoute({ ...spec, value: index }, index);
    const hosts = compileHosts(spec.hosts, index);
    return {
      route,
      spec: display?.[index] ?? spec,
      exactHosts: hosts?.exact ?? [],
      wildcards: hosts?.wildcards ?? [],
      anyHost: hosts === null,
      regexRank: 0,
    };
  });
  const firstRegex = new Map<string, number>();
  for (const e of entries) {
    if (e.route.path.kind !== 'regex') continue;
    const src = e.route.path.source;
    if (!firstRegex.has(src)) firstRegex.set(src, e.route.index);
    e.regexRank = firstRegex.get(src)!;
  }
  return {
    order: listingOrder(entries),
    explain: (req, label = (i) => `routes[${i}]`) => explain(entries, req, label),
  };
}

/** Within one host group: the order in which the router tries routes whose paths match. */
function compareInGroup(a: Entry, b: Entry): number {
  const pa = a.route.path;
  const pb = b.route.path;
  const byKind = KIND_RANK[pa.kind] - KIND_RANK[pb.kind];
  if (byKind !== 0) return byKind;
  switch (pa.kind) {
    case 'exact': {
      // Different exact paths never match the same request; any fixed order will do between them.
      const other = (pb as typeof pa).path;
      return pa.path < other ? -1 : pa.path > other ? 1 : compareTies(a.route, b.route);
    }
    case 'template':
      return compareTemplates(a.route, b.route);
    case 'regex':
      return a.regexRank - b.regexRank || compareTies(a.route, b.route);
    case 'prefix': {
      const other = (pb as typeof pa).prefix;
      return (
        other.length - pa.prefix.length ||
        (pa.prefix < other ? -1 : pa.prefix > other ? 1 : 0) ||
        compareTies(a.route, b.route)
      );
    }
  }
}

function listingOrder(entries: readonly Entry[]): number[] {
  const cls = (e: Entry) => (e.exactHosts.length > 0 ? 0 : e.wildcards.length > 0 ? 1 : 2);
  const longestSuffix = (e: Entry) => Math.max(0, ...e.wildcards.map((w) => w.length));
  return [...entries]
    .sort((a, b) => cls(a) - cls(b) || longestSuffix(b) - longestSuffix(a) || compareInGroup(a, b))
    .map((e) => e.route.index);
}

/** The host groups a request host meets, in the order the router tries them. */
function groupsFor(entries: readonly Entry[], host: string): { group: Group; members: Entry[] }[] {
  const out: { group: Group; members: Entry[] }[] = [];
  const exact = entries.filter((e) => e.exactHosts.includes(host));
  if (exact.length > 0) out.push({ group: { kind: 'exact', host }, members: exact });
  const suffixes = new Set<string>();
  for (const e of entries) for (const w of e.wildcards) if (covers(w, host)) suffixes.add(w);
  for (const suffix of [...suffixes].sort((a, b) => b.length - a.length)) {
    out.push({
      group: { kind: 'wildcard', suffix },
      members: entries.filter((e) => e.wildcards.includes(suffix)),
    });
  }
  const any = entries.filter((e) => e.anyHost);
  if (any.length > 0) out.push({ group: { kind: 'any' }, members: any });
  return out;
}

/** A wildcard suffix (`.example.com`) covers a host that ends with it and has at least one character in front. */
function covers(suffix: string, host: string): boolean {
  return host.length > suffix.length && host.endsWith(suffix);
}

function groupName(g: Group): string {
  if (g.kind === 'exact') return `host ${g.host}`;
  if (g.kind === 'wildcard') return `wildcard *${g.suffix}`;
  return 'any host';
}

interface Checked {
  /** Failures other than the method, one line each. */
  readonly failures: string[];
  readonly methodFailure: string | undefined;
  readonly params: Record<string, string> | undefined;
}

function explain(entries: readonly Entry[], req: RouterRequest, label: (i: number) => string): Explanation {
  const query = new Map<string, string>();
  parseQuery(req.query, query);
  const checked = entries.map((e) => check(e, req, query));
  const groups = groupsFor(entries, req.host);
  const firstGroup = new Map<number, { group: Group; members: Entry[] }>();
  for (const g of groups)
    for (const e of g.members) if (!firstGroup.has(e.route.index)) firstGroup.set(e.route.index, g);

  // The router's walk: group by group, in group order; the first route that passes everything wins.
  const tried: number[] = [];
  const seen = new Set<number>();
  let winner: Entry | undefined;
  let winnerGroup: { group: Group; members: Entry[] } | undefined;
  const denied: Entry[] = [];
  for (const g of groups) {
    const ordered = [...g.members].sort(compareInGroup);
    for (const e of ordered) {
      const i = e.route.index;
      if (!seen.has(i)) {
        seen.add(i);
        tried.push(i);
      }
      if (winner !== undefined) continue;
      const c = checked[i]!;
      if (c.failures.length > 0) continue;
      if (c.methodFailure !== undefined) {
        denied.push(e);
        continue;
      }
      winner = e;
      winnerGroup = g;
    }
  }

  const routes: RouteExplanation[] = entries.map((e) => {
    const i = e.route.index;
    const g = firstGroup.get(i);
    const c = checked[i]!;
    const reasons: string[] = [];
    if (g === undefined) reasons.push(hostFailure(e, req.host));
    reasons.push(...c.failures);
    if (c.methodFailure !== undefined) reasons.push(c.methodFailure);
    const hostGroup = g === undefined ? null : groupName(g.group);
    if (reasons.length > 0) return { index: i, verdict: 'no_match', reasons, hostGroup };
    if (e === winner) return { index: i, verdict: 'match', reasons, hostGroup };
    const why = g === winnerGroup ? whyFirst(winner!, e) : whyGroupFirst(winnerGroup!.group, g!.group);
    return {
      index: i,
      verdict: 'lower_precedence',
      reasons: [`matched, but ${label(winner!.route.index)} comes first: ${why}`],
      hostGroup,
    };
  });

  if (winner !== undefined) {
    return {
      outcome: 'match',
      winner: winner.route.index,
      hostGroup: groupName(winnerGroup!.group),
      params: checked[winner.route.index]!.params,
      allow: undefined,
      tried,
      routes,
    };
  }
  if (denied.length > 0) {
    const allow = new Set<string>();
    for (const e of denied) for (const m of e.route.methods!) allow.add(m);
    return {
      outcome: 'method_not_allowed',
      winner: undefined,
      hostGroup: undefined,
      params: undefined,
      allow: [...allow].sort(),
      tried,
      routes,
    };
  }
  return {
    outcome: 'not_found',
    winner: undefined,
    hostGroup: undefined,
    params: undefined,
    allow: undefined,
    tried,
    routes,
  };
}

/** Every condition but the host (that is the group), each failure described. */
function check(e: Entry, req: RouterRequest, query: Map<string, string>): Checked {
  const failures: string[] = [];
  const path = matchPath(e.route.path, req.path);
  if (path === null) failures.push(pathFailure(e.route.path, req.path));
  const headers = e.route.headers;
  if (headers !== null) {
    headers.forEach((m, j) => {
      const value = headerValue(req.headers, m.name);
      if (!m.test(value)) failures.push(valueFailure('header', m.name, e.spec.headers?.[j], value));
    });
  }
  const q = e.route.query;
  if (q !== null) {
    q.forEach((m, j) => {
      const value = query.get(m.name);
      if (!m.test(value)) failures.push(valueFailure('query', m.name, e.spec.query?.[j], value));
    });
  }
  const methods = e.route.methods;
  const methodFailure =
    methods === null || methods.includes(req.method)
      ? undefined
      : `method ${req.method} is not in [${methods.join(', ')}]`;
  // As the router: params only for a template with parameters.
  const params = path !== null && Object.keys(path).length > 0 ? path : undefined;
  return { failures, methodFailure, params };
}

/** Params (empty for paths without any) when the path matches, null when it does not. */
function matchPath(p: CompiledPath, path: string): Record<string, string> | null {
  switch (p.kind) {
    case 'exact':
      return path === p.path ? {} : null;
    case 'prefix':
      return prefixMatches(p.prefix, path) ? {} : null;
    case 'regex':
      return p.regex.test(path) ? {} : null;
    case 'template':
      return matchTemplate(p.template, path);
  }
}

/** On a segment boundary: the path is the prefix, continues with `/`, or the prefix is `/`. */
function prefixMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || path[prefix.length] === '/' || prefix.endsWith('/');
}

/** A parameter takes one non-empty segment; literals match as written; the whole path must be used. */
function matchTemplate(t: Template, path: string): Record<string, string> | null {
  const params: Record<string, string> = {};
  let pos = 0;
  let p = 0;
  for (const token of t.tokens) {
    if (token === null) {
      let end = path.indexOf('/', pos);
      if (end === -1) end = path.length;
      if (end === pos) return null;
      params[t.paramNames[p++]!] = path.slice(pos, end);
      pos = end;
    } else {
      if (!path.startsWith(token, pos)) return null;
      pos += token.length;
    }
  }
  return pos === path.length ? params : null;
}

export function templateText(t: Template): string {
  let p = 0;
  return t.tokens.map((token) => (token === null ? `:${t.paramNames[p++]}` : token)).join('');
}

/** The path rule as text: `prefix /api`, `template /users/:id`, ... */
export function pathText(p: CompiledPath): string {
  switch (p.kind) {
    case 'exact':
      return `exact ${p.path}`;
    case 'prefix':
      return `prefix ${p.prefix}`;
    case 'template':
      return `template ${templateText(p.template)}`;
    case 'regex':
      return `regex ${p.source}`;
  }
}

function pathFailure(p: CompiledPath, path: string): string {
  if (p.kind === 'prefix' && path.startsWith(p.prefix)) {
    return `path ${path} does not match prefix ${p.prefix}: not on a segment boundary`;
  }
  if (p.kind === 'prefix') return `path ${path} does not start with prefix ${p.prefix}`;
  if (p.kind === 'exact') return `path ${path} is not exactly ${p.path}`;
  if (p.kind === 'template') return `path ${path} does not fit template ${templateText(p.template)}`;
  return `path ${path} does not match regex ${p.source} (the whole path must match)`;
}

function hostFailure(e: Entry, host: string): string {
  const names = (e.spec.hosts ?? []).map((h) => h.toLowerCase());
  const shown = host === '' ? '(none)' : host;
  const bare = e.wildcards.find((w) => w.slice(1) === host);
  const note = bare ? ` (*${bare} does not cover ${host} itself)` : '';
  return `host ${shown} is not in [${names.join(', ')}]${note}`;
}

function valueFailure(
  what: 'header' | 'query',
  name: string,
  spec: ValueMatchSpec | undefined,
  got: string | undefined,
): string {
  const shown = got === undefined ? '(absent)' : JSON.stringify(got);
  let expected: string;
  if (spec === undefined) expected = 'another value';
  else if (spec.exact !== undefined) expected = JSON.stringify(spec.exact);
  else if (spec.regex !== undefined) expected = `to match /${spec.regex}/`;
  else expected = spec.present ? 'present' : 'absent';
  return `${what} ${name}: expected ${expected}, got ${shown}`;
}

/** The same as the router's: a list value (set-cookie) is joined the way node joins the others. */
function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.join(', ');
  return undefined;
}

/** Why `w` is tried before `l` in one host group (both match the request). */
function whyFirst(w: Entry, l: Entry): string {
  const pw = w.route.path;
  const pl = l.route.path;
  if (pw.kind !== pl.kind) {
    return `${KIND_NAME[pw.kind]} paths are tried before ${KIND_NAME[pl.kind]} paths (exact, then template, then regex, then prefix)`;
  }
  if (pw.kind === 'template' && pl.kind === 'template') {
    const a = pw.template;
    const b = pl.template;
    if (a.literalLength !== b.literalLength) {
      return `its template ${templateText(a)} has more literal characters than ${templateText(b)} (${a.literalLength} vs ${b.literalLength})`;
    }
    if (a.paramNames.length !== b.paramNames.length) {
      return `its template ${templateText(a)} has fewer parameters than ${templateText(b)} (${a.paramNames.length} vs ${b.paramNames.length})`;
    }
  }
  if (pw.kind === 'regex' && pl.kind === 'regex' && pw.source !== pl.source) {
    return `its regex ${pw.source} appears earlier in the config than ${pl.source}`;
  }
  if (pw.kind === 'prefix' && pl.kind === 'prefix' && pw.prefix !== pl.prefix) {
    return `its prefix ${pw.prefix} is longer than ${pl.prefix}`;
  }
  return `both are equal on the path; ${tieReason(w.route, l.route)}`;
}

function tieReason(w: CompiledRoute<number>, l: CompiledRoute<number>): string {
  if ((w.methods !== null) !== (l.methods !== null)) return 'it restricts methods and this route does not';
  const hw = w.headers?.length ?? 0;
  const hl = l.headers?.length ?? 0;
  if (hw !== hl) return `it has more header matchers (${hw} vs ${hl})`;
  const qw = w.query?.length ?? 0;
  const ql = l.query?.length ?? 0;
  if (qw !== ql) return `it has more query matchers (${qw} vs ${ql})`;
  return 'it comes first in the config';
}

/** Why the winner's host group is tried before the first group the other route is in. */
function whyGroupFirst(w: Group, l: Group): string {
  if (w.kind === 'exact') {
    return `routes naming the host ${w.host} exactly are tried before ${l.kind === 'any' ? 'routes for any host' : `wildcard *${(l as { suffix: string }).suffix}`}`;
  }
  if (w.kind === 'wildcard' && l.kind === 'wildcard') {
    return `wildcard *${w.suffix} is tried before *${l.suffix} (longest suffix first)`;
  }
  return `wildcard *${(w as { suffix: string }).suffix} is tried before routes for any host`;
}

/** What an explain request says, before it becomes what the router sees. */
export interface ExplainInput {
  method?: string | undefined;
  /** The Host header (a port is removed, as the gateway does). */
  host?: string | undefined;
  /** The request target: path, optionally with `?query`. */
  path: string;
  /** Header values; a repeated header as a list. */
  headers?: Readonly<Record<string, string | readonly string[]>> | undefined;
  /** Raw query string without `?`, appended to one in `path`. */
  query?: string | undefined;
}

/**
 * Headers Node.js keeps once (it drops later copies); `cookie` is joined with `; `, set-cookie stays a list, the
 * others are joined with `, ` (node's IncomingMessage rules), so matchers see the value a real request gives.
 */
const KEEP_FIRST = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

/**
 * Turns an explain request into what the router sees, the way the gateway does: the path normalized
 * (normalizePath), the query split off, the host lower-cased without its port, the method upper-cased (Node.js only
 * accepts upper-case methods), header names lower-cased and repeated headers combined as Node.js combines them.
 */
export function toRouterRequest(
  input: ExplainInput,
): { ok: true; request: RouterRequest } | { ok: false; error: string } {
  const target = input.path;
  if (typeof target !== 'string' || !target.startsWith('/')) {
    return { ok: false, error: `path must start with "/", got ${JSON.stringify(target)}` };
  }
  const q = target.indexOf('?');
  const raw = q === -1 ? target : target.slice(0, q);
  const path = normalizePath(raw);
  if (path === null) {
    return { ok: false, error: `path ${raw} has a malformed percent-encoding (the gateway answers 400)` };
  }
  const query = [q === -1 ? '' : target.slice(q + 1), input.query ?? ''].filter((s) => s !== '').join('&');
  const headers: IncomingHttpHeaders = {};
  for (const [rawName, value] of Object.entries(input.headers ?? {})) {
    const name = rawName.toLowerCase();
    for (const v of typeof value === 'string' ? [value] : value) addHeader(headers, name, v);
  }
  const hostHeader = input.host ?? (typeof headers.host === 'string' ? headers.host : '');
  if (input.host !== undefined) headers.host = input.host;
  const end = hostHeader.charCodeAt(0) === 91 /* [ */ ? hostHeader.indexOf(']') + 1 : hostHeader.indexOf(':');
  const host = (end > 0 ? hostHeader.slice(0, end) : hostHeader).toLowerCase();
  const method = (input.method ?? 'GET').toUpperCase();
  return { ok: true, request: { method, host, path, query, headers } };
}

function addHeader(headers: IncomingHttpHeaders, name: string, value: string): void {
  const h = headers as Record<string, string | string[] | undefined>;
  const old = h[name];
  if (name === 'set-cookie') {
    h[name] = old === undefined ? [value] : [...(old as string[]), value];
  } else if (old === undefined) {
    h[name] = value;
  } else if (!KEEP_FIRST.has(name)) {
    h[name] = `${old}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
}
