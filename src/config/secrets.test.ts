// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings under test hold ${env:} and ${file:} references.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatConfigErrors } from './format.js';
import { loadConfigFile, loadConfigText } from './load.js';
import { redactConfig } from './redact.js';

const dir = mkdtempSync(join(tmpdir(), 'trellis-secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, 'secrets'));
writeFileSync(join(dir, 'secrets', 'token'), 's3cret-from-file\n');
writeFileSync(join(dir, 'secrets', 'two-lines'), 'a\nb\n\n');
writeFileSync(join(dir, 'secrets', 'one-line'), 'ab\n');

const CONFIG = [
  'listeners:', //                                                 1
  '  - name: public', //                                           2
  '    port: 8080', //                                             3
  'services:', //                                                  4
  '  - name: demo', //                                             5
  '    endpoints: ["http://${env:UPSTREAM_HOST}:3000"]', //        6
  'routes:', //                                                    7
  '  - name: api', //                                              8
  '    backends: [{ service: demo }]', //                          9
  '    requestHeaders:', //                                        10
  '      set:', //                                                 11
  '        authorization: "Bearer ${env:API_TOKEN}"', //          12
  '        x-file-token: ${file:secrets/token}', //                13
  '        x-two-lines: ${file:secrets/one-line}', //              14
  '        x-literal: "price: $${AMOUNT}"', //                     15
  '        x-plain: plain', //                                     16
].join('\n');

const env = { UPSTREAM_HOST: '127.0.0.1', API_TOKEN: 'tok-123' };

describe('secret references', () => {
  it('substitutes env and file references, relative to the config folder', async () => {
    const file = join(dir, 'trellis.yaml');
    writeFileSync(file, CONFIG);
    const r = await loadConfigFile(file, { env });
    if (!r.ok) throw new Error(formatConfigErrors(r.errors));
    expect(r.config.services[0]!.endpoints).toEqual(['http://127.0.0.1:3000']);
    expect(r.config.routes[0]!.requestHeaders!.set).toEqual({
      authorization: 'Bearer tok-123',
      'x-file-token': 's3cret-from-file',
      // The file's final newline is stripped.
      'x-two-lines': 'ab',
      'x-literal': 'price: ${AMOUNT}',
      'x-plain': 'plain',
    });
    expect(r.source.secretPaths).toEqual([
      ['services', '0', 'endpoints', '0'],
      ['routes', '0', 'requestHeaders', 'set', 'authorization'],
      ['routes', '0', 'requestHeaders', 'set', 'x-file-token'],
      ['routes', '0', 'requestHeaders', 'set', 'x-two-lines'],
    ]);
    // The source keeps the references, never the secrets.
    expect(r.source.text).toBe(CONFIG);
    expect(r.source.text).not.toContain('tok-123');
  });

  it('redacts the values that came from references', () => {
    const r = loadConfigText(CONFIG, join(dir, 'trellis.yaml'), { env });
    if (!r.ok) throw new Error(formatConfigErrors(r.errors));
    const shown = redactConfig(r.config, r.source.secretPaths) as typeof r.config;
    expect(shown.services[0]!.endpoints).toEqual(['<redacted>']);
    expect(shown.routes[0]!.requestHeaders!.set).toEqual({
      authorization: '<redacted>',
      'x-file-token': '<redacted>',
      'x-two-lines': '<redacted>',
      'x-literal': 'price: ${AMOUNT}',
      'x-plain': 'plain',
    });
    expect(JSON.stringify(shown)).not.toMatch(/tok-123|s3cret/);
    // The config itself is untouched.
    expect(r.config.routes[0]!.requestHeaders!.set!.authorization).toBe('Bearer tok-123');
  });

  it('a multi-line secret in a header value is an error that does not quote it', () => {
    const text = CONFIG.replace('secrets/one-line', 'secrets/two-lines');
    const r = loadConfigText(text, join(dir, 'trellis.yaml'), { env });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => `${e.line} ${e.path}`)).toEqual([
      '14 routes[0].requestHeaders.set["x-two-lines"]',
    ]);
    expect(r.errors[0]!.message).toMatch(/control characters.*reference/);
  });

  it('changes the hash when a secret changes', () => {
    const a = loadConfigText(CONFIG, join(dir, 'trellis.yaml'), { env });
    const b = loadConfigText(CONFIG, join(dir, 'trellis.yaml'), { env: { ...env, API_TOKEN: 'tok-456' } });
    expect(a.ok && b.ok && a.source.hash !== b.source.hash).toBe(true);
  });

  it('reports a missing variable or file at its node, naming it', () => {
    const r = loadConfigText(CONFIG.replace('secrets/token', 'secrets/nope'), join(dir, 'trellis.yaml'), {
      env: { UPSTREAM_HOST: '127.0.0.1' },
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => `${e.line}:${e.column} ${e.path}: ${e.message}`)).toEqual([
      '12:24 routes[0].requestHeaders.set.authorization: environment variable "API_TOKEN" is not set',
      `13:23 routes[0].requestHeaders.set["x-file-token"]: cannot read file "secrets/nope": no such file (${join(dir, 'secrets', 'nope')})`,
    ]);
  });

  it('rejects unknown and unterminated references', () => {
    const r = loadConfigText(
      [
        'listeners:',
        '  - name: a',
        '    port: 1',
        'gateway:',
        '    via: ${ENV:X}',
        'admin: { address: "${env:A" }',
      ].join('\n'),
      'x.yaml',
      { env: { A: '1' } },
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => `${e.line}:${e.column} ${e.path}: ${e.message}`)).toEqual([
      '5:10 gateway.via: unknown reference "${ENV:X}": expected ${env:NAME} or ${file:PATH} (write "$${" for a literal "${")',
      '6:19 admin.address: unterminated "${": expected ${env:NAME} or ${file:PATH} (write "$${" for a literal "${")',
    ]);
  });

  it('never quotes a secret back in an error, and explains that references give strings', () => {
    const r = loadConfigText(['listeners:', '  - name: a', '    port: ${env:PORT}'].join('\n'), 'x.yaml', {
      env: { PORT: 'hunter2' },
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors[0]!.message).toBe(
      'expected a number, got a string (from a ${env:} or ${file:} reference) (references always give strings)',
    );
    expect(JSON.stringify(r.errors)).not.toContain('hunter2');
  });

  it('refuses to read a directory or a huge file', () => {
    writeFileSync(join(dir, 'huge'), Buffer.alloc(2 * 1024 * 1024));
    const r = loadConfigText(
      [
        'listeners:',
        '  - name: a',
        '    port: 1',
        'gateway: { via: "${file:huge}" }',
        'accessLog: { output: "${file:secrets}" }',
      ].join('\n'),
      join(dir, 'x.yaml'),
      { env: {} },
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.message)).toEqual([
      `cannot read file "huge": ${join(dir, 'huge')} is larger than 1 MiB`,
      `cannot read file "secrets": ${join(dir, 'secrets')} is not a regular file`,
    ]);
  });
});
