/**
 * Static measures of one GraphQL operation, without the upstream's schema: depth, aliases, a cost estimate and
 * whether it asks for introspection. Named fragments are expanded (each fragment measured once per operation, so
 * a document of fragments that spread each other twice over cannot make the walk exponential), and a fragment
 * cycle or an unknown fragment is an error, so no measure can loop.
 *
 * The cost model (docs/graphql.md):
 * - every field costs 1, `__typename` costs 0;
 * - a field is a list when it has a list-size argument (`first`, `last`, `limit` by default) or its name is one of
 *   `listFields`; a list field costs `size × (1 + cost of its selection)`, where `size` is the argument's value (an
 *   integer literal, or a variable's value or default) and `defaultListSize` when that is absent or not an integer;
 * - other fields cost `1 + cost of their selection`;
 * - an operation costs the sum of its root fields; fragments cost what their selections cost where they are spread.
 */
import {
  type DocumentNode,
  type FragmentDefinitionNode,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql';

export interface CostModel {
  /** Argument names that give a list field's size, in order of preference. */
  readonly listArguments: readonly string[];
  /** Field names that return lists even without a size argument. */
  readonly listFields: ReadonlySet<string>;
  /** The size of a list field whose size is not given as an integer. */
  readonly defaultListSize: number;
}

export interface OperationMeasure {
  /** The operation's name, or undefined when it is anonymous. */
  readonly name: string | undefined;
  readonly type: 'query' | 'mutation' | 'subscription';
  /** Nesting of fields: `{ a }` is 1, `{ a { b } }` is 2. */
  readonly depth: number;
  /** Fields with an alias, fragments counted where they are spread. */
  readonly aliases: number;
  readonly cost: number;
  /** Asks for `__schema` or `__type`. */
  readonly introspection: boolean;
  /** The cost depends on variables (a list size given by a variable): measure again with the request's variables. */
  readonly variableCost: boolean;
}

/** A problem with the document itself (not a limit): answered 400 `graphql_request_invalid`. */
export class InvalidOperation extends Error {}

interface Measure {
  depth: number;
  aliases: number;
  cost: number;
  introspection: boolean;
  variableCost: boolean;
}

/**
 * The operation a request runs: the one named `operationName`, or the only one. Throws InvalidOperation when
 * there is none, or several and no name, or the name is not in the document.
 */
export function selectOperation(
  doc: DocumentNode,
  operationName: string | undefined,
): OperationDefinitionNode {
  let found: OperationDefinitionNode | undefined;
  let count = 0;
  for (const d of doc.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) continue;
    count++;
    if (operationName === undefined) found = d;
    else if (d.name?.value === operationName) return d;
  }
  if (operationName !== undefined) throw new InvalidOperation(`no operation named "${operationName}"`);
  if (count === 0) throw new InvalidOperation('the document has no operation');
  if (count > 1)
    throw new InvalidOperation('the document has several operations: operationName must name one');
  return found!;
}

/** Measures `op` of `doc`; `variables` are the request's (for list sizes given by a variable). */
export function measureOperation(
  doc: DocumentNode,
  op: OperationDefinitionNode,
  model: CostModel,
  variables: Readonly<Record<string, unknown>> | undefined,
): OperationMeasure {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of doc.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const defaults = new Map<string, ValueNode>();
  for (const v of op.variableDefinitions ?? [])
    if (v.defaultValue !== undefined) defaults.set(v.variable.name.value, v.defaultValue);
  const memo = new Map<string, Measure>();
  const visiting = new Set<string>();

  const sizeOf = (value: ValueNode): number | undefined => {
    if (value.kind === Kind.INT) return Number(value.value);
    if (value.kind === Kind.VARIABLE) {
      const name = value.name.value;
      const v = variables?.[name];
      if (typeof v === 'number' && Number.isInteger(v)) return v;
      if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
      const d = defaults.get(name);
      return d?.kind === Kind.INT ? Number(d.value) : undefined;
    }
    return undefined;
  };

  const walk = (set: SelectionSetNode): Measure => {
    const m: Measure = { depth: 0, aliases: 0, cost: 0, introspection: false, variableCost: false };
    const add = (s: Measure, extraDepth: number) => {
      if (s.depth + extraDepth > m.depth) m.depth = s.depth + extraDepth;
      m.aliases += s.aliases;
      m.introspection ||= s.introspection;
      m.variableCost ||= s.variableCost;
    };
    for (const sel of set.selections) {
      if (sel.kind === Kind.FIELD) {
        const name = sel.name.value;
        if (sel.alias !== undefined) m.aliases++;
        if (name === '__schema' || name === '__type') m.introspection = true;
        const inner = sel.selectionSet !== undefined ? walk(sel.selectionSet) : undefined;
        if (inner !== undefined) add(inner, 1);
        else if (m.depth < 1) m.depth = 1;
        if (name === '__typename') continue;
        let list = model.listFields.has(name);
        let size: number | undefined;
        if (sel.arguments !== undefined && sel.arguments.length > 0) {
          for (const argName of model.listArguments) {
            const arg = sel.arguments.find((a) => a.name.value === argName);
            if (arg === undefined) continue;
            list = true;
            if (arg.value.kind === Kind.VARIABLE) m.variableCost = true;
            size = sizeOf(arg.value);
            break;
          }
        }
        const below = 1 + (inner?.cost ?? 0);
        m.cost += list ? Math.max(0, size ?? model.defaultListSize) * below : below;
      } else if (sel.kind === Kind.INLINE_FRAGMENT) {
        const inner = walk(sel.selectionSet);
        add(inner, 0);
        m.cost += inner.cost;
      } else {
        const inner = fragment(sel.name.value);
        add(inner, 0);
        m.cost += inner.cost;
      }
    }
    return m;
  };

  const fragment = (name: string): Measure => {
    const hit = memo.get(name);
    if (hit !== undefined) return hit;
    if (visiting.has(name)) throw new InvalidOperation(`fragment "${name}" spreads itself (a cycle)`);
    const def = fragments.get(name);
    if (def === undefined) throw new InvalidOperation(`unknown fragment "${name}"`);
    visiting.add(name);
    const m = walk(def.selectionSet);
    visiting.delete(name);
    memo.set(name, m);
    return m;
  };

  const m = walk(op.selectionSet);
  return {
    name: op.name?.value,
    type: op.operation as OperationMeasure['type'],
    depth: m.depth,
    aliases: m.aliases,
    cost: m.cost,
    introspection: m.introspection,
    variableCost: m.variableCost,
  };
}
