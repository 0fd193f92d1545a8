import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer as createHttpsServer,
  Agent as HttpsAgent,
  type Server as HttpsServer,
  request as httpsRequest,
  type RequestOptions,
} from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileSnapshot } from '../src/compile/snapshot.js';
import type { ConfigError } from '../src/config/errors.js';
import { loadConfigText } from '../src/config/load.js';
import { type ConfigInput, configSchema } from '../src/config/schema.js';
import type { ClientCertificate } from '../src/proxy/client-cert.js';
import { Exchange, type ExchangeHost } from '../src/proxy/exchange.js';
import type { RequestStage } from '../src/proxy/stage.js';
import { certificateReload } from '../src/proxy/tls.js';
import { compileRouter } from '../src/router/index.js';
import { UpstreamRegistry } from '../src/upstream/registry.js';
import { type Echoed, startGateway, startUpstream, type TestGateway, type Upstream } from './helpers.js';
import { ROOT, spawnGateway } from './process.js';

// HTTPS listeners on real sockets: SNI, versions, ALPN, certificate reload, client certificates. The fixtures are
// made by scripts/gen-test-certs.js (test-only CA, server and client certificates) into a temp folder.

const run = promisify(execFile);
let dir: string;
let up: Upstream;
const read = (name: string) => readFileSync(join(dir, name));
const at = (name: string) => join(dir, name);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-tls-'));
  await run(process.execPath, [join(ROOT, 'scripts/gen-test-certs.js'), dir, '--years', '1']);
  up = await startUpstream();
  certificateReload.intervalMs = 100;
});

afterAll(async () => {
  await up?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Tls = NonNullable<ConfigInput['listeners'][number]['tls']>;

function tlsConfig(tls: Tls): ConfigInput {
  return {
    listeners: [{ name: 'secure', port: 0, tls }],
    services: [{ name: 'svc', endpoints: [up.url] }],
    routes: [{ name: 'all', backends: [{ service: 'svc' }] }],
    admin: { enabled: false },
  };
}

const pair = (name: string, names?: string[]) => ({ cert: at(`${name}.crt`), key: at(`${name}.key`), names });

type Handshake =
  | { ok: true; san: string; serial: string; protocol: string | null; alpn: string | false | null }
  | { ok: false; code: string | undefined; message: string };

/** A TLS handshake only: which certificate the server chose, with which version and ALPN protocol. */
function handshake(port: number, opts: ConnectionOptions = {}): Promise<Handshake> {
  return new Promise((resolve) => {
    const s = tlsConnect(
      { host: '127.0.0.1', port, ca: read('ca.crt'), checkServerIdentity: () => undefined, ...opts },
      () => {
        const c = s.getPeerX509Certificate();
        resolve({
          ok: true,
          san: c?.subjectAltName ?? '',
          serial: c?.serialNumber ?? '',
          protocol: s.getProtocol(),
          alpn: s.alpnProtocol,
        });
        s.end();
      },
    );
    s.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code, message: e.message }));
  });
}

interface Reply {
  status: number;
  body: string;
  socket: TLSSocket;
  /** Serial of the server certificate on this connection. */
  serial: string | undefined;
}

/** An HTTPS request; rejects when the connection or handshake fails. */
function get(port: number, opts: RequestOptions = {}, path = '/'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        ca: read('ca.crt'),
        servername: 'localhost',
        agent: false,
        ...opts,
      },
      (res) => {
        // Taken now: a keep-alive agent detaches the socket from the response once it ends.
        const socket = res.socket as TLSSocket;
        // Read during the response: Node's client forgets it when a keep-alive socket goes back to the pool.
        const serial = socket.getPeerX509Certificate()?.serialNumber;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, socket, serial }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const echoed = (r: Reply) => JSON.parse(r.body) as Echoed;

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const serialOf = (name: string) => new X509Certificate(read(name)).serialNumber;
const sha256Of = (name: string) =>
  new X509Certificate(read(name)).fingerprint256.replaceAll(':', '').toLowerCase();

describe('SNI, versions, ALPN', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway(
      tlsConfig({ certificates: [pair('default'), pair('api'), pair('wildcard'), pair('multi')] }),
    );
  });
  afterAll(() => gw.close());

  test('SNI picks the exact name first, then a wildcard of one label, then the first certificate', async () => {
    const san = async (servername?: string) => {
      const h = await handshake(gw.port, servername === undefined ? {} : { servername });
      if (!h.ok) throw new Error(h.message);
      return h.san;
    };
    expect(await san('api.example.test')).toBe('DNS:api.example.test');
    expect(await san('API.Example.Test')).toBe('DNS:api.example.test');
    expect(await san('www.example.test')).toBe('DNS:*.example.test');
    expect(await san('b.multi.test')).toBe('DNS:a.multi.test, DNS:b.multi.test');
    // One label only: a.b.example.test is not covered by *.example.test, nor is example.test itself.
    expect(await san('a.b.example.test')).toContain('DNS:localhost');
    expect(await san('example.test')).toContain('DNS:localhost');
    expect(await san('unknown.test')).toContain('DNS:localhost');
    // No SNI at all (an IP address as host sends none): the default.
    expect(await san()).toContain('DNS:localhost');
  });

  test('TLS 1.0 and 1.1 are refused; 1.2 and 1.3 are accepted', async () => {
    for (const maxVersion of ['TLSv1', 'TLSv1.1'] as const) {
      const h = await handshake(gw.port, {
        minVersion: 'TLSv1',
        maxVersion,
        // Lets the client offer the old versions at all; the server's refusal is what is tested.
        ciphers: 'DEFAULT@SECLEVEL=0',
      });
      expect(h.ok, maxVersion).toBe(false);
      if (!h.ok) expect(h.message).toMatch(/protocol version|unsupported protocol/i);
    }
    const v12 = await handshake(gw.port, { maxVersion: 'TLSv1.2' });
    expect(v12.ok && v12.protocol).toBe('TLSv1.2');
    const v13 = await handshake(gw.port);
    expect(v13.ok && v13.protocol).toBe('TLSv1.3');
  });

  test('ALPN picks h2 when the client offers it, http/1.1 otherwise; http2.enabled false offers http/1.1 only', async () => {
    const h = await handshake(gw.port, { ALPNProtocols: ['h2', 'http/1.1'] });
    expect(h.ok && h.alpn).toBe('h2');
    const h1 = await handshake(gw.port, { ALPNProtocols: ['http/1.1'] });
    expect(h1.ok && h1.alpn).toBe('http/1.1');
    const cfg = tlsConfig({ certificates: [pair('default')] });
    cfg.listeners[0]!.http2 = { enabled: false };
    const plain = await startGateway(cfg);
    try {
      const p = await handshake(plain.port, { ALPNProtocols: ['h2', 'http/1.1'] });
      expect(p.ok && p.alpn).toBe('http/1.1');
    } finally {
      await plain.close();
    }
  });

  test('requests are proxied with X-Forwarded-Proto https and Forwarded proto=https', async () => {
    const r = await get(
      gw.port,
      { servername: 'api.example.test', headers: { host: 'api.example.test' } },
      '/x',
    );
    expect(r.status).toBe(200);
    const seen = echoed(r);
    expect(seen.url).toBe('/x');
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(seen.headers.forwarded).toContain('proto=https');
  });

  test('curl reaches the listener by SNI and verifies the chain', async (ctx) => {
    const curl = await run('curl', ['--version']).catch(() => undefined);
    if (curl === undefined) ctx.skip();
    const r = await run('curl', [
      '-sS',
      '--cacert',
      at('ca.crt'),
      '--resolve',
      `api.example.test:${gw.port}:127.0.0.1`,
      '-w',
      '\n%{http_code} %{ssl_verify_result}',
      `https://api.example.test:${gw.port}/curl`,
    ]);
    const [body, status] = r.stdout.split('\n');
    expect(status).toBe('200 0');
    expect((JSON.parse(body!) as Echoed).headers['x-forwarded-proto']).toBe('https');
  });
});

test('minVersion TLSv1.3 refuses a TLS 1.2 client', async () => {
  const gw = await startGateway(tlsConfig({ certificates: [pair('default')], minVersion: 'TLSv1.3' }));
  try {
    const v12 = await handshake(gw.port, { maxVersion: 'TLSv1.2' });
    expect(v12.ok).toBe(false);
    const v13 = await handshake(gw.port);
    expect(v13.ok && v13.protocol).toBe('TLSv1.3');
  } finally {
    await gw.close();
  }
});

describe('certificate reload', () => {
  let gw: TestGateway;
  let files: string;
  beforeAll(async () => {
    files = mkdtempSync(join(tmpdir(), 'trellis-tls-rot-'));
    copyFileSync(at('api.crt'), join(files, 'live.crt'));
    copyFileSync(at('api.key'), join(files, 'live.key'));
    gw = await startGateway(
      tlsConfig({
        certificates: [{ cert: join(files, 'live.crt'), key: join(files, 'live.key') }],
      }),
    );
  });
  afterAll(async () => {
    await gw.close();
    rmSync(files, { recursive: true, force: true });
  });

  const servedSerial = async () => {
    const h = await handshake(gw.port, { servername: 'api.example.test' });
    return h.ok ? h.serial : `failed: ${h.message}`;
  };

  test('new files on disk: new handshakes get the new certificate, an open connection keeps working', async () => {
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
    try {
      const opts = { agent, servername: 'api.example.test' };
      const before = await get(gw.port, opts);
      expect(before.status).toBe(200);
      expect(before.serial).toBe(serialOf('api.crt'));

      copyFileSync(at('api-rotated.key'), join(files, 'live.key'));
      copyFileSync(at('api-rotated.crt'), join(files, 'live.crt'));
      await until(
        'the rotated certificate',
        async () => (await servedSerial()) === serialOf('api-rotated.crt'),
      );

      // The keep-alive connection opened before the rotation carries on, with the certificate it shook hands with.
      const after = await get(gw.port, opts);
      expect(after.status).toBe(200);
      expect(after.socket).toBe(before.socket);
      expect(after.socket.isSessionReused()).toBe(false);
    } finally {
      agent.destroy();
    }
  });

  test('a broken new file is refused and the previous certificate keeps serving', async () => {
    const current = await servedSerial();
    writeFileSync(join(files, 'live.crt'), 'not a certificate\n');
    // Several reload checks (100 ms each, a change acts after it held for two).
    await new Promise((r) => setTimeout(r, 800));
    expect(await servedSerial()).toBe(current);
    // Fixed files are picked up again.
    copyFileSync(at('api.key'), join(files, 'live.key'));
    copyFileSync(at('api.crt'), join(files, 'live.crt'));
    await until('the repaired certificate', async () => (await servedSerial()) === serialOf('api.crt'));
  });

  test('a config reload that changes only certificates keeps the socket and open connections', async () => {
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
    try {
      const opts = { agent, servername: 'api.example.test' };
      const before = await get(gw.port, opts);
      const port = gw.port;
      await gw.apply(tlsConfig({ certificates: [pair('api-rotated')] }));
      expect(Object.values(gw.gateway.ports())).toEqual([port]);
      expect(await servedSerial()).toBe(serialOf('api-rotated.crt'));
      const after = await get(gw.port, opts);
      expect(after.status).toBe(200);
      expect(after.socket).toBe(before.socket);

      // A config whose certificate cannot be loaded is refused as a whole; the live one keeps serving.
      await expect(gw.apply(tlsConfig({ certificates: [pair('expired')] }))).rejects.toThrow(/expired\.crt/);
      expect(await servedSerial()).toBe(serialOf('api-rotated.crt'));
    } finally {
      agent.destroy();
    }
  });
});

describe('client certificates', () => {
  const clientAuth = (mode: 'optional' | 'required') => ({
    certificates: [pair('default')],
    clientAuth: { mode, ca: at('ca.crt'), forwardHeader: 'X-Client-Cert-Info' },
  });
  let client: { cert: Buffer; key: Buffer };
  let stranger: { cert: Buffer; key: Buffer };
  beforeAll(() => {
    client = { cert: read('client.crt'), key: read('client.key') };
    stranger = { cert: read('client-other-ca.crt'), key: read('client-other-ca.key') };
  });

  describe('required', () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startGateway(tlsConfig(clientAuth('required')));
    });
    afterAll(() => gw.close());

    test('no client certificate: the handshake fails', async () => {
      await expect(get(gw.port)).rejects.toThrow();
    });

    test('a certificate from another CA: the connection fails', async () => {
      await expect(get(gw.port, stranger)).rejects.toThrow();
    });

    test('a valid certificate: the request goes through with the identity in the forwarded header', async () => {
      const r = await get(gw.port, {
        ...client,
        headers: { 'x-client-cert-info': 'Hash=forged;URI=spiffe://evil' },
      });
      expect(r.status).toBe(200);
      const header = echoed(r).headers['x-client-cert-info'];
      expect(header).toBe(
        `By=spiffe://trellis.test/gateway;Hash=${sha256Of('client.crt')};Subject="CN=client-1,OU=TEST ONLY,O=Trellis Tests";URI=spiffe://trellis.test/ns/default/sa/client;DNS=client.example.test`,
      );
      expect(header).not.toContain('forged');
    });

    test('curl with a client certificate', async (ctx) => {
      const curl = await run('curl', ['--version']).catch(() => undefined);
      if (curl === undefined) ctx.skip();
      const r = await run('curl', [
        '-sS',
        '--cacert',
        at('ca.crt'),
        '--cert',
        at('client.crt'),
        '--key',
        at('client.key'),
        '--resolve',
        `localhost:${gw.port}:127.0.0.1`,
        `https://localhost:${gw.port}/`,
      ]);
      expect((JSON.parse(r.stdout) as Echoed).headers['x-client-cert-info']).toContain(
        'URI=spiffe://trellis.test/ns/default/sa/client',
      );
    });
  });

  describe('optional', () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startGateway(tlsConfig(clientAuth('optional')));
    });
    afterAll(() => gw.close());

    test('no certificate: the request proceeds without the header, and a client-sent one is removed', async () => {
      const r = await get(gw.port, { headers: { 'x-client-cert-info': 'Hash=forged' } });
      expect(r.status).toBe(200);
      expect(echoed(r).headers['x-client-cert-info']).toBeUndefined();
    });

    test('a certificate that does not verify connects but counts as absent', async () => {
      const r = await get(gw.port, { ...stranger, headers: { 'X-Client-Cert-Info': 'Hash=forged' } });
      expect(r.status).toBe(200);
      expect(echoed(r).headers['x-client-cert-info']).toBeUndefined();
    });

    test('a valid certificate is forwarded', async () => {
      const r = await get(gw.port, client);
      expect(echoed(r).headers['x-client-cert-info']).toContain(`Hash=${sha256Of('client.crt')}`);
    });
  });

  test('the verified identity is what stages see as ctx.clientCert, read once per connection', async () => {
    const seen: (ClientCertificate | undefined)[] = [];
    const probe: RequestStage = {
      name: 'probe',
      onRequest(ctx) {
        seen.push(ctx.clientCert);
        return { kind: 'response', status: 204, headers: {}, body: '' };
      },
    };
    const config = configSchema.parse(tlsConfig(clientAuth('optional')));
    const registry = new UpstreamRegistry();
    const compiled = compileSnapshot(config, 1, registry).listeners.get('secure')!;
    const route = compiled.router.match({
      method: 'GET',
      host: 'localhost',
      path: '/',
      query: '',
      headers: {},
    });
    if (route.kind !== 'match') throw new Error('no route');
    const state = {
      ...compiled,
      router: compileRouter([{ value: { ...route.value, stages: [probe] } }]),
    };
    const host: ExchangeHost = {
      draining: false,
      viaValue: '',
      onFinish: undefined,
      metrics: undefined,
      tracer: undefined,
    };
    const server: HttpsServer = createHttpsServer(
      {
        cert: read('default.crt'),
        key: read('default.key'),
        ca: read('ca.crt'),
        requestCert: true,
        rejectUnauthorized: false,
      },
      (req, res) => new Exchange(host, state, req, res).start(false),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
    try {
      await get(port, { ...client, agent });
      await get(port, { ...client, agent });
      await get(port, {});
      expect(seen).toHaveLength(3);
      const cert = seen[0]!;
      expect(cert).toMatchObject({
        subject: 'CN=client-1,OU=TEST ONLY,O=Trellis Tests',
        issuer: 'CN=Trellis Test CA (TEST ONLY),O=Trellis Tests',
        uris: ['spiffe://trellis.test/ns/default/sa/client'],
        dns: ['client.example.test'],
        emails: ['client@example.test'],
        sha256: sha256Of('client.crt'),
        serialNumber: serialOf('client.crt'),
      });
      expect(cert.validTo.getTime()).toBeGreaterThan(Date.now());
      expect(cert.validFrom.getTime()).toBeLessThan(Date.now());
      // Same connection: the same object, not read again.
      expect(seen[1]).toBe(cert);
      expect(seen[2]).toBeUndefined();
    } finally {
      agent.destroy();
      server.close();
      server.closeAllConnections();
      await registry.closeAll();
    }
  });
});

describe('config checks name the file', () => {
  // Made now: the cases below name files in it.
  const cfgDir = mkdtempSync(join(tmpdir(), 'trellis-tls-cfg-'));
  beforeAll(() => {
    for (const f of ['api', 'api-rotated', 'wildcard', 'expired', 'future', 'ca'])
      for (const ext of ['crt', 'key']) copyFileSync(at(`${f}.${ext}`), join(cfgDir, `${f}.${ext}`));
    copyFileSync(at('wrong.key'), join(cfgDir, 'wrong.key'));
    writeFileSync(join(cfgDir, 'notes.txt'), 'not a PEM file\n');
  });
  afterAll(() => rmSync(cfgDir, { recursive: true, force: true }));

  /** Validates a listener whose `tls` is the given YAML (indented as under `tls:`), paths relative to cfgDir. */
  const validate = (tlsYaml: string) => {
    const text = `listeners:\n  - name: secure\n    port: 8443\n    tls:\n${tlsYaml.replace(/^/gm, '      ')}\nadmin: { enabled: false }\n`;
    return loadConfigText(text, join(cfgDir, 'trellis.yaml'), {
      env: { API_KEY_PEM: read('api.key').toString() },
    });
  };
  const errorsOf = (tlsYaml: string): ConfigError[] => {
    const r = validate(tlsYaml);
    return r.ok ? [] : r.errors;
  };
  const file = (name: string) => JSON.stringify(join(cfgDir, name));

  test('a valid listener: paths relative to the config file become absolute', () => {
    const r = validate(
      'certificates:\n  - { cert: api.crt, key: api.key }\n  - { cert: wildcard.crt, key: wildcard.key, names: [www.example.test] }',
    );
    expect(r.ok ? [] : r.errors).toEqual([]);
    if (r.ok) expect(r.config.listeners[0]!.tls!.certificates[0]!.cert).toBe(join(cfgDir, 'api.crt'));
  });

  test.each([
    [
      'missing file',
      'certificates: [{ cert: nope.crt, key: api.key }]',
      'certificates[0].cert',
      `cannot read certificate file ${file('nope.crt')}: no such file`,
    ],
    [
      'not PEM',
      'certificates: [{ cert: notes.txt, key: api.key }]',
      'certificates[0].cert',
      `certificate file ${file('notes.txt')} holds no PEM certificate`,
    ],
    [
      'a certificate as key',
      'certificates: [{ cert: api.crt, key: api.crt }]',
      'certificates[0].key',
      `key file ${file('api.crt')} holds no PEM private key`,
    ],
    [
      'key of another certificate',
      'certificates: [{ cert: api.crt, key: wrong.key }]',
      'certificates[0].key',
      `key file ${file('wrong.key')} is not the private key of certificate file ${file('api.crt')}`,
    ],
    [
      'expired',
      'certificates: [{ cert: expired.crt, key: expired.key }]',
      'certificates[0].cert',
      `certificate file ${file('expired.crt')} expired on `,
    ],
    [
      'not yet valid',
      'certificates: [{ cert: future.crt, key: future.key }]',
      'certificates[0].cert',
      `certificate file ${file('future.crt')} is not valid before `,
    ],
    [
      'name not covered',
      'certificates: [{ cert: api.crt, key: api.key, names: [www.example.test] }]',
      'certificates[0].names[0]',
      `certificate file ${file('api.crt')} is not valid for "www.example.test" (its DNS names: api.example.test)`,
    ],
    [
      'two labels under a wildcard',
      'certificates: [{ cert: wildcard.crt, key: wildcard.key, names: [a.b.example.test] }]',
      'certificates[0].names[0]',
      `certificate file ${file('wildcard.crt')} is not valid for "a.b.example.test"`,
    ],
    [
      'duplicate names',
      'certificates:\n  - { cert: api.crt, key: api.key }\n  - { cert: api-rotated.crt, key: api-rotated.key }',
      'certificates[1].cert',
      `"api.example.test" is served by certificates[0] (certificate file ${file('api.crt')}) and by certificate file ${file('api-rotated.crt')}`,
    ],
    [
      'CA bundle that is no PEM',
      'certificates: [{ cert: api.crt, key: api.key }]\nclientAuth: { mode: optional, ca: notes.txt }',
      'clientAuth.ca',
      `CA file ${file('notes.txt')} holds no PEM certificate`,
    ],
    [
      'missing CA bundle',
      'certificates: [{ cert: api.crt, key: api.key }]\nclientAuth: { mode: required, ca: none.pem }',
      'clientAuth.ca',
      `cannot read CA file ${file('none.pem')}: no such file`,
    ],
  ])('%s', (_, yaml, path, message) => {
    const errors = errorsOf(yaml);
    expect(errors.map((e) => e.path)).toContain(`listeners[0].tls.${path}`);
    expect(errors.find((e) => e.path === `listeners[0].tls.${path}`)!.message).toContain(message);
  });

  test('settings that do not go together', () => {
    const base = 'certificates: [{ cert: api.crt, key: api.key }]\n';
    expect(errorsOf(`${base}clientAuth: { mode: required }`)[0]).toMatchObject({
      path: 'listeners[0].tls.clientAuth',
      message: expect.stringContaining('clientAuth.mode required needs `ca`'),
    });
    expect(errorsOf(`${base}clientAuth: { forwardHeader: x-client-cert }`)[0]?.message).toContain(
      'forwardHeader needs clientAuth.mode optional or required',
    );
    expect(errorsOf(`${base}minVersion: TLSv1.3\nmaxVersion: TLSv1.2`)[0]?.message).toContain(
      'maxVersion TLSv1.2 is below minVersion TLSv1.3',
    );
    expect(errorsOf(`${base}ciphers: NOT-A-CIPHER`)[0]?.path).toBe('listeners[0].tls.ciphers');
    expect(errorsOf(`${base}minVersion: TLSv1.1`)[0]?.path).toBe('listeners[0].tls.minVersion');
  });

  test('a key comes from a file or a ${file:}/${env:} reference, never written into the config', () => {
    const inline = read('api.key').toString().replace(/\n/g, '\\n');
    expect(errorsOf(`certificates: [{ cert: api.crt, key: "${inline}" }]`)[0]?.message).toContain(
      'a private key must not be written into the config',
    );
    expect(errorsOf('certificates: [{ cert: api.crt, key: "${file:api.key}" }]')).toEqual([]);
    expect(errorsOf('certificates: [{ cert: api.crt, key: "${env:API_KEY_PEM}" }]')).toEqual([]);
  });
});

test('trellis gateway serves HTTPS from a config file', async () => {
  const gp = await spawnGateway(
    `
listeners:
  - name: secure
    port: {{PORT}}
    tls:
      certificates:
        - cert: ${at('default.crt')}
          key: ${at('default.key')}
admin:
  port: {{ADMIN_PORT}}
services:
  - name: svc
    endpoints: ["{{UPSTREAM}}"]
routes:
  - name: all
    backends: [{ service: svc }]
`,
    { upstream: up.url },
  );
  try {
    await gp.waitReady();
    const r = await get(gp.port, {}, '/via-process');
    expect(r.status).toBe(200);
    expect(echoed(r).headers['x-forwarded-proto']).toBe('https');
  } finally {
    gp.kill();
    await gp.exited;
  }
});
