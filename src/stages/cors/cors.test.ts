import { describe, expect, it } from 'vitest';
import { compileContext, fakeRequest, header, run } from '../../../test/policy-context.js';
import { corsPolicy } from './cors.js';
import { OriginMatcher } from './origins.js';

const compile = (input: Record<string, unknown>) =>
  corsPolicy.compile(corsPolicy.schema.parse(input), compileContext('cors'));

const preflight = (origin: string, method: string, headers?: string) =>
  fakeRequest({
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': method,
      ...(headers === undefined ? {} : { 'access-control-request-headers': headers }),
    },
  });

describe('origins', () => {
  it('exact (default ports dropped, case folded), subdomain patterns, never the apex or a look-alike', () => {
    const m = new OriginMatcher([
      'https://App.Example.com:443',
      'http://localhost:3000',
      'https://*.example.org',
    ]);
    expect(m.allows('https://app.example.com')).toBe(true);
    expect(m.allows('http://app.example.com')).toBe(false);
    expect(m.allows('http://localhost:3000')).toBe(true);
    expect(m.allows('http://localhost:3001')).toBe(false);
    expect(m.allows('https://a.example.org')).toBe(true);
    expect(m.allows('https://a.b.example.org')).toBe(true);
    expect(m.allows('https://example.org')).toBe(false);
    expect(m.allows('https://evilexample.org')).toBe(false);
    expect(m.allows('https://a.example.org.evil.com')).toBe(false);
    expect(m.allows('https://x@a.example.org')).toBe(false);
    expect(m.allows('https://a.example.org:8443')).toBe(false);
    expect(new OriginMatcher(['https://*.example.org:8443']).allows('https://a.example.org:8443')).toBe(true);
  });

  it('config errors: `*` with credentials, a path, a pattern over a top-level domain', () => {
    expect(() => corsPolicy.schema.parse({ origins: ['*'], credentials: true })).toThrow(
      /cannot be used with credentials/,
    );
    expect(() =>
      corsPolicy.schema.parse({ origins: ['https://a.example.com'], headers: ['*'], credentials: true }),
    ).toThrow(/headers .{1,6} cannot be used with credentials/);
    expect(() => corsPolicy.schema.parse({ origins: ['https://a.example.com/app'] })).toThrow(/no path/);
    expect(() => corsPolicy.schema.parse({ origins: ['https://*.com'] })).toThrow(/top-level domain/);
  });
});

describe('cors preflight', () => {
  const p = compile({
    origins: ['https://app.example.com', 'https://*.example.org'],
    methods: ['GET', 'PUT', 'DELETE'],
    headers: ['Authorization', 'content-type'],
    exposeHeaders: ['x-request-id'],
    credentials: true,
    maxAge: '1h',
  });

  it('answers an allowed preflight with 204 and the CORS fields', async () => {
    const { reply } = await run(
      p,
      preflight('https://app.example.com', 'PUT', 'authorization, Content-Type'),
    );
    expect(reply).toMatchObject({ kind: 'response', status: 204 });
    expect(header(reply, 'access-control-allow-origin')).toBe('https://app.example.com');
    expect(header(reply, 'access-control-allow-methods')).toBe('GET, PUT, DELETE');
    expect(header(reply, 'access-control-allow-headers')).toBe('authorization, content-type');
    expect(header(reply, 'access-control-allow-credentials')).toBe('true');
    expect(header(reply, 'access-control-max-age')).toBe('3600');
    expect(header(reply, 'vary')).toContain('Origin');
  });

  it('POST needs no listing (CORS-safelisted); an unknown method or header is refused with 403', async () => {
    expect((await run(p, preflight('https://a.example.org', 'POST'))).reply).toMatchObject({ status: 204 });
    expect((await run(p, preflight('https://a.example.org', 'PATCH'))).reply).toMatchObject({
      kind: 'error',
      code: 'cors_origin_not_allowed',
    });
    const r = (await run(p, preflight('https://a.example.org', 'GET', 'x-secret'))).reply;
    expect(r).toMatchObject({ code: 'cors_origin_not_allowed' });
    expect(r && r.kind === 'error' ? r.detail : '').toContain('x-secret');
  });

  it('refuses a preflight from another origin', async () => {
    const { reply } = await run(p, preflight('https://evil.example.com', 'GET'));
    expect(reply).toMatchObject({ kind: 'error', code: 'cors_origin_not_allowed' });
    expect(header(reply, 'access-control-allow-origin')).toBeUndefined();
  });

  it('an OPTIONS that is not a preflight goes to the upstream', async () => {
    expect((await run(p, fakeRequest({ method: 'OPTIONS' }))).reply).toBeUndefined();
    expect(
      (await run(p, fakeRequest({ method: 'OPTIONS', headers: { origin: 'https://x.example.org' } }))).reply,
    ).toBeUndefined();
  });

  it('`*` without credentials: any origin, requested headers echoed', async () => {
    const open = compile({ origins: ['*'], methods: ['*'], headers: ['*'] });
    const { reply } = await run(open, preflight('https://anyone.test', 'PATCH', 'x-a, authorization'));
    expect(header(reply, 'access-control-allow-origin')).toBe('*');
    expect(header(reply, 'access-control-allow-methods')).toBe('PATCH');
    expect(header(reply, 'access-control-allow-headers')).toBe('x-a, authorization');
    expect(header(reply, 'access-control-allow-credentials')).toBeUndefined();
  });
});

describe('cors on actual responses', () => {
  const p = compile({
    origins: ['https://app.example.com'],
    exposeHeaders: ['x-request-id', 'ratelimit'],
    credentials: true,
  });

  it('allowed origin: its fields replace the upstream’s, Vary merged', async () => {
    const req = fakeRequest({ headers: { origin: 'https://app.example.com' } });
    const out = ['Content-Type', 'text/plain', 'Access-Control-Allow-Origin', '*', 'Vary', 'Accept-Encoding'];
    p.response!.onResponse(200, out, req);
    expect(out).toEqual([
      'Content-Type',
      'text/plain',
      'Vary',
      'Accept-Encoding, Origin',
      'access-control-allow-origin',
      'https://app.example.com',
      'access-control-allow-credentials',
      'true',
      'access-control-expose-headers',
      'x-request-id, ratelimit',
    ]);
  });

  it('other origins get no CORS fields; requests without Origin get Vary: Origin', async () => {
    const out: string[] = ['access-control-allow-origin', 'https://evil.test'];
    p.response!.onResponse(200, out, fakeRequest({ headers: { origin: 'https://evil.test' } }));
    expect(out).toEqual(['vary', 'Origin']);
    const none: string[] = ['vary', 'origin'];
    p.response!.onResponse(200, none, fakeRequest());
    expect(none).toEqual(['vary', 'origin']);
  });

  it('gRPC-Web from a browser: preflight with its headers, grpc-status readable', async () => {
    const g = compile({
      origins: ['https://web.example.com'],
      methods: ['POST'],
      headers: ['content-type', 'x-grpc-web', 'x-user-agent', 'grpc-timeout', 'authorization'],
      exposeHeaders: ['grpc-status', 'grpc-message', 'grpc-status-details-bin'],
    });
    const { reply } = await run(
      g,
      preflight('https://web.example.com', 'POST', 'content-type,x-grpc-web,x-user-agent,grpc-timeout'),
    );
    expect(reply).toMatchObject({ kind: 'response', status: 204 });
    const out: string[] = [];
    g.response!.onResponse(
      200,
      out,
      fakeRequest({ method: 'POST', headers: { origin: 'https://web.example.com' } }),
    );
    expect(header(out, 'access-control-expose-headers')).toBe(
      'grpc-status, grpc-message, grpc-status-details-bin',
    );
  });
});
