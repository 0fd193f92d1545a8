import { describe, expect, test } from 'vitest';
import { covers, parseSubjectAltName } from './tls.js';

describe('covers: a certificate name and an SNI name', () => {
  test.each([
    ['api.example.com', 'api.example.com', true],
    ['api.example.com', 'www.example.com', false],
    ['*.example.com', 'api.example.com', true],
    ['*.example.com', 'a.b.example.com', false],
    ['*.example.com', 'example.com', false],
    ['*.example.com', '*.example.com', true],
    ['api.example.com', '*.example.com', false],
    ['*.b.example.com', '*.example.com', false],
  ])('%s covers %s: %s', (san, name, expected) => {
    expect(covers(san, name)).toBe(expected);
  });
});

describe("parseSubjectAltName reads Node's text", () => {
  test('plain entries', () => {
    expect(
      parseSubjectAltName('DNS:a.test, DNS:*.b.test, URI:spiffe://td/ns/x/sa/y, email:a@b.test'),
    ).toEqual([
      { type: 'DNS', value: 'a.test' },
      { type: 'DNS', value: '*.b.test' },
      { type: 'URI', value: 'spiffe://td/ns/x/sa/y' },
      { type: 'email', value: 'a@b.test' },
    ]);
  });

  test('quoted values cannot forge another entry', () => {
    // What Node prints for URI `spiffe://a/b,c;d="e"` and e-mail `a"b@c`.
    const text = 'URI:"spiffe://a/b\\u002cc;d=\\"e\\"", DNS:x.test, email:"a\\"b@c"';
    expect(parseSubjectAltName(text)).toEqual([
      { type: 'URI', value: 'spiffe://a/b,c;d="e"' },
      { type: 'DNS', value: 'x.test' },
      { type: 'email', value: 'a"b@c' },
    ]);
  });

  test('IP addresses and nothing', () => {
    expect(parseSubjectAltName('IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')).toEqual([
      { type: 'IP Address', value: '127.0.0.1' },
      { type: 'IP Address', value: '0:0:0:0:0:0:0:1' },
    ]);
    expect(parseSubjectAltName(undefined)).toEqual([]);
    expect(parseSubjectAltName('')).toEqual([]);
  });
});
