// The floor of a Node reverse proxy: node:http in, one undici Pool out, the response streamed straight
// back. No routing, no policies: anything Trellis adds shows up as the gap to this line.
// Usage: node bench/peers/minimal-proxy.js <port> <upstream-url>
import http from 'node:http';
import { Pool } from 'undici';

const [port = '18082', upstream = 'http://127.0.0.1:18000'] = process.argv.slice(2);
// RFC 9110 7.6.1: connection-specific fields are not forwarded. Host is kept (the client's host goes upstream).
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);
const pool = new Pool(upstream, { connections: 64, pipelining: 1 });

function forwardable(headers) {
  // Fields named in Connection are hop-by-hop too.
  const named = headers.connection ? headers.connection.toLowerCase().split(/\s*,\s*/) : [];
  const out = {};
  for (const key in headers) if (!HOP_BY_HOP.has(key) && !named.includes(key)) out[key] = headers[key];
  return out;
}

http
  .createServer(function proxy(req, res) {
    const hasBody =
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    pool.stream(
      {
        method: req.method,
        path: req.url,
        headers: forwardable(req.headers),
        body: hasBody ? req : null,
        opaque: res,
      },
      function respond({ statusCode, headers, opaque }) {
        opaque.writeHead(statusCode, forwardable(headers));
        return opaque;
      },
      function done(err) {
        if (!err) return;
        if (res.headersSent) res.destroy(err);
        else res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway\n');
      },
    );
  })
  .listen(Number(port), '127.0.0.1');
