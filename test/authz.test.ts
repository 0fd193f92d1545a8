/**
 * The `authz` policy behind a `jwt` policy on a real gateway: identities from tokens (a consumer by `sub`, or
 * anonymous with claims), rules over them, CEL conditions, deny-wins, and config errors with positions.
 */
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { describe, expect, test } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import { closedAfterEach, type Echoed, type Problem, simpleConfig } from './helpers.js';

const t = closedAfterEach();
const ISS = 'https://issuer.test/';
const SECRET = randomBytes(32);

function token(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT({ iss: ISS, ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('5m')
    .sign(SECRET);
}

const rules = [
  { name: 'admins', action: 'allow', groups: ['admins'] },
  {
    name: 'readers',
    action: 'allow',
    methods: ['GET'],
    scopes: ['orders:read'],
    paths: [{ glob: '/orders/**' }],
  },
  {
    name: 'same-tenant',
    action: 'allow',
    paths: [{ prefix: '/tenants' }],
    when: 'request.path.startsWith("/tenants/" + claims.tenant + "/")',
  },
  {
    name: 'no-deletes-on-friday',
    action: 'deny',
    methods: ['DELETE'],
    when: 'has(claims.freeze) && claims.freeze',
  },
  { name: 'blocked', action: 'deny', consumers: ['mallory'] },
];

async function gateway(authz: Record<string, unknown> = { rules }) {
  const up = await t.upstream();
  return t.gateway({
    ...simpleConfig(up.url, [{ name: 'all', backends: [{ service: 'svc' }], policies: ['authz', 'jwt'] }]),
    consumers: [
      { name: 'alice', groups: ['admins'] },
      { name: 'mallory', groups: ['admins'] },
    ],
    policies: [
      // Listed after authz on purpose: phases order them (authn before authz), not the list.
      { name: 'authz', type: 'authz', ...authz },
      {
        name: 'jwt',
        type: 'jwt',
        issuers: [
          {
            issuer: ISS,
            keys: [{ secret: SECRET.toString('base64'), encoding: 'base64' }],
            algorithms: ['HS256'],
          },
        ],
        consumerClaim: 'sub',
        claimsToHeaders: [{ claim: 'sub', header: 'x-user' }],
      },
    ],
  } as never);
}

async function call(
  gw: { url: string },
  path: string,
  claims: Record<string, unknown> | undefined,
  method = 'GET',
) {
  const headers: Record<string, string> =
    claims === undefined ? {} : { authorization: `Bearer ${await token(claims)}` };
  const res = await fetch(`${gw.url}${path}`, { method, headers });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Problem & Echoed) : undefined };
}

describe('rules on a gateway', () => {
  test('a consumer named by the token, its groups, and deny-wins', async () => {
    const gw = await gateway();
    const ok = await call(gw, '/anything', { sub: 'alice' }, 'DELETE');
    expect(ok.status).toBe(200);
    expect(ok.body!.headers['x-user']).toBe('alice');
    const frozen = await call(gw, '/anything', { sub: 'alice', freeze: true }, 'DELETE');
    expect(frozen.status).toBe(403);
    expect(frozen.body!.code).toBe('authz_denied');
    expect(frozen.body!.detail).toBe('policy "authz": denied by rule "no-deletes-on-friday"');
    // mallory is an admin too, but a deny rule lists her.
    expect((await call(gw, '/anything', { sub: 'mallory' })).body!.detail).toMatch(/rule "blocked"/);
  });

  test('anonymous callers with claims: scopes, globs and CEL', async () => {
    const gw = await gateway();
    expect((await call(gw, '/orders/7', { sub: 'svc-1', scope: 'orders:read' })).status).toBe(200);
    expect((await call(gw, '/orders/7', { sub: 'svc-1', scope: 'orders:read' }, 'POST')).status).toBe(403);
    expect((await call(gw, '/orders/7', { sub: 'svc-1', scope: 'profile' })).status).toBe(403);
    expect((await call(gw, '/tenants/t1/x', { sub: 'bob', tenant: 't1' })).status).toBe(200);
    const other = await call(gw, '/tenants/t2/x', { sub: 'bob', tenant: 't1' });
    expect(other.status).toBe(403);
    expect(other.body!.detail).toBe('policy "authz": no rule allows this request');
    // No tenant claim: the condition cannot be evaluated, which never allows.
    expect((await call(gw, '/tenants/t1/x', { sub: 'bob' })).status).toBe(403);
  });

  test('authn runs first: no token is a 401 from jwt, not a 403', async () => {
    const gw = await gateway();
    const r = await call(gw, '/orders/7', undefined);
    expect(r.status).toBe(401);
    expect(r.body!.code).toBe('unauthenticated');
  });

  test('shadow mode records a denial and lets the request on', async () => {
    const up = await t.upstream();
    const gw = await t.gateway({
      ...simpleConfig(up.url, [{ name: 'all', backends: [{ service: 'svc' }], policies: ['authz'] }]),
      policies: [
        { name: 'authz', type: 'authz', shadow: true, rules: [{ action: 'allow', methods: ['GET'] }] },
      ],
    } as never);
    expect((await fetch(`${gw.url}/x`, { method: 'POST' })).status).toBe(200);
  });
});

describe('config errors', () => {
  function errors(policies: unknown[]) {
    const r = loadConfigText(
      JSON.stringify({
        listeners: [{ name: 'public', port: 0 }],
        services: [{ name: 'svc', endpoints: ['http://127.0.0.1:1'] }],
        routes: [{ name: 'r', backends: [{ service: 'svc' }] }],
        consumers: [{ name: 'alice' }],
        policies,
      }),
      'test.json',
    );
    return r.ok ? [] : r.errors.map((e) => ({ path: e.path, message: e.message }));
  }

  test('a CEL syntax or type error names the rule and the position in the expression', () => {
    const filler = { name: 'ip', type: 'ip-filter', deny: ['10.0.0.0/8'] };
    expect(
      errors([
        filler,
        filler,
        { ...filler, name: 'ip2' },
        {
          name: 'authz',
          type: 'authz',
          rules: [
            { action: 'allow', when: 'true' },
            { action: 'deny', when: 'request.method == "GET" &&' },
            { action: 'deny', when: 'consumer.name == 1' },
          ],
        },
      ]).filter((e) => e.path.startsWith('policies[3]')),
    ).toEqual([
      { path: 'policies[3].rules[1].when', message: expect.stringMatching(/^CEL syntax error at 1:\d+: /) },
      {
        path: 'policies[3].rules[2].when',
        message: 'CEL type error at 1:15: cannot compare string with int',
      },
    ]);
  });

  test('an unknown consumer in a rule is an error', () => {
    expect(
      errors([{ name: 'authz', type: 'authz', rules: [{ action: 'allow', consumers: ['alice', 'bobby'] }] }]),
    ).toEqual([{ path: 'policies[0].rules[0].consumers[1]', message: 'unknown consumer "bobby"' }]);
  });
});
