/**
 * Loading the services to transcode: `.proto` files (parsed with protobufjs, then turned into descriptors) or a
 * binary FileDescriptorSet, into one @bufbuild/protobuf registry (whose JSON mapping follows the proto3 rules:
 * well-known types, int64 as strings, enums by name, json_name), with each method's `google.api.http` rules.
 * Runs at config load only.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import {
  create,
  createFileRegistry,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type FileRegistry,
  fromBinary,
} from '@bufbuild/protobuf';
import {
  type DescriptorProto,
  DescriptorProtoSchema,
  type EnumDescriptorProto,
  EnumDescriptorProtoSchema,
  type FieldDescriptorProto,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  file_google_protobuf_any,
  file_google_protobuf_api,
  file_google_protobuf_descriptor,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_field_mask,
  file_google_protobuf_source_context,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_type,
  file_google_protobuf_wrappers,
  type ServiceDescriptorProto,
} from '@bufbuild/protobuf/wkt';
import protobuf from 'protobufjs';
import { GOOGLE_API_ANNOTATIONS, GOOGLE_API_HTTP, GOOGLE_API_HTTPBODY } from './bundled.js';

/** A config problem at a path below `translate` (`['protos', 0]`). */
export class TranscodeConfigError extends Error {
  readonly path: readonly (string | number)[];
  constructor(path: readonly (string | number)[], message: string) {
    super(message);
    this.path = path;
  }
}

/** One HTTP binding of a method (a `google.api.http` rule or one of its `additional_bindings`). */
export interface HttpBinding {
  readonly method: string;
  readonly path: string;
  /** '' (no body), '*' (the whole request message) or a field path. */
  readonly body: string;
  /** '' (the whole response message) or a field path. */
  readonly responseBody: string;
}

export interface MethodInfo {
  /** `package.Service`. */
  readonly service: string;
  readonly name: string;
  /** `/package.Service/Method`: the gRPC path. */
  readonly grpcPath: string;
  readonly input: DescMessage;
  readonly output: DescMessage;
  readonly clientStreaming: boolean;
  readonly serverStreaming: boolean;
  readonly bindings: readonly HttpBinding[];
}

export interface LoadedProtos {
  readonly registry: FileRegistry;
  /** Every method of every service found (filtering by `services` is the caller's). */
  readonly methods: readonly MethodInfo[];
  /** Fully qualified names of the services found. */
  readonly services: readonly string[];
  /** Every file read from disk (imports included), to tell when a cached result is stale. */
  readonly files: readonly string[];
}

const WKT_FILES: readonly DescFile[] = [
  file_google_protobuf_any,
  file_google_protobuf_source_context,
  file_google_protobuf_type,
  file_google_protobuf_api,
  file_google_protobuf_descriptor,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_field_mask,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
];

/** Fully qualified type name → the well-known-type file that defines it. */
const WKT_BY_TYPE = new Map<string, string>();
for (const f of WKT_FILES) {
  for (const m of f.messages) WKT_BY_TYPE.set(m.typeName, f.proto.name);
  for (const e of f.enums) WKT_BY_TYPE.set(e.typeName, f.proto.name);
}

const require = createRequire(import.meta.url);
/** protobufjs ships google/protobuf/descriptor.proto (and api, type, source_context) beside its package.json. */
const PROTOBUFJS_DIR = dirname(require.resolve('protobufjs/package.json'));
/** Imports answered by our copies (bundled.ts), whatever the include paths hold. */
const BUNDLED = new Set([
  'google/api/http.proto',
  'google/api/annotations.proto',
  'google/api/httpbody.proto',
]);
/** Bundled files whose types never reach the descriptors (options only); HttpBody does, messages use it. */
const OPTIONS_ONLY = new Set(['google/api/http.proto', 'google/api/annotations.proto']);

/** The HttpRule message type, for decoding rules from a descriptor set's method options. */
let httpRuleType: protobuf.Type | undefined;
function httpRule(): protobuf.Type {
  if (httpRuleType === undefined) {
    const root = new protobuf.Root();
    protobuf.parse(GOOGLE_API_HTTP, root, { keepCase: true });
    httpRuleType = root.lookupType('google.api.HttpRule');
  }
  return httpRuleType;
}

export interface ProtoSources {
  /** Absolute paths. */
  readonly protos: readonly string[];
  /** Absolute paths. */
  readonly includePaths: readonly string[];
  /** Absolute path. */
  readonly descriptorSet?: string | undefined;
}

/** Loads the sources; throws TranscodeConfigError naming the file and what is wrong. */
export function loadProtos(src: ProtoSources): LoadedProtos {
  const methods: MethodInfo[] = [];
  const services: string[] = [];
  const registries: FileRegistry[] = [];
  const files: string[] = [];
  if (src.protos.length > 0) {
    const r = loadProtoFiles(src);
    registries.push(r.registry);
    methods.push(...r.methods);
    services.push(...r.services);
    files.push(...r.files);
  }
  if (src.descriptorSet !== undefined) {
    const r = loadDescriptorSet(src.descriptorSet);
    registries.push(r.registry);
    files.push(src.descriptorSet);
    // A method both sources describe is taken from the .proto files.
    for (const m of r.methods) if (!methods.some((x) => x.grpcPath === m.grpcPath)) methods.push(m);
    for (const s of r.services) if (!services.includes(s)) services.push(s);
  }
  const registry = registries.length === 1 ? registries[0]! : createFileRegistry(...registries);
  return { registry, methods, services, files };
}

// ---------------------------------------------------------------------------------------------------------------
// .proto files

function loadProtoFiles(src: ProtoSources): LoadedProtos {
  const root = new protobuf.Root();
  const topDirs = src.protos.map((p) => dirname(p));
  const descriptorPath = join(PROTOBUFJS_DIR, 'google/protobuf/descriptor.proto');
  root.resolvePath = (origin: string, target: string): string => {
    if (BUNDLED.has(target)) return target;
    if (origin === '') return target; // a top-level file: already absolute
    const candidates = [
      ...src.includePaths.map((d) => join(d, target)),
      ...topDirs.map((d) => join(d, target)),
      resolve(dirname(origin), target),
    ];
    if (target.startsWith('google/protobuf/')) candidates.push(join(PROTOBUFJS_DIR, target));
    return candidates.find((c) => existsSync(c)) ?? candidates[0]!;
  };
  try {
    // descriptor.proto first (annotations.proto extends its MethodOptions), then our google/api copies.
    root.loadSync(descriptorPath, { keepCase: true });
    root.loadSync('google/protobuf/any.proto', { keepCase: true }); // httpbody.proto imports it
    for (const [name, text] of [
      ['google/api/http.proto', GOOGLE_API_HTTP],
      ['google/api/annotations.proto', GOOGLE_API_ANNOTATIONS],
      ['google/api/httpbody.proto', GOOGLE_API_HTTPBODY],
    ] as const) {
      (protobuf.parse as unknown as { filename: string | null }).filename = name;
      protobuf.parse(text, root, { keepCase: true });
      root.files.push(name);
    }
  } catch (err) {
    throw new TranscodeConfigError([], `bundled protos failed to load: ${(err as Error).message}`);
  }
  src.protos.forEach((file, i) => {
    if (!existsSync(file)) throw new TranscodeConfigError(['protos', i], `file not found: ${file}`);
    try {
      root.loadSync(file, { keepCase: true });
    } catch (err) {
      throw new TranscodeConfigError(['protos', i], protoError(err));
    }
  });
  try {
    root.resolveAll();
  } catch (err) {
    throw new TranscodeConfigError(['protos'], protoError(err));
  }
  const built = buildFiles(root);
  let registry: FileRegistry;
  try {
    registry = createFileRegistry(
      create(FileDescriptorSetSchema, { file: [...WKT_FILES.map((f) => f.proto), ...ordered(built)] }),
    );
  } catch (err) {
    throw new TranscodeConfigError(['protos'], `descriptors: ${(err as Error).message}`);
  }
  const methods: MethodInfo[] = [];
  const services: string[] = [];
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Service) {
        const name = obj.fullName.slice(1);
        // Services of imported files are exposed too: a file may hold only the service, its messages elsewhere.
        services.push(name);
        for (const m of obj.methodsArray) {
          const path = `/${name}/${m.name}`;
          const input = registry.getMessage(m.resolvedRequestType!.fullName.slice(1));
          const output = registry.getMessage(m.resolvedResponseType!.fullName.slice(1));
          if (input === undefined || output === undefined)
            throw new TranscodeConfigError(['protos'], `${path}: message types not found in the descriptors`);
          methods.push({
            service: name,
            name: m.name,
            grpcPath: path,
            input,
            output,
            clientStreaming: m.requestStream === true,
            serverStreaming: m.responseStream === true,
            bindings: rulesOfParsed(path, m.parsedOptions as Record<string, unknown>[] | undefined),
          });
        }
      } else if (obj instanceof protobuf.Namespace && !(obj instanceof protobuf.Type)) walk(obj);
    }
  };
  walk(root);
  // Files read from disk: not the bundled google/api copies nor protobufjs's built-in well-known types.
  const read = root.files.filter((f) => !BUNDLED.has(f) && !f.startsWith('google/protobuf/'));
  return { registry, methods, services: services.filter((s) => !s.startsWith('google.')), files: read };
}

function protoError(err: unknown): string {
  const msg = (err as Error).message ?? String(err);
  return msg.replace(/^Error: /, '');
}

/** protoc's json_name: underscores dropped, the next letter upper-cased. */
export function jsonNameOf(name: string): string {
  let out = '';
  let upper = false;
  for (const c of name) {
    if (c === '_') upper = true;
    else if (upper) {
      out += c.toUpperCase();
      upper = false;
    } else out += c;
  }
  return out;
}

const SCALAR: Record<string, FieldDescriptorProto_Type> = {
  double: FieldDescriptorProto_Type.DOUBLE,
  float: FieldDescriptorProto_Type.FLOAT,
  int64: FieldDescriptorProto_Type.INT64,
  uint64: FieldDescriptorProto_Type.UINT64,
  int32: FieldDescriptorProto_Type.INT32,
  fixed64: FieldDescriptorProto_Type.FIXED64,
  fixed32: FieldDescriptorProto_Type.FIXED32,
  bool: FieldDescriptorProto_Type.BOOL,
  string: FieldDescriptorProto_Type.STRING,
  bytes: FieldDescriptorProto_Type.BYTES,
  uint32: FieldDescriptorProto_Type.UINT32,
  sfixed32: FieldDescriptorProto_Type.SFIXED32,
  sfixed64: FieldDescriptorProto_Type.SFIXED64,
  sint32: FieldDescriptorProto_Type.SINT32,
  sint64: FieldDescriptorProto_Type.SINT64,
};

/** The fields of a FieldDescriptorProto being built. */
type FieldInit = {
  -readonly [K in Exclude<keyof FieldDescriptorProto, '$typeName' | '$unknown'>]?: FieldDescriptorProto[K];
};

interface FileBuild {
  readonly proto: FileDescriptorProto;
  readonly deps: Set<string>;
}

/** Every message, enum and service of the user's files (not the well-known types, not google.api) as descriptors. */
function buildFiles(root: protobuf.Root): Map<string, FileBuild> {
  const files = new Map<string, FileBuild>();
  const fileOf = (obj: protobuf.ReflectionObject): FileBuild | undefined => {
    const name = obj.filename;
    if (
      name === null ||
      name === undefined ||
      OPTIONS_ONLY.has(name) ||
      obj.fullName.startsWith('.google.protobuf.')
    )
      return undefined;
    let f = files.get(name);
    if (f === undefined) {
      const edition = (obj as unknown as { _edition?: string })._edition;
      if (edition !== undefined && edition !== 'proto2' && edition !== 'proto3')
        throw new TranscodeConfigError(
          ['protos'],
          `${name}: edition ${edition} is not supported (proto2 and proto3 are)`,
        );
      f = {
        proto: create(FileDescriptorProtoSchema, {
          name,
          package: obj.parent === null ? '' : obj.parent.fullName.slice(1),
          syntax: edition === 'proto2' ? 'proto2' : 'proto3',
        }),
        deps: new Set(),
      };
      files.set(name, f);
    }
    return f;
  };
  const depOn = (f: FileBuild, type: protobuf.ReflectionObject): void => {
    const wkt = WKT_BY_TYPE.get(type.fullName.slice(1));
    const dep = wkt ?? type.filename ?? undefined;
    if (dep !== undefined && dep !== f.proto.name) f.deps.add(dep);
  };
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Type) {
        const f = fileOf(obj);
        if (f !== undefined) f.proto.messageType.push(messageProto(obj, f, depOn));
      } else if (obj instanceof protobuf.Enum) {
        const f = fileOf(obj);
        if (f !== undefined) f.proto.enumType.push(enumProto(obj));
      } else if (obj instanceof protobuf.Service) {
        const f = fileOf(obj);
        if (f !== undefined) f.proto.service.push(serviceProto(obj, f, depOn));
      } else if (obj instanceof protobuf.Namespace) walk(obj);
    }
  };
  walk(root);
  for (const f of files.values()) f.proto.dependency = [...f.deps];
  return files;
}

/** Files in dependency order (a file after those it imports); the well-known types come first anyway. */
function ordered(files: Map<string, FileBuild>): FileDescriptorProto[] {
  const out: FileDescriptorProto[] = [];
  const state = new Map<string, 1 | 2>();
  const visit = (name: string): void => {
    const f = files.get(name);
    if (f === undefined || state.get(name) === 2) return;
    if (state.get(name) === 1) throw new TranscodeConfigError(['protos'], `import cycle through ${name}`);
    state.set(name, 1);
    for (const d of f.deps) visit(d);
    state.set(name, 2);
    out.push(f.proto);
  };
  for (const name of files.keys()) visit(name);
  return out;
}

function enumProto(e: protobuf.Enum): EnumDescriptorProto {
  return create(EnumDescriptorProtoSchema, {
    name: e.name,
    value: Object.entries(e.values).map(([name, number]) => ({ name, number })),
    options: e.options?.allow_alias === true ? { allowAlias: true } : undefined,
  });
}

function upperFirst(s: string): string {
  const j = jsonNameOf(s);
  return j.charAt(0).toUpperCase() + j.slice(1);
}

function messageProto(
  t: protobuf.Type,
  f: FileBuild,
  depOn: (f: FileBuild, type: protobuf.ReflectionObject) => void,
): DescriptorProto {
  const msg = create(DescriptorProtoSchema, { name: t.name });
  // Real oneofs first, then the synthetic ones of proto3 `optional` fields (as protoc orders them).
  const oneofs = t.oneofsArray;
  const isSynthetic = (o: protobuf.OneOf) =>
    o.fieldsArray.length === 1 && o.fieldsArray[0]!.options?.proto3_optional === true;
  const order = [...oneofs.filter((o) => !isSynthetic(o)), ...oneofs.filter(isSynthetic)];
  for (const o of order)
    msg.oneofDecl.push({ $typeName: 'google.protobuf.OneofDescriptorProto', name: o.name });
  const typeRef = (field: protobuf.Field, typeName: string): FieldInit => {
    const scalar = SCALAR[typeName];
    if (scalar !== undefined) return { type: scalar };
    const rt = field.resolvedType;
    if (rt === null)
      throw new TranscodeConfigError(
        ['protos'],
        `${t.fullName.slice(1)}.${field.name}: unresolved type ${typeName}`,
      );
    depOn(f, rt);
    return {
      type: rt instanceof protobuf.Enum ? FieldDescriptorProto_Type.ENUM : FieldDescriptorProto_Type.MESSAGE,
      typeName: rt.fullName,
    };
  };
  for (const field of t.fieldsArray) {
    const fd: FieldInit = {
      name: field.name,
      number: field.id,
      jsonName: (field.options?.json_name as string | undefined) ?? jsonNameOf(field.name),
    };
    if (field instanceof protobuf.MapField) {
      const entryName = `${upperFirst(field.name)}Entry`;
      const entry = create(DescriptorProtoSchema, {
        name: entryName,
        options: { mapEntry: true },
        field: [
          {
            name: 'key',
            number: 1,
            jsonName: 'key',
            label: FieldDescriptorProto_Label.OPTIONAL,
            ...typeRef(field, field.keyType),
          },
          {
            name: 'value',
            number: 2,
            jsonName: 'value',
            label: FieldDescriptorProto_Label.OPTIONAL,
            ...typeRef(field, field.type),
          },
        ],
      });
      msg.nestedType.push(entry);
      Object.assign(fd, {
        label: FieldDescriptorProto_Label.REPEATED,
        type: FieldDescriptorProto_Type.MESSAGE,
        typeName: `${t.fullName}.${entryName}`,
      });
    } else {
      Object.assign(fd, typeRef(field, field.type), {
        label: field.repeated
          ? FieldDescriptorProto_Label.REPEATED
          : field.required
            ? FieldDescriptorProto_Label.REQUIRED
            : FieldDescriptorProto_Label.OPTIONAL,
      });
      if (field.partOf !== null) {
        fd.oneofIndex = order.indexOf(field.partOf);
        if (isSynthetic(field.partOf)) fd.proto3Optional = true;
      }
      if (field.options?.packed !== undefined)
        fd.options = {
          $typeName: 'google.protobuf.FieldOptions',
          packed: field.options.packed === true,
        } as FieldDescriptorProto['options'];
    }
    msg.field.push(create(FieldDescriptorProtoSchema, fd));
  }
  for (const nested of t.nestedArray) {
    if (nested instanceof protobuf.Type) msg.nestedType.push(messageProto(nested, f, depOn));
    else if (nested instanceof protobuf.Enum) msg.enumType.push(enumProto(nested));
  }
  return msg;
}

function serviceProto(
  s: protobuf.Service,
  f: FileBuild,
  depOn: (f: FileBuild, type: protobuf.ReflectionObject) => void,
): ServiceDescriptorProto {
  return {
    $typeName: 'google.protobuf.ServiceDescriptorProto',
    name: s.name,
    method: s.methodsArray.map((m) => {
      depOn(f, m.resolvedRequestType!);
      depOn(f, m.resolvedResponseType!);
      return {
        $typeName: 'google.protobuf.MethodDescriptorProto' as const,
        name: m.name,
        inputType: m.resolvedRequestType!.fullName,
        outputType: m.resolvedResponseType!.fullName,
        clientStreaming: m.requestStream === true,
        serverStreaming: m.responseStream === true,
      };
    }),
  } as ServiceDescriptorProto;
}

// ---------------------------------------------------------------------------------------------------------------
// google.api.http rules

interface RawRule {
  get?: string;
  put?: string;
  post?: string;
  delete?: string;
  patch?: string;
  custom?: { kind?: string; path?: string };
  body?: string;
  response_body?: string;
  additional_bindings?: RawRule | RawRule[];
}

/** The rules of a method parsed by protobufjs (`parsedOptions`: entries keyed "(google.api.http)"). */
function rulesOfParsed(where: string, parsed: Record<string, unknown>[] | undefined): HttpBinding[] {
  if (parsed === undefined) return [];
  const merged: RawRule = {};
  let found = false;
  for (const entry of parsed) {
    const r = entry['(google.api.http)'] as RawRule | undefined;
    if (r === undefined) continue;
    found = true;
    for (const [k, v] of Object.entries(r)) {
      if (k === 'additional_bindings') {
        const prev = merged.additional_bindings;
        const list = [
          ...(prev === undefined ? [] : Array.isArray(prev) ? prev : [prev]),
          ...(Array.isArray(v) ? v : [v]),
        ];
        merged.additional_bindings = list as RawRule[];
      } else (merged as Record<string, unknown>)[k] = v;
    }
  }
  return found ? flatten(where, merged, true) : [];
}

function flatten(where: string, r: RawRule, top: boolean): HttpBinding[] {
  const patterns: [string, string][] = [];
  for (const m of ['get', 'put', 'post', 'delete', 'patch'] as const) {
    const p = r[m];
    if (typeof p === 'string' && p !== '') patterns.push([m.toUpperCase(), p]);
  }
  if (r.custom !== undefined && r.custom !== null) {
    const kind = r.custom.kind ?? '';
    if (!/^[A-Za-z]+$/.test(kind))
      throw new TranscodeConfigError(['protos'], `${where}: custom HTTP rule needs a method in \`kind\``);
    patterns.push([kind.toUpperCase(), r.custom.path ?? '']);
  }
  if (patterns.length !== 1)
    throw new TranscodeConfigError(
      ['protos'],
      `${where}: a google.api.http rule needs exactly one of get, put, post, delete, patch, custom (found ${patterns.length})`,
    );
  const out: HttpBinding[] = [
    {
      method: patterns[0]![0],
      path: patterns[0]![1],
      body: r.body ?? '',
      responseBody: r.response_body ?? '',
    },
  ];
  const more = r.additional_bindings;
  if (more !== undefined) {
    if (!top) throw new TranscodeConfigError(['protos'], `${where}: additional_bindings cannot nest`);
    for (const b of Array.isArray(more) ? more : [more]) out.push(...flatten(where, b, false));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Descriptor sets

function loadDescriptorSet(file: string): LoadedProtos {
  const at = ['descriptorSet'];
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new TranscodeConfigError(
      at,
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  let registry: FileRegistry;
  try {
    const set = fromBinary(FileDescriptorSetSchema, bytes);
    registry = createFileRegistry(set);
  } catch (err) {
    throw new TranscodeConfigError(
      at,
      `${file} is not a usable FileDescriptorSet (build it with \`protoc --include_imports --descriptor_set_out\`): ${(err as Error).message}`,
    );
  }
  const methods: MethodInfo[] = [];
  const services: string[] = [];
  for (const file of registry.files) {
    for (const svc of file.services) {
      services.push(svc.typeName);
      for (const m of svc.methods) methods.push(methodOfDesc(svc.typeName, m));
    }
  }
  return { registry, methods, services: services.filter((s) => !s.startsWith('google.')), files: [file] };
}

const HTTP_EXTENSION = 72295728;

function methodOfDesc(service: string, m: DescMethod): MethodInfo {
  const path = `/${service}/${m.name}`;
  let bindings: HttpBinding[] = [];
  const unknown = (
    m.proto.options as { $unknown?: { no: number; wireType: number; data: Uint8Array }[] } | undefined
  )?.$unknown;
  const field = unknown?.find((u) => u.no === HTTP_EXTENSION);
  if (field !== undefined) {
    const type = httpRule();
    let decoded: protobuf.Message;
    try {
      // bufbuild keeps an unknown length-delimited field with its length prefix.
      decoded = type.decodeDelimited(field.data);
    } catch (err) {
      throw new TranscodeConfigError(
        ['descriptorSet'],
        `${path}: malformed google.api.http option: ${(err as Error).message}`,
      );
    }
    const raw = type.toObject(decoded, { defaults: false, oneofs: false }) as RawRule;
    bindings = flatten(path, raw, true);
  }
  return {
    service,
    name: m.name,
    grpcPath: path,
    input: m.input,
    output: m.output,
    clientStreaming: m.methodKind === 'client_streaming' || m.methodKind === 'bidi_streaming',
    serverStreaming: m.methodKind === 'server_streaming' || m.methodKind === 'bidi_streaming',
    bindings,
  };
}
