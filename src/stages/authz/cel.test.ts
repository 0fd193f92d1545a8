import { describe, expect, it } from 'vitest';
import { CelCompileError, compileCel } from './cel.js';

function error(src: string): CelCompileError {
  try {
    compileCel(src);
  } catch (err) {
    if (err instanceof CelCompileError) return err;
    throw err;
  }
  throw new Error(`"${src}" compiled`);
}

describe('compileCel', () => {
  it('accepts well-typed conditions over the declared variables', () => {
    for (const src of [
      'request.method == "GET"',
      'request.path.startsWith("/admin") && "admins" in consumer.groups',
      'has(claims.sub) && claims.sub == "alice"',
      'claims.exists(k, k == "role")',
      'scopes.exists(s, s.startsWith("orders:"))',
      'request.headers["x-tenant"] == consumer.metadata["tenant"]',
      'size(client.uris) > 0 && client.uris[0].endsWith("/sa/payments")',
      'request.path.matches("^/v[0-9]+/")',
      'claims.level > 2',
      'request.method.lowerAscii() == "get" ? true : false',
      "'admin' in claims.roles",
      '{"a": 1}.a == 1',
    ]) {
      expect(() => compileCel(src), src).not.toThrow();
    }
  });

  it('reports a syntax error with its position', () => {
    const e = error('request.method == "GET" &&');
    expect(e.kind).toBe('syntax');
    expect(e.line).toBe(1);
    expect(e.column).toBeGreaterThan(20);
  });

  it('reports type errors with the position of the offending part', () => {
    let e = error('request.metod == "GET"');
    expect(e.kind).toBe('type');
    expect(e.reason).toContain("no field 'metod' on request");
    expect(e.column).toBe(8);
    e = error('request.method == 1');
    expect(e.reason).toContain('cannot compare string with int');
    e = error('user == "x"');
    expect(e.reason).toContain("undeclared reference to 'user'");
    e = error('request.path');
    expect(e.reason).toContain('must be a bool');
    e = error('size(request.method, 1) > 0');
    expect(e.reason).toContain("no matching overload for 'size'");
    e = error('request.path.matches("[")');
    expect(e.reason).toContain('missing closing ]');
    e = error('nope(1)');
    expect(e.reason).toContain("undeclared function 'nope'");
    e = error('true &&\n  request.method + 1 == 2');
    expect(e.line).toBe(2);
  });

  it('evaluates to a bool, or an error a caller treats fail-closed', () => {
    const f = compileCel('claims.role == "admin"');
    expect(f({ claims: new Map([['role', 'admin']]) })).toBe(true);
    expect(f({ claims: new Map([['role', 'user']]) })).toBe(false);
    expect(f({ claims: new Map() })).toBeInstanceOf(Error);
  });
});
