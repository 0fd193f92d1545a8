import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ROOT, runCli } from './process.js';

// Every example config must pass `trellis validate`, so that the docs never point at a broken file. The folder is
// read, not listed here, so a new example is covered as soon as it exists. invalid.yaml is wrong on purpose;
// test/cli.test.ts checks that it fails.
const examples = readdirSync(join(ROOT, 'examples'))
  .filter((f) => /\.ya?ml$/.test(f) && f !== 'invalid.yaml')
  .sort();

describe('examples/', () => {
  test('holds example configs', () => {
    expect(examples).toEqual(
      expect.arrayContaining(['quickstart.yaml', 'resilience.yaml', 'dns-discovery.yaml']),
    );
  });

  test.each(examples)('trellis validate examples/%s exits 0', async (file) => {
    const r = await runCli(['validate', `examples/${file}`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});
