import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import type { ConfigInput } from '../src/config/schema.js';
import { closedAfterEach, type Problem } from './helpers.js';
import { ROOT } from './process.js';

const t = closedAfterEach();
const PETSTORE = join(ROOT, 'test/fixtures/openapi/petstore-3.0.yaml');
const INVENTORY = join(ROOT, 'test/fixtures/openapi/inventory-3.1.json');

interface Invalid extends Problem {
  errors: { pointer: string; message: string }[];
}

/** An upstream that records what reached it. */
async function recorder() {
  const seen: { method: string; url: string; body: string }[] = [];
  const up = await t.upstream((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  return { up, seen };
}

async function gateway(document: string, policy: Record<string, unknown> = {}) {
  const { up, seen } = await recorder();
  const gw = await t.gateway({
    listeners: [{ name: 'public', port: 0 }],
    admin: { enabled: false },
    services: [{ name: 'svc', endpoints: [up.url] }],
    policies: [{ name: 'contract', type: 'openapi', document, ...policy }],
    routes: [{ name: 'all', policies: ['contract'], backends: [{ service: 'svc' }] }],
  } as ConfigInput);
  return { gw, seen };
}

async function send(url: string, init: RequestInit = {}) {
  const r = await fetch(url, init);
  const text = await r.text();
  return { r, body: JSON.parse(text) as Invalid };
}

const json = (body: unknown, headers: Record<string, string> = {}) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

describe('openapi policy (OpenAPI 3.0 petstore)', () => {
  test('valid requests reach the upstream unchanged', async () => {
    const { gw, seen } = await gateway(PETSTORE);
    let x = await send(`${gw.url}/v1/pets?limit=10&status=sold&tags=a,b`);
    expect(x.r.status).toBe(200);
    x = await send(`${gw.url}/v1/pets/42`);
    expect(x.r.status).toBe(200);
    x = await send(`${gw.url}/v1/pets/mine`);
    expect(x.r.status).toBe(200);
    const pet = { name: 'Rex', tag: null, weightKg: 12.5, birthDate: '2020-02-29' };
    x = await send(`${gw.url}/v1/pets`, json(pet, { 'x-request-tag': 'abc-1' }));
    expect(x.r.status).toBe(200);
    // A readOnly property is not required in a request.
    x = await send(`${gw.url}/v1/pets/7`, { ...json({ name: 'Rex' }), method: 'PUT' });
    expect(x.r.status).toBe(200);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      'GET /v1/pets?limit=10&status=sold&tags=a,b',
      'GET /v1/pets/42',
      'GET /v1/pets/mine',
      'POST /v1/pets',
      'PUT /v1/pets/7',
    ]);
    expect(JSON.parse(seen[3]!.body)).toEqual(pet);
  });

  test('every violation is listed with a JSON pointer, and the upstream never sees the request', async () => {
    const { gw, seen } = await gateway(PETSTORE);
    const x = await send(
      `${gw.url}/v1/pets`,
      json({ tag: 5, weightKg: 0, birthDate: '2020-02-30', extra: true }, { 'x-request-tag': 'NO!' }),
    );
    expect(x.r.status).toBe(400);
    expect(x.r.headers.get('content-type')).toBe('application/problem+json');
    expect(x.r.headers.get('x-trellis-error')).toBe('openapi_request_invalid');
    expect(x.body.code).toBe('openapi_request_invalid');
    expect(x.body.errors).toEqual(
      expect.arrayContaining([
        { pointer: '/header/x-request-tag', message: 'must match pattern "^[a-z0-9-]{3,32}$"' },
        { pointer: '/body/name', message: 'is required' },
        { pointer: '/body/extra', message: 'is not allowed here' },
        { pointer: '/body/tag', message: 'must be string,null' },
        { pointer: '/body/birthDate', message: 'must match format "date"' },
        { pointer: '/body/weightKg', message: 'must be > 0' },
      ]),
    );
    expect(x.body.errors).toHaveLength(6);
    expect(x.body.detail).toMatch(/^policy contract: 6 violations: /);
    expect(seen).toEqual([]);
  });

  test('path and query parameters are checked against their schemas', async () => {
    const { gw, seen } = await gateway(PETSTORE);
    let x = await send(`${gw.url}/v1/pets?limit=1000&status=lost&tags=a,b,c,d,e,f`);
    expect(x.r.status).toBe(400);
    expect(x.body.errors).toEqual([
      { pointer: '/query/limit', message: 'must be <= 100' },
      { pointer: '/query/status', message: 'must be one of "available", "pending", "sold"' },
      { pointer: '/query/tags', message: 'must NOT have more than 5 items' },
    ]);
    x = await send(`${gw.url}/v1/pets/abc`);
    expect(x.body.errors).toEqual([{ pointer: '/path/petId', message: 'must be integer' }]);
    x = await send(`${gw.url}/v1/stores/not-a-uuid/orders`, json({ petId: 1, quantity: 11, status: null }));
    expect(x.body.errors).toEqual([
      { pointer: '/path/storeId', message: 'must match format "uuid"' },
      { pointer: '/body/quantity', message: 'must be <= 10' },
    ]);
    expect(seen).toEqual([]);
  });

  test('bodies: required, content type, JSON syntax, size bound', async () => {
    const { gw, seen } = await gateway(PETSTORE, { maxBodyBytes: 256 });
    let x = await send(`${gw.url}/v1/pets`, { method: 'POST', headers: { 'x-request-tag': 'abc' } });
    expect(x.body.errors).toEqual([{ pointer: '/body', message: 'a request body is required' }]);
    x = await send(`${gw.url}/v1/pets`, {
      method: 'POST',
      headers: { 'x-request-tag': 'abc', 'content-type': 'text/plain' },
      body: 'Rex',
    });
    expect(x.body.errors).toEqual([
      { pointer: '/header/content-type', message: 'text/plain is not accepted; expected application/json' },
    ]);
    x = await send(`${gw.url}/v1/pets`, {
      method: 'POST',
      headers: { 'x-request-tag': 'abc', 'content-type': 'application/json' },
      body: '{"name": "Rex",',
    });
    expect(x.body.errors[0]!.pointer).toBe('/body');
    expect(x.body.errors[0]!.message).toMatch(/^is not valid JSON: /);
    x = await send(
      `${gw.url}/v1/pets`,
      json({ name: 'R', tags: Array(100).fill('xxxx') }, { 'x-request-tag': 'abc' }),
    );
    expect(x.body.errors).toEqual([
      { pointer: '/body', message: 'is larger than 256 bytes, the most this policy validates' },
    ]);
    // A form body is checked for its content type only.
    x = await send(`${gw.url}/v1/pets/3`, {
      method: 'PUT',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'name=Rex',
    });
    expect(x.r.status).toBe(200);
    expect(seen.map((s) => s.body)).toEqual(['name=Rex']);
  });

  test('unknown operations: 404 by default, or let through', async () => {
    const { gw } = await gateway(PETSTORE);
    let x = await send(`${gw.url}/v1/owners`);
    expect(x.r.status).toBe(404);
    expect(x.body.code).toBe('openapi_operation_not_found');
    x = await send(`${gw.url}/v1/pets/3`, { method: 'PATCH' });
    expect(x.body.detail).toBe(
      `policy contract: ${PETSTORE} has no PATCH operation for /pets/3 (it has GET, PUT, DELETE)`,
    );
    const open = await gateway(PETSTORE, { unknownOperations: 'allow' });
    x = await send(`${open.gw.url}/v1/owners`);
    expect(x.r.status).toBe(200);
  });
});

describe('openapi policy (OpenAPI 3.1, JSON Schema 2020-12)', () => {
  test('2020-12 keywords, type arrays, deepObject and +json media types', async () => {
    const { gw, seen } = await gateway(INVENTORY);
    const item = {
      sku: 'ABC-1234',
      name: 'Bolt',
      description: null,
      price: { amount: '0.25', currency: 'EUR' },
      dimensions: [1, 2],
      parts: [{ sku: 'DEF-0001', name: 'Nut', price: { amount: '0.10', currency: 'EUR' } }],
    };
    let x = await send(`${gw.url}/inventory/items`, json(item));
    expect(x.r.status).toBe(200);
    x = await send(
      `${gw.url}/inventory/items`,
      json({
        ...item,
        price: { amount: '1', currency: 'USD' },
        dimensions: [1, 2, 3],
        color: 'red',
        parts: [{ sku: 'x' }],
      }),
    );
    expect(x.r.status).toBe(400);
    expect(x.body.errors).toEqual([
      { pointer: '/body/price/currency', message: 'must be "EUR"' },
      { pointer: '/body/dimensions', message: 'must NOT have more than 2 items' },
      { pointer: '/body/parts/0/name', message: 'is required' },
      { pointer: '/body/parts/0/price', message: 'is required' },
      { pointer: '/body/parts/0/sku', message: 'must match pattern "^[A-Z]{3}-[0-9]{4}$"' },
      { pointer: '/body/color', message: 'is not allowed here' },
    ]);
    x = await send(`${gw.url}/inventory/items?q=bo&inStock=true&filter[minPrice]=3`);
    expect(x.r.status).toBe(200);
    x = await send(`${gw.url}/inventory/items?inStock=maybe&filter[minPrice]=-1`);
    expect(x.body.errors).toEqual([
      { pointer: '/query/q', message: 'is required' },
      { pointer: '/query/inStock', message: 'must be boolean' },
      { pointer: '/query/filter/minPrice', message: 'must be >= 0' },
    ]);
    x = await send(`${gw.url}/inventory/items/ABC-1234`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/merge-patch+json' },
      body: '{}',
    });
    expect(x.body.errors).toEqual([{ pointer: '/body', message: 'must NOT have fewer than 1 properties' }]);
    expect(seen).toHaveLength(2);
  });
});

describe('openapi policy in the config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-openapi-'));
  const config = (document: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      listeners: [{ name: 'l', port: 0 }],
      services: [{ name: 'svc', endpoints: ['http://127.0.0.1:1'] }],
      policies: [{ name: 'contract', type: 'openapi', document, ...extra }],
      routes: [{ name: 'r', policies: ['contract'], backends: [{ service: 'svc' }] }],
    });
  const errors = (text: string) => {
    const r = loadConfigText(text, join(dir, 'trellis.json'));
    return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
  };

  test('a document relative to the config file loads; operations are checked by id', () => {
    writeFileSync(join(dir, 'petstore.yaml'), readFileSync(PETSTORE));
    expect(errors(config('petstore.yaml', { operations: ['listPets', 'showPetById'] }))).toEqual([]);
    expect(errors(config('petstore.yaml', { operations: ['listPet'] }))).toEqual([
      expect.stringMatching(
        /^policies\[0\]\.operations\[0\]: petstore\.yaml has no operation "listPet"; it has listPets, /,
      ),
    ]);
  });

  test('a broken document is a config error naming the file and the place in it', () => {
    const bad = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return errors(config(name));
    };
    expect(errors(config('missing.yaml'))).toEqual([
      `policies[0].document: ${join(dir, 'missing.yaml')}: cannot read the document (ENOENT)`,
    ]);
    expect(bad('swagger.yaml', 'swagger: "2.0"\ninfo: {title: x, version: "1"}\npaths: {}\n')).toEqual([
      'policies[0].document: swagger.yaml at swagger: Swagger 2.0 is not supported; convert the document to OpenAPI 3 first',
    ]);
    expect(
      bad(
        'param.yaml',
        'openapi: 3.0.3\ninfo: {title: x, version: "1"}\npaths:\n  /pets/{id}:\n    get:\n      responses: {}\n',
      ),
    ).toEqual([
      'policies[0].document: param.yaml at paths./pets/{id}.get: path parameter "id" of the template has no "in: path" parameter',
    ]);
    expect(
      bad(
        'schema.yaml',
        'openapi: 3.1.0\ninfo: {title: x, version: "1"}\npaths:\n  /pets:\n    get:\n      parameters:\n        - {name: limit, in: query, schema: {$ref: "#/components/schemas/Nope"}}\n',
      ),
    ).toEqual([
      expect.stringMatching(
        /^policies\[0\]\.document: schema\.yaml at paths\.\/pets\.get\.parameters: invalid schema: can't resolve reference/,
      ),
    ]);
  });
});

describe('an imported config, served', () => {
  test('versioned routes from the importer validate against the document and keep the version upstream', async () => {
    const { configFor } = await import('../src/cli/import-openapi.js');
    const { loadOpenApiFile } = await import('../src/stages/openapi/document.js');
    const { up, seen } = await recorder();
    const config = configFor(loadOpenApiFile(PETSTORE), PETSTORE, {
      service: 'petstore',
      upstream: up.url,
      out: join(ROOT, 'x.yaml'),
    });
    (config.listeners as { port: number }[])[0]!.port = 0;
    (config.policies as { document: string }[])[0]!.document = PETSTORE;
    const gw = await t.gateway({ ...config, admin: { enabled: false } } as ConfigInput);
    let x = await send(`${gw.url}/v1/pets/42`);
    expect(x.r.status).toBe(200);
    x = await send(`${gw.url}/pets/43`);
    expect(x.r.status).toBe(200);
    x = await send(`${gw.url}/v1/pets/abc`);
    expect(x.body.errors).toEqual([{ pointer: '/path/petId', message: 'must be integer' }]);
    x = await send(`${gw.url}/v2/pets/1`);
    expect(x.body.code).toBe('api_version_unknown');
    expect(seen.map((s) => s.url)).toEqual(['/v1/pets/42', '/v1/pets/43']);
  });
});

describe('openapi policy over HTTP/2', () => {
  test('an h2c body without Content-Length is read and validated', async () => {
    const { up, seen } = await recorder();
    const gw = await t.gateway({
      listeners: [{ name: 'public', port: 0, http2: { h2c: true } }],
      admin: { enabled: false },
      services: [{ name: 'svc', endpoints: [up.url] }],
      policies: [{ name: 'contract', type: 'openapi', document: PETSTORE }],
      routes: [{ name: 'all', policies: ['contract'], backends: [{ service: 'svc' }] }],
    } as ConfigInput);
    const { connect } = await import('node:http2');
    const session = connect(gw.url);
    t.cleanup.push(() => session.close());
    const post = (body: unknown) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = session.request({
          ':method': 'POST',
          ':path': '/v1/pets',
          'content-type': 'application/json',
          'x-request-tag': 'h2-test',
        });
        let text = '';
        let status = 0;
        req.on('response', (h) => {
          status = Number(h[':status']);
        });
        req.setEncoding('utf8');
        req.on('data', (c: string) => {
          text += c;
        });
        req.on('end', () => resolve({ status, text }));
        req.on('error', reject);
        req.end(JSON.stringify(body));
      });
    const bad = await post({ name: '' });
    expect(bad.status).toBe(400);
    expect((JSON.parse(bad.text) as Invalid).errors).toEqual([
      { pointer: '/body/name', message: 'must NOT have fewer than 1 characters' },
    ]);
    const good = await post({ name: 'Rex' });
    expect(good.status).toBe(200);
    expect(seen.map((s) => s.body)).toEqual(['{"name":"Rex"}']);
  });
});
