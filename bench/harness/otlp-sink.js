// The OTLP collector of the telemetry targets: takes POST /v1/traces (protobuf or JSON), counts requests, bytes,
// spans and server spans (one per traced request), answers 200 with an empty body. GET /stats returns the counts
// as JSON, for the harness to read before and after each measurement. Nothing is stored.
// Usage: node bench/harness/otlp-sink.js <port>
import http from 'node:http';
import { pathToFileURL } from 'node:url';

/** Reads a protobuf varint at `pos`: [value, next position]. Values past 2^53 lose precision (unused here). */
function varint(buf, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
}

/** Calls `onField(field, start, end)` for each length-delimited field of the message in buf[start, end). */
function eachBytesField(buf, start, end, onField) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = varint(buf, pos);
    const field = Math.floor(key / 8);
    switch (key & 7) {
      case 0:
        [, pos] = varint(buf, pos);
        break;
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      case 2: {
        let len;
        [len, pos] = varint(buf, pos);
        if (pos + len > end) throw new Error('truncated field');
        onField(field, pos, pos + len);
        pos += len;
        break;
      }
      default:
        throw new Error(`unsupported wire type ${key & 7}`);
    }
  }
  if (pos !== end) throw new Error('truncated message');
}

/** Span.kind (field 6, a varint) of the span in buf[start, end); 0 if absent. */
function spanKind(buf, start, end) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = varint(buf, pos);
    const wire = key & 7;
    if (wire === 0) {
      let v;
      [v, pos] = varint(buf, pos);
      if (key >>> 3 === 6) return v;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let len;
      [len, pos] = varint(buf, pos);
      pos += len;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return 0;
}

const SERVER = 2;

/**
 * Spans in an ExportTraceServiceRequest: { spans, server } (server: spans of kind SERVER). Protobuf walks
 * resource_spans(1) → scope_spans(2) → spans(2); JSON reads resourceSpans[].scopeSpans[].spans[].
 */
export function countSpans(body, contentType = 'application/x-protobuf') {
  let spans = 0;
  let server = 0;
  if (contentType.startsWith('application/json')) {
    const doc = JSON.parse(body.toString('utf8'));
    for (const rs of doc.resourceSpans ?? [])
      for (const ss of rs.scopeSpans ?? [])
        for (const s of ss.spans ?? []) {
          spans++;
          if (s.kind === SERVER || s.kind === 'SPAN_KIND_SERVER') server++;
        }
    return { spans, server };
  }
  eachBytesField(body, 0, body.length, (f, s, e) => {
    if (f !== 1) return;
    eachBytesField(body, s, e, (f2, s2, e2) => {
      if (f2 !== 2) return;
      eachBytesField(body, s2, e2, (f3, s3, e3) => {
        if (f3 !== 2) return;
        spans++;
        if (spanKind(body, s3, e3) === SERVER) server++;
      });
    });
  });
  return { spans, server };
}

/** The sink's server; `stats` is updated in place. */
export function createSink() {
  const stats = { requests: 0, bytes: 0, spans: 0, serverSpans: 0, badRequests: 0 };
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      stats.requests++;
      stats.bytes += body.length;
      try {
        const n = countSpans(body, req.headers['content-type'] ?? '');
        stats.spans += n.spans;
        stats.serverSpans += n.server;
      } catch {
        stats.badRequests++;
      }
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': '0' });
      res.end();
    });
  });
  server.keepAliveTimeout = 65_000;
  return { server, stats };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { server } = createSink();
  server.listen(Number(process.argv[2] ?? 18001), '127.0.0.1');
  const stop = () => server.close(() => process.exit(0)).closeAllConnections();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
