import { describe, expect, it } from 'vitest';
import type { StageContext } from '../../proxy/stage.js';
import { compileSources, cookieValue, queryValue, withoutQueryParams } from './token-source.js';

describe('token sources', () => {
  it('reads a Bearer token without case on the scheme, and nothing from another scheme', () => {
    const s = compileSources([{ header: 'authorization' }]);
    const ctx = (authorization: string) =>
      ({ headers: { authorization }, query: '' }) as unknown as StageContext;
    expect(s.read(ctx('Bearer abc'))).toBe('abc');
    expect(s.read(ctx('bearer  abc '))).toBe('abc');
    expect(s.read(ctx('Basic abc'))).toBeUndefined();
    expect(s.read(ctx('Bearer '))).toBeUndefined();
    expect(s.read(ctx('Bearerabc'))).toBeUndefined();
  });

  it('tries the sources in order', () => {
    const s = compileSources([{ header: 'x-token' }, { cookie: 'sid' }, { query: 'access_token' }]);
    const ctx = (headers: Record<string, string>, query = '') =>
      ({ headers, query }) as unknown as StageContext;
    expect(s.read(ctx({ 'x-token': 'h' }, 'access_token=q'))).toBe('h');
    expect(s.read(ctx({ cookie: 'a=1; sid=c' }, 'access_token=q'))).toBe('c');
    expect(s.read(ctx({}, 'x=1&access_token=q%2Bv'))).toBe('q+v');
    expect(s.queryNames).toEqual(['access_token']);
  });

  it('parses cookies and queries strictly by name', () => {
    expect(cookieValue('xsid=1; sid="2"', 'sid')).toBe('2');
    expect(cookieValue('sid=', 'sid')).toBeUndefined();
    expect(queryValue('a=1&access_token', 'access_token')).toBeUndefined();
    expect(queryValue('access%5Ftoken=x', 'access_token')).toBe('x');
  });

  it('removes every occurrence of a parameter, encoded or not, keeping the rest in order', () => {
    expect(withoutQueryParams('/p?a=1&access_token=x&b=2&access%5Ftoken=y', ['access_token'])).toBe(
      '/p?a=1&b=2',
    );
    expect(withoutQueryParams('/p?access_token=x', ['access_token'])).toBe('/p');
    expect(withoutQueryParams('/p', ['access_token'])).toBe('/p');
  });
});
