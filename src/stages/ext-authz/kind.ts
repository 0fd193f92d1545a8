/**
 * `ext-authz`: asks an external service whether a request may go on, in one of two contracts.
 *
 * - `envoy` (Envoy's ext_authz HTTP service): the original method and path (after `pathPrefix`) and the allowed
 *   headers; the request body too with `withRequestBody` (as Envoy's `with_request_body`). A 2xx allows, and the response headers named in `allowedUpstreamHeaders` are set on the
 *   upstream request. Any other status below 500 denies: that status, the body and the headers named in
 *   `allowedClientHeaders` go to the client (`denyResponse: forward`), or a problem+json 403 (`problem`).
 * - `opa` (OPA's REST data API): `POST <url>` with `{"input": {...}}` (the shape docs/policies.md gives); the
 *   answer's `result` is a boolean, or an object `{allow, headers, status, body}`. No `result` (an undefined
 *   decision) denies.
 *
 * Failures (connection, timeout, 5xx, a malformed answer) follow `failureMode`: deny (503 auth_unavailable) or
 * allow. A 5xx is a failure, not a decision: a crashing authorization service must not read as a verdict.
 * Decisions can be cached by the request attributes that `cache.key` names (never failures).
 */
import { z } from 'zod';
import { byteSize, duration, headerName } from '../../config/primitives.js';
import { HOP_BY_HOP } from '../../proxy/headers.js';
import type { LocalReply, RequestStage, StageContext, StageResult } from '../../proxy/stage.js';
import { boundedFetch, FetchError, httpUrl } from '../auth/fetch-json.js';
import { claimAt, removeHeaders } from '../auth/identity.js';
import { TokenCache, tokenKey } from '../auth/token-cache.js';
import { type PolicyKind, PolicyPhase } from '../policy.js';

const cacheAttribute = z
  .string()
  .regex(
    /^(method|path|query|host|consumer|client|body|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|claim:[A-Za-z0-9_.:-]+)$/,
    {
      message: 'expected method, path, query, host, consumer, client, body, header:<name> or claim:<name>',
    },
  );

export const extAuthzSchema = z
  .strictObject({
    mode: z.enum(['envoy', 'opa']).prefault('envoy').describe('The contract the service speaks.'),
    url: httpUrl.describe(
      '`envoy`: the service base URL; the original path is appended. `opa`: the decision URL, `http://opa:8181/v1/data/<package path>`.',
    ),
    pathPrefix: z
      .string()
      .regex(/^(\/[\x21-\x7e]*)?$/, { message: 'expected a path such as "/authz"' })
      .prefault('')
      .describe('`envoy`: put before the original path.'),
    timeout: duration.prefault('1s').describe('Longest time to wait for the answer.'),
    failureMode: z
      .enum(['deny', 'allow'])
      .prefault('deny')
      .describe(
        'When the service cannot answer (refused, timeout, 5xx, malformed): `deny` answers 503 `auth_unavailable`, `allow` lets the request on.',
      ),
    allowedHeaders: z
      .array(headerName)
      .prefault(['authorization'])
      .describe(
        'Request headers sent to the service (`envoy`) or put in `input` (`opa`), besides the method, path and host.',
      ),
    allowedUpstreamHeaders: z
      .array(headerName)
      .prefault([])
      .describe(
        "On allow, these headers of the service's answer (`envoy`) or of `result.headers` (`opa`) are set on the upstream request, replacing any the client sent.",
      ),
    allowedClientHeaders: z
      .array(headerName)
      .optional()
      .describe(
        "On deny (`forward`), these headers of the service's answer go to the client. Absent: all but hop-by-hop ones.",
      ),
    denyResponse: z
      .enum(['forward', 'problem'])
      .prefault('forward')
      .describe(
        "On deny: `forward` the service's status, headers and body; `problem` answers 403 `authz_denied`.",
      ),
    maxResponseBytes: byteSize.prefault('64KiB').describe('Largest answer read from the service.'),
    withRequestBody: z
      .strictObject({
        maxBytes: byteSize
          .prefault('8KiB')
          .refine((n) => n <= 4 * 1024 * 1024, { message: 'expected at most 4MiB' })
          .describe('Most body bytes sent to the service (the upstream still gets the whole body).'),
        allowPartial: z
          .boolean()
          .prefault(false)
          .describe(
            'A longer body: `false` answers 413 `body_too_large`; `true` sends its first `maxBytes` bytes, marked `x-envoy-auth-partial-body: true` (`envoy`) or `input.truncated_body: true` (`opa`).',
          ),
      })
      .optional()
      .describe(
        'Send the request body too: as the body of the check request (`envoy`), or as `input.attributes.request.http.body` and, when it is JSON, `input.parsed_body` (`opa`). Absent: no body.',
      ),
    cache: z
      .strictObject({
        ttl: duration.describe('How long a decision is reused.'),
        maxEntries: z.number().int().positive().prefault(10_000).describe('Decisions remembered (LRU).'),
        key: z
          .array(cacheAttribute)
          .min(1)
          .describe(
            'The request attributes a decision depends on, such as `[method, path, header:authorization]`. Hashed (SHA-256), never kept as they are.',
          ),
      })
      .optional()
      .describe('Reuse decisions for requests alike in `key`. Absent: every request asks.'),
  })
  .describe(
    'Asks an external authorization service (Envoy ext_authz HTTP contract, or OPA) about each request.',
  );
export type ExtAuthzConfig = z.infer<typeof extAuthzSchema>;

/** A decision: allow with headers for the upstream, or deny with what the client gets. */
type Decision = { allow: true; headers: readonly string[] } | { allow: false; reply: LocalReply };

export const extAuthzPolicy: PolicyKind<ExtAuthzConfig> = {
  type: 'ext-authz',
  phase: PolicyPhase.authz,
  schema: extAuthzSchema,
  compile(cfg, ctx) {
    return {
      request: extAuthzStage(ctx.name, cfg),
    };
  },
};

const MAX_DENY_BODY = 64 * 1024;

export function extAuthzStage(policy: string, cfg: ExtAuthzConfig): RequestStage {
  const allowed = cfg.allowedHeaders.map((h) => h.toLowerCase());
  const upstreamNames = new Set(cfg.allowedUpstreamHeaders.map((h) => h.toLowerCase()));
  const clientNames = cfg.allowedClientHeaders?.map((h) => h.toLowerCase());
  const base = cfg.url.replace(/\/$/, '');
  const opa = cfg.mode === 'opa';
  const cache = cfg.cache === undefined ? undefined : new TokenCache<Decision>(cfg.cache.maxEntries);
  const keyOf = cfg.cache === undefined ? undefined : compileCacheKey(cfg.cache.key);
  const ttl = cfg.cache?.ttl ?? 0;
  const withBody = cfg.withRequestBody;

  const failed = (why: string): Decision | undefined =>
    cfg.failureMode === 'allow'
      ? undefined
      : {
          allow: false,
          reply: {
            kind: 'error',
            code: 'auth_unavailable',
            detail: `policy "${policy}": authorization service ${why}`,
          },
        };
  const problem: LocalReply = {
    kind: 'error',
    code: 'authz_denied',
    detail: `policy "${policy}": denied by the authorization service`,
  };

  function upstreamHeadersOf(h: Record<string, unknown>): string[] {
    const out: string[] = [];
    for (const name of upstreamNames) {
      const v = h[name];
      const value = Array.isArray(v) ? v.join(', ') : v;
      if (typeof value === 'string' && !/[\r\n\0]/.test(value)) out.push(name, value);
      else if (typeof value === 'number' || typeof value === 'boolean') out.push(name, String(value));
    }
    return out;
  }

  function denyReply(status: number, headers: Record<string, unknown>, body: Buffer | string): LocalReply {
    if (cfg.denyResponse === 'problem' || status < 300 || status > 599) return problem;
    const out: Record<string, string> = {};
    for (const [name, v] of Object.entries(headers)) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || lower === 'content-length' || lower === 'transfer-encoding') continue;
      if (clientNames !== undefined && !clientNames.includes(lower)) continue;
      const value = Array.isArray(v) ? v.join(', ') : String(v);
      if (!/[\r\n\0]/.test(value)) out[lower] = value;
    }
    const b = typeof body === 'string' ? Buffer.from(body) : body;
    return {
      kind: 'response',
      status,
      headers: out,
      body: b.length > MAX_DENY_BODY ? b.subarray(0, MAX_DENY_BODY) : b,
    };
  }

  async function ask(ctx: StageContext, body: CheckBody | undefined): Promise<Decision | undefined> {
    const headers: Record<string, string> = {};
    for (const name of allowed) {
      const v = ctx.headers[name];
      if (v !== undefined) headers[name] = Array.isArray(v) ? v.join(', ') : v;
    }
    let res: Awaited<ReturnType<typeof boundedFetch>>;
    try {
      if (opa) {
        res = await boundedFetch(base, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify({ input: opaInput(ctx, headers, body) }),
          timeout: cfg.timeout,
          maxBytes: cfg.maxResponseBytes,
        });
      } else {
        const target = `${base}${cfg.pathPrefix}${ctx.path}${ctx.query === '' ? '' : `?${ctx.query}`}`;
        headers['x-forwarded-host'] = ctx.hostHeader || ctx.host;
        headers['x-forwarded-method'] = ctx.method;
        headers['x-forwarded-uri'] = `${ctx.path}${ctx.query === '' ? '' : `?${ctx.query}`}`;
        // The original method, as Envoy sends it; methods undici cannot send as a plain request go as GET.
        const method = ctx.method === 'CONNECT' ? 'GET' : ctx.method;
        if (body !== undefined) {
          headers['x-envoy-auth-partial-body'] = body.partial ? 'true' : 'false';
          const type = ctx.headers['content-type'];
          if (type !== undefined) headers['content-type'] = type;
        }
        res = await boundedFetch(target, {
          method: method as 'GET',
          headers,
          body: body?.data,
          timeout: cfg.timeout,
          maxBytes: cfg.maxResponseBytes,
        });
      }
    } catch (err) {
      return failed(err instanceof FetchError ? `unreachable: ${err.message}` : 'unreachable');
    }
    if (res.status >= 500) return failed(`answered ${res.status}`);
    if (!opa) {
      if (res.status >= 200 && res.status < 300)
        return { allow: true, headers: upstreamHeadersOf(res.headers) };
      return { allow: false, reply: denyReply(res.status, res.headers, res.body) };
    }
    if (res.status !== 200) return failed(`answered ${res.status}`);
    let doc: unknown;
    try {
      doc = JSON.parse(res.body.toString('utf8'));
    } catch {
      return failed('sent an answer that is not JSON');
    }
    const result = (doc as { result?: unknown } | null)?.result;
    if (result === undefined) return { allow: false, reply: problem }; // an undefined decision is no
    if (typeof result === 'boolean')
      return result ? { allow: true, headers: [] } : { allow: false, reply: problem };
    if (
      result === null ||
      typeof result !== 'object' ||
      typeof (result as { allow?: unknown }).allow !== 'boolean'
    ) {
      return failed('sent a result that is neither a boolean nor {allow: boolean}');
    }
    const r = result as {
      allow: boolean;
      headers?: Record<string, unknown>;
      status?: unknown;
      body?: unknown;
    };
    const h = r.headers !== null && typeof r.headers === 'object' ? lowerKeys(r.headers) : {};
    if (r.allow) return { allow: true, headers: upstreamHeadersOf(h) };
    if (typeof r.status !== 'number' && r.body === undefined) return { allow: false, reply: problem };
    const denial = typeof r.body === 'string' ? r.body : r.body === undefined ? '' : JSON.stringify(r.body);
    return { allow: false, reply: denyReply(typeof r.status === 'number' ? r.status : 403, h, denial) };
  }

  const apply = (ctx: StageContext, d: Decision | undefined): undefined | LocalReply => {
    if (d === undefined) return undefined; // failure, failing open
    if (!d.allow) return d.reply;
    const h = d.headers;
    for (let i = 0; i < h.length; i++) ctx.upstreamHeaders.push(h[i]!);
    return undefined;
  };

  return {
    name: `ext-authz:${policy}`,
    onRequest(ctx: StageContext): StageResult {
      // Headers the service may set upstream are the service's alone: the client's go first, whatever happens.
      if (upstreamNames.size > 0) removeHeaders(ctx.upstreamHeaders, upstreamNames);
      if (withBody !== undefined) {
        const peek = ctx.peekBody?.(withBody.maxBytes + 1);
        if (peek !== undefined) return peek.then((b) => decide(ctx, checkBody(b.data, b.complete)));
        // No body to read (none was sent): the service is told so, as an empty one.
        return decide(ctx, NO_BODY);
      }
      return decide(ctx, undefined);
    },
  };

  /** The body as the service gets it, or a 413 when it is too long and may not be cut. */
  function checkBody(data: Buffer, complete: boolean): CheckBody | LocalReply {
    const max = withBody!.maxBytes;
    if (complete && data.length <= max) return { data, partial: false };
    if (!withBody!.allowPartial)
      return {
        kind: 'error',
        code: 'body_too_large',
        detail: `policy "${policy}": the authorization service is sent at most ${max} body bytes`,
      };
    return { data: data.subarray(0, max), partial: true };
  }

  function decide(ctx: StageContext, body: CheckBody | LocalReply | undefined): StageResult {
    if (body !== undefined && 'kind' in body) return body;
    let key: string | undefined;
    if (cache !== undefined) {
      key = keyOf!(ctx, body);
      const hit = cache.get(key, Date.now());
      if (hit !== undefined) return apply(ctx, hit);
    }
    return ask(ctx, body).then((d) => {
      // Failures are never cached: the next request asks again.
      if (
        cache !== undefined &&
        d !== undefined &&
        !(d.allow === false && d.reply.kind === 'error' && d.reply.code === 'auth_unavailable')
      ) {
        const now = Date.now();
        cache.set(key!, d, now + ttl, now);
      }
      return apply(ctx, d);
    });
  }
}

/** The request body sent with a check. */
interface CheckBody {
  readonly data: Buffer;
  /** Cut at `withRequestBody.maxBytes`. */
  readonly partial: boolean;
}

const NO_BODY: CheckBody = { data: Buffer.alloc(0), partial: false };

function lowerKeys(h: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}

/**
 * The `input` document for OPA, shaped like OPA's Envoy plugin's (`input.attributes.request.http`), so policies
 * written for it read the same fields here; plus what Trellis knows about the caller.
 */
function opaInput(ctx: StageContext, headers: Record<string, string>, body: CheckBody | undefined): unknown {
  const cert = ctx.clientCert;
  const path = ctx.query === '' ? ctx.path : `${ctx.path}?${ctx.query}`;
  const http: Record<string, unknown> = {
    method: ctx.method,
    path,
    host: ctx.hostHeader || ctx.host,
    headers,
  };
  let parsed: unknown;
  if (body !== undefined) {
    http.body = body.data.toString('utf8');
    if (
      !body.partial &&
      /^application\/(?:[\w.+-]+\+)?json\b/i.test(String(ctx.headers['content-type'] ?? ''))
    ) {
      try {
        parsed = JSON.parse(http.body as string);
      } catch {
        // not JSON after all: the raw body is there
      }
    }
  }
  return {
    ...(body === undefined ? {} : { parsed_body: parsed ?? null, truncated_body: body.partial }),
    attributes: {
      request: { http },
      source: {
        address: ctx.clientAddress(),
        principal: cert?.uris[0] ?? '',
        certificate:
          cert === undefined
            ? null
            : { subject: cert.subject, uris: cert.uris, dns: cert.dns, sha256: cert.sha256 },
      },
    },
    parsed_path: ctx.path.split('/').filter((s) => s !== ''),
    consumer:
      ctx.consumer === undefined
        ? null
        : { name: ctx.consumer.name, groups: ctx.consumer.groups, metadata: ctx.consumer.metadata },
    claims: ctx.claims ?? null,
    route: ctx.route?.name ?? null,
  };
}

/** The cache key: a SHA-256 of the named attributes (they may hold credentials; the hash does not). */
function compileCacheKey(
  attributes: readonly string[],
): (ctx: StageContext, body: CheckBody | undefined) => string {
  const readers = attributes.map((a): ((ctx: StageContext, body: CheckBody | undefined) => string) => {
    if (a.startsWith('header:')) {
      const name = a.slice(7).toLowerCase();
      return (ctx) => {
        const v = ctx.headers[name];
        return v === undefined ? '\u0000' : Array.isArray(v) ? v.join(', ') : v;
      };
    }
    if (a.startsWith('claim:')) {
      const path = a.slice(6).split('.');
      return (ctx) =>
        ctx.claims === undefined ? '\u0000' : (JSON.stringify(claimAt(ctx.claims, path)) ?? '\u0000');
    }
    switch (a) {
      case 'method':
        return (ctx) => ctx.method;
      case 'path':
        return (ctx) => ctx.path;
      case 'query':
        return (ctx) => ctx.query;
      case 'host':
        return (ctx) => ctx.host;
      case 'consumer':
        return (ctx) => ctx.consumer?.name ?? '\u0000';
      case 'body':
        return (_ctx, body) => (body === undefined ? '\u0000' : body.data.toString('latin1'));
      default:
        return (ctx) => ctx.clientCert?.sha256 ?? ctx.clientAddress();
    }
  });
  return (ctx, body) => {
    let s = '';
    for (let i = 0; i < readers.length; i++) s += `${readers[i]!(ctx, body)}\u0001`;
    return tokenKey(s);
  };
}
