import { expect, test } from 'vitest';
import { normalizePath } from './normalize.js';

test.each([
  ['/', '/'],
  ['/users/42', '/users/42'],
  ['/a/./b', '/a/b'],
  ['/a/b/../c', '/a/c'],
  ['/public/../admin', '/admin'],
  ['/../../etc/passwd', '/etc/passwd'],
  ['/a/b/..', '/a/'],
  ['/a/b/.', '/a/b/'],
  ['/a/.b/c', '/a/.b/c'],
  ['/a/..b/c', '/a/..b/c'],
  ['/%61dmin', '/admin'],
  ['/a%2e%2e/x', '/a../x'],
  ['/x/%2e%2e/admin', '/admin'],
  ['/a%2fb', '/a%2Fb'],
  ['/caf%c3%a9', '/caf%C3%A9'],
  ['/a%7Eb', '/a~b'],
  ['/a//b', '/a/b'],
  ['//admin/x', '/admin/x'],
  ['/a///b/', '/a/b/'],
])('%s → %s', (input, expected) => {
  expect(normalizePath(input)).toBe(expected);
});

test('malformed percent-encodings are refused', () => {
  expect(normalizePath('/a%zz')).toBeNull();
  expect(normalizePath('/a%2')).toBeNull();
  expect(normalizePath('/a%')).toBeNull();
});

test('an unchanged path is the same string', () => {
  const p = '/api/v1/users';
  expect(normalizePath(p)).toBe(p);
});
