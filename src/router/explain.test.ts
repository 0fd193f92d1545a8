import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { createExplainer, toRouterRequest } from './explain.js';
import { compileRouter, type RouteMatchSpec, type RouterRequest } from './index.js';

type Spec = Omit<RouteMatchSpec<number>, 'value'>;

function req(
  path: string,
  opts: { method?: string; host?: string; query?: string; headers?: IncomingHttpHeaders } = {},
): RouterRequest {
  return {
    method: opts.method ?? 'GET',
    host: opts.host ?? 'www.test',
    path,
    query: opts.query ?? '',
    headers: opts.headers ?? {},
  };
}

/** The worked example of docs/routing.md. */
const example: Spec[] = [
  { path: { prefix: '/' } },
  { path: { prefix: '/api' } },
  { path: { prefix: '/api/v2/' } },
  { path: { exact: '/api/v2/status' }, methods: ['GET'] },
  { path: { template: '/api/v2/users/:id' } },
  { path: { template: '/api/:version/users/:id' } },
  { path: { regex: '/api/v[0-9]+/legacy/.*' } },
  { path: { template: '/api/v2/users/:uid' }, headers: [{ name: 'X-Beta', present: true }] },
  { hosts: ['api.example.com'], path: { prefix: '/api/v2' }, methods: ['POST'] },
  { hosts: ['*.example.com'], path: { exact: '/api/v2/status' } },
];
const specs = (list: Spec[]) => list.map((s, i) => ({ ...s, value: i }));

describe('explain', () => {
  const ex = createExplainer(specs(example));
  const name = (i: number) => `r${i}`;

  it('agrees with the worked example in docs/routing.md', () => {
    const cases: [RouterRequest, number][] = [
      [req('/api/v2/status'), 3],
      [req('/api/v2/status', { method: 'DELETE' }), 2],
      [req('/api/v2/users/7', { headers: { 'x-beta': '1' } }), 7],
      [req('/api/v2/users/7'), 4],
      [req('/api/v3/users/7'), 5],
      [req('/api/v1/legacy/x'), 6],
      [req('/apix'), 0],
      [req('/api/v2/x', { method: 'POST', host: 'api.example.com' }), 8],
      [req('/api/v2/status', { host: 'api.example.com' }), 9],
      [req('/api/v2/status', { host: 'a.b.example.com' }), 9],
      [req('/api/v2/status', { host: 'example.com' }), 3],
    ];
    for (const [r, want] of cases) expect(ex.explain(r).winner, `${r.method} ${r.host}${r.path}`).toBe(want);
  });

  it('says why each other route did not win', () => {
    const e = ex.explain(req('/api/v2/users/7'), name);
    expect(e.outcome).toBe('match');
    expect(e.winner).toBe(4);
    expect(e.params).toEqual({ id: '7' });
    expect(e.hostGroup).toBe('any host');
    const r = e.routes;
    expect(r[4]!.verdict).toBe('match');
    expect(r[7]!.reasons).toEqual(['header x-beta: expected present, got (absent)']);
    expect(r[3]!.reasons).toEqual(['path /api/v2/users/7 is not exactly /api/v2/status']);
    expect(r[6]!.reasons[0]).toMatch(/does not match regex/);
    expect(r[8]!.reasons).toEqual([
      'host www.test is not in [api.example.com]',
      'method GET is not in [POST]',
    ]);
    expect(r[8]!.hostGroup).toBeNull();
    expect(r[5]!.verdict).toBe('lower_precedence');
    expect(r[5]!.reasons[0]).toBe(
      'matched, but r4 comes first: its template /api/v2/users/:id has more literal characters than /api/:version/users/:id (14 vs 12)',
    );
    expect(r[2]!.reasons[0]).toBe(
      'matched, but r4 comes first: template paths are tried before prefix paths (exact, then template, then regex, then prefix)',
    );
    expect(r[1]!.reasons[0]).toMatch(/template paths are tried before prefix/);
    // The tried order for this host: the any-host group only, in precedence order.
    expect(e.tried.slice(0, 4)).toEqual([3, 7, 4, 5]);
  });

  it('explains host groups, ties and prefixes', () => {
    const e = ex.explain(req('/api/v2/status', { host: 'api.example.com' }), name);
    expect(e.winner).toBe(9);
    expect(e.hostGroup).toBe('wildcard *.example.com');
    expect(e.routes[8]!.reasons).toEqual(['method GET is not in [POST]']);
    expect(e.routes[8]!.hostGroup).toBe('host api.example.com');
    expect(e.routes[3]!.reasons[0]).toBe(
      'matched, but r9 comes first: wildcard *.example.com is tried before routes for any host',
    );
    const bare = ex.explain(req('/api/v2/status', { host: 'example.com' }), name);
    expect(bare.routes[9]!.reasons[0]).toBe(
      'host example.com is not in [*.example.com] (*.example.com does not cover example.com itself)',
    );
    const del = ex.explain(req('/api/v2/status', { method: 'DELETE' }), name);
    expect(del.winner).toBe(2);
    expect(del.routes[1]!.reasons[0]).toBe(
      'matched, but r2 comes first: its prefix /api/v2 is longer than /api',
    );
    const apix = ex.explain(req('/apix'), name);
    expect(apix.routes[1]!.reasons[0]).toBe(
      'path /apix does not match prefix /api: not on a segment boundary',
    );

    const ties = createExplainer(
      specs([
        { path: { prefix: '/a' } },
        { path: { prefix: '/a' }, query: [{ name: 'x', present: true }] },
        { path: { prefix: '/a' }, methods: ['GET'] },
        { path: { prefix: '/a' }, headers: [{ name: 'h', exact: '1' }] },
        { hosts: ['a.example.com'], path: { prefix: '/' } },
        { hosts: ['*.b.example.com'], path: { prefix: '/' } },
        { hosts: ['*.example.com'], path: { prefix: '/' } },
      ]),
    );
    const t = ties.explain(req('/a', { query: 'x=1', headers: { h: '1' } }), name);
    expect(t.winner).toBe(2);
    expect(t.routes[3]!.reasons[0]).toBe(
      'matched, but r2 comes first: both are equal on the path; it restricts methods and this route does not',
    );
    const t2 = ties.explain(req('/a', { method: 'POST', query: 'x=1', headers: { h: '1' } }), name);
    expect(t2.winner).toBe(3);
    expect(t2.routes[1]!.reasons[0]).toMatch(/it has more header matchers \(1 vs 0\)$/);
    expect(t2.routes[0]!.reasons[0]).toMatch(/it has more header matchers/);
    const t3 = ties.explain(req('/a', { method: 'POST', query: 'x=1' }), name);
    expect(t3.routes[0]!.reasons[0]).toMatch(/it has more query matchers \(1 vs 0\)$/);
    const hostA = ties.explain(req('/a', { host: 'a.example.com' }), name);
    expect(hostA.winner).toBe(4);
    expect(hostA.routes[6]!.reasons[0]).toBe(
      'matched, but r4 comes first: routes naming the host a.example.com exactly are tried before wildcard *.example.com',
    );
    const deep = ties.explain(req('/a', { host: 'c.b.example.com' }), name);
    expect(deep.winner).toBe(5);
    expect(deep.routes[6]!.reasons[0]).toBe(
      'matched, but r5 comes first: wildcard *.b.example.com is tried before *.example.com (longest suffix first)',
    );
  });

  it('405 and 404 as the router answers them', () => {
    const e = createExplainer(
      specs([
        { path: { exact: '/s' }, methods: ['GET'] },
        { path: { exact: '/s' }, methods: ['PUT', 'GET'] },
      ]),
    );
    const na = e.explain(req('/s', { method: 'DELETE' }));
    expect(na.outcome).toBe('method_not_allowed');
    expect(na.allow).toEqual(['GET', 'PUT']);
    const nf = e.explain(req('/t'));
    expect(nf.outcome).toBe('not_found');
    expect(nf.routes.every((r) => r.verdict === 'no_match')).toBe(true);
  });

  it('orders a listing by precedence', () => {
    expect(ex.order).toEqual([8, 9, 3, 7, 4, 5, 6, 2, 1, 0]);
  });

  it('turns explain input into what the router sees, as the gateway does', () => {
    const r = toRouterRequest({
      method: 'post',
      host: 'API.Example.com:8443',
      path: '/a/./b/../%7Ec?x=1',
      query: 'y=2',
      headers: { 'X-A': ['1', '2'], 'User-Agent': ['a', 'b'], Cookie: ['a=1', 'b=2'] },
    });
    expect(r).toEqual({
      ok: true,
      request: {
        method: 'POST',
        host: 'api.example.com',
        path: '/a/~c',
        query: 'x=1&y=2',
        headers: { 'x-a': '1, 2', 'user-agent': 'a', cookie: 'a=1; b=2', host: 'API.Example.com:8443' },
      },
    });
    expect(toRouterRequest({ path: '/%zz' }).ok).toBe(false);
    expect(toRouterRequest({ path: 'x' }).ok).toBe(false);
    const v6 = toRouterRequest({ path: '/', host: '[::1]:80' });
    expect(v6.ok && v6.request.host).toBe('[::1]');
  });
});

// ---------------------------------------------------------------- differential: explain vs the real router

/** mulberry32: a small seeded generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HOSTS: (string[] | undefined)[] = [
  undefined,
  undefined,
  undefined,
  ['a.example.com'],
  ['*.example.com'],
  ['*.b.example.com'],
  ['b.example.com', '*.b.example.com'],
  ['x.test'],
  ['a.example.com', 'x.test'],
];
const PATHS: Spec['path'][] = [
  undefined,
  { exact: '/' },
  { exact: '/api' },
  { exact: '/api/v2/users/7' },
  { exact: '/a%2Fb' },
  { prefix: '/' },
  { prefix: '/api' },
  { prefix: '/api/' },
  { prefix: '/api/v2' },
  { prefix: '/a' },
  { template: '/api/:v/users/:id' },
  { template: '/api/v2/users/:id' },
  { template: '/:a' },
  { template: '/:a/:b' },
  { template: '/api/:v' },
  { template: '/api/:v/' },
  { template: '/api/v2/users' },
  { regex: '/api/v[0-9]+/.*' },
  { regex: '/a.*' },
  { regex: '.*' },
  { regex: '/api/v2/users/[0-9]+' },
];
const METHODS: (string[] | undefined)[] = [
  undefined,
  undefined,
  ['GET'],
  ['POST'],
  ['GET', 'PUT'],
  ['DELETE'],
];
const HEADERS: Spec['headers'][] = [
  undefined,
  undefined,
  undefined,
  [{ name: 'X-V', exact: '1' }],
  [{ name: 'x-v', present: true }],
  [{ name: 'x-v', present: false }],
  [{ name: 'X-W', regex: '[0-9]+' }],
  [
    { name: 'x-v', exact: '1' },
    { name: 'x-w', present: true },
  ],
];
const QUERIES: Spec['query'][] = [
  undefined,
  undefined,
  undefined,
  [{ name: 'debug', exact: '1' }],
  [{ name: 'debug', present: true }],
  [{ name: 'v', regex: '[a-z]+' }],
  [{ name: 'debug', present: false }],
];
const REQ_HOSTS = [
  'www.test',
  'a.example.com',
  'c.b.example.com',
  'b.example.com',
  'example.com',
  'x.test',
  '',
];
const REQ_PATHS = [
  '/',
  '/api',
  '/api/',
  '/apix',
  '/api/v2',
  '/api/v2/',
  '/api/v2/users',
  '/api/v2/users/7',
  '/api/v3/users/9',
  '/api/v3/users/9/',
  '/a',
  '/a/b',
  '/a%2Fb',
  '/ab',
  '/zzz',
  '/api/x/',
];
const REQ_METHODS = ['GET', 'GET', 'POST', 'PUT', 'DELETE'];
const REQ_HEADERS: IncomingHttpHeaders[] = [
  {},
  { 'x-v': '1' },
  { 'x-v': '2' },
  { 'x-w': '42' },
  { 'x-v': '1', 'x-w': 'a' },
];
const REQ_QUERIES = ['', 'debug=1', 'debug', 'v=abc', 'v=1&debug=1', 'debug=0&debug=1'];

describe('explain agrees with the router (differential)', () => {
  it('on random route tables and requests', () => {
    const next = rng(20240607);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
    let matches = 0;
    let notAllowed = 0;
    let compared = 0;
    for (let table = 0; table < 300; table++) {
      const n = 1 + Math.floor(next() * 12);
      const list: RouteMatchSpec<number>[] = [];
      for (let i = 0; i < n; i++) {
        list.push({
          hosts: pick(HOSTS),
          path: pick(PATHS),
          methods: pick(METHODS),
          headers: pick(HEADERS),
          query: pick(QUERIES),
          value: i,
        });
      }
      const router = compileRouter(list);
      const explainer = createExplainer(list);
      for (let k = 0; k < 40; k++) {
        const r = req(pick(REQ_PATHS), {
          method: pick(REQ_METHODS),
          host: pick(REQ_HOSTS),
          headers: pick(REQ_HEADERS),
          query: pick(REQ_QUERIES),
        });
        const want = router.match(r);
        const got = explainer.explain(r);
        const context = () => JSON.stringify({ table: list, request: r });
        compared++;
        if (want.kind === 'match') {
          matches++;
          expect(got.winner, context()).toBe(want.value);
          expect(got.params, context()).toEqual(want.params);
          expect(got.routes[got.winner!]!.verdict).toBe('match');
        } else if (want.kind === 'method_not_allowed') {
          notAllowed++;
          expect(got.outcome, context()).toBe('method_not_allowed');
          expect(got.allow, context()).toEqual([...want.allow]);
        } else {
          expect(got.outcome, context()).toBe('not_found');
        }
        // Exactly one winner; every other route has a reason.
        for (const route of got.routes) {
          if (route.index === got.winner) continue;
          expect(route.verdict).not.toBe('match');
          expect(route.reasons.length).toBeGreaterThan(0);
        }
      }
    }
    expect(compared).toBe(12_000);
    // The generator must reach all three outcomes often, or the comparison says little.
    expect(matches).toBeGreaterThan(2000);
    expect(notAllowed).toBeGreaterThan(100);
  });
});
