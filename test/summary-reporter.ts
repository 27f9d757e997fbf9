// Ends the run with one plain line, "Tests: N passed, N failed, N skipped",
// that any CI can read without knowing vitest's output; a file that failed
// outside its tests (a beforeAll, an import) and errors no test owned are
// named after it, since their tests count as skipped, not failed.
import type { Reporter, SerializedError, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError> = []): void {
    const counts = { passed: 0, failed: 0, skipped: 0, pending: 0 };
    const failedFiles: string[] = [];
    for (const module of modules) {
      let failedTests = 0;
      for (const test of module.children.allTests()) {
        counts[test.result().state] += 1;
        if (test.result().state === 'failed') failedTests += 1;
      }
      if (module.state() === 'failed' && failedTests === 0) failedFiles.push(module.moduleId);
    }
    let line = `\nTests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped + counts.pending} skipped`;
    if (failedFiles.length > 0) line += `; ${failedFiles.length} file(s) failed outside their tests: ${failedFiles.join(', ')}`;
    if (unhandledErrors.length > 0) line += `; ${unhandledErrors.length} unhandled error(s)`;
    process.stdout.write(`${line}\n`);
  }
}
