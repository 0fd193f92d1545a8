import { promises as dns } from 'node:dns';
import { afterEach, describe, expect, it } from 'vitest';
import { type DnsRecords, type DnsServer, startDnsServer } from '../../test/dns-server.js';
import { DnsDiscovery, type DnsDiscoveryOptions, type DnsTarget, type ResolvedAddress } from './discovery.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function server(records: DnsRecords): Promise<DnsServer> {
  const s = await startDnsServer(records);
  cleanups.push(() => s.close());
  return s;
}

function resolverFor(s: DnsServer): dns.Resolver {
  const r = new dns.Resolver({ timeout: 150, tries: 1 });
  r.setServers([`127.0.0.1:${s.port}`]);
  return r;
}

interface Harness {
  d: DnsDiscovery;
  changes: Array<readonly ResolvedAddress[]>;
  errors: Error[];
}

function discovery(s: DnsServer, target: DnsTarget, o: Partial<DnsDiscoveryOptions> = {}): Harness {
  const changes: Array<readonly ResolvedAddress[]> = [];
  const errors: Error[] = [];
  const d = new DnsDiscovery(
    { target, minRefresh: 50, maxRefresh: 60_000, failureRefresh: 50, resolver: resolverFor(s), ...o },
    (a) => changes.push(a),
    (e) => errors.push(e),
  );
  cleanups.push(() => d.stop());
  return { d, changes, errors };
}

async function waitFor(cond: () => boolean, ms = 4000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('test DNS server', () => {
  it('answers A, AAAA and SRV, NXDOMAIN for unknown names, NOERROR-empty for a missing type', async () => {
    const s = await server({
      A: { 'Api.Test': [{ address: '10.0.0.1', ttl: 5 }] },
      AAAA: { 'v6.test': [{ address: '2001:db8::1', ttl: 7 }] },
      SRV: { '_http._tcp.api.test': [{ priority: 1, weight: 10, port: 8080, target: 'api.test', ttl: 30 }] },
    });
    const r = resolverFor(s);
    expect(await r.resolve4('api.test', { ttl: true })).toEqual([{ address: '10.0.0.1', ttl: 5 }]);
    expect(await r.resolve6('v6.test', { ttl: true })).toEqual([{ address: '2001:db8::1', ttl: 7 }]);
    // Node 24 adds `type: 'SRV'` to each record; the fields that matter are the same on every version.
    const srv = await r.resolveSrv('_http._tcp.api.test');
    expect(srv).toHaveLength(1);
    expect(srv[0]).toMatchObject({ name: 'api.test', port: 8080, priority: 1, weight: 10 });
    await expect(r.resolve4('missing.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(r.resolve6('api.test')).rejects.toMatchObject({ code: 'ENODATA' });
    expect(s.queries).toBe(5);
  });
});

describe('DnsDiscovery: A/AAAA', () => {
  it('resolves A with the configured port', async () => {
    const s = await server({
      A: {
        'api.test': [
          { address: '10.0.0.2', ttl: 60 },
          { address: '10.0.0.1', ttl: 60 },
        ],
      },
    });
    const { d, changes, errors } = discovery(s, { hostname: 'api.test', port: 8080, family: 4 });
    const addrs = await d.start();
    expect(addrs).toEqual([
      { address: '10.0.0.1', port: 8080, family: 4 },
      { address: '10.0.0.2', port: 8080, family: 4 },
    ]);
    expect(d.current).toBe(addrs);
    expect(changes).toEqual([]); // the first set comes through start(), not onChange
    expect(errors).toEqual([]);
    expect(s.queries).toBe(1); // family 4: no AAAA query
  });

  it("family 'any' merges A and AAAA; family 6 asks AAAA only", async () => {
    const s = await server({
      A: { 'api.test': [{ address: '10.0.0.1', ttl: 60 }] },
      AAAA: { 'api.test': [{ address: '2001:db8::5', ttl: 60 }] },
    });
    const any = discovery(s, { hostname: 'api.test', port: 443, family: 'any' });
    expect(await any.d.start()).toEqual([
      { address: '10.0.0.1', port: 443, family: 4 },
      { address: '2001:db8::5', port: 443, family: 6 },
    ]);
    const v6 = discovery(s, { hostname: 'api.test', port: 443, family: 6 });
    expect(await v6.d.start()).toEqual([{ address: '2001:db8::5', port: 443, family: 6 }]);
    expect(s.queries).toBe(3);
  });

  it("family 'any' with no AAAA records is fine (ENODATA on AAAA is normal)", async () => {
    const s = await server({ A: { 'api.test': [{ address: '10.0.0.1', ttl: 60 }] } });
    const { d, errors } = discovery(s, { hostname: 'api.test', port: 80, family: 'any' });
    expect(await d.start()).toEqual([{ address: '10.0.0.1', port: 80, family: 4 }]);
    expect(errors).toEqual([]);
  });

  it('refreshes by TTL and reports a changed set', async () => {
    const s = await server({ A: { 'api.test': [{ address: '10.0.0.1', ttl: 1 }] } });
    const { d, changes, errors } = discovery(
      s,
      { hostname: 'api.test', port: 80, family: 4 },
      { minRefresh: 200 },
    );
    await d.start();
    const t0 = Date.now();
    s.setRecords({
      A: {
        'api.test': [
          { address: '10.0.0.9', ttl: 1 },
          { address: '10.0.0.1', ttl: 1 },
        ],
      },
    });
    await waitFor(() => changes.length === 1, 2500);
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(800); // waited for the 1 s TTL, not the 200 ms minRefresh
    expect(changes[0]).toEqual([
      { address: '10.0.0.1', port: 80, family: 4 },
      { address: '10.0.0.9', port: 80, family: 4 },
    ]);
    expect(d.current).toBe(changes[0]);
    expect(errors).toEqual([]);
  });

  it('clamps the TTL to [minRefresh, maxRefresh]', async () => {
    const s = await server({ A: { 'api.test': [{ address: '10.0.0.1', ttl: 3600 }] } });
    const { d } = discovery(
      s,
      { hostname: 'api.test', port: 80, family: 4 },
      { minRefresh: 10, maxRefresh: 60 },
    );
    await d.start();
    await waitFor(() => s.queries >= 4, 2000);
    const z = await server({ A: { 'zero.test': [{ address: '10.0.0.1', ttl: 0 }] } });
    const zero = discovery(z, { hostname: 'zero.test', port: 80, family: 4 }, { minRefresh: 300 });
    await zero.d.start();
    await sleep(200);
    expect(z.queries).toBe(1); // TTL 0 waits minRefresh
  });

  it('unchanged answers do not fire onChange (order does not matter)', async () => {
    const s = await server({
      A: {
        'api.test': [
          { address: '10.0.0.1', ttl: 0 },
          { address: '10.0.0.2', ttl: 0 },
        ],
      },
    });
    const { d, changes, errors } = discovery(s, { hostname: 'api.test', port: 80, family: 4 });
    await d.start();
    await waitFor(() => s.queries >= 3);
    s.setRecords({
      A: {
        'api.test': [
          { address: '10.0.0.2', ttl: 0 },
          { address: '10.0.0.1', ttl: 0 },
        ],
      },
    });
    const q = s.queries;
    await waitFor(() => s.queries >= q + 3);
    expect(changes).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('a server that stops answering keeps the last good set and reports errors', async () => {
    const s = await server({ A: { 'api.test': [{ address: '10.0.0.1', ttl: 0 }] } });
    const { d, changes, errors } = discovery(s, { hostname: 'api.test', port: 80, family: 4 });
    const first = await d.start();
    s.setSilent(true);
    await waitFor(() => errors.length >= 2);
    expect(errors[0]!.message).toMatch(/^DNS: resolving api\.test:80 failed: .*ETIMEOUT/);
    expect(d.current).toBe(first);
    expect(changes).toEqual([]);
    // It answers again: the same set, so still no onChange; errors stop.
    s.setSilent(false);
    const q = s.queries;
    await waitFor(() => s.queries >= q + 3);
    const n = errors.length;
    await waitFor(() => s.queries >= q + 6);
    expect(errors.length).toBe(n);
    expect(changes).toEqual([]);
    expect(d.current).toBe(first);
  });

  it('NXDOMAIN after having resolved keeps the last good set and reports it', async () => {
    const s = await server({ A: { 'api.test': [{ address: '10.0.0.1', ttl: 0 }] } });
    const { d, changes, errors } = discovery(s, { hostname: 'api.test', port: 80, family: 'any' });
    const first = await d.start();
    s.setRecords({});
    await waitFor(() => errors.length >= 2);
    expect(errors[0]!.message).toMatch(/ENOTFOUND/);
    expect(d.current).toEqual(first);
    expect(changes).toEqual([]);
    s.setRecords({ A: { 'api.test': [{ address: '10.0.0.3', ttl: 0 }] } });
    await waitFor(() => changes.length === 1);
    expect(changes[0]).toEqual([{ address: '10.0.0.3', port: 80, family: 4 }]);
  });

  it('a first failure rejects start() and retries every failureRefresh until an answer comes', async () => {
    const s = await server({});
    const { d, changes, errors } = discovery(s, { hostname: 'late.test', port: 80, family: 4 });
    await expect(d.start()).rejects.toThrow(/^DNS: resolving late\.test:80 failed: .*ENOTFOUND/);
    expect(d.current).toEqual([]);
    await waitFor(() => errors.length >= 1); // retries report through onError
    s.setRecords({ A: { 'late.test': [{ address: '10.0.0.4', ttl: 60 }] } });
    await waitFor(() => changes.length === 1);
    expect(changes[0]).toEqual([{ address: '10.0.0.4', port: 80, family: 4 }]);
    expect(d.current).toBe(changes[0]);
  });

  it('an AAAA timeout while A answers keeps the last AAAA addresses and reports it', async () => {
    const s = await server({
      A: { 'api.test': [{ address: '10.0.0.1', ttl: 0 }] },
      AAAA: { 'api.test': [{ address: '2001:db8::1', ttl: 0 }] },
    });
    const { d, changes, errors } = discovery(s, { hostname: 'api.test', port: 80, family: 'any' });
    const first = await d.start();
    expect(first).toHaveLength(2);
    s.setSilent(['AAAA']);
    await waitFor(() => errors.length >= 2);
    expect(errors[0]!.message).toMatch(/queryAaaa ETIMEOUT/);
    expect(d.current).toBe(first);
    // A changes meanwhile: the change is taken, the v6 address kept.
    s.setRecords({
      A: { 'api.test': [{ address: '10.0.0.2', ttl: 0 }] },
      AAAA: { 'api.test': [{ address: '2001:db8::1', ttl: 0 }] },
    });
    await waitFor(() => changes.length === 1);
    expect(changes[0]).toEqual([
      { address: '10.0.0.2', port: 80, family: 4 },
      { address: '2001:db8::1', port: 80, family: 6 },
    ]);
  });

  it('AAAA records that legitimately disappear (ENODATA) drop the v6 addresses', async () => {
    const s = await server({
      A: { 'api.test': [{ address: '10.0.0.1', ttl: 0 }] },
      AAAA: { 'api.test': [{ address: '2001:db8::1', ttl: 0 }] },
    });
    const { d, changes, errors } = discovery(s, { hostname: 'api.test', port: 80, family: 'any' });
    expect(await d.start()).toHaveLength(2);
    s.setRecords({ A: { 'api.test': [{ address: '10.0.0.1', ttl: 0 }] } });
    await waitFor(() => changes.length === 1);
    expect(changes[0]).toEqual([{ address: '10.0.0.1', port: 80, family: 4 }]);
    expect(errors).toEqual([]);
  });

  it('stop() ends refreshing', async () => {
    const s = await server({ A: { 'api.test': [{ address: '10.0.0.1', ttl: 0 }] } });
    const { d } = discovery(s, { hostname: 'api.test', port: 80, family: 4 });
    await d.start();
    await waitFor(() => s.queries >= 2);
    d.stop();
    const q = s.queries;
    await sleep(250);
    expect(s.queries).toBeLessThanOrEqual(q + 1); // at most one query that was already in flight
  });

  it('IP literals need no DNS', async () => {
    const s = await server({});
    const v4 = discovery(s, { hostname: '192.0.2.7', port: 81, family: 'any' });
    expect(await v4.d.start()).toEqual([{ address: '192.0.2.7', port: 81, family: 4 }]);
    const v6 = discovery(s, { hostname: '[2001:db8::7]', port: 82, family: 'any' });
    expect(await v6.d.start()).toEqual([{ address: '2001:db8::7', port: 82, family: 6 }]);
    const srv = discovery(s, { hostname: '192.0.2.7', port: undefined, family: 'any' });
    await expect(srv.d.start()).rejects.toThrow(/SRV lookup needs a hostname/);
    await sleep(100);
    expect(s.queries).toBe(0);
  });
});

describe('DnsDiscovery: SRV', () => {
  it('gives ports and targets, resolving target names and taking IP literals as they are', async () => {
    const s = await server({
      SRV: {
        '_api._tcp.svc.test': [
          { priority: 0, weight: 10, port: 9001, target: 'a.svc.test', ttl: 30 },
          { priority: 0, weight: 5, port: 9002, target: 'b.svc.test', ttl: 30 },
          { priority: 1, weight: 1, port: 9003, target: '192.0.2.9', ttl: 30 },
        ],
      },
      A: {
        'a.svc.test': [{ address: '10.1.0.1', ttl: 60 }],
        'b.svc.test': [
          { address: '10.1.0.2', ttl: 60 },
          { address: '10.1.0.3', ttl: 60 },
        ],
      },
      AAAA: { 'b.svc.test': [{ address: 'fd00::2', ttl: 60 }] },
    });
    const { d, errors } = discovery(s, { hostname: '_api._tcp.svc.test', port: undefined, family: 'any' });
    expect(await d.start()).toEqual([
      { address: '10.1.0.1', port: 9001, family: 4, priority: 0, weight: 10, target: 'a.svc.test' },
      { address: '10.1.0.2', port: 9002, family: 4, priority: 0, weight: 5, target: 'b.svc.test' },
      { address: '10.1.0.3', port: 9002, family: 4, priority: 0, weight: 5, target: 'b.svc.test' },
      { address: '192.0.2.9', port: 9003, family: 4, priority: 1, weight: 1, target: '192.0.2.9' },
      { address: 'fd00::2', port: 9002, family: 6, priority: 0, weight: 5, target: 'b.svc.test' },
    ]);
    expect(errors).toEqual([]);

    const v4 = discovery(s, { hostname: '_api._tcp.svc.test', port: undefined, family: 4 });
    expect((await v4.d.start()).map((a) => a.address)).toEqual([
      '10.1.0.1',
      '10.1.0.2',
      '10.1.0.3',
      '192.0.2.9',
    ]);
  });

  it('refreshes SRV on srvRefresh (or the targets’ shorter TTL) and reports changes', async () => {
    const records = (port: number): DnsRecords => ({
      SRV: { '_api._tcp.svc.test': [{ priority: 0, weight: 1, port, target: 'a.svc.test', ttl: 3600 }] },
      A: { 'a.svc.test': [{ address: '10.1.0.1', ttl: 3600 }] },
    });
    const s = await server(records(9001));
    const { d, changes } = discovery(
      s,
      { hostname: '_api._tcp.svc.test', port: undefined, family: 4 },
      { srvRefresh: 100 },
    );
    await d.start();
    s.setRecords(records(9005));
    await waitFor(() => changes.length === 1, 2000);
    expect(changes[0]).toEqual([
      { address: '10.1.0.1', port: 9005, family: 4, priority: 0, weight: 1, target: 'a.svc.test' },
    ]);
  });

  it('an SRV name that vanishes keeps the last good set', async () => {
    const s = await server({
      SRV: { '_api._tcp.svc.test': [{ priority: 0, weight: 1, port: 9001, target: '10.0.0.1', ttl: 1 }] },
    });
    const { d, changes, errors } = discovery(
      s,
      { hostname: '_api._tcp.svc.test', port: undefined, family: 'any' },
      { srvRefresh: 50 },
    );
    const first = await d.start();
    s.setRecords({});
    await waitFor(() => errors.length >= 1);
    expect(errors[0]!.message).toMatch(/^DNS: resolving SRV _api\._tcp\.svc\.test failed: .*ENOTFOUND/);
    expect(d.current).toBe(first);
    expect(changes).toEqual([]);
  });
});
