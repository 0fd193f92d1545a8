import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { describeMetrics, renderMetricsDocs } from './metrics.js';

test('docs/metrics.md is generated from the registry (run `npm run docs:metrics` if this fails)', () => {
  const onDisk = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8');
  expect(onDisk).toBe(renderMetricsDocs());
});

test('every Trellis metric is in the docs, says what it tells, and has no label for client values', () => {
  const docs = renderMetricsDocs();
  for (const m of describeMetrics()) {
    if (m.name.startsWith('process_') || m.name.startsWith('nodejs_')) continue;
    expect(m.name).toMatch(/^(http|trellis)_[a-z_]+$/);
    expect(docs).toContain(`| \`${m.name}\` | ${m.type} |`);
    expect(m.help.length, m.name).toBeGreaterThan(60);
    for (const label of m.labels) expect(label).not.toMatch(/path|url|host|client|query|user|header/);
    if (m.type === 'counter') expect(m.name).toMatch(/_total$/);
  }
});
