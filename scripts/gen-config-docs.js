// Writes docs/configuration.md from the config schema (needs `npm run build` first).
import { writeFileSync } from 'node:fs';

const { renderConfigReference } = await import('../dist/config/reference-docs.js');
writeFileSync(new URL('../docs/configuration.md', import.meta.url), renderConfigReference());
process.stdout.write('docs/configuration.md written\n');
