import { describe, expect, test } from 'vitest';
import type { RouteConfig } from '../config/schema.js';
import { apiSchema } from './schema.js';
import { variantRoutes } from './versions.js';

const api = apiSchema.parse({
  name: 'orders',
  select: { path: true },
  default: 'v2',
  versions: [
    { name: 'v1.5', aliases: ['1'], backends: [{ service: 's' }] },
    { name: 'v2', backends: [{ service: 's' }] },
  ],
});

const paths = (path: RouteConfig['match']['path']) =>
  variantRoutes({ name: 'r', api: 'orders', match: { path } } as RouteConfig, api).map((v) => [
    v.route.match.path,
    v.byPath === undefined || v.byPath === 'any' ? v.byPath : `${v.byPath.version}:${v.byPath.segment}`,
  ]);

describe('router entries of a route of a path-versioned API', () => {
  test('a prefix: one per version name and alias, and a regex for any other first segment', () => {
    expect(paths({ prefix: '/orders' })).toEqual([
      [{ prefix: '/orders' }, undefined],
      [{ prefix: '/v1.5/orders' }, '0:v1.5'],
      [{ prefix: '/1/orders' }, '0:1'],
      [{ prefix: '/v2/orders' }, '1:v2'],
      [{ regex: '/[^/]+/orders(?:/.*)?' }, 'any'],
    ]);
  });

  test('exact, template and regex paths; a catch-all gets no unknown-version entry', () => {
    expect(paths({ exact: '/' }).map((p) => p[0])).toEqual([
      { exact: '/' },
      { exact: '/v1.5' },
      { exact: '/1' },
      { exact: '/v2' },
      { regex: '/[^/]+/?' },
    ]);
    expect(paths({ template: '/orders/:id' }).at(-1)).toEqual([{ regex: '/[^/]+/orders/[^/]+' }, 'any']);
    expect(paths({ template: '/orders/:id' })[1]![0]).toEqual({ template: '/v1.5/orders/:id' });
    expect(paths({ regex: '/o.*' })[1]![0]).toEqual({ regex: '/v1\\.5(?:/o.*)' });
    expect(paths(undefined).map((p) => p[1])).toEqual([undefined, '0:v1.5', '0:1', '1:v2']);
  });

  test('without select.path a route stays one entry', () => {
    const plain = apiSchema.parse({ ...api, select: { header: 'Accept-Version' } });
    expect(variantRoutes({ name: 'r', match: {} } as RouteConfig, plain)).toHaveLength(1);
  });
});
