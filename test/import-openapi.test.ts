import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { ROOT, runCli } from './process.js';

const PETSTORE = join(ROOT, 'test/fixtures/openapi/petstore-3.0.yaml');
const INVENTORY = join(ROOT, 'test/fixtures/openapi/inventory-3.1.json');

describe('trellis import openapi', () => {
  test('a 3.0 document with a versioned server URL becomes routes of a versioned API that trellis validate accepts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-import-'));
    const out = join(dir, 'petstore.trellis.yaml');
    const r = await runCli(['import', 'openapi', PETSTORE, '--service', 'petstore', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const config = parse(readFileSync(out, 'utf8'));
    expect(config.services).toEqual([{ name: 'petstore', endpoints: ['https://petstore.example.com'] }]);
    expect(config.apis).toEqual([
      {
        name: 'petstore',
        select: { path: true, stripPath: false },
        default: 'v1',
        versions: [{ name: 'v1', backends: [{ service: 'petstore' }] }],
      },
    ]);
    expect(config.policies[0]).toMatchObject({ name: 'petstore-openapi', type: 'openapi', basePath: '' });
    expect(config.routes.map((x: { name: string }) => x.name)).toEqual([
      'list-pets',
      'create-pet',
      'show-pet-by-id',
      'update-pet',
      'delete-pet',
      'list-my-pets',
      'place-order',
    ]);
    expect(config.routes[2]).toEqual({
      name: 'show-pet-by-id',
      match: { path: { template: '/pets/:petId' }, methods: ['GET'] },
      api: 'petstore',
      policies: ['petstore-openapi'],
    });
    const v = await runCli(['validate', out]);
    expect(v.stderr).toBe('');
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('7 routes');
  });

  test('a 3.1 JSON document to stdout: exact and template paths under the server base path', async () => {
    const r = await runCli(['import', 'openapi', INVENTORY, '--upstream', 'http://inventory.internal:9000']);
    expect(r.code).toBe(0);
    const config = parse(r.stdout);
    expect(config.apis).toBeUndefined();
    expect(config.services[0]).toEqual({ name: 'inventory', endpoints: ['http://inventory.internal:9000'] });
    expect(config.routes.map((x: { name: string; match: unknown }) => [x.name, x.match])).toEqual([
      ['search-items', { path: { exact: '/inventory/items' }, methods: ['GET'] }],
      ['create-item', { path: { exact: '/inventory/items' }, methods: ['POST'] }],
      ['patch-item', { path: { template: '/inventory/items/:sku' }, methods: ['PATCH'] }],
    ]);
    // Written next to the fixture, the document path resolves from the config's folder.
    const dir = mkdtempSync(join(tmpdir(), 'trellis-import-'));
    writeFileSync(join(dir, 'c.yaml'), r.stdout.replace(/document: .*/, `document: ${INVENTORY}`));
    const v = await runCli(['validate', join(dir, 'c.yaml')]);
    expect(v.stderr).toBe('');
    expect(v.code).toBe(0);
  });

  test('--api-version with header selection', async () => {
    const r = await runCli([
      'import',
      'openapi',
      INVENTORY,
      '--api-version',
      'v2',
      '--select',
      'header:Accept-Version',
      '--no-validate',
    ]);
    expect(r.code).toBe(0);
    const config = parse(r.stdout);
    expect(config.policies).toBeUndefined();
    expect(config.apis[0]).toEqual({
      name: 'inventory',
      select: { header: 'Accept-Version' },
      default: 'v2',
      versions: [{ name: 'v2', backends: [{ service: 'inventory' }] }],
    });
    expect(config.routes[0].api).toBe('inventory');
  });

  test('an invalid document fails with the file and the place', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-import-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      'openapi: 3.0.3\ninfo: {title: x, version: "1"}\npaths:\n  /a/{id}:\n    get:\n      parameters:\n        - {name: id, in: path, schema: {type: string}}\n',
    );
    const r = await runCli(['import', 'openapi', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `trellis import openapi: ${bad}: paths./a/{id}.get.parameters[0].required: a path parameter must be required: true\n`,
    );
    const usage = await runCli(['import', 'swagger', bad]);
    expect(usage.code).toBe(2);
  });
});
