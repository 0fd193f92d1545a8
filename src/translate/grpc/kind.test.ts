import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema, MethodOptionsSchema } from '@bufbuild/protobuf/wkt';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfigFile, validateConfig } from '../../config/load.js';
import { GOOGLE_API_HTTP } from './bundled.js';
import { buildTranscoder } from './kind.js';
import { loadProtos } from './protos.js';

// Config-time behaviour of `translate: { type: grpc }`: file references, proto errors reported at their path, rules
// that cannot work refused at load, descriptor sets.

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-transcode-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEADER = `syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";
message Req { string id = 1; Inner inner = 2; repeated string tags = 3; }
message Inner { int64 n = 1; }
message Res { string id = 1; }
`;

function proto(name: string, body: string): string {
  const file = join(dir, name);
  writeFileSync(file, HEADER + body);
  return file;
}

function config(translate: Record<string, unknown>, protocol = 'h2c') {
  return {
    listeners: [{ name: 'l', port: 0 }],
    services: [{ name: 's', protocol, endpoints: ['http://127.0.0.1:1'] }],
    routes: [{ name: 'r', backends: [{ service: 's' }], translate: { type: 'grpc', ...translate } }],
  };
}

function errorsOf(translate: Record<string, unknown>, protocol?: string): string[] {
  const r = validateConfig(config(translate, protocol), { baseDir: dir });
  return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
}

describe('translate: grpc at config load', () => {
  test('a good proto passes; relative paths resolve against the config file', async () => {
    proto(
      'good.proto',
      'service S { rpc Get(Req) returns (Res) { option (google.api.http) = { get: "/v1/{id}" }; } }',
    );
    const file = join(dir, 'trellis.yaml');
    writeFileSync(
      file,
      `listeners: [{ name: l, port: 0 }]
services: [{ name: s, protocol: h2c, endpoints: ["http://127.0.0.1:1"] }]
routes:
  - name: r
    backends: [{ service: s }]
    translate: { type: grpc, protos: [good.proto] }
`,
    );
    const r = await loadConfigFile(file);
    expect(r.ok ? [] : r.errors).toEqual([]);
    if (r.ok) expect(r.config.routes[0]!.translate!.protos).toEqual([join(dir, 'good.proto')]);
  });

  test('editing a proto (or a file it imports) changes the config hash: a reload applies it', async () => {
    writeFileSync(
      join(dir, 'h-dep.proto'),
      'syntax = "proto3";\npackage hd;\nmessage D { string id = 1; }\n',
    );
    writeFileSync(
      join(dir, 'h.proto'),
      'syntax = "proto3";\npackage h;\nimport "h-dep.proto";\nservice H { rpc P(hd.D) returns (hd.D); }\n',
    );
    const file = join(dir, 'h.yaml');
    writeFileSync(
      file,
      `listeners: [{ name: l, port: 0 }]
services: [{ name: s, protocol: h2c, endpoints: ["http://127.0.0.1:1"] }]
routes: [{ name: r, backends: [{ service: s }], translate: { type: grpc, protos: [h.proto] } }]
`,
    );
    const hash = async () => {
      const r = await loadConfigFile(file);
      if (!r.ok) throw new Error(JSON.stringify(r.errors));
      return r.source.hash;
    };
    const first = await hash();
    expect(await hash()).toBe(first);
    writeFileSync(
      join(dir, 'h-dep.proto'),
      'syntax = "proto3";\npackage hd;\nmessage D { string id = 1; int32 n = 2; }\n',
    );
    expect(await hash()).not.toBe(first);
  });

  test('a file that does not parse is reported with its line', () => {
    const file = proto('broken.proto', 'message Oops { string a = ; }');
    const errors = errorsOf({ protos: [file] });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^routes\[0\]\.translate\.protos\[0\]: .*broken\.proto.*line 7/);
  });

  test('a missing file', () => {
    expect(errorsOf({ protos: [join(dir, 'nope.proto')] })[0]).toMatch(/protos\[0\]: file not found/);
  });

  test('an unresolved import names the file it looked for', () => {
    const file = join(dir, 'imports.proto');
    writeFileSync(file, 'syntax = "proto3";\nimport "other/missing.proto";\nmessage A {}\n');
    expect(errorsOf({ protos: [file] })[0]).toMatch(/missing\.proto/);
  });

  test('imports resolve through includePaths', () => {
    const sub = join(dir, 'inc');
    mkdtempSync(join(dir, 'x'));
    writeFileSync(
      join(dir, 'shared.proto'),
      'syntax = "proto3";\npackage sh;\nmessage Ping { string id = 1; }\n',
    );
    const file = join(dir, 'uses.proto');
    writeFileSync(
      file,
      'syntax = "proto3";\npackage u;\nimport "shared.proto";\nservice U { rpc P(sh.Ping) returns (sh.Ping); }\n',
    );
    expect(errorsOf({ protos: [file], includePaths: [dir, sub] })).toEqual([]);
  });

  test('an edited imported file is read again (the parse cache checks every file it read)', () => {
    writeFileSync(join(dir, 'dep.proto'), 'syntax = "proto3";\npackage dep;\nmessage D { string id = 1; }\n');
    const file = join(dir, 'main.proto');
    writeFileSync(
      file,
      'syntax = "proto3";\npackage m;\nimport "dep.proto";\nservice M { rpc P(dep.D) returns (dep.D); }\n',
    );
    expect(errorsOf({ protos: [file] })).toEqual([]);
    writeFileSync(join(dir, 'dep.proto'), 'syntax = "proto3";\npackage dep;\nmessage D { string id = ; }\n');
    expect(errorsOf({ protos: [file] })[0]).toMatch(/dep\.proto/);
  });

  test('a client-streaming method with an HTTP rule is refused', () => {
    const file = proto(
      'stream.proto',
      'service S { rpc Up(stream Req) returns (Res) { option (google.api.http) = { post: "/v1/up" body: "*" }; } }',
    );
    expect(errorsOf({ protos: [file] })[0]).toMatch(
      /client-streaming and bidirectional methods cannot be exposed/,
    );
    // Without a rule it is simply not exposed.
    const quiet = proto(
      'stream2.proto',
      'service S { rpc Up(stream Req) returns (Res); rpc G(Req) returns (Res); }',
    );
    expect(errorsOf({ protos: [quiet] })).toEqual([]);
  });

  test.each([
    ['{nope}', '', 'has no field "nope"'],
    ['{tags}', '', 'must be a singular scalar or enum field'],
    ['{id}', 'missing', 'body "missing"'],
    ['/v1/**/x', '', '"**" may only be the last segment'],
  ])('a rule that cannot work: %s body %s', (path, body, message) => {
    const template = path.startsWith('/') ? path : `/v1/${path}`;
    const file = proto(
      `rule-${Math.random().toString(36).slice(2)}.proto`,
      `service S { rpc G(Req) returns (Res) { option (google.api.http) = { post: "${template}" body: "${body}" }; } }`,
    );
    expect(errorsOf({ protos: [file] })[0]).toContain(message);
  });

  test('two methods on the same method and path', () => {
    const file = proto(
      'dup.proto',
      'service S { rpc A(Req) returns (Res) { option (google.api.http).get = "/v1/{id}"; } rpc B(Req) returns (Res) { option (google.api.http).get = "/v1/{id=*}"; } }',
    );
    expect(errorsOf({ protos: [file] })[0]).toMatch(/binds the same method and path as \/t\.v1\.S\/A/);
  });

  test('services must exist; the backend must speak HTTP/2', () => {
    const file = proto('svc.proto', 'service S { rpc G(Req) returns (Res); }');
    expect(errorsOf({ protos: [file], services: ['t.v1.Nope'] })[0]).toMatch(
      /services\[0\]: service t\.v1\.Nope is not in the protos \(found: t\.v1\.S\)/,
    );
    expect(errorsOf({ protos: [file] }, 'http1')[0]).toMatch(/protocol http1; gRPC needs h2 or h2c/);
  });

  test('protos or a descriptor set are required; an unknown field is named', () => {
    expect(errorsOf({})[0]).toMatch(/expected `protos`/);
    expect(errorsOf({ protos: ['a.proto'], colour: 1 }).join()).toMatch(/colour/);
  });
});

describe('descriptor sets', () => {
  test('a FileDescriptorSet with google.api.http options gives the same bindings', () => {
    const file = proto(
      'ds.proto',
      'service S { rpc Get(Req) returns (Res) { option (google.api.http) = { get: "/v1/{id}" additional_bindings { post: "/v1/get" body: "*" } }; } }',
    );
    // Build the set from our own loader's descriptors, adding the option as protoc writes it (field 72295728).
    const loaded = loadProtos({ protos: [file], includePaths: [] });
    const root = new protobuf.Root();
    protobuf.parse(GOOGLE_API_HTTP, root, { keepCase: true });
    const Rule = root.lookupType('google.api.HttpRule');
    const rule = Rule.encode(
      Rule.fromObject({ get: '/v1/{id}', additional_bindings: [{ post: '/v1/get', body: '*' }] }),
    ).finish();
    const files = [...loaded.registry.files].map((f) => f.proto);
    const mine = files.find((f) => f.name === file)!;
    const len: number[] = [];
    let n = rule.length;
    while (n > 127) {
      len.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    len.push(n);
    const options = create(MethodOptionsSchema);
    options.$unknown = [{ no: 72295728, wireType: 2, data: new Uint8Array([...len, ...rule]) }];
    mine.service[0]!.method[0]!.options = options;
    const setFile = join(dir, 'set.pb');
    writeFileSync(
      setFile,
      toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: files })),
    );
    const t = buildTranscoder({
      protos: [],
      includePaths: [],
      descriptorSet: setFile,
      stream: 'ndjson',
      defaultMapping: false,
      maxBodyBytes: 1024,
      maxResponseBytes: 1024,
      ignoreUnknownQueryParameters: false,
      emitDefaults: false,
      protoFieldNames: false,
    });
    expect(t.describe().sort()).toEqual(['GET /v1/{id} → /t.v1.S/Get', 'POST /v1/get → /t.v1.S/Get']);
  });

  test('a file that is not a descriptor set', () => {
    const bad = join(dir, 'bad.pb');
    writeFileSync(bad, 'not protobuf at all');
    expect(errorsOf({ descriptorSet: bad })[0]).toMatch(/descriptorSet: .*not a usable FileDescriptorSet/);
  });
});
