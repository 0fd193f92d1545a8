/**
 * CEL conditions (`when:`) for authorization rules, with @bufbuild/cel. Parsed, type-checked and planned when the
 * config loads; per request only the planned function runs, over an activation whose variables are built on
 * first use. @bufbuild/cel's own checker covers only constants and identifiers so far, so this file carries a
 * small checker of its own: declared variables and their fields, function overloads (read from the environment,
 * so it stays in step with the evaluator), operators, macros, and a bool result. What it cannot know (claim
 * values are `dyn`) is checked when it runs: an evaluation error is handled fail-closed by the caller.
 */
import {
  type CelEnv,
  CelScalar,
  type CelType,
  celEnv,
  isCelError,
  listType,
  mapType,
  parse,
  plan,
} from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';

/** A record type of ours: CEL sees it as a map at run time; the checker knows its fields. */
interface StructType {
  readonly kind: 'struct';
  readonly name: string;
  readonly fields: Readonly<Record<string, T>>;
}
type T = CelType | StructType;

const S = CelScalar.STRING;
const LIST_S = listType(S);
const MAP_SS = mapType(S, S);
const DYN = CelScalar.DYN;

/** The variables a `when:` condition can read. docs/policies.md lists the same. */
export const CEL_VARIABLES: Readonly<Record<string, StructType | CelType>> = {
  request: {
    kind: 'struct',
    name: 'request',
    fields: { method: S, path: S, host: S, query: S, headers: MAP_SS, params: MAP_SS },
  },
  consumer: {
    kind: 'struct',
    name: 'consumer',
    fields: { name: S, groups: LIST_S, metadata: MAP_SS },
  },
  claims: mapType(S, DYN),
  scopes: LIST_S,
  client: {
    kind: 'struct',
    name: 'client',
    fields: { address: S, subject: S, uris: LIST_S, dns: LIST_S, emails: LIST_S, sha256: S },
  },
};

let sharedEnv: CelEnv | undefined;
function env(): CelEnv {
  sharedEnv ??= celEnv({ funcs: strings });
  return sharedEnv;
}

/** A CEL problem with where it is in the expression (1-based line and column). */
export class CelCompileError extends Error {
  constructor(
    readonly kind: 'syntax' | 'type',
    readonly reason: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`CEL ${kind} error at ${line}:${column}: ${reason}`);
  }
}

/** A compiled condition: true, false, or an Error (evaluation failed, or not a bool). */
export type CelProgram = (vars: object) => boolean | Error;

export function compileCel(source: string): CelProgram {
  const run = checkedPlan(source, 'bool', 'a condition');
  return function celCondition(vars) {
    const v = run(vars as Record<string, never>);
    if (typeof v === 'boolean') return v;
    if (isCelError(v)) return v;
    return new Error(`condition gave ${typeof v}, not a bool`);
  };
}

/** A compiled string expression (a rate-limit key): the string, or an Error (evaluation failed, or not a string). */
export type CelStringProgram = (vars: object) => string | Error;

/** Like compileCel, for an expression whose value is a string (same variables, same checks). */
export function compileCelString(source: string): CelStringProgram {
  const run = checkedPlan(source, 'string', 'a key');
  return function celString(vars) {
    const v = run(vars as Record<string, never>);
    if (typeof v === 'string') return v;
    if (isCelError(v)) return v;
    return new Error(`expression gave ${typeof v}, not a string`);
  };
}

/** Parses, type-checks (the result must be `want` or dyn) and plans; a problem is a CelCompileError. */
function checkedPlan(source: string, want: 'bool' | 'string', what: string): ReturnType<typeof plan> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(source);
  } catch (err) {
    const e = err as {
      location?: { start?: { line: number; column: number } };
      rawMessage?: string;
      message: string;
    };
    const at = e.location?.start;
    throw new CelCompileError('syntax', e.rawMessage ?? e.message, at?.line ?? 1, at?.column ?? 1);
  }
  const positions = parsed.sourceInfo?.positions ?? {};
  const fail = (id: bigint | number, reason: string): never => {
    const offset = positions[String(id)] ?? 0;
    const { line, column } = lineColumn(source, offset);
    throw new CelCompileError('type', reason, line, column);
  };
  const result = new Checker(env(), fail).check(parsed.expr, new Map());
  if (!isDyn(result) && !isScalar(result, want)) {
    fail(parsed.expr.id, `${what} must be a ${want}; this is ${typeName(result)}`);
  }
  return plan(env(), parsed);
}

function lineColumn(source: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < source.length; i++) {
    if (source.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}

// ---- the checker ----

// biome-ignore lint/suspicious/noExplicitAny: the AST types of @bufbuild/cel-spec are generated; we walk them by `case`
type Expr = any;

function isStruct(t: T): t is StructType {
  return t.kind === 'struct';
}
function isDyn(t: T): boolean {
  return t.kind === 'scalar' && (t as { scalar: string }).scalar === 'dyn';
}
function isScalar(t: T, name: string): boolean {
  return t.kind === 'scalar' && (t as { scalar: string }).scalar === name;
}
function isNumeric(t: T): boolean {
  return isScalar(t, 'int') || isScalar(t, 'uint') || isScalar(t, 'double');
}
function typeName(t: T): string {
  return isStruct(t) ? t.name : String(t);
}
/** Our records are maps for everything but field selection. */
function asCel(t: T): CelType {
  return isStruct(t) ? mapType(S, DYN) : t;
}

/** Can a value of type `arg` be passed where `param` is expected? dyn on either side defers to run time. */
function assignable(param: CelType, arg: T): boolean {
  const a = asCel(arg);
  if (isDyn(param) || isDyn(a)) return true;
  if (param.kind !== a.kind) return false;
  switch (param.kind) {
    case 'scalar':
      return (param as { scalar: string }).scalar === (a as { scalar: string }).scalar;
    case 'list':
      return assignable(param.element, (a as typeof param).element);
    case 'map':
      return (
        assignable(param.key, (a as typeof param).key) && assignable(param.value, (a as typeof param).value)
      );
    case 'object':
      return param.name === (a as typeof param).name;
  }
  return false;
}

function sameKind(a: T, b: T): boolean {
  if (isDyn(a) || isDyn(b) || isScalar(a, 'null_type') || isScalar(b, 'null_type')) return true;
  if (isNumeric(a) && isNumeric(b)) return true;
  const ca = asCel(a);
  const cb = asCel(b);
  return assignable(ca, cb) || assignable(cb, ca);
}

/** The common type of two branches (a list's elements, `?:`): the type itself when equal, else dyn. */
function join(a: T, b: T): T {
  if (isDyn(a)) return a;
  if (isDyn(b)) return b;
  return sameKind(a, b) && !isNumeric(a)
    ? a
    : isNumeric(a) && isNumeric(b) && String(a) === String(b)
      ? a
      : DYN;
}

class Checker {
  constructor(
    readonly env: CelEnv,
    readonly fail: (id: bigint | number, reason: string) => never,
  ) {}

  check(e: Expr, scope: ReadonlyMap<string, T>): T {
    const kind = e.exprKind;
    switch (kind.case) {
      case 'constExpr':
        return this.constant(e, kind.value);
      case 'identExpr': {
        const name: string = kind.value.name;
        const local = scope.get(name);
        if (local !== undefined) return local;
        const declared = CEL_VARIABLES[name];
        if (declared !== undefined) return declared;
        return this.fail(
          e.id,
          `undeclared reference to '${name}' (variables: ${Object.keys(CEL_VARIABLES).join(', ')})`,
        );
      }
      case 'selectExpr': {
        const { operand, field, testOnly } = kind.value;
        const t = this.check(operand, scope);
        let out: T;
        if (isStruct(t)) {
          const f = t.fields[field];
          if (f === undefined) {
            return this.fail(
              e.id,
              `no field '${field}' on ${t.name} (fields: ${Object.keys(t.fields).join(', ')})`,
            );
          }
          out = f;
        } else if (t.kind === 'map') out = t.value;
        else if (isDyn(t)) out = DYN;
        else return this.fail(e.id, `cannot select field '${field}' from ${typeName(t)}`);
        return testOnly ? CelScalar.BOOL : out;
      }
      case 'callExpr':
        return this.call(e, kind.value, scope);
      case 'listExpr': {
        let elem: T | undefined;
        for (const x of kind.value.elements) {
          const t = this.check(x, scope);
          elem = elem === undefined ? t : join(elem, t);
        }
        return listType(asCel(elem ?? DYN));
      }
      case 'structExpr': {
        const s = kind.value;
        if (s.messageName)
          return this.fail(e.id, `message construction (${s.messageName}) is not available here`);
        let k: T | undefined;
        let v: T | undefined;
        for (const entry of s.entries) {
          const kt = this.check(entry.keyKind.value, scope);
          const vt = this.check(entry.value, scope);
          k = k === undefined ? kt : join(k, kt);
          v = v === undefined ? vt : join(v, vt);
        }
        return mapType(asCel(k ?? DYN) as never, asCel(v ?? DYN));
      }
      case 'comprehensionExpr': {
        const c = kind.value;
        const range = this.check(c.iterRange, scope);
        let iter: T;
        if (range.kind === 'list') iter = range.element;
        else if (range.kind === 'map') iter = range.key;
        else if (isStruct(range)) iter = S;
        else if (isDyn(range)) iter = DYN;
        else return this.fail(c.iterRange.id, `cannot iterate over ${typeName(range)}`);
        const accu = this.check(c.accuInit, scope);
        const inner = new Map(scope);
        inner.set(c.iterVar, iter);
        inner.set(c.accuVar, accu);
        this.check(c.loopCondition, inner);
        this.check(c.loopStep, inner);
        const resultScope = new Map(scope);
        resultScope.set(c.accuVar, accu);
        return this.check(c.result, resultScope);
      }
      default:
        return this.fail(e.id, `unsupported expression (${kind.case})`);
    }
  }

  constant(e: Expr, c: Expr): T {
    switch (c.constantKind.case) {
      case 'boolValue':
        return CelScalar.BOOL;
      case 'int64Value':
        return CelScalar.INT;
      case 'uint64Value':
        return CelScalar.UINT;
      case 'doubleValue':
        return CelScalar.DOUBLE;
      case 'stringValue':
        return S;
      case 'bytesValue':
        return CelScalar.BYTES;
      case 'nullValue':
        return CelScalar.NULL;
      default:
        return this.fail(e.id, `unsupported constant (${c.constantKind.case})`);
    }
  }

  call(e: Expr, call: Expr, scope: ReadonlyMap<string, T>): T {
    const fn: string = call.function;
    const target: T | undefined = call.target ? this.check(call.target, scope) : undefined;
    const args: T[] = call.args.map((a: Expr) => this.check(a, scope));
    const want = (t: T, what: string, id: bigint) => {
      if (!isDyn(t) && !isScalar(t, 'bool')) this.fail(id, `${what} must be a bool; this is ${typeName(t)}`);
    };
    switch (fn) {
      case '_&&_':
      case '_||_':
        want(args[0]!, `the operands of ${fn === '_&&_' ? '&&' : '||'}`, call.args[0].id);
        want(args[1]!, `the operands of ${fn === '_&&_' ? '&&' : '||'}`, call.args[1].id);
        return CelScalar.BOOL;
      case '@not_strictly_false':
        return CelScalar.BOOL;
      case '_?_:_':
        want(args[0]!, 'the condition of ?:', call.args[0].id);
        return join(args[1]!, args[2]!);
      case '_==_':
      case '_!=_':
        if (!sameKind(args[0]!, args[1]!)) {
          this.fail(e.id, `cannot compare ${typeName(args[0]!)} with ${typeName(args[1]!)}`);
        }
        return CelScalar.BOOL;
      case '_[_]': {
        const [c, i] = args as [T, T];
        if (c.kind === 'list') {
          if (!isDyn(i) && !isScalar(i, 'int') && !isScalar(i, 'uint'))
            this.fail(e.id, `a list index must be an int; this is ${typeName(i)}`);
          return c.element;
        }
        if (c.kind === 'map') {
          if (!assignable(c.key, i)) this.fail(e.id, `a key of ${typeName(c)} cannot be ${typeName(i)}`);
          return c.value;
        }
        if (isStruct(c)) {
          if (!isDyn(i) && !isScalar(i, 'string')) this.fail(e.id, `a field name must be a string`);
          return DYN;
        }
        if (isDyn(c)) return DYN;
        return this.fail(e.id, `cannot index ${typeName(c)}`);
      }
      case 'matches': {
        // A constant pattern is compiled now, so a bad regular expression is a config error, not a 403 later.
        const p = call.args[0];
        if (p?.exprKind.case === 'constExpr' && p.exprKind.value.constantKind.case === 'stringValue') {
          const probe = plan(
            this.env,
            parse(`"".matches(${JSON.stringify(p.exprKind.value.constantKind.value)})`),
          )();
          if (isCelError(probe)) this.fail(p.id, probe.message);
        }
        break;
      }
    }
    const group = this.env.funcs.find(fn);
    if (group === undefined) return this.fail(e.id, `undeclared function '${fn}'`);
    const results: CelType[] = [];
    for (const overload of group) {
      if ((overload.target === undefined) !== (target === undefined)) continue;
      if (overload.arguments.length !== args.length) continue;
      if (target !== undefined && !assignable(overload.target!, target)) continue;
      if (!overload.arguments.every((p, i) => assignable(p, args[i]!))) continue;
      results.push(overload.result);
    }
    if (results.length === 0) {
      const shown = `${target === undefined ? '' : `${typeName(target)}.`}(${args.map(typeName).join(', ')})`;
      return this.fail(e.id, `no matching overload for '${displayName(fn)}' applied to ${shown}`);
    }
    const first = String(results[0]);
    return results.every((r) => String(r) === first) ? results[0]! : DYN;
  }
}

function displayName(fn: string): string {
  const ops: Record<string, string> = {
    '_+_': '+',
    '_-_': '-',
    '_*_': '*',
    '_/_': '/',
    '_%_': '%',
    '-_': 'unary -',
    '!_': '!',
    '_<_': '<',
    '_<=_': '<=',
    '_>_': '>',
    '_>=_': '>=',
    '@in': 'in',
  };
  return ops[fn] ?? fn;
}
