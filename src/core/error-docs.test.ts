import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { renderErrorDocs } from './error-docs.js';
import { errorCatalog } from './errors.js';

test('docs/errors.md is generated from the catalog (run `npm run docs:errors` if this fails)', () => {
  const onDisk = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  expect(onDisk).toBe(renderErrorDocs());
});

test('every catalogued error has a 4xx/5xx status and a description', () => {
  for (const [code, spec] of Object.entries(errorCatalog)) {
    expect(code).toMatch(/^[a-z][a-z0-9_]*$/);
    expect(spec.status).toBeGreaterThanOrEqual(400);
    expect(spec.status).toBeLessThan(600);
    expect(spec.description.length).toBeGreaterThan(20);
  }
});
