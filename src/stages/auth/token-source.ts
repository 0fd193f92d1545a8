/**
 * Where a bearer token is read from: the Authorization header (RFC 6750 §2.1, the default), a cookie, or a query
 * parameter (RFC 6750 §2.3, which also says the parameter should not travel further: it is removed from the path
 * sent upstream). Shared by the token policies (jwt, introspection).
 */
import { z } from 'zod';
import { headerName } from '../../config/primitives.js';
import type { StageContext } from '../../proxy/stage.js';

export const tokenSourceSchema = z.union([
  z
    .strictObject({
      header: headerName.describe('Header to read, such as `authorization`.'),
      scheme: z
        .string()
        .optional()
        .describe(
          'Scheme before the token, compared without case (`Bearer` for `authorization`). Absent on another header: the whole value is the token; on `authorization`: `Bearer`.',
        ),
    })
    .describe('A request header.'),
  z
    .strictObject({ cookie: z.string().min(1).describe('Cookie name.') })
    .describe('A cookie (the Cookie header is forwarded as it came).'),
  z
    .strictObject({ query: z.string().min(1).describe('Query parameter name.') })
    .describe('A query parameter, removed from the path sent upstream.'),
]);
export type TokenSourceConfig = z.infer<typeof tokenSourceSchema>;

export const tokenSourcesField = z
  .array(tokenSourceSchema)
  .min(1)
  .prefault([{ header: 'authorization', scheme: 'Bearer' }])
  .describe(
    'Where the token is looked for, in order; the first place that has one wins. Default: the `Authorization: Bearer` header.',
  );

/** Reads the token from one place; `undefined` when it is not there. */
export type TokenReader = (ctx: StageContext) => string | undefined;

export interface CompiledSources {
  /** The token and where it came from, or undefined. */
  read(ctx: StageContext): string | undefined;
  /** Query parameters to remove from the upstream path (RFC 6750 §2.3), or empty. */
  readonly queryNames: readonly string[];
}

export function compileSources(sources: readonly TokenSourceConfig[]): CompiledSources {
  const readers: TokenReader[] = sources.map(compileSource);
  const queryNames = sources.flatMap((s) => ('query' in s ? [s.query] : []));
  const read =
    readers.length === 1
      ? readers[0]!
      : (ctx: StageContext) => {
          for (let i = 0; i < readers.length; i++) {
            const t = readers[i]!(ctx);
            if (t !== undefined) return t;
          }
          return undefined;
        };
  return { read, queryNames };
}

function compileSource(s: TokenSourceConfig): TokenReader {
  if ('header' in s) {
    const name = s.header.toLowerCase();
    const scheme = s.scheme ?? (name === 'authorization' ? 'Bearer' : undefined);
    if (scheme === undefined) {
      return function headerToken(ctx) {
        const v = ctx.headers[name];
        const value = Array.isArray(v) ? v[0] : v;
        return value === undefined || value === '' ? undefined : value.trim() || undefined;
      };
    }
    const prefix = `${scheme.toLowerCase()} `;
    return function schemeToken(ctx) {
      const v = ctx.headers[name];
      const value = Array.isArray(v) ? v[0] : v;
      if (value === undefined || value.length <= prefix.length) return undefined;
      if (value.slice(0, prefix.length).toLowerCase() !== prefix) return undefined;
      const token = value.slice(prefix.length).trim();
      return token === '' ? undefined : token;
    };
  }
  if ('cookie' in s) {
    const name = s.cookie;
    return function cookieToken(ctx) {
      const v = ctx.headers.cookie;
      return v === undefined ? undefined : cookieValue(v, name);
    };
  }
  const name = s.query;
  return function queryToken(ctx) {
    return ctx.query === '' ? undefined : queryValue(ctx.query, name);
  };
}

/** The value of cookie `name` in a Cookie header (RFC 6265 §5.4 pairs separated by `; `). */
export function cookieValue(header: string, name: string): string | undefined {
  let i = 0;
  while (i < header.length) {
    let end = header.indexOf(';', i);
    if (end === -1) end = header.length;
    const eq = header.indexOf('=', i);
    if (eq !== -1 && eq < end && header.slice(i, eq).trim() === name) {
      let v = header.slice(eq + 1, end).trim();
      if (v.length >= 2 && v.charCodeAt(0) === 34 && v.charCodeAt(v.length - 1) === 34) v = v.slice(1, -1);
      return v === '' ? undefined : v;
    }
    i = end + 1;
  }
  return undefined;
}

/** The first value of parameter `name` in a query string (without `?`), percent-decoded. */
export function queryValue(query: string, name: string): string | undefined {
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (decode(key) !== name) continue;
    const v = eq === -1 ? '' : decode(pair.slice(eq + 1));
    return v === '' ? undefined : v;
  }
  return undefined;
}

/** `path?query` without the parameters named (every occurrence), or the same string when none is there. */
export function withoutQueryParams(pathAndQuery: string, names: readonly string[]): string {
  const q = pathAndQuery.indexOf('?');
  if (q === -1) return pathAndQuery;
  const kept = pathAndQuery
    .slice(q + 1)
    .split('&')
    .filter((pair) => {
      const eq = pair.indexOf('=');
      return !names.includes(decode(eq === -1 ? pair : pair.slice(0, eq)));
    });
  const path = pathAndQuery.slice(0, q);
  return kept.length === 0 ? path : `${path}?${kept.join('&')}`;
}

function decode(s: string): string {
  if (!s.includes('%') && !s.includes('+')) return s;
  try {
    return decodeURIComponent(s.replaceAll('+', ' '));
  } catch {
    return s;
  }
}
