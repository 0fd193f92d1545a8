/**
 * REST → gRPC transcoding at run time: the compiled bindings, the request (path variables, query, JSON body → one
 * protobuf message in a gRPC frame) and the response (gRPC frames and status → JSON, NDJSON or SSE). Everything
 * that can be is decided in `compileTranscoder` at config load; per request the work is one binding match, one
 * JSON parse, one proto3-JSON → binary conversion and back.
 */
import {
  type DescEnum,
  type DescField,
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonObject,
  type JsonValue,
  type Registry,
  ScalarType,
  toBinary,
  toJson,
} from '@bufbuild/protobuf';
import protobuf from 'protobufjs';
import { type ErrorCode, errorCatalog } from '../../core/errors.js';
import { GRPC_CODE_NAMES } from '../../core/grpc-codes.js';
import type { LocalReply, StageContext } from '../../proxy/stage.js';
import type {
  ResponseSink,
  ResponseTranslation,
  TranslatedRequest,
  Translator,
} from '../../proxy/translate.js';
import { type HttpBinding, type MethodInfo, TranscodeConfigError } from './protos.js';
import {
  compareSpecificity,
  matchTemplate,
  type PathTemplate,
  parseTemplate,
  type SplitPath,
  splitPath,
  TemplateError,
  templateShape,
} from './template.js';

export interface TranscoderOptions {
  readonly stream: 'ndjson' | 'sse';
  readonly maxBodyBytes: number;
  /** Largest gRPC response message (502 upstream_protocol_error beyond). */
  readonly maxResponseBytes: number;
  readonly emitDefaults: boolean;
  readonly protoFieldNames: boolean;
  readonly ignoreUnknownQueryParameters: boolean;
}

/** One binding, compiled. */
interface Binding {
  readonly method: MethodInfo;
  readonly httpMethod: string;
  readonly template: PathTemplate;
  /** undefined: no body; []: the whole message (`*`); else the field path the body fills. */
  readonly body: readonly DescField[] | undefined;
  /** The response field sent as the body; undefined: the whole message. */
  readonly responseBody: DescField | undefined;
  /** Field paths bound by the path (dotted), which the query may not set. */
  readonly bound: ReadonlySet<string>;
  /** The resolved fields of each path variable, by dotted path. */
  readonly vars: ReadonlyMap<string, readonly DescField[]>;
  /** `{method} {template}`, for messages. */
  readonly label: string;
  /** The body fills a google.api.HttpBody (the whole message or the body field): taken as bytes, not JSON. */
  readonly rawRequest: boolean;
  /** The reply is a google.api.HttpBody: its bytes go out as they are, with its content type. */
  readonly rawResponse: boolean;
}

const HTTP_BODY = 'google.api.HttpBody';

type Match =
  | { kind: 'match'; binding: Binding; vars: Map<string, string> }
  | { kind: 'method_not_allowed'; allow: string[] }
  | { kind: 'none' };

/** gRPC status code → HTTP status (the mapping of google.rpc.Code, as grpc-gateway and Envoy use it). */
export const GRPC_TO_HTTP: readonly number[] = [
  200, // OK
  499, // CANCELLED
  500, // UNKNOWN
  400, // INVALID_ARGUMENT
  504, // DEADLINE_EXCEEDED
  404, // NOT_FOUND
  409, // ALREADY_EXISTS
  403, // PERMISSION_DENIED
  429, // RESOURCE_EXHAUSTED
  400, // FAILED_PRECONDITION
  409, // ABORTED
  400, // OUT_OF_RANGE
  501, // UNIMPLEMENTED
  500, // INTERNAL
  503, // UNAVAILABLE
  500, // DATA_LOSS
  401, // UNAUTHENTICATED
];

/** The gRPC status codes' names, indexed by code. */
export const GRPC_NAMES = GRPC_CODE_NAMES;

/** HTTP status of a reply without grpc-status → gRPC code (gRPC's "HTTP to gRPC Status Code Mapping"). */
function grpcOfHttp(status: number): number {
  switch (status) {
    case 400:
      return 13;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return 12;
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;
    default:
      return 2;
  }
}

const GRPC_REQUEST_HEADERS: Readonly<Record<string, string | null>> = Object.freeze({
  'content-type': 'application/grpc',
  te: 'trailers',
  // The client's encodings are for the JSON body, not for gRPC messages (which we send and accept uncompressed).
  'accept-encoding': null,
  'content-encoding': null,
  'grpc-encoding': null,
  'grpc-accept-encoding': 'identity',
  // The call's deadline is the route's (the exchange sets it for unary calls), not a REST client's to choose.
  'grpc-timeout': null,
  accept: null,
});

/** Upstream response fields never copied to the REST client. */
const NOT_FORWARDED = new Set([
  'content-type',
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'trailer',
  'te',
  'connection',
  'keep-alive',
  'x-request-id',
  'grpc-status',
  'grpc-message',
  'grpc-status-details-bin',
  'grpc-encoding',
  'grpc-accept-encoding',
]);

/** Compiles the bindings of the exposed methods; throws TranscodeConfigError for a rule that cannot work. */
export function compileTranscoder(
  methods: readonly MethodInfo[],
  registry: Registry,
  opts: TranscoderOptions,
  defaultMapping: boolean,
): GrpcTranscoder {
  const byMethod = new Map<string, Binding[]>();
  const shapes = new Map<string, string>();
  const add = (m: MethodInfo, b: HttpBinding, isDefault: boolean) => {
    const label = `${b.method} ${b.path}`;
    const where = `${m.grpcPath} (${label})`;
    if (m.clientStreaming)
      throw new TranscodeConfigError(
        ['protos'],
        `${where}: client-streaming and bidirectional methods cannot be exposed over REST; remove its google.api.http rule or the service from \`services\``,
      );
    let template: PathTemplate;
    try {
      template = parseTemplate(b.path);
    } catch (err) {
      if (err instanceof TemplateError)
        throw new TranscodeConfigError(['protos'], `${m.grpcPath}: ${err.message}`);
      throw err;
    }
    const vars = new Map<string, readonly DescField[]>();
    for (const v of template.variables) {
      const fields = resolveFieldPath(m.input, v.field, `${where}: path variable {${v.field.join('.')}}`);
      const last = fields[fields.length - 1]!;
      if (
        last.fieldKind === 'list' ||
        last.fieldKind === 'map' ||
        (last.fieldKind === 'message' && !wrapperScalar(last.message))
      )
        throw new TranscodeConfigError(
          ['protos'],
          `${where}: path variable {${v.field.join('.')}} must be a singular scalar or enum field`,
        );
      vars.set(v.field.join('.'), fields);
    }
    let body: readonly DescField[] | undefined;
    if (b.body === '*') body = [];
    else if (b.body !== '') body = resolveFieldPath(m.input, b.body.split('.'), `${where}: body "${b.body}"`);
    let responseBody: DescField | undefined;
    if (b.responseBody !== '') {
      const f = m.output.fields.find((x) => x.name === b.responseBody);
      if (f === undefined)
        throw new TranscodeConfigError(
          ['protos'],
          `${where}: response_body "${b.responseBody}" is not a field of ${m.output.typeName}`,
        );
      responseBody = f;
    }
    const key = `${b.method} ${templateShape(template)}`;
    const other = shapes.get(key);
    if (other !== undefined)
      throw new TranscodeConfigError(
        ['protos'],
        `${where}: binds the same method and path as ${other}${isDefault ? ' (the default mapping; set `defaultMapping: false`)' : ''}`,
      );
    shapes.set(key, where);
    const list = byMethod.get(b.method) ?? [];
    const bodyType =
      body === undefined
        ? undefined
        : body.length === 0
          ? m.input.typeName
          : body[body.length - 1]!.fieldKind === 'message'
            ? (body[body.length - 1] as DescField & { message: DescMessage }).message.typeName
            : undefined;
    list.push({
      method: m,
      httpMethod: b.method,
      template,
      body,
      responseBody,
      bound: new Set(vars.keys()),
      vars,
      label,
      rawRequest: bodyType === HTTP_BODY,
      rawResponse: responseBody === undefined && m.output.typeName === HTTP_BODY,
    });
    byMethod.set(b.method, list);
  };
  for (const m of methods) for (const b of m.bindings) add(m, b, false);
  if (defaultMapping) {
    for (const m of methods) {
      if (m.clientStreaming) continue; // not exposed over REST; only an explicit rule is an error
      add(m, { method: 'POST', path: m.grpcPath, body: '*', responseBody: '' }, true);
    }
  }
  for (const list of byMethod.values()) list.sort((a, b) => compareSpecificity(a.template, b.template));
  return new GrpcTranscoder(byMethod, registry, opts);
}

function resolveFieldPath(msg: DescMessage, path: readonly string[], where: string): DescField[] {
  const out: DescField[] = [];
  let cur: DescMessage | undefined = msg;
  for (const name of path) {
    if (cur === undefined)
      throw new TranscodeConfigError(
        ['protos'],
        `${where}: "${name}" is inside a field that is not a message`,
      );
    const f: DescField | undefined = cur.fields.find((x) => x.name === name);
    if (f === undefined)
      throw new TranscodeConfigError(['protos'], `${where}: ${cur.typeName} has no field "${name}"`);
    out.push(f);
    cur = f.fieldKind === 'message' ? f.message : undefined;
  }
  return out;
}

/** The scalar a wrapper type (google.protobuf.Int32Value, ...) wraps; undefined for other messages. */
function wrapperScalar(m: DescMessage): ScalarType | undefined {
  switch (m.typeName) {
    case 'google.protobuf.DoubleValue':
      return ScalarType.DOUBLE;
    case 'google.protobuf.FloatValue':
      return ScalarType.FLOAT;
    case 'google.protobuf.Int64Value':
      return ScalarType.INT64;
    case 'google.protobuf.UInt64Value':
      return ScalarType.UINT64;
    case 'google.protobuf.Int32Value':
      return ScalarType.INT32;
    case 'google.protobuf.UInt32Value':
      return ScalarType.UINT32;
    case 'google.protobuf.BoolValue':
      return ScalarType.BOOL;
    case 'google.protobuf.StringValue':
    case 'google.protobuf.Timestamp':
    case 'google.protobuf.Duration':
    case 'google.protobuf.FieldMask':
      return ScalarType.STRING; // their JSON form is a string
    case 'google.protobuf.BytesValue':
      return ScalarType.BYTES;
    default:
      return undefined;
  }
}

class BadRequest extends Error {}

/** A path or query value (text) as the JSON value of a field of this kind; throws BadRequest. */
function textToJson(f: DescField, text: string, what: string): JsonValue {
  let scalar: ScalarType | undefined;
  let en: DescEnum | undefined;
  switch (f.fieldKind) {
    case 'scalar':
      scalar = f.scalar;
      break;
    case 'enum':
      en = f.enum;
      break;
    case 'list':
      if (f.listKind === 'scalar') scalar = f.scalar;
      else if (f.listKind === 'enum') en = f.enum;
      else scalar = wrapperScalar(f.message);
      break;
    case 'message':
      scalar = wrapperScalar(f.message);
      break;
    default:
      break;
  }
  if (en !== undefined) return /^-?\d+$/.test(text) ? Number(text) : text;
  if (scalar === undefined)
    throw new BadRequest(
      `${what}: field ${f.name} is a ${f.fieldKind} and cannot be set from text; send it in the body`,
    );
  if (scalar === ScalarType.BOOL) {
    if (text === 'true' || text === '1') return true;
    if (text === 'false' || text === '0') return false;
    throw new BadRequest(`${what}: field ${f.name} expects true or false, got "${text}"`);
  }
  // Numbers as strings: the proto3 JSON mapping accepts them for every numeric type, and the parser checks them.
  return text;
}

/** Sets `value` at a field path in a JSON object (keys by json name; a proto-name key for the same field goes). */
function setAt(obj: JsonObject, fields: readonly DescField[], value: JsonValue, append: boolean): void {
  let cur = obj;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.name !== f.jsonName && f.name in cur) {
      cur[f.jsonName] = cur[f.name]!;
      delete cur[f.name];
    }
    if (i === fields.length - 1) {
      if (append) {
        const prev = cur[f.jsonName];
        if (Array.isArray(prev)) prev.push(value);
        else cur[f.jsonName] = [value];
      } else cur[f.jsonName] = value;
      return;
    }
    let next = cur[f.jsonName];
    if (next === undefined || next === null || typeof next !== 'object' || Array.isArray(next)) {
      next = {};
      cur[f.jsonName] = next;
    }
    cur = next as JsonObject;
  }
}

/** Resolves a query parameter name (`a.b`, proto or json names) to fields, or undefined. */
function queryField(msg: DescMessage, name: string): DescField[] | undefined {
  const out: DescField[] = [];
  let cur: DescMessage | undefined = msg;
  for (const part of name.split('.')) {
    if (cur === undefined) return undefined;
    const f: DescField | undefined = cur.fields.find((x) => x.name === part || x.jsonName === part);
    if (f === undefined) return undefined;
    out.push(f);
    cur = f.fieldKind === 'message' && wrapperScalar(f.message) === undefined ? f.message : undefined;
  }
  return out;
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;

function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

export class GrpcTranscoder implements Translator {
  readonly maxBodyBytes: number;
  readonly #byMethod: ReadonlyMap<string, readonly Binding[]>;
  readonly #registry: Registry;
  readonly #opts: TranscoderOptions;
  readonly #writeOptions: { registry: Registry; alwaysEmitImplicit: boolean; useProtoFieldName: boolean };

  constructor(
    byMethod: ReadonlyMap<string, readonly Binding[]>,
    registry: Registry,
    opts: TranscoderOptions,
  ) {
    this.#byMethod = byMethod;
    this.#registry = registry;
    this.#opts = opts;
    this.maxBodyBytes = opts.maxBodyBytes;
    this.#writeOptions = {
      registry,
      alwaysEmitImplicit: opts.emitDefaults,
      useProtoFieldName: opts.protoFieldNames,
    };
  }

  /** Every binding as `METHOD /template → /pkg.Service/Method`, for docs and views. */
  describe(): string[] {
    const out: string[] = [];
    for (const list of this.#byMethod.values())
      for (const b of list) out.push(`${b.label} → ${b.method.grpcPath}`);
    return out;
  }

  match(method: string, path: string): Match {
    const split = splitPath(path);
    const list = this.#byMethod.get(method);
    if (list !== undefined) {
      for (const b of list) {
        const vars = matchTemplate(b.template, split);
        if (vars !== undefined) return { kind: 'match', binding: b, vars };
      }
    }
    const allow: string[] = [];
    for (const [m, bs] of this.#byMethod) {
      if (m === method) continue;
      if (bs.some((b) => matchTemplate(b.template, split as SplitPath) !== undefined)) allow.push(m);
    }
    return allow.length > 0 ? { kind: 'method_not_allowed', allow } : { kind: 'none' };
  }

  request(ctx: StageContext, body: Buffer): TranslatedRequest | LocalReply {
    const m = this.match(ctx.method, ctx.path);
    if (m.kind === 'none')
      return {
        kind: 'error',
        code: 'route_not_found',
        detail: `no gRPC method is bound to ${ctx.method} ${ctx.path}`,
      };
    if (m.kind === 'method_not_allowed')
      return {
        kind: 'error',
        code: 'method_not_allowed',
        detail: `${ctx.method} is not bound to ${ctx.path}`,
        headers: { allow: m.allow.join(', ') },
      };
    const b = m.binding;
    let message: Uint8Array;
    try {
      const json = this.#requestJson(ctx, b, m.vars, body);
      let msg: ReturnType<typeof fromJson>;
      try {
        msg = fromJson(b.method.input, json, { registry: this.#registry });
      } catch (err) {
        throw new BadRequest(jsonError((err as Error).message));
      }
      message = toBinary(b.method.input, msg);
    } catch (err) {
      if (err instanceof BadRequest)
        return { kind: 'error', code: 'transcode_bad_request', detail: err.message };
      if (err instanceof Unsupported)
        return { kind: 'error', code: 'unsupported_media_type', detail: err.message };
      throw err;
    }
    ctx.operation = b.method.grpcPath;
    return {
      method: 'POST',
      path: b.method.grpcPath,
      headers: GRPC_REQUEST_HEADERS,
      body: frame(message),
      grpc: true,
      wholeResponse: !b.method.serverStreaming,
      response: b.method.serverStreaming
        ? new StreamResponse(b, this.#opts, this.#writeOptions, this.#opts.stream === 'sse' || wantsSse(ctx))
        : new UnaryResponse(b, this.#opts, this.#writeOptions),
    };
  }

  /** The request message in proto3 JSON form: body, then path variables, then the query. */
  #requestJson(ctx: StageContext, b: Binding, vars: Map<string, string>, body: Buffer): JsonObject {
    let root: JsonObject = {};
    if (b.rawRequest && b.body !== undefined) {
      // google.api.HttpBody: the bytes as they came, with their content type.
      const raw: JsonObject = {
        contentType: ctx.headers['content-type'] ?? '',
        data: body.toString('base64'),
      };
      if (b.body.length === 0) root = raw;
      else setAt(root, b.body, raw, false);
    } else if (b.body !== undefined && body.length > 0) {
      const type = ctx.headers['content-type'];
      if (type !== undefined && !JSON_TYPE.test(type))
        throw new Unsupported(`expected a JSON body (application/json), got ${type}`);
      const enc = ctx.headers['content-encoding'];
      if (enc !== undefined && enc !== 'identity')
        throw new Unsupported(`a body with Content-Encoding ${enc} is not accepted; send it uncompressed`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch (err) {
        throw new BadRequest(`request body is not valid JSON: ${(err as Error).message}`);
      }
      if (b.body.length === 0) {
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
          throw new BadRequest(`request body must be a JSON object (the ${b.method.input.typeName} message)`);
        root = parsed as JsonObject;
      } else {
        const f = b.body[b.body.length - 1]!;
        if (
          f.fieldKind === 'message' &&
          !f.message.typeName.startsWith('google.protobuf.') &&
          (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
        )
          throw new BadRequest(
            `request body must be a JSON object (the ${f.message.typeName} of field ${b.body.map((x) => x.name).join('.')})`,
          );
        setAt(root, b.body, parsed as JsonValue, false);
      }
    }
    for (const [path, value] of vars)
      setAt(
        root,
        b.vars.get(path)!,
        textToJson(b.vars.get(path)!.at(-1)!, value, `path variable {${path}}`),
        false,
      );
    const query = ctx.query;
    if (query !== '' && (b.body === undefined || b.body.length > 0)) {
      const bodyPath = b.body === undefined ? undefined : b.body.map((f) => f.name).join('.');
      for (const [name, value] of new URLSearchParams(query)) {
        const fields = queryField(b.method.input, name);
        if (fields === undefined) {
          if (this.#opts.ignoreUnknownQueryParameters) continue;
          throw new BadRequest(`query parameter "${name}" is not a field of ${b.method.input.typeName}`);
        }
        const dotted = fields.map((f) => f.name).join('.');
        // The path and the body own their fields: the query cannot change them.
        if (
          b.bound.has(dotted) ||
          (bodyPath !== undefined && (dotted === bodyPath || dotted.startsWith(`${bodyPath}.`)))
        )
          continue;
        const last = fields[fields.length - 1]!;
        if (last.fieldKind === 'map')
          throw new BadRequest(`query parameter "${name}": map fields cannot be set from the query`);
        setAt(root, fields, textToJson(last, value, `query parameter "${name}"`), last.fieldKind === 'list');
      }
    } else if (query !== '' && !this.#opts.ignoreUnknownQueryParameters) {
      // body "*": every field comes from the body; a query parameter would be silently lost.
      for (const name of new URLSearchParams(query).keys()) {
        if (queryField(b.method.input, name) !== undefined)
          throw new BadRequest(`query parameter "${name}": this binding takes every field from the body`);
        throw new BadRequest(`query parameter "${name}" is not a field of ${b.method.input.typeName}`);
      }
    }
    return root;
  }
}

class Unsupported extends Error {}

/** An EventSource (or any client that asks for `text/event-stream`) gets SSE whatever the route's default. */
function wantsSse(ctx: StageContext): boolean {
  return ctx.headers.accept?.includes('text/event-stream') === true;
}

/** bufbuild's messages, shortened: "cannot decode message x.Y from JSON: key "z" is unknown" → the useful part. */
function jsonError(message: string): string {
  return message.replace(/^cannot decode (message|field|enum) /, 'invalid $1 ');
}

/** A gRPC frame reader: whole messages out of body chunks. */
class Frames {
  #buf: Buffer | undefined = undefined;
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  /** Messages completed by this chunk; throws on a compressed or oversized one. */
  push(chunk: Buffer): Buffer[] {
    let buf = this.#buf === undefined ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    while (buf.length >= 5) {
      if (buf[0] !== 0) throw new Error('compressed gRPC message (none was asked for)');
      const len = buf.readUInt32BE(1);
      if (len > this.#max) throw new Error(`gRPC message of ${len} bytes exceeds ${this.#max}`);
      if (buf.length < 5 + len) break;
      out.push(buf.subarray(5, 5 + len));
      buf = buf.subarray(5 + len);
    }
    this.#buf = buf.length > 0 ? buf : undefined;
    return out;
  }
  get pending(): boolean {
    return this.#buf !== undefined;
  }
}

interface Status {
  readonly code: number;
  readonly message: string;
  /** `grpc-status-details-bin`: a google.rpc.Status in base64, when the service sent one. */
  readonly details?: string | undefined;
}

/** The call's status from trailers (or a trailers-only reply's headers); undefined when the upstream sent none. */
function statusOf(
  httpStatus: number,
  headers: Readonly<Record<string, string>>,
  trailers: Readonly<Record<string, string>>,
): Status | undefined {
  const raw = trailers['grpc-status'] ?? headers['grpc-status'];
  const msg = trailers['grpc-message'] ?? headers['grpc-message'] ?? '';
  if (raw === undefined) {
    if (httpStatus !== 200)
      return {
        code: grpcOfHttp(httpStatus),
        message: `upstream answered HTTP ${httpStatus} without a gRPC status`,
      };
    return undefined;
  }
  const code = Number(raw);
  return {
    code: Number.isInteger(code) && code >= 0 ? code : 2,
    message: decodeGrpcMessage(msg),
    details: trailers['grpc-status-details-bin'] ?? headers['grpc-status-details-bin'],
  };
}

/** google.rpc.Status (code 1, message 2, details 3: google.protobuf.Any), for `grpc-status-details-bin`. */
let rpcStatusType: protobuf.Type | undefined;
function rpcStatus(): protobuf.Type {
  if (rpcStatusType === undefined) {
    const root = new protobuf.Root();
    protobuf.parse(
      'syntax = "proto3"; package rpc; message Status { int32 code = 1; string message = 2; repeated Any details = 3; } message Any { string type_url = 1; bytes value = 2; }',
      root,
      { keepCase: true },
    );
    rpcStatusType = root.lookupType('rpc.Status');
  }
  return rpcStatusType;
}

/**
 * The details of a google.rpc.Status as JSON: each `Any` whose type the protos describe (load
 * google/rpc/error_details.proto to get BadRequest, ErrorInfo, ...) as its JSON with `@type`, others as `@type`
 * and the base64 `value`. Undefined when there are none or they do not decode.
 */
function statusDetails(b64: string | undefined, registry: Registry): JsonValue[] | undefined {
  if (b64 === undefined || b64 === '') return undefined;
  try {
    const st = rpcStatus().decode(Buffer.from(b64, 'base64')) as unknown as {
      details: { type_url: string; value: Uint8Array }[];
    };
    if (st.details.length === 0) return undefined;
    return st.details.map((d): JsonValue => {
      const desc = registry.getMessage(d.type_url.slice(d.type_url.lastIndexOf('/') + 1));
      if (desc !== undefined) {
        try {
          const json = toJson(desc, fromBinary(desc, d.value), { registry });
          if (json !== null && typeof json === 'object' && !Array.isArray(json))
            return { '@type': d.type_url, ...(json as JsonObject) };
          return { '@type': d.type_url, value: json };
        } catch {
          // fall through: the raw form
        }
      }
      return { '@type': d.type_url, value: Buffer.from(d.value).toString('base64') };
    });
  } catch {
    return undefined;
  }
}

function decodeGrpcMessage(m: string): string {
  if (!m.includes('%')) return m;
  try {
    return decodeURIComponent(m);
  } catch {
    return m;
  }
}

function forwardedHeaders(headers: Readonly<Record<string, string>>, type: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in headers)
    if (!NOT_FORWARDED.has(name) && name.charCodeAt(0) !== 58) out[name] = headers[name]!;
  out['content-type'] = type;
  return out;
}

/** The problem+json of a gRPC error status, with the response metadata as headers. */
function failStatus(
  sink: ResponseSink,
  s: Status,
  headers: Readonly<Record<string, string>>,
  registry: Registry,
): void {
  const http = GRPC_TO_HTTP[s.code] ?? 500;
  const fields = forwardedHeaders(headers, 'application/problem+json');
  const extra: Record<string, unknown> = { grpcStatus: s.code, grpcCode: GRPC_NAMES[s.code] ?? 'UNKNOWN' };
  const details = statusDetails(s.details, registry);
  if (details !== undefined) extra.grpcDetails = details;
  sink.fail(
    'upstream_grpc_error',
    s.message || GRPC_NAMES[s.code] || `gRPC status ${s.code}`,
    http,
    extra,
    fields,
  );
}

type WriteOptions = { registry: Registry; alwaysEmitImplicit: boolean; useProtoFieldName: boolean };

/** One response message as JSON text (the `response_body` field alone when the binding has one). */
function messageJson(b: Binding, bytes: Buffer, w: WriteOptions): string {
  const msg = fromBinary(b.method.output, bytes);
  const json = toJson(b.method.output, msg, w) as JsonObject;
  if (b.responseBody === undefined) return JSON.stringify(json);
  const f = b.responseBody;
  const v = json[w.useProtoFieldName ? f.name : f.jsonName];
  return JSON.stringify(v === undefined ? defaultJson(f) : v);
}

/** A google.api.HttpBody reply: its content type (octet-stream when it names none) and bytes. */
function httpBody(b: Binding, bytes: Buffer): { type: string; data: Buffer } {
  const msg = fromBinary(b.method.output, bytes) as unknown as { contentType: string; data: Uint8Array };
  const data = Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength);
  return { type: msg.contentType || 'application/octet-stream', data };
}

/** The JSON of a field left at its default (omitted by toJson), for a `response_body` that names it. */
function defaultJson(f: DescField): JsonValue {
  switch (f.fieldKind) {
    case 'list':
      return [];
    case 'map':
      return {};
    case 'message':
      return null;
    case 'enum':
      return f.enum.values[0]?.name ?? 0;
    default:
      switch (f.scalar) {
        case ScalarType.BOOL:
          return false;
        case ScalarType.STRING:
        case ScalarType.BYTES:
          return '';
        case ScalarType.INT64:
        case ScalarType.UINT64:
        case ScalarType.SINT64:
        case ScalarType.FIXED64:
        case ScalarType.SFIXED64:
          return '0';
        default:
          return 0;
      }
  }
}

/** A unary call: the reply waits for the trailers, which decide the HTTP status. */
class UnaryResponse implements ResponseTranslation {
  readonly #b: Binding;
  readonly #frames: Frames;
  readonly #w: WriteOptions;
  #status = 0;
  #headers: Readonly<Record<string, string>> = {};
  #message: Buffer | undefined = undefined;
  #broken: string | undefined = undefined;

  constructor(b: Binding, opts: TranscoderOptions, w: WriteOptions) {
    this.#b = b;
    this.#frames = new Frames(opts.maxResponseBytes);
    this.#w = w;
  }
  headers(status: number, headers: Readonly<Record<string, string>>): void {
    this.#status = status;
    this.#headers = headers;
  }
  data(chunk: Buffer): boolean {
    if (this.#broken !== undefined) return true;
    try {
      for (const m of this.#frames.push(chunk)) {
        if (this.#message !== undefined) this.#broken = 'more than one message in a unary reply';
        this.#message = m;
      }
    } catch (err) {
      this.#broken = (err as Error).message;
    }
    return true;
  }
  end(trailers: Readonly<Record<string, string>>, sink: ResponseSink): void {
    const s = statusOf(this.#status, this.#headers, trailers);
    if (s === undefined) {
      sink.fail('upstream_protocol_error', 'the gRPC reply ended without grpc-status');
      return;
    }
    if (s.code !== 0) {
      failStatus(sink, s, this.#headers, this.#w.registry);
      return;
    }
    if (this.#broken !== undefined || this.#frames.pending || this.#message === undefined) {
      sink.fail('upstream_protocol_error', this.#broken ?? 'the gRPC reply has no complete message');
      return;
    }
    if (this.#b.rawResponse) {
      let body: { type: string; data: Buffer };
      try {
        body = httpBody(this.#b, this.#message);
      } catch (err) {
        sink.fail('upstream_protocol_error', `reply is not a valid ${HTTP_BODY}: ${(err as Error).message}`);
        return;
      }
      const headers = forwardedHeaders(this.#headers, body.type);
      headers['content-length'] = String(body.data.length);
      sink.writeHead(200, headers);
      sink.end(body.data);
      return;
    }
    let text: string;
    try {
      text = messageJson(this.#b, this.#message, this.#w);
    } catch (err) {
      sink.fail(
        'upstream_protocol_error',
        `reply is not a valid ${this.#b.method.output.typeName}: ${(err as Error).message}`,
      );
      return;
    }
    const headers = forwardedHeaders(this.#headers, 'application/json');
    headers['content-length'] = String(Buffer.byteLength(text));
    sink.writeHead(200, headers);
    sink.end(text);
  }
  error(code: ErrorCode, detail: string, sink: ResponseSink): void {
    sink.fail(code, detail);
  }
}

/** A server-streaming call: 200 at the first message, then one JSON line (or SSE event) per message. */
class StreamResponse implements ResponseTranslation {
  readonly #b: Binding;
  readonly #frames: Frames;
  readonly #w: WriteOptions;
  readonly #sse: boolean;
  #status = 0;
  #headers: Readonly<Record<string, string>> = {};
  #failed = false;

  constructor(b: Binding, opts: TranscoderOptions, w: WriteOptions, sse: boolean) {
    this.#b = b;
    this.#frames = new Frames(opts.maxResponseBytes);
    this.#w = w;
    this.#sse = sse;
  }
  headers(status: number, headers: Readonly<Record<string, string>>): void {
    this.#status = status;
    this.#headers = headers;
  }
  #start(sink: ResponseSink, rawType?: string): void {
    if (sink.headersSent) return;
    const type = rawType ?? (this.#sse ? 'text/event-stream' : 'application/x-ndjson');
    const headers = forwardedHeaders(this.#headers, type);
    headers['cache-control'] = 'no-cache';
    // Proxies (nginx) would otherwise hold the stream back.
    headers['x-accel-buffering'] = 'no';
    sink.writeHead(200, headers);
  }
  data(chunk: Buffer, sink: ResponseSink): boolean {
    if (this.#failed) return true;
    let messages: Buffer[];
    try {
      messages = this.#frames.push(chunk);
    } catch (err) {
      this.#failed = true;
      this.#fail(sink, 'upstream_protocol_error', (err as Error).message);
      return true;
    }
    let ok = true;
    if (this.#b.rawResponse) {
      // A stream of google.api.HttpBody: the bytes of each message in turn, the first one's content type.
      for (const m of messages) {
        let body: { type: string; data: Buffer };
        try {
          body = httpBody(this.#b, m);
        } catch (err) {
          this.#failed = true;
          this.#fail(sink, 'upstream_protocol_error', `not a valid ${HTTP_BODY}: ${(err as Error).message}`);
          return true;
        }
        this.#start(sink, body.type);
        if (body.data.length > 0) ok = sink.write(body.data);
      }
      return ok;
    }
    for (const m of messages) {
      let text: string;
      try {
        text = messageJson(this.#b, m, this.#w);
      } catch (err) {
        this.#failed = true;
        this.#fail(
          sink,
          'upstream_protocol_error',
          `not a valid ${this.#b.method.output.typeName}: ${(err as Error).message}`,
        );
        return true;
      }
      this.#start(sink);
      ok = sink.write(this.#sse ? `data: ${text}\n\n` : `${text}\n`);
    }
    return ok;
  }
  end(trailers: Readonly<Record<string, string>>, sink: ResponseSink): void {
    if (this.#failed) return;
    const s = statusOf(this.#status, this.#headers, trailers);
    if (s === undefined) {
      this.#fail(sink, 'upstream_protocol_error', 'the gRPC stream ended without grpc-status');
      return;
    }
    if (s.code !== 0) {
      if (!sink.headersSent) failStatus(sink, s, this.#headers, this.#w.registry);
      else this.#finalError(sink, 'upstream_grpc_error', s.code, s.message);
      return;
    }
    if (this.#frames.pending) {
      this.#fail(sink, 'upstream_protocol_error', 'the gRPC stream ended inside a message');
      return;
    }
    this.#start(sink);
    sink.end();
  }
  error(code: ErrorCode, detail: string, sink: ResponseSink): void {
    this.#fail(sink, code, detail);
  }
  #fail(sink: ResponseSink, code: ErrorCode, detail: string): void {
    if (!sink.headersSent) sink.fail(code, detail);
    else this.#finalError(sink, code, errorCatalog[code].grpc, detail);
  }
  /** After the start: the error as the stream's last line (or SSE `error` event), then the end. */
  #finalError(sink: ResponseSink, code: ErrorCode, grpc: number, message: string): void {
    if (this.#b.rawResponse) {
      // Raw bytes have no place for an error: the response is cut, so the client sees it is incomplete.
      sink.fail(code, message);
      return;
    }
    sink.noteError(code);
    const error = JSON.stringify({
      error: {
        code,
        grpcStatus: grpc,
        grpcCode: GRPC_NAMES[grpc] ?? 'UNKNOWN',
        httpStatus: code === 'upstream_grpc_error' ? (GRPC_TO_HTTP[grpc] ?? 500) : errorCatalog[code].status,
        message,
        requestId: sink.requestId,
      },
    });
    sink.end(this.#sse ? `event: error\ndata: ${error}\n\n` : `${error}\n`);
  }
}
