import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import { hashApiKey } from '../src/stages/credentials.js';
import { closedAfterEach, type Problem, simpleConfig, startGateway } from './helpers.js';

const t = closedAfterEach();

/** Errors `trellis validate` would print for a YAML/JSON config text. */
function configErrors(config: unknown): Array<{ path: string; message: string }> {
  const r = loadConfigText(JSON.stringify(config), 'test.json');
  if (r.ok) return [];
  return r.errors.map((e) => ({ path: e.path, message: e.message }));
}

const base = {
  listeners: [{ name: 'public', port: 0 }],
  services: [{ name: 'svc', endpoints: ['http://127.0.0.1:1'] }],
  admin: { enabled: false },
};

async function metricsText(gw: { gateway: { metrics?: { registry: { metrics(): Promise<string> } } } }) {
  return gw.gateway.metrics!.registry.metrics();
}

describe('config', () => {
  test('an unknown policy type names the path and lists the known types', () => {
    const errors = configErrors({
      ...base,
      policies: [
        { name: 'a', type: 'ip-filter', deny: ['10.0.0.0/8'] },
        { name: 'b', type: 'ip-filter', deny: ['10.0.0.0/8'] },
        { name: 'c', type: 'api-kee' },
      ],
    });
    expect(errors).toHaveLength(1);
    expect(errors[0]!.path).toBe('policies[2].type');
    expect(errors[0]!.message).toMatch(
      /unknown type "api-kee" \(did you mean "api-key"\?\); expected one of: .*ip-filter.*api-key/,
    );
  });

  test('a wrong or unknown field names its path', () => {
    const errors = configErrors({
      ...base,
      policies: [
        { name: 'a', type: 'ip-filter', deny: ['10.0.0.0/33'] },
        { name: 'b', type: 'api-key', heade: 'x-key' },
        { name: 'c', type: 'ip-filter' },
      ],
    });
    expect(errors).toEqual([
      { path: 'policies[0].deny[0]', message: expect.stringMatching(/expected an IP address or CIDR range/) },
      { path: 'policies[1]', message: 'unknown key "heade" (did you mean "header"?)' },
      { path: 'policies[2]', message: 'expected at least one entry in "allow" or "deny"' },
    ]);
  });

  test('unknown and duplicate policy references are errors with a suggestion', () => {
    const errors = configErrors({
      ...base,
      listeners: [{ name: 'public', port: 0, policies: ['office'] }],
      policies: [
        { name: 'office', type: 'ip-filter', allow: ['10.0.0.0/8'] },
        { name: 'keys', type: 'api-key' },
        { name: 'keys', type: 'api-key' },
      ],
      routes: [
        { name: 'r', backends: [{ service: 'svc' }], policies: ['kees', 'office'] },
        { name: 's', backends: [{ service: 'svc' }], policies: ['keys', 'keys'] },
      ],
    });
    expect(errors).toEqual([
      { path: 'policies[2].name', message: 'duplicate policy name "keys" (also policies[1])' },
      { path: 'routes[0].policies[0]', message: 'unknown policy "kees" (did you mean "keys"?)' },
      { path: 'routes[0].policies[1]', message: 'policy "office" already applies through listener "public"' },
      {
        path: 'routes[1].policies[1]',
        message: 'policy "keys" is listed twice (also routes[1].policies[0])',
      },
    ]);
  });

  test('an anonymous consumer that does not exist is an error', () => {
    const errors = configErrors({
      ...base,
      consumers: [{ name: 'guest' }],
      policies: [{ name: 'keys', type: 'api-key', anonymous: 'gest' }],
    });
    expect(errors).toEqual([
      { path: 'policies[0].anonymous', message: 'unknown consumer "gest" (did you mean "guest"?)' },
    ]);
  });
});

describe('enforcement', () => {
  test('ip-filter on a route refuses with 403 client_address_denied; other routes pay nothing', async () => {
    const up = await t.upstream();
    const gw = await t.gateway({
      ...simpleConfig(up.url, [
        {
          name: 'closed',
          match: { path: { prefix: '/closed' } },
          backends: [{ service: 'svc' }],
          policies: ['no-loopback'],
        },
        { name: 'open', backends: [{ service: 'svc' }] },
      ]),
      policies: [{ name: 'no-loopback', type: 'ip-filter', deny: ['127.0.0.0/8', '::1'] }],
    });
    const denied = await fetch(`${gw.url}/closed`);
    expect(denied.status).toBe(403);
    expect(denied.headers.get('content-type')).toBe('application/problem+json');
    const body = (await denied.json()) as Problem;
    expect(body.code).toBe('client_address_denied');
    const open = await fetch(`${gw.url}/open`);
    expect(open.status).toBe(200);
    await open.text();
    // The open route's chain holds no policy stage; the closed one holds one.
    const stagesOf = (path: string) => {
      const m = gw.gateway.snapshot!.listeners.get('public')!.router.match({
        method: 'GET',
        host: '127.0.0.1',
        path,
        headers: {},
        query: '',
      } as never);
      if (m.kind !== 'match') throw new Error(`no route for ${path}`);
      return m.value.stages.map((s) => s.name);
    };
    expect(stagesOf('/open')).toEqual([]);
    expect(stagesOf('/closed')).toEqual(['no-loopback']);
  });

  test('a listener policy applies to every route of the listener, before the route policies', async () => {
    const up = await t.upstream();
    const key = 'k-listener-test';
    const gw = await t.gateway({
      ...simpleConfig(up.url, [
        { name: 'a', match: { path: { prefix: '/a' } }, backends: [{ service: 'svc' }] },
        { name: 'b', backends: [{ service: 'svc' }], policies: ['keys'] },
      ]),
      listeners: [{ name: 'public', port: 0, policies: ['block'] }],
      consumers: [{ name: 'alice', credentials: { apiKeys: [{ hash: hashApiKey(key) }] } }],
      policies: [
        { name: 'keys', type: 'api-key' },
        { name: 'block', type: 'ip-filter', deny: ['127.0.0.1'] },
      ],
    });
    for (const path of ['/a', '/b']) {
      const r = await fetch(`${gw.url}${path}`, { headers: { 'x-api-key': key } });
      expect(r.status).toBe(403);
      expect(((await r.json()) as Problem).code).toBe('client_address_denied');
    }
    // Phase order, whatever the listing: without a key, ip-filter still answers first.
    const r = await fetch(`${gw.url}/b`);
    expect(((await r.json()) as Problem).code).toBe('client_address_denied');
  });

  test('shadow mode lets the request through and records shadow_deny in metrics and the access log', async () => {
    const up = await t.upstream();
    const file = join(mkdtempSync(join(tmpdir(), 'trellis-policy-')), 'access.log');
    const gw = await startGateway({
      ...simpleConfig(up.url, [
        { name: 'r', backends: [{ service: 'svc' }], policies: ['try-block', 'allow-all'] },
      ]),
      policies: [
        { name: 'try-block', type: 'ip-filter', deny: ['127.0.0.0/8', '::1'], shadow: true },
        { name: 'allow-all', type: 'ip-filter', allow: ['0.0.0.0/0', '::/0'] },
      ],
      accessLog: { output: file },
    });
    const r = await fetch(`${gw.url}/x`);
    expect(r.status).toBe(200);
    await r.text();
    const text = await metricsText(gw);
    expect(text).toContain(
      'trellis_policy_decisions_total{trellis_route="r",trellis_policy="try-block",trellis_policy_type="ip-filter",decision="shadow_deny"} 1',
    );
    expect(text).toContain(
      'trellis_policy_decisions_total{trellis_route="r",trellis_policy="allow-all",trellis_policy_type="ip-filter",decision="allow"} 1',
    );
    await gw.close();
    const line = JSON.parse(readFileSync(file, 'utf8').trim().split('\n')[0]!);
    expect(line.decisions).toEqual({ 'try-block': 'shadow_deny', 'allow-all': 'allow' });
  });

  test('a route without policies logs no decisions field', async () => {
    const up = await t.upstream();
    const file = join(mkdtempSync(join(tmpdir(), 'trellis-policy-')), 'access.log');
    const gw = await startGateway({ ...simpleConfig(up.url), accessLog: { output: file } });
    await (await fetch(`${gw.url}/x`)).text();
    await gw.close();
    const line = JSON.parse(readFileSync(file, 'utf8').trim().split('\n')[0]!);
    expect(line).not.toHaveProperty('decisions');
    expect(line).not.toHaveProperty('consumer');
  });
});
