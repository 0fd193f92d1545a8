// REST → gRPC transcoding: a unary call (GetBook, examples/protos/library.proto) as REST JSON through the gateway,
// against the same call made directly to the gRPC service from a @grpc/grpc-js client, and (for reference) as gRPC
// through the gateway. Loopback only; the service (examples/library-service.js) and the gateway (`--workers 1`) run
// as child processes, the clients here. Bounded: a fixed duration per round, a few seconds in all. Run
// `npm run build` first (the gateway runs from dist/).
//
//   node bench/transcode.js                  2 rounds × 3 scenarios × 2 s, 16 calls in flight
//   node bench/transcode.js --quick          1 round of 1 s each (smoke test)
//   node bench/transcode.js --seconds 3 --concurrency 32
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
};
const QUICK = process.argv.includes('--quick');
const SECONDS = arg('seconds', QUICK ? 1 : 2);
const ROUNDS = arg('rounds', QUICK ? 1 : 2);
const CONCURRENCY = arg('concurrency', 16);

const { LibraryClient } = await import(join(ROOT, 'examples/library-service.js'));

// ---- the translation alone, without sockets: µs per request of the work the gateway adds ----
{
  const { buildTranscoder } = await import(join(ROOT, 'dist/translate/grpc/kind.js'));
  const t = buildTranscoder({
    protos: [join(ROOT, 'examples/protos/library.proto')],
    includePaths: [],
    stream: 'ndjson',
    defaultMapping: true,
    maxBodyBytes: 1 << 20,
    maxResponseBytes: 4 << 20,
    ignoreUnknownQueryParameters: false,
    emitDefaults: false,
    protoFieldNames: false,
  });
  const ctx = (method, path, query = '') => ({
    method,
    path,
    query,
    headers: { 'content-type': 'application/json' },
  });
  const get = ctx('GET', '/v1/shelves/1/books/1');
  const list = ctx(
    'GET',
    '/v1/shelves/1/books',
    'genres=SCIENCE&page_size=10&filter.author=Stephen%20Hawking',
  );
  const create = ctx('POST', '/v1/shelves/1/books', 'request_id=r1');
  const createBody = Buffer.from(
    JSON.stringify({
      title: 'Kindred',
      writer: 'Octavia E. Butler',
      pageCount: '264',
      genre: 'FICTION',
      tags: ['a', 'b'],
    }),
  );
  const bytes = t.request(create, createBody).body.subarray(5);
  const sink = {
    headersSent: false,
    closed: false,
    requestId: 'x',
    writeHead() {},
    write() {
      return true;
    },
    drained: async () => {},
    end() {},
    fail(code) {
      throw new Error(code);
    },
    noteError() {},
  };
  // A Book reply as the service would frame it: the `book` (field 2) of a translated CreateBookRequest.
  const bookFrame = (() => {
    // field 2, wire type 2: tag 0x12, then a varint length, then the Book bytes
    let i = 0;
    while (i < bytes.length) {
      const tag = bytes[i++];
      let len = 0;
      let shift = 0;
      let b;
      do {
        b = bytes[i++];
        len |= (b & 0x7f) << shift;
        shift += 7;
      } while (b & 0x80);
      if (tag === 0x12) {
        const book = bytes.subarray(i, i + len);
        const f = Buffer.alloc(5 + book.length);
        f.writeUInt32BE(book.length, 1);
        f.set(book, 5);
        return f;
      }
      i += len;
    }
    throw new Error('no book in the request');
  })();
  const N = QUICK ? 2_000 : 20_000;
  const micro = (name, fn) => {
    for (let i = 0; i < 1000; i++) fn();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) fn();
    return { step: name, 'µs/op': Number((((performance.now() - t0) * 1000) / N).toFixed(2)) };
  };
  const reply = () => {
    const r = t.request(get, Buffer.alloc(0)).response;
    r.headers(200, { 'content-type': 'application/grpc' }, sink);
    r.data(bookFrame, sink);
    r.end({ 'grpc-status': '0' }, sink);
  };
  console.log(`Translation work per request, no sockets (${N} iterations each)`);
  console.table([
    micro('GET /v1/shelves/1/books/1 → GetBookRequest frame', () => t.request(get, Buffer.alloc(0))),
    micro('GET …/books?genres&page_size&filter.author → ListBooksRequest', () =>
      t.request(list, Buffer.alloc(0)),
    ),
    micro('POST …/books + JSON body + query → CreateBookRequest', () => t.request(create, createBody)),
    micro('GetBook request + Book reply frame → JSON', reply),
  ]);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(args, readyText) {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (c) => {
      out += c;
      if (out.includes(readyText)) resolve(child);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${out}`)));
  });
}

const servicePort = await freePort();
const gatewayPort = await freePort();
const service = await start([join(ROOT, 'examples/library-service.js'), String(servicePort)], 'listening');
const dir = mkdtempSync(join(tmpdir(), 'trellis-bench-transcode-'));
const config = join(dir, 'trellis.yaml');
writeFileSync(
  config,
  `listeners:
  - name: public
    address: 127.0.0.1
    port: ${gatewayPort}
    http2: { h2c: true }
admin: { enabled: false }
services:
  - name: library
    protocol: h2c
    endpoints: ["http://127.0.0.1:${servicePort}"]
routes:
  - name: grpc
    match: { grpc: { service: library.v1.Library } }
    backends: [{ service: library }]
  - name: rest
    backends: [{ service: library }]
    translate:
      type: grpc
      protos: ["${join(ROOT, 'examples/protos/library.proto')}"]
`,
);
const gateway = await start(
  [join(ROOT, 'bin/trellis.js'), 'gateway', '--config', config, '--workers', '1'],
  'gateway started',
);

const direct = new LibraryClient(
  `127.0.0.1:${servicePort}`,
  (await import('@grpc/grpc-js')).credentials.createInsecure(),
);
const viaGateway = new LibraryClient(
  `127.0.0.1:${gatewayPort}`,
  (await import('@grpc/grpc-js')).credentials.createInsecure(),
);
const http = new Pool(`http://127.0.0.1:${gatewayPort}`, { connections: CONCURRENCY, pipelining: 1 });

const grpcCall = (client) => () =>
  new Promise((resolve, reject) =>
    client.GetBook({ name: 'shelves/1/books/1' }, (err, res) => (err ? reject(err) : resolve(res))),
  );
const restCall = async () => {
  const r = await http.request({ method: 'GET', path: '/v1/shelves/1/books/1' });
  const body = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}: ${body}`);
};

const SCENARIOS = [
  ['grpc-js client → service (direct)', grpcCall(direct)],
  ['REST JSON → gateway → gRPC (transcoded)', restCall],
  ['grpc-js client → gateway → service (proxied)', grpcCall(viaGateway)],
];

/** CONCURRENCY loops calling `fn` for `seconds`; latencies in µs. */
async function run(fn, seconds) {
  const lat = [];
  const end = performance.now() + seconds * 1000;
  let errors = 0;
  const loop = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await fn();
        lat.push((performance.now() - t0) * 1000);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  lat.sort((a, b) => a - b);
  return {
    rps: lat.length / seconds,
    p50: lat[lat.length >> 1] ?? 0,
    p99: lat[Math.floor(lat.length * 0.99)] ?? 0,
    errors,
  };
}

const results = new Map(SCENARIOS.map(([name]) => [name, []]));
try {
  for (const [, fn] of SCENARIOS) await run(fn, 0.5); // warm up every path (connections, JIT)
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, fn] of SCENARIOS) results.get(name).push(await run(fn, SECONDS));
  }
} finally {
  direct.close();
  viaGateway.close();
  await http.close();
  gateway.kill('SIGTERM');
  service.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const base = median(results.get(SCENARIOS[0][0]).map((r) => r.rps));
const baseP50 = median(results.get(SCENARIOS[0][0]).map((r) => r.p50));
const rows = [];
for (const [name, rs] of results) {
  const rps = median(rs.map((r) => r.rps));
  const p50 = median(rs.map((r) => r.p50));
  rows.push({
    scenario: name,
    'calls/s': Math.round(rps),
    'p50 µs': Math.round(p50),
    'p99 µs': Math.round(median(rs.map((r) => r.p99))),
    'throughput vs direct': (rps / base).toFixed(2),
    'p50 vs direct': (p50 / baseP50).toFixed(2),
    errors: rs.reduce((s, r) => s + r.errors, 0),
  });
}
console.log(
  `GetBook, ${CONCURRENCY} calls in flight, ${ROUNDS} round(s) × ${SECONDS} s per scenario (medians of rounds)`,
);
console.table(rows);
