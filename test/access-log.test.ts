import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { simpleConfig, startGateway, startUpstream } from './helpers.js';

test('one JSON line per request with route, service endpoint, status, code, bytes and durations', async () => {
  const up = await startUpstream((_req, res) => res.end('hello'));
  const file = join(mkdtempSync(join(tmpdir(), 'trellis-log-')), 'access.log');
  const gw = await startGateway({
    ...simpleConfig(up.url, [
      { name: 'api', match: { path: { prefix: '/api' } }, backends: [{ service: 'svc' }] },
    ]),
    accessLog: { output: file },
  });
  const ok = await fetch(`${gw.url}/api/x?secret=1`, {
    method: 'POST',
    body: 'abc',
    headers: { 'x-request-id': 'req-1' },
  });
  await ok.text();
  await (await fetch(`${gw.url}/missing`)).text();
  await gw.close(); // flushes the log
  const lines = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatchObject({
    requestId: 'req-1',
    client: '127.0.0.1',
    method: 'POST',
    path: '/api/x',
    route: 'api',
    service: 'svc',
    endpoint: `127.0.0.1:${up.port}`,
    status: 200,
    outcome: 'success',
    attempts: 1,
    bytesIn: 3,
    bytesOut: 5,
  });
  expect(lines[0].time).toMatch(/^\d{4}-\d\d-\d\dT/);
  expect(lines[0].durationMs).toBeGreaterThan(0);
  expect(lines[0].upstreamMs).toBeGreaterThan(0);
  expect(JSON.stringify(lines[0])).not.toContain('secret=1');
  expect(lines[1]).toMatchObject({
    path: '/missing',
    status: 404,
    code: 'route_not_found',
    outcome: 'local_reply',
    attempts: 0,
  });
  await up.close();
});

test('a reload whose access log cannot be opened is rejected and the old config keeps serving', async () => {
  const up = await startUpstream((_req, res) => res.end('still serving'));
  const gw = await startGateway(simpleConfig(up.url));
  const version = gw.gateway.snapshot!.version;
  const dir = mkdtempSync(join(tmpdir(), 'trellis-log-'));
  // A directory where the file should be: the open fails (EISDIR), as a read-only or full disk would.
  await expect(gw.apply({ ...simpleConfig(up.url), accessLog: { output: dir } })).rejects.toThrow(
    /access log/,
  );
  expect(gw.gateway.snapshot!.version).toBe(version);
  expect(await (await fetch(gw.url)).text()).toBe('still serving');
  await gw.close();
  await up.close();
});

function logLines(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

test('credentials, tokens and cookies never reach the access log', async () => {
  const up = await startUpstream((_req, res) => res.end('ok'));
  const file = join(mkdtempSync(join(tmpdir(), 'trellis-log-')), 'access.log');
  const gw = await startGateway({ ...simpleConfig(up.url), accessLog: { output: file } });
  const secrets = ['Bearer-s3cr3t-token', 'c00kie-value', 'ap1-key-value', 'b4sic-pass', 'qu3ry-token'];
  await (
    await fetch(`${gw.url}/orders/7?access_token=${secrets[4]}&api_key=${secrets[2]}`, {
      headers: {
        authorization: `Bearer ${secrets[0]}`,
        cookie: `session=${secrets[1]}`,
        'x-api-key': secrets[2]!,
        'proxy-authorization': `Basic ${Buffer.from(`u:${secrets[3]}`).toString('base64')}`,
      },
    })
  ).text();
  await gw.close();
  const text = readFileSync(file, 'utf8');
  expect(logLines(file)).toHaveLength(1);
  for (const s of secrets) expect(text).not.toContain(s);
  expect(text).not.toContain(Buffer.from(`u:${secrets[3]}`).toString('base64'));
  expect(logLines(file)[0]!.path).toBe('/orders/7');
  await up.close();
});

test('sampling keeps every error, and fields selects and orders what is written', async () => {
  const up = await startUpstream((req, res) => {
    res.statusCode = req.url === '/fail' ? 502 : 200;
    res.end();
  });
  const file = join(mkdtempSync(join(tmpdir(), 'trellis-log-')), 'access.log');
  const gw = await startGateway({
    ...simpleConfig(up.url, [
      { name: 'all', match: { path: { prefix: '/' } }, backends: [{ service: 'svc' }] },
    ]),
    accessLog: { output: file, sample: 0.1, fields: ['status', 'path', 'code'] },
  });
  for (let i = 0; i < 200; i++) await (await fetch(`${gw.url}/ok`)).text();
  for (let i = 0; i < 20; i++) await (await fetch(`${gw.url}/fail`)).text();
  // A reload changes sampling without reopening the file.
  await gw.apply({
    ...simpleConfig(up.url),
    accessLog: { output: file, sample: 1, fields: ['path'] },
  });
  await (await fetch(`${gw.url}/after`)).text();
  // The line is written when the server side of the response closes, a moment after the client has it all.
  await new Promise((r) => setTimeout(r, 50));
  await gw.close();
  const lines = logLines(file);
  const ok = lines.filter((l) => l.path === '/ok');
  const fail = lines.filter((l) => l.path === '/fail');
  expect(fail).toHaveLength(20);
  expect(ok.length).toBeGreaterThan(2);
  expect(ok.length).toBeLessThan(60);
  expect(Object.keys(fail[0]!)).toEqual(['status', 'path']); // code is undefined for a proxied 502
  expect(lines.at(-1)).toEqual({ path: '/after' });
  await up.close();
});

test('a destination that stops reading loses lines, counted in /metrics, and never slows requests', async () => {
  const up = await startUpstream((_req, res) => res.end('ok'));
  const fifo = join(mkdtempSync(join(tmpdir(), 'trellis-log-')), 'stuck.fifo');
  execFileSync('mkfifo', [fifo]);
  // A reader that never reads: the pipe's 64 KiB fill, then every write waits.
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const gw = await startGateway({ ...simpleConfig(up.url), accessLog: { output: fifo } });
  // Long paths make ~4 KB lines: 400 of them are 1.6 MB, more than the pipe and the 512 KiB queue hold.
  const path = `/${'p'.repeat(4000)}`;
  const t0 = performance.now();
  for (let round = 0; round < 40; round++) {
    const batch = Array.from({ length: 10 }, () => fetch(`${gw.url}${path}`).then((r) => r.text()));
    expect(await Promise.all(batch)).toEqual(Array(10).fill('ok'));
  }
  expect(performance.now() - t0).toBeLessThan(10_000);
  const text = await gw.gateway.metrics!.registry.metrics();
  const dropped = Number(/^trellis_access_log_dropped_total (\d+)/m.exec(text)?.[1]);
  expect(dropped).toBeGreaterThan(100);
  expect(dropped).toBe(gw.gateway.accessLogDropped);
  await gw.close();
  closeSync(reader);
  await up.close();
}, 30_000);
