import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { CompiledRoute, ListenerState } from '../src/compile/snapshot.js';
import { configSchema } from '../src/config/schema.js';
import { Exchange, type ExchangeHost } from '../src/proxy/exchange.js';
import type { RequestStage } from '../src/proxy/stage.js';
import { compileRouter } from '../src/router/index.js';
import { UpstreamRegistry } from '../src/upstream/registry.js';
import { type Problem, startUpstream, type Upstream } from './helpers.js';

// The stage contract, on the real Exchange: sync stages run in order, a promise pauses the run and resumes it,
// a stage may answer locally (sync or async), and a rejected promise is a 500, never a crash.

let up: Upstream;
let server: Server;
let url = '';
const upstreams = new UpstreamRegistry();
const order: string[] = [];

const syncStage = (name: string): RequestStage => ({
  name,
  onRequest(ctx) {
    order.push(name);
    ctx.upstreamHeaders.push(`x-${name}`, '1');
    return undefined;
  },
});
const asyncStage = (name: string, outcome: 'continue' | 'answer' | 'reject'): RequestStage => ({
  name,
  async onRequest() {
    order.push(`${name}:start`);
    await new Promise((r) => setTimeout(r, 10));
    order.push(`${name}:end`);
    if (outcome === 'answer')
      return { kind: 'error', code: 'route_not_found', detail: 'answered by a stage' };
    if (outcome === 'reject') throw new Error('stage failed');
    return undefined;
  },
});

beforeAll(async () => {
  up = await startUpstream((req, res) => res.end(JSON.stringify(req.headers)));
  const config = configSchema.parse({
    listeners: [{ name: 'l', port: 0 }],
    services: [{ name: 's', endpoints: [up.url] }],
  });
  const service = upstreams.service(config.services[0]!, '');
  const route = (path: string, stages: RequestStage[]): CompiledRoute => ({
    name: path.slice(1),
    source: 'test',
    stages,
    responseStages: [],
    pickService: () => service,
    requestTimeout: 5000,
    upstreamIdleTimeout: 5000,
    maxBodyBytes: Number.POSITIVE_INFINITY,
    preserveHost: true,
    retry: {
      attempts: 1,
      on: 0,
      statusCodes: new Set(),
      perTryTimeout: 0,
      backoffBase: 25,
      backoffMax: 250,
      nonIdempotent: false,
      replayBuffer: 65_536,
      attemptsHeader: false,
    },
    mirror: undefined,
    grpcWeb: false,
    websocket: undefined,
    fault: undefined,
    buffersBody: false,
  });
  const router = compileRouter([
    {
      path: { exact: '/mixed' },
      value: route('/mixed', [syncStage('a'), asyncStage('b', 'continue'), syncStage('c')]),
    },
    { path: { exact: '/answer' }, value: route('/answer', [asyncStage('d', 'answer'), syncStage('never')]) },
    { path: { exact: '/reject' }, value: route('/reject', [asyncStage('e', 'reject'), syncStage('never')]) },
  ]);
  const state: ListenerState = {
    name: 'l',
    config: config.listeners[0]!,
    router,
    trusted: undefined,
    scheme: 'http',
  };
  const host: ExchangeHost = {
    draining: false,
    viaValue: '',
    onFinish: undefined,
    metrics: undefined,
    tracer: undefined,
  };
  server = createServer((req, res) => new Exchange(host, state, req, res).start(false));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.close();
  server.closeAllConnections();
  await upstreams.closeAll();
  await up.close();
});

test('sync and async stages run in order, then the request goes upstream with their edits', async () => {
  order.length = 0;
  const r = await fetch(`${url}/mixed`);
  const seen = (await r.json()) as Record<string, string>;
  expect(order).toEqual(['a', 'b:start', 'b:end', 'c']);
  expect(seen['x-a']).toBe('1');
  expect(seen['x-c']).toBe('1');
});

test('an async stage that answers stops the run', async () => {
  order.length = 0;
  const r = await fetch(`${url}/answer`);
  expect(r.status).toBe(404);
  expect(((await r.json()) as Problem).detail).toBe('answered by a stage');
  expect(order).toEqual(['d:start', 'd:end']);
});

test('a stage whose promise rejects is a 500 internal_error', async () => {
  order.length = 0;
  const r = await fetch(`${url}/reject`);
  expect(r.status).toBe(500);
  expect(((await r.json()) as Problem).code).toBe('internal_error');
  expect(order).toEqual(['e:start', 'e:end']);
});
