import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startUpstream, type Upstream } from './helpers.js';
import { type GatewayProcess, gatewayYaml, spawnGateway } from './process.js';

const config = (tag: string) =>
  gatewayYaml(`    responseHeaders:
      set: { x-config: "${tag}" }
`);

const INVALID = `
listeners:
  - name: public
    port: {{PORT}}
admin:
  port: {{ADMIN_PORT}}
routes:
  - name: all
    backends: [{ service: missing }]
    matchh: {}
`;

describe('reload under load (2 workers)', () => {
  let up: Upstream;
  let gw: GatewayProcess;
  beforeAll(async () => {
    up = await startUpstream((_req, res) => res.end('ok'));
    gw = await spawnGateway(config('a'), { workers: 2, upstream: up.url });
    await gw.waitReady();
  });
  afterAll(async () => {
    gw.kill('SIGTERM');
    await gw.exited;
    await up.close();
  });

  test('200 reloads (valid configs alternating, invalid ones between) lose no request and reset no connection', async () => {
    const pool = new Pool(gw.url, { connections: 8, pipelining: 1 });
    let ok = 0;
    let failed = 0;
    const errors: string[] = [];
    let stop = false;
    const seen = new Set<string>();
    const loop = async () => {
      while (!stop) {
        try {
          const r = await pool.request({ path: '/', method: 'GET' });
          const text = await r.body.text();
          if (r.statusCode === 200 && text === 'ok') {
            ok++;
            seen.add(String(r.headers['x-config']));
          } else {
            failed++;
            errors.push(`${r.statusCode} ${text.slice(0, 200)}`);
          }
        } catch (err) {
          failed++;
          errors.push((err as Error).message);
        }
      }
    };
    const deadline = setTimeout(() => (stop = true), 120_000);
    const loops = Array.from({ length: 8 }, loop);

    let expectedVersion = (await gw.admin('/ready')).body.version as number;
    let reloads = 0;
    let rejected = 0;
    let tag = 'a';
    for (let i = 0; reloads < 200 && !stop; i++) {
      if (i % 3 === 2) {
        gw.writeConfig(INVALID);
        gw.kill('SIGHUP');
        reloads++;
        // Wait until the gateway has seen and rejected it (lastError is cleared by every valid apply).
        for (let tries = 0; ; tries++) {
          if ((await gw.admin('/config')).body.lastError) break;
          if (tries === 400) throw new Error(`invalid config #${reloads} was never rejected`);
          await new Promise((r) => setTimeout(r, 5));
        }
        rejected++;
        continue;
      }
      tag = tag === 'a' ? 'b' : 'a';
      gw.writeConfig(config(tag));
      gw.kill('SIGHUP');
      reloads++;
      expectedVersion++;
      // Wait until every worker serves the new version.
      for (let tries = 0; tries < 400; tries++) {
        const s = (await gw.admin('/ready')).body;
        if (
          s.workers.length === 2 &&
          s.workers.every((w: { version: number }) => w.version >= expectedVersion)
        )
          break;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    stop = true;
    clearTimeout(deadline);
    await Promise.all(loops);
    await pool.close();

    expect(reloads).toBe(200);
    expect(rejected).toBe(66);
    expect(errors.slice(0, 5)).toEqual([]);
    expect(failed).toBe(0);
    expect(ok).toBeGreaterThan(500);
    expect(seen).toEqual(new Set(['a', 'b']));
    const final = (await gw.admin('/ready')).body;
    expect(final.workers).toHaveLength(2);
    for (const w of final.workers) expect(w.version).toBe(final.version);
    expect(final.version).toBe(expectedVersion);
    expect(gw.stderr()).toContain('config rejected');
    const view = (await gw.admin('/config')).body;
    expect(view.version).toBe(final.version);
    expect(view.hash).toMatch(/^[0-9a-f]{64}$/);
  }, 180_000);
});

describe('SIGTERM drains', () => {
  test('in-flight requests finish, new connections are refused, exit code 0', async () => {
    let arrived!: () => void;
    const upstreamSawIt = new Promise<void>((resolve) => (arrived = resolve));
    const up = await startUpstream((_req, res) => {
      arrived();
      setTimeout(() => res.end('slow ok'), 600);
    });
    const gw = await spawnGateway(config('a'), { workers: 1, upstream: up.url });
    await gw.waitReady();
    const inflight = fetch(`${gw.url}/slow`).then(async (r) => ({ status: r.status, text: await r.text() }));
    await upstreamSawIt;
    gw.kill('SIGTERM');
    // New connections are refused once the listener closes (poll: the signal takes a moment to arrive).
    let refused = false;
    for (let i = 0; i < 100 && !refused; i++) {
      refused = await fetch(`${gw.url}/after`).then(
        () => false,
        () => true,
      );
      if (!refused) await new Promise((r) => setTimeout(r, 20));
    }
    expect(refused).toBe(true);
    expect(await inflight).toEqual({ status: 200, text: 'slow ok' });
    expect(await gw.exited).toBe(0);
    await up.close();
  }, 30_000);
});

describe('file watch, admin and secrets', () => {
  test('saving the file reloads; a bad save keeps the old config; /config redacts secrets', async () => {
    const up = await startUpstream((req, res) => res.end(String(req.headers['x-api-key'])));
    const withSecret = (tag: string) =>
      gatewayYaml(`    requestHeaders:
      set: { x-api-key: "\${env:TEST_API_KEY}" }
    responseHeaders:
      set: { x-config: "${tag}" }
`);
    const gw = await spawnGateway(withSecret('one'), {
      workers: 1,
      upstream: up.url,
      env: { TEST_API_KEY: 's3cr3t-value' },
    });
    try {
      await gw.waitReady();
      const first = await fetch(gw.url);
      expect(await first.text()).toBe('s3cr3t-value');
      expect(first.headers.get('x-config')).toBe('one');

      const view = await gw.admin('/config');
      expect(JSON.stringify(view.body)).not.toContain('s3cr3t-value');
      expect(view.body.config.routes[0].requestHeaders.set['x-api-key']).toBe('<redacted>');
      expect(view.body.version).toBe(1);

      gw.writeConfig(withSecret('two'));
      await waitFor(async () => (await fetch(gw.url)).headers.get('x-config') === 'two');

      gw.writeConfig('listeners: [ {name: public, port: {{PORT}} ]  # broken YAML');
      await waitFor(() => gw.stderr().includes('config rejected'));
      const still = await fetch(gw.url);
      expect(still.headers.get('x-config')).toBe('two');
      expect((await gw.admin('/ready')).status).toBe(200);
      expect((await gw.admin('/config')).body.lastError.errors).toMatch(/trellis\.yaml:1:/);
    } finally {
      gw.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
      await up.close();
    }
  }, 60_000);
});

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('condition not met in time');
}

describe('cluster: a worker dies', () => {
  test('it is replaced, and a reload during the restart reaches every worker', async () => {
    const up = await startUpstream((_req, res) => res.end('ok'));
    const gw = await spawnGateway(config('a'), { workers: 2, upstream: up.url });
    try {
      await gw.waitReady();
      const before = (await gw.admin('/ready')).body;
      const victim = before.workers[0].pid as number;
      process.kill(victim, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 50));
      gw.writeConfig(config('b'));
      gw.kill('SIGHUP');
      const deadline = Date.now() + 15_000;
      let s = before;
      while (Date.now() < deadline) {
        s = (await gw.admin('/ready')).body;
        const pids = s.workers.map((w: { pid: number }) => w.pid);
        if (
          s.workers.length === 2 &&
          !pids.includes(victim) &&
          s.workers.every((w: { version: number }) => w.version === before.version + 1)
        )
          break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(s.version).toBe(before.version + 1);
      expect(s.workers).toHaveLength(2);
      for (const w of s.workers) expect(w.version).toBe(s.version);
      expect(gw.stderr()).not.toContain('failed to apply');
      const r = await fetch(gw.url);
      expect(r.headers.get('x-config')).toBe('b');
    } finally {
      gw.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
      await up.close();
    }
  }, 60_000);
});
