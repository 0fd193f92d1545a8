// Writes docs/errors.md from the error catalog (needs `npm run build` first).
import { writeFileSync } from 'node:fs';

const { renderErrorDocs } = await import('../dist/core/error-docs.js');
writeFileSync(new URL('../docs/errors.md', import.meta.url), renderErrorDocs());
process.stdout.write('docs/errors.md written\n');
