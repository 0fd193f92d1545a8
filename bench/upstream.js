// The one upstream every target proxies to: a fixed 13-byte body, keep-alive, nothing else, so that the
// numbers measure the proxy and not the service behind it.
// Usage: node bench/upstream.js <port>
import http from 'node:http';

const port = Number(process.argv[2] ?? 18000);
const BODY = Buffer.from('Hello, world!');
// A raw header array skips the object-to-array step in writeHead.
const HEADERS = ['content-type', 'text/plain', 'content-length', String(BODY.length)];

const server = http.createServer(function upstream(req, res) {
  // A request body must be read for the connection to be reused; GETs have none.
  if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined)
    req.resume();
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
// Longer than any proxy's idle pool timeout, so the proxy, not the upstream, decides when a connection ends.
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');

const stop = () => server.close(() => process.exit(0)).closeAllConnections();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
