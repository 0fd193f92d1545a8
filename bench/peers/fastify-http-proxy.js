// Fastify with @fastify/http-proxy (reply-from over an undici Agent, its default), logger off.
// Usage: node bench/peers/fastify-http-proxy.js <port> <upstream-url>
import proxy from '@fastify/http-proxy';
import Fastify from 'fastify';

const [port = '18084', upstream = 'http://127.0.0.1:18000'] = process.argv.slice(2);

const app = Fastify({ logger: false });
await app.register(proxy, { upstream, prefix: '/' });
await app.listen({ host: '127.0.0.1', port: Number(port) });
