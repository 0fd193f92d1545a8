// Prints the plain closing line of a vitest JSON report: "<label>: N passed, N failed[, N skipped]".
import { readFileSync } from 'node:fs';

const [file = '.tmp/vitest-report.json', label = 'tests'] = process.argv.slice(2);
const r = JSON.parse(readFileSync(file, 'utf8'));
const skipped = r.numPendingTests + r.numTodoTests;
process.stdout.write(
  `${label}: ${r.numPassedTests} passed, ${r.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}\n`,
);
