/**
 * The `jwt` policy on real sockets: tokens signed here with jose, a JWKS server on loopback that counts its
 * fetches, and an echo upstream that shows what went through.
 */
import { generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, type JWTPayload, SignJWT } from 'jose';
import { beforeEach, describe, expect, test } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import { closedAfterEach, type Echoed, type Problem, simpleConfig, startGateway } from './helpers.js';

const t = closedAfterEach();
const ISS = 'https://issuer.test/';

function rsa(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('rsa', { modulusLength: 2048 });
}
const keyA = rsa();
const keyB = rsa();

interface Jwks {
  readonly url: string;
  fetches: number;
  keys: object[];
  status: number;
}

/** A JWKS endpoint on loopback serving `keys`, counting every fetch. */
async function jwksServer(initial: Array<[string, KeyObject]>): Promise<Jwks> {
  const state = {
    fetches: 0,
    status: 200,
    keys: await Promise.all(
      initial.map(async ([kid, k]) => ({ ...(await exportJWK(k)), kid, alg: 'RS256', use: 'sig' })),
    ),
  };
  const server: Server = createServer((_req, res) => {
    state.fetches++;
    const body = JSON.stringify({ keys: state.keys });
    res.writeHead(state.status, { 'content-type': 'application/json' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  return Object.assign(state, { url });
}

async function jwkOf(kid: string, k: KeyObject): Promise<object> {
  return { ...(await exportJWK(k)), kid, alg: 'RS256', use: 'sig' };
}

function sign(
  claims: JWTPayload,
  opts: { kid?: string; key?: KeyObject | Uint8Array; alg?: string; exp?: number | null } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: JWTPayload = { iss: ISS, aud: 'api', sub: 'alice', iat: now, ...claims };
  if (opts.exp !== null) payload.exp = opts.exp ?? now + 300;
  return new SignJWT(payload)
    .setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: opts.kid ?? 'a1' })
    .sign(opts.key ?? keyA.privateKey);
}

function b64(s: object): string {
  return Buffer.from(JSON.stringify(s)).toString('base64url');
}

async function gatewayWith(
  jwks: Jwks,
  policy: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) {
  const up = await t.upstream();
  return t.gateway({
    ...simpleConfig(up.url, [{ name: 'all', backends: [{ service: 'svc' }], policies: ['jwt'] }]),
    policies: [
      {
        name: 'jwt',
        type: 'jwt',
        issuers: [{ issuer: ISS, audiences: ['api'], jwks: { url: jwks.url } }],
        tokenFrom: [{ header: 'authorization' }, { cookie: 'session' }, { query: 'access_token' }],
        claimsToHeaders: [
          { claim: 'sub', header: 'x-user' },
          { claim: 'roles', header: 'x-roles' },
        ],
        ...policy,
      },
    ],
    ...extra,
  } as never);
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as unknown };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

let jwks: Jwks;
beforeEach(async () => {
  jwks = await jwksServer([['a1', keyA.publicKey]]);
});

describe('accepting tokens', () => {
  test('a valid token passes; claims go upstream in headers a client cannot forge', async () => {
    const gw = await gatewayWith(jwks);
    const token = await sign({ roles: ['admin', 'ops'] });
    const r = await get(`${gw.url}/x`, { ...bearer(token), 'x-user': 'mallory', 'X-Roles': 'root' });
    expect(r.status).toBe(200);
    const echoed = r.json() as Echoed;
    expect(echoed.headers['x-user']).toBe('alice');
    expect(echoed.headers['x-roles']).toBe('admin,ops');
    expect(echoed.headers.authorization).toBe(`Bearer ${token}`);
  });

  test('a client-sent mapped header is removed even when the claim is absent', async () => {
    const gw = await gatewayWith(jwks);
    const r = await get(`${gw.url}/x`, { ...bearer(await sign({})), 'x-roles': 'root' });
    expect(r.status).toBe(200);
    expect((r.json() as Echoed).headers['x-roles']).toBeUndefined();
  });

  test('no token: 401 unauthenticated with a bare Bearer challenge', async () => {
    const gw = await gatewayWith(jwks);
    const r = await get(`${gw.url}/x`);
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toBe('Bearer realm="trellis"');
    expect((r.json() as Problem).code).toBe('unauthenticated');
  });

  test('from a cookie, and from a query parameter that is removed before the upstream', async () => {
    const gw = await gatewayWith(jwks);
    const token = await sign({});
    const c = await get(`${gw.url}/c`, { cookie: `theme=dark; session=${token}` });
    expect(c.status).toBe(200);
    const q = await get(`${gw.url}/q?a=1&access_token=${token}&b=2`);
    expect(q.status).toBe(200);
    expect((q.json() as Echoed).url).toBe('/q?a=1&b=2');
    const only = await get(`${gw.url}/q?access_token=${token}`);
    expect((only.json() as Echoed).url).toBe('/q');
  });

  test('forwardToken: false removes the Authorization header', async () => {
    const gw = await gatewayWith(jwks, { forwardToken: false });
    const r = await get(`${gw.url}/x`, bearer(await sign({})));
    expect(r.status).toBe(200);
    expect((r.json() as Echoed).headers.authorization).toBeUndefined();
  });

  test('allowMissing lets anonymous requests through but still checks a token that is sent', async () => {
    const gw = await gatewayWith(jwks, { allowMissing: true });
    expect((await get(`${gw.url}/x`)).status).toBe(200);
    expect((await get(`${gw.url}/x`, bearer(await sign({ aud: 'other' })))).status).toBe(401);
  });
});

describe('refusing tokens, with the reason and never the token', () => {
  async function refused(gw: { url: string }, token: string, reason: RegExp): Promise<void> {
    const r = await get(`${gw.url}/x`, bearer(token));
    expect(r.status).toBe(401);
    const p = r.json() as Problem;
    expect(p.code).toBe('token_invalid');
    expect(p.detail).toMatch(reason);
    expect(r.headers.get('www-authenticate')).toMatch(
      /^Bearer realm="trellis", error="invalid_token", error_description="/,
    );
    for (const part of token.split('.')) if (part.length > 8) expect(r.text).not.toContain(part);
  }

  test('expired, not yet valid, issued in the future; within the leeway is fine', async () => {
    const gw = await gatewayWith(jwks);
    const now = Math.floor(Date.now() / 1000);
    await refused(gw, await sign({}, { exp: now - 60 }), /^token expired$/);
    await refused(gw, await sign({ nbf: now + 120 }), /not valid yet/);
    await refused(gw, await sign({ iat: now + 120 }), /issued in the future/);
    await refused(gw, await sign({}, { exp: null }), /no "exp"/);
    expect((await get(`${gw.url}/x`, bearer(await sign({ nbf: now + 10 }, { exp: now - 10 })))).status).toBe(
      200,
    );
  });

  test('wrong audience, unknown issuer, missing required claim', async () => {
    const gw = await gatewayWith(jwks, {
      issuers: [{ issuer: ISS, audiences: ['api'], jwks: { url: jwks.url }, requiredClaims: ['tenant'] }],
    });
    await refused(gw, await sign({ aud: 'billing', tenant: 't' }), /^wrong audience$/);
    await refused(gw, await sign({ iss: 'https://evil.test/', tenant: 't' }), /issuer not accepted/);
    await refused(gw, await sign({}), /no "tenant" claim/);
    expect((await get(`${gw.url}/x`, bearer(await sign({ aud: ['x', 'api'], tenant: 't' })))).status).toBe(
      200,
    );
  });

  test('a bad signature, a malformed token', async () => {
    const gw = await gatewayWith(jwks);
    const [h, , s] = (await sign({})).split('.');
    const now = Math.floor(Date.now() / 1000);
    await refused(
      gw,
      `${h}.${b64({ iss: ISS, aud: 'api', sub: 'admin', exp: now + 60 })}.${s}`,
      /^bad signature$/,
    );
    await refused(gw, await sign({}, { key: keyB.privateKey }), /^bad signature$/);
    await refused(gw, 'not-a-jwt', /malformed/);
    await refused(gw, `${h}.e30.${s}.x`, /malformed/);
  });

  test('alg "none" is refused', async () => {
    const gw = await gatewayWith(jwks);
    const now = Math.floor(Date.now() / 1000);
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: ISS, aud: 'api', sub: 'x', exp: now + 60 })}.`;
    await refused(gw, token, /alg "none"/);
    await refused(gw, `${token}AAAA`, /alg "none"/);
  });

  test('key confusion: an HS256 token "signed" with the RSA public key bytes is refused', async () => {
    const pem = keyA.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const gw = await gatewayWith(jwks, {
      issuers: [{ issuer: ISS, keys: [{ kid: 'a1', pem }] }],
    });
    expect((await get(`${gw.url}/x`, bearer(await sign({})))).status).toBe(200);
    const forged = await sign({ sub: 'admin' }, { alg: 'HS256', key: new TextEncoder().encode(pem) });
    await refused(gw, forged, /algorithm HS256 not allowed/);
  });

  test('an oversized token is refused before anything else: no key fetch', async () => {
    const gw = await gatewayWith(jwks, { maxTokenBytes: '1KiB' });
    await new Promise((r) => setTimeout(r, 50));
    const before = jwks.fetches;
    const big = await sign({ pad: randomBytes(2048).toString('hex') }, { kid: 'unknown' });
    await refused(gw, big, /larger than 1024 bytes/);
    expect(jwks.fetches).toBe(before);
  });
});

describe('keys from a JWKS', () => {
  test('rotation: a new kid triggers one refetch, shared by concurrent requests', async () => {
    const gw = await gatewayWith(jwks);
    expect((await get(`${gw.url}/x`, bearer(await sign({})))).status).toBe(200);
    expect(jwks.fetches).toBe(1);
    // The issuer rotates to key B; tokens signed with it arrive before the background refresh.
    jwks.keys = [await jwkOf('a1', keyA.publicKey), await jwkOf('b1', keyB.publicKey)];
    const tokens = await Promise.all(
      Array.from({ length: 10 }, (_, i) => sign({ n: i }, { kid: 'b1', key: keyB.privateKey })),
    );
    const results = await Promise.all(tokens.map((tok) => get(`${gw.url}/x`, bearer(tok))));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(jwks.fetches).toBe(2);
  });

  test('forged kids cannot make Trellis hammer the JWKS endpoint', async () => {
    const gw = await gatewayWith(jwks, {
      issuers: [{ issuer: ISS, jwks: { url: jwks.url, minRefetchInterval: '30s' } }],
    });
    expect((await get(`${gw.url}/x`, bearer(await sign({})))).status).toBe(200);
    const forged = await Promise.all(
      Array.from({ length: 50 }, () =>
        sign({}, { kid: randomBytes(8).toString('hex'), key: keyB.privateKey }),
      ),
    );
    for (let round = 0; round < 2; round++) {
      const rs = await Promise.all(forged.map((tok) => get(`${gw.url}/x`, bearer(tok))));
      expect(rs.every((r) => r.status === 401)).toBe(true);
      expect((rs[0]!.json() as Problem).detail).toBe('unknown key id');
    }
    // The first fetch at load, at most one refetch in the interval, whatever the number of forged kids.
    expect(jwks.fetches).toBeLessThanOrEqual(2);
  });

  test('an unreachable JWKS: 401 that says the keys are unavailable', async () => {
    jwks.status = 500;
    const gw = await gatewayWith(jwks);
    const r = await get(`${gw.url}/x`, bearer(await sign({})));
    expect(r.status).toBe(401);
    expect((r.json() as Problem).detail).toMatch(
      /signing keys unavailable \(JWKS fetch failed: status 500\)/,
    );
  });

  test('a background refresh picks up a rotation without any request asking', async () => {
    const gw = await gatewayWith(jwks, {
      issuers: [{ issuer: ISS, jwks: { url: jwks.url, refreshInterval: '200ms', minRefetchInterval: '1h' } }],
    });
    expect((await get(`${gw.url}/x`, bearer(await sign({})))).status).toBe(200);
    // The one unknown-kid refetch allowed per hour is spent on a forged kid...
    expect((await get(`${gw.url}/x`, bearer(await sign({}, { kid: 'forged' })))).status).toBe(401);
    const spent = jwks.fetches;
    jwks.keys = [await jwkOf('b1', keyB.publicKey)];
    const tokenB = await sign({}, { kid: 'b1', key: keyB.privateKey });
    expect((await get(`${gw.url}/x`, bearer(tokenB))).status).toBe(401);
    // ...so only the refresh can bring key B (and drop key A: a token it verified is refused once A is gone).
    await new Promise((r) => setTimeout(r, 500));
    expect(jwks.fetches).toBeGreaterThan(spent);
    expect((await get(`${gw.url}/x`, bearer(tokenB))).status).toBe(200);
    expect((await get(`${gw.url}/x`, bearer(await sign({})))).status).toBe(401);
  });

  test('a JWKS answer larger than maxBytes is refused', async () => {
    jwks.keys = Array.from({ length: 200 }, (_, i) => ({ ...(jwks.keys[0] as object), kid: `k${i}` }));
    const gw = await gatewayWith(jwks, {
      issuers: [{ issuer: ISS, jwks: { url: jwks.url, maxBytes: '4KiB' } }],
    });
    const r = await get(`${gw.url}/x`, bearer(await sign({})));
    expect(r.status).toBe(401);
    expect((r.json() as Problem).detail).toMatch(/JWKS fetch failed: answer larger than 4096 bytes/);
  });

  test('the key set is kept across a reload', async () => {
    const gw = await gatewayWith(jwks);
    expect((await get(`${gw.url}/x`, bearer(await sign({})))).status).toBe(200);
    const fetches = jwks.fetches;
    const up = await t.upstream();
    await gw.apply({
      ...simpleConfig(up.url, [{ name: 'all', backends: [{ service: 'svc' }], policies: ['jwt'] }]),
      policies: [
        {
          name: 'jwt',
          type: 'jwt',
          issuers: [{ issuer: ISS, audiences: ['api', 'x'], jwks: { url: jwks.url } }],
        },
      ],
    } as never);
    expect((await get(`${gw.url}/x`, bearer(await sign({ n: 2 })))).status).toBe(200);
    expect(jwks.fetches).toBe(fetches);
  });
});

describe('logs', () => {
  test('the access log never holds a token, from a header or the query', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-jwt-'));
    const file = join(dir, 'access.log');
    const up = await t.upstream();
    const gw = await startGateway({
      ...simpleConfig(up.url, [{ name: 'all', backends: [{ service: 'svc' }], policies: ['jwt'] }]),
      policies: [
        {
          name: 'jwt',
          type: 'jwt',
          issuers: [{ issuer: ISS, jwks: { url: jwks.url } }],
          tokenFrom: [{ header: 'authorization' }, { query: 'access_token' }],
        },
      ],
      accessLog: { output: file },
    } as never);
    const good = await sign({});
    const bad = await sign({}, { key: keyB.privateKey });
    await get(`${gw.url}/a`, bearer(good));
    await get(`${gw.url}/b?access_token=${bad}`);
    await get(`${gw.url}/c`, bearer(bad));
    await gw.close(); // flushes the log
    const log = readFileSync(file, 'utf8');
    expect(log.split('\n').filter(Boolean)).toHaveLength(3);
    for (const tok of [good, bad]) for (const part of tok.split('.')) expect(log).not.toContain(part);
  });
});

describe('config', () => {
  function errors(policy: Record<string, unknown>) {
    const r = loadConfigText(
      JSON.stringify({
        listeners: [{ name: 'public', port: 0 }],
        services: [{ name: 'svc', endpoints: ['http://127.0.0.1:1'] }],
        routes: [{ name: 'r', backends: [{ service: 'svc' }], policies: ['jwt'] }],
        policies: [{ name: 'jwt', type: 'jwt', ...policy }],
      }),
      'test.json',
    );
    return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
  }
  const pem = keyA.publicKey.export({ type: 'spki', format: 'pem' }) as string;

  test('an HMAC algorithm with a public key, or a secret beside a public key, is a config error', () => {
    expect(
      errors({
        issuers: [{ issuer: ISS, jwks: { url: 'https://x.test/jwks' }, algorithms: ['RS256', 'HS256'] }],
      }),
    ).toEqual([
      expect.stringMatching(/^policies\[0\]\.issuers\[0\]\.algorithms\[1\]: HS256 is an HMAC algorithm/),
    ]);
    expect(errors({ issuers: [{ issuer: ISS, keys: [{ pem }, { secret: 'x'.repeat(40) }] }] })).toEqual([
      expect.stringMatching(/^policies\[0\]\.issuers\[0\]\.keys: .*never both/),
    ]);
    expect(errors({ issuers: [{ issuer: ISS, keys: [{ secret: 'short' }] }] })).toEqual([
      expect.stringMatching(
        /^policies\[0\]\.issuers\[0\]\.keys\[0\]\.secret: an HMAC secret must have at least 32 bytes/,
      ),
    ]);
    expect(errors({ issuers: [{ issuer: ISS, keys: [{ pem }], algorithms: ['ES256'] }] })).toEqual([
      expect.stringMatching(/keys\[0\]\.pem: an RSA key cannot verify any of ES256/),
    ]);
    expect(errors({ issuers: [{ issuer: ISS, keys: [{ pem }], algorithms: ['none'] }] })[0]).toMatch(
      /algorithms\[0\]/,
    );
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    expect(errors({ issuers: [{ issuer: ISS, keys: [{ pem: weak }] }] })).toEqual([
      expect.stringMatching(/keys\[0\]\.pem: cannot read this key: an RSA key of 1024 bits is too short/),
    ]);
    const priv = keyA.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const e = errors({ issuers: [{ issuer: ISS, keys: [{ pem: priv }] }] });
    expect(e).toEqual([expect.stringMatching(/keys\[0\]\.pem: cannot read this key: this is a private key/)]);
    expect(e[0]).not.toContain('PRIVATE KEY-----\n');
  });

  test('HMAC issuers work with their secret and refuse public-key tokens', async () => {
    const secret = randomBytes(32).toString('base64url');
    const gw = await gatewayWith(jwks, {
      issuers: [{ issuer: ISS, keys: [{ secret, encoding: 'base64url' }], algorithms: ['HS256'] }],
    });
    const ok = await sign({}, { alg: 'HS256', key: Buffer.from(secret, 'base64url') });
    expect((await get(`${gw.url}/x`, bearer(ok))).status).toBe(200);
    const rs = await get(`${gw.url}/x`, bearer(await sign({})));
    expect((rs.json() as Problem).detail).toBe('algorithm RS256 not allowed for this issuer');
  });
});
