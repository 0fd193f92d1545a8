import { describe, expect, test } from 'vitest';
import { configName, pathMatch } from '../../cli/import-openapi.js';
import { OpenApiError, parseOpenApi, serverBasePath } from './document.js';
import { checkParameters, compileDocument, findOperation, type Violation, violations } from './validate.js';

const doc30 = (paths: string, components = '') =>
  `openapi: 3.0.3\ninfo: {title: T, version: "1"}\npaths:\n${paths}${components}`;

function problem(text: string): string {
  try {
    parseOpenApi(text, 'api.yaml');
  } catch (err) {
    if (err instanceof OpenApiError) return err.message;
    throw err;
  }
  return 'no error';
}

describe('OpenAPI documents', () => {
  test('problems name the file and the place', () => {
    expect(problem('openapi: 2.0.0\ninfo: {title: T, version: "1"}\npaths: {}')).toBe(
      'api.yaml: openapi: unsupported version "2.0.0"; expected 3.0.x or 3.1.x',
    );
    expect(problem('openapi: [')).toMatch(/^api\.yaml: not valid YAML or JSON: /);
    expect(problem('openapi: 3.0.0\npaths: {}')).toBe(
      'api.yaml: info: expected an object with "title" and "version"',
    );
    expect(
      problem(
        doc30('  /a:\n    get:\n      parameters:\n        - $ref: "other.yaml#/components/parameters/x"\n'),
      ),
    ).toBe(
      'api.yaml: paths./a.get.parameters[0]: external $ref "other.yaml#/components/parameters/x" is not supported; bundle the document into one file',
    );
    expect(problem(doc30('  /a:\n    get: {operationId: x}\n  /b:\n    get: {operationId: x}\n'))).toBe(
      'api.yaml: paths./b.get.operationId: "x" is also the operationId of paths./a.get',
    );
    expect(
      problem(doc30('  /a:\n    get:\n      parameters:\n        - {name: id, in: path, required: true}\n')),
    ).toBe('api.yaml: paths./a.get.parameters: path parameter "id" is not in the path template /a');
    expect(problem(doc30('  /a/{id:\n    get: {}\n'))).toBe(
      'api.yaml: paths./a/{id: unbalanced "{" or "}" in the path template',
    );
    expect(
      problem(doc30('  /a:\n    get:\n      parameters:\n        - $ref: "#/components/parameters/nope"\n')),
    ).toBe(
      'api.yaml: paths./a.get.parameters[0]: $ref "#/components/parameters/nope" points at nothing in the document',
    );
  });

  test('path-level parameters merge with (and yield to) operation-level ones', () => {
    const d = parseOpenApi(
      doc30(
        '  /a/{id}:\n    parameters:\n      - {name: id, in: path, required: true, schema: {type: string}}\n      - {name: q, in: query, schema: {type: string}}\n    get:\n      parameters:\n        - {name: q, in: query, required: true, schema: {type: integer}}\n',
      ),
      'api.yaml',
    );
    const op = d.operations[0]!;
    expect(op.parameters.map((p) => `${p.in}:${p.name}:${p.required}:${p.schema?.type}`)).toEqual([
      'path:id:true:string',
      'query:q:true:integer',
    ]);
  });

  test('server base paths', () => {
    expect(serverBasePath('https://api.example.com/v1/')).toBe('/v1');
    expect(serverBasePath('https://api.example.com')).toBe('');
    expect(serverBasePath('/api/v2')).toBe('/api/v2');
    expect(serverBasePath(undefined)).toBe('');
  });
});

describe('validation', () => {
  const compiled = compileDocument(
    parseOpenApi(
      doc30(
        `  /pets/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    get: {operationId: getPet}
  /pets/mine:
    get: {operationId: mine}
  /pets:
    get:
      operationId: list
      parameters:
        - {name: kind, in: query, schema: {type: string, enum: [cat, dog], nullable: true}}
        - {name: ids, in: query, explode: true, schema: {type: array, items: {type: integer}}}
        - {name: size, in: query, schema: {type: number, minimum: 1, exclusiveMinimum: true}}
        - {name: X-Trace, in: header, required: true, schema: {type: string}}
        - {name: session, in: cookie, schema: {type: string, minLength: 8}}
`,
      ),
      'api.yaml',
    ),
  );

  test('a concrete path beats a template; HEAD uses GET; a known path with another method says which it has', () => {
    const mine = findOperation(compiled, 'GET', '/pets/mine');
    expect(mine.kind === 'match' && mine.operation.op.operationId).toBe('mine');
    const pet = findOperation(compiled, 'HEAD', '/pets/7');
    expect(pet.kind === 'match' && [pet.operation.op.operationId, pet.params]).toEqual([
      'getPet',
      { id: '7' },
    ]);
    expect(findOperation(compiled, 'DELETE', '/pets/7')).toEqual({ kind: 'method', allowed: ['GET'] });
    expect(findOperation(compiled, 'GET', '/owners')).toEqual({ kind: 'none' });
  });

  test('query (exploded arrays, 3.0 nullable and exclusiveMinimum), header and cookie parameters', () => {
    const m = findOperation(compiled, 'GET', '/pets');
    if (m.kind !== 'match') throw new Error('expected a match');
    const check = (query: string, headers: Record<string, string> = {}) => {
      const out: Violation[] = [];
      checkParameters(m.operation, { pathParams: m.params, query, headers }, out);
      return out;
    };
    expect(
      check('kind=cat&ids=1&ids=2&size=1.5', { 'x-trace': 't', cookie: 'a=b; session=12345678' }),
    ).toEqual([]);
    expect(check('kind=bird&ids=1&ids=x&size=1', { cookie: 'session=short' })).toEqual([
      { pointer: '/query/kind', message: 'must be one of "cat", "dog", null' },
      { pointer: '/query/ids/1', message: 'must be integer' },
      { pointer: '/query/size', message: 'must be > 1' },
      { pointer: '/header/x-trace', message: 'is required' },
      { pointer: '/cookie/session', message: 'must NOT have fewer than 8 characters' },
    ]);
  });

  test('the number of violations listed is bounded', () => {
    const out: Violation[] = [];
    const many = Array.from({ length: 500 }, (_, i) => ({
      instancePath: `/${i}`,
      schemaPath: '',
      keyword: 'type',
      params: {},
      message: 'must be integer',
    }));
    violations(many, '/body', out);
    expect(out).toHaveLength(100);
  });
});

describe('import helpers', () => {
  test('config names from operationIds', () => {
    expect(configName('showPetById')).toBe('show-pet-by-id');
    expect(configName('getHTTPStatus')).toBe('get-http-status');
    expect(configName('get /pets/{petId}')).toBe('get-pets-pet-id');
    expect(configName('__')).toBe('api');
    expect(configName('x'.repeat(100))).toHaveLength(63);
  });

  test('route path matches from OpenAPI paths', () => {
    expect(pathMatch('', '/pets')).toEqual({ exact: '/pets' });
    expect(pathMatch('/v1', '/pets/{petId}')).toEqual({ template: '/v1/pets/:petId' });
    expect(pathMatch('/v1', '/')).toEqual({ exact: '/v1' });
    expect(pathMatch('', '/files/{name}.{ext}')).toEqual({ regex: '/files/[^/]+\\.[^/]+' });
    expect(pathMatch('', '/a/{b.c}')).toEqual({ regex: '/a/[^/]+' });
  });
});
