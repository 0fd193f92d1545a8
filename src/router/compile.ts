import type { IncomingHttpHeaders } from 'node:http';
import { compareTemplates, compareTies } from './precedence.js';
import { parseQuery } from './query.js';
import {
  collectPrefixes,
  collectSuffixes,
  collectTemplates,
  createRoot,
  finalizeTree,
  insertTokens,
  type PathNode,
  TemplateScratch,
} from './radix.js';
import { type CompiledRoute, compileHosts, compileRoute, type ValueMatcher } from './route.js';
import type { MatchResult, RouteMatchSpec, Router, RouterRequest } from './types.js';

const NOT_FOUND: MatchResult<never> = Object.freeze({ kind: 'not_found' });

/** Routes of one template shape, in precedence order, with their rank among all templates of the host group. */
interface TemplateLeaf<T> {
  readonly routes: CompiledRoute<T>[];
  readonly ranks: number[];
}

interface RegexBucket<T> {
  readonly regex: RegExp;
  readonly routes: readonly CompiledRoute<T>[];
}

/** The routes of one host entry (an exact host, a wildcard suffix, or any host), indexed by path kind. */
interface HostGroup<T> {
  readonly exact: Map<string, readonly CompiledRoute<T>[]> | null;
  readonly templates: PathNode<TemplateLeaf<T>> | null;
  /** Twice the most parameters of a template in this group: the TemplateScratch stride. */
  readonly templateStride: number;
  readonly regexes: readonly RegexBucket<T>[] | null;
  readonly prefixes: PathNode<readonly CompiledRoute<T>[]> | null;
}

/**
 * Builds a router from route matches. All sorting, indexing and regex compilation happens here; throws a
 * RouterCompileError naming the route on an invalid regex, template or host.
 */
export function compileRouter<T>(specs: readonly RouteMatchSpec<T>[]): Router<T> {
  const byExactHost = new Map<string, CompiledRoute<T>[]>();
  const byWildcard = new Map<string, CompiledRoute<T>[]>();
  const anyHost: CompiledRoute<T>[] = [];
  specs.forEach((spec, index) => {
    const route = compileRoute(spec, index);
    const hosts = compileHosts(spec.hosts, index);
    if (hosts === null) {
      anyHost.push(route);
      return;
    }
    for (const host of hosts.exact) pushTo(byExactHost, host, route);
    for (const suffix of hosts.wildcards) pushTo(byWildcard, suffix, route);
  });

  const wildcards = new Map<string, HostGroup<T>>();
  let wildcardRoot: PathNode<HostGroup<T>> | null = null;
  for (const [suffix, routes] of byWildcard) {
    const group = buildGroup(routes);
    wildcards.set(suffix, group);
    wildcardRoot ??= createRoot();
    insertTokens(wildcardRoot, [[...suffix].reverse().join('')]).payload = group;
  }
  if (wildcardRoot !== null) finalizeTree(wildcardRoot);
  const anyGroup = anyHost.length > 0 ? buildGroup(anyHost) : null;

  // For a known host the whole fallthrough chain is known too: its own group, the wildcards that cover it
  // (longest suffix first), then the routes for any host.
  const hostChains = new Map<string, readonly HostGroup<T>[]>();
  for (const [host, routes] of byExactHost) {
    const chain = [buildGroup(routes)];
    for (let dot = host.indexOf('.', 1); dot > 0; dot = host.indexOf('.', dot + 1)) {
      const group = wildcards.get(host.slice(dot));
      if (group !== undefined) chain.push(group);
    }
    if (anyGroup !== null) chain.push(anyGroup);
    hostChains.set(host, chain);
  }

  return new CompiledRouter(specs.length, hostChains, wildcardRoot, anyGroup);
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function buildGroup<T>(routes: readonly CompiledRoute<T>[]): HostGroup<T> {
  const exact = new Map<string, CompiledRoute<T>[]>();
  const templates: CompiledRoute<T>[] = [];
  const regexes = new Map<string, { regex: RegExp; routes: CompiledRoute<T>[] }>();
  const prefixes = new Map<string, CompiledRoute<T>[]>();
  for (const route of routes) {
    const path = route.path;
    switch (path.kind) {
      case 'exact':
        pushTo(exact, path.path, route);
        break;
      case 'template':
        templates.push(route);
        break;
      case 'regex': {
        // One bucket per distinct pattern, in the order patterns first appear: each is tested once per request.
        const bucket = regexes.get(path.source);
        if (bucket === undefined) regexes.set(path.source, { regex: path.regex, routes: [route] });
        else bucket.routes.push(route);
        break;
      }
      case 'prefix':
        pushTo(prefixes, path.prefix, route);
        break;
    }
  }
  for (const list of exact.values()) list.sort(compareTies);

  let templateRoot: PathNode<TemplateLeaf<T>> | null = null;
  let templateStride = 0;
  if (templates.length > 0) {
    const root = createRoot<TemplateLeaf<T>>();
    templates.sort(compareTemplates);
    templates.forEach((route, rank) => {
      if (route.path.kind !== 'template') return;
      templateStride = Math.max(templateStride, 2 * route.path.template.paramNames.length);
      const node = insertTokens(root, route.path.template.tokens);
      node.payload ??= { routes: [], ranks: [] };
      node.payload.routes.push(route);
      node.payload.ranks.push(rank);
    });
    finalizeTree(root);
    templateRoot = root;
  }

  let prefixRoot: PathNode<readonly CompiledRoute<T>[]> | null = null;
  if (prefixes.size > 0) {
    const root = createRoot<readonly CompiledRoute<T>[]>();
    for (const [prefix, list] of prefixes) {
      insertTokens(root, [prefix]).payload = list.sort(compareTies);
    }
    finalizeTree(root);
    prefixRoot = root;
  }

  const regexBuckets = [...regexes.values()].map((b) => ({
    regex: b.regex,
    routes: b.routes.sort(compareTies),
  }));
  return {
    exact: exact.size > 0 ? exact : null,
    templates: templateRoot,
    templateStride,
    regexes: regexBuckets.length > 0 ? regexBuckets : null,
    prefixes: prefixRoot,
  };
}

/**
 * The matcher. Per request it does map lookups and character compares only; it keeps scratch space on the
 * instance (matching is synchronous, so one request at a time uses it) and allocates only for a template's
 * params, a parsed query string, or a 405 whose Allow list joins several routes.
 */
class CompiledRouter<T> implements Router<T> {
  readonly size: number;
  private readonly hostChains: Map<string, readonly HostGroup<T>[]>;
  /** Wildcard suffixes, reversed (see collectSuffixes). */
  private readonly wildcards: PathNode<HostGroup<T>> | null;
  private readonly anyGroup: HostGroup<T> | null;
  private readonly hostSpecific: boolean;

  // Scratch space, reused by every match (matching is synchronous: one request uses it at a time).
  private readonly templateScratch = new TemplateScratch<TemplateLeaf<T>>();
  private readonly heads: number[] = [];
  private readonly prefixHits: (readonly CompiledRoute<T>[])[] = [];
  private readonly wildcardHits: HostGroup<T>[] = [];
  /** Routes that matched all but the method, for the Allow list. */
  private readonly denied: CompiledRoute<T>[] = [];
  private deniedCount = 0;
  private readonly queryValues = new Map<string, string>();
  private queryParsed = false;

  constructor(
    size: number,
    hostChains: Map<string, readonly HostGroup<T>[]>,
    wildcards: PathNode<HostGroup<T>> | null,
    anyGroup: HostGroup<T> | null,
  ) {
    this.size = size;
    this.hostChains = hostChains;
    this.wildcards = wildcards;
    this.anyGroup = anyGroup;
    this.hostSpecific = hostChains.size > 0 || wildcards !== null;
  }

  match(req: RouterRequest): MatchResult<T> {
    this.deniedCount = 0;
    this.queryParsed = false;
    if (this.hostSpecific) {
      const chain = this.hostChains.get(req.host);
      if (chain !== undefined) {
        for (let i = 0; i < chain.length; i++) {
          const result = this.matchGroup(chain[i]!, req);
          if (result !== null) return result;
        }
        return this.miss();
      }
      if (this.wildcards !== null) {
        const hits = this.wildcardHits;
        // Collected shortest suffix first; tried longest first.
        for (let i = collectSuffixes(this.wildcards, req.host, hits) - 1; i >= 0; i--) {
          const result = this.matchGroup(hits[i]!, req);
          if (result !== null) return result;
        }
      }
    }
    if (this.anyGroup !== null) {
      const result = this.matchGroup(this.anyGroup, req);
      if (result !== null) return result;
    }
    return this.miss();
  }

  private matchGroup(group: HostGroup<T>, req: RouterRequest): MatchResult<T> | null {
    const path = req.path;
    if (group.exact !== null) {
      const routes = group.exact.get(path);
      if (routes !== undefined) {
        const result = this.tryRoutes(routes, req);
        if (result !== null) return result;
      }
    }
    if (group.templates !== null) {
      const scratch = this.templateScratch;
      scratch.stride = group.templateStride;
      const n = collectTemplates(group.templates, path, 0, 0, 0, scratch);
      if (n > 0) {
        const result =
          n === 1 ? this.tryTemplateLeaf(scratch.leaves[0]!, req) : this.tryTemplateLeaves(n, req);
        if (result !== null) return result;
      }
    }
    if (group.regexes !== null) {
      const buckets = group.regexes;
      for (let i = 0; i < buckets.length; i++) {
        const bucket = buckets[i]!;
        if (!bucket.regex.test(path)) continue;
        const result = this.tryRoutes(bucket.routes, req);
        if (result !== null) return result;
      }
    }
    if (group.prefixes !== null) {
      const hits = this.prefixHits;
      // Collected shortest first; tried longest first.
      for (let i = collectPrefixes(group.prefixes, path, hits) - 1; i >= 0; i--) {
        const result = this.tryRoutes(hits[i]!, req);
        if (result !== null) return result;
      }
    }
    return null;
  }

  private tryRoutes(routes: readonly CompiledRoute<T>[], req: RouterRequest): MatchResult<T> | null {
    for (let i = 0; i < routes.length; i++) {
      const route = routes[i]!;
      if (this.accepts(route, req)) return route.staticMatch;
    }
    return null;
  }

  private tryTemplateLeaf(leaf: TemplateLeaf<T>, req: RouterRequest): MatchResult<T> | null {
    const routes = leaf.routes;
    for (let i = 0; i < routes.length; i++) {
      const route = routes[i]!;
      if (this.accepts(route, req)) return templateMatch(route, req.path, this.templateScratch.found, 0);
    }
    return null;
  }

  /** Several template shapes matched: merge their route lists by rank (a k-way merge over tiny k). */
  private tryTemplateLeaves(n: number, req: RouterRequest): MatchResult<T> | null {
    const scratch = this.templateScratch;
    const leaves = scratch.leaves;
    const heads = this.heads;
    for (let j = 0; j < n; j++) heads[j] = 0;
    for (;;) {
      let best = -1;
      let bestRank = Number.MAX_SAFE_INTEGER;
      for (let j = 0; j < n; j++) {
        const leaf = leaves[j]!;
        const head = heads[j]!;
        if (head < leaf.ranks.length && leaf.ranks[head]! < bestRank) {
          best = j;
          bestRank = leaf.ranks[head]!;
        }
      }
      if (best < 0) return null;
      const route = leaves[best]!.routes[heads[best]!]!;
      heads[best]!++;
      if (this.accepts(route, req)) {
        return templateMatch(route, req.path, scratch.found, best * scratch.stride);
      }
    }
  }

  /** Headers and query decide whether the route matched; the method then decides between a match and a 405. */
  private accepts(route: CompiledRoute<T>, req: RouterRequest): boolean {
    const headers = route.headers;
    if (headers !== null) {
      for (let i = 0; i < headers.length; i++) {
        const matcher = headers[i]!;
        if (!matcher.test(headerValue(req.headers, matcher.name))) return false;
      }
    }
    const query = route.query;
    if (query !== null) {
      if (!this.queryParsed) {
        parseQuery(req.query, this.queryValues);
        this.queryParsed = true;
      }
      if (!matchQuery(query, this.queryValues)) return false;
    }
    const methods = route.methods;
    if (methods === null) return true;
    const method = req.method;
    for (let i = 0; i < methods.length; i++) {
      if (methods[i] === method) return true;
    }
    this.denied[this.deniedCount++] = route;
    return false;
  }

  private miss(): MatchResult<T> {
    const count = this.deniedCount;
    if (count === 0) return NOT_FOUND;
    const first = this.denied[0]!;
    if (count === 1) return first.notAllowed!;
    const allow = new Set<string>();
    for (let i = 0; i < count; i++) {
      for (const method of this.denied[i]!.methods!) allow.add(method);
    }
    return Object.freeze({ kind: 'method_not_allowed', allow: Object.freeze([...allow].sort()) });
  }
}

function matchQuery(matchers: readonly ValueMatcher[], values: Map<string, string>): boolean {
  for (let i = 0; i < matchers.length; i++) {
    const matcher = matchers[i]!;
    if (!matcher.test(values.get(matcher.name))) return false;
  }
  return true;
}

/** The value node gives for a header; the rare array (e.g. set-cookie) is joined the way node joins the others. */
function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.join(', ');
  return undefined;
}

/** Cuts the parameters out of the path at the positions the tree walk recorded for the template. */
function templateMatch<T>(
  route: CompiledRoute<T>,
  path: string,
  found: readonly number[],
  at: number,
): MatchResult<T> {
  if (route.path.kind !== 'template') return route.staticMatch;
  const names = route.path.template.paramNames;
  if (names.length === 0) return route.staticMatch;
  const params: Record<string, string> = {};
  for (let p = 0; p < names.length; p++) {
    params[names[p]!] = path.slice(found[at + 2 * p]!, found[at + 2 * p + 1]!);
  }
  return { kind: 'match', value: route.value, params };
}
