// Prints the plain `N passed, N failed` line CI reads, summed over vitest JSON reports.
// Usage: node scripts/test-summary.mjs <started-at ms> <report.json>...
// A run that stopped before vitest (typecheck or lint failed) has no fresh report: it counts as one failure.
import { existsSync, readFileSync, statSync } from 'node:fs';

const [startedAt = '0', ...files] = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of files.length > 0 ? files : ['.vitest-report.json']) {
  if (!existsSync(file) || statSync(file).mtimeMs < Number(startedAt)) {
    failed += 1;
    continue;
  }
  const report = JSON.parse(readFileSync(file, 'utf8'));
  let failedHere = report.numFailedTests ?? 0;
  // A file that failed to load fails no test by name; count it so the line cannot read green.
  if (failedHere === 0 && (report.numFailedTestSuites ?? 0) > 0) failedHere = report.numFailedTestSuites;
  passed += report.numPassedTests ?? 0;
  failed += failedHere;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
