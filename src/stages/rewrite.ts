import type { RouteConfig } from '../config/schema.js';
import type { RequestStage, StageContext } from '../proxy/stage.js';

type PathRewrite = NonNullable<NonNullable<RouteConfig['rewrite']>['path']>;

/**
 * Replaces `matched` (a prefix that matched on a segment boundary) with `replacement`, as the Gateway API's
 * ReplacePrefixMatch does: `/api` → `/` turns `/api/users` into `/users` and `/api` into `/`.
 */
export function replacePrefix(path: string, matched: string, replacement: string): string {
  const rest = path.slice(matched.length);
  if (rest === '') return replacement;
  if (replacement.endsWith('/') && rest.startsWith('/')) return replacement + rest.slice(1);
  if (!replacement.endsWith('/') && !rest.startsWith('/')) return replacement + '/' + rest;
  return replacement + rest;
}

/** The rewrite stage for a route, or undefined when the route rewrites nothing. */
export function rewriteStage(
  rewrite: RouteConfig['rewrite'],
  matchPrefix: string | undefined,
): RequestStage | undefined {
  if (!rewrite) return undefined;
  const pathFn = rewrite.path ? compilePathRewrite(rewrite.path, matchPrefix) : undefined;
  const host = rewrite.host;
  if (!pathFn && host === undefined) return undefined;
  return {
    name: 'rewrite',
    onRequest: function rewriteRequest(ctx: StageContext) {
      if (pathFn) {
        const p = pathFn(ctx.path);
        ctx.upstreamPath = ctx.query === '' ? p : `${p}?${ctx.query}`;
      }
      if (host !== undefined) ctx.upstreamHost = host;
      return undefined;
    },
  };
}

function compilePathRewrite(r: PathRewrite, matchPrefix: string | undefined): (path: string) => string {
  if ('full' in r) {
    const full = r.full;
    return () => full;
  }
  if ('prefix' in r) {
    // The config layer makes sure a prefix rewrite comes with a prefix match.
    const matched = (matchPrefix ?? '/').replace(/\/+$/, '');
    const replacement = r.prefix;
    return (path) => replacePrefix(path, matched, replacement);
  }
  const re = new RegExp(r.regex);
  const substitution = r.substitution.replace(/\\(\d)/g, '$$$1');
  return (path) => path.replace(re, substitution);
}
