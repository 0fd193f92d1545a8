import { describe, expect, test } from 'vitest';
import { takeQueryParam } from './api-key.js';

describe('takeQueryParam', () => {
  test('takes the first value, decoded, and removes every occurrence', () => {
    expect(takeQueryParam('a=1&key=s%2Fe+cret&b=2&key=other', 'key')).toEqual({
      value: 's/e cret',
      rest: 'a=1&b=2',
    });
    expect(takeQueryParam('key=abc', 'key')).toEqual({ value: 'abc', rest: '' });
    expect(takeQueryParam('k%65y=abc&x', 'key')).toEqual({ value: 'abc', rest: 'x' });
    expect(takeQueryParam('key', 'key')).toEqual({ value: '', rest: '' });
    expect(takeQueryParam('ke+y=1&key=2', 'ke y')).toEqual({ value: '1', rest: 'key=2' });
  });

  test('the parameters that stay are kept as written, empty ones and their order included', () => {
    expect(takeQueryParam('a=%20&&key=1&b=x+y&', 'key')).toEqual({ value: '1', rest: 'a=%20&&b=x+y&' });
    expect(takeQueryParam('key=1&key=2&key', 'key')).toEqual({ value: '1', rest: '' });
    expect(takeQueryParam('&key=1', 'key')).toEqual({ value: '1', rest: '' });
  });

  test('absent: undefined, and the query is left alone', () => {
    expect(takeQueryParam('', 'key')).toBeUndefined();
    expect(takeQueryParam('keys=1&akey=2', 'key')).toBeUndefined();
  });

  test('a malformed escape is kept as it is, not thrown', () => {
    expect(takeQueryParam('key=%E0%A4%A', 'key')).toEqual({ value: '%E0%A4%A', rest: '' });
  });
});
