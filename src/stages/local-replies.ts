import type { RouteConfig } from '../config/schema.js';
import type { LocalReply, RequestStage, StageContext } from '../proxy/stage.js';
import { replacePrefix } from './rewrite.js';

/** A route that always answers with the same status and body, without an upstream. */
export function directResponseStage(cfg: NonNullable<RouteConfig['directResponse']>): RequestStage {
  const body = Buffer.from(cfg.body);
  const reply: LocalReply = Object.freeze({
    kind: 'response',
    status: cfg.status,
    headers: Object.freeze({ 'content-type': cfg.contentType, 'content-length': body.length }),
    body,
  });
  return { name: 'direct-response', onRequest: () => reply };
}

/** A redirect (Gateway API RequestRedirect): parts not configured are taken from the request. */
export function redirectStage(
  cfg: NonNullable<RouteConfig['redirect']>,
  matchPrefix: string | undefined,
  listenerScheme: string,
): RequestStage {
  const matched = (matchPrefix ?? '/').replace(/\/+$/, '');
  return {
    name: 'redirect',
    onRequest: function redirect(ctx: StageContext) {
      const scheme = cfg.scheme ?? listenerScheme;
      const host = cfg.host ?? ctx.host;
      let port = '';
      if (cfg.port !== undefined) port = defaultPort(scheme) === cfg.port ? '' : `:${cfg.port}`;
      else if (cfg.scheme === undefined) port = requestPort(ctx);
      let path = ctx.path;
      if (cfg.path && 'full' in cfg.path) path = cfg.path.full;
      else if (cfg.path && 'prefix' in cfg.path) path = replacePrefix(ctx.path, matched, cfg.path.prefix);
      const location = `${scheme}://${host}${port}${path}${ctx.query === '' ? '' : `?${ctx.query}`}`;
      return {
        kind: 'response',
        status: cfg.statusCode,
        headers: { location, 'content-length': 0 },
        body: '',
      };
    },
  };
}

function defaultPort(scheme: string): number {
  return scheme === 'https' ? 443 : 80;
}

/** The port the client used in its Host header, as `:8080`, or '' when none was given. */
function requestPort(ctx: StageContext): string {
  const h = ctx.hostHeader;
  if (!h || h.endsWith(']')) return '';
  const i = h.lastIndexOf(':');
  return i === -1 ? '' : h.slice(i);
}
