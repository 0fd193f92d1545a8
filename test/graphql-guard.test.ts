/**
 * The `graphql` policy in front of a real GraphQL server (the `graphql` package's executor over node:http): what
 * passes reaches the server and gets its data; what is over a limit, asks for introspection or is not on the
 * allow-list gets a 4xx with a stable code naming the limit and the measured value, and never reaches the server.
 * Operation names reach the access log, and the metric only with bounded label values.
 */

import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import type { ConfigInput } from '../src/config/schema.js';
import { type GraphqlServer, startGraphqlServer } from './graphql-server.js';
import { closedAfterEach, type Problem, simpleConfig } from './helpers.js';
import { spawnGateway } from './process.js';

// biome-ignore lint/suspicious/noExplicitAny: JSON read field by field
type Json = any;
const t = closedAfterEach();
let gql: GraphqlServer;
beforeAll(async () => {
  gql = await startGraphqlServer();
});
afterAll(() => gql.close());

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

async function gateway(policy: Record<string, unknown>, extra: Partial<ConfigInput> = {}) {
  const config = {
    ...simpleConfig(gql.url, [{ name: 'graphql', backends: [{ service: 'svc' }], policies: ['gql'] }], extra),
    policies: [{ name: 'gql', type: 'graphql', ...policy }],
  } as ConfigInput;
  return t.gateway(config);
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, body: (await r.json()) as Json };
}

const deep = (n: number) => `{ users { ${'friends { '.repeat(n - 2)}name${' }'.repeat(n - 2)} } }`;

describe('limits', () => {
  test('a query within the limits reaches the server, by POST and by GET', async () => {
    const gw = await gateway({ maxDepth: 5 });
    const before = gql.seen.length;
    const r = await post(gw.url, {
      query: 'query One($id: ID!) { user(id: $id) { name } }',
      variables: { id: '1' },
    });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ data: { user: { name: 'Ada' } } });
    const q = encodeURIComponent('{ users(first: 2) { id } }');
    const g = await fetch(`${gw.url}/graphql?query=${q}`);
    expect(g.status).toBe(200);
    expect(await g.json()).toEqual({ data: { users: [{ id: '1' }, { id: '2' }] } });
    expect(gql.seen.length).toBe(before + 2);
  });

  test('too deep: 400 graphql_depth_exceeded naming the depth and the limit; the server never sees it', async () => {
    const gw = await gateway({ maxDepth: 4 });
    const before = gql.seen.length;
    expect((await post(gw.url, { query: deep(4) })).status).toBe(200);
    const r = await post(gw.url, { query: deep(6) });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toBe('application/problem+json');
    expect(r.headers.get('x-trellis-error')).toBe('graphql_depth_exceeded');
    expect((r.body as Problem).detail).toBe('policy gql: depth 6 exceeds maxDepth 4');
    // Depth through fragments counts where the fragment is spread.
    const viaFragment = await post(gw.url, {
      query: '{ users { ...F } } fragment F on User { friends { friends { friends { name } } } }',
    });
    expect(viaFragment.body.detail).toBe('policy gql: depth 5 exceeds maxDepth 4');
    expect(gql.seen.length).toBe(before + 1);
  });

  test('too many aliases: 400 graphql_aliases_exceeded', async () => {
    const gw = await gateway({ maxAliases: 3 });
    const aliases = (n: number) =>
      `{ ${Array.from({ length: n }, (_, i) => `u${i}: user(id: "1") { name }`).join(' ')} }`;
    expect((await post(gw.url, { query: aliases(3) })).status).toBe(200);
    const r = await post(gw.url, { query: aliases(20) });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({
      code: 'graphql_aliases_exceeded',
      detail: 'policy gql: 20 aliases exceed maxAliases 3',
    });
  });

  test('too expensive: list sizes from arguments and variables count; 400 graphql_cost_exceeded', async () => {
    const gw = await gateway({ maxCost: 100 });
    // 3 × (1 + 1 + 3 × (1 + 1)) = 24
    const ok = await post(gw.url, { query: '{ users(first: 3) { id friends(first: 3) { name } } }' });
    expect(ok.status).toBe(200);
    const big = await post(gw.url, { query: '{ users(first: 50) { id friends(first: 50) { name } } }' });
    expect(big.status).toBe(400);
    expect(big.body).toMatchObject({
      code: 'graphql_cost_exceeded',
      detail: 'policy gql: cost 5100 exceeds maxCost 100',
    });
    // The same document with a size in a variable: measured with the request's variables each time.
    const query = 'query Page($n: Int) { users(first: $n) { id name } }';
    expect((await post(gw.url, { query, variables: { n: 2 } })).status).toBe(200);
    const v = await post(gw.url, { query, variables: { n: 1000 } });
    expect(v.body).toMatchObject({
      code: 'graphql_cost_exceeded',
      detail: 'policy gql: cost 3000 exceeds maxCost 100',
    });
    expect((await post(gw.url, { query, variables: { n: 2 } })).status).toBe(200);
  });

  test('size, tokens, body and batch limits: 400 graphql_query_too_large', async () => {
    const gw = await gateway({ maxTokens: 50, maxQueryBytes: 2000, maxBodyBytes: 4096 });
    const manyTokens = `{ ${'a '.repeat(100)} }`;
    const r = await post(gw.url, { query: manyTokens });
    expect(r.body).toMatchObject({
      code: 'graphql_query_too_large',
      detail: 'policy gql: query has more than maxTokens 50 tokens',
    });
    const big = await post(gw.url, { query: `{ users { name } } # ${'x'.repeat(3000)}` });
    expect(big.body.detail).toMatch(/^policy gql: query of 30\d\d bytes exceeds maxQueryBytes 2000$/);
    const huge = await post(gw.url, { query: '{ users { name } }', variables: { pad: 'y'.repeat(10_000) } });
    expect(huge.status).toBe(400);
    expect(huge.body.detail).toBe('policy gql: body exceeds maxBodyBytes 4096');
    const batch = await post(gw.url, [{ query: '{ users { id } }' }, { query: '{ users { id } }' }]);
    expect(batch.body.detail).toBe('policy gql: batch of 2 operations exceeds maxBatchSize 1');
  });

  test('a batch within maxBatchSize passes; each entry is checked and the cost is summed', async () => {
    const gw = await gateway({ maxBatchSize: 3, maxCost: 10, maxDepth: 2 });
    const ok = await post(gw.url, [
      { query: '{ users(first: 2) { id } }' },
      { query: '{ user(id: "2") { name } }' },
    ]);
    expect(ok.status).toBe(200);
    expect(ok.body).toHaveLength(2);
    const deepOne = await post(gw.url, [{ query: '{ users { id } }' }, { query: deep(3) }]);
    expect(deepOne.body).toMatchObject({
      code: 'graphql_depth_exceeded',
      detail: 'policy gql: batch entry 1: depth 3 exceeds maxDepth 2',
    });
    const q = '{ users(first: 3) { id } }'; // 6 each
    expect((await post(gw.url, [{ query: q }, { query: q }])).body.detail).toBe(
      'policy gql: batch cost 12 exceeds maxCost 10',
    );
  });

  test('introspection: 403 graphql_introspection_denied by default, allowed when on', async () => {
    const q = '{ __schema { queryType { name } } }';
    const gw = await gateway({});
    const r = await post(gw.url, { query: q });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('graphql_introspection_denied');
    const typename = await post(gw.url, { query: '{ users(first: 1) { __typename } }' });
    expect(typename.status).toBe(200);
    const open = await gateway({ introspection: true });
    const ok = await post(open.url, { query: q });
    expect(ok.status).toBe(200);
    expect(ok.body.data.__schema.queryType.name).toBe('Query');
  });

  test('not a GraphQL request: 400 graphql_request_invalid with the reason', async () => {
    const gw = await gateway({});
    const cases: [unknown, string | RegExp][] = [
      ['{not json', 'policy gql: the body is not valid JSON'],
      [
        { query: '{ users { ' },
        /^policy gql: Syntax Error: Expected Name, found <EOF>\. \(line 1, column 11\)$/,
      ],
      [{ query: 42 }, 'policy gql: query must be a string'],
      [{ variables: {} }, 'policy gql: no query in the request'],
      [
        { query: 'query A { a } query B { b }' },
        'policy gql: the document has several operations: operationName must name one',
      ],
      [
        { query: '{ ...A } fragment A on Query { ...A }' },
        'policy gql: fragment "A" spreads itself (a cycle)',
      ],
    ];
    for (const [body, detail] of cases) {
      const r = await post(gw.url, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.code).toBe('graphql_request_invalid');
      if (typeof detail === 'string') expect(r.body.detail).toBe(detail);
      else expect(r.body.detail).toMatch(detail);
    }
    const form = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      body: 'query=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.status).toBe(400);
    const mutation = await fetch(
      `${gw.url}/graphql?query=${encodeURIComponent('mutation { createUser(input: { name: "x" }) { id } }')}`,
    );
    expect(mutation.status).toBe(400);
    expect(((await mutation.json()) as Problem).detail).toBe(
      'policy gql: a mutation cannot be sent with GET (use POST)',
    );
    const put = await fetch(`${gw.url}/graphql`, { method: 'PUT', body: '{}' });
    expect(((await put.json()) as Problem).detail).toBe(
      'policy gql: PUT is not a GraphQL request (GET or POST)',
    );
  });
});

describe('persisted queries', () => {
  const listed = 'query ListUsers { users(first: 2) { name } }';

  test('allow-list: a listed document passes, by text or by its hash; others get 403', async () => {
    const gw = await gateway({ persistedQueries: { mode: 'allow-list', documents: [listed] } });
    const hash = sha(listed);
    const pq = { persistedQuery: { version: 1, sha256Hash: hash } };
    expect((await post(gw.url, { query: listed })).body).toEqual({
      data: { users: [{ name: 'Ada' }, { name: 'Grace' }] },
    });
    // APQ: the full request registers it with the server, then the hash alone runs it.
    expect((await post(gw.url, { query: listed, extensions: pq })).status).toBe(200);
    const byHash = await post(gw.url, { extensions: pq });
    expect(byHash.body).toEqual({ data: { users: [{ name: 'Ada' }, { name: 'Grace' }] } });

    const other = await post(gw.url, { query: '{ users { name } }' });
    expect(other.status).toBe(403);
    expect(other.body.code).toBe('graphql_persisted_query_not_allowed');
    const unknownHash = await post(gw.url, {
      extensions: { persistedQuery: { version: 1, sha256Hash: sha('x') } },
    });
    expect(unknownHash.status).toBe(403);
    expect(unknownHash.body.detail).toBe(`policy gql: persisted query ${sha('x')} is not on the allow-list`);
    const lying = await post(gw.url, { query: '{ users { name } }', extensions: pq });
    expect(lying.status).toBe(400);
    expect(lying.body.detail).toBe(
      'policy gql: extensions.persistedQuery.sha256Hash is not the SHA-256 of the query',
    );
  });

  test("an Apollo manifest file, and a manifest whose id is not its body's hash is a config error", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-pq-'));
    const good = join(dir, 'manifest.json');
    writeFileSync(
      good,
      JSON.stringify({
        format: 'apollo-persisted-query-manifest',
        version: 1,
        operations: [{ id: sha(listed), name: 'ListUsers', type: 'query', body: listed }],
      }),
    );
    const gw = await gateway({ persistedQueries: { mode: 'allow-list', manifest: good } });
    expect((await post(gw.url, { query: listed })).status).toBe(200);
    expect((await post(gw.url, { query: '{ users { id } }' })).status).toBe(403);

    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ [sha('other')]: listed }));
    const errors = configErrorsOf({ mode: 'allow-list', manifest: bad });
    expect(errors).toEqual([
      {
        path: 'policies[0].persistedQueries.manifest',
        message: expect.stringMatching(/is not the SHA-256 of its text/),
      },
    ]);
  });

  test('a manifest path is relative to the config file, from whichever folder the gateway runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-pq-rel-'));
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ [sha(listed)]: listed }));
    const r = loadConfigText(
      JSON.stringify({
        listeners: [{ name: 'public', port: 0 }],
        services: [{ name: 'svc', endpoints: ['http://127.0.0.1:1'] }],
        routes: [{ name: 'graphql', backends: [{ service: 'svc' }], policies: ['gql'] }],
        policies: [
          {
            name: 'gql',
            type: 'graphql',
            persistedQueries: { mode: 'allow-list', manifest: 'manifest.json' },
          },
        ],
      }),
      join(dir, 'trellis.json'),
    );
    expect(r.ok ? [] : r.errors.map((e) => e.message)).toEqual([]);
    const policy = r.ok
      ? (r.config.policies[0] as unknown as { persistedQueries: { manifest: string } })
      : undefined;
    expect(policy?.persistedQueries.manifest).toBe(join(dir, 'manifest.json'));
  });

  test('a document of the allow-list with a syntax error is a config error with its position', () => {
    expect(configErrorsOf({ mode: 'allow-list', documents: ['{ ok }', 'query { users { }'] })).toEqual([
      {
        path: 'policies[0].persistedQueries.documents[1]',
        message: 'documents[1]: Syntax Error: Expected Name, found "}". (line 1, column 17)',
      },
    ]);
    expect(configErrorsOf({ mode: 'allow-list' })).toEqual([
      {
        path: 'policies[0].persistedQueries',
        message: 'mode allow-list needs a manifest, documents or hashes',
      },
    ]);
  });

  test('off: a hash-only request goes to the server, which resolves it (APQ)', async () => {
    const gw = await gateway({});
    const q = '{ user(id: "3") { name } }';
    const pq = { persistedQuery: { version: 1, sha256Hash: sha(q) } };
    expect((await post(gw.url, { extensions: pq })).body.errors[0].message).toBe('PersistedQueryNotFound');
    expect((await post(gw.url, { query: q, extensions: pq })).status).toBe(200);
    expect((await post(gw.url, { extensions: pq })).body).toEqual({ data: { user: { name: 'Linus' } } });
  });
});

function configErrorsOf(persistedQueries: Record<string, unknown>) {
  const r = loadConfigText(
    JSON.stringify({
      listeners: [{ name: 'public', port: 0 }],
      services: [{ name: 'svc', endpoints: ['http://127.0.0.1:1'] }],
      routes: [{ name: 'graphql', backends: [{ service: 'svc' }], policies: ['gql'] }],
      policies: [{ name: 'gql', type: 'graphql', persistedQueries }],
    }),
    'test.json',
  );
  return r.ok ? [] : r.errors.map((e) => ({ path: e.path, message: e.message }));
}

describe('observability', () => {
  test('operation names reach the access log; metric labels stay bounded', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'trellis-gql-log-')), 'access.log');
    // Its own route and policy names: the counters are the process's, shared with the other tests.
    const gw = await t.gateway({
      ...simpleConfig(gql.url, [{ name: 'observed', backends: [{ service: 'svc' }], policies: ['watch'] }], {
        accessLog: { output: file },
      }),
      policies: [{ name: 'watch', type: 'graphql', maxDepth: 4, metricOperations: ['GetUser'] }],
    } as ConfigInput);
    await post(gw.url, { query: 'query GetUser { user(id: "1") { name } }' });
    await post(gw.url, { query: `query Deep ${deep(6).slice(0)}` });
    // Fifty names a client made up: one `other` series, not fifty.
    for (let i = 0; i < 50; i++) await post(gw.url, { query: `query Random${i} { users(first: 1) { id } }` });
    await post(gw.url, { query: '{ users(first: 1) { id } }' });
    const text = await gw.gateway.metrics!.registry.metrics();
    const lines = text
      .split('\n')
      .filter((l) => l.startsWith('trellis_graphql_operations_total{trellis_route="observed"'));
    expect(lines).toEqual(
      expect.arrayContaining([
        'trellis_graphql_operations_total{trellis_route="observed",trellis_policy="watch",graphql_operation="GetUser",graphql_operation_type="query",result="allowed"} 1',
        'trellis_graphql_operations_total{trellis_route="observed",trellis_policy="watch",graphql_operation="other",graphql_operation_type="query",result="graphql_depth_exceeded"} 1',
        'trellis_graphql_operations_total{trellis_route="observed",trellis_policy="watch",graphql_operation="other",graphql_operation_type="query",result="allowed"} 50',
        'trellis_graphql_operations_total{trellis_route="observed",trellis_policy="watch",graphql_operation="anonymous",graphql_operation_type="query",result="allowed"} 1',
      ]),
    );
    expect(text).not.toContain('Random');
    await gw.close();
    const log = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(log[0]).toMatchObject({ operation: 'GetUser', status: 200, decisions: { watch: 'allow' } });
    expect(log[1]).toMatchObject({
      operation: 'Deep',
      status: 400,
      code: 'graphql_depth_exceeded',
      decisions: { watch: 'deny' },
    });
    expect(log[2]).toMatchObject({ operation: 'Random0' });
    expect(log[52].operation).toBeUndefined();
  });

  test('shadow mode: a refused operation goes through and is recorded as shadow_deny', async () => {
    const config = {
      ...simpleConfig(gql.url, [{ name: 'graphql', backends: [{ service: 'svc' }], policies: ['gql'] }]),
      policies: [{ name: 'gql', type: 'graphql', maxDepth: 2, shadow: true }],
    } as ConfigInput;
    const gw = await t.gateway(config);
    const r = await post(gw.url, { query: deep(4) });
    expect(r.status).toBe(200);
    expect(r.body.data.users[0].friends[0].friends[0].name).toBeTypeOf('string');
    const text = await gw.gateway.metrics!.registry.metrics();
    expect(text).toContain(
      'trellis_policy_decisions_total{trellis_route="graphql",trellis_policy="gql",trellis_policy_type="graphql",decision="shadow_deny"} 1',
    );
  });
});

describe('built gateway', () => {
  test('trellis gateway with a graphql policy in YAML: limits enforced, metric at /metrics', async () => {
    const gw = await spawnGateway(
      `
listeners:
  - name: public
    port: {{PORT}}
admin:
  port: {{ADMIN_PORT}}
services:
  - name: graphql
    endpoints: ["{{UPSTREAM}}"]
policies:
  - name: guard
    type: graphql
    maxDepth: 3
    maxCost: 50
    metricOperations: [GetUser]
routes:
  - name: graphql
    match: { path: { exact: /graphql } }
    policies: [guard]
    backends: [{ service: graphql }]
`,
      { upstream: gql.url },
    );
    t.cleanup.push(async () => {
      gw.kill();
      await gw.exited;
    });
    await gw.waitReady();
    const ok = await post(gw.url, { query: 'query GetUser { user(id: "2") { name } }' });
    expect(ok.body).toEqual({ data: { user: { name: 'Grace' } } });
    const costly = await post(gw.url, { query: '{ users(first: 100) { id } }' });
    expect(costly.status).toBe(400);
    expect(costly.body.code).toBe('graphql_cost_exceeded');
    const metrics = await (await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`)).text();
    expect(metrics).toMatch(
      /trellis_graphql_operations_total\{[^}]*graphql_operation="GetUser"[^}]*result="allowed"\} 1/,
    );
    expect(metrics).toMatch(
      /graphql_operation="anonymous",graphql_operation_type="query",result="graphql_cost_exceeded"\} 1/,
    );
  }, 30_000);
});
