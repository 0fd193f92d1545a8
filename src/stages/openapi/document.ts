/**
 * Reading an OpenAPI 3.0 or 3.1 document (YAML or JSON) into the operations Trellis routes and validates: one
 * entry per path and method, its parameters (path-level and operation-level merged, `$ref`s resolved) and its
 * request body. Shared by `trellis import openapi` and the `openapi` policy. Problems are errors naming the file
 * and the place in the document (`paths./pets/{petId}.get.parameters[0]`); schemas themselves are ajv's to check
 * (src/stages/openapi/validate.ts).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
export type HttpMethodLower = (typeof HTTP_METHODS)[number];

export class OpenApiError extends Error {
  constructor(
    readonly file: string,
    readonly where: string,
    readonly problem: string,
  ) {
    super(`${file}${where === '' ? '' : `: ${where}`}: ${problem}`);
  }
}

export interface OpenApiParameter {
  readonly name: string;
  readonly in: 'path' | 'query' | 'header' | 'cookie';
  readonly required: boolean;
  /** JSON pointer of the parameter's schema in the document (for ajv to resolve `$ref`s from the root). */
  readonly schemaPointer: string | undefined;
  readonly schema: Record<string, unknown> | undefined;
  readonly style: string;
  readonly explode: boolean;
}

export interface OpenApiMediaType {
  readonly type: string;
  readonly schemaPointer: string | undefined;
}

export interface OpenApiOperation {
  readonly operationId: string | undefined;
  readonly method: HttpMethodLower;
  /** The path as the document writes it: `/pets/{petId}`. */
  readonly path: string;
  /** `paths./pets/{petId}.get`, for messages. */
  readonly where: string;
  readonly summary: string | undefined;
  readonly tags: readonly string[];
  readonly parameters: readonly OpenApiParameter[];
  readonly body:
    | { readonly required: boolean; readonly content: readonly OpenApiMediaType[]; readonly where: string }
    | undefined;
}

export interface OpenApiDocument {
  readonly file: string;
  /** `3.0` or `3.1`. */
  readonly dialect: '3.0' | '3.1';
  readonly version: string;
  readonly title: string;
  readonly infoVersion: string;
  /** The URLs of `servers` (the first is the one import uses). */
  readonly servers: readonly string[];
  /** The parsed document (schemas are validated in place of it, by JSON pointer). */
  readonly root: Record<string, unknown>;
  readonly operations: readonly OpenApiOperation[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** RFC 6901 escaping of one reference token. */
export const pointerToken = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** Reads and checks an OpenAPI document; throws OpenApiError. */
export function loadOpenApiFile(file: string): OpenApiDocument {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new OpenApiError(
      file,
      '',
      `cannot read the document: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  return parseOpenApi(text, file);
}

export function parseOpenApi(text: string, file: string): OpenApiDocument {
  let data: unknown;
  try {
    // JSON is YAML; the yaml package reports the line of a syntax error either way.
    data = parseYaml(text, { prettyErrors: true, uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    throw new OpenApiError(file, '', `not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!isObj(data))
    throw new OpenApiError(file, '', 'expected an OpenAPI document (an object with "openapi")');
  const fail = (where: string, problem: string): never => {
    throw new OpenApiError(file, where, problem);
  };
  const version = data.openapi;
  if (typeof version !== 'string') {
    if (typeof data.swagger === 'string')
      fail('swagger', 'Swagger 2.0 is not supported; convert the document to OpenAPI 3 first');
    fail('openapi', 'expected the OpenAPI version, such as "3.0.3" or "3.1.0"');
  }
  const m = /^3\.([01])\.\d+(-.+)?$/.exec(version as string);
  if (m === null) fail('openapi', `unsupported version "${version}"; expected 3.0.x or 3.1.x`);
  const dialect = m![1] === '0' ? '3.0' : '3.1';
  const info = data.info;
  if (!isObj(info) || typeof info.title !== 'string' || typeof info.version !== 'string')
    fail('info', 'expected an object with "title" and "version"');
  const servers: string[] = [];
  if (data.servers !== undefined) {
    if (!Array.isArray(data.servers)) fail('servers', 'expected a list');
    (data.servers as unknown[]).forEach((s, i) => {
      if (!isObj(s) || typeof s.url !== 'string') fail(`servers[${i}]`, 'expected an object with "url"');
      servers.push(serverUrl(s as Obj));
    });
  }
  const paths = data.paths ?? {};
  if (!isObj(paths)) fail('paths', 'expected an object of paths');
  if (data.paths === undefined && dialect === '3.0') fail('paths', 'required in OpenAPI 3.0');

  /** Follows local `$ref`s (`#/components/...`) of non-schema objects; returns the object and its pointer. */
  const deref = (value: unknown, pointer: string, where: string): { value: unknown; pointer: string } => {
    let v = value;
    let p = pointer;
    for (let hops = 0; isObj(v) && typeof v.$ref === 'string'; hops++) {
      if (hops > 20) fail(where, 'too many $ref hops (a cycle?)');
      const ref = v.$ref as string;
      if (!ref.startsWith('#/'))
        fail(where, `external $ref "${ref}" is not supported; bundle the document into one file`);
      p = ref.slice(1);
      v = resolvePointer(data, p);
      if (v === undefined) fail(where, `$ref "${ref}" points at nothing in the document`);
    }
    return { value: v, pointer: p };
  };

  const operations: OpenApiOperation[] = [];
  const ids = new Map<string, string>();
  for (const [path, rawItem] of Object.entries(paths as Obj)) {
    const at = `paths.${path}`;
    if (!path.startsWith('/')) fail(at, 'a path must start with "/"');
    const itemPointer = `/paths/${pointerToken(path)}`;
    const { value: item, pointer: itemAt } = deref(rawItem, itemPointer, at);
    if (!isObj(item)) fail(at, 'expected a path item object');
    const templateParams = [...path.matchAll(/\{([^}/]+)\}/g)].map((x) => x[1]!);
    if (/[{}]/.test(path.replace(/\{[^}/]+\}/g, ''))) fail(at, 'unbalanced "{" or "}" in the path template');
    const shared = readParameters((item as Obj).parameters, `${itemAt}/parameters`, `${at}.parameters`);
    for (const method of HTTP_METHODS) {
      const rawOp = (item as Obj)[method];
      if (rawOp === undefined) continue;
      const where = `${at}.${method}`;
      if (!isObj(rawOp)) fail(where, 'expected an operation object');
      const op = rawOp as Obj;
      const opPointer = `${itemAt}/${method}`;
      const own = readParameters(op.parameters, `${opPointer}/parameters`, `${where}.parameters`);
      // Operation-level parameters override path-level ones of the same name and location.
      const byKey = new Map<string, OpenApiParameter>();
      for (const p of [...shared, ...own]) byKey.set(`${p.in}\u0000${p.name.toLowerCase()}`, p);
      const parameters = [...byKey.values()];
      for (const name of templateParams) {
        if (!parameters.some((p) => p.in === 'path' && p.name === name))
          fail(where, `path parameter "${name}" of the template has no "in: path" parameter`);
      }
      for (const p of parameters) {
        if (p.in === 'path' && !templateParams.includes(p.name))
          fail(`${where}.parameters`, `path parameter "${p.name}" is not in the path template ${path}`);
      }
      let operationId: string | undefined;
      if (op.operationId !== undefined) {
        if (typeof op.operationId !== 'string' || op.operationId === '')
          fail(`${where}.operationId`, 'expected a string');
        operationId = op.operationId as string;
        const other = ids.get(operationId);
        if (other !== undefined)
          fail(`${where}.operationId`, `"${operationId}" is also the operationId of ${other}`);
        ids.set(operationId, where);
      }
      let body: OpenApiOperation['body'];
      if (op.requestBody !== undefined) {
        const { value: rb, pointer: rbAt } = deref(
          op.requestBody,
          `${opPointer}/requestBody`,
          `${where}.requestBody`,
        );
        if (!isObj(rb) || !isObj(rb.content))
          fail(`${where}.requestBody`, 'expected an object with "content" (media type → schema)');
        const content = Object.entries((rb as Obj).content as Obj).map(([type, mt]) => {
          if (!isObj(mt)) fail(`${where}.requestBody.content.${type}`, 'expected a media type object');
          const sp = `${rbAt}/content/${pointerToken(type)}/schema`;
          return {
            type: type.toLowerCase(),
            schemaPointer: (mt as Obj).schema === undefined ? undefined : sp,
          };
        });
        body = { required: (rb as Obj).required === true, content, where: `${where}.requestBody` };
      }
      operations.push({
        operationId,
        method,
        path,
        where,
        summary: typeof op.summary === 'string' ? op.summary : undefined,
        tags: Array.isArray(op.tags) ? op.tags.filter((x): x is string => typeof x === 'string') : [],
        parameters,
        body,
      });
    }
  }

  function readParameters(list: unknown, pointer: string, where: string): OpenApiParameter[] {
    if (list === undefined) return [];
    if (!Array.isArray(list)) fail(where, 'expected a list of parameters');
    return (list as unknown[]).map((raw, i) => {
      const w = `${where}[${i}]`;
      const { value: p, pointer: pAt } = deref(raw, `${pointer}/${i}`, w);
      if (!isObj(p)) fail(w, 'expected a parameter object');
      const param = p as Obj;
      if (typeof param.name !== 'string' || param.name === '') fail(`${w}.name`, 'expected a name');
      const loc = param.in;
      if (loc !== 'path' && loc !== 'query' && loc !== 'header' && loc !== 'cookie')
        fail(`${w}.in`, 'expected one of path, query, header, cookie');
      if (loc === 'path' && param.required !== true)
        fail(`${w}.required`, 'a path parameter must be required: true');
      let schemaPointer: string | undefined;
      let schema: Obj | undefined;
      if (param.schema !== undefined) {
        schemaPointer = `${pAt}/schema`;
        schema = isObj(param.schema) ? param.schema : undefined;
      } else if (isObj(param.content)) {
        const [type, mt] = Object.entries(param.content)[0] ?? [];
        if (type !== undefined && isObj(mt) && mt.schema !== undefined) {
          schemaPointer = `${pAt}/content/${pointerToken(type)}/schema`;
          schema = isObj(mt.schema) ? mt.schema : undefined;
        }
      }
      const style =
        typeof param.style === 'string'
          ? param.style
          : loc === 'query' || loc === 'cookie'
            ? 'form'
            : 'simple';
      return {
        name: param.name as string,
        in: loc as OpenApiParameter['in'],
        required: param.required === true,
        schemaPointer,
        schema,
        style,
        explode: typeof param.explode === 'boolean' ? param.explode : style === 'form',
      };
    });
  }

  return {
    file,
    dialect,
    version: version as string,
    title: (info as Obj).title as string,
    infoVersion: (info as Obj).version as string,
    servers,
    root: data,
    operations,
  };
}

/** A server URL with its variables at their defaults. */
function serverUrl(s: Obj): string {
  const vars = isObj(s.variables) ? s.variables : {};
  return (s.url as string).replace(/\{([^}]+)\}/g, (all, name: string) => {
    const v = vars[name];
    return isObj(v) && typeof v.default === 'string' ? v.default : all;
  });
}

/** The path part of a server URL (`https://api.example.com/v1` → `/v1`, `/v1/` → `/v1`); '' for none. */
export function serverBasePath(url: string | undefined): string {
  if (url === undefined) return '';
  let path = url;
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/]*(.*)$/i.exec(url);
  if (m !== null) path = m[1]!;
  path = path.split(/[?#]/)[0]!.replace(/\/+$/, '');
  return path.startsWith('/') ? path : '';
}

export function resolvePointer(root: unknown, pointer: string): unknown {
  if (pointer === '') return root;
  let v: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const token = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(v)) v = v[Number(token)];
    else if (isObj(v)) v = Object.hasOwn(v, token) ? v[token] : undefined;
    else return undefined;
  }
  return v;
}
