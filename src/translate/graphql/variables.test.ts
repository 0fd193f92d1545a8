import { Kind, type OperationDefinitionNode, parse } from 'graphql';
import { describe, expect, test } from 'vitest';
import { buildVariables, parseSource, planVariables, type Source } from './variables.js';

function plans(doc: string, mapping: Record<string, Source> = {}) {
  const op = parse(doc).definitions.find(
    (d) => d.kind === Kind.OPERATION_DEFINITION,
  ) as OperationDefinitionNode;
  return planVariables(op, mapping);
}

const input = (
  p: { params?: Record<string, string>; query?: string; body?: Record<string, unknown> } = {},
) => ({ params: p.params, query: new URLSearchParams(p.query ?? ''), body: p.body });

describe('REST values → GraphQL variables', () => {
  test('path, then query, then body, by the variable name', () => {
    const p = plans('query Q($id: ID!, $n: Int, $on: Boolean, $x: Float) { a }');
    expect(
      buildVariables(p, input({ params: { id: '7' }, query: 'n=3&id=9&x=2.5', body: { on: true } })),
    ).toEqual({ id: '7', n: 3, on: true, x: 2.5 });
  });

  test('conversion errors and missing values name the variable', () => {
    const p = plans('query Q($n: Int, $on: Boolean, $id: ID!) { a }');
    expect(() => buildVariables(p, input({ query: 'n=1.5', params: { id: '1' } }))).toThrow(
      'variable n: expected Int (a 32-bit integer), got "1.5"',
    );
    expect(() => buildVariables(p, input({ query: 'n=99999999999', params: { id: '1' } }))).toThrow(/32-bit/);
    expect(() => buildVariables(p, input({ query: 'on=1', params: { id: '1' } }))).toThrow(
      'variable on: expected Boolean (true or false), got "1"',
    );
    expect(() => buildVariables(p, input())).toThrow(
      'variable id (ID!) is required: no path parameter, query parameter or body field "id"',
    );
  });

  test('a required variable with a default may be absent; nullable ones are left out', () => {
    const p = plans('query Q($n: Int! = 5, $m: Int) { a }');
    expect(buildVariables(p, input())).toEqual({});
  });

  test('lists from repeated query parameters and comma-separated path parameters', () => {
    const p = plans('query Q($ids: [Int!]!) { a }');
    expect(buildVariables(p, input({ query: 'ids=1&ids=2' }))).toEqual({ ids: [1, 2] });
    expect(buildVariables(p, input({ params: { ids: '3,4' } }))).toEqual({ ids: [3, 4] });
  });

  test('explicit sources, the whole body, and JSON values passed as they are', () => {
    const p = plans('query Q($who: ID!, $input: In!, $n: Int) { a }', {
      who: parseSource('path.id')!,
      input: parseSource('body')!,
      n: parseSource('body.count')!,
    });
    expect(
      buildVariables(p, input({ params: { id: '1', who: 'x' }, body: { count: '4', name: 'z' } })),
    ).toEqual({
      who: '1',
      input: { count: '4', name: 'z' },
      n: 4,
    });
    expect(parseSource('header.x')).toBeUndefined();
  });
});
