/**
 * `openapi`: validates requests against the operation an OpenAPI 3.0/3.1 document describes for their method and
 * path, before the upstream sees them: path, query, header and cookie parameters, the content type, and a JSON
 * body (read up to `maxBodyBytes`). Every violation is listed in one 400 `openapi_request_invalid`, each with a
 * JSON pointer into the request and a message. The document is read and every schema compiled once per config
 * (and shared by configs that load the same document unchanged); a document that cannot be read or compiled is a
 * config error naming the file and the place in it.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { byteSize } from '../../config/primitives.js';
import type { LocalReply, StageContext, StageResult } from '../../proxy/stage.js';
import { type PolicyKind, PolicyPhase } from '../policy.js';
import { OpenApiError, parseOpenApi, serverBasePath } from './document.js';
import {
  bodyType,
  type CompiledDocument,
  type CompiledOperation,
  checkParameters,
  compileDocument,
  findOperation,
  isJsonType,
  MAX_VIOLATIONS,
  type Violation,
  violations,
} from './validate.js';

const schema = z
  .strictObject({
    document: z
      .string()
      .min(1)
      .describe('The OpenAPI 3.0 or 3.1 document (YAML or JSON), relative to the config file.'),
    basePath: z
      .string()
      .regex(/^(\/[^/?#]+)*$/, {
        message: 'expected a path such as "/api" (no trailing slash), or "" for none',
      })
      .optional()
      .describe(
        "Path in front of the document's paths on this gateway. Absent: the path of the document's first `servers` URL (`https://api.example.com/v1` → `/v1`).",
      ),
    operations: z
      .array(z.string().min(1))
      .optional()
      .describe(
        'operationIds this policy checks; requests for other operations count as unknown. Absent: all.',
      ),
    unknownOperations: z
      .enum(['reject', 'allow'])
      .default('reject')
      .describe(
        '`reject`: a request the document has no operation for gets 404 `openapi_operation_not_found`; `allow`: it goes on unchecked.',
      ),
    maxBodyBytes: byteSize
      .default(1024 * 1024)
      .describe('Largest JSON body validated; a longer one is refused (400) rather than passed unchecked.'),
    apiVersion: z
      .string()
      .optional()
      .describe(
        "Check only requests of this version of the route's API (docs/api-versions.md): one policy per version's document.",
      ),
  })
  .describe('Validate requests against an OpenAPI 3.0/3.1 document (docs/openapi.md).');

export type OpenApiPolicyConfig = z.output<typeof schema>;

interface Loaded {
  readonly compiled: CompiledDocument;
  readonly basePath: string;
}

// Compiling a large document costs tens of ms: `trellis validate`, every reload and each worker reuse it while the
// file is unchanged (keyed by path and content hash).
const cache = new Map<string, CompiledDocument>();

function documentPath(c: OpenApiPolicyConfig, baseDir: string | undefined): string {
  return isAbsolute(c.document) ? c.document : resolve(baseDir ?? process.cwd(), c.document);
}

/** Reads and compiles the policy's document; throws OpenApiError. */
export function loadDocument(c: OpenApiPolicyConfig, baseDir?: string): Loaded {
  const file = documentPath(c, baseDir);
  let text: string;
  try {
    if (!statSync(file).isFile()) throw new Error('not a file');
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new OpenApiError(
      file,
      '',
      `cannot read the document (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  const key = `${file}\u0000${createHash('sha256').update(text).digest('hex')}`;
  let compiled = cache.get(key);
  if (compiled === undefined) {
    compiled = compileDocument(parseOpenApi(text, c.document));
    if (cache.size >= 16) cache.delete(cache.keys().next().value!);
    cache.set(key, compiled);
  }
  return { compiled, basePath: c.basePath ?? serverBasePath(compiled.doc.servers[0]) };
}

function invalid(policy: string, list: Violation[], truncated: boolean): LocalReply {
  const n = list.length;
  return {
    kind: 'error',
    code: 'openapi_request_invalid',
    detail: `policy ${policy}: ${n}${truncated ? '+' : ''} violation${n === 1 ? '' : 's'}: ${list
      .slice(0, 3)
      .map((v) => `${v.pointer || '/'} ${v.message}`)
      .join('; ')}${n > 3 ? '; ...' : ''}`,
    extensions: { errors: list },
  };
}

export const openApiPolicy: PolicyKind<OpenApiPolicyConfig> = {
  type: 'openapi',
  phase: PolicyPhase.validate,
  schema,
  resolvePaths: (c, baseDir) => ({ ...c, document: resolve(baseDir, c.document) }),
  validate(c, ctx) {
    let loaded: Loaded;
    try {
      loaded = loadDocument(c, ctx.baseDir);
    } catch (err) {
      if (!(err instanceof OpenApiError)) throw err;
      ctx.issue(['document'], `${err.file}${err.where === '' ? '' : ` at ${err.where}`}: ${err.problem}`);
      return;
    }
    c.operations?.forEach((id, i) => {
      if (!loaded.compiled.byId.has(id)) {
        const ids = [...loaded.compiled.byId.keys()];
        ctx.issue(
          ['operations', i],
          `${c.document} has no operation "${id}"${ids.length > 0 ? `; it has ${ids.slice(0, 20).join(', ')}${ids.length > 20 ? ', ...' : ''}` : ''}`,
        );
      }
    });
  },
  compile(c, ctx) {
    let loaded: Loaded;
    try {
      loaded = loadDocument(c);
    } catch (err) {
      if (err instanceof OpenApiError) throw new Error(`${ctx.source}.document: ${err.message}`);
      throw err;
    }
    const { compiled, basePath } = loaded;
    const only =
      c.operations === undefined ? undefined : new Set(c.operations.map((id) => compiled.byId.get(id)));
    if (only?.has(undefined)) throw new Error(`${ctx.source}.operations: unknown operation in ${c.document}`);
    const name = ctx.name;
    const allowUnknown = c.unknownOperations === 'allow';
    const limit = c.maxBodyBytes;
    const version = c.apiVersion;
    const file = c.document;

    const notFound = (detail: string): LocalReply | undefined =>
      allowUnknown
        ? undefined
        : { kind: 'error', code: 'openapi_operation_not_found', detail: `policy ${name}: ${detail}` };

    return {
      request: {
        name,
        onRequest: function openapi(sc: StageContext): StageResult {
          const v = sc.apiVersion;
          if (version !== undefined && v?.version !== version) return undefined;
          // The document's paths: without a version's path segment and without the base path.
          let path = sc.path;
          if (v !== undefined && v.pathSegment !== '' && path.startsWith(v.pathSegment))
            path = path.slice(v.pathSegment.length) || '/';
          if (basePath !== '') {
            if (path !== basePath && !path.startsWith(`${basePath}/`))
              return notFound(`${sc.path} is outside ${basePath}, the base path of ${file}`);
            path = path.slice(basePath.length) || '/';
          }
          const m = findOperation(compiled, sc.method, path);
          if (m.kind === 'none') return notFound(`${file} has no path that matches ${path}`);
          if (m.kind === 'method')
            return notFound(
              `${file} has no ${sc.method} operation for ${path} (it has ${m.allowed.join(', ')})`,
            );
          const op = m.operation;
          if (only !== undefined && !only.has(op))
            return notFound(
              `${op.op.operationId ?? op.op.where} is not among the operations this policy checks`,
            );
          if (op.op.operationId !== undefined && sc.operation === undefined) sc.operation = op.op.operationId;
          const out: Violation[] = [];
          checkParameters(op, { pathParams: m.params, query: sc.query, headers: sc.headers }, out);
          return checkBody(op, sc, out, limit, name);
        },
      },
    };
  },
};

function checkBody(
  op: CompiledOperation,
  sc: StageContext,
  out: Violation[],
  limit: number,
  name: string,
): StageResult {
  const body = op.body;
  const ct = sc.headers['content-type'];
  // HTTP/1.1 says so in its framing fields; an HTTP/2 request may carry a body without Content-Length, so there a
  // content type stands for one (an empty body read below still counts as none).
  const length = sc.headers['content-length'];
  const hasBody =
    sc.headers['transfer-encoding'] !== undefined ||
    (length !== undefined ? length !== '0' : ct !== undefined);
  if (body === undefined || !hasBody) {
    if (body?.required && !hasBody) out.push({ pointer: '/body', message: 'a request body is required' });
    return out.length === 0 ? undefined : invalid(name, out, false);
  }
  const type = ct === undefined ? undefined : bodyType(op, ct);
  if (type === undefined) {
    out.push({
      pointer: '/header/content-type',
      message:
        ct === undefined
          ? `is required with a body; expected ${body.types.map((t) => t.type).join(', ')}`
          : `${ct.split(';')[0]} is not accepted; expected ${body.types.map((t) => t.type).join(', ')}`,
    });
    return invalid(name, out, false);
  }
  const validate = type.validate;
  if (validate === undefined || !isJsonType(ct!))
    return out.length === 0 ? undefined : invalid(name, out, false);
  const peek = sc.peekBody?.(limit);
  if (peek === undefined) return out.length === 0 ? undefined : invalid(name, out, false);
  return peek.then(({ data, complete }) => {
    if (!complete) {
      out.push({
        pointer: '/body',
        message: `is larger than ${limit} bytes, the most this policy validates`,
      });
      return invalid(name, out, false);
    }
    if (data.length === 0) {
      if (body.required) out.push({ pointer: '/body', message: 'a request body is required' });
      return out.length === 0 ? undefined : invalid(name, out, false);
    }
    let value: unknown;
    try {
      value = JSON.parse(data.toString('utf8'));
    } catch (err) {
      out.push({ pointer: '/body', message: `is not valid JSON: ${(err as Error).message}` });
      return invalid(name, out, false);
    }
    if (!validate(value)) violations(validate.errors, '/body', out);
    return out.length === 0 ? undefined : invalid(name, out, out.length >= MAX_VIOLATIONS);
  });
}
