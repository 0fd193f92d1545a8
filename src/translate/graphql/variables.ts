/**
 * Variables of a REST → GraphQL call: where each comes from (a path parameter, the query string, the JSON body)
 * and how a REST string becomes the type the operation declares. Planned once per route from the operation's
 * variable definitions; per request only the lookups and the conversions run.
 */
import { Kind, type OperationDefinitionNode, type TypeNode } from 'graphql';

/** Where a variable's value is read: `path.NAME`, `query.NAME`, `body.NAME` (a field), or `body` (all of it). */
export type Source =
  | { readonly from: 'path' | 'query' | 'body'; readonly name: string }
  | { readonly from: 'body-whole' }
  | { readonly from: 'any'; readonly name: string };

/** A variable's type, reduced to what conversion needs. */
interface VarType {
  readonly nonNull: boolean;
  /** A list (of `item`). */
  readonly list: boolean;
  /** The named type at the bottom: Int, Float, Boolean, String, ID, or another (enum, custom scalar, input). */
  readonly named: string;
  /** The type as written (`[Int!]!`), for messages. */
  readonly text: string;
}

export interface VariablePlan {
  readonly name: string;
  readonly type: VarType;
  readonly source: Source;
  readonly hasDefault: boolean;
}

function typeText(t: TypeNode): string {
  if (t.kind === Kind.NON_NULL_TYPE) return `${typeText(t.type)}!`;
  if (t.kind === Kind.LIST_TYPE) return `[${typeText(t.type)}]`;
  return t.name.value;
}

function reduce(t: TypeNode): VarType {
  const text = typeText(t);
  const nonNull = t.kind === Kind.NON_NULL_TYPE;
  let inner: TypeNode = nonNull ? t.type : t;
  const list = inner.kind === Kind.LIST_TYPE;
  while (inner.kind !== Kind.NAMED_TYPE) inner = inner.type;
  return { nonNull, list, named: inner.name.value, text };
}

const SOURCE = /^(?:(path|query|body)\.([_A-Za-z][_0-9A-Za-z-]*)|body)$/;

/** Parses a `variables` mapping value; undefined when malformed. */
export function parseSource(text: string): Source | undefined {
  const m = SOURCE.exec(text);
  if (m === null) return undefined;
  if (m[1] === undefined) return { from: 'body-whole' };
  return { from: m[1] as 'path' | 'query' | 'body', name: m[2]! };
}

/** One plan per variable the operation declares: the mapped source, or by default its own name anywhere. */
export function planVariables(
  op: OperationDefinitionNode,
  mapping: Readonly<Record<string, Source>>,
): VariablePlan[] {
  return (op.variableDefinitions ?? []).map((d) => {
    const name = d.variable.name.value;
    return {
      name,
      type: reduce(d.type),
      source: mapping[name] ?? { from: 'any', name },
      hasDefault: d.defaultValue !== undefined,
    };
  });
}

/** A request whose variables cannot be made: 400 graphql_variable_invalid with this message. */
export class VariableError extends Error {}

const INT = /^-?\d+$/;
const FLOAT = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/** A REST string as the named type (built-in scalars are checked; enums, custom scalars and IDs stay strings). */
function fromString(v: string, t: VarType, name: string): unknown {
  switch (t.named) {
    case 'Int': {
      const n = Number(v);
      if (!INT.test(v) || n > 2147483647 || n < -2147483648)
        throw new VariableError(`variable ${name}: expected ${t.text} (a 32-bit integer), got "${v}"`);
      return n;
    }
    case 'Float':
      if (!FLOAT.test(v))
        throw new VariableError(`variable ${name}: expected ${t.text} (a number), got "${v}"`);
      return Number(v);
    case 'Boolean':
      if (v === 'true') return true;
      if (v === 'false') return false;
      throw new VariableError(`variable ${name}: expected ${t.text} (true or false), got "${v}"`);
    default:
      return v;
  }
}

/** What one request offers: path parameters, the query string, the JSON body (an object, or undefined). */
export interface RestInput {
  readonly params: Readonly<Record<string, string>> | undefined;
  readonly query: URLSearchParams;
  readonly body: Record<string, unknown> | undefined;
}

/** The variables object for one request. Throws VariableError naming the variable. */
export function buildVariables(plans: readonly VariablePlan[], input: RestInput): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of plans) {
    const v = lookup(p, input);
    if (v === undefined) {
      if (p.type.nonNull && !p.hasDefault)
        throw new VariableError(`variable ${p.name} (${p.type.text}) is required: ${where(p.source)}`);
      continue;
    }
    out[p.name] = v;
  }
  return out;
}

function where(s: Source): string {
  switch (s.from) {
    case 'any':
      return `no path parameter, query parameter or body field "${s.name}"`;
    case 'body-whole':
      return 'no JSON body';
    default:
      return `no ${s.from === 'path' ? 'path parameter' : s.from === 'query' ? 'query parameter' : 'body field'} "${s.name}"`;
  }
}

function lookup(p: VariablePlan, input: RestInput): unknown {
  const s = p.source;
  const fromQuery = (name: string): unknown => {
    if (p.type.list) {
      const all = input.query.getAll(name);
      return all.length === 0 ? undefined : all.map((x) => fromString(x, p.type, p.name));
    }
    const one = input.query.get(name);
    return one === null ? undefined : fromString(one, p.type, p.name);
  };
  const fromPath = (name: string): unknown => {
    const v = input.params?.[name];
    if (v === undefined) return undefined;
    return p.type.list
      ? v.split(',').map((x) => fromString(x, p.type, p.name))
      : fromString(v, p.type, p.name);
  };
  const fromBody = (name: string): unknown => {
    const v = input.body?.[name];
    // A JSON body is typed already; a string for a number type is converted as from the query string.
    if (typeof v === 'string' && !p.type.list) return fromString(v, p.type, p.name);
    return v === null ? undefined : v;
  };
  switch (s.from) {
    case 'path':
      return fromPath(s.name);
    case 'query':
      return fromQuery(s.name);
    case 'body':
      return fromBody(s.name);
    case 'body-whole':
      return input.body;
    case 'any':
      return fromPath(s.name) ?? fromQuery(s.name) ?? fromBody(s.name);
  }
}
