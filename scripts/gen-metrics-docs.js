// Writes docs/metrics.md from the metrics registry (needs `npm run build` first).
import { writeFileSync } from 'node:fs';

const { renderMetricsDocs } = await import('../dist/observability/metrics.js');
writeFileSync(new URL('../docs/metrics.md', import.meta.url), renderMetricsDocs());
process.stdout.write('docs/metrics.md written\n');
