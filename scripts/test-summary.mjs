// Prints the plain `N passed, N failed` line CI reads, from vitest's JSON report.
// A run that stopped before vitest (typecheck or lint failed) has no fresh report: it counts as one failure.
import { existsSync, readFileSync, statSync } from 'node:fs';

const [file = '.vitest-report.json', startedAt = '0'] = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
if (existsSync(file) && statSync(file).mtimeMs >= Number(startedAt)) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed = report.numPassedTests ?? 0;
  failed = report.numFailedTests ?? 0;
  // A file that failed to load fails no test by name; count it so the line cannot read green.
  if (failed === 0 && (report.numFailedTestSuites ?? 0) > 0) failed = report.numFailedTestSuites;
  skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
} else {
  failed = 1;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
