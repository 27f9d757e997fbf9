// Running the real entry points (server, CLI) as child processes.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');

export type CliResult = { code: number | null; stdout: string; stderr: string; json: unknown };

/** Runs `tenancy <args>` (src/cli/main.ts) with `env` on top of a clean environment. */
export function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return runScript('src/cli/main.ts', args, env);
}

/** Runs a script of the repo to its end; stdout parsed as JSON on success, else stderr's first line. */
export function runScript(script: string, args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, script), ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      const text = code === 0 ? stdout : stderr.split('\n')[0] ?? '';
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
  });
}

export type ServerProcess = {
  readonly child: ChildProcess;
  readonly url: string;
  readonly output: () => string;
  /** SIGTERM, then the exit code; a process still running `timeoutMs` later is killed and the stop fails with its output. */
  stop(timeoutMs?: number): Promise<number | null>;
};

/** Starts `npm start`'s entry point and waits for its "listening" log line. */
export function startServer(env: Record<string, string>, timeoutMs = 90_000): Promise<ServerProcess> {
  const child = spawn(process.execPath, [path.join(ROOT, 'src/main.ts')], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in time:\n${output}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"url":"(http:\/\/[^"]+)\/graphql","msg":"listening"/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({
          child,
          url: match[1]!,
          output: () => output,
          stop: async (stopTimeoutMs = 30_000) => {
            child.kill('SIGTERM');
            let timer: NodeJS.Timeout | undefined;
            const hung = new Promise<never>((_, fail) => {
              timer = setTimeout(() => {
                child.kill('SIGKILL'); // what a hung stop leaves behind never outlives the test
                fail(new Error(`the server did not exit within ${stopTimeoutMs} ms of SIGTERM:\n${output.slice(-6_000)}`));
              }, stopTimeoutMs);
            });
            try {
              return await Promise.race([exited, hung]);
            } finally {
              clearTimeout(timer);
            }
          },
        });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${output}`));
    });
  });
}
