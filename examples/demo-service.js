// A small upstream for the quickstart: answers every request with JSON describing what it received.
// Usage: node examples/demo-service.js [port]   (default 3000, loopback only)
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? process.env.DEMO_PORT ?? 3000);
const users = { 1: { id: 1, name: 'Ada' }, 2: { id: 2, name: 'Grace' } };

const server = createServer((req, res) => {
  let bytes = 0;
  req.on('data', (c) => {
    bytes += c.length;
  });
  req.on('end', () => {
    const url = new URL(req.url ?? '/', 'http://demo');
    const user = /^\/users\/(\d+)$/.exec(url.pathname);
    let status = 200;
    let body;
    if (user) {
      body = users[user[1]] ?? { error: 'no such user' };
      if (!users[user[1]]) status = 404;
    } else {
      body = {
        service: 'demo',
        method: req.method,
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        bodyBytes: bytes,
        headers: req.headers,
      };
    }
    const text = `${JSON.stringify(body, null, 2)}\n`;
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
});

server.listen(port, '127.0.0.1', () => {
  process.stderr.write(`demo service listening on http://127.0.0.1:${port}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
