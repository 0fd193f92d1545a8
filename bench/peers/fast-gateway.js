// fast-gateway (restana + fast-proxy-lite) forwarding every path to the upstream. Its default `http`
// proxy type is the one it ships: fast-proxy-lite over node:http Agents with keep-alive (5.x has no
// undici proxy type; the old undici option lived in fast-proxy, the `http-legacy` type).
// Usage: node bench/peers/fast-gateway.js <port> <upstream-url>
import gateway from 'fast-gateway';

const [port = '18083', upstream = 'http://127.0.0.1:18000'] = process.argv.slice(2);

// An empty prefix: with `/` fast-gateway would strip the leading slash from every forwarded path.
await gateway({ routes: [{ prefix: '', target: upstream }], enableServicesEndpoint: false }).start(
  Number(port),
  '127.0.0.1',
);
