import { parse } from 'graphql';
import { describe, expect, test } from 'vitest';
import { type CostModel, InvalidOperation, measureOperation, selectOperation } from './analyze.js';

const model: CostModel = {
  listArguments: ['first', 'last', 'limit'],
  listFields: new Set(['tags']),
  defaultListSize: 10,
};

function measure(text: string, operationName?: string, variables?: Record<string, unknown>) {
  const doc = parse(text);
  return measureOperation(doc, selectOperation(doc, operationName), model, variables);
}

describe('measureOperation', () => {
  test('depth counts nested fields; fragments and inline fragments add none', () => {
    expect(measure('{ a }').depth).toBe(1);
    expect(measure('{ a { b { c } } }').depth).toBe(3);
    expect(measure('{ a { ...F } } fragment F on T { b { c } }').depth).toBe(3);
    expect(measure('{ a { ... on T { b } } }').depth).toBe(2);
  });

  test('aliases count where fragments are spread', () => {
    expect(measure('{ x: a y: a z: b }').aliases).toBe(3);
    expect(measure('{ a { ...F } b { ...F } } fragment F on T { p: c q: c }').aliases).toBe(4);
  });

  test('cost: fields 1, lists their size times (1 + what they select), __typename free', () => {
    expect(measure('{ a b __typename }').cost).toBe(2);
    expect(measure('{ users(first: 100) { id name } }').cost).toBe(300);
    // 100 × (1 + 1 + 10 × (1 + 1)) = 2200
    expect(measure('{ users(first: 100) { id friends(first: 10) { name } } }').cost).toBe(2200);
    // listFields without a size argument: defaultListSize
    expect(measure('{ post { tags { name } } }').cost).toBe(1 + 10 * 2);
    // a size argument that is not an integer: defaultListSize
    expect(measure('{ users(first: "x") { id } }').cost).toBe(20);
  });

  test('list sizes from variables, their defaults, or the default size', () => {
    const q = 'query Q($n: Int = 5) { users(first: $n) { id } }';
    expect(measure(q).cost).toBe(10);
    expect(measure(q).variableCost).toBe(true);
    expect(measure(q, undefined, { n: 50 }).cost).toBe(100);
    expect(measure('query Q($n: Int) { users(first: $n) { id } }').cost).toBe(20);
  });

  test('fragments spread many times are measured once (no exponential walk)', () => {
    // F0 spreads F1 twice, F1 spreads F2 twice, ...: 2^30 paths, measured in linear time.
    const frags = Array.from(
      { length: 30 },
      (_, i) => `fragment F${i} on T { a${i}: x { ...F${i + 1} } b${i}: x { ...F${i + 1} } }`,
    );
    frags.push('fragment F30 on T { leaf }');
    const t0 = performance.now();
    const m = measure(`{ ...F0 } ${frags.join(' ')}`);
    expect(performance.now() - t0).toBeLessThan(200);
    expect(m.depth).toBe(31);
    expect(m.aliases).toBeGreaterThan(1e9);
    expect(m.cost).toBeGreaterThan(1e9);
  });

  test('introspection is found anywhere', () => {
    expect(measure('{ __schema { types { name } } }').introspection).toBe(true);
    expect(measure('{ a { ...F } } fragment F on T { __type(name: "X") { name } }').introspection).toBe(true);
    expect(measure('{ a { __typename } }').introspection).toBe(false);
  });

  test('fragment cycles and unknown fragments are invalid', () => {
    expect(() => measure('{ ...A } fragment A on T { ...B } fragment B on T { ...A }')).toThrow(/cycle/);
    expect(() => measure('{ ...Nope }')).toThrow(InvalidOperation);
  });

  test('operation selection', () => {
    const doc = 'query A { a } query B { b { c } }';
    expect(measure(doc, 'B').depth).toBe(2);
    expect(measure(doc, 'B').name).toBe('B');
    expect(() => measure(doc)).toThrow(/operationName/);
    expect(() => measure(doc, 'C')).toThrow(/no operation named "C"/);
    expect(() => measure('fragment F on T { a }')).toThrow(/no operation/);
    expect(measure('mutation M { x }').type).toBe('mutation');
  });
});
