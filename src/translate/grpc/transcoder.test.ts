import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, type DescMessage, fromBinary, toBinary, toJson } from '@bufbuild/protobuf';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { LocalReply, StageContext } from '../../proxy/stage.js';
import type { ResponseSink, TranslatedRequest } from '../../proxy/translate.js';
import type { GrpcTranslateConfig } from './config.js';
import { buildTranscoder } from './kind.js';
import type { GrpcTranscoder } from './transcoder.js';

// The transcoder without sockets: how path, query and body become the request message, and how reply frames and
// statuses become the client's response (through a recording sink).

let dir: string;
let file: string;

const PROTO = `syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/api/httpbody.proto";
enum Kind { KIND_UNSPECIFIED = 0; PAPER = 1; EBOOK = 2; }
message Item {
  string name = 1;
  int64 count = 2;
  Kind kind = 3;
  repeated string tags = 4;
  google.protobuf.Timestamp at = 5;
  google.protobuf.Int32Value stock = 6;
  bool flag = 7;
  Inner inner = 8;
  repeated int32 nums = 9;
}
message Inner { string note = 1; double ratio = 2; }
message Req { string parent = 1; Item item = 2; string path = 3; }
message Upload { string name = 1; google.api.HttpBody file = 2; }
service S {
  rpc Make(Req) returns (Item) { option (google.api.http) = { post: "/v1/{parent}/items" body: "item" }; }
  rpc Put(Item) returns (Item) { option (google.api.http) = { put: "/v1/items/{name}" body: "*" }; }
  rpc Find(Item) returns (Item) { option (google.api.http) = { get: "/v1/items/{name}" }; }
  rpc Files(Req) returns (Item) { option (google.api.http) = { get: "/v1/files/{path=**}" response_body: "count" }; }
  rpc Each(Item) returns (stream Item) { option (google.api.http) = { get: "/v1/each" }; }
  rpc Store(Upload) returns (google.api.HttpBody) { option (google.api.http) = { post: "/v1/raw/{name}" body: "file" }; }
  rpc Chunks(Item) returns (stream google.api.HttpBody) { option (google.api.http) = { get: "/v1/chunks/{name}" }; }
}
`;

const base: GrpcTranslateConfig = {
  protos: [],
  includePaths: [],
  stream: 'ndjson',
  defaultMapping: true,
  maxBodyBytes: 4096,
  maxResponseBytes: 1024,
  ignoreUnknownQueryParameters: false,
  emitDefaults: false,
  protoFieldNames: false,
};

let t: GrpcTranscoder;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-transcoder-'));
  file = join(dir, 't.proto');
  writeFileSync(file, PROTO);
  t = buildTranscoder({ ...base, protos: [file] });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ctx(method: string, target: string, headers: Record<string, string> = {}): StageContext {
  const q = target.indexOf('?');
  return {
    method,
    path: q === -1 ? target : target.slice(0, q),
    query: q === -1 ? '' : target.slice(q + 1),
    headers,
  } as unknown as StageContext;
}

/** Translates and decodes the request message the service would get, as JSON. */
function sent(tr: GrpcTranscoder, method: string, target: string, body?: unknown): unknown {
  const r = tr.request(
    ctx(method, target, { 'content-type': 'application/json' }),
    body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body)),
  );
  if ('kind' in r) throw new Error(`expected a translation, got ${JSON.stringify(r)}`);
  expect(r.body.readUInt32BE(1)).toBe(r.body.length - 5);
  const schema = inputOf(tr, method, target);
  return toJson(schema, fromBinary(schema, r.body.subarray(5)));
}

function inputOf(tr: GrpcTranscoder, method: string, target: string): DescMessage {
  const m = tr.match(method, target.split('?')[0]!);
  if (m.kind !== 'match') throw new Error('no match');
  return m.binding.method.input;
}

function refused(
  tr: GrpcTranscoder,
  method: string,
  target: string,
  body?: string,
  type = 'application/json',
): LocalReply {
  const r = tr.request(ctx(method, target, { 'content-type': type }), Buffer.from(body ?? ''));
  if (!('kind' in r)) throw new Error('expected a local reply');
  return r;
}

describe('building the request message', () => {
  test('the body fills its field, the path another, the query the rest', () => {
    expect(sent(t, 'POST', '/v1/shelf-1/items?item.name=ignored', { count: '5', kind: 'EBOOK' })).toEqual({
      parent: 'shelf-1',
      item: { count: '5', kind: 'EBOOK' },
    });
  });

  test('a proto-name key in the body and a path variable for the same field: the path wins', () => {
    expect(sent(t, 'PUT', '/v1/items/from-path', { name: 'from-body', count: '1' })).toEqual({
      name: 'from-path',
      count: '1',
    });
  });

  test('query values by field type: repeated, enum by number, wrapper, Timestamp, bool, nested, numbers', () => {
    expect(
      sent(
        t,
        'GET',
        '/v1/items/a?tags=x&tags=y&kind=2&stock=7&at=2024-01-02T03:04:05Z&flag=1&inner.note=hi&inner.ratio=0.5&nums=1&nums=2&count=9007199254740993',
      ),
    ).toEqual({
      name: 'a',
      tags: ['x', 'y'],
      kind: 'EBOOK',
      stock: 7,
      at: '2024-01-02T03:04:05Z',
      flag: true,
      inner: { note: 'hi', ratio: 0.5 },
      nums: [1, 2],
      count: '9007199254740993',
    });
  });

  test('a ** variable keeps %2F, a single-segment one decodes it', () => {
    expect(sent(t, 'GET', '/v1/files/a%2Fb/c')).toEqual({ path: 'a%2Fb/c' });
    expect(sent(t, 'GET', '/v1/items/a%2Fb')).toEqual({ name: 'a/b' });
  });

  test('the default mapping takes the whole message from the body', () => {
    expect(sent(t, 'POST', '/t.v1.S/Find', { name: 'n', flag: true })).toEqual({ name: 'n', flag: true });
  });

  test('refusals name what is wrong', () => {
    expect(refused(t, 'PUT', '/v1/items/a?flag=true', '{}')).toMatchObject({
      code: 'transcode_bad_request',
      detail: 'query parameter "flag": this binding takes every field from the body',
    });
    expect(refused(t, 'GET', '/v1/items/a?inner=x')).toMatchObject({
      detail:
        'query parameter "inner": field inner is a message and cannot be set from text; send it in the body',
    });
    expect(refused(t, 'GET', '/v1/items/a?flag=yes')).toMatchObject({
      detail: 'query parameter "flag": field flag expects true or false, got "yes"',
    });
    expect(refused(t, 'PUT', '/v1/items/a', '"just a string"')).toMatchObject({
      detail: 'request body must be a JSON object (the t.v1.Item message)',
    });
    expect(refused(t, 'PUT', '/v1/items/a', '{}', 'text/plain')).toMatchObject({
      code: 'unsupported_media_type',
    });
    expect(refused(t, 'GET', '/v2/x')).toMatchObject({ code: 'route_not_found' });
    expect(refused(t, 'DELETE', '/v1/items/a')).toMatchObject({
      code: 'method_not_allowed',
      headers: { allow: 'PUT, GET' },
    });
  });

  test('ignoreUnknownQueryParameters drops what names no field', () => {
    const lax = buildTranscoder({ ...base, protos: [file], ignoreUnknownQueryParameters: true });
    expect(sent(lax, 'GET', '/v1/items/a?utm_source=x&flag=true')).toEqual({ name: 'a', flag: true });
    expect(refused(t, 'GET', '/v1/items/a?utm_source=x')).toMatchObject({
      detail: 'query parameter "utm_source" is not a field of t.v1.Item',
    });
  });

  test('the upstream request: POST to the gRPC path, gRPC fields, a deadline for unary calls only', () => {
    const r = t.request(ctx('GET', '/v1/items/a'), Buffer.alloc(0)) as TranslatedRequest;
    expect(r).toMatchObject({ method: 'POST', path: '/t.v1.S/Find', grpc: true, wholeResponse: true });
    expect(r.headers).toMatchObject({
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': null,
    });
    const s = t.request(ctx('GET', '/v1/each'), Buffer.alloc(0)) as TranslatedRequest;
    expect(s.wholeResponse).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------------

class Sink implements ResponseSink {
  status = 0;
  headers: Record<string, string | number> = {};
  body = '';
  ended = false;
  failure: { code: string; detail?: string; status?: number; extra?: unknown } | undefined;
  noted: string | undefined;
  readonly requestId = 'rid';
  get headersSent() {
    return this.status !== 0;
  }
  get closed() {
    return this.ended;
  }
  writeHead(status: number, headers: Record<string, string | number>) {
    this.status = status;
    this.headers = headers;
  }
  write(chunk: Buffer | string) {
    if (this.status === 0) this.status = 200;
    this.body += chunk.toString();
    return true;
  }
  drained() {
    return Promise.resolve();
  }
  end(chunk?: Buffer | string) {
    if (chunk !== undefined) this.write(chunk);
    this.ended = true;
  }
  fail(code: string, detail?: string, status?: number, extra?: unknown) {
    this.failure = { code, detail, status, extra };
    this.ended = true;
  }
  noteError(code: string) {
    this.noted = code;
  }
}

function frameOf(schema: DescMessage, init: Record<string, unknown>): Buffer {
  const bytes = toBinary(schema, create(schema, init as never));
  const f = Buffer.alloc(5 + bytes.length);
  f.writeUInt32BE(bytes.length, 1);
  f.set(bytes, 5);
  return f;
}

function outputOf(tr: GrpcTranscoder, method: string, target: string): DescMessage {
  const m = tr.match(method, target);
  if (m.kind !== 'match') throw new Error('no match');
  return m.binding.method.output;
}

describe('the reply', () => {
  test('a unary reply split across chunks, with metadata headers', () => {
    const r = t.request(ctx('GET', '/v1/items/a'), Buffer.alloc(0)) as TranslatedRequest;
    const sink = new Sink();
    const f = frameOf(outputOf(t, 'GET', '/v1/items/a'), { name: 'a', count: 3n });
    r.response.headers(
      200,
      { 'content-type': 'application/grpc', 'x-meta': 'm', 'grpc-encoding': 'identity' },
      sink,
    );
    r.response.data(f.subarray(0, 3), sink);
    r.response.data(f.subarray(3), sink);
    expect(sink.status).toBe(0); // nothing before the status
    r.response.end({ 'grpc-status': '0' }, sink);
    expect(sink.status).toBe(200);
    expect(sink.headers).toEqual({
      'x-meta': 'm',
      'content-type': 'application/json',
      'content-length': '24',
    });
    expect(JSON.parse(sink.body)).toEqual({ name: 'a', count: '3' });
  });

  test('response_body of a field left at its default is that default', () => {
    const r = t.request(ctx('GET', '/v1/files/x'), Buffer.alloc(0)) as TranslatedRequest;
    const sink = new Sink();
    r.response.headers(200, {}, sink);
    r.response.data(frameOf(outputOf(t, 'GET', '/v1/files/x'), { name: 'x' }), sink);
    r.response.end({ 'grpc-status': '0' }, sink);
    expect(sink.body).toBe('"0"');
  });

  test('emitDefaults and protoFieldNames', () => {
    const t2 = buildTranscoder({ ...base, protos: [file], emitDefaults: true, protoFieldNames: true });
    const r = t2.request(ctx('GET', '/v1/items/a'), Buffer.alloc(0)) as TranslatedRequest;
    const sink = new Sink();
    r.response.headers(200, {}, sink);
    r.response.data(frameOf(outputOf(t2, 'GET', '/v1/items/a'), { name: 'a' }), sink);
    r.response.end({ 'grpc-status': '0' }, sink);
    expect(JSON.parse(sink.body)).toMatchObject({
      name: 'a',
      count: '0',
      kind: 'KIND_UNSPECIFIED',
      tags: [],
      flag: false,
    });
  });

  test('statuses: trailers-only, percent-encoded messages, HTTP errors without a status, broken replies', () => {
    const run = (
      status: number,
      headers: Record<string, string>,
      trailers: Record<string, string>,
      data?: Buffer,
    ) => {
      const r = t.request(ctx('GET', '/v1/items/a'), Buffer.alloc(0)) as TranslatedRequest;
      const sink = new Sink();
      r.response.headers(status, headers, sink);
      if (data) r.response.data(data, sink);
      r.response.end(trailers, sink);
      return sink.failure;
    };
    expect(run(200, { 'grpc-status': '5', 'grpc-message': 'no%20such%20item' }, {})).toEqual({
      code: 'upstream_grpc_error',
      detail: 'no such item',
      status: 404,
      extra: { grpcStatus: 5, grpcCode: 'NOT_FOUND' },
    });
    expect(run(503, {}, {})).toMatchObject({ status: 503, extra: { grpcCode: 'UNAVAILABLE' } });
    expect(run(200, {}, {})).toMatchObject({
      code: 'upstream_protocol_error',
      detail: expect.stringMatching(/without grpc-status/),
    });
    expect(run(200, {}, { 'grpc-status': '0' })).toMatchObject({
      code: 'upstream_protocol_error',
      detail: expect.stringMatching(/no complete message/),
    });
    expect(run(200, {}, { 'grpc-status': '0' }, Buffer.from([1, 0, 0, 0, 1, 0]))).toMatchObject({
      code: 'upstream_protocol_error',
      detail: expect.stringMatching(/compressed/),
    });
    expect(run(200, {}, { 'grpc-status': '0' }, Buffer.from([0, 0, 0, 8, 0, 0]))).toMatchObject({
      code: 'upstream_protocol_error',
      detail: expect.stringMatching(/exceeds 1024/),
    });
  });

  test('grpc-status-details-bin becomes grpcDetails: known types as JSON, others as base64', () => {
    const root = new protobuf.Root();
    protobuf.parse(
      'syntax = "proto3"; message Status { int32 code = 1; string message = 2; repeated Any details = 3; } message Any { string type_url = 1; bytes value = 2; }',
      root,
    );
    const Status = root.lookupType('Status');
    const item = toBinary(
      outputOf(t, 'GET', '/v1/items/a'),
      create(outputOf(t, 'GET', '/v1/items/a'), { name: 'bad', count: 2n }),
    );
    const bin = Status.encode(
      Status.fromObject({
        code: 3,
        message: 'invalid',
        details: [
          { typeUrl: 'type.googleapis.com/t.v1.Item', value: item },
          { typeUrl: 'type.googleapis.com/google.rpc.Unknown', value: Buffer.from([1, 2]) },
        ],
      }),
    ).finish();
    const r = t.request(ctx('GET', '/v1/items/a'), Buffer.alloc(0)) as TranslatedRequest;
    const sink = new Sink();
    r.response.headers(200, {}, sink);
    r.response.end(
      {
        'grpc-status': '3',
        'grpc-message': 'invalid',
        'grpc-status-details-bin': Buffer.from(bin).toString('base64'),
      },
      sink,
    );
    expect(sink.failure).toMatchObject({
      status: 400,
      extra: {
        grpcCode: 'INVALID_ARGUMENT',
        grpcDetails: [
          { '@type': 'type.googleapis.com/t.v1.Item', name: 'bad', count: '2' },
          { '@type': 'type.googleapis.com/google.rpc.Unknown', value: 'AQI=' },
        ],
      },
    });
  });

  test('a stream: lines as messages come, a final error line after the start', () => {
    const r = t.request(ctx('GET', '/v1/each'), Buffer.alloc(0)) as TranslatedRequest;
    const sink = new Sink();
    const out = outputOf(t, 'GET', '/v1/each');
    r.response.headers(200, {}, sink);
    expect(sink.status).toBe(0);
    const two = Buffer.concat([frameOf(out, { name: '1' }), frameOf(out, { name: '2' })]);
    r.response.data(two, sink);
    expect(sink.headers['content-type']).toBe('application/x-ndjson');
    expect(sink.body).toBe('{"name":"1"}\n{"name":"2"}\n');
    r.response.end({ 'grpc-status': '13', 'grpc-message': 'boom' }, sink);
    expect(sink.noted).toBe('upstream_grpc_error');
    expect(JSON.parse(sink.body.split('\n')[2]!)).toEqual({
      error: {
        code: 'upstream_grpc_error',
        grpcStatus: 13,
        grpcCode: 'INTERNAL',
        httpStatus: 500,
        message: 'boom',
        requestId: 'rid',
      },
    });
    // An upstream failure mid-stream (reset, idle timeout) is a final error line too.
    const r2 = t.request(ctx('GET', '/v1/each'), Buffer.alloc(0)) as TranslatedRequest;
    const s2 = new Sink();
    r2.response.headers(200, {}, s2);
    r2.response.data(frameOf(out, { name: '1' }), s2);
    r2.response.error('upstream_reset', 'stream reset', s2);
    expect(JSON.parse(s2.body.split('\n')[1]!).error).toMatchObject({
      code: 'upstream_reset',
      grpcCode: 'UNAVAILABLE',
    });
  });
});

describe('google.api.HttpBody', () => {
  test('a request body into an HttpBody field is taken as bytes with its content type', () => {
    const r = t.request(
      ctx('POST', '/v1/raw/pic', { 'content-type': 'image/png' }),
      Buffer.from([0x89, 0x50, 0, 1]),
    ) as TranslatedRequest;
    expect('kind' in r).toBe(false);
    const input = inputOf(t, 'POST', '/v1/raw/pic');
    expect(toJson(input, fromBinary(input, r.body.subarray(5)))).toEqual({
      name: 'pic',
      file: { contentType: 'image/png', data: Buffer.from([0x89, 0x50, 0, 1]).toString('base64') },
    });
  });

  test('an HttpBody reply goes out as its bytes with its content type', () => {
    const r = t.request(
      ctx('POST', '/v1/raw/pic', { 'content-type': 'text/plain' }),
      Buffer.from('x'),
    ) as TranslatedRequest;
    const out = outputOf(t, 'POST', '/v1/raw/pic');
    const sink = new Sink();
    r.response.headers(200, {}, sink);
    r.response.data(frameOf(out, { contentType: 'text/html', data: Buffer.from('<p>hi</p>') }), sink);
    r.response.end({ 'grpc-status': '0' }, sink);
    expect(sink.headers).toEqual({ 'content-type': 'text/html', 'content-length': '9' });
    expect(sink.body).toBe('<p>hi</p>');
  });

  test('a stream of HttpBody: the bytes in turn; an error after the start cuts the response', () => {
    const r = t.request(ctx('GET', '/v1/chunks/f'), Buffer.alloc(0)) as TranslatedRequest;
    const out = outputOf(t, 'GET', '/v1/chunks/f');
    const sink = new Sink();
    r.response.headers(200, {}, sink);
    r.response.data(frameOf(out, { contentType: 'text/csv', data: Buffer.from('a,b\n') }), sink);
    r.response.data(frameOf(out, { data: Buffer.from('1,2\n') }), sink);
    expect(sink.headers['content-type']).toBe('text/csv');
    expect(sink.body).toBe('a,b\n1,2\n');
    r.response.end({ 'grpc-status': '14', 'grpc-message': 'gone' }, sink);
    expect(sink.failure).toMatchObject({ code: 'upstream_grpc_error', detail: 'gone' });
  });
});
