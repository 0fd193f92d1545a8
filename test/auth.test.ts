import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import type { ConfigInput } from '../src/config/schema.js';
import { hashApiKey, hashPassword } from '../src/stages/credentials.js';
import { closedAfterEach, type Echoed, type Problem, simpleConfig, startGateway } from './helpers.js';
import { BIN, ROOT } from './process.js';

// Authentication policies on real sockets: api-key, basic-auth, mtls; consumers and their upstream headers;
// ip-filter through trusted proxies; state kept across reloads; secrets never logged.

const t = closedAfterEach();

const ALICE_KEY = 'tk_alice-0123456789abcdef';
const BOB_KEY = 'tk_bob-fedcba9876543210';
const consumers: ConfigInput['consumers'] = [
  {
    name: 'alice',
    groups: ['admins', 'staff'],
    credentials: { apiKeys: [{ hash: hashApiKey(ALICE_KEY), id: 'alice-2025' }] },
  },
  { name: 'bob', credentials: { apiKeys: [{ hash: hashApiKey(BOB_KEY) }] } },
  { name: 'guest' },
];

function withPolicies(upstream: string, policies: ConfigInput['policies'], extra: Partial<ConfigInput> = {}) {
  return {
    ...simpleConfig(upstream, [
      { name: 'api', backends: [{ service: 'svc' }], policies: policies!.map((p) => p.name) },
    ]),
    consumers,
    policies,
    ...extra,
  } as ConfigInput;
}

async function echoed(r: Response): Promise<Echoed> {
  expect(r.status).toBe(200);
  return (await r.json()) as Echoed;
}

describe('api-key', () => {
  test('from a header: the consumer goes upstream in the named headers, the key does not', async () => {
    const up = await t.upstream();
    const gw = await t.gateway(
      withPolicies(up.url, [
        {
          name: 'keys',
          type: 'api-key',
          upstreamHeaders: { consumer: 'X-Consumer', groups: 'x-consumer-groups' },
        },
      ]),
    );
    const e = await echoed(await fetch(`${gw.url}/a`, { headers: { 'x-api-key': ALICE_KEY } }));
    expect(e.headers['x-consumer']).toBe('alice');
    expect(e.headers['x-consumer-groups']).toBe('admins,staff');
    expect(e.headers['x-api-key']).toBeUndefined();
  });

  test('a client cannot send the consumer headers itself', async () => {
    const up = await t.upstream();
    const gw = await t.gateway(
      withPolicies(up.url, [
        {
          name: 'keys',
          type: 'api-key',
          anonymous: 'guest',
          upstreamHeaders: { consumer: 'x-consumer', groups: 'x-groups' },
        },
      ]),
    );
    const forged = { 'x-consumer': 'alice', 'X-Groups': 'admins', 'x-api-key': BOB_KEY };
    const asBob = await echoed(await fetch(`${gw.url}/a`, { headers: forged }));
    expect(asBob.headers['x-consumer']).toBe('bob');
    expect(asBob.headers['x-groups']).toBeUndefined(); // bob has no groups: none is sent, the forged one is gone
    const anonymous = await echoed(await fetch(`${gw.url}/a`, { headers: { 'x-consumer': 'alice' } }));
    expect(anonymous.headers['x-consumer']).toBe('guest');
  });

  test('from a query parameter, which is removed before the request goes upstream', async () => {
    const up = await t.upstream();
    const gw = await t.gateway(
      withPolicies(up.url, [
        { name: 'keys', type: 'api-key', query: 'api_key', upstreamHeaders: { consumer: 'x-consumer' } },
      ]),
    );
    const e = await echoed(await fetch(`${gw.url}/a/b?x=1&api_key=${encodeURIComponent(ALICE_KEY)}&y=2`));
    expect(e.url).toBe('/a/b?x=1&y=2');
    expect(e.headers['x-consumer']).toBe('alice');
    const only = await echoed(await fetch(`${gw.url}/a?api_key=${encodeURIComponent(BOB_KEY)}`));
    expect(only.url).toBe('/a');
    expect(only.headers['x-consumer']).toBe('bob');
  });

  test('a wrong or missing key: 401 problem+json with WWW-Authenticate, and the key appears nowhere', async () => {
    const up = await t.upstream();
    const file = join(mkdtempSync(join(tmpdir(), 'trellis-auth-')), 'access.log');
    const gw = await startGateway({
      ...withPolicies(up.url, [{ name: 'keys', type: 'api-key' }]),
      accessLog: { output: file },
    });
    const wrongKey = 'tk_not-a-real-key-31337';
    const wrong = await fetch(`${gw.url}/a`, { headers: { 'x-api-key': wrongKey } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('content-type')).toBe('application/problem+json');
    expect(wrong.headers.get('www-authenticate')).toBe('ApiKey realm="keys"');
    const text = await wrong.text();
    const body = JSON.parse(text) as Problem;
    expect(body).toMatchObject({
      code: 'unauthenticated',
      status: 401,
      detail: 'policy keys: API key not recognized',
    });
    expect(text).not.toContain(wrongKey);
    const missing = await fetch(`${gw.url}/a`);
    expect(missing.status).toBe(401);
    expect(((await missing.json()) as Problem).detail).toBe(
      'policy keys: no API key (expected in header x-api-key)',
    );
    const ok = await fetch(`${gw.url}/a`, { headers: { 'x-api-key': ALICE_KEY } });
    await ok.text();
    await gw.close();
    const log = readFileSync(file, 'utf8');
    expect(log).not.toContain(wrongKey);
    expect(log).not.toContain(ALICE_KEY);
    const lines = log
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.status, l.code, l.consumer, l.decisions])).toEqual([
      [401, 'unauthenticated', undefined, { keys: 'deny' }],
      [401, 'unauthenticated', undefined, { keys: 'deny' }],
      [200, undefined, 'alice', { keys: 'allow' }],
    ]);
  });

  test('rotation with overlap: the new key and the old one work until the old one expires', async () => {
    const up = await t.upstream();
    const oldKey = 'tk_old-rotated-key';
    const newKey = 'tk_new-rotated-key';
    const soon = new Date(Date.now() + 3_600_000).toISOString();
    const past = new Date(Date.now() - 1_000).toISOString();
    const config = (expires: string) =>
      ({
        ...withPolicies(up.url, [
          { name: 'keys', type: 'api-key', upstreamHeaders: { consumer: 'x-consumer' } },
        ]),
        consumers: [
          {
            name: 'carol',
            credentials: {
              apiKeys: [
                { hash: hashApiKey(newKey), id: 'carol-new' },
                { hash: hashApiKey(oldKey), id: 'carol-old', expires },
              ],
            },
          },
        ],
      }) as ConfigInput;
    const gw = await t.gateway(config(soon));
    for (const key of [oldKey, newKey]) {
      const e = await echoed(await fetch(`${gw.url}/`, { headers: { 'x-api-key': key } }));
      expect(e.headers['x-consumer']).toBe('carol');
    }
    await gw.apply(config(past));
    const expired = await fetch(`${gw.url}/`, { headers: { 'x-api-key': oldKey } });
    expect(expired.status).toBe(401);
    expect(((await expired.json()) as Problem).detail).toBe('policy keys: API key expired');
    await echoed(await fetch(`${gw.url}/`, { headers: { 'x-api-key': newKey } }));
  });
});

describe('basic-auth', () => {
  const password = 'correct horse battery staple';
  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  const cheapHash = hashPassword(password, { ln: 10 });

  test('the right password passes, a wrong one or an unknown user gets 401 with a Basic challenge', async () => {
    const up = await t.upstream();
    const file = join(mkdtempSync(join(tmpdir(), 'trellis-auth-')), 'access.log');
    const gw = await startGateway({
      ...withPolicies(up.url, [
        {
          name: 'login',
          type: 'basic-auth',
          realm: 'staff area',
          upstreamHeaders: { consumer: 'x-consumer' },
        },
      ]),
      consumers: [{ name: 'dave', credentials: { basic: { username: 'dave', passwordHash: cheapHash } } }],
      accessLog: { output: file },
    });
    const e = await echoed(
      await fetch(`${gw.url}/`, { headers: { authorization: basic('dave', password) } }),
    );
    expect(e.headers['x-consumer']).toBe('dave');
    expect(e.headers.authorization).toBeUndefined();
    // Again: from the cache this time (same reply).
    await echoed(await fetch(`${gw.url}/`, { headers: { authorization: basic('dave', password) } }));
    for (const auth of [
      basic('dave', 'wrong-password-1'),
      basic('mallory', password),
      'Basic !!!',
      undefined,
    ]) {
      const r = await fetch(`${gw.url}/`, { headers: auth === undefined ? {} : { authorization: auth } });
      expect(r.status, String(auth)).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Basic realm="staff area", charset="UTF-8"');
      const text = await r.text();
      expect(text).not.toContain('wrong-password-1');
      expect(text).not.toContain(password);
    }
    await gw.close();
    const log = readFileSync(file, 'utf8');
    expect(log).not.toContain('wrong-password-1');
    expect(log).not.toContain(password);
    expect(log).not.toContain(Buffer.from(`dave:${password}`).toString('base64'));
  });

  test('a flood of wrong passwords is bounded: beyond the queue, 503 auth_overloaded at once', async () => {
    const up = await t.upstream();
    const gw = await t.gateway({
      ...withPolicies(up.url, [
        { name: 'login', type: 'basic-auth', maxConcurrentVerifications: 1, maxQueuedVerifications: 1 },
      ]),
      consumers: [
        {
          name: 'dave',
          credentials: { basic: { username: 'dave', passwordHash: hashPassword(password, { ln: 14 }) } },
        },
      ],
    });
    const replies = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        fetch(`${gw.url}/`, { headers: { authorization: basic('dave', `guess-${i}`) } }).then(async (r) => {
          await r.arrayBuffer();
          return { status: r.status, retryAfter: r.headers.get('retry-after') };
        }),
      ),
    );
    const statuses = replies.map((r) => r.status).sort();
    // One computing, one queued: those two get their 401; the other four are refused without a hash.
    expect(statuses).toEqual([401, 401, 503, 503, 503, 503]);
    expect(replies.find((r) => r.status === 503)!.retryAfter).toBe('1');
    const text = await gw.gateway.metrics!.registry.metrics();
    expect(text).toContain(
      'trellis_policy_decisions_total{trellis_route="api",trellis_policy="login",trellis_policy_type="basic-auth",decision="error"} 4',
    );
    expect(text).toContain(
      'trellis_policy_decisions_total{trellis_route="api",trellis_policy="login",trellis_policy_type="basic-auth",decision="deny"} 2',
    );
  });

  test('a reload keeps the state a policy made with keep(); changed settings make new state', async () => {
    const up = await t.upstream();
    const slow = hashPassword(password, { ln: 17 }); // a verification takes long enough to reload meanwhile
    const config = (extraRoute: boolean, max = 1) =>
      ({
        ...simpleConfig(up.url, [
          { name: 'api', backends: [{ service: 'svc' }], policies: ['login'] },
          ...(extraRoute
            ? [{ name: 'other', match: { path: { prefix: '/other' } }, backends: [{ service: 'svc' }] }]
            : []),
        ]),
        consumers: [{ name: 'dave', credentials: { basic: { username: 'dave', passwordHash: slow } } }],
        policies: [
          { name: 'login', type: 'basic-auth', maxConcurrentVerifications: max, maxQueuedVerifications: 0 },
        ],
      }) as ConfigInput;
    const gw = await t.gateway(config(false));
    const first = fetch(`${gw.url}/`, { headers: { authorization: basic('dave', 'guess-1') } });
    await new Promise((r) => setTimeout(r, 20)); // the first verification holds the only slot
    await gw.apply(config(true));
    // Same policy, same settings: the same limiter, still busy with the first request.
    const second = await fetch(`${gw.url}/`, { headers: { authorization: basic('dave', 'guess-2') } });
    expect(second.status).toBe(503);
    await second.arrayBuffer();
    expect((await first).status).toBe(401);
    // Another limit: a new limiter, free.
    const busy = fetch(`${gw.url}/`, { headers: { authorization: basic('dave', 'guess-3') } });
    await new Promise((r) => setTimeout(r, 20));
    await gw.apply(config(true, 2));
    const third = await fetch(`${gw.url}/`, { headers: { authorization: basic('dave', 'guess-4') } });
    expect(third.status).toBe(401);
    expect((await busy).status).toBe(401);
  });
});

describe('several authentication policies', () => {
  test('each with `anonymous`: any one credential identifies the consumer, none leaves the anonymous one', async () => {
    const password = 'correct horse battery staple';
    const up = await t.upstream();
    const gw = await t.gateway({
      ...withPolicies(up.url, [
        { name: 'keys', type: 'api-key', anonymous: 'guest', upstreamHeaders: { consumer: 'x-consumer' } },
        {
          name: 'login',
          type: 'basic-auth',
          anonymous: 'guest',
          upstreamHeaders: { consumer: 'x-consumer' },
        },
        {
          name: 'members',
          type: 'authz',
          rules: [
            { name: 'no-guests', action: 'deny', consumers: ['guest'] },
            { name: 'everyone-else', action: 'allow' },
          ],
        },
      ]),
      consumers: [
        ...consumers!,
        {
          name: 'dave',
          credentials: { basic: { username: 'dave', passwordHash: hashPassword(password, { ln: 10 }) } },
        },
      ],
    });
    const basic = `Basic ${Buffer.from(`dave:${password}`).toString('base64')}`;
    // An API key alone: the basic-auth policy finds no credential and keeps alice (it used to make her guest).
    const byKey = await echoed(await fetch(`${gw.url}/a`, { headers: { 'x-api-key': ALICE_KEY } }));
    expect(byKey.headers['x-consumer']).toBe('alice');
    const byPassword = await echoed(await fetch(`${gw.url}/a`, { headers: { authorization: basic } }));
    expect(byPassword.headers['x-consumer']).toBe('dave');
    // Neither: guest, whom the authorization policy refuses.
    const none = await fetch(`${gw.url}/a`, { headers: { 'x-consumer': 'alice' } });
    expect(none.status).toBe(403);
    // A credential that is present but wrong is still 401, whatever the other policy found.
    const wrong = await fetch(`${gw.url}/a`, {
      headers: {
        'x-api-key': ALICE_KEY,
        authorization: `Basic ${Buffer.from('dave:nope').toString('base64')}`,
      },
    });
    expect(wrong.status).toBe(401);
  });
});

describe('mtls', () => {
  const certs = join(ROOT, 'examples/certs');
  const read = (f: string) => readFileSync(join(certs, f));
  const fingerprint = new X509Certificate(read('client.crt')).fingerprint256;

  function get(port: number, opts: RequestOptions = {}): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/',
          ca: read('ca.crt'),
          servername: 'localhost',
          agent: false,
          ...opts,
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  async function mtlsGateway(upstream: string, credentials: Record<string, unknown>) {
    return t.gateway({
      listeners: [
        {
          name: 'secure',
          port: 0,
          tls: {
            certificates: [{ cert: join(certs, 'default.crt'), key: join(certs, 'default.key') }],
            clientAuth: { mode: 'optional', ca: join(certs, 'ca.crt') },
          },
        },
      ],
      services: [{ name: 'svc', endpoints: [upstream] }],
      routes: [{ name: 'api', backends: [{ service: 'svc' }], policies: ['certs'] }],
      consumers: [{ name: 'workload', groups: ['mesh'], credentials: { mtls: credentials } }],
      policies: [{ name: 'certs', type: 'mtls', upstreamHeaders: { consumer: 'x-consumer' } }],
      admin: { enabled: false },
    } as ConfigInput);
  }

  test.each([
    ['fingerprint', { fingerprints: [fingerprint] }],
    ['SPIFFE ID', { sans: ['spiffe://trellis.test/ns/default/sa/client'] }],
    ['subject', { subjects: ['CN=client-1,OU=TEST ONLY,O=Trellis Tests'] }],
  ])('a verified client certificate is the consumer its %s names', async (_what, credentials) => {
    const up = await t.upstream();
    const gw = await mtlsGateway(up.url, credentials);
    const r = await get(gw.port, {
      cert: read('client.crt'),
      key: read('client.key'),
      headers: { 'x-consumer': 'forged' },
    });
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as Echoed).headers['x-consumer']).toBe('workload');
  });

  test('no certificate, or one that maps to nobody: 401', async () => {
    const up = await t.upstream();
    const gw = await mtlsGateway(up.url, { sans: ['spiffe://trellis.test/ns/other/sa/nobody'] });
    const none = await get(gw.port);
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body)).toMatchObject({
      code: 'unauthenticated',
      detail: 'policy certs: no verified client certificate',
    });
    const unmapped = await get(gw.port, { cert: read('client.crt'), key: read('client.key') });
    expect(unmapped.status).toBe(401);
    expect(JSON.parse(unmapped.body).detail).toBe(
      'policy certs: client certificate not mapped to a consumer',
    );
  });
});

describe('ip-filter', () => {
  test('through trusted proxies the client address is the nearest untrusted X-Forwarded-For hop', async () => {
    const up = await t.upstream();
    const gw = await t.gateway({
      ...simpleConfig(up.url, [{ name: 'api', backends: [{ service: 'svc' }], policies: ['office'] }]),
      listeners: [{ name: 'public', port: 0, trustedProxies: ['127.0.0.1', '10.0.0.0/8'] }],
      policies: [
        {
          name: 'office',
          type: 'ip-filter',
          allow: ['198.51.100.0/24', '2001:db8::/32'],
          deny: ['198.51.100.66'],
        },
      ],
    });
    const from = async (xff?: string) => {
      const r = await fetch(`${gw.url}/`, { headers: xff === undefined ? {} : { 'x-forwarded-for': xff } });
      await r.arrayBuffer();
      return r.status;
    };
    expect(await from('198.51.100.7')).toBe(200);
    expect(await from('198.51.100.7, 10.1.2.3')).toBe(200); // a trusted hop is skipped
    expect(await from('2001:db8::1')).toBe(200);
    expect(await from('198.51.100.66')).toBe(403); // deny wins over allow
    expect(await from('203.0.113.9')).toBe(403);
    expect(await from('198.51.100.7, 203.0.113.9')).toBe(403); // the nearest untrusted hop decides
    expect(await from()).toBe(403); // the peer itself: 127.0.0.1
  });

  test('without trust, X-Forwarded-For is ignored', async () => {
    const up = await t.upstream();
    const gw = await t.gateway({
      ...simpleConfig(up.url, [{ name: 'api', backends: [{ service: 'svc' }], policies: ['office'] }]),
      policies: [{ name: 'office', type: 'ip-filter', allow: ['198.51.100.0/24'] }],
    });
    const r = await fetch(`${gw.url}/`, { headers: { 'x-forwarded-for': '198.51.100.7' } });
    expect(r.status).toBe(403);
    expect(((await r.json()) as Problem).code).toBe('client_address_denied');
  });
});

describe('cli', () => {
  function cli(
    args: string[],
    stdin: string,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(stdin);
    });
  }

  test('trellis hash-key and hash-password print hashes the config accepts', async () => {
    const key = await cli(['hash-key'], 'tk_some-key\n');
    expect(key).toMatchObject({ code: 0, stdout: `${hashApiKey('tk_some-key')}\n` });
    const generated = await cli(['hash-key', '--generate'], '');
    const [, made, hash] = /^key: {2}(\S+)\nhash: (\S+)\n$/.exec(generated.stdout)!;
    expect(hash).toBe(hashApiKey(made!));
    const pw = await cli(['hash-password', '--cost', '10'], 'hunter2\n');
    expect(pw.code).toBe(0);
    expect(pw.stdout).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+\n$/);
    expect(pw.stdout).not.toContain('hunter2');
    const { verifyPassword, parsePasswordHash } = await import('../src/stages/credentials.js');
    const parsed = parsePasswordHash(pw.stdout.trim());
    if (typeof parsed === 'string') throw new Error(parsed);
    expect(await verifyPassword('hunter2', parsed)).toBe(true);
    expect(await verifyPassword('hunter3', parsed)).toBe(false);
  });
});
