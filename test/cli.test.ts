import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { runCli } from './process.js';

describe('trellis CLI', () => {
  test('validate: exit 0 for a valid file', async () => {
    const r = await runCli(['validate', 'examples/quickstart.yaml']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('valid');
  });

  test('validate: exit 1 with every error as file:line:column path: message', async () => {
    const r = await runCli(['validate', 'examples/invalid.yaml']);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThan(5);
    expect(r.stderr).toContain(
      'examples/invalid.yaml:19:15 routes[0].match.path: unknown key "prefx" (did you mean "prefix"?)',
    );
    expect(lines.at(-1)).toMatch(/^\d+ errors in examples\/invalid\.yaml$/);
  });

  test('validate: references that do not resolve are errors with a suggestion', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-cli-'));
    const file = join(dir, 'c.json');
    writeFileSync(
      file,
      JSON.stringify(
        {
          listeners: [{ name: 'public', port: 8080 }],
          services: [{ name: 'users', endpoints: ['http://127.0.0.1:3000'] }],
          routes: [{ name: 'r', backends: [{ service: 'user' }] }],
        },
        null,
        2,
      ),
    );
    const r = await runCli(['validate', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /c\.json:\d+:\d+ routes\[0\]\.backends\[0\]\.service: .*"user".*did you mean "users"/,
    );
  });

  test('validate: a missing file is an error, not a crash', async () => {
    const r = await runCli(['validate', 'no/such/file.yaml']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no/such/file.yaml');
  });

  test('schema prints a JSON Schema', async () => {
    const r = await runCli(['schema']);
    expect(r.code).toBe(0);
    const schema = JSON.parse(r.stdout);
    expect(schema.$schema).toContain('2020-12');
    expect(schema.properties.listeners).toBeDefined();
    expect(schema.additionalProperties).toBe(false);
  });

  test('--help and --version on every command', async () => {
    for (const cmd of [[], ['gateway'], ['validate'], ['schema']]) {
      const h = await runCli([...cmd, '--help']);
      expect(h.code).toBe(0);
      expect(h.stdout).toMatch(/Usage: trellis/);
      const v = await runCli([...cmd, '--version']);
      expect(v.code).toBe(0);
      expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    }
  });

  test('usage errors exit 2 with help', async () => {
    const a = await runCli(['gateway']);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain('--config FILE is required');
    const b = await runCli(['frobnicate']);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain('unknown command');
    const c = await runCli(['gateway', '--config', 'examples/quickstart.yaml', '--workers', 'many']);
    expect(c.code).toBe(2);
  });

  test('gateway with an invalid config exits 1 and prints the errors', async () => {
    const r = await runCli(['gateway', '--config', 'examples/invalid.yaml', '--workers', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('did you mean "prefix"');
  });
});
