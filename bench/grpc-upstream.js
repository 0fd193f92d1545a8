// The gRPC upstream of the protocol benchmarks: @grpc/grpc-js (Trellis's devDependency), one unary method
// `bench.Echo/Say` that answers the request as it came (bytes, no parsing), cleartext h2c.
// Usage: node bench/grpc-upstream.js <port>
import grpc from '@grpc/grpc-js';

const port = Number(process.argv[2] ?? 18003);
const identity = (b) => b;
const server = new grpc.Server();
server.addService(
  {
    Say: {
      path: '/bench.Echo/Say',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  { Say: (call, callback) => callback(null, call.request) },
);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    console.error(err.message);
    process.exit(1);
  }
});
const stop = () => server.tryShutdown(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
