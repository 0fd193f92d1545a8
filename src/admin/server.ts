import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Config } from '../config/schema.js';
import type { ExplainInput } from '../router/explain.js';
import { openApiDocument } from './openapi.js';
import { explainView, type RoutesView, redactRoutesView, type ServicesView } from './views.js';

/** What the admin endpoints read; the single-process runner and the cluster primary both provide it. */
export interface AdminSource {
  /** Config loaded and every listener bound (in every worker). */
  ready(): boolean;
  /** The active config, secrets redacted, with version, hash and per-worker state. */
  configView(): unknown;
  /** Short status: version, draining, workers [{ pid, version, ports }]. */
  status(): Record<string, unknown>;
  /** The active validated config (for explain and the token); never serialized. */
  config(): Config | undefined;
  /** Prometheus exposition of all workers; undefined when metrics are disabled. */
  metrics(): Promise<{ contentType: string; body: string }> | undefined;
  /** Per worker: routesView / servicesView of its live snapshot. */
  runtime(): Promise<Array<{ pid: number; routes: unknown; services: unknown }>>;
}

const TRELLIS_VERSION: string = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
).version;

export const ADMIN_ENDPOINTS = [
  '/live',
  '/ready',
  '/status',
  '/routes',
  '/services',
  '/config',
  '/metrics',
  '/explain',
  '/openapi.json',
] as const;

const READ = ['GET', 'HEAD'];
const READ_POST = ['GET', 'HEAD', 'POST'];
/** Largest POST /explain body. */
const MAX_BODY = 64 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

function send(
  res: ServerResponse,
  status: number,
  body: string,
  contentType: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    ...headers,
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  send(res, status, `${JSON.stringify(body, null, 2)}\n`, 'application/json', headers);
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * `Authorization: Bearer <token>`, compared in constant time (digests of equal length, so neither the length nor
 * the first differing byte of the token shows in the timing). undefined: allowed; else the 401's header.
 */
function checkToken(req: IncomingMessage, token: string | undefined): string | undefined {
  if (token === undefined || token === '') return undefined;
  const header = req.headers.authorization ?? '';
  const m = /^bearer +(.+?) *$/i.exec(header);
  const ok = timingSafeEqual(digest(m ? m[1]! : ''), digest(token));
  if (m && ok) return undefined;
  return header === ''
    ? 'Bearer realm="trellis-admin"'
    : 'Bearer realm="trellis-admin", error="invalid_token"';
}

const listOrOne = z.union([z.string(), z.array(z.string())]);
const explainBody = z.strictObject({
  method: z
    .string()
    .regex(/^[A-Za-z]+$/, { message: 'expected a method such as GET' })
    .optional(),
  host: z.string().optional(),
  path: z.string({ message: 'expected a string' }),
  headers: z.record(z.string(), listOrOne).optional(),
  query: z.union([z.string(), z.record(z.string(), listOrOne)]).optional(),
  listener: z.string().optional(),
});

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
      else if (size - c.length <= MAX_BODY) {
        // The rest is read and dropped, so that the 413 reaches the client.
        reject(
          new HttpError(413, 'body_too_large', `the body may have at most ${MAX_BODY} bytes`, {
            connection: 'close',
          }),
        );
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function queryString(q: string | Record<string, string | string[]> | undefined): string | undefined {
  if (q === undefined || typeof q === 'string') return q;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(q)) {
    for (const one of typeof v === 'string' ? [v] : v) {
      parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(one)}`);
    }
  }
  return parts.join('&');
}

/** GET /explain?method=&host=&path=&header=NAME:VALUE&query=NAME=VALUE&listener= */
function explainFromQuery(params: URLSearchParams): { input: ExplainInput; listener: string | undefined } {
  const path = params.get('path');
  if (path === null || path === '') {
    throw new HttpError(400, 'bad_request', 'path is required: /explain?path=/v1/users/7&host=...');
  }
  const headers: Record<string, string[]> = {};
  for (const h of params.getAll('header')) {
    const colon = h.indexOf(':');
    if (colon <= 0)
      throw new HttpError(400, 'bad_request', `header expects NAME:VALUE, got ${JSON.stringify(h)}`);
    const name = h.slice(0, colon).trim().toLowerCase();
    (headers[name] ??= []).push(h.slice(colon + 1).trim());
  }
  const query = params.getAll('query').join('&');
  return {
    input: {
      method: params.get('method') ?? undefined,
      host: params.get('host') ?? undefined,
      path,
      headers,
      query: query === '' ? undefined : query,
    },
    listener: params.get('listener') ?? undefined,
  };
}

async function explainFromBody(
  req: IncomingMessage,
): Promise<{ input: ExplainInput; listener: string | undefined }> {
  // Any content type: `curl -d` sends form-urlencoded; what counts is that the body is JSON.
  let raw: unknown;
  try {
    raw = JSON.parse(await readBody(req));
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, 'bad_request', `the body is not JSON: ${(err as Error).message}`);
  }
  const r = explainBody.safeParse(raw);
  if (!r.success) {
    const detail = r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
    throw new HttpError(400, 'bad_request', detail);
  }
  const b = r.data;
  return {
    input: { method: b.method, host: b.host, path: b.path, headers: b.headers, query: queryString(b.query) },
    listener: b.listener,
  };
}

/** The redacted config, as /config shows it. */
function shownConfig(source: AdminSource): unknown {
  const v = source.configView();
  return isRecord(v) ? v.config : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function statusView(source: AdminSource): Record<string, unknown> {
  const st = source.status();
  const workers = Array.isArray(st.workers) ? (st.workers as Record<string, unknown>[]) : [];
  const view = source.configView();
  const cv = isRecord(view) ? view : {};
  const config = source.config();
  const firstPorts = workers.map((w) => w.ports).find(isRecord) ?? {};
  const uptime = process.uptime();
  return {
    trellis: TRELLIS_VERSION,
    node: process.version,
    pid: process.pid,
    mode: workers.some((w) => w.pid !== process.pid) ? 'cluster' : 'single',
    startedAt: new Date(Date.now() - uptime * 1000).toISOString(),
    uptimeSeconds: Math.round(uptime * 1000) / 1000,
    ready: source.ready(),
    draining: st.draining === true,
    config: {
      version: typeof st.version === 'number' ? st.version : 0,
      hash: typeof cv.hash === 'string' ? cv.hash : null,
      loadedAt: typeof cv.loadedAt === 'string' ? cv.loadedAt : null,
      lastError: isRecord(cv.lastError) ? cv.lastError : null,
    },
    listeners: (config?.listeners ?? []).map((l) => ({
      name: l.name,
      address: l.address,
      port: l.port,
      boundPort: typeof firstPorts[l.name] === 'number' ? firstPorts[l.name] : null,
      protocol: l.protocol,
    })),
    workers,
  };
}

async function runtime(
  source: AdminSource,
): Promise<Array<{ pid: number; routes: unknown; services: unknown }>> {
  const rt = await source.runtime();
  if (rt.length === 0) throw new HttpError(503, 'unavailable', 'no worker is serving yet');
  return rt;
}

async function routesReply(source: AdminSource): Promise<unknown> {
  const rt = (await runtime(source)).filter((w) => isRecord(w.routes));
  const first = rt[0];
  if (!first) throw new HttpError(503, 'unavailable', 'no worker reported its routes');
  const raw = first.routes as RoutesView;
  // The redacted config says which match values came from secrets; during a reload the worker may still
  // serve another version, and then every header and query value is redacted.
  const view = source.configView();
  const sameVersion = isRecord(view) && view.hash === raw.hash;
  const routes = redactRoutesView(raw, sameVersion ? view.config : undefined);
  const consistent = rt.every((w) => {
    const r = w.routes as RoutesView;
    return r.version === routes.version && r.hash === routes.hash;
  });
  return {
    pid: first.pid,
    workers: rt.map((w) => w.pid),
    consistent,
    note:
      rt.length > 1
        ? `every worker compiles the same config; this is worker ${first.pid}'s view${consistent ? '' : ' (a reload is in progress: workers serve different versions)'}`
        : `the routes process ${first.pid} serves`,
    version: routes.version,
    hash: routes.hash,
    listeners: routes.listeners,
  };
}

async function servicesReply(source: AdminSource): Promise<unknown> {
  const rt = await runtime(source);
  return {
    workers: rt
      .filter((w) => isRecord(w.services))
      .map((w) => {
        const s = w.services as ServicesView;
        return { pid: w.pid, version: s.version, services: s.services };
      }),
  };
}

/**
 * The admin listener: loopback by default, read-only, no request reaches a route from here. With
 * `admin.token` set (read from the active config on each request, so a reload rotates it) every endpoint but
 * /live and /ready needs `Authorization: Bearer <token>`.
 */
export function createAdminServer(source: AdminSource): Server {
  const openapi = `${JSON.stringify(openApiDocument(TRELLIS_VERSION), null, 2)}\n`;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin.invalid');
    } catch {
      throw new HttpError(400, 'bad_request', 'malformed request target');
    }
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path !== '/live' && path !== '/ready') {
      const challenge = checkToken(req, source.config()?.admin.token);
      if (challenge !== undefined) {
        throw new HttpError(401, 'unauthorized', 'this endpoint needs Authorization: Bearer <admin.token>', {
          'www-authenticate': challenge,
        });
      }
    }
    if (path !== '/' && !(ADMIN_ENDPOINTS as readonly string[]).includes(path)) {
      throw new HttpError(404, 'not_found', `no admin endpoint ${path}`);
    }
    const allowed = path === '/explain' ? READ_POST : READ;
    if (!allowed.includes(method)) {
      throw new HttpError(405, 'method_not_allowed', `${path} answers ${allowed.join(', ')}`, {
        allow: allowed.join(', '),
      });
    }
    switch (path) {
      case '/':
        return json(res, 200, { endpoints: ADMIN_ENDPOINTS });
      case '/live':
        return json(res, 200, { live: true });
      case '/ready': {
        const ready = source.ready();
        return json(res, ready ? 200 : 503, { ready, ...source.status() });
      }
      case '/status':
        return json(res, 200, statusView(source));
      case '/routes':
        return json(res, 200, await routesReply(source));
      case '/services':
        return json(res, 200, await servicesReply(source));
      case '/config':
        return json(res, 200, source.configView());
      case '/metrics': {
        const m = source.metrics();
        if (m === undefined)
          throw new HttpError(404, 'metrics_disabled', 'metrics are off (metrics.enabled: false)');
        const { contentType, body } = await m;
        return send(res, 200, body, contentType);
      }
      case '/explain': {
        const { input, listener } =
          method === 'POST' ? await explainFromBody(req) : explainFromQuery(url.searchParams);
        const config = source.config();
        if (!config) throw new HttpError(503, 'unavailable', 'no config is active yet');
        const r = explainView(config, input, listener, shownConfig(source));
        if (!r.ok) throw new HttpError(400, 'bad_request', r.error);
        return json(res, 200, r.view);
      }
      case '/openapi.json':
        return send(res, 200, openapi, 'application/json');
    }
  };
  return createServer(function admin(req: IncomingMessage, res: ServerResponse) {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        const body: Record<string, unknown> = { error: err.code, detail: err.message };
        if (err.status === 404 && err.code === 'not_found') body.endpoints = ADMIN_ENDPOINTS;
        json(res, err.status, body, err.headers);
        return;
      }
      json(res, 500, { error: 'internal_error', detail: (err as Error)?.message ?? String(err) });
    });
  });
}

export function listenAdmin(server: Server, address: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port }, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}
