/**
 * The `introspection` policy against a real authorization server on loopback that counts its calls.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, test } from 'vitest';
import { closedAfterEach, type Echoed, type Problem, simpleConfig } from './helpers.js';

const t = closedAfterEach();

interface AuthServer {
  readonly url: string;
  readonly calls: Array<{ authorization: string | undefined; form: URLSearchParams }>;
  mode: 'ok' | 'down' | 'garbage' | 'slow';
}

/** Tokens it knows: `good-*` active (exp from `until-<unix seconds>` in the token, else an hour), anything else not. */
async function authServer(): Promise<AuthServer> {
  const state: AuthServer = { url: '', calls: [], mode: 'ok' };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const form = new URLSearchParams(body);
      state.calls.push({ authorization: req.headers.authorization, form });
      if (state.mode === 'slow') return; // never answers
      if (state.mode === 'down') {
        res.writeHead(500);
        res.end('oops');
        return;
      }
      const token = form.get('token') ?? '';
      const m = /until-(\d+)/.exec(token);
      const exp = m ? Number(m[1]) : Math.floor(Date.now() / 1000) + 3600;
      const answer =
        state.mode === 'garbage'
          ? '{"nope":1}'
          : token.startsWith('good')
            ? JSON.stringify({
                active: true,
                sub: 'alice',
                client_id: 'app-1',
                scope: 'orders:read',
                exp,
                aud: 'api',
              })
            : JSON.stringify({ active: false });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(answer);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`,
  });
}

async function gatewayWith(as: AuthServer, policy: Record<string, unknown> = {}) {
  const up = await t.upstream();
  return t.gateway({
    ...simpleConfig(up.url, [{ name: 'all', backends: [{ service: 'svc' }], policies: ['oauth'] }]),
    consumers: [{ name: 'app-1', groups: ['apps'] }],
    policies: [
      {
        name: 'oauth',
        type: 'introspection',
        url: as.url,
        clientId: 'gateway',
        clientSecret: 's3cr:et',
        tokenTypeHint: 'access_token',
        audiences: ['api'],
        consumerClaim: 'client_id',
        claimsToHeaders: [
          { claim: 'sub', header: 'x-user' },
          { claim: 'scope', header: 'x-scope' },
        ],
        ...policy,
      },
    ],
  } as never);
}

async function get(url: string, token?: string) {
  const res = await fetch(url, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as Problem & Echoed };
}

describe('introspection', () => {
  test('an active token passes with its claims; the call carries the client credentials', async () => {
    const as = await authServer();
    const gw = await gatewayWith(as);
    const r = await get(`${gw.url}/x`, 'good-1');
    expect(r.status).toBe(200);
    expect(r.json().headers['x-user']).toBe('alice');
    expect(r.json().headers['x-scope']).toBe('orders:read');
    expect(as.calls).toHaveLength(1);
    expect(as.calls[0]!.authorization).toBe(`Basic ${Buffer.from('gateway:s3cr%3Aet').toString('base64')}`);
    expect(as.calls[0]!.form.get('token')).toBe('good-1');
    expect(as.calls[0]!.form.get('token_type_hint')).toBe('access_token');
  });

  test('the cache: one call for a repeated token, and concurrent requests share one call', async () => {
    const as = await authServer();
    const gw = await gatewayWith(as);
    for (let i = 0; i < 5; i++) expect((await get(`${gw.url}/x`, 'good-2')).status).toBe(200);
    expect(as.calls).toHaveLength(1);
    const rs = await Promise.all(Array.from({ length: 10 }, () => get(`${gw.url}/x`, 'good-3')));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    expect(as.calls).toHaveLength(2);
  });

  test('never cached past the token expiry', async () => {
    const as = await authServer();
    const gw = await gatewayWith(as);
    const exp = Math.ceil(Date.now() / 1000) + 1;
    const token = `good-until-${exp}`;
    expect((await get(`${gw.url}/x`, token)).status).toBe(200);
    expect((await get(`${gw.url}/x`, token)).status).toBe(200);
    expect(as.calls).toHaveLength(1);
    await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 50));
    // The cached answer ended with the token: the server is asked again, and its exp is past now.
    const r = await get(`${gw.url}/x`, token);
    expect(as.calls).toHaveLength(2);
    expect(r.status).toBe(401);
    expect(r.json().detail).toBe('token expired');
  });

  test('inactive tokens: 401 invalid_token, cached briefly', async () => {
    const as = await authServer();
    const gw = await gatewayWith(as);
    const r = await get(`${gw.url}/x`, 'revoked');
    expect(r.status).toBe(401);
    expect(r.json().code).toBe('token_invalid');
    expect(r.json().detail).toBe('token is not active');
    expect(r.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
    expect(r.text).not.toContain('revoked');
    await get(`${gw.url}/x`, 'revoked');
    expect(as.calls).toHaveLength(1);
    expect((await get(`${gw.url}/x`)).json().code).toBe('unauthenticated');
  });

  test('failure modes: deny answers 503, allow goes on anonymous; failures are not cached', async () => {
    const as = await authServer();
    as.mode = 'down';
    const deny = await gatewayWith(as);
    const r = await get(`${deny.url}/x`, 'good-4');
    expect(r.status).toBe(503);
    expect(r.json().code).toBe('auth_unavailable');
    expect(r.json().detail).toMatch(/answered 500/);
    as.mode = 'garbage';
    expect((await get(`${deny.url}/x`, 'good-4')).json().detail).toMatch(/without a boolean "active"/);
    as.mode = 'ok';
    expect((await get(`${deny.url}/x`, 'good-4')).status).toBe(200);
    expect(as.calls).toHaveLength(3);

    as.mode = 'slow';
    const allow = await gatewayWith(as, { onError: 'allow', timeout: '150ms' });
    const a = await get(`${allow.url}/x`, 'good-5');
    expect(a.status).toBe(200);
    expect(a.json().headers['x-user']).toBeUndefined();
  });

  test('client_secret_post sends the credentials in the form', async () => {
    const as = await authServer();
    const gw = await gatewayWith(as, { clientAuth: 'post' });
    expect((await get(`${gw.url}/x`, 'good-6')).status).toBe(200);
    expect(as.calls[0]!.authorization).toBeUndefined();
    expect(as.calls[0]!.form.get('client_id')).toBe('gateway');
    expect(as.calls[0]!.form.get('client_secret')).toBe('s3cr:et');
  });
});
