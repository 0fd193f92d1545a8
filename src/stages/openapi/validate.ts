/**
 * An OpenAPI document compiled for request validation, once per config: a matcher from method and path to the
 * operation, and per operation one ajv validator for each parameter location and each JSON request body media
 * type. Validating a request collects every violation as a JSON pointer into the request (`/path/petId`,
 * `/query/limit`, `/header/x-request-tag`, `/body/tags/0`) with a message.
 *
 * OpenAPI 3.1 schemas are JSON Schema 2020-12 (ajv's 2020 mode). OpenAPI 3.0 schemas are rewritten to draft-07
 * first: `nullable: true` becomes a `null` type (and a `null` enum member), boolean `exclusiveMinimum` /
 * `exclusiveMaximum` become numbers. In both, `readOnly` properties are not required in requests, and the
 * OpenAPI formats (int32, int64, float, double, byte, binary, password) are known. `$ref`s resolve against the
 * whole document: each schema is compiled by its JSON pointer in it.
 */
import AjvModule, { type ErrorObject, type ValidateFunction } from 'ajv';
import Ajv2020Module from 'ajv/dist/2020.js';
import formatsModule from 'ajv-formats';
import {
  type HttpMethodLower,
  type OpenApiDocument,
  OpenApiError,
  type OpenApiOperation,
  type OpenApiParameter,
  resolvePointer,
} from './document.js';

const Ajv = AjvModule.default;
const Ajv2020 = Ajv2020Module.default;
const addFormats = formatsModule.default;
type AjvInstance = InstanceType<typeof Ajv>;

/** One violation: where in the request, and what is wrong. */
export interface Violation {
  readonly pointer: string;
  readonly message: string;
}

/** Most violations listed in one reply: a body can have as many as it has bytes. */
export const MAX_VIOLATIONS = 100;

interface ParamGroup {
  readonly params: readonly OpenApiParameter[];
  readonly validate: ValidateFunction;
}

export interface CompiledOperation {
  readonly op: OpenApiOperation;
  readonly location: Readonly<Record<'path' | 'query' | 'header' | 'cookie', ParamGroup | undefined>>;
  /** Media types of the body: lower-case type (may be `application/*` or `*\/*`) → validator of a JSON body. */
  readonly body:
    | {
        readonly required: boolean;
        readonly types: readonly { readonly type: string; readonly validate: ValidateFunction | undefined }[];
      }
    | undefined;
}

interface PathEntry {
  readonly regex: RegExp;
  readonly names: readonly string[];
  readonly methods: Map<string, CompiledOperation>;
  /** Literal characters: a concrete path beats a template (OpenAPI's rule). */
  readonly literal: number;
}

export interface CompiledDocument {
  readonly doc: OpenApiDocument;
  readonly byId: ReadonlyMap<string, CompiledOperation>;
  /** Path entries by segment count, concrete ones first. */
  readonly paths: ReadonlyMap<number, readonly PathEntry[]>;
  readonly operations: readonly CompiledOperation[];
}

const DOC_ID = 'urn:trellis:openapi:document';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** OpenAPI 3.0's schema dialect rewritten to draft-07; readOnly properties dropped from `required` (both). */
function prepare(node: unknown, dialect: '3.0' | '3.1', root: unknown): unknown {
  if (Array.isArray(node)) return node.map((n) => prepare(n, dialect, root));
  if (!isObj(node)) return node;
  const out: Obj = {};
  for (const k of Object.keys(node)) out[k] = prepare(node[k], dialect, root);
  if (dialect === '3.0') {
    if (out.nullable === true) {
      if (typeof out.type === 'string') out.type = [out.type, 'null'];
      else if (Array.isArray(out.type) && !out.type.includes('null')) out.type = [...out.type, 'null'];
      if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
      delete out.nullable;
      if (
        out.type === undefined &&
        (out.allOf !== undefined || out.oneOf !== undefined || out.anyOf !== undefined)
      ) {
        return { anyOf: [out, { type: 'null' }] };
      }
    } else if (typeof out.nullable === 'boolean') delete out.nullable;
    for (const [ex, bound] of [
      ['exclusiveMinimum', 'minimum'],
      ['exclusiveMaximum', 'maximum'],
    ] as const) {
      if (out[ex] === true && typeof out[bound] === 'number') {
        out[ex] = out[bound];
        delete out[bound];
      } else if (typeof out[ex] === 'boolean') delete out[ex];
    }
  }
  if (Array.isArray(out.required) && isObj(out.properties)) {
    const props = out.properties;
    const readOnly = (name: unknown) => {
      if (typeof name !== 'string') return false;
      let p = props[name];
      if (isObj(p) && typeof p.$ref === 'string' && p.$ref.startsWith('#/'))
        p = resolvePointer(root, p.$ref.slice(1));
      return isObj(p) && p.readOnly === true;
    };
    if (out.required.some(readOnly)) out.required = out.required.filter((n) => !readOnly(n));
  }
  return out;
}

function newAjv(doc: OpenApiDocument, root: unknown, coerce: boolean): AjvInstance {
  const options = {
    strict: false,
    allErrors: true,
    coerceTypes: coerce ? ('array' as const) : false,
    validateSchema: false,
    messages: true,
  };
  const ajv: AjvInstance = doc.dialect === '3.1' ? new Ajv2020(options) : new Ajv(options);
  addFormats(ajv);
  ajv.addFormat('int32', {
    type: 'number',
    validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31,
  });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isInteger(n) });
  for (const f of ['float', 'double']) ajv.addFormat(f, { type: 'number', validate: () => true });
  ajv.addFormat('byte', /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/);
  for (const f of ['binary', 'password']) ajv.addFormat(f, true);
  ajv.addSchema(root as Obj, DOC_ID);
  return ajv;
}

const refTo = (pointer: string) => ({ $ref: `${DOC_ID}#${encodeURI(pointer)}` });

/**
 * Compiles every operation of the document (all its schemas, so a broken one is a config error now, not a 500
 * later). Throws OpenApiError naming the file and the place.
 */
export function compileDocument(doc: OpenApiDocument): CompiledDocument {
  const root = prepare(doc.root, doc.dialect, doc.root);
  const params = newAjv(doc, root, true);
  const bodies = newAjv(doc, root, false);
  const compile = (ajv: AjvInstance, schema: Obj, where: string): ValidateFunction => {
    try {
      return ajv.compile(schema);
    } catch (err) {
      throw new OpenApiError(doc.file, where, `invalid schema: ${(err as Error).message}`);
    }
  };
  const operations: CompiledOperation[] = [];
  const byId = new Map<string, CompiledOperation>();
  const entries = new Map<string, PathEntry>();
  for (const op of doc.operations) {
    const location = { path: undefined, query: undefined, header: undefined, cookie: undefined } as Record<
      'path' | 'query' | 'header' | 'cookie',
      ParamGroup | undefined
    >;
    for (const loc of ['path', 'query', 'header', 'cookie'] as const) {
      // Accept, Content-Type and Authorization header parameters are ignored (OpenAPI 3, Parameter Object).
      const list = op.parameters.filter(
        (p) => p.in === loc && !(loc === 'header' && /^(accept|content-type|authorization)$/i.test(p.name)),
      );
      if (list.length === 0) continue;
      const properties: Obj = {};
      const required: string[] = [];
      for (const p of list) {
        const key = loc === 'header' ? p.name.toLowerCase() : p.name;
        properties[key] = p.schemaPointer === undefined ? {} : refTo(p.schemaPointer);
        if (p.required) required.push(key);
      }
      const schema = { type: 'object', properties, required };
      location[loc] = { params: list, validate: compile(params, schema, `${op.where}.parameters`) };
    }
    let body: CompiledOperation['body'];
    if (op.body !== undefined) {
      body = {
        required: op.body.required,
        types: op.body.content.map((c) => ({
          type: c.type.split(';')[0]!.trim(),
          validate:
            c.schemaPointer === undefined || !isJsonType(c.type)
              ? undefined
              : compile(bodies, refTo(c.schemaPointer), `${op.body!.where}.content.${c.type}.schema`),
        })),
      };
    }
    const compiled: CompiledOperation = { op, location, body };
    operations.push(compiled);
    if (op.operationId !== undefined) byId.set(op.operationId, compiled);
    let entry = entries.get(op.path);
    if (entry === undefined) {
      const names: string[] = [];
      let literal = 0;
      const source = op.path
        .split(/(\{[^}/]+\})/)
        .map((part) => {
          if (part.startsWith('{') && part.endsWith('}')) {
            names.push(part.slice(1, -1));
            return '([^/]+)';
          }
          literal += part.length;
          return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        })
        .join('');
      entry = { regex: new RegExp(`^${source}$`), names, methods: new Map(), literal };
      entries.set(op.path, entry);
    }
    entry.methods.set(op.method, compiled);
  }
  const paths = new Map<number, PathEntry[]>();
  for (const [path, e] of entries) {
    const n = segmentCount(path);
    let list = paths.get(n);
    if (list === undefined) paths.set(n, (list = []));
    list.push(e);
  }
  for (const list of paths.values())
    list.sort((a, b) => a.names.length - b.names.length || b.literal - a.literal);
  return { doc, byId, paths, operations };
}

/** Slashes in a path: the index key of the document's paths (a template segment never holds one). */
function segmentCount(path: string): number {
  let n = 0;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 47) n++;
  return n;
}

/** `application/json`, `application/problem+json`, `application/*` and `*\/*` hold JSON bodies we can check. */
export function isJsonType(type: string): boolean {
  const t = type.split(';')[0]!.trim().toLowerCase();
  return t === 'application/json' || t.endsWith('+json') || t === 'application/*' || t === '*/*';
}

export type OperationMatch =
  | { readonly kind: 'match'; readonly operation: CompiledOperation; readonly params: Record<string, string> }
  | { readonly kind: 'method'; readonly allowed: readonly string[] }
  | { readonly kind: 'none' };

/** The operation for a method and a path (relative to the document's base path). HEAD falls back to GET. */
export function findOperation(compiled: CompiledDocument, method: string, path: string): OperationMatch {
  const list = compiled.paths.get(segmentCount(path));
  if (list === undefined) return { kind: 'none' };
  const m = method.toLowerCase() as HttpMethodLower;
  for (const e of list) {
    const hit = e.regex.exec(path);
    if (hit === null) continue;
    const operation = e.methods.get(m) ?? (m === 'head' ? e.methods.get('get') : undefined);
    if (operation === undefined)
      return { kind: 'method', allowed: [...e.methods.keys()].map((x) => x.toUpperCase()) };
    const params: Record<string, string> = {};
    e.names.forEach((n, i) => {
      params[n] = hit[i + 1]!;
    });
    return { kind: 'match', operation, params };
  }
  return { kind: 'none' };
}

/** What validation reads of a request. */
export interface RequestParts {
  readonly pathParams: Readonly<Record<string, string>>;
  readonly query: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** Ajv's errors as violations under `base` (`/query`, `/body`). */
export function violations(
  errors: readonly ErrorObject[] | null | undefined,
  base: string,
  out: Violation[],
): void {
  if (!errors) return;
  for (const e of errors) {
    if (out.length >= MAX_VIOLATIONS) return;
    const at = base + e.instancePath;
    if (e.keyword === 'required') {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      out.push({ pointer: `${at}/${escapeToken(missing)}`, message: 'is required' });
    } else if (e.keyword === 'additionalProperties' || e.keyword === 'unevaluatedProperties') {
      const p = e.params as { additionalProperty?: string; unevaluatedProperty?: string };
      const extra = p.additionalProperty ?? p.unevaluatedProperty ?? '';
      out.push({ pointer: `${at}/${escapeToken(extra)}`, message: 'is not allowed here' });
    } else if (e.keyword === 'const') {
      const value = (e.params as { allowedValue: unknown }).allowedValue;
      out.push({ pointer: at, message: `must be ${JSON.stringify(value)}` });
    } else if (e.keyword === 'enum') {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
      out.push({
        pointer: at,
        message: `must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`,
      });
    } else if (e.keyword === 'if') {
      // The failing branch has its own errors.
    } else out.push({ pointer: at, message: e.message ?? `fails ${e.keyword}` });
  }
}

const escapeToken = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** Values of the parameters of one location, shaped for their schemas (arrays split by style). */
function collect(
  params: readonly OpenApiParameter[],
  read: (p: OpenApiParameter) => string[] | undefined,
): Obj {
  const out: Obj = {};
  for (const p of params) {
    const values = read(p);
    if (values === undefined || values.length === 0) continue;
    const key = p.in === 'header' ? p.name.toLowerCase() : p.name;
    const type = p.schema?.type;
    const isArray = type === 'array' || (Array.isArray(type) && type.includes('array'));
    if (isArray) {
      const sep =
        p.style === 'spaceDelimited'
          ? ' '
          : p.style === 'pipeDelimited'
            ? '|'
            : p.in === 'query' && p.explode
              ? ''
              : ',';
      out[key] = sep === '' ? values : values.flatMap((v) => v.split(sep));
    } else out[key] = values[0];
  }
  return out;
}

function queryMap(query: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  if (query === '') return map;
  for (const [k, v] of new URLSearchParams(query)) {
    const list = map.get(k);
    if (list === undefined) map.set(k, [v]);
    else list.push(v);
  }
  return map;
}

function cookieMap(header: string | string[] | undefined): Map<string, string[]> {
  const map = new Map<string, string[]>();
  const text = Array.isArray(header) ? header.join('; ') : (header ?? '');
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const k = part.slice(0, eq).trim();
    if (!map.has(k)) map.set(k, [part.slice(eq + 1).trim()]);
  }
  return map;
}

/** Checks path parameters, query, headers and cookies; pushes violations. */
export function checkParameters(c: CompiledOperation, req: RequestParts, out: Violation[]): void {
  const path = c.location.path;
  if (path !== undefined) {
    const values: Obj = {};
    for (const p of path.params) {
      const raw = req.pathParams[p.name];
      if (raw === undefined) continue;
      try {
        values[p.name] = decodeURIComponent(raw);
      } catch {
        out.push({ pointer: `/path/${escapeToken(p.name)}`, message: 'is not valid percent-encoding' });
        values[p.name] = raw;
      }
    }
    if (!path.validate(values)) violations(path.validate.errors, '/path', out);
  }
  const query = c.location.query;
  if (query !== undefined) {
    const map = queryMap(req.query);
    const values = collect(query.params, (p) => {
      if (p.style === 'deepObject') return undefined;
      return map.get(p.name);
    });
    for (const p of query.params) {
      if (p.style !== 'deepObject') continue;
      const obj: Obj = {};
      const prefix = `${p.name}[`;
      for (const [k, v] of map)
        if (k.startsWith(prefix) && k.endsWith(']')) obj[k.slice(prefix.length, -1)] = v[0];
      if (Object.keys(obj).length > 0) values[p.name] = obj;
    }
    if (!query.validate(values)) violations(query.validate.errors, '/query', out);
  }
  const header = c.location.header;
  if (header !== undefined) {
    const values = collect(header.params, (p) => {
      const v = req.headers[p.name.toLowerCase()];
      return v === undefined ? undefined : Array.isArray(v) ? v : [v];
    });
    if (!header.validate(values)) violations(header.validate.errors, '/header', out);
  }
  const cookie = c.location.cookie;
  if (cookie !== undefined) {
    const map = cookieMap(req.headers.cookie);
    const values = collect(cookie.params, (p) => map.get(p.name));
    if (!cookie.validate(values)) violations(cookie.validate.errors, '/cookie', out);
  }
}

/** The body media type entry for a request content type: exact, then `type/*`, then `*\/*`. */
export function bodyType(
  c: CompiledOperation,
  contentType: string,
): { readonly type: string; readonly validate: ValidateFunction | undefined } | undefined {
  const types = c.body?.types;
  if (types === undefined) return undefined;
  const t = contentType.split(';')[0]!.trim().toLowerCase();
  const slash = t.indexOf('/');
  return (
    types.find((x) => x.type === t) ??
    types.find((x) => slash > 0 && x.type === `${t.slice(0, slash)}/*`) ??
    types.find((x) => x.type === '*/*')
  );
}
