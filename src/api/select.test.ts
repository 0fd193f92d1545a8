import { describe, expect, test } from 'vitest';
import {
  deprecationValue,
  dropFirstSegment,
  firstSegment,
  mediaTypeVersion,
  queryValue,
  sunsetValue,
} from './select.js';

describe('version selection helpers', () => {
  test('first path segment and the path without it', () => {
    expect(firstSegment('/v2/orders/1')).toBe('v2');
    expect(firstSegment('/v2')).toBe('v2');
    expect(firstSegment('/')).toBe('');
    expect(dropFirstSegment('/v2/orders/1?x=1', 2)).toBe('/orders/1?x=1');
    expect(dropFirstSegment('/v2', 2)).toBe('/');
    expect(dropFirstSegment('/v2?x=1', 2)).toBe('/?x=1');
  });

  test('query parameters: first value, decoded, absent', () => {
    expect(queryValue('a=1&api-version=v2&api-version=v3', 'api-version')).toBe('v2');
    expect(queryValue('api%2Dversion=2024%2D01', 'api-version')).toBe('2024-01');
    expect(queryValue('api-version', 'api-version')).toBe('');
    expect(queryValue('x=1', 'api-version')).toBeUndefined();
    expect(queryValue('', 'api-version')).toBeUndefined();
    expect(queryValue('api-version=%E0%A4%A', 'api-version')).toBe('%E0%A4%A');
  });

  test('vendor media types in Accept', () => {
    expect(mediaTypeVersion('application/vnd.acme.v2+json', 'vnd.acme')).toBe('v2');
    expect(mediaTypeVersion('application/vnd.acme.v2', 'vnd.acme')).toBe('v2');
    expect(mediaTypeVersion('application/json, application/vnd.acme+json;version="3"', 'vnd.acme')).toBe('3');
    expect(mediaTypeVersion('application/VND.ACME.V2+JSON', 'vnd.acme')).toBe('V2');
    expect(mediaTypeVersion('application/vnd.acme+json', 'vnd.acme')).toBeUndefined();
    expect(mediaTypeVersion('application/vnd.acmecorp.v2+json', 'vnd.acme')).toBeUndefined();
    expect(mediaTypeVersion('application/json', 'vnd.acme')).toBeUndefined();
  });

  test('lifecycle field values', () => {
    expect(deprecationValue('2026-07-01T00:00:00Z')).toBe('@1782864000');
    expect(deprecationValue('2026-07-01T02:00:00+02:00')).toBe('@1782864000');
    expect(sunsetValue('2027-01-01T00:00:00Z')).toBe('Fri, 01 Jan 2027 00:00:00 GMT');
  });
});
