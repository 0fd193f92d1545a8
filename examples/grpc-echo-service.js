// A small gRPC upstream for examples/grpc.yaml (and the gRPC tests), on @grpc/grpc-js. Messages are JSON, so no
// .proto file is needed; Trellis never looks inside messages anyway. Service `demo.Echo`:
//   Say     unary          {text, code?, message?, delayMs?} → {text, metadata}; code ≠ 0 answers that gRPC status
//   Count   server stream  {n, delayMs?} → {i} n times
//   Sum     client stream  {value}… → {sum, count}
//   Chat    bidi stream    {text}… → {text} for each, as they come
// Every reply carries the trailer `x-echo-trailer: done` and echoes request metadata `x-*` as response headers.
//
// Usage: node examples/grpc-echo-service.js [port]   (default 50051, loopback only, cleartext h2c)
import { pathToFileURL } from 'node:url';
import grpc from '@grpc/grpc-js';

const json = {
  serialize: (value) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes) => JSON.parse(bytes.toString() || '{}'),
};

const method = (name, requestStream, responseStream) => ({
  path: `/demo.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
});

/** The service definition, for servers and for clients (grpc.makeGenericClientConstructor). */
export const echoService = {
  Say: method('Say', false, false),
  Count: method('Count', false, true),
  Sum: method('Sum', true, false),
  Chat: method('Chat', true, true),
};

/** A client constructor for `demo.Echo`. */
export const EchoClient = grpc.makeGenericClientConstructor(echoService, 'demo.Echo');

function echoedHeaders(call) {
  const out = new grpc.Metadata();
  for (const [k, v] of Object.entries(call.metadata.getMap())) if (k.startsWith('x-')) out.set(k, String(v));
  return out;
}

function trailer() {
  const t = new grpc.Metadata();
  t.set('x-echo-trailer', 'done');
  return t;
}

const handlers = {
  Say(call, callback) {
    const req = call.request;
    call.sendMetadata(echoedHeaders(call));
    const answer = () => {
      if (req.code)
        callback({ code: req.code, details: req.message ?? 'failed on purpose', metadata: trailer() });
      else callback(null, { text: req.text, metadata: call.metadata.getMap() }, trailer());
    };
    if (req.delayMs) setTimeout(answer, req.delayMs);
    else answer();
  },
  Count(call) {
    const { n = 3, delayMs = 0 } = call.request;
    let i = 0;
    const next = () => {
      if (call.cancelled) return;
      if (i >= n) {
        call.end(trailer());
        return;
      }
      call.write({ i: i++ });
      if (delayMs > 0) setTimeout(next, delayMs);
      else setImmediate(next);
    };
    next();
  },
  Sum(call, callback) {
    let sum = 0;
    let count = 0;
    call.on('data', (m) => {
      sum += m.value ?? 0;
      count++;
    });
    call.on('end', () => callback(null, { sum, count }, trailer()));
  },
  Chat(call) {
    call.on('data', (m) => call.write({ text: m.text }));
    call.on('end', () => call.end(trailer()));
  },
};

/**
 * Starts the server on 127.0.0.1:`port` (0: a free port); `credentials` defaults to cleartext (h2c). Resolves to
 * `{ server, port }`.
 */
export function startEchoServer(port = 0, credentials = grpc.ServerCredentials.createInsecure()) {
  const server = new grpc.Server();
  server.addService(echoService, handlers);
  return new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, credentials, (err, bound) => {
      if (err) reject(err);
      else resolve({ server, port: bound });
    });
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { port } = await startEchoServer(Number(process.argv[2] ?? process.env.GRPC_DEMO_PORT ?? 50051));
  process.stderr.write(`grpc-echo: demo.Echo on 127.0.0.1:${port} (h2c)\n`);
}
