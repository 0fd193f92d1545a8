// A small WebSocket upstream for examples/websocket.yaml, with no dependencies: it echoes every text and binary
// message, answers pings, picks the subprotocol `echo.v1` when a client offers it, and echoes a close frame's
// code. Plain HTTP requests get a line of text. Unfragmented messages up to 1 MiB; no extensions.
// Usage: node examples/ws-echo-service.js [port]   (default 3001, loopback only)
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? process.env.WS_DEMO_PORT ?? 3001);
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

const server = createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`ws-echo: connect with a WebSocket client to ws://127.0.0.1:${port}${req.url}\n`);
});

server.on('upgrade', (req, socket, head) => {
  const key = req.headers['sec-websocket-key'];
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || typeof key !== 'string') {
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  const accept = createHash('sha1')
    .update(key + GUID)
    .digest('base64');
  const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  let reply = `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n`;
  if (offered.includes('echo.v1')) reply += 'sec-websocket-protocol: echo.v1\r\n';
  socket.write(`${reply}\r\n`);
  process.stderr.write(
    `ws-echo: ${req.url} from ${req.headers['x-forwarded-for'] ?? socket.remoteAddress}\n`,
  );
  socket.on('error', () => {});
  let buffered = head;
  const onData = (chunk) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    for (;;) {
      const frame = readFrame(buffered);
      if (frame === undefined) return;
      buffered = buffered.subarray(frame.size);
      if (frame.opcode === 8) {
        // Echo the close frame's code, then close the TCP connection (the server closes first).
        socket.end(encode(8, frame.payload.subarray(0, 2)));
        return;
      }
      if (frame.opcode === 9) socket.write(encode(10, frame.payload));
      else if (frame.opcode === 1 || frame.opcode === 2) socket.write(encode(frame.opcode, frame.payload));
    }
  };
  socket.on('data', onData);
  if (head.length > 0) onData(Buffer.alloc(0));
});

/** One complete client frame (masked, as RFC 6455 requires), or undefined when more bytes are needed. */
function readFrame(b) {
  if (b.length < 2) return undefined;
  let length = b[1] & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (b.length < 4) return undefined;
    length = b.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (b.length < 10) return undefined;
    length = Number(b.readBigUInt64BE(2));
    offset = 10;
  }
  if (length > 1024 * 1024) throw new Error('frame too large for this demo');
  const masked = (b[1] & 0x80) !== 0;
  const mask = masked ? b.subarray(offset, offset + 4) : undefined;
  if (masked) offset += 4;
  if (b.length < offset + length) return undefined;
  const payload = Buffer.from(b.subarray(offset, offset + length));
  if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
  return { opcode: b[0] & 0x0f, payload, size: offset + length };
}

/** A server frame: FIN set, never masked. */
function encode(opcode, payload) {
  const n = payload.length;
  const head =
    n < 126
      ? Buffer.from([0x80 | opcode, n])
      : n < 65_536
        ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 0xff])
        : Buffer.concat([Buffer.from([0x80 | opcode, 127]), bigLength(n)]);
  return Buffer.concat([head, payload]);
}

function bigLength(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

server.listen(port, '127.0.0.1', () => {
  process.stderr.write(`ws-echo service listening on ws://127.0.0.1:${port}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
