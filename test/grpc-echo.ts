import * as grpc from '@grpc/grpc-js';

// A gRPC upstream for the tests, on @grpc/grpc-js with JSON messages (no .proto needed: Trellis never looks inside
// messages). The same service as examples/grpc-echo-service.js, typed. Service `demo.Echo`:
//   Say     unary          {text, code?, message?, delayMs?} → {text, metadata}; code ≠ 0 answers that status
//   Count   server stream  {n, delayMs?} → {i} n times
//   Sum     client stream  {value}… → {sum, count}
//   Chat    bidi stream    {text}… → {text} for each, as they come
// Replies carry the trailer `x-echo-trailer: done`; request metadata `x-*` comes back as response headers.

// biome-ignore lint/suspicious/noExplicitAny: JSON messages of any shape.
type Json = any;

const serialize = (value: Json): Buffer => Buffer.from(JSON.stringify(value));
const deserialize = (bytes: Buffer): Json => JSON.parse(bytes.toString() || '{}');

const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/demo.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: serialize,
  requestDeserialize: deserialize,
  responseSerialize: serialize,
  responseDeserialize: deserialize,
  originalName: name,
});

export const echoService = {
  Say: method('Say', false, false),
  Count: method('Count', false, true),
  Sum: method('Sum', true, false),
  Chat: method('Chat', true, true),
} as grpc.ServiceDefinition;

export const EchoClient = grpc.makeGenericClientConstructor(echoService, 'demo.Echo');
// biome-ignore lint/suspicious/noExplicitAny: the generic client's methods are untyped.
export type Echo = grpc.Client & Record<string, any>;

function echoedHeaders(md: grpc.Metadata): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const [k, v] of Object.entries(md.getMap())) if (k.startsWith('x-')) out.set(k, String(v));
  return out;
}

function trailer(): grpc.Metadata {
  const t = new grpc.Metadata();
  t.set('x-echo-trailer', 'done');
  return t;
}

/** What the upstream saw of each call's metadata (for deadline and header checks). */
export const seen: { path: string; metadata: Record<string, unknown>; deadlineMs: number }[] = [];

const handlers: grpc.UntypedServiceImplementation = {
  Say(call: grpc.ServerUnaryCall<Json, Json>, callback: grpc.sendUnaryData<Json>) {
    const req = call.request;
    const deadline = call.getDeadline();
    const deadlineMs = (deadline instanceof Date ? deadline.getTime() : Number(deadline)) - Date.now();
    seen.push({ path: call.getPath(), metadata: call.metadata.getMap(), deadlineMs });
    call.sendMetadata(echoedHeaders(call.metadata));
    const answer = () => {
      if (call.cancelled) return;
      if (req.code)
        callback({ code: req.code, details: req.message ?? 'failed on purpose', metadata: trailer() });
      else callback(null, { text: req.text, metadata: call.metadata.getMap() }, trailer());
    };
    if (req.delayMs) setTimeout(answer, req.delayMs);
    else answer();
  },
  Count(call: grpc.ServerWritableStream<Json, Json>) {
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
  Sum(call: grpc.ServerReadableStream<Json, Json>, callback: grpc.sendUnaryData<Json>) {
    let sum = 0;
    let count = 0;
    call.on('data', (m: Json) => {
      sum += m.value ?? 0;
      count++;
    });
    call.on('end', () => callback(null, { sum, count }, trailer()));
  },
  Chat(call: grpc.ServerDuplexStream<Json, Json>) {
    call.on('data', (m: Json) => call.write({ text: m.text }));
    call.on('end', () => call.end(trailer()));
  },
};

export interface EchoServer {
  readonly server: grpc.Server;
  readonly port: number;
  close(): Promise<void>;
}

/** A demo.Echo server on 127.0.0.1 (a free port), cleartext unless `credentials` say otherwise. */
export function startEchoServer(
  credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure(),
): Promise<EchoServer> {
  const server = new grpc.Server();
  server.addService(echoService, handlers);
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (err, port) => {
      if (err) reject(err);
      else
        resolve({
          server,
          port,
          close: () =>
            new Promise<void>((done) => {
              server.forceShutdown();
              done();
            }),
        });
    });
  });
}

/** Promisified unary call: the reply, or the ServiceError, with the response headers and trailers. */
export function unary(
  client: Echo,
  name: string,
  req: Json,
  options: { metadata?: grpc.Metadata; deadline?: number } = {},
): Promise<{ reply?: Json; error?: grpc.ServiceError; headers?: grpc.Metadata; trailers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    let trailers: grpc.Metadata | undefined;
    const callOptions = options.deadline === undefined ? {} : { deadline: Date.now() + options.deadline };
    const call = client[name](
      req,
      options.metadata ?? new grpc.Metadata(),
      callOptions,
      (error: grpc.ServiceError | null, reply: Json) => {
        // 'status' comes after the callback in some versions: wait a tick for it.
        setImmediate(() => resolve(error ? { error, headers, trailers } : { reply, headers, trailers }));
      },
    );
    call.on('metadata', (m: grpc.Metadata) => {
      headers = m;
    });
    call.on('status', (s: grpc.StatusObject) => {
      trailers = s.metadata;
    });
  });
}
