/**
 * REST → GraphQL (`translate: { type: graphql }`) against a real GraphQL server: REST endpoints run named
 * operations with variables from the path, the query string and the body, converted to the declared types; the
 * client gets the selected data, or problem+json mapped from the GraphQL errors.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import type { ConfigInput } from '../src/config/schema.js';
import { type GraphqlServer, startGraphqlServer } from './graphql-server.js';
import { closedAfterEach } from './helpers.js';

// biome-ignore lint/suspicious/noExplicitAny: JSON read field by field
type Json = any;
const t = closedAfterEach();
let gql: GraphqlServer;
beforeAll(async () => {
  gql = await startGraphqlServer();
});
afterAll(() => gql.close());

const GET_USER = 'query GetUser($id: ID!) { user(id: $id) { id name age } }';

function routes(): ConfigInput['routes'] {
  const route = (name: string, match: Record<string, unknown>, translate: Record<string, unknown>) => ({
    name,
    match,
    backends: [{ service: 'graphql' }],
    translate: { type: 'graphql', ...translate },
  });
  return [
    route(
      'get-user',
      { path: { template: '/users/:id' }, methods: ['GET'] },
      { query: GET_USER, select: 'data.user' },
    ),
    route(
      'list-users',
      { path: { exact: '/users' }, methods: ['GET'] },
      {
        query:
          'query ListUsers($first: Int = 10, $active: Boolean) { users(first: $first, active: $active) { id name } }',
        select: 'data.users',
      },
    ),
    route(
      'create-user',
      { path: { exact: '/users' }, methods: ['POST'] },
      {
        query: `
          query GetUser($id: ID!) { user(id: $id) { name } }
          mutation CreateUser($input: NewUser!) { createUser(input: $input) { id name age } }`,
        operationName: 'CreateUser',
        variables: { input: 'body' },
        select: 'data.createUser',
        status: 201,
      },
    ),
    route('secret', { path: { exact: '/secret' } }, { query: '{ secret }', select: 'data.secret' }),
    route('boom', { path: { exact: '/boom' } }, { query: '{ boom }', select: 'data.boom' }),
    route('not-graphql', { path: { exact: '/html' } }, { query: '{ users { id } }', path: '/not-json' }),
    route(
      'friends',
      { path: { template: '/users/:id/friends' } },
      {
        query: 'query Friends($who: ID!, $n: Int!) { user(id: $who) { friends(first: $n) { name } } }',
        variables: { who: 'path.id', n: 'query.limit' },
        select: 'data.user.friends',
      },
    ),
  ];
}

async function gateway(extra: Partial<ConfigInput> = {}) {
  return t.gateway({
    listeners: [{ name: 'public', port: 0 }],
    admin: { enabled: false },
    services: [{ name: 'graphql', endpoints: [gql.url] }],
    routes: routes(),
    ...extra,
  } as ConfigInput);
}

async function call(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: Json }> {
  const r = await fetch(url, init);
  return { status: r.status, headers: r.headers, body: await r.json() };
}

describe('REST → GraphQL', () => {
  test('a path parameter becomes the variable; the selection is the reply', async () => {
    const gw = await gateway();
    const r = await call(`${gw.url}/users/2`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(r.body).toEqual({ id: '2', name: 'Grace', age: 45 });
    const seen = gql.seen.at(-1)!;
    expect(seen).toMatchObject({
      method: 'POST',
      url: '/graphql',
      query: GET_USER,
      operationName: 'GetUser',
      variables: { id: '2' },
    });
    expect(seen.headers['content-type']).toBe('application/json');
  });

  test('query-string values are converted to the declared types; a default applies when absent', async () => {
    const gw = await gateway();
    const r = await call(`${gw.url}/users?first=2&active=true`);
    expect(r.body).toEqual([
      { id: '1', name: 'Ada' },
      { id: '2', name: 'Grace' },
    ]);
    expect(gql.seen.at(-1)!.variables).toEqual({ first: 2, active: true });
    const all = await call(`${gw.url}/users`);
    expect(all.body).toHaveLength(3);
    expect(gql.seen.at(-1)!.variables).toEqual({});
  });

  test('a value that does not convert, or a required one missing: 400 graphql_variable_invalid naming it', async () => {
    const gw = await gateway();
    const before = gql.seen.length;
    const r = await call(`${gw.url}/users?first=abc`);
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({
      code: 'graphql_variable_invalid',
      detail: 'variable first: expected Int (a 32-bit integer), got "abc"',
    });
    const b = await call(`${gw.url}/users?active=yes`);
    expect(b.body.detail).toBe('variable active: expected Boolean (true or false), got "yes"');
    const missing = await call(`${gw.url}/users/1/friends`);
    expect(missing.status).toBe(400);
    expect(missing.body.detail).toBe('variable n (Int!) is required: no query parameter "limit"');
    expect(gql.seen.length).toBe(before);
  });

  test('explicit sources: path.id and query.limit', async () => {
    const gw = await gateway();
    const r = await call(`${gw.url}/users/1/friends?limit=1`);
    expect(r.body).toEqual([{ name: 'Grace' }]);
    expect(gql.seen.at(-1)!.variables).toEqual({ who: '1', n: 1 });
  });

  test('the JSON body as an input object; a named operation of several; status 201', async () => {
    const gw = await gateway();
    const r = await call(`${gw.url}/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Barbara', age: 52 }),
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: 'Barbara', age: 52 });
    expect(gql.seen.at(-1)).toMatchObject({
      operationName: 'CreateUser',
      variables: { input: { name: 'Barbara', age: 52 } },
    });
    const bad = await call(`${gw.url}/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{oops',
    });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({
      code: 'graphql_variable_invalid',
      detail: 'the body is not valid JSON',
    });
    const none = await call(`${gw.url}/users`, { method: 'POST' });
    expect(none.body.detail).toBe('variable input (NewUser!) is required: no JSON body');
  });

  test('null selection and NOT_FOUND errors: 404 graphql_not_found', async () => {
    const gw = await gateway();
    const nul = await call(`${gw.url}/users/99`);
    expect(nul.status).toBe(404);
    expect(nul.headers.get('content-type')).toBe('application/problem+json');
    expect(nul.body).toMatchObject({ code: 'graphql_not_found', detail: 'data.user is null' });
    const nf = await call(`${gw.url}/users/missing`);
    expect(nf.status).toBe(404);
    expect(nf.body).toMatchObject({ code: 'graphql_not_found', detail: 'user missing not found' });
  });

  test('errors map to statuses by extensions.code; a non-GraphQL reply is 502 graphql_upstream_invalid', async () => {
    const gw = await gateway();
    const forbidden = await call(`${gw.url}/secret`);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toMatchObject({ code: 'graphql_operation_failed', detail: 'not allowed' });
    const boom = await call(`${gw.url}/boom`);
    expect(boom.status).toBe(502);
    expect(boom.body).toMatchObject({ code: 'graphql_operation_failed', detail: 'resolver failed' });
    const html = await call(`${gw.url}/html`);
    expect(html.status).toBe(502);
    expect(html.body).toMatchObject({
      code: 'graphql_upstream_invalid',
      detail: 'the upstream answered 200 without a JSON body',
    });
  });

  test('partial data: the selection with x-trellis-graphql-errors', async () => {
    const gw = await t.gateway({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      services: [{ name: 'graphql', endpoints: [gql.url] }],
      routes: [
        {
          name: 'partial',
          backends: [{ service: 'graphql' }],
          translate: { type: 'graphql', query: '{ users(first: 1) { name } boom }' },
        },
      ],
    } as ConfigInput);
    const r = await call(`${gw.url}/anything`);
    expect(r.status).toBe(200);
    expect(r.headers.get('x-trellis-graphql-errors')).toBe('1');
    expect(r.body).toEqual({ users: [{ name: 'Ada' }], boom: null });
  });

  test('the operation name is in the access log; a route timeout covers the whole reply', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'trellis-gqlt-')), 'access.log');
    const gw = await t.gateway({
      listeners: [{ name: 'public', port: 0 }],
      admin: { enabled: false },
      services: [{ name: 'graphql', endpoints: [gql.url] }],
      accessLog: { output: file },
      routes: [
        ...routes()!,
        {
          name: 'slow',
          match: { path: { exact: '/slow' } },
          timeouts: { request: '300ms' },
          backends: [{ service: 'graphql' }],
          translate: { type: 'graphql', query: '{ slow: users { id } }', path: '/slow' },
        },
      ],
    } as ConfigInput);
    await call(`${gw.url}/users/1`);
    const slow = await call(`${gw.url}/slow`);
    expect(slow.status).toBe(504);
    expect(slow.body.code).toBe('upstream_timeout');
    await gw.close();
    const log = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(log[0]).toMatchObject({
      route: 'get-user',
      operation: 'GetUser',
      status: 200,
      outcome: 'success',
    });
  });
});

describe('config', () => {
  function errors(translate: Record<string, unknown>) {
    const r = loadConfigText(
      JSON.stringify({
        listeners: [{ name: 'public', port: 0 }],
        services: [{ name: 'graphql', endpoints: ['http://127.0.0.1:1'] }],
        routes: [
          { name: 'r', backends: [{ service: 'graphql' }], translate: { type: 'graphql', ...translate } },
        ],
      }),
      'test.json',
    );
    return r.ok ? [] : r.errors.map((e) => ({ path: e.path, message: e.message }));
  }

  test('a syntax error in the document is a config error with its position', () => {
    expect(errors({ query: 'query GetUser($id: ID!) {\n  user(id: $id) { name \n}' })).toEqual([
      {
        path: 'routes[0].translate.query',
        message: 'Syntax Error: Expected Name, found <EOF>. (line 3, column 2)',
      },
    ]);
  });

  test('unknown operation names, undeclared variables and bad sources are config errors', () => {
    expect(errors({ query: GET_USER, operationName: 'Nope' })).toEqual([
      {
        path: 'routes[0].translate.operationName',
        message: 'no operation "Nope" in the document; it has: GetUser',
      },
    ]);
    expect(errors({ query: GET_USER, variables: { uid: 'path.id' } })).toEqual([
      {
        path: 'routes[0].translate.variables.uid',
        message: 'the operation declares no variable $uid (it has: $id)',
      },
    ]);
    expect(errors({ query: GET_USER, variables: { id: 'header.x' } })).toEqual([
      {
        path: 'routes[0].translate.variables.id',
        message: 'expected "path.NAME", "query.NAME", "body.NAME" or "body", got "header.x"',
      },
    ]);
    expect(errors({ query: 'query A { a } query B { b }' })[0]).toMatchObject({
      path: 'routes[0].translate.operationName',
    });
    expect(errors({})[0]!.message).toMatch(/exactly one of `query`/);
  });
});
