import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request } from 'undici';
import { describe, expect, test } from 'vitest';
import { closedAfterEach, type Problem, serviceConfig } from './helpers.js';
import { count, load, spawnUpstream, type UpstreamProcess } from './load.js';

// Upstream failure for real: processes killed mid-load, instances that hang, reset or answer 503, on loopback.
// Each load loop is bounded in requests and time.

const { cleanup, upstream, gateway } = closedAfterEach();
const config = serviceConfig;

const named = (name: string) => (req: IncomingMessage, res: ServerResponse) => {
  req.resume();
  req.on('end', () => res.end(name));
};

function events(channel: string): { list: Array<Record<string, unknown> & { at: number }>; stop(): void } {
  const list: Array<Record<string, unknown> & { at: number }> = [];
  const fn = (m: unknown) => list.push({ ...(m as Record<string, unknown>), at: Date.now() });
  subscribe(channel, fn);
  return { list, stop: () => unsubscribe(channel, fn) };
}

describe('an instance dies under load', () => {
  test('with 3 instances and one killed, ≥ 99.9% of requests succeed and the dead one is ejected within 2 s', async () => {
    const procs: UpstreamProcess[] = [];
    for (const n of ['a', 'b', 'c']) procs.push(await spawnUpstream(n));
    cleanup.push(() => {
      for (const p of procs) p.kill();
    });
    const gw = await gateway(
      config(
        procs.map((p) => p.url),
        { retries: { attempts: 3, on: ['connect-failure', 'reset', 'gateway-error'] } },
      ),
    );
    const ejections = events('trellis:outlier');
    cleanup.push(() => ejections.stop());
    let killedAt = 0;
    const r = await load({
      url: `${gw.url}/`,
      total: 6000,
      concurrency: 8,
      maxMs: 15_000,
      bodies: true,
      onProgress: (i) => {
        if (i === 1500) {
          killedAt = Date.now();
          procs[1]!.kill();
        }
      },
    });
    const ok = count(r.statuses, (s) => s === 200);
    expect(r.statuses.length).toBeGreaterThanOrEqual(3000);
    expect(ok / r.statuses.length).toBeGreaterThanOrEqual(0.999);
    if (process.env.DEBUG_EJECT)
      console.log(
        JSON.stringify(ejections.list),
        killedAt,
        r.statuses.length,
        r.bodies.slice(1500, 1530).join(''),
        r.bodies.slice(-40).join(''),
      );
    const eject = ejections.list.find((e) => e.event === 'eject' && e.endpoint === procs[1]!.url);
    expect(eject, 'the dead instance was ejected').toBeDefined();
    expect(eject!.at - killedAt).toBeLessThan(2000);
    // After the kill, the survivors carry the load.
    const after = r.bodies.slice(-500);
    expect(after.filter((b) => b === 'b').length).toBe(0);
    expect(after.filter((b) => b === 'a').length).toBeGreaterThan(100);
    expect(after.filter((b) => b === 'c').length).toBeGreaterThan(100);
  }, 60_000);
});

describe('retry budget', () => {
  test('with every instance answering 503, upstream requests stay ≤ 1.25× client requests', async () => {
    let upstreamRequests = 0;
    const fail = (_req: IncomingMessage, res: ServerResponse) => {
      upstreamRequests++;
      res.statusCode = 503;
      res.end('down');
    };
    const ups = [await upstream(fail), await upstream(fail), await upstream(fail)];
    const gw = await gateway(
      config(
        ups.map((u) => u.url),
        { retries: { attempts: 5, on: ['5xx'], backoff: { base: 1, max: 2 } } },
        { outlierDetection: { enabled: false } },
      ),
    );
    const r = await load({ url: `${gw.url}/`, total: 4000, concurrency: 16, maxMs: 30_000 });
    expect(r.statuses.length).toBe(4000);
    expect(count(r.statuses, (s) => s === 503)).toBe(4000);
    // Without a budget, 5 attempts would make this 5×.
    expect(upstreamRequests / r.statuses.length).toBeLessThanOrEqual(1.25);
    // And the budget did allow retries (20% plus the floor), not none.
    expect(upstreamRequests / r.statuses.length).toBeGreaterThan(1.1);
  }, 60_000);
});

describe('timeouts', () => {
  test('a hanging instance costs no more than the per-try timeout, and is then ejected', async () => {
    const hang = await upstream(() => {}); // never answers
    const good = await upstream(named('good'));
    const gw = await gateway(
      config(
        [hang.url, good.url],
        { retries: { attempts: 2, on: ['timeout'], perTryTimeout: '200ms', backoff: { base: 1, max: 1 } } },
        { loadBalancer: { type: 'round-robin' } },
      ),
    );
    const r = await load({ url: `${gw.url}/`, total: 40, concurrency: 4, maxMs: 20_000, bodies: true });
    expect(r.statuses.every((s) => s === 200)).toBe(true);
    expect(r.bodies.every((b) => b === 'good')).toBe(true);
    // Each request waits at most one per-try timeout (plus scheduling noise), never the 15 s route timeout.
    expect(Math.max(...r.latencies)).toBeLessThan(200 + 300);
    // After 5 timeouts in a row the hanging instance is ejected: a later batch never meets it, so no request in it
    // waits for a per-try timeout (200 ms).
    const later = await load({ url: `${gw.url}/`, total: 20, concurrency: 4, maxMs: 10_000, bodies: true });
    expect(later.bodies.every((b) => b === 'good')).toBe(true);
    expect(Math.max(...later.latencies)).toBeLessThan(180);
  }, 30_000);

  test('without a retry left, a per-try timeout is a 504 upstream_per_try_timeout; the route timeout its own code', async () => {
    const hang = await upstream(() => {});
    const gw = await gateway(
      config([hang.url], { retries: { attempts: 1, perTryTimeout: '100ms' }, timeouts: { request: '5s' } }),
    );
    let res = await fetch(gw.url);
    expect(res.status).toBe(504);
    let p = (await res.json()) as Problem;
    expect(p.code).toBe('upstream_per_try_timeout');
    expect(p.detail).toMatch(/no response in 100 ms/);
    await gw.apply(config([hang.url], { timeouts: { request: '150ms' } }));
    res = await fetch(gw.url);
    p = (await res.json()) as Problem;
    expect(res.status).toBe(504);
    expect(p.code).toBe('upstream_timeout');
  });
});

describe('circuit breaking', () => {
  test('the error-rate breaker opens (503 circuit_open, Retry-After), then closes through half-open probes', async () => {
    let healthy = false;
    let upstreamRequests = 0;
    const up = await upstream((_req, res) => {
      upstreamRequests++;
      res.statusCode = healthy ? 200 : 500;
      res.end(healthy ? 'ok' : 'boom');
    });
    const gw = await gateway(
      config(
        [up.url],
        {},
        {
          outlierDetection: { enabled: false },
          circuitBreaker: {
            errorRate: {
              failureRatio: 0.5,
              minimumRequests: 10,
              window: '10s',
              openFor: '300ms',
              halfOpenProbes: 2,
            },
          },
        },
      ),
    );
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await fetch(gw.url)).status);
    expect(statuses).toEqual(Array(10).fill(500));
    const open = await fetch(gw.url);
    expect(open.status).toBe(503);
    expect(open.headers.get('x-trellis-error')).toBe('circuit_open');
    expect(Number(open.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const before = upstreamRequests;
    for (let i = 0; i < 20; i++) expect((await fetch(gw.url)).status).toBe(503);
    expect(upstreamRequests).toBe(before); // fail fast: nothing reached the upstream
    healthy = true;
    await new Promise((r) => setTimeout(r, 350));
    // Half-open: probes go through; when they succeed the circuit closes.
    for (let i = 0; i < 5; i++) expect((await fetch(gw.url)).status).toBe(200);
  });

  test('maxRequests answers 503 overloaded at once instead of queueing', async () => {
    const slow = await upstream((_req, res) => setTimeout(() => res.end('slow'), 300));
    const gw = await gateway(config([slow.url], {}, { circuitBreaker: { maxRequests: 2 } }));
    const r = await load({ url: `${gw.url}/`, total: 6, concurrency: 6, maxMs: 5000 });
    expect(count(r.statuses, (s) => s === 200)).toBe(2);
    expect(count(r.statuses, (s) => s === 503)).toBe(4);
    const res = await fetch(gw.url);
    expect(res.status).toBe(200); // the limit frees up as requests finish
  });
});

describe('retries', () => {
  test('a retry goes to another endpoint and the body is replayed intact; x-trellis-attempts when asked', async () => {
    const bad = await upstream((req, res) => {
      req.resume();
      req.on('end', () => {
        res.statusCode = 503;
        res.end();
      });
    });
    const good = await upstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => res.end(`good:${Buffer.concat(chunks).toString()}`));
    });
    const gw = await gateway(
      config(
        [bad.url, good.url],
        { retries: { attempts: 2, on: ['5xx'], nonIdempotent: true, attemptsHeader: true } },
        { loadBalancer: { type: 'round-robin' }, outlierDetection: { enabled: false } },
      ),
    );
    for (let i = 0; i < 4; i++) {
      const res = await fetch(gw.url, { method: 'POST', body: `payload-${i}` });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(`good:payload-${i}`);
      expect(['1', '2']).toContain(res.headers.get('x-trellis-attempts'));
    }
  });

  test('POST is not retried on 503 unless the route says so, but is retried when the connect failed', async () => {
    let hits = 0;
    const bad = await upstream((req, res) => {
      hits++;
      req.resume();
      res.statusCode = 503;
      res.end();
    });
    const dead = await upstream(named('x'));
    const deadUrl = dead.url;
    await dead.close();
    const good = await upstream(named('good'));
    let gw = await gateway(
      config(
        [bad.url, good.url],
        { retries: { attempts: 3, on: ['5xx'] } },
        {
          loadBalancer: { type: 'round-robin' },
          outlierDetection: { enabled: false },
        },
      ),
    );
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(gw.url, { method: 'POST', body: 'x' })).status);
    expect(statuses.filter((s) => s === 503).length).toBe(2); // the POSTs that hit `bad` were answered as is
    expect(hits).toBe(2);
    await gw.close();
    cleanup.pop();
    // Connect refused: nothing was sent, so even a POST (the default retry policy) goes again, body and all.
    gw = await gateway(
      config(
        [deadUrl, good.url],
        {},
        { loadBalancer: { type: 'round-robin' }, outlierDetection: { enabled: false } },
      ),
    );
    for (let i = 0; i < 4; i++) {
      const res = await fetch(gw.url, { method: 'POST', body: 'x'.repeat(100_000) });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('good');
    }
  });

  test('a body larger than the replay buffer is not retried', async () => {
    let badHits = 0;
    const bad = await upstream((req, res) => {
      badHits++;
      req.resume();
      req.on('end', () => {
        res.statusCode = 503;
        res.end();
      });
    });
    const good = await upstream(named('good'));
    const gw = await gateway(
      config(
        [bad.url, good.url],
        { retries: { attempts: 2, on: ['5xx'], nonIdempotent: true, replayBuffer: '1KiB' } },
        { loadBalancer: { type: 'round-robin' }, outlierDetection: { enabled: false } },
      ),
    );
    // Round robin alternates: of two large bodies, one meets `bad` and its 503 comes back as is.
    const large: number[] = [];
    for (let i = 0; i < 2; i++)
      large.push((await fetch(gw.url, { method: 'PUT', body: 'x'.repeat(5000) })).status);
    expect(large.sort()).toEqual([200, 503]);
    // Small bodies are kept and replayed: both succeed, whichever endpoint they meet first.
    for (let i = 0; i < 2; i++)
      expect((await fetch(gw.url, { method: 'PUT', body: 'x'.repeat(100) })).status).toBe(200);
    expect(badHits).toBeGreaterThanOrEqual(2);
  });
});

describe('consistent hashing through the gateway', () => {
  test('the same key sticks to one endpoint; removing one of 5 remaps only its keys', async () => {
    const names = ['a', 'b', 'c', 'd', 'e'];
    const ups = await Promise.all(names.map((n) => upstream(named(n))));
    const svc = (urls: string[]) =>
      config(urls, {}, { loadBalancer: { type: 'ring-hash', hashOn: { header: 'x-user' } } });
    const gw = await gateway(svc(ups.map((u) => u.url)));
    const keys = 1000;
    const run = async () =>
      (
        await load({
          url: `${gw.url}/`,
          total: keys,
          concurrency: 1,
          maxMs: 30_000,
          bodies: true,
          headers: (i) => ({ 'x-user': `user-${i}` }),
        })
      ).bodies;
    const first = await run();
    expect(await run()).toEqual(first); // sticky
    await gw.apply(svc(ups.filter((_, i) => i !== 2).map((u) => u.url)));
    const second = await run();
    let moved = 0;
    for (let i = 0; i < keys; i++) {
      if (first[i] !== second[i]) {
        moved++;
        expect(first[i]).toBe('c'); // only keys of the removed endpoint move
      }
    }
    expect(moved).toBe(count(first, (b) => b === 'c'));
    expect(moved / keys).toBeLessThan(0.2 + 0.08);
  }, 60_000);
});

describe('traffic shaping', () => {
  test('mirroring copies requests to a shadow service without slowing or failing the real one', async () => {
    const seen: Array<{ host: string; body: string }> = [];
    const shadow = await upstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        seen.push({ host: req.headers.host ?? '', body: Buffer.concat(chunks).toString() });
        // A slow, failing shadow must not matter.
        setTimeout(() => {
          res.statusCode = 500;
          res.end();
        }, 500);
      });
    });
    const main = await upstream(named('main'));
    const gw = await gateway({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      services: [
        { name: 'main', endpoints: [main.url] },
        { name: 'shadow', endpoints: [shadow.url] },
      ],
      routes: [{ name: 'all', backends: [{ service: 'main' }], mirror: { service: 'shadow', percent: 100 } }],
    });
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) {
      const res = await request(`${gw.url}/m`, {
        method: 'POST',
        body: `b${i}`,
        headers: { host: 'api.test' },
      });
      expect(await res.body.text()).toBe('main');
    }
    expect(performance.now() - t0).toBeLessThan(400);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.length).toBe(5);
    expect(seen[0]!.host).toBe('api.test-shadow');
    expect(seen.map((s) => s.body)).toEqual(['b0', 'b1', 'b2', 'b3', 'b4']);
  });

  test('fault injection: aborts with the configured status and delays, by percentage or by header', async () => {
    const up = await upstream(named('ok'));
    const gw = await gateway({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      services: [{ name: 'svc', endpoints: [up.url] }],
      routes: [
        {
          name: 'abort',
          match: { path: { prefix: '/abort' } },
          backends: [{ service: 'svc' }],
          fault: { abort: { status: 418, percent: 100 } },
        },
        {
          name: 'chaos',
          match: { path: { prefix: '/chaos' } },
          backends: [{ service: 'svc' }],
          fault: { headers: true },
        },
        { name: 'plain', backends: [{ service: 'svc' }] },
      ],
    });
    const a = await fetch(`${gw.url}/abort`);
    expect(a.status).toBe(418);
    expect(((await a.json()) as Problem).code).toBe('fault_injected');
    expect((await fetch(`${gw.url}/chaos`, { headers: { 'x-trellis-fault-abort': '503' } })).status).toBe(
      503,
    );
    const t0 = performance.now();
    const d = await fetch(`${gw.url}/chaos`, { headers: { 'x-trellis-fault-delay': '200' } });
    expect(await d.text()).toBe('ok');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    // Routes without `fault.headers` ignore the headers.
    expect((await fetch(`${gw.url}/plain`, { headers: { 'x-trellis-fault-abort': '503' } })).status).toBe(
      200,
    );
  });
});

describe('active health checks', () => {
  test('an endpoint failing its health check stops getting traffic and comes back when it passes', async () => {
    let aHealthy = true;
    const a = await upstream((req, res) => {
      if (req.url === '/healthz') {
        res.statusCode = aHealthy ? 200 : 503;
        res.end();
      } else res.end('a');
    });
    const b = await upstream((req, res) => res.end(req.url === '/healthz' ? '' : 'b'));
    const gw = await gateway(
      config(
        [a.url, b.url],
        {},
        {
          loadBalancer: { type: 'round-robin' },
          healthCheck: { path: '/healthz', interval: '50ms', unhealthyThreshold: 2, healthyThreshold: 2 },
        },
      ),
    );
    const bodies = async (n: number) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push(await (await fetch(gw.url)).text());
      return out;
    };
    expect(new Set(await bodies(4))).toEqual(new Set(['a', 'b']));
    aHealthy = false;
    await new Promise((r) => setTimeout(r, 300));
    expect(await bodies(6)).toEqual(Array(6).fill('b'));
    aHealthy = true;
    await new Promise((r) => setTimeout(r, 300));
    expect(new Set(await bodies(4))).toEqual(new Set(['a', 'b']));
  });
});

describe('DNS discovery', () => {
  test('endpoints come from A records, follow a changed record by its TTL, and from SRV records', async () => {
    const { startDnsServer } = await import('./dns-server.js');
    const { createServer } = await import('node:http');
    const one = await upstream((req, res) => res.end(`one ${req.headers.host}`));
    // The same port on another loopback address: only DNS tells them apart.
    const two = createServer((_req, res) => res.end('two'));
    await new Promise<void>((resolve) => two.listen(one.port, '127.0.0.2', resolve));
    cleanup.push(() => new Promise((resolve) => two.close(resolve)));
    const dns = await startDnsServer({
      A: { 'api.test': [{ address: '127.0.0.1', ttl: 1 }] },
      SRV: {
        '_http._tcp.api.test': [{ priority: 0, weight: 1, port: one.port, target: 'api.test', ttl: 1 }],
      },
    });
    cleanup.push(() => dns.close());
    const servers = [`127.0.0.1:${dns.port}`];
    const gw = await gateway({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      services: [
        { name: 'a', dns: { name: 'api.test', port: one.port, servers, minRefresh: '100ms' } },
        { name: 'srv', dns: { name: '_http._tcp.api.test', servers, minRefresh: '100ms' } },
      ],
      routes: [
        {
          name: 'srv',
          match: { path: { prefix: '/srv' } },
          backends: [{ service: 'srv' }],
          preserveHost: false,
        },
        { name: 'a', backends: [{ service: 'a' }], preserveHost: false },
      ],
    });
    // The first answer was awaited before the config went live: no 503 for the first request.
    expect(await (await fetch(gw.url)).text()).toBe(`one api.test:${one.port}`);
    expect(await (await fetch(`${gw.url}/srv`)).text()).toBe(`one api.test:${one.port}`);
    const before = gw.gateway.snapshot!.services.get('a')!.endpoints[0]!;
    dns.setRecords({ A: { 'api.test': [{ address: '127.0.0.2', ttl: 1 }] } });
    const deadline = Date.now() + 5000;
    let body = '';
    while (Date.now() < deadline && body !== 'two') {
      body = await (await fetch(gw.url)).text();
      if (body !== 'two') await new Promise((r) => setTimeout(r, 100));
    }
    expect(body).toBe('two');
    expect(gw.gateway.snapshot!.services.get('a')!.endpoints[0]!.origin).toBe(`http://127.0.0.2:${one.port}`);
    expect(before.origin).toBe(`http://127.0.0.1:${one.port}`);
    // A DNS failure keeps the last good endpoints.
    dns.setSilent(true);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await (await fetch(gw.url)).text()).toBe('two');
  }, 30_000);
});

describe('reloads keep upstream state', () => {
  test('an ejected endpoint stays ejected across a reload, also when its service config changed', async () => {
    const dead = await upstream(named('x'));
    const deadUrl = dead.url;
    await dead.close();
    const good = await upstream(named('good'));
    const svc = (ratio: number) =>
      config([deadUrl, good.url], {}, { loadBalancer: { type: 'round-robin' }, retryBudget: { ratio } });
    const gw = await gateway(svc(0.2));
    for (let i = 0; i < 12; i++) expect(await (await fetch(gw.url)).text()).toBe('good');
    const ejected = () =>
      gw.gateway.snapshot!.services.get('svc')!.endpoints.find((e) => e.origin === deadUrl)!;
    expect(ejected().ejectedUntil).toBeGreaterThan(0);
    const service = gw.gateway.snapshot!.services.get('svc');
    await gw.apply(svc(0.2)); // same service config: the same object
    expect(gw.gateway.snapshot!.services.get('svc')).toBe(service);
    await gw.apply(svc(0.3)); // changed service: a new object, the same endpoints and their state
    expect(gw.gateway.snapshot!.services.get('svc')).not.toBe(service);
    expect(ejected().ejectedUntil).toBeGreaterThan(0);
    expect(gw.gateway.snapshot!.services.get('svc')!.eligible.map((e) => e.origin)).toEqual([good.url]);
  });

  test('a removed service stops its health checks', async () => {
    let checks = 0;
    const up = await upstream((req, res) => {
      if (req.url === '/healthz') checks++;
      res.end('ok');
    });
    const gw = await gateway(config([up.url], {}, { healthCheck: { interval: '30ms' } }));
    await new Promise((r) => setTimeout(r, 200));
    expect(checks).toBeGreaterThan(2);
    await gw.apply({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      routes: [{ name: 'r', directResponse: { status: 200 } }],
    });
    await new Promise((r) => setTimeout(r, 100));
    const after = checks;
    await new Promise((r) => setTimeout(r, 200));
    expect(checks).toBe(after);
  });
});
