import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type GatewayProcess, ROOT, spawnGateway } from './process.js';

// REST → gRPC transcoding end to end: the built gateway (dist/, spawned) in front of a real @grpc/grpc-js service
// (examples/library-service.js, library.v1.Library from examples/protos/library.proto with google.api.http rules),
// plain HTTP/1.1 clients (fetch). What a REST client sees: status, headers and JSON of each mapping rule, the proto3
// JSON mapping of the reply, gRPC statuses as HTTP statuses with problem+json, streams as NDJSON and SSE.

interface Library {
  port: number;
  close(): Promise<void>;
}

let library: Library;
let gw: GatewayProcess;
const PROTO = join(ROOT, 'examples/protos/library.proto');

beforeAll(async () => {
  const mod = (await import(join(ROOT, 'examples/library-service.js'))) as {
    startLibraryServer(port?: number): Promise<Library>;
  };
  library = await mod.startLibraryServer(0);
  const translate = (stream: string) => `
    translate:
      type: grpc
      protos: ["${PROTO}"]
      stream: ${stream}
      maxBodyBytes: 2KiB`;
  gw = await spawnGateway(
    `
listeners:
  - name: public
    port: {{PORT}}
    http2: { h2c: true }
admin:
  port: {{ADMIN_PORT}}
accessLog:
  output: stdout
services:
  - name: library
    protocol: h2c
    endpoints: ["http://127.0.0.1:${library.port}"]
  - name: down
    protocol: h2c
    endpoints: ["http://127.0.0.1:1"]
routes:
  - name: sse
    match: { hosts: [sse.test] }
    backends: [{ service: library }]
${translate('sse')}
  - name: slow
    match: { hosts: [slow.test] }
    backends: [{ service: library }]
    timeouts: { request: 300ms }
${translate('ndjson')}
  - name: retry
    match: { hosts: [retry.test] }
    backends: [{ service: library }]
    retries: { attempts: 3, on: [unavailable], attemptsHeader: true, backoff: { base: 5ms, max: 10ms } }
${translate('ndjson')}
  - name: down
    match: { hosts: [down.test] }
    backends: [{ service: down }]
${translate('ndjson')}
  - name: rest
    backends: [{ service: library }]
    timeouts: { request: 5s }
    responseHeaders:
      set: { x-route: rest }
${translate('ndjson')}
`,
  );
  await gw.waitReady();
}, 30_000);

afterAll(async () => {
  gw?.kill();
  await gw?.exited;
  await library?.close();
});

// biome-ignore lint/suspicious/noExplicitAny: JSON bodies, read field by field
type Json = any;

/** A plain HTTP/1.1 request (node:http, so that Host can be set), its body read whole. */
function call(
  method: string,
  path: string,
  opts: { body?: unknown; raw?: string; type?: string; host?: string; accept?: string } = {},
): Promise<{ status: number; headers: Headers; text: string; json: Json }> {
  const headers: Record<string, string> = {};
  if (opts.host !== undefined) headers.host = opts.host;
  if (opts.accept !== undefined) headers.accept = opts.accept;
  let body: string | undefined;
  if (opts.raw !== undefined || opts.body !== undefined) {
    body = opts.raw ?? JSON.stringify(opts.body);
    headers['content-type'] = opts.type ?? 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const req = request(`${gw.url}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json: Json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
        resolve({ status: res.statusCode ?? 0, headers: h, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('unary calls by google.api.http rules', () => {
  test('GET with a multi-segment path variable; the proto3 JSON mapping of the reply', async () => {
    const r = await call('GET', '/v1/shelves/1/books/1');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    // Metadata from the service is a response header; the route's response edits apply.
    expect(r.headers.get('x-library-served-by')).toBe('library-service');
    expect(r.headers.get('x-route')).toBe('rest');
    expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.json).toEqual({
      name: 'shelves/1/books/1',
      title: 'The Dispossessed',
      writer: 'Ursula K. Le Guin', // json_name
      pageCount: '9007199254740993', // int64 as a string, beyond 2^53 intact
      genre: 'FICTION', // enum by name
      published: '1974-05-01T00:00:00Z', // Timestamp as RFC 3339
      readTime: '36000.500s', // Duration
      stock: 3, // Int32Value as a bare number
      tags: ['anarchy', 'physics'],
      labels: { shelf: 'classics' },
      rating: 4.5,
    });
  });

  test('the unary call carries the route timeout as its grpc-timeout', async () => {
    const r = await call('GET', '/v1/shelves/1/books/2');
    const left = Number(r.headers.get('x-library-deadline-ms'));
    expect(left).toBeGreaterThan(3_000);
    expect(left).toBeLessThanOrEqual(5_000);
  });

  test('fields left unset are omitted (proto3 defaults)', async () => {
    const r = await call('GET', '/v1/shelves/1/books/2');
    expect(r.json).toEqual({
      name: 'shelves/1/books/2',
      title: 'A Brief History of Time',
      writer: 'Stephen Hawking',
      pageCount: '256',
      genre: 'SCIENCE',
    });
  });

  test('query parameters: repeated enums, nested fields, numbers', async () => {
    const r = await call(
      'GET',
      '/v1/shelves/1/books?genres=SCIENCE&genres=HISTORY&filter.author=Stephen%20Hawking',
    );
    expect(r.status).toBe(200);
    expect(r.json.books.map((b: Json) => b.name)).toEqual(['shelves/1/books/2']);
    const page = await call('GET', '/v1/shelves/1/books?page_size=1');
    expect(page.json.books).toHaveLength(1);
    expect(page.json.nextPageToken).toBe('1');
    // json names work as parameter names too
    const next = await call('GET', '/v1/shelves/1/books?pageSize=1&pageToken=1');
    expect(next.json.books[0].name).toBe('shelves/1/books/2');
  });

  test('bools from the query; a value that is not one is named', async () => {
    const r = await call('GET', '/v1/shelves/1/books?filter.in_stock=true');
    expect(r.json.books.map((b: Json) => b.name)).toEqual(['shelves/1/books/1']);
    const bad = await call('GET', '/v1/shelves/1/books?filter.inStock=maybe');
    expect(bad.status).toBe(400);
    expect(bad.json.detail).toBe(
      'query parameter "filter.inStock": field in_stock expects true or false, got "maybe"',
    );
  });

  test('POST: the body fills one field, the path another, the query a third', async () => {
    const body = { title: 'Kindred', writer: 'Octavia E. Butler', pageCount: '264', genre: 'FICTION' };
    const r = await call('POST', '/v1/shelves/1/books?request_id=abc', { body });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ ...body, name: expect.stringMatching(/^shelves\/1\/books\/\d+$/) });
    const again = await call('POST', '/v1/shelves/1/books?request_id=abc', { body });
    expect(again.status).toBe(409);
    expect(again.json).toMatchObject({
      code: 'upstream_grpc_error',
      grpcCode: 'ALREADY_EXISTS',
      grpcStatus: 6,
    });
  });

  test('PATCH with a nested path variable and a FieldMask from the query', async () => {
    const created = await call('POST', '/v1/shelves/1/books', { body: { title: 'Draft', writer: 'Me' } });
    const name = created.json.name as string;
    const r = await call('PATCH', `/v1/${name}?update_mask=title`, {
      body: { title: 'Final', writer: 'ignored' },
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ name, title: 'Final', writer: 'Me' });
  });

  test('DELETE returns google.protobuf.Empty as {}', async () => {
    const created = await call('POST', '/v1/shelves/1/books', { body: { title: 'Gone soon' } });
    const r = await call('DELETE', `/v1/${created.json.name}`);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({});
    expect((await call('GET', `/v1/${created.json.name}`)).status).toBe(404);
  });

  test('a custom verb with body "*"', async () => {
    const r = await call('POST', '/v1/shelves/1/books/2:archive', { body: { reason: 'worn' } });
    expect(r.status).toBe(200);
    expect(r.json.labels).toEqual({ archived: 'worn' });
  });

  test('response_body sends one field of the reply', async () => {
    const r = await call('GET', '/v1/shelves/1/books/1/title');
    expect(r.status).toBe(200);
    expect(r.text).toBe('"The Dispossessed"');
  });

  test('additional_bindings and ** variables', async () => {
    const r = await call('GET', '/v1/books/shelves/1/books/1');
    expect(r.status).toBe(200);
    expect(r.json.title).toBe('The Dispossessed');
  });

  test('the default mapping: POST /package.Service/Method with the message as JSON', async () => {
    const r = await call('POST', '/library.v1.Library/GetBook', { body: { name: 'shelves/1/books/2' } });
    expect(r.status).toBe(200);
    expect(r.json.title).toBe('A Brief History of Time');
  });
});

describe('gRPC statuses as HTTP statuses and problem+json', () => {
  test.each([
    [3, 400, 'INVALID_ARGUMENT'],
    [4, 504, 'DEADLINE_EXCEEDED'],
    [5, 404, 'NOT_FOUND'],
    [7, 403, 'PERMISSION_DENIED'],
    [8, 429, 'RESOURCE_EXHAUSTED'],
    [9, 400, 'FAILED_PRECONDITION'],
    [12, 501, 'UNIMPLEMENTED'],
    [13, 500, 'INTERNAL'],
    [14, 503, 'UNAVAILABLE'],
    [16, 401, 'UNAUTHENTICATED'],
  ])('gRPC status %i → HTTP %i', async (code, http, name) => {
    const r = await call('GET', `/v1/shelves/1/books/code-${code}`);
    expect(r.status).toBe(http);
    expect(r.headers.get('content-type')).toBe('application/problem+json');
    expect(r.headers.get('x-trellis-error')).toBe('upstream_grpc_error');
    expect(r.json).toMatchObject({
      type: 'urn:trellis:error:upstream_grpc_error',
      status: http,
      code: 'upstream_grpc_error',
      grpcStatus: code,
      grpcCode: name,
      detail: `forced status ${code} for shelves/1/books/code-${code}`,
      requestId: r.headers.get('x-request-id'),
    });
  });

  test('the service validating the message: INVALID_ARGUMENT with its message', async () => {
    const r = await call('POST', '/v1/shelves/1/books', { body: { writer: 'nobody' } });
    expect(r.status).toBe(400);
    expect(r.json.detail).toBe('book.title is required');
  });

  test('a status after response metadata (trailers) and a trailers-only one map alike', async () => {
    // NOT_FOUND of a missing book comes after the metadata, in the trailers; forced codes are trailers-only.
    const late = await call('GET', '/v1/shelves/1/books/404');
    expect(late.status).toBe(404);
    expect(late.headers.get('x-library-served-by')).toBe('library-service');
    expect(late.json.grpcCode).toBe('NOT_FOUND');
  });

  test('retries on a gRPC status (trailers-only UNAVAILABLE) send the call again', async () => {
    const r = await call('GET', '/v1/shelves/1/books/flaky-2', { host: 'retry.test' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-trellis-attempts')).toBe('3');
    expect(r.json.title).toBe('flaky after 2 failures');
    // Without the retry policy the first refusal is the answer.
    const once = await call('GET', '/v1/shelves/1/books/flaky-1');
    expect(once.status).toBe(503);
    expect(once.json.grpcCode).toBe('UNAVAILABLE');
  });

  test('an unreachable service is the gateway error it always is', async () => {
    const r = await call('GET', '/v1/shelves/1/books/1', { host: 'down.test' });
    expect(r.status).toBe(502);
    expect(r.json.code).toBe('upstream_connect_refused');
  });

  test('a unary call past the route timeout is 504 upstream_timeout', async () => {
    const r = await call('GET', '/v1/shelves/1/books/slow-2000', { host: 'slow.test' });
    expect(r.status).toBe(504);
    // The gateway's timer and the service's own deadline (the grpc-timeout it was sent) race: either answers.
    if (r.json.code === 'upstream_grpc_error') expect(r.json.grpcCode).toBe('DEADLINE_EXCEEDED');
    else expect(r.json.code).toBe('upstream_timeout');
    const fast = await call('GET', '/v1/shelves/1/books/slow-10', { host: 'slow.test' });
    expect(fast.status).toBe(200);
    expect(Number(fast.headers.get('x-library-deadline-ms'))).toBeLessThanOrEqual(300);
  });
});

describe('requests that cannot be transcoded', () => {
  const bad = async (
    r: Promise<{ status: number; json: Json }>,
    status: number,
    code: string,
    detail: RegExp,
  ) => {
    const res = await r;
    expect(res.status).toBe(status);
    expect(res.json.code).toBe(code);
    expect(res.json.detail).toMatch(detail);
  };

  test('invalid JSON', () =>
    bad(
      call('POST', '/v1/shelves/1/books', { raw: '{"title":' }),
      400,
      'transcode_bad_request',
      /not valid JSON/,
    ));

  test('an unknown field, named', () =>
    bad(
      call('POST', '/v1/shelves/1/books', { body: { title: 'x', colour: 'red' } }),
      400,
      'transcode_bad_request',
      /"colour" is unknown/,
    ));

  test('a field of the wrong type, named', async () => {
    await bad(
      call('POST', '/v1/shelves/1/books', { body: { title: 'x', pageCount: 'many' } }),
      400,
      'transcode_bad_request',
      /library\.v1\.Book\.page_count/,
    );
    await bad(
      call('POST', '/v1/shelves/1/books', { body: { title: 'x', published: 'yesterday' } }),
      400,
      'transcode_bad_request',
      /Timestamp/,
    );
    await bad(
      call('POST', '/v1/shelves/1/books', { body: { title: 'x', genre: 'POETRY' } }),
      400,
      'transcode_bad_request',
      /Genre.*POETRY/,
    );
    await bad(call('GET', '/v1/shelves/1/books?page_size=lots'), 400, 'transcode_bad_request', /page_size/);
  });

  test('a body that is not an object where a message is expected', () =>
    bad(
      call('POST', '/v1/shelves/1/books', { body: [1, 2] }),
      400,
      'transcode_bad_request',
      /JSON object.*library\.v1\.Book/,
    ));

  test('an unknown query parameter', () =>
    bad(
      call('GET', '/v1/shelves/1/books?colour=red'),
      400,
      'transcode_bad_request',
      /"colour" is not a field/,
    ));

  test('a body that is not JSON is 415', () =>
    bad(
      call('POST', '/v1/shelves/1/books', { raw: 'title=x', type: 'application/x-www-form-urlencoded' }),
      415,
      'unsupported_media_type',
      /JSON/,
    ));

  test('a body over maxBodyBytes is 413', () =>
    bad(
      call('POST', '/v1/shelves/1/books', { body: { title: 'x'.repeat(4096) } }),
      413,
      'body_too_large',
      /2048/,
    ));

  test('a path no rule binds is 404, another method of a bound path 405 with Allow', async () => {
    await bad(
      call('GET', '/v2/shelves'),
      404,
      'route_not_found',
      /no gRPC method is bound to GET \/v2\/shelves/,
    );
    const r = await call('PUT', '/v1/shelves/1/books/1');
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('GET, PATCH, DELETE');
  });
});

describe('HTTP/2 clients (h2c)', () => {
  test('a unary call and a stream over one HTTP/2 connection', async () => {
    const session = connect(gw.url);
    try {
      const get = (path: string) =>
        new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
          const s = session.request({ ':method': 'GET', ':path': path });
          let status = 0;
          let type = '';
          let body = '';
          s.on('response', (h) => {
            status = Number(h[':status']);
            type = String(h['content-type']);
          });
          s.setEncoding('utf8');
          s.on('data', (c: string) => (body += c));
          s.on('end', () => resolve({ status, type, body }));
          s.on('error', reject);
        });
      const [unary, stream] = await Promise.all([
        get('/v1/shelves/1/books/2'),
        get('/v1/shelves/1:watch?count=2'),
      ]);
      expect(unary.status).toBe(200);
      expect(JSON.parse(unary.body).title).toBe('A Brief History of Time');
      expect(stream.type).toBe('application/x-ndjson');
      expect(stream.body.trimEnd().split('\n')).toHaveLength(2);
    } finally {
      session.close();
    }
  });
});

describe('server streaming', () => {
  test('NDJSON: one message per line, then the end', async () => {
    const r = await call('GET', '/v1/shelves/1:watch?count=3');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/x-ndjson');
    const lines = r.text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.seq)).toEqual([1, 2, 3]);
    expect(lines[0].book.pageCount).toBe('9007199254740993');
  });

  test('messages arrive as they are sent, not at the end', async () => {
    const res = await fetch(`${gw.url}/v1/shelves/1:watch?count=2&delay_ms=400`);
    const reader = res.body!.getReader();
    const started = Date.now();
    const first = await reader.read();
    expect(Date.now() - started).toBeLessThan(350);
    expect(JSON.parse(Buffer.from(first.value!).toString().split('\n')[0]!).seq).toBe(1);
    while (!(await reader.read()).done) {}
  });

  test('an error after messages is a final error line', async () => {
    const r = await call('GET', '/v1/shelves/1:watch?count=2&fail_with=8');
    expect(r.status).toBe(200);
    const lines = r.text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    expect(lines[2]).toEqual({
      error: {
        code: 'upstream_grpc_error',
        grpcStatus: 8,
        grpcCode: 'RESOURCE_EXHAUSTED',
        httpStatus: 429,
        message: 'watch failed after 2 events',
        requestId: r.headers.get('x-request-id'),
      },
    });
  });

  test('an error before any message is an HTTP error', async () => {
    const r = await call('GET', '/v1/shelves/1:watch?count=0&fail_with=7');
    expect(r.status).toBe(403);
    expect(r.json.grpcCode).toBe('PERMISSION_DENIED');
  });

  test('SSE: data events, and an error event', async () => {
    const r = await call('GET', '/v1/shelves/1:watch?count=2&fail_with=14', { host: 'sse.test' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    const events = r.text.trimEnd().split('\n\n');
    expect(events).toHaveLength(3);
    expect(JSON.parse(events[0]!.replace(/^data: /, '')).seq).toBe(1);
    expect(events[2]).toMatch(
      /^event: error\ndata: \{"error":\{"code":"upstream_grpc_error","grpcStatus":14/,
    );
  });

  test('a client that accepts text/event-stream gets SSE from an NDJSON route', async () => {
    const r = await call('GET', '/v1/shelves/1:watch?count=1', { accept: 'text/event-stream' });
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    expect(r.text).toMatch(/^data: \{"seq":1,/);
  });
});

test('the access log names the gRPC method a request ran', async () => {
  await call('GET', '/v1/shelves/1/books/2');
  await new Promise((r) => setTimeout(r, 100));
  const lines = gw
    .stdout()
    .split('\n')
    .filter((l) => l.includes('"path":"/v1/shelves/1/books/2"'));
  expect(lines.length).toBeGreaterThan(0);
  const entry = JSON.parse(lines.at(-1)!);
  expect(entry).toMatchObject({ status: 200, method: 'GET', operation: '/library.v1.Library/GetBook' });
});

test('the admin API shows the translation: the route view and the explained pipeline', async () => {
  const routes = await gw.admin('/routes');
  const views = routes.body.workers?.[0]?.routes ?? routes.body;
  const rest = JSON.stringify(views).match(/\{"name":"rest"[\s\S]*?"translate":"(\w+)"/);
  expect(rest?.[1]).toBe('grpc');
  const explained = await gw.admin('/explain?method=GET&path=/v1/shelves/1/books/1');
  expect(JSON.stringify(explained.body)).toContain('"translate:grpc","upstream"');
});

test('an edited proto applies on reload (SIGHUP), with the config file unchanged', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-transcode-reload-'));
  const proto = join(dir, 'library.proto');
  copyFileSync(PROTO, proto);
  const second = await spawnGateway(`
listeners: [{ name: public, port: {{PORT}} }]
admin: { port: {{ADMIN_PORT}} }
services: [{ name: library, protocol: h2c, endpoints: ["http://127.0.0.1:${library.port}"] }]
routes:
  - name: rest
    backends: [{ service: library }]
    translate: { type: grpc, protos: ["${proto}"] }
`);
  try {
    await second.waitReady();
    const get = async (path: string) => (await fetch(`${second.url}${path}`)).status;
    expect(await get('/v1/shelves/1/books/1/title')).toBe(200);
    writeFileSync(proto, readFileSync(proto, 'utf8').replace('books/*}/title"', 'books/*}/heading"'));
    second.kill('SIGHUP');
    const deadline = Date.now() + 10_000;
    while ((await get('/v1/shelves/1/books/1/heading')) !== 200 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(await get('/v1/shelves/1/books/1/heading')).toBe(200);
    expect(await get('/v1/shelves/1/books/1/title')).toBe(404);
  } finally {
    second.kill();
    await second.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
