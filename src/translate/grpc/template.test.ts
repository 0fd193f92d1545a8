import { describe, expect, test } from 'vitest';
import {
  compareSpecificity,
  matchTemplate,
  parseTemplate,
  splitPath,
  TemplateError,
  templateShape,
} from './template.js';

const match = (template: string, path: string) => {
  const m = matchTemplate(parseTemplate(template), splitPath(path));
  return m === undefined ? undefined : Object.fromEntries(m);
};

describe('path templates: parsing', () => {
  test('literals, variables, wildcards and a verb', () => {
    const t = parseTemplate('/v1/{name=shelves/*/books/*}:archive');
    expect(templateShape(t)).toBe('/v1/shelves/*/books/*:archive');
    expect(t.verb).toBe('archive');
    expect(t.variables).toEqual([{ field: ['name'], start: 1, end: 5 }]);
  });

  test('{name} is {name=*}; a dotted field path is kept whole', () => {
    expect(templateShape(parseTemplate('/v1/{book.name}'))).toBe('/v1/*');
    expect(parseTemplate('/v1/{book.name}').variables[0]!.field).toEqual(['book', 'name']);
  });

  test.each([
    ['v1/books', 'starts with "/"'],
    ['/v1/{name', 'unbalanced braces'],
    ['/v1/**/books', '"**" may only be the last segment'],
    ['/v1/x{name}', 'whole segment'],
    ['/v1/{na-me}', 'invalid field path'],
    ['/v1/{a}/{a}', 'appears twice'],
    ['/v1//books', 'empty path segment'],
    ['/v1/{a={b}}', 'cannot nest'],
    ['/v1/books:', 'invalid verb'],
  ])('%s is refused (%s)', (source, message) => {
    expect(() => parseTemplate(source)).toThrow(TemplateError);
    expect(() => parseTemplate(source)).toThrow(message);
  });
});

describe('path templates: matching', () => {
  test('a variable over several segments', () => {
    expect(match('/v1/{name=shelves/*/books/*}', '/v1/shelves/1/books/2')).toEqual({
      name: 'shelves/1/books/2',
    });
    expect(match('/v1/{name=shelves/*/books/*}', '/v1/shelves/1/books')).toBeUndefined();
    expect(match('/v1/{name=shelves/*/books/*}', '/v1/shelves/1/books/2/x')).toBeUndefined();
    expect(match('/v1/{name=shelves/*/books/*}', '/v1/racks/1/books/2')).toBeUndefined();
  });

  test('* needs a non-empty segment', () => {
    expect(match('/v1/{id}', '/v1/')).toBeUndefined();
    expect(match('/v1/{id}', '/v1/7')).toEqual({ id: '7' });
  });

  test('** matches zero or more segments', () => {
    expect(match('/files/{path=**}', '/files/a/b/c.txt')).toEqual({ path: 'a/b/c.txt' });
    expect(match('/files/{path=**}', '/files')).toEqual({ path: '' });
    expect(match('/files/**', '/files/x/y')).toEqual({});
    expect(match('/v1/{name=shelves/*/**}', '/v1/shelves/1/books/2')).toEqual({ name: 'shelves/1/books/2' });
  });

  test('the verb must match, and is not part of the last variable', () => {
    expect(match('/v1/{name=books/*}:archive', '/v1/books/7:archive')).toEqual({ name: 'books/7' });
    expect(match('/v1/{name=books/*}:archive', '/v1/books/7:restore')).toBeUndefined();
    expect(match('/v1/{name=books/*}:archive', '/v1/books/7')).toBeUndefined();
    // Without a verb in the template, a colon is part of the segment.
    expect(match('/v1/{id}', '/v1/a:b')).toEqual({ id: 'a:b' });
  });

  test('a one-segment variable is percent-decoded; a multi-segment one keeps reserved escapes', () => {
    expect(match('/v1/{id}', '/v1/a%2Fb%20c')).toEqual({ id: 'a/b c' });
    expect(match('/v1/{path=**}', '/v1/a%2Fb/%C3%A9%20x')).toEqual({ path: 'a%2Fb/é x' });
    expect(match('/v1/{id}', '/v1/%E0%A4%A')).toBeUndefined();
  });

  test('several variables, nested field paths', () => {
    expect(match('/v1/shelves/{shelf}/books/{book.id}', '/v1/shelves/s1/books/b2')).toEqual({
      shelf: 's1',
      'book.id': 'b2',
    });
  });

  test('the root template', () => {
    expect(match('/', '/')).toEqual({});
    expect(match('/', '/x')).toBeUndefined();
  });
});

describe('path templates: specificity', () => {
  test('literal before * before **, a verb before none', () => {
    const sorted = ['/v1/{x=**}', '/v1/{id}', '/v1/books', '/v1/{id}:go']
      .map(parseTemplate)
      .sort(compareSpecificity)
      .map((t) => t.source);
    expect(sorted).toEqual(['/v1/books', '/v1/{id}:go', '/v1/{id}', '/v1/{x=**}']);
  });
});
