import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach } from 'vitest';
import { configHash } from '../src/compile/snapshot.js';
import { type ConfigInput, configSchema } from '../src/config/schema.js';
import { Gateway } from '../src/proxy/gateway.js';

export interface Upstream {
  readonly port: number;
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

/** A real upstream on a free loopback port. */
export async function startUpstream(
  handler: (req: IncomingMessage, res: ServerResponse) => void = echo,
): Promise<Upstream> {
  const server = createServer(handler);
  server.keepAliveTimeout = 10_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Echoes what arrived as JSON: method, url, headers, and the body length. */
export function echo(req: IncomingMessage, res: ServerResponse): void {
  let bytes = 0;
  req.on('data', (c: Buffer) => {
    bytes += c.length;
  });
  req.on('end', () => {
    const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bytes });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

/** What the echo upstream answers with. */
export interface Echoed {
  method: string;
  url: string;
  headers: Record<string, string | undefined>;
  bytes: number;
}

/** A problem+json body. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  requestId: string;
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly port: number;
  readonly url: string;
  apply(input: ConfigInput): Promise<void>;
  close(): Promise<void>;
}

let versions = 0;

/** A gateway in this process on a free port, from a config object (listener port 0 by default). */
export async function startGateway(input: ConfigInput): Promise<TestGateway> {
  const gateway = new Gateway(pino({ level: process.env.TEST_LOG ?? 'silent' }));
  const apply = async (i: ConfigInput) => {
    const config = configSchema.parse(i);
    await gateway.apply(config, ++versions, configHash(config));
  };
  await apply(input);
  const port = Object.values(gateway.ports())[0]!;
  return {
    gateway,
    port,
    url: `http://127.0.0.1:${port}`,
    apply,
    close: () => gateway.drain(1000),
  };
}

/** The common case: one listener, one service at `upstream`, routes given. */
export function simpleConfig(
  upstream: string | string[],
  routes: ConfigInput['routes'] = [{ name: 'all', backends: [{ service: 'svc' }] }],
  extra: Partial<ConfigInput> = {},
): ConfigInput {
  return {
    listeners: [{ name: 'public', port: 0 }],
    services: [{ name: 'svc', endpoints: Array.isArray(upstream) ? upstream : [upstream] }],
    routes,
    admin: { enabled: false },
    ...extra,
  };
}

/**
 * Upstreams and gateways started by a test and closed after it, last first. Call once per test file, at the
 * top level: it registers the afterEach. `cleanup` takes anything else to undo.
 */
export function closedAfterEach(): {
  cleanup: Array<() => unknown>;
  upstream(handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream>;
  gateway(input: ConfigInput): Promise<TestGateway>;
} {
  const cleanup: Array<() => unknown> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });
  return {
    cleanup,
    async upstream(handler) {
      const up = await startUpstream(handler);
      cleanup.push(() => up.close());
      return up;
    },
    async gateway(input) {
      const gw = await startGateway(input);
      cleanup.push(() => gw.close());
      return gw;
    },
  };
}

/** One listener, one service `svc` at `endpoints` with `service` settings, one catch-all route with `route`. */
export function serviceConfig(
  endpoints: string[],
  route: Record<string, unknown> = {},
  service: Record<string, unknown> = {},
): ConfigInput {
  return {
    listeners: [{ name: 'public', port: 0 }],
    admin: { enabled: false },
    services: [{ name: 'svc', endpoints, ...service }],
    routes: [{ name: 'all', backends: [{ service: 'svc' }], ...route }],
  } as ConfigInput;
}
