import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatConfigErrors } from './format.js';
import { type LoadResult, loadConfigFile, loadConfigText, validateConfig } from './load.js';

const dir = mkdtempSync(join(tmpdir(), 'trellis-load-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BASE = [
  'listeners:', //                        1
  '  - name: public', //                  2
  '    port: 8080', //                    3
  'services:', //                         4
  '  - name: demo', //                    5
  '    endpoints: [http://127.0.0.1:3000]', // 6
  'routes:', //                           7
  '  - name: api', //                     8
  '    match:', //                        9
  '      path: { prefix: /api }', //      10
  '    backends:', //                     11
  '      - service: demo', //             12
];

function load(text: string | string[], file = 'test.yaml'): LoadResult {
  return loadConfigText(Array.isArray(text) ? text.join('\n') : text, file, { env: {}, baseDir: dir });
}

/** `line:col path: message` per error, for compact assertions. */
function errors(text: string | string[]): string[] {
  const r = load(text);
  if (r.ok) throw new Error('expected errors, the config loaded');
  return r.errors.map((e) => `${e.line}:${e.column} ${e.path}: ${e.message}`);
}

function ok(text: string | string[], file?: string) {
  const r = load(text, file);
  if (!r.ok) throw new Error(formatConfigErrors(r.errors));
  return r;
}

describe('loading valid configs', () => {
  it('loads YAML and fills in defaults', () => {
    const { config, source } = ok(BASE);
    expect(config.listeners[0]).toEqual({
      name: 'public',
      address: '127.0.0.1',
      port: 8080,
      protocol: 'http',
      trustedProxies: [],
      limits: { maxHeaderBytes: 16 * 1024, maxHeaderCount: 100, maxRequestsPerConnection: 0 },
      timeouts: { headers: 10_000, request: 300_000, idle: 60_000 },
      http2: { enabled: true, h2c: false, maxConcurrentStreams: 100 },
    });
    expect(config.routes[0]!.timeouts).toEqual({ request: 15_000, upstreamIdle: 60_000 });
    expect(config.routes[0]!.backends).toEqual([{ service: 'demo', weight: 1 }]);
    expect(config.admin).toEqual({ address: '127.0.0.1', port: 9901, enabled: true });
    expect(config.accessLog.output).toBe('off');
    expect(config.gateway).toEqual({
      drainTimeout: 30_000,
      websocketGrace: 30_000,
      via: 'trellis',
      zone: '',
    });
    expect(source.file).toBe('test.yaml');
    expect(source.text).toBe(BASE.join('\n'));
    expect(source.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(source.secretPaths).toEqual([]);
  });

  it('loads the same config from JSON, with the same hash', () => {
    const json = JSON.stringify(
      {
        routes: [{ backends: [{ service: 'demo' }], match: { path: { prefix: '/api' } }, name: 'api' }],
        services: [{ name: 'demo', endpoints: ['http://127.0.0.1:3000'] }],
        listeners: [{ name: 'public', port: 8080 }],
      },
      null,
      '\t',
    );
    const fromJson = ok(json, 'test.json');
    const fromYaml = ok(BASE);
    expect(fromJson.config).toEqual(fromYaml.config);
    expect(fromJson.source.hash).toBe(fromYaml.source.hash);
    // Comments and formatting do not change the hash; content does.
    expect(ok(['# a comment', ...BASE]).source.hash).toBe(fromYaml.source.hash);
    expect(ok(BASE.map((l) => l.replace('8080', '8081'))).source.hash).not.toBe(fromYaml.source.hash);
  });

  it('reads durations and sizes', () => {
    const { config } = ok([
      ...BASE,
      '    timeouts: { request: 15s, upstreamIdle: 1.5m }',
      '    limits: { maxBodyBytes: 10MiB }',
      '  - name: other',
      '    backends: [{ service: demo }]',
      '    timeouts: { request: 250, upstreamIdle: 2h }',
      '    limits: { maxBodyBytes: 64kb }',
      'gateway: { drainTimeout: 250ms }',
    ]);
    expect(config.routes[0]!.timeouts).toEqual({ request: 15_000, upstreamIdle: 90_000 });
    expect(config.routes[0]!.limits.maxBodyBytes).toBe(10 * 1024 * 1024);
    expect(config.routes[1]!.timeouts).toEqual({ request: 250, upstreamIdle: 7_200_000 });
    expect(config.routes[1]!.limits.maxBodyBytes).toBe(64_000);
    expect(config.gateway.drainTimeout).toBe(250);
  });

  it('rejects a duration longer than a Node.js timer can wait', () => {
    expect(errors([...BASE, '    timeouts: { request: 1000h }'])).toEqual([
      '13:26 routes[0].timeouts.request: expected a duration of at most 2147483647ms (about 24.8 days, the longest Node.js timer), got "1000h"',
    ]);
  });

  it('returns a deeply frozen config', () => {
    const { config } = ok(BASE);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.routes[0]!.match.path)).toBe(true);
  });

  it('supports aliases and merge keys', () => {
    const { config } = ok([
      ...BASE,
      '    timeouts: &slow { request: 1m }',
      '  - name: other',
      '    match: { path: { prefix: /other } }',
      '    backends: [{ service: demo }]',
      '    timeouts: *slow',
      '    limits:',
      '      <<: { maxBodyBytes: 1KiB }',
    ]);
    expect(config.routes[1]!.timeouts.request).toBe(60_000);
    expect(config.routes[1]!.limits.maxBodyBytes).toBe(1024);
  });

  it('loads examples/quickstart.yaml', async () => {
    const r = await loadConfigFile(new URL('../../examples/quickstart.yaml', import.meta.url).pathname);
    if (!r.ok) throw new Error(formatConfigErrors(r.errors));
    expect(r.config.listeners.map((l) => `${l.name} ${l.address}:${l.port}`)).toEqual([
      'public 127.0.0.1:8080',
    ]);
    expect(r.config.admin.port).toBe(9901);
    expect(r.config.accessLog.output).toBe('stdout');
    expect(r.config.routes.map((route) => route.name)).toEqual([
      'api',
      'users',
      'api-canary',
      'old-api',
      'healthz',
    ]);
    expect(r.config.routes[3]!.redirect).toEqual({ path: { full: '/api' }, statusCode: 301 });
    expect(r.config.routes[4]!.directResponse).toEqual({
      status: 200,
      body: 'ok',
      contentType: 'text/plain; charset=utf-8',
    });
  });
});

describe('schema errors', () => {
  it('reports every mistake in examples/invalid.yaml, in file order', async () => {
    const file = new URL('../../examples/invalid.yaml', import.meta.url).pathname;
    const r = await loadConfigFile(file);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const text = formatConfigErrors(r.errors).replaceAll(file, 'examples/invalid.yaml');
    expect(text).toBe(
      [
        'examples/invalid.yaml:7:11 listeners[0].port: expected a number, got a string ("8080")',
        'examples/invalid.yaml:8:15 listeners[0].protocol: expected one of: http, got "https"',
        'examples/invalid.yaml:14:5 services[0]: unknown key "conectTimeout" (did you mean "connectTimeout"?)',
        'examples/invalid.yaml:19:15 routes[0].match.path: unknown key "prefx" (did you mean "prefix"?)',
        'examples/invalid.yaml:20:17 routes[0].match.methods[0]: expected an upper-case HTTP method such as GET or POST, got "get"',
        'examples/invalid.yaml:28:19 routes[1].redirect.statusCode: expected one of: 301, 302, 303, 307, 308, got 305',
        'examples/invalid.yaml:35:16 routes[2].timeouts.request: expected a duration such as "250ms", "15s", "2m" or "1h", got "15 seconds"',
        'examples/invalid.yaml:38:7 routes[3].directResponse.status: missing required key "status"',
        '8 errors in examples/invalid.yaml',
      ].join('\n'),
    );
  });

  it('points at an unknown key itself and suggests a close known key', () => {
    expect(errors(BASE.map((l) => l.replace('    port: 8080', '    prot: 8080')))).toEqual([
      '2:5 listeners[0].port: missing required key "port"',
      '3:5 listeners[0]: unknown key "prot" (did you mean "port"?)',
    ]);
    // Case-insensitive equal counts as close.
    expect(errors([...BASE, '    PreserveHost: false'])).toEqual([
      '13:5 routes[0]: unknown key "PreserveHost" (did you mean "preserveHost"?)',
    ]);
    // Nothing close: the known keys are listed instead.
    expect(errors([...BASE, 'admin: { bogus: 1 }'])).toEqual([
      '13:10 admin: unknown key "bogus"; expected one of: address, port, enabled, token',
    ]);
  });

  it('reports one useful message for a union of objects', () => {
    const withPath = (path: string) => BASE.map((l) => l.replace('{ prefix: /api }', path));
    expect(errors(withPath('{ prefx: /api }'))).toEqual([
      '10:15 routes[0].match.path: unknown key "prefx" (did you mean "prefix"?)',
    ]);
    expect(errors(withPath('{ prefix: api }'))).toEqual([
      '10:23 routes[0].match.path.prefix: expected a path starting with "/", got "api"',
    ]);
    expect(errors(withPath('{ exact: /a, prefix: /b }'))).toEqual([
      '10:13 routes[0].match.path: expected exactly one of "exact", "prefix", "template" or "regex", got "exact" and "prefix"',
    ]);
    expect(errors(withPath('{}'))).toEqual([
      '10:13 routes[0].match.path: expected exactly one of "exact", "prefix", "template" or "regex", got none of them',
    ]);
    expect(errors(withPath('/api'))).toEqual([
      '10:13 routes[0].match.path: expected an object with exactly one of "exact", "prefix", "template" or "regex", got a string ("/api")',
    ]);
    expect(errors([...BASE, '    rewrite: { path: { regex: "^/a" } }'])).toEqual([
      '13:22 routes[0].rewrite.path.substitution: missing required key "substitution"',
    ]);
  });

  it('describes type and range mistakes', () => {
    expect(
      errors([
        ...BASE,
        '    preserveHost: "yes"',
        '    requestHeaders: { set: { "bad header": x, x-ok: 1 } }',
        'admin: { port: 70000 }',
        'gateway: { drainTimeout: 1.5 }',
      ]),
    ).toEqual([
      '13:19 routes[0].preserveHost: expected true or false, got a string ("yes")',
      '14:30 routes[0].requestHeaders.set["bad header"]: invalid key "bad header": expected an HTTP header name (RFC 9110 token)',
      '14:53 routes[0].requestHeaders.set["x-ok"]: expected a string, got 1',
      '15:16 admin.port: expected a number at most 65535, got 70000',
      '16:26 gateway.drainTimeout: expected an integer, got 1.5',
    ]);
  });

  it('reports a missing listeners list and a wrong root', () => {
    expect(errors(['routes: []'])).toEqual(['1:1 listeners: missing required key "listeners"']);
    expect(errors(['listeners: []'])).toEqual([
      '1:12 listeners: expected at least 1 item, got an empty array',
    ]);
    expect(errors(['- a'])).toEqual(['1:1 : expected an object, got an array of 1 item']);
    expect(errors('')).toEqual(['1:1 : the config is empty; expected an object with "listeners"']);
  });

  it('reports many errors at once, sorted by line', () => {
    const text = [
      'listeners:',
      '  - { name: a, port: x }',
      '  - { name: B, port: 1 }',
      '  - { name: c, port: 2, protocol: tcp }',
      'routes:',
      '  - { name: r1, match: { path: { exact: nope } } }',
      '  - { name: r2, timeouts: { request: soon } }',
      'accessLogs: { output: stdout }',
    ];
    const found = errors(text);
    expect(found).toHaveLength(6);
    expect(found.map((e) => e.split(' ')[0])).toEqual(['2:22', '3:13', '4:35', '6:41', '7:38', '8:1']);
    expect(found[5]).toBe('8:1 : unknown key "accessLogs" (did you mean "accessLog"?)');
  });
});

describe('YAML problems', () => {
  it('reports duplicate keys with their position', () => {
    expect(errors(['listeners:', '  - name: a', '    port: 1', '    port: 2'])).toEqual([
      '4:5 listeners[0]: duplicate key "port"',
    ]);
    expect(errors('{"listeners": [{"name": "a", "port": 1}], "listeners": []}')).toEqual([
      '1:43 : duplicate key "listeners"',
    ]);
  });

  it('reports syntax errors with line and column', () => {
    const found = errors(['listeners:', '  - name: a', '    port: [1, 2', 'routes: []']);
    expect(found.length).toBeGreaterThan(0);
    expect(found[0]).toMatch(/^\d+:\d+ .*syntax error: /);
    expect(errors(['listeners: []', '---', 'routes: []'])[0]).toBe(
      '2:1 : a config file holds one document; remove the second "---" and what follows',
    );
    expect(errors('{"listeners": [1, 2,, 3]}')[0]).toMatch(/^1:\d+ .*syntax error/);
  });

  it('rejects unknown tags', () => {
    expect(errors([...BASE, '    preserveHost: !secret yes'])).toEqual([
      '13:19 routes[0].preserveHost: unresolved tag: !secret; tags are not supported in config files',
    ]);
  });

  it('stops an alias bomb', () => {
    const lol = (name: string, ref: string) => `${name}: &${name} [${Array(9).fill(ref).join(', ')}]`;
    const text = [
      'a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]',
      lol('b', '*a'),
      lol('c', '*b'),
      lol('d', '*c'),
    ];
    const found = errors(text);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^2:\d+ : too many aliases/);
  });

  it('rejects a recursive alias', () => {
    expect(errors(['listeners: &l [*l]'])).toEqual([
      '1:15 listeners[0]: recursive alias: this node contains itself',
    ]);
  });
});

describe('files', () => {
  it('reads a file and names it in errors', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'listeners:\n  - name: a\n    port: 99999\n');
    const r = await loadConfigFile(file);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(formatConfigErrors(r.errors)).toBe(
        `${file}:3:11 listeners[0].port: expected a number at most 65535, got 99999\n1 error in ${file}`,
      );
  });

  it('reports a file that cannot be read', async () => {
    const r = await loadConfigFile(join(dir, 'missing.yaml'));
    expect(r).toEqual({
      ok: false,
      errors: [
        { file: join(dir, 'missing.yaml'), path: '', message: 'cannot read the config file: no such file' },
      ],
    });
  });

  it('resolves a relative access log path against the config folder', () => {
    const { config } = ok([...BASE, 'accessLog: { output: access.log }']);
    expect(config.accessLog.output).toBe(join(dir, 'access.log'));
    expect(readFileSync(new URL('../../examples/quickstart.yaml', import.meta.url), 'utf8')).toContain(
      'stdout',
    );
  });
});

describe('validateConfig', () => {
  it('validates plain data with the same checks, without positions', () => {
    const r = validateConfig({ listeners: [{ name: 'a', port: 1, prot: 2 }], routes: [{ name: 'r' }] });
    expect(r).toEqual({
      ok: false,
      errors: [
        { file: '<config>', path: 'listeners[0]', message: 'unknown key "prot" (did you mean "port"?)' },
      ],
    });
    const good = validateConfig({ listeners: [{ name: 'a', port: 1 }] });
    expect(good.ok).toBe(true);
  });
});

describe('YAML version', () => {
  it('refuses a %YAML 1.1 directive (yes/no booleans, octals) with its line', () => {
    const r = loadConfigText(
      ['%YAML 1.1', '---', 'listeners: [{ name: a, port: 8080 }]'].join('\n'),
      'v11.yaml',
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors[0]!.line).toBe(1);
    expect(r.errors[0]!.message).toMatch(/only YAML 1\.2/);
  });
});
