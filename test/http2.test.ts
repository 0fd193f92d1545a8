import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type ClientHttp2Session,
  connect as h2connect,
  constants as h2constants,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type SecureClientSessionOptions,
} from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ConfigInput } from '../src/config/schema.js';
import {
  type Echoed,
  echo,
  type Problem,
  startGateway,
  startUpstream,
  type TestGateway,
  type Upstream,
} from './helpers.js';
import { ROOT } from './process.js';

// HTTP/2 downstream: h2 over TLS (ALPN) and h2c by prior knowledge beside HTTP/1.1, with node:http2 clients,
// raw frames over net for what node:http2 will not send, and curl where it supports HTTP/2. Upstreams stay
// HTTP/1.1. Fixtures come from scripts/gen-test-certs.js into a temp folder.

const run = promisify(execFile);
let dir: string;
let up: Upstream;
const at = (name: string) => join(dir, name);
const ca = () => readFileSync(at('ca.crt'));

/** Streams 3 chunks and sends a trailer (chunked), or echoes. */
function upstreamHandler(req: IncomingMessage, res: ServerResponse): void {
  if (req.url === '/stream') {
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
    let n = 0;
    const t = setInterval(() => {
      res.write(`chunk${n}\n`);
      if (++n === 3) {
        clearInterval(t);
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end();
      }
    }, 20);
    return;
  }
  if (req.url === '/slow') {
    setTimeout(() => echo(req, res), 300);
    return;
  }
  echo(req, res);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-h2-'));
  await run(process.execPath, [join(ROOT, 'scripts/gen-test-certs.js'), dir, '--years', '1']);
  up = await startUpstream(upstreamHandler);
});

afterAll(async () => {
  await up?.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(tls: boolean, http2: Record<string, unknown> = {}, idleMs?: number): ConfigInput {
  return {
    listeners: [
      {
        name: 'edge',
        port: 0,
        ...(tls ? { tls: { certificates: [{ cert: at('default.crt'), key: at('default.key') }] } } : {}),
        http2,
        ...(idleMs === undefined ? {} : { timeouts: { idle: idleMs } }),
      },
    ],
    services: [{ name: 'svc', endpoints: [up.url] }],
    routes: [
      {
        name: 'api',
        match: { path: { prefix: '/' }, methods: ['GET', 'POST', 'HEAD'] },
        backends: [{ service: 'svc' }],
      },
      {
        name: 'nowhere',
        match: { path: { prefix: '/missing' } },
        directResponse: { status: 404, body: 'gone' },
      },
    ],
    admin: { enabled: false },
  } as ConfigInput;
}

interface H2Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  trailers: IncomingHttpHeaders;
}

function h2request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: string | Buffer,
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const s = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let hdrs: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    s.on('response', (h) => {
      status = Number(h[':status']);
      hdrs = h;
    });
    s.on('trailers', (t) => {
      trailers = t;
    });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve({ status, headers: hdrs, body: Buffer.concat(chunks).toString(), trailers }));
    s.on('error', reject);
    if (body !== undefined) s.end(body);
  });
}

function connectTls(port: number, opts: SecureClientSessionOptions = {}): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = h2connect(`https://localhost:${port}`, { ca: ca(), ...opts });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function connectH2c(port: number): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = h2connect(`http://127.0.0.1:${port}`);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** One HTTP/1.1 request over a raw socket (plain or the given TLS connect). */
function http1Plain(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = netConnect(port, '127.0.0.1', () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: h1.test\r\nConnection: close\r\n\r\n`);
    });
    let out = '';
    sock.on('data', (c: Buffer) => {
      out += c.toString('latin1');
    });
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });
}

/** A plain request that must still be served: the gateway is unaffected by what another client did. */
async function stillServes(port: number, tls: boolean): Promise<void> {
  const s = tls ? await connectTls(port) : await connectH2c(port);
  try {
    const r = await h2request(s, { ':path': '/after', ':method': 'GET' });
    expect(r.status).toBe(200);
  } finally {
    s.close();
  }
}

const rssMb = () => process.memoryUsage().rss / 2 ** 20;

describe('h2 over TLS (ALPN)', () => {
  let gw: TestGateway;
  let s: ClientHttp2Session;
  beforeAll(async () => {
    gw = await startGateway(config(true));
    s = await connectTls(gw.port);
  });
  afterAll(async () => {
    s?.close();
    await gw?.close();
  });

  test('GET is proxied to the HTTP/1.1 upstream with Host from :authority and forwarding headers', async () => {
    expect(s.alpnProtocol).toBe('h2');
    const r = await h2request(s, {
      ':path': '/hello?x=1',
      ':method': 'GET',
      ':authority': 'api.example.test:8443',
      cookie: 'a=1',
      'x-custom': 'v',
    });
    expect(r.status).toBe(200);
    const e = JSON.parse(r.body) as Echoed;
    expect(e.url).toBe('/hello?x=1');
    expect(e.headers['x-forwarded-proto']).toBe('https');
    expect(e.headers['x-forwarded-host']).toBe('api.example.test:8443');
    expect(e.headers['x-custom']).toBe('v');
    expect(e.headers['x-request-id']).toBe(r.headers['x-request-id']);
    expect(e.headers.forwarded).toMatch(/proto=https/);
    // No pseudo-header leaks upstream.
    expect(Object.keys(e.headers).some((k) => k.startsWith(':'))).toBe(false);
  });

  test('split cookies are joined for the HTTP/1.1 upstream', async () => {
    const r = await h2request(s, {
      ':path': '/c',
      ':method': 'GET',
      cookie: ['a=1', 'b=2'],
    });
    expect((JSON.parse(r.body) as Echoed).headers.cookie).toBe('a=1; b=2');
  });

  test('POST with a body (no content-length) streams it upstream', async () => {
    const body = Buffer.alloc(200_000, 7);
    const r = await h2request(s, { ':path': '/upload', ':method': 'POST' }, body);
    expect(r.status).toBe(200);
    const e = JSON.parse(r.body) as Echoed;
    expect(e.method).toBe('POST');
    expect(e.bytes).toBe(200_000);
  });

  test('POST with content-length', async () => {
    const r = await h2request(s, { ':path': '/upload', ':method': 'POST', 'content-length': '5' }, 'hello');
    expect((JSON.parse(r.body) as Echoed).bytes).toBe(5);
  });

  test('expect: 100-continue gets a 100 before the body is sent', async () => {
    const r = await new Promise<{ continued: boolean; status: number; body: string }>((resolve, reject) => {
      const st = s.request(
        { ':path': '/upload', ':method': 'POST', expect: '100-continue' },
        { endStream: false },
      );
      let continued = false;
      let status = 0;
      let body = '';
      st.on('continue', () => {
        continued = true;
        st.end('payload');
      });
      st.on('response', (h) => {
        status = Number(h[':status']);
      });
      st.on('data', (c: Buffer) => {
        body += c;
      });
      st.on('end', () => resolve({ continued, status, body }));
      st.on('error', reject);
    });
    expect(r.continued).toBe(true);
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as Echoed).bytes).toBe(7);
  });

  test('a streamed response arrives in pieces with the upstream trailers', async () => {
    const r = await h2request(s, { ':path': '/stream', ':method': 'GET' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('chunk0\nchunk1\nchunk2\n');
    expect(r.trailers['x-checksum']).toBe('abc123');
  });

  test('errors are problem+json; 404 and 405 from the router', async () => {
    const nf = await h2request(s, { ':path': '/missing', ':method': 'GET' });
    expect(nf.status).toBe(404);
    const bad = await h2request(s, { ':path': '/x', ':method': 'DELETE' });
    expect(bad.status).toBe(405);
    expect(bad.headers['content-type']).toBe('application/problem+json');
    expect((JSON.parse(bad.body) as Problem).code).toBeDefined();
  });

  test('te: trailers is allowed and not forwarded', async () => {
    // node:http2 refuses to send other te values or connection-specific fields: the raw frame tests send those.
    const r = await h2request(s, { ':path': '/x', ':method': 'GET', te: 'trailers' });
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as Echoed).headers.te).toBeUndefined();
  });

  test('streams run concurrently on one connection', async () => {
    const t0 = Date.now();
    const rs = await Promise.all(
      Array.from({ length: 10 }, (_, i) => h2request(s, { ':path': `/slow?i=${i}`, ':method': 'GET' })),
    );
    expect(rs.every((r) => r.status === 200)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2500);
  });

  test('HTTP/1.1 clients on the same TLS port keep working (ALPN http/1.1)', async () => {
    const r = await new Promise<{ status: number; body: string; alpn: string | false | null }>(
      (resolve, reject) => {
        const req = httpsRequest(
          { host: '127.0.0.1', port: gw.port, path: '/h1', ca: ca(), servername: 'localhost', agent: false },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => {
              body += c;
            });
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                body,
                alpn: (res.socket as import('node:tls').TLSSocket).alpnProtocol,
              }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      },
    );
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as Echoed).headers['x-forwarded-proto']).toBe('https');
  });

  test('SETTINGS advertise the stream and header list limits', async () => {
    const settings = s.remoteSettings;
    expect(settings.maxConcurrentStreams).toBe(100);
    expect(settings.maxHeaderListSize).toBe(16 * 1024);
    expect(settings.enablePush).toBe(false);
  });
});

describe('h2 with client certificates', () => {
  test('the verified identity reaches the upstream in the forwarded header; a forged one is dropped', async () => {
    const cfg = config(true);
    cfg.listeners[0]!.tls = {
      certificates: [{ cert: at('default.crt'), key: at('default.key') }],
      clientAuth: { mode: 'required', ca: at('ca.crt'), forwardHeader: 'x-client-cert-info' },
    };
    const gw = await startGateway(cfg);
    const s = await connectTls(gw.port, {
      cert: readFileSync(at('client.crt')),
      key: readFileSync(at('client.key')),
    });
    try {
      expect(s.alpnProtocol).toBe('h2');
      const r = await h2request(s, {
        ':path': '/who',
        ':method': 'GET',
        'x-client-cert-info': 'Hash=forged',
      });
      const header = (JSON.parse(r.body) as Echoed).headers['x-client-cert-info'];
      expect(header).toContain('URI=spiffe://trellis.test/ns/default/sa/client');
      expect(header).not.toContain('forged');
    } finally {
      s.close();
      await gw.close();
    }
  });
});

describe('drain', () => {
  test('SIGTERM drain lets an in-flight h2 stream finish, sends GOAWAY, and closes the session', async () => {
    const gw = await startGateway(config(true));
    const s = await connectTls(gw.port);
    const goaway = new Promise<number>((resolve) => s.once('goaway', (code: number) => resolve(code)));
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    const inFlight = h2request(s, { ':path': '/slow', ':method': 'GET' });
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    await gw.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((await inFlight).status).toBe(200);
    expect(await goaway).toBe(h2constants.NGHTTP2_NO_ERROR);
    await closed;
  });
});

describe('h2c prior knowledge beside HTTP/1.1', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway(config(false, { h2c: true }));
  });
  afterAll(() => gw?.close());

  test('an h2c client and an HTTP/1.1 client share the port', async () => {
    const s = await connectH2c(gw.port);
    try {
      const r = await h2request(s, { ':path': '/h2c', ':method': 'GET' });
      expect(r.status).toBe(200);
      const e = JSON.parse(r.body) as Echoed;
      expect(e.headers['x-forwarded-proto']).toBe('http');
      // preserveHost (the default): the client's :authority is the upstream Host.
      expect(e.headers.host).toBe(`127.0.0.1:${gw.port}`);
      const p = await h2request(s, { ':path': '/up', ':method': 'POST' }, 'abc');
      expect((JSON.parse(p.body) as Echoed).bytes).toBe(3);
    } finally {
      s.close();
    }
    const h1 = await http1Plain(gw.port, '/h1');
    expect(h1).toMatch(/^HTTP\/1\.1 200/);
    expect(h1).toContain('"url":"/h1"');
  });

  test('the access log records h2c requests like HTTP/1.1 ones', async () => {
    const file = join(dir, 'access-h2c.log');
    const logged = await startGateway({ ...config(false, { h2c: true }), accessLog: { output: file } });
    const s = await connectH2c(logged.port);
    try {
      const r = await h2request(s, { ':path': '/logged', ':method': 'POST' }, 'abcd');
      expect(r.status).toBe(200);
      await h2request(s, { ':path': '/missing', ':method': 'GET' });
    } finally {
      s.close();
      await logged.close();
    }
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    // A line is written when its stream closes, so the order may differ from the requests'.
    const byPath = (p: string) => lines.find((l) => l.path === p);
    expect(byPath('/logged')).toMatchObject({ method: 'POST', route: 'api', status: 200, bytesIn: 4 });
    expect(byPath('/missing')).toMatchObject({ status: 404 });
  });

  test('without http2.h2c the preface is not HTTP/2 (HTTP/1.1 400)', async () => {
    const plain = await startGateway(config(false));
    try {
      const out = await new Promise<string>((resolve) => {
        const sock = netConnect(plain.port, '127.0.0.1', () => sock.write(PREFACE));
        let data = '';
        sock.on('data', (c: Buffer) => {
          data += c.toString('latin1');
        });
        sock.on('close', () => resolve(data));
        sock.on('error', () => resolve(data));
      });
      expect(out).not.toContain('\u0000');
      expect(out === '' || /^HTTP\/1\.1 4\d\d/.test(out)).toBe(true);
    } finally {
      await plain.close();
    }
  });
});

// ---- raw frames ----

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}
const F = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, CONTINUATION: 9 };
const END_STREAM = 1;
const END_HEADERS = 4;

/** HPACK, literal without indexing, new names: enough for a request. */
function hpackLiteral(name: string, value: string): Buffer {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  if (n.length > 126 || v.length > 126) throw new Error('short strings only');
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}
/** :method GET, :scheme http, :path /, :authority from the static table (indexed). */
const REQUEST_BLOCK = Buffer.concat([
  Buffer.from([0x82, 0x86, 0x84]),
  hpackLiteral(':authority', 'flood.test'),
]);

interface RawResult {
  goaway: number | undefined;
  closed: boolean;
  rstCodes: number[];
  /** Status codes of HEADERS frames received (first byte of an indexed :status, or 0). */
  headers: number;
}

/** Connects over h2c, sends the preface and SETTINGS, runs `send`, and watches what comes back. */
function rawSession(
  port: number,
  send: (write: (b: Buffer) => boolean) => void,
  waitMs = 1500,
  waitForClose = false,
): Promise<RawResult> {
  return new Promise((resolve) => {
    const result: RawResult = { goaway: undefined, closed: false, rstCodes: [], headers: 0 };
    let buf = Buffer.alloc(0);
    const sock = netConnect(port, '127.0.0.1', () => {
      sock.write(Buffer.concat([PREFACE, frame(F.SETTINGS, 0, 0)]));
      send((b) => sock.write(b));
    });
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!;
        const payload = buf.subarray(9, 9 + len);
        if (type === F.GOAWAY && len >= 8) {
          result.goaway ??= payload.readUInt32BE(4);
          // The server gave up on this connection: a moment for it to close the socket, then report.
          if (!waitForClose) setTimeout(() => sock.destroy(), 300).unref();
        }
        if (type === F.RST_STREAM && len >= 4) result.rstCodes.push(payload.readUInt32BE(0));
        if (type === F.HEADERS) result.headers++;
        buf = buf.subarray(9 + len);
      }
    });
    const done = () => {
      clearTimeout(timer);
      resolve(result);
    };
    sock.on('close', () => {
      // Closed by the server, or by us after its GOAWAY.
      if (result.goaway === undefined || sock.readableEnded) result.closed = true;
      done();
    });
    sock.on('error', () => {});
    const timer = setTimeout(() => {
      sock.removeAllListeners('close');
      sock.destroy();
      resolve(result);
    }, waitMs);
  });
}

describe('flood protections (h2c, raw frames)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    // A short idle time: a session nghttp2 gave up on (GOAWAY) is closed by it.
    gw = await startGateway(config(false, { h2c: true, maxConcurrentStreams: 10 }, 1000));
  });
  afterAll(() => gw?.close());

  test('the raw client is understood: a plain request is answered without GOAWAY', async () => {
    const r = await rawSession(
      gw.port,
      (write) => write(frame(F.HEADERS, END_HEADERS | END_STREAM, 1, REQUEST_BLOCK)),
      500,
    );
    expect(r.goaway).toBeUndefined();
    expect(r.headers).toBe(1);
  });

  test('connection-specific fields (RFC 9113 §8.2.2) make the stream malformed: reset, never forwarded', async () => {
    for (const [name, value] of [
      ['connection', 'close'],
      ['transfer-encoding', 'chunked'],
      ['upgrade', 'websocket'],
      ['keep-alive', '5'],
      ['te', 'gzip'],
    ] as const) {
      const r = await rawSession(
        gw.port,
        (write) => {
          const block = Buffer.concat([REQUEST_BLOCK, hpackLiteral(name, value)]);
          write(frame(F.HEADERS, END_HEADERS | END_STREAM, 1, block));
        },
        400,
      );
      // nghttp2 resets such a stream (PROTOCOL_ERROR) before the gateway sees it; no response is sent.
      expect(r.rstCodes, name).toContain(h2constants.NGHTTP2_PROTOCOL_ERROR);
      expect(r.headers, name).toBe(0);
    }
    await stillServes(gw.port, false);
  });

  test('rapid reset: streams opened and reset at once end the session; others are served', async () => {
    const before = rssMb();
    const r = await rawSession(
      gw.port,
      (write) => {
        const parts: Buffer[] = [];
        const rst = Buffer.alloc(4);
        rst.writeUInt32BE(h2constants.NGHTTP2_CANCEL);
        for (let i = 0; i < 5000; i++) {
          const id = 1 + i * 2;
          parts.push(
            frame(F.HEADERS, END_HEADERS | END_STREAM, id, REQUEST_BLOCK),
            frame(F.RST_STREAM, 0, id, rst),
          );
          if (parts.length >= 200) write(Buffer.concat(parts.splice(0)));
        }
        write(Buffer.concat(parts));
      },
      5000,
      true,
    );
    // nghttp2's reset rate limit ends the session (GOAWAY INTERNAL_ERROR); Node is not told, so the gateway's
    // session idle timer closes the socket once the reset streams are gone.
    expect(r.goaway).toBeDefined();
    expect(r.goaway).not.toBe(h2constants.NGHTTP2_NO_ERROR);
    expect(r.closed).toBe(true);
    await stillServes(gw.port, false);
    expect(rssMb() - before).toBeLessThan(200);
  });

  test('CONTINUATION flood: endless CONTINUATION without END_HEADERS is cut off', async () => {
    const before = rssMb();
    const r = await rawSession(
      gw.port,
      (write) => {
        write(frame(F.HEADERS, 0, 1, REQUEST_BLOCK));
        const filler = hpackLiteral('x-fill', 'y'.repeat(100));
        const cont = frame(F.CONTINUATION, 0, 1, Buffer.concat(Array.from({ length: 10 }, () => filler)));
        const batch = Buffer.concat(Array.from({ length: 100 }, () => cont));
        // ~11 MB of header block for one stream unless the server stops it first.
        for (let i = 0; i < 100; i++) if (!write(batch) && i > 10) break;
      },
      5000,
    );
    // nghttp2 allows a few CONTINUATION frames, then ends the session; the header list never grows unbounded.
    expect(r.goaway).toBeDefined();
    expect(r.goaway).not.toBe(h2constants.NGHTTP2_NO_ERROR);
    await stillServes(gw.port, false);
    expect(rssMb() - before).toBeLessThan(200);
  });

  test('PING flood from a client that does not read is cut off', async () => {
    const before = rssMb();
    const r = await rawSession(
      gw.port,
      (write) => {
        const ping = frame(F.PING, 0, 0, Buffer.alloc(8));
        const batch = Buffer.concat(Array.from({ length: 1000 }, () => ping));
        for (let i = 0; i < 100; i++) write(batch);
      },
      5000,
    );
    // nghttp2 ends a session whose PING ACKs pile up (ENHANCE_YOUR_CALM); the socket is closed either way.
    expect(r.goaway).toBeDefined();
    expect(r.goaway).not.toBe(h2constants.NGHTTP2_NO_ERROR);
    await stillServes(gw.port, false);
    expect(rssMb() - before).toBeLessThan(200);
  });

  test('SETTINGS flood is cut off', async () => {
    const r = await rawSession(
      gw.port,
      (write) => {
        const settings = frame(F.SETTINGS, 0, 0);
        const batch = Buffer.concat(Array.from({ length: 1000 }, () => settings));
        for (let i = 0; i < 100; i++) write(batch);
      },
      5000,
    );
    expect(r.goaway).toBeDefined();
    expect(r.goaway).not.toBe(h2constants.NGHTTP2_NO_ERROR);
    await stillServes(gw.port, false);
  });

  test('streams beyond maxConcurrentStreams are refused (REFUSED_STREAM); the connection still serves', async () => {
    const s = await connectH2c(gw.port);
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 14 }, (_, i) => h2request(s, { ':path': `/slow?i=${i}`, ':method': 'GET' })),
      );
      // node:http2 respects the peer's SETTINGS and queues; the server advertised 10.
      expect(s.remoteSettings.maxConcurrentStreams).toBe(10);
      // node:http2 does not queue over the peer's limit: the excess streams are refused by the server.
      const ok = results.filter((r) => r.status === 'fulfilled');
      const refused = results.filter(
        (r) => r.status === 'rejected' && /REFUSED_STREAM/.test(String((r.reason as Error).message)),
      );
      expect(ok.length).toBe(10);
      expect(refused.length).toBe(4);
      // The connection carries on: the next request on it is served.
      expect((await h2request(s, { ':path': '/again', ':method': 'GET' })).status).toBe(200);
    } finally {
      s.close();
    }
    // A raw client that ignores the limit gets REFUSED_STREAM for the excess.
    const r = await rawSession(
      gw.port,
      (write) => {
        const parts: Buffer[] = [];
        for (let i = 0; i < 14; i++) {
          const block = Buffer.concat([
            Buffer.from([0x82, 0x86]),
            hpackLiteral(':path', '/slow'),
            hpackLiteral(':authority', 'x'),
          ]);
          parts.push(frame(F.HEADERS, END_HEADERS | END_STREAM, 1 + i * 2, block));
        }
        // After the server's SETTINGS had a chance to arrive.
        setTimeout(() => write(Buffer.concat(parts)), 100);
      },
      1500,
    );
    expect(r.rstCodes.filter((c) => c === h2constants.NGHTTP2_REFUSED_STREAM).length).toBe(4);
    await stillServes(gw.port, false);
  });
});

describe('curl', () => {
  let tlsGw: TestGateway;
  let h2cGw: TestGateway;
  let curlH2 = false;
  beforeAll(async () => {
    try {
      const v = await run('curl', ['-V']);
      curlH2 = /HTTP2/.test(v.stdout);
    } catch {
      curlH2 = false;
    }
    tlsGw = await startGateway(config(true));
    h2cGw = await startGateway(config(false, { h2c: true }));
  });
  afterAll(async () => {
    await tlsGw?.close();
    await h2cGw?.close();
  });

  test('curl --http2 over TLS and --http2-prior-knowledge over cleartext', async (ctx) => {
    if (!curlH2) ctx.skip();
    const tls = await run('curl', [
      '-sS',
      '--http2',
      '--cacert',
      at('ca.crt'),
      '--resolve',
      `localhost:${tlsGw.port}:127.0.0.1`,
      '-w',
      '\\n%{http_version}',
      `https://localhost:${tlsGw.port}/curl`,
    ]);
    expect(tls.stdout.trim().endsWith('\n2')).toBe(true);
    expect(tls.stdout).toContain('"url":"/curl"');
    const h2c = await run('curl', [
      '-sS',
      '--http2-prior-knowledge',
      '-w',
      '\\n%{http_version}',
      `http://127.0.0.1:${h2cGw.port}/curl-h2c`,
    ]);
    expect(h2c.stdout.trim().endsWith('\n2')).toBe(true);
    expect(h2c.stdout).toContain('"url":"/curl-h2c"');
  });
});
