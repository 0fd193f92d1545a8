import { mkdtempSync, readFileSync } from 'node:fs';
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
