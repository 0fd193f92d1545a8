import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { compileRouter, type RouteMatchSpec, RouterCompileError, type RouterRequest } from './index.js';

/** A route in the tables: the payload is its name, so expectations read as route names. */
type Route = Omit<RouteMatchSpec<string>, 'value'> & { name: string };

interface Req {
  method?: string;
  host?: string;
  path: string;
  query?: string;
  headers?: IncomingHttpHeaders;
}

type Expect = string | { route: string; params: Record<string, string> } | { allow: string[] } | 'not_found';

interface Case {
  name: string;
  routes: Route[];
  req: Req;
  expect: Expect;
}

function request(r: Req): RouterRequest {
  return {
    method: r.method ?? 'GET',
    host: r.host ?? 'example.com',
    path: r.path,
    query: r.query ?? '',
    headers: r.headers ?? {},
  };
}

function build(routes: Route[]) {
  return compileRouter(routes.map(({ name, ...match }) => ({ ...match, value: name })));
}

const cases: Case[] = [
  // ---- exact paths
  {
    name: 'exact matches the same path',
    routes: [{ name: 'a', path: { exact: '/api' } }],
    req: { path: '/api' },
    expect: 'a',
  },
  {
    name: 'exact does not match with a trailing slash',
    routes: [{ name: 'a', path: { exact: '/api' } }],
    req: { path: '/api/' },
    expect: 'not_found',
  },
  {
    name: 'exact is case-sensitive',
    routes: [{ name: 'a', path: { exact: '/api' } }],
    req: { path: '/API' },
    expect: 'not_found',
  },
  {
    name: 'exact compares the raw path: %2F is not a slash',
    routes: [{ name: 'a', path: { exact: '/a/b' } }],
    req: { path: '/a%2Fb' },
    expect: 'not_found',
  },
  {
    name: 'non-ASCII in a route path is matched in its percent-encoded form',
    routes: [{ name: 'a', path: { exact: '/café' } }],
    req: { path: '/caf%C3%A9' },
    expect: 'a',
  },

  // ---- prefixes
  {
    name: 'prefix /api matches /api',
    routes: [{ name: 'p', path: { prefix: '/api' } }],
    req: { path: '/api' },
    expect: 'p',
  },
  {
    name: 'prefix /api matches /api/',
    routes: [{ name: 'p', path: { prefix: '/api' } }],
    req: { path: '/api/' },
    expect: 'p',
  },
  {
    name: 'prefix /api matches /api/x/y',
    routes: [{ name: 'p', path: { prefix: '/api' } }],
    req: { path: '/api/x/y' },
    expect: 'p',
  },
  {
    name: 'prefix /api does not match /apix',
    routes: [{ name: 'p', path: { prefix: '/api' } }],
    req: { path: '/apix' },
    expect: 'not_found',
  },
  {
    name: 'prefix /api does not match /api%2Fx (not a segment boundary)',
    routes: [{ name: 'p', path: { prefix: '/api' } }],
    req: { path: '/api%2Fx' },
    expect: 'not_found',
  },
  {
    name: 'prefix with a trailing slash /api/ also matches /api',
    routes: [{ name: 'p', path: { prefix: '/api/' } }],
    req: { path: '/api' },
    expect: 'p',
  },
  {
    name: 'prefix /api/ matches /api/x but not /apix',
    routes: [
      { name: 'p', path: { prefix: '/api/' } },
      { name: 'q', path: { prefix: '/apix' } },
    ],
    req: { path: '/api/x' },
    expect: 'p',
  },
  {
    name: 'absent path is prefix / and matches everything',
    routes: [{ name: 'all' }],
    req: { path: '/anything/deep/down' },
    expect: 'all',
  },
  {
    name: 'the longest prefix wins',
    routes: [
      { name: 'short', path: { prefix: '/api' } },
      { name: 'long', path: { prefix: '/api/v1' } },
      { name: 'root', path: { prefix: '/' } },
    ],
    req: { path: '/api/v1/users' },
    expect: 'long',
  },
  {
    name: 'a shorter prefix takes over when the longer one fails on a header',
    routes: [
      { name: 'short', path: { prefix: '/api' } },
      { name: 'long', path: { prefix: '/api/v1' }, headers: [{ name: 'x-beta', present: true }] },
    ],
    req: { path: '/api/v1/users' },
    expect: 'short',
  },

  // ---- templates
  {
    name: 'template returns its parameter',
    routes: [{ name: 't', path: { template: '/users/:id' } }],
    req: { path: '/users/42' },
    expect: { route: 't', params: { id: '42' } },
  },
  {
    name: 'template returns several parameters',
    routes: [{ name: 't', path: { template: '/users/:id/orders/:oid' } }],
    req: { path: '/users/7/orders/99' },
    expect: { route: 't', params: { id: '7', oid: '99' } },
  },
  {
    name: 'a parameter does not match an empty segment',
    routes: [{ name: 't', path: { template: '/users/:id' } }],
    req: { path: '/users/' },
    expect: 'not_found',
  },
  {
    name: 'a parameter does not match two segments',
    routes: [{ name: 't', path: { template: '/users/:id' } }],
    req: { path: '/users/1/2' },
    expect: 'not_found',
  },
  {
    name: 'parameters are returned raw, not decoded',
    routes: [{ name: 't', path: { template: '/users/:id' } }],
    req: { path: '/users/a%20b' },
    expect: { route: 't', params: { id: 'a%20b' } },
  },
  {
    name: 'an encoded slash stays inside one parameter',
    routes: [{ name: 't', path: { template: '/files/:name' } }],
    req: { path: '/files/a%2Fb' },
    expect: { route: 't', params: { name: 'a%2Fb' } },
  },
  {
    name: 'a template with a trailing slash needs the trailing slash',
    routes: [{ name: 't', path: { template: '/users/:id/' } }],
    req: { path: '/users/1' },
    expect: 'not_found',
  },
  {
    name: 'a template with a trailing slash matches with it',
    routes: [{ name: 't', path: { template: '/users/:id/' } }],
    req: { path: '/users/1/' },
    expect: { route: 't', params: { id: '1' } },
  },
  {
    name: 'a template with more literal characters wins, whatever the input order',
    routes: [
      { name: 'wide', path: { template: '/:a/:b/orders' } },
      { name: 'narrow', path: { template: '/users/:id/orders' } },
    ],
    req: { path: '/users/5/orders' },
    expect: { route: 'narrow', params: { id: '5' } },
  },
  {
    name: 'a literal segment beats a parameter even when the parameter is found first in the tree',
    routes: [
      { name: 'left', path: { template: '/a/:x' } },
      { name: 'right', path: { template: '/:y/bbbb' } },
    ],
    req: { path: '/a/bbbb' },
    expect: { route: 'right', params: { y: 'a' } },
  },
  {
    name: 'with equal literal characters, fewer parameters win',
    routes: [
      { name: 'two', path: { template: '/abc/:x/:y' } },
      { name: 'one', path: { template: '/:x/bc/d' } },
    ],
    req: { path: '/abc/bc/d' },
    expect: { route: 'one', params: { x: 'abc' } },
  },
  {
    name: 'the next template serves when the best one fails on a header',
    routes: [
      { name: 'narrow', path: { template: '/users/:id' }, headers: [{ name: 'x-v2', present: true }] },
      { name: 'wide', path: { template: '/:kind/:id' } },
    ],
    req: { path: '/users/5' },
    expect: { route: 'wide', params: { kind: 'users', id: '5' } },
  },

  // ---- precedence between path kinds
  {
    name: 'exact beats template',
    routes: [
      { name: 't', path: { template: '/users/:id' } },
      { name: 'e', path: { exact: '/users/me' } },
    ],
    req: { path: '/users/me' },
    expect: 'e',
  },
  {
    name: 'template beats regex',
    routes: [
      { name: 'r', path: { regex: '/users/.*' } },
      { name: 't', path: { template: '/users/:id' } },
    ],
    req: { path: '/users/1' },
    expect: { route: 't', params: { id: '1' } },
  },
  {
    name: 'regex beats prefix, even a long one',
    routes: [
      { name: 'p', path: { prefix: '/users/1' } },
      { name: 'r', path: { regex: '/users/[0-9]+' } },
    ],
    req: { path: '/users/1' },
    expect: 'r',
  },
  {
    name: 'between regexes the earlier wins',
    routes: [
      { name: 'r1', path: { regex: '/a.*' } },
      { name: 'r2', path: { regex: '/ab.*' } },
    ],
    req: { path: '/abc' },
    expect: 'r1',
  },
  {
    name: 'a regex must match the whole path',
    routes: [{ name: 'r', path: { regex: '/a.c' } }],
    req: { path: '/abcd' },
    expect: 'not_found',
  },
  {
    name: 'an exact route that fails on the method falls through to a prefix without methods',
    routes: [
      { name: 'e', path: { exact: '/api' }, methods: ['POST'] },
      { name: 'p', path: { prefix: '/' } },
    ],
    req: { path: '/api' },
    expect: 'p',
  },

  // ---- hosts
  {
    name: 'an exact host beats any host',
    routes: [
      { name: 'any', path: { prefix: '/' } },
      { name: 'host', hosts: ['api.example.com'], path: { prefix: '/' } },
    ],
    req: { host: 'api.example.com', path: '/x' },
    expect: 'host',
  },
  {
    name: 'host group first even against a more specific path for any host',
    routes: [
      { name: 'any-exact', path: { exact: '/x' } },
      { name: 'host-prefix', hosts: ['api.example.com'] },
    ],
    req: { host: 'api.example.com', path: '/x' },
    expect: 'host-prefix',
  },
  {
    name: 'host names in routes are case-insensitive',
    routes: [{ name: 'h', hosts: ['API.Example.COM'] }],
    req: { host: 'api.example.com', path: '/' },
    expect: 'h',
  },
  {
    name: 'a wildcard matches one label in front',
    routes: [{ name: 'w', hosts: ['*.example.com'] }],
    req: { host: 'a.example.com', path: '/' },
    expect: 'w',
  },
  {
    name: 'a wildcard matches several labels in front',
    routes: [{ name: 'w', hosts: ['*.example.com'] }],
    req: { host: 'a.b.example.com', path: '/' },
    expect: 'w',
  },
  {
    name: 'a wildcard does not match the bare suffix',
    routes: [{ name: 'w', hosts: ['*.example.com'] }],
    req: { host: 'example.com', path: '/' },
    expect: 'not_found',
  },
  {
    name: 'a wildcard does not match a longer label ending in the suffix',
    routes: [{ name: 'w', hosts: ['*.example.com'] }],
    req: { host: 'notexample.com', path: '/' },
    expect: 'not_found',
  },
  {
    name: 'the longest wildcard suffix wins',
    routes: [
      { name: 'short', hosts: ['*.example.com'] },
      { name: 'long', hosts: ['*.b.example.com'] },
    ],
    req: { host: 'a.b.example.com', path: '/' },
    expect: 'long',
  },
  {
    name: 'an exact host beats a wildcard',
    routes: [
      { name: 'w', hosts: ['*.example.com'] },
      { name: 'e', hosts: ['a.example.com'] },
    ],
    req: { host: 'a.example.com', path: '/' },
    expect: 'e',
  },
  {
    name: 'an exact host falls through to its wildcard when its routes miss the path',
    routes: [
      { name: 'e', hosts: ['a.example.com'], path: { exact: '/only' } },
      { name: 'w', hosts: ['*.example.com'], path: { prefix: '/x' } },
    ],
    req: { host: 'a.example.com', path: '/x/1' },
    expect: 'w',
  },
  {
    name: 'a host group falls through to any host when no route there matches the path',
    routes: [
      { name: 'host', hosts: ['api.example.com'], path: { prefix: '/v1' } },
      { name: 'any', path: { prefix: '/v2' } },
    ],
    req: { host: 'api.example.com', path: '/v2/x' },
    expect: 'any',
  },
  {
    name: 'a host group falls through to any host when its route rejects the method',
    routes: [
      { name: 'host', hosts: ['api.example.com'], methods: ['POST'] },
      { name: 'any', path: { prefix: '/' } },
    ],
    req: { host: 'api.example.com', path: '/x', method: 'GET' },
    expect: 'any',
  },
  {
    name: 'a host that only host-specific routes name: other hosts find nothing',
    routes: [{ name: 'host', hosts: ['api.example.com'] }],
    req: { host: 'other.example.com', path: '/' },
    expect: 'not_found',
  },
  {
    name: 'a route with several hosts serves each of them',
    routes: [{ name: 'h', hosts: ['a.test', '*.b.test'], path: { exact: '/' } }],
    req: { host: 'x.b.test', path: '/' },
    expect: 'h',
  },

  // ---- methods
  {
    name: 'a route with methods beats one without for the same path',
    routes: [
      { name: 'any', path: { exact: '/x' } },
      { name: 'get', path: { exact: '/x' }, methods: ['GET'] },
    ],
    req: { path: '/x' },
    expect: 'get',
  },
  {
    name: 'a route without methods serves methods the restricted one rejects',
    routes: [
      { name: 'get', path: { exact: '/x' }, methods: ['GET'] },
      { name: 'any', path: { exact: '/x' } },
    ],
    req: { path: '/x', method: 'DELETE' },
    expect: 'any',
  },
  {
    name: '405 lists the union of allowed methods, sorted and deduplicated',
    routes: [
      { name: 'a', path: { exact: '/x' }, methods: ['PUT', 'GET'] },
      { name: 'b', path: { prefix: '/x' }, methods: ['POST', 'GET'] },
    ],
    req: { path: '/x', method: 'DELETE' },
    expect: { allow: ['GET', 'POST', 'PUT'] },
  },
  {
    name: '405 joins the methods of every host group tried',
    routes: [
      { name: 'host', hosts: ['api.example.com'], path: { exact: '/x' }, methods: ['GET'] },
      { name: 'any', path: { exact: '/x' }, methods: ['POST'] },
    ],
    req: { host: 'api.example.com', path: '/x', method: 'PATCH' },
    expect: { allow: ['GET', 'POST'] },
  },
  {
    name: '405 ignores routes that failed on headers',
    routes: [
      { name: 'a', path: { exact: '/x' }, methods: ['GET'] },
      { name: 'b', path: { exact: '/x' }, methods: ['PUT'], headers: [{ name: 'x-admin', present: true }] },
    ],
    req: { path: '/x', method: 'POST' },
    expect: { allow: ['GET'] },
  },
  {
    name: 'HEAD is not implied by GET',
    routes: [{ name: 'g', path: { exact: '/x' }, methods: ['GET'] }],
    req: { path: '/x', method: 'HEAD' },
    expect: { allow: ['GET'] },
  },
  {
    name: 'no path match at all is not_found even when methods differ',
    routes: [{ name: 'g', path: { exact: '/x' }, methods: ['GET'] }],
    req: { path: '/y', method: 'POST' },
    expect: 'not_found',
  },

  // ---- headers
  {
    name: 'header exact compares the value case-sensitively',
    routes: [{ name: 'h', headers: [{ name: 'x-env', exact: 'Prod' }] }],
    req: { path: '/', headers: { 'x-env': 'prod' } },
    expect: 'not_found',
  },
  {
    name: 'header names in routes are case-insensitive',
    routes: [{ name: 'h', headers: [{ name: 'X-Env', exact: 'prod' }] }],
    req: { path: '/', headers: { 'x-env': 'prod' } },
    expect: 'h',
  },
  {
    name: 'header regex must match the whole value',
    routes: [{ name: 'h', headers: [{ name: 'x-v', regex: 'v[0-9]' }] }],
    req: { path: '/', headers: { 'x-v': 'v12' } },
    expect: 'not_found',
  },
  {
    name: 'header regex matches',
    routes: [{ name: 'h', headers: [{ name: 'x-v', regex: 'v[0-9]+' }] }],
    req: { path: '/', headers: { 'x-v': 'v12' } },
    expect: 'h',
  },
  {
    name: 'header present: true needs the header, even empty',
    routes: [{ name: 'h', headers: [{ name: 'x-debug', present: true }] }],
    req: { path: '/', headers: { 'x-debug': '' } },
    expect: 'h',
  },
  {
    name: 'header present: false matches when the header is absent',
    routes: [
      { name: 'absent', headers: [{ name: 'authorization', present: false }] },
      { name: 'fallback', path: { prefix: '/other' } },
    ],
    req: { path: '/' },
    expect: 'absent',
  },
  {
    name: 'header present: false fails when the header is there',
    routes: [{ name: 'absent', headers: [{ name: 'authorization', present: false }] }],
    req: { path: '/', headers: { authorization: 'Bearer x' } },
    expect: 'not_found',
  },
  {
    name: 'more header matches win',
    routes: [
      { name: 'one', headers: [{ name: 'x-a', present: true }] },
      {
        name: 'two',
        headers: [
          { name: 'x-a', present: true },
          { name: 'x-b', present: true },
        ],
      },
    ],
    req: { path: '/', headers: { 'x-a': '1', 'x-b': '2' } },
    expect: 'two',
  },
  {
    name: 'a repeated header is matched as node gives it (comma-joined)',
    routes: [{ name: 'h', headers: [{ name: 'x-tag', exact: 'a, b' }] }],
    req: { path: '/', headers: { 'x-tag': 'a, b' } },
    expect: 'h',
  },
  {
    name: 'an array header value is joined with ", "',
    routes: [{ name: 'h', headers: [{ name: 'set-cookie', regex: 'a=1, .*' }] }],
    req: { path: '/', headers: { 'set-cookie': ['a=1', 'b=2'] } },
    expect: 'h',
  },

  // ---- query
  {
    name: 'query exact',
    routes: [{ name: 'q', query: [{ name: 'v', exact: '2' }] }],
    req: { path: '/', query: 'a=1&v=2' },
    expect: 'q',
  },
  {
    name: 'query + is a space',
    routes: [{ name: 'q', query: [{ name: 'q', exact: 'hello world' }] }],
    req: { path: '/', query: 'q=hello+world' },
    expect: 'q',
  },
  {
    name: 'query names and values are percent-decoded',
    routes: [{ name: 'q', query: [{ name: 'a b', exact: 'é&x' }] }],
    req: { path: '/', query: 'a%20b=%C3%A9%26x' },
    expect: 'q',
  },
  {
    name: 'a malformed escape in the query is kept as written',
    routes: [{ name: 'q', query: [{ name: 'p', exact: '100%zz' }] }],
    req: { path: '/', query: 'p=100%zz' },
    expect: 'q',
  },
  {
    name: 'the first value of a repeated query parameter wins',
    routes: [{ name: 'q', query: [{ name: 'v', exact: '1' }] }],
    req: { path: '/', query: 'v=1&v=2' },
    expect: 'q',
  },
  {
    name: 'a later value of a repeated query parameter is ignored',
    routes: [{ name: 'q', query: [{ name: 'v', exact: '2' }] }],
    req: { path: '/', query: 'v=1&v=2' },
    expect: 'not_found',
  },
  {
    name: 'a query name without = is present with an empty value',
    routes: [{ name: 'q', query: [{ name: 'debug', exact: '' }] }],
    req: { path: '/', query: 'debug' },
    expect: 'q',
  },
  {
    name: 'query present: false',
    routes: [{ name: 'q', query: [{ name: 'debug', present: false }] }],
    req: { path: '/', query: 'x=1' },
    expect: 'q',
  },
  {
    name: 'query regex matches the whole decoded value',
    routes: [{ name: 'q', query: [{ name: 'id', regex: '[0-9]+' }] }],
    req: { path: '/', query: 'id=12a' },
    expect: 'not_found',
  },
  {
    name: 'query names are case-sensitive',
    routes: [{ name: 'q', query: [{ name: 'ID', present: true }] }],
    req: { path: '/', query: 'id=1' },
    expect: 'not_found',
  },
  {
    name: 'more query matches win',
    routes: [
      { name: 'one', query: [{ name: 'a', present: true }] },
      {
        name: 'two',
        query: [
          { name: 'a', present: true },
          { name: 'b', present: true },
        ],
      },
    ],
    req: { path: '/', query: 'a=1&b=2' },
    expect: 'two',
  },

  // ---- tie-breakers between routes with the same path
  {
    name: 'methods outrank header count',
    routes: [
      {
        name: 'headers',
        path: { exact: '/x' },
        headers: [
          { name: 'x-a', present: true },
          { name: 'x-b', present: true },
        ],
      },
      { name: 'method', path: { exact: '/x' }, methods: ['GET'] },
    ],
    req: { path: '/x', headers: { 'x-a': '1', 'x-b': '2' } },
    expect: 'method',
  },
  {
    name: 'header count outranks query count',
    routes: [
      { name: 'query', path: { exact: '/x' }, query: [{ name: 'a', present: true }] },
      { name: 'header', path: { exact: '/x' }, headers: [{ name: 'x-a', present: true }] },
    ],
    req: { path: '/x', query: 'a', headers: { 'x-a': '1' } },
    expect: 'header',
  },
  {
    name: 'otherwise the earlier route wins',
    routes: [
      { name: 'first', path: { prefix: '/api' } },
      { name: 'second', path: { prefix: '/api/' } },
    ],
    req: { path: '/api/x' },
    expect: 'first',
  },
];

describe('router conformance', () => {
  it.each(cases)('$name', ({ routes, req, expect: want }) => {
    const result = build(routes).match(request(req));
    if (want === 'not_found') {
      expect(result).toEqual({ kind: 'not_found' });
    } else if (typeof want === 'string') {
      expect(result).toEqual({ kind: 'match', value: want, params: undefined });
    } else if ('allow' in want) {
      expect(result).toEqual({ kind: 'method_not_allowed', allow: want.allow });
    } else {
      expect(result).toEqual({ kind: 'match', value: want.route, params: want.params });
    }
  });
});

// The worked example of docs/routing.md, kept true by this test.
describe('docs/routing.md worked example', () => {
  const routes: Route[] = [
    { name: 'r0', path: { prefix: '/' } },
    { name: 'r1', path: { prefix: '/api' } },
    { name: 'r2', path: { prefix: '/api/v2/' } },
    { name: 'r3', path: { exact: '/api/v2/status' }, methods: ['GET'] },
    { name: 'r4', path: { template: '/api/v2/users/:id' } },
    { name: 'r5', path: { template: '/api/:version/users/:id' } },
    { name: 'r6', path: { regex: '/api/v[0-9]+/legacy/.*' } },
    { name: 'r7', path: { template: '/api/v2/users/:uid' }, headers: [{ name: 'X-Beta', present: true }] },
    { name: 'r8', hosts: ['api.example.com'], path: { prefix: '/api/v2' }, methods: ['POST'] },
    { name: 'r9', hosts: ['*.example.com'], path: { exact: '/api/v2/status' } },
  ];
  const router = build(routes);
  const rows: [Req, string, Record<string, string>?][] = [
    [{ host: 'www.test', path: '/api/v2/status' }, 'r3'],
    [{ host: 'www.test', path: '/api/v2/status', method: 'DELETE' }, 'r2'],
    [{ host: 'www.test', path: '/api/v2/users/7', headers: { 'x-beta': '1' } }, 'r7', { uid: '7' }],
    [{ host: 'www.test', path: '/api/v2/users/7' }, 'r4', { id: '7' }],
    [{ host: 'www.test', path: '/api/v3/users/7' }, 'r5', { version: 'v3', id: '7' }],
    [{ host: 'www.test', path: '/api/v1/legacy/x' }, 'r6'],
    [{ host: 'www.test', path: '/apix' }, 'r0'],
    [{ host: 'api.example.com', path: '/api/v2/x', method: 'POST' }, 'r8'],
    [{ host: 'api.example.com', path: '/api/v2/status' }, 'r9'],
    [{ host: 'a.b.example.com', path: '/api/v2/status' }, 'r9'],
    [{ host: 'example.com', path: '/api/v2/status' }, 'r3'],
  ];
  it.each(rows)('%o → %s', (req, route, params) => {
    expect(router.match(request(req))).toEqual({ kind: 'match', value: route, params });
  });

  it('the 405 example', () => {
    const small = build([
      routes[3]!,
      { name: 'r10', path: { exact: '/api/v2/status' }, methods: ['PUT', 'GET'] },
    ]);
    expect(small.match(request({ path: '/api/v2/status', method: 'DELETE' }))).toEqual({
      kind: 'method_not_allowed',
      allow: ['GET', 'PUT'],
    });
  });
});

describe('compile errors', () => {
  const bad: { name: string; route: Route; message: RegExp }[] = [
    {
      name: 'invalid path regex',
      route: { name: 'r', path: { regex: '/a(' } },
      message: /route 1: path\.regex: .*"\/a\("/,
    },
    {
      name: 'invalid header regex',
      route: { name: 'r', headers: [{ name: 'x', regex: '[' }] },
      message: /route 1: headers\[0\]\.regex: .*"\["/,
    },
    {
      name: 'invalid query regex',
      route: { name: 'r', query: [{ name: 'x', regex: '*' }] },
      message: /route 1: query\[0\]\.regex: .*"\*"/,
    },
    {
      name: 'empty param name',
      route: { name: 'r', path: { template: '/a/:/b' } },
      message: /empty parameter/,
    },
    {
      name: 'duplicate param name',
      route: { name: 'r', path: { template: '/a/:id/:id' } },
      message: /duplicate.*"id"/,
    },
    {
      name: '__proto__ as param name',
      route: { name: 'r', path: { template: '/:__proto__' } },
      message: /invalid parameter/,
    },
    {
      name: 'path without a leading slash',
      route: { name: 'r', path: { exact: 'api' } },
      message: /starting with "\/"/,
    },
    { name: 'host with a port', route: { name: 'r', hosts: ['a.test:8080'] }, message: /hosts\[0\].*port/ },
    { name: 'bare * host', route: { name: 'r', hosts: ['*'] }, message: /hosts\[0\]/ },
    { name: 'wildcard inside a host', route: { name: 'r', hosts: ['a.*.test'] }, message: /hosts\[0\]/ },
    {
      name: 'header matcher with two kinds',
      route: { name: 'r', headers: [{ name: 'x', exact: 'a', present: true }] },
      message: /exactly one/,
    },
  ];
  it.each(bad)('$name', ({ route, message }) => {
    const routes: Route[] = [{ name: 'ok', path: { prefix: '/' } }, route];
    expect(() => build(routes)).toThrow(RouterCompileError);
    expect(() => build(routes)).toThrow(message);
  });

  it('names the route index and field on the error', () => {
    try {
      build([{ name: 'ok' }, { name: 'ok2' }, { name: 'bad', path: { regex: '(' } }]);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(RouterCompileError);
      expect((err as RouterCompileError).routeIndex).toBe(2);
      expect((err as RouterCompileError).field).toBe('path.regex');
    }
  });
});

describe('results and laziness', () => {
  it('returns the same frozen object for every static match and for not_found', () => {
    const router = build([{ name: 'a', path: { exact: '/a' } }]);
    const first = router.match(request({ path: '/a' }));
    expect(router.match(request({ path: '/a' }))).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    const miss = router.match(request({ path: '/nope' }));
    expect(router.match(request({ path: '/other' }))).toBe(miss);
    expect(Object.isFrozen(miss)).toBe(true);
  });

  it('returns a frozen 405 with a frozen Allow list', () => {
    const router = build([{ name: 'a', path: { exact: '/a' }, methods: ['GET'] }]);
    const result = router.match(request({ path: '/a', method: 'POST' }));
    expect(Object.isFrozen(result)).toBe(true);
    expect(result.kind === 'method_not_allowed' && Object.isFrozen(result.allow)).toBe(true);
  });

  it('reports its size', () => {
    expect(build([{ name: 'a' }, { name: 'b', hosts: ['x.test'] }]).size).toBe(2);
    expect(build([]).size).toBe(0);
  });

  it('an empty router finds nothing', () => {
    expect(build([]).match(request({ path: '/' }))).toEqual({ kind: 'not_found' });
  });

  it('never reads the query string when no candidate route has query matchers', () => {
    const router = build([
      { name: 'a', path: { prefix: '/a' } },
      { name: 'q', path: { prefix: '/q' }, query: [{ name: 'x', present: true }] },
    ]);
    let reads = 0;
    const req = {
      ...request({ path: '/a/1' }),
      get query() {
        reads++;
        return 'x=1';
      },
    };
    expect(router.match(req)).toMatchObject({ value: 'a' });
    expect(reads).toBe(0);
    expect(router.match({ ...request({ path: '/q' }), query: 'x=1' })).toMatchObject({ value: 'q' });
  });

  it('parses the query string once per request however many routes need it', () => {
    const router = build([
      { name: 'a', path: { exact: '/x' }, query: [{ name: 'a', present: true }] },
      { name: 'b', path: { exact: '/x' }, query: [{ name: 'b', present: true }] },
      { name: 'c', path: { prefix: '/x' }, query: [{ name: 'c', present: true }] },
    ]);
    let reads = 0;
    const req = {
      ...request({ path: '/x' }),
      get query() {
        reads++;
        return 'c=1';
      },
    };
    expect(router.match(req)).toMatchObject({ value: 'c' });
    expect(reads).toBe(1);
  });

  it('does not carry a parsed query over to the next request', () => {
    const router = build([{ name: 'q', query: [{ name: 'x', present: true }] }]);
    expect(router.match(request({ path: '/', query: 'x' }))).toMatchObject({ value: 'q' });
    expect(router.match(request({ path: '/', query: 'y' }))).toEqual({ kind: 'not_found' });
  });
});

// ---- differential test against a naive reference that reads like the rules in docs/routing.md

interface RefRoute extends Route {
  index: number;
}

function refPathMatch(route: RefRoute, path: string): Record<string, string> | undefined | false {
  const p = route.path ?? { prefix: '/' };
  if ('exact' in p) return p.exact === path ? undefined : false;
  if ('prefix' in p) {
    const prefix = p.prefix.length > 1 ? p.prefix.replace(/\/+$/, '') : p.prefix;
    if (prefix === '/') return path.startsWith('/') ? undefined : false;
    return path === prefix || path.startsWith(`${prefix}/`) ? undefined : false;
  }
  if ('regex' in p) return new RegExp(`^(?:${p.regex})$`).test(path) ? undefined : false;
  const want = p.template.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return false;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    if (w.startsWith(':')) {
      if (got[i] === '') return false;
      params[w.slice(1)] = got[i]!;
    } else if (w !== got[i]) return false;
  }
  return Object.keys(params).length > 0 ? params : undefined;
}

function refKey(route: RefRoute, all: RefRoute[]): number[] {
  const p = route.path ?? { prefix: '/' };
  const ties = [
    route.methods ? 0 : 1,
    -(route.headers?.length ?? 0),
    -(route.query?.length ?? 0),
    route.index,
  ];
  if ('exact' in p) return [0, 0, 0, ...ties];
  if ('template' in p) {
    const segs = p.template.split('/');
    const params = segs.filter((s) => s.startsWith(':'));
    const literal = p.template.length - params.reduce((n, s) => n + s.length, 0);
    return [1, -literal, params.length, ...ties];
  }
  if ('regex' in p) {
    const first = all.find((r) => r.path && 'regex' in r.path && r.path.regex === p.regex)!.index;
    return [2, first, 0, ...ties];
  }
  const prefix = p.prefix.length > 1 ? p.prefix.replace(/\/+$/, '') : p.prefix;
  return [3, -prefix.length, 0, ...ties];
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function refMatch(routes: RefRoute[], req: RouterRequest) {
  const hostGroups: RefRoute[][] = [];
  hostGroups.push(routes.filter((r) => r.hosts?.includes(req.host)));
  const suffixes = [...new Set(routes.flatMap((r) => r.hosts ?? []).filter((h) => h.startsWith('*.')))]
    .map((h) => h.slice(1))
    .filter((s) => req.host.endsWith(s) && req.host.length > s.length)
    .sort((a, b) => b.length - a.length);
  for (const s of suffixes) hostGroups.push(routes.filter((r) => r.hosts?.includes(`*${s}`)));
  hostGroups.push(routes.filter((r) => !r.hosts));
  const query = new URLSearchParams(req.query);
  const allow = new Set<string>();
  for (const group of hostGroups) {
    const candidates = group
      .map((r) => ({ r, params: refPathMatch(r, req.path) }))
      .filter((c) => c.params !== false)
      .sort((a, b) => compareKeys(refKey(a.r, group), refKey(b.r, group)));
    for (const { r, params } of candidates) {
      const headersOk = (r.headers ?? []).every((h) => {
        const v = req.headers[h.name.toLowerCase()] as string | undefined;
        if (h.present !== undefined) return h.present === (v !== undefined);
        if (h.exact !== undefined) return v === h.exact;
        return v !== undefined && new RegExp(`^(?:${h.regex})$`).test(v);
      });
      const queryOk = (r.query ?? []).every((q) => {
        const v = query.get(q.name) ?? undefined;
        if (q.present !== undefined) return q.present === (v !== undefined);
        if (q.exact !== undefined) return v === q.exact;
        return v !== undefined && new RegExp(`^(?:${q.regex})$`).test(v);
      });
      if (!headersOk || !queryOk) continue;
      if (!r.methods || r.methods.includes(req.method)) {
        return { kind: 'match', value: r.name, params: params || undefined };
      }
      for (const m of r.methods) allow.add(m);
    }
  }
  return allow.size > 0 ? { kind: 'method_not_allowed', allow: [...allow].sort() } : { kind: 'not_found' };
}

/** A small deterministic PRNG, so a failure reproduces. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('differential: compiled router against a naive reference', () => {
  const words = ['a', 'ab', 'b', 'abc', 'x'];
  const hosts = ['a.test', 'b.a.test', '*.a.test', '*.test', 'c.b.a.test'];

  function randomRoutes(rand: () => number, count: number): RefRoute[] {
    const pick = <V>(xs: readonly V[]): V => xs[Math.floor(rand() * xs.length)]!;
    const routes: RefRoute[] = [];
    for (let index = 0; index < count; index++) {
      const depth = 1 + Math.floor(rand() * 3);
      const segs: string[] = [];
      let params = 0;
      const kind = pick(['exact', 'prefix', 'template', 'template', 'regex', 'none']);
      for (let i = 0; i < depth; i++) {
        segs.push(kind === 'template' && rand() < 0.5 ? `:p${params++}` : pick(words));
      }
      const literal = `/${segs.join('/')}${rand() < 0.15 ? '/' : ''}`;
      const route: RefRoute = { name: `r${index}`, index };
      if (kind === 'exact') route.path = { exact: literal };
      else if (kind === 'prefix') route.path = { prefix: literal };
      else if (kind === 'template') route.path = { template: literal };
      else if (kind === 'regex') route.path = { regex: pick(['/a.*', '/[ab]+/x', '/b(/.*)?']) };
      if (rand() < 0.3) route.hosts = [pick(hosts)];
      if (rand() < 0.4) route.methods = rand() < 0.5 ? ['GET'] : ['POST', 'PUT'];
      if (rand() < 0.25) route.headers = [{ name: 'x-a', exact: pick(['1', '2']) }];
      if (rand() < 0.1) route.headers = [...(route.headers ?? []), { name: 'X-B', present: rand() < 0.5 }];
      if (rand() < 0.2) route.query = [{ name: 'q', regex: pick(['1', '[12]']) }];
      routes.push(route);
    }
    return routes;
  }

  function randomRequest(rand: () => number): RouterRequest {
    const pick = <V>(xs: readonly V[]): V => xs[Math.floor(rand() * xs.length)]!;
    const depth = 1 + Math.floor(rand() * 4);
    const segs: string[] = [];
    for (let i = 0; i < depth; i++) segs.push(rand() < 0.1 ? '' : pick(words));
    const headers: IncomingHttpHeaders = {};
    if (rand() < 0.5) headers['x-a'] = pick(['1', '2']);
    if (rand() < 0.3) headers['x-b'] = 'y';
    return {
      method: pick(['GET', 'POST', 'DELETE']),
      host: pick(['a.test', 'b.a.test', 'c.b.a.test', 'd.a.test', 'test', 'other.org']),
      path: `/${segs.join('/')}${rand() < 0.15 ? '/' : ''}`,
      query: pick(['', 'q=1', 'q=2', 'q=3&q=1', 'x=1']),
      headers,
    };
  }

  it('agrees on 300 random route tables × 100 requests', () => {
    const rand = prng(20251126);
    for (let t = 0; t < 300; t++) {
      const routes = randomRoutes(rand, 1 + Math.floor(rand() * 30));
      const router = build(routes);
      for (let i = 0; i < 100; i++) {
        const req = randomRequest(rand);
        const want = refMatch(routes, req);
        const got = router.match(req);
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          throw new Error(JSON.stringify({ routes, req, got, want }));
        }
      }
    }
  });
});
