import { describe, expect, it } from 'vitest';
import type { LocalReply, StageContext } from '../../proxy/stage.js';
import { authzStage } from './kind.js';
import { type AuthzConfig, authzSchema } from './schema.js';

function ctx(over: Partial<StageContext> = {}): StageContext {
  return {
    method: 'GET',
    host: 'api.example',
    hostHeader: 'api.example',
    path: '/',
    query: '',
    params: undefined,
    upstreamPath: '/',
    upstreamHeaders: [],
    upstreamHost: undefined,
    clientCert: undefined,
    headers: {},
    clientAddress: () => '127.0.0.1',
    consumer: undefined,
    claims: undefined,
    route: { name: 'r' },
    ...over,
  } as StageContext;
}

function decide(cfg: unknown, c: StageContext): string {
  const stage = authzStage('p', authzSchema.parse(cfg) as AuthzConfig);
  const r = stage.onRequest(c) as LocalReply | undefined;
  if (r === undefined) return 'allow';
  return r.kind === 'error' ? `${r.code}: ${r.detail}` : 'response';
}

const alice = { name: 'alice', groups: ['admins'], metadata: { tenant: 't1' } };
const bob = { name: 'bob', groups: ['users'], metadata: { tenant: 't2' } };

describe('authz rules', () => {
  it('denies by default when nothing matches, allows on a match', () => {
    const cfg = { rules: [{ action: 'allow', methods: ['GET'], paths: [{ prefix: '/public' }] }] };
    expect(decide(cfg, ctx({ path: '/public/x' }))).toBe('allow');
    expect(decide(cfg, ctx({ path: '/public' }))).toBe('allow');
    expect(decide(cfg, ctx({ path: '/publicity' }))).toMatch(/^authz_denied: .*no rule allows/);
    expect(decide(cfg, ctx({ method: 'POST', path: '/public/x' }))).toMatch(/^authz_denied/);
    expect(decide({ ...cfg, default: 'allow' }, ctx({ path: '/other' }))).toBe('allow');
  });

  it('lets a deny rule win over an allow rule listed before it', () => {
    const cfg = {
      rules: [
        { action: 'allow', groups: ['admins'] },
        { name: 'no-deletes', action: 'deny', methods: ['DELETE'] },
      ],
    };
    expect(decide(cfg, ctx({ consumer: alice }))).toBe('allow');
    expect(decide(cfg, ctx({ consumer: alice, method: 'DELETE' }))).toBe(
      'authz_denied: policy "p": denied by rule "no-deletes"',
    );
    expect(decide(cfg, ctx({ consumer: bob }))).toMatch(/no rule allows/);
  });

  it('matches globs, headers, consumers, claims, scopes, client SANs and authenticated', () => {
    expect(
      decide(
        { rules: [{ action: 'allow', paths: [{ glob: '/api/*/orders/**' }] }] },
        ctx({ path: '/api/v1/orders/7/items' }),
      ),
    ).toBe('allow');
    expect(
      decide(
        { rules: [{ action: 'allow', paths: [{ glob: '/api/*/orders/**' }] }] },
        ctx({ path: '/api/v1/x/orders/7' }),
      ),
    ).toMatch(/denied/);
    const hdr = {
      rules: [
        {
          action: 'allow',
          headers: [
            { name: 'X-Tenant', exact: 't1' },
            { name: 'x-debug', present: false },
          ],
        },
      ],
    };
    expect(decide(hdr, ctx({ headers: { 'x-tenant': 't1' } }))).toBe('allow');
    expect(decide(hdr, ctx({ headers: { 'x-tenant': 't1', 'x-debug': '1' } }))).toMatch(/denied/);
    expect(decide({ rules: [{ action: 'allow', consumers: ['bob'] }] }, ctx({ consumer: bob }))).toBe(
      'allow',
    );
    expect(decide({ rules: [{ action: 'allow', consumers: ['bob'] }] }, ctx({ consumer: alice }))).toMatch(
      /denied/,
    );
    const claims = {
      rules: [{ action: 'allow', claims: { 'realm.roles': 'admin', tier: ['gold', 'silver'] } }],
    };
    expect(decide(claims, ctx({ claims: { realm: { roles: ['user', 'admin'] }, tier: 'gold' } }))).toBe(
      'allow',
    );
    expect(decide(claims, ctx({ claims: { realm: { roles: ['user'] }, tier: 'gold' } }))).toMatch(/denied/);
    const scopes = { rules: [{ action: 'allow', scopes: ['orders:read', 'orders:write'] }] };
    expect(decide(scopes, ctx({ claims: { scope: 'orders:read orders:write profile' } }))).toBe('allow');
    expect(decide(scopes, ctx({ claims: { scp: ['orders:read'] } }))).toMatch(/denied/);
    const cert = {
      uris: ['spiffe://prod/ns/pay/sa/api'],
      dns: [],
      emails: [],
      subject: 'CN=x',
      issuer: '',
      sha256: '',
      serialNumber: '',
      validFrom: new Date(),
      validTo: new Date(),
    };
    const clients = { rules: [{ action: 'allow', clients: ['spiffe://prod/ns/pay/sa/*'] }] };
    expect(decide(clients, ctx({ clientCert: cert }))).toBe('allow');
    expect(decide(clients, ctx())).toMatch(/denied/);
    expect(decide({ rules: [{ action: 'deny', authenticated: false }], default: 'allow' }, ctx())).toMatch(
      /denied/,
    );
    expect(
      decide({ rules: [{ action: 'deny', authenticated: false }], default: 'allow' }, ctx({ consumer: bob })),
    ).toBe('allow');
  });

  it('evaluates CEL conditions, and fails closed when one cannot be evaluated', () => {
    const cfg = {
      rules: [
        {
          name: 'tenant',
          action: 'allow',
          when: 'request.headers["x-tenant"] == consumer.metadata["tenant"]',
        },
        { name: 'level', action: 'deny', when: 'claims.level < 3' },
      ],
    };
    expect(decide(cfg, ctx({ consumer: alice, headers: { 'x-tenant': 't1' }, claims: { level: 5 } }))).toBe(
      'allow',
    );
    expect(
      decide(cfg, ctx({ consumer: alice, headers: { 'x-tenant': 't2' }, claims: { level: 5 } })),
    ).toMatch(/no rule allows/);
    expect(
      decide(cfg, ctx({ consumer: alice, headers: { 'x-tenant': 't1' }, claims: { level: 1 } })),
    ).toMatch(/rule "level"/);
    // No `level` claim: the deny rule's condition errors, which refuses.
    expect(decide(cfg, ctx({ consumer: alice, headers: { 'x-tenant': 't1' }, claims: {} }))).toMatch(
      /rule "level" \(its condition could not be evaluated\)/,
    );
    // No x-tenant header: the allow rule errors, which does not allow.
    expect(decide({ rules: [cfg.rules[0]] }, ctx({ consumer: alice }))).toMatch(/no rule allows/);
  });

  it('rejects a bad CEL condition at load with the rule path and position', () => {
    const r = authzSchema.safeParse({
      rules: [{ action: 'allow' }, { action: 'deny', when: 'request.method == "GET" &&' }],
    });
    expect(r.success).toBe(false);
    const issue = r.error!.issues[0]!;
    expect(issue.path).toEqual(['rules', 1, 'when']);
    expect(issue.message).toMatch(/^CEL syntax error at 1:\d+: /);
    const t = authzSchema.safeParse({ rules: [{ action: 'allow', when: 'consumer.group == "x"' }] });
    expect(t.error!.issues[0]!.message).toBe(
      "CEL type error at 1:9: no field 'group' on consumer (fields: name, groups, metadata)",
    );
  });
});
