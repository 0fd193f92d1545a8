import { type ChildProcess, spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { simpleConfig, startGateway, type TestGateway } from './helpers.js';

// A loopback socket that listens but never accepts: once its accept queue is full, the kernel drops further
// SYNs, so a connect to it hangs until the client gives up. Node always accepts, hence a tiny python3 helper.
const NEVER_ACCEPT = `
import socket, sys, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)
print(s.getsockname()[1], flush=True)
time.sleep(60)
`;

let blackhole: ChildProcess;
let port = 0;
const fillers: Socket[] = [];
let gw: TestGateway;

beforeAll(async () => {
  blackhole = spawn('python3', ['-c', NEVER_ACCEPT], { stdio: ['ignore', 'pipe', 'inherit'] });
  port = await new Promise<number>((resolve) =>
    blackhole.stdout!.once('data', (d) => resolve(Number(String(d)))),
  );
  // Fill the accept queue.
  for (let i = 0; i < 4; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  await new Promise((r) => setTimeout(r, 200));
  gw = await startGateway({
    ...simpleConfig(`http://127.0.0.1:${port}`),
    services: [{ name: 'svc', endpoints: [`http://127.0.0.1:${port}`], connectTimeout: '300ms' }],
  });
});

afterAll(async () => {
  await gw?.close();
  for (const s of fillers) s.destroy();
  blackhole?.kill();
});

test('upstream_connect_timeout when the endpoint does not complete the handshake in connectTimeout', async () => {
  const t0 = Date.now();
  const r = await fetch(`${gw.url}/x`);
  const body = (await r.json()) as { code: string };
  expect(r.status).toBe(504);
  expect(body.code).toBe('upstream_connect_timeout');
  expect(Date.now() - t0).toBeLessThan(3000);
});
