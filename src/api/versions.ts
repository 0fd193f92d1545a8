/**
 * Versioned APIs compiled once per config: each version's upstream picker, lifecycle fields and replies, and for
 * each route of an API the stages that select the version.
 *
 * Selection happens in two places, because the request names a version before anyone knows who sent it, while a
 * consumer's pin needs the consumer:
 * - the `select` stage runs first on the route (before its policies): a version named by the path, a header, the
 *   media type or the query is taken (unknown → 400, retired → 410, before credentials are even read);
 * - when the API has pins and the request named none, the `pin` stage runs right after the route's authentication
 *   policies and picks the consumer's pin, its groups' pin, or the default.
 * The route's `pickService` then asks the selected version for the upstream.
 */
import type { RouteConfig } from '../config/schema.js';
import type {
  ApiVersionRef,
  LocalReply,
  RequestStage,
  ResponseStage,
  StageContext,
  StageResult,
} from '../proxy/stage.js';
import type { UpstreamService } from '../upstream/service.js';
import { type ApiVersionCell, apiVersionCell } from './metrics.js';
import type { ApiConfig, ApiVersionConfig } from './schema.js';
import {
  deprecationValue,
  dropFirstSegment,
  firstSegment,
  mediaTypeVersion,
  queryValue,
  sunsetValue,
} from './select.js';

/** A selected version, as the request carries it (one object per version and way of selection, made once). */
export interface VersionSelection extends ApiVersionRef {
  readonly entry: CompiledVersion;
}

export interface CompiledVersion {
  readonly name: string;
  readonly status: ApiVersionConfig['status'];
  /** undefined: retired. */
  readonly pick: (() => UpstreamService) | undefined;
  /** Response fields of a deprecated version, flat [name, value, ...]; empty otherwise. */
  readonly fields: readonly string[];
  /** The 410 of a retired version. */
  readonly retired: LocalReply | undefined;
  readonly cell: ApiVersionCell;
  /** Selected by header, media type, query, pin or default. */
  readonly plain: VersionSelection;
  /** Selected by the first path segment. */
  readonly byPath: VersionSelection;
}

export interface CompiledApi {
  readonly config: ApiConfig;
  /** Names and aliases, lower case → version. */
  readonly byName: ReadonlyMap<string, CompiledVersion>;
  readonly versions: readonly CompiledVersion[];
  readonly fallback: CompiledVersion;
  readonly consumerPins: ReadonlyMap<string, CompiledVersion>;
  /** Group pins in config order: the first group of the consumer's that has one wins. */
  readonly groupPins: readonly (readonly [string, CompiledVersion])[];
  readonly hasPins: boolean;
  /** `v1, v2 (alias 2), v3-beta`, for the unknown-version detail. */
  readonly known: readonly string[];
}

type ServicePicker = (
  backends: readonly { service: string; weight: number }[],
  where: string,
) => () => UpstreamService;

/** Every API of the config, by name. `picker` builds a weighted backend picker (the snapshot's). */
export function compileApis(
  apis: readonly ApiConfig[],
  picker: ServicePicker,
): ReadonlyMap<string, CompiledApi> {
  const out = new Map<string, CompiledApi>();
  apis.forEach((a, i) => {
    const byName = new Map<string, CompiledVersion>();
    const versions = a.versions.map((v, j) => {
      const where = `apis[${i}].versions[${j}]`;
      const entry = compileVersion(a, v, where, picker);
      byName.set(v.name.toLowerCase(), entry);
      for (const alias of v.aliases ?? []) byName.set(alias.toLowerCase(), entry);
      return entry;
    });
    const find = (n: string, at: string): CompiledVersion => {
      const v = byName.get(n.toLowerCase());
      if (v === undefined) throw new Error(`apis[${i}].${at}: unknown version "${n}"`);
      return v;
    };
    const consumerPins = new Map<string, CompiledVersion>();
    for (const [c, v] of Object.entries(a.pins?.consumers ?? {}))
      consumerPins.set(c, find(v, `pins.consumers.${c}`));
    const groupPins = Object.entries(a.pins?.groups ?? {}).map(
      ([g, v]) => [g, find(v, `pins.groups.${g}`)] as const,
    );
    out.set(
      a.name,
      Object.freeze({
        config: a,
        byName,
        versions,
        fallback: find(a.default, 'default'),
        consumerPins,
        groupPins,
        hasPins: consumerPins.size > 0 || groupPins.length > 0,
        known: a.versions.map((v) => (v.aliases?.length ? `${v.name} (${v.aliases.join(', ')})` : v.name)),
      }),
    );
  });
  return out;
}

function compileVersion(
  a: ApiConfig,
  v: ApiVersionConfig,
  where: string,
  picker: ServicePicker,
): CompiledVersion {
  const link = v.link === undefined ? undefined : `<${v.link}>; rel="deprecation"; type="text/html"`;
  const fields: string[] = [];
  if (v.status === 'deprecated') {
    if (v.deprecatedAt !== undefined) fields.push('deprecation', deprecationValue(v.deprecatedAt));
    if (v.sunset !== undefined) fields.push('sunset', sunsetValue(v.sunset));
    if (link !== undefined) fields.push('link', link);
  }
  let retired: LocalReply | undefined;
  if (v.status === 'retired') {
    const headers: Record<string, string> = {};
    if (v.sunset !== undefined) headers.sunset = sunsetValue(v.sunset);
    if (link !== undefined) headers.link = link;
    const live = a.versions.filter((o) => o.status !== 'retired').map((o) => o.name);
    retired = {
      kind: 'error',
      code: 'api_version_retired',
      detail: `API ${a.name} version ${v.name} is retired${live.length > 0 ? `; use ${live.join(' or ')}` : ''}`,
      headers,
    };
  }
  const entry = {
    name: v.name,
    status: v.status,
    pick: v.backends === undefined ? undefined : picker(v.backends, `${where}.backends`),
    fields: Object.freeze(fields),
    retired,
    cell: apiVersionCell(a.name, v.name, v.status),
  } as CompiledVersion & { plain: VersionSelection; byPath: VersionSelection };
  entry.plain = Object.freeze({ api: a.name, version: v.name, pathSegment: '', entry });
  entry.byPath = Object.freeze({ api: a.name, version: v.name, pathSegment: `/${v.name}`, entry });
  return Object.freeze(entry);
}

// ---------- routes ----------

type PathMatch = NonNullable<RouteConfig['match']['path']>;

/** One router entry of an API route: the route with its path, and how the version stage reads the path. */
export interface RouteVariant {
  readonly route: RouteConfig;
  /** A version fixed by the path segment (its name or an alias); 'any': the first segment names some version, maybe none. */
  readonly byPath: { readonly version: CompiledVersion; readonly segment: string } | 'any' | undefined;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function prefixed(path: PathMatch | undefined, segment: string): PathMatch {
  const p = path ?? { prefix: '/' };
  if ('exact' in p) return { exact: p.exact === '/' ? segment : segment + p.exact };
  if ('prefix' in p) return { prefix: p.prefix === '/' ? segment : segment + p.prefix };
  if ('template' in p) return { template: p.template === '/' ? segment : segment + p.template };
  return { regex: `${escapeRe(segment)}(?:${p.regex})` };
}

/** A regex for any first segment in front of the route's path; undefined for a catch-all (`prefix: /`). */
function anySegment(path: PathMatch | undefined): PathMatch | undefined {
  const p = path ?? { prefix: '/' };
  const seg = '/[^/]+';
  if ('exact' in p) return { regex: p.exact === '/' ? `${seg}/?` : seg + escapeRe(p.exact) };
  if ('prefix' in p) {
    const prefix = p.prefix.replace(/\/+$/, '');
    return prefix === '' ? undefined : { regex: `${seg}${escapeRe(prefix)}(?:/.*)?` };
  }
  if ('template' in p) {
    const re = p.template
      .split('/')
      .map((s) => (s.startsWith(':') ? '[^/]+' : escapeRe(s)))
      .join('/');
    return { regex: seg + re };
  }
  return { regex: `${seg}(?:${p.regex})` };
}

/**
 * The router entries of a route of an API: the route as written (the version from header, media type, query,
 * pin or default), and with `select.path` one more per version name and alias with its segment in front, plus
 * one that answers `api_version_unknown` for any other first segment. Config-level, so that the admin views
 * build the same router as the snapshot.
 */
export function variantRoutes(
  r: RouteConfig,
  api: ApiConfig,
): { route: RouteConfig; byPath: { version: number; segment: string } | 'any' | undefined }[] {
  const out: ReturnType<typeof variantRoutes> = [{ route: r, byPath: undefined }];
  if (!api.select.path) return out;
  const path = r.match.path;
  api.versions.forEach((v, j) => {
    for (const segment of [v.name, ...(v.aliases ?? [])]) {
      const route = { ...r, match: { ...r.match, path: prefixed(path, `/${segment}`) } };
      out.push({ route, byPath: { version: j, segment } });
    }
  });
  const any = anySegment(path);
  if (any !== undefined) out.push({ route: { ...r, match: { ...r.match, path: any } }, byPath: 'any' });
  return out;
}

/** variantRoutes with the compiled versions. */
export function routeVariants(r: RouteConfig, api: CompiledApi): RouteVariant[] {
  return variantRoutes(r, api.config).map(({ route, byPath }) => ({
    route,
    byPath:
      byPath === undefined || byPath === 'any'
        ? byPath
        : { version: api.versions[byPath.version]!, segment: byPath.segment },
  }));
}

/** What a route of an API adds to its chain. */
export interface RouteVersioning {
  /** Runs first on the route. */
  readonly select: RequestStage;
  /** Runs after the route's authentication policies; only when the API has pins. */
  readonly pin: RequestStage | undefined;
  readonly response: ResponseStage;
  readonly pickService: (ctx: StageContext) => UpstreamService;
}

function unknown(api: CompiledApi, value: string, where: string): LocalReply {
  return {
    kind: 'error',
    code: 'api_version_unknown',
    detail: `API ${api.config.name} has no version "${value.slice(0, 64)}" (from ${where}); known: ${api.known.join(', ')}`,
    extensions: { knownVersions: api.config.versions.map((v) => v.name) },
  };
}

/** The version stages of one router entry of an API route. */
export function routeVersioning(api: CompiledApi, variant: RouteVariant): RouteVersioning {
  const sel = api.config.select;
  const header = sel.header?.toLowerCase();
  const vendor = sel.mediaType?.toLowerCase();
  const query = sel.query;
  const keepSegment = sel.path && !sel.stripPath;
  const byPath = variant.byPath;
  const fixed: VersionSelection | 'any' | undefined =
    byPath === undefined || byPath === 'any'
      ? byPath
      : byPath.segment === byPath.version.name
        ? byPath.version.byPath
        : Object.freeze({ ...byPath.version.byPath, pathSegment: `/${byPath.segment}` });

  const settle = (ctx: StageContext, s: VersionSelection): LocalReply | undefined => {
    ctx.apiVersion = s;
    s.entry.cell.value++;
    if (s.entry.retired !== undefined) return s.entry.retired;
    if (keepSegment) {
      // The upstream serves every version under its own segment: one it did not get from the path, it gets now.
      if (s.pathSegment === '') ctx.upstreamPath = `/${s.version}${ctx.upstreamPath}`;
    } else if (s.pathSegment !== '')
      ctx.upstreamPath = dropFirstSegment(ctx.upstreamPath, s.pathSegment.length - 1);
    return undefined;
  };

  const select: RequestStage = {
    name: 'api-version',
    onRequest: function selectApiVersion(ctx: StageContext): StageResult {
      if (fixed !== undefined) {
        if (fixed !== 'any') return settle(ctx, fixed);
        const seg = firstSegment(ctx.path);
        const v = api.byName.get(seg.toLowerCase());
        if (v === undefined) return unknown(api, seg, 'the path');
        return settle(ctx, { ...v.byPath, pathSegment: `/${seg}` });
      }
      if (header !== undefined) {
        const h = ctx.headers[header];
        const value = typeof h === 'string' ? h.trim() : undefined;
        if (value !== undefined && value !== '') {
          const v = api.byName.get(value.toLowerCase());
          return v === undefined ? unknown(api, value, `the ${sel.header} header`) : settle(ctx, v.plain);
        }
      }
      if (vendor !== undefined) {
        const accept = ctx.headers.accept;
        const value = accept === undefined ? undefined : mediaTypeVersion(accept, vendor);
        if (value !== undefined) {
          const v = api.byName.get(value.toLowerCase());
          return v === undefined ? unknown(api, value, 'the Accept media type') : settle(ctx, v.plain);
        }
      }
      if (query !== undefined) {
        const value = queryValue(ctx.query, query);
        if (value !== undefined && value !== '') {
          const v = api.byName.get(value.toLowerCase());
          return v === undefined ? unknown(api, value, `the ${query} query parameter`) : settle(ctx, v.plain);
        }
      }
      // Named nowhere: the pin stage decides after authentication, or the default does now.
      if (api.hasPins) return undefined;
      return settle(ctx, api.fallback.plain);
    },
  };

  const pin: RequestStage | undefined = !api.hasPins
    ? undefined
    : {
        name: 'api-version-pin',
        onRequest: function pinApiVersion(ctx: StageContext): StageResult {
          if (ctx.apiVersion !== undefined) return undefined;
          const c = ctx.consumer;
          let v: CompiledVersion | undefined;
          if (c !== undefined) {
            v = api.consumerPins.get(c.name);
            if (v === undefined && c.groups.length > 0) {
              for (const [g, gv] of api.groupPins) {
                if (c.groups.includes(g)) {
                  v = gv;
                  break;
                }
              }
            }
          }
          return settle(ctx, (v ?? api.fallback).plain);
        },
      };

  const response: ResponseStage = {
    name: 'api-version',
    onResponse(_status: number, headers: string[], ctx: StageContext): void {
      const s = ctx.apiVersion as VersionSelection | undefined;
      const fields = s?.entry.fields;
      if (fields !== undefined) for (let i = 0; i < fields.length; i++) headers.push(fields[i]!);
    },
  };

  return {
    select,
    pin,
    response,
    pickService: function versionedService(ctx: StageContext): UpstreamService {
      const s = ctx.apiVersion as VersionSelection | undefined;
      // The stages always select (or answer) first; a version without backends is retired and answered 410.
      const pick = (s?.entry ?? api.fallback).pick;
      if (pick === undefined)
        throw new Error(`API ${api.config.name}: version ${s?.version} has no backends`);
      return pick();
    },
  };
}
