import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/** What the admin endpoints read; the single-process runner and the cluster primary both provide it. */
export interface AdminSource {
  /** Config loaded and every listener bound (in every worker). */
  ready(): boolean;
  /** The active config, secrets redacted, with version, hash and per-worker state. */
  configView(): unknown;
  /** Short status: version, workers, draining. */
  status(): Record<string, unknown>;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** The admin listener: loopback by default, read-only, no request reaches a route from here. */
export function createAdminServer(source: AdminSource): Server {
  return createServer(function admin(req: IncomingMessage, res: ServerResponse) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      json(res, 405, { error: 'method_not_allowed' });
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/live':
        json(res, 200, { live: true });
        return;
      case '/ready': {
        const ready = source.ready();
        json(res, ready ? 200 : 503, { ready, ...source.status() });
        return;
      }
      case '/config':
        json(res, 200, source.configView());
        return;
      case '/':
        json(res, 200, { endpoints: ['/live', '/ready', '/config'] });
        return;
      default:
        json(res, 404, { error: 'not_found', endpoints: ['/live', '/ready', '/config'] });
    }
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
