// `npm start` as the README runs it: SIGTERM or SIGINT sent to the npm process
// (not to node) stops the service cleanly, and no process is left behind
// (npm -> sh -> node passes no signal on unless the script execs node).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { appRoleName } from '../src/db/setup.ts';
import { withDatabase } from './helpers/local.ts';
import { ROOT } from './helpers/process.ts';

const { templateUrl } = inject('postgres');
const admin = postgres(withDatabase(templateUrl, 'postgres'), { max: 1, onnotice: () => {} });
const database = `npm_start_${randomBytes(4).toString('hex')}`;
let dataDir: string;

beforeAll(async () => {
  await admin`create database ${admin(database)}`;
  dataDir = await mkdtemp(path.join(tmpdir(), 'tenancy-npm-start-'));
  await chmod(dataDir, 0o755);
});

afterAll(async () => {
  await admin`drop database if exists ${admin(database)} with (force)`;
  await admin`drop role if exists ${admin(appRoleName(withDatabase(templateUrl, database)))}`;
  await admin.end();
  await rm(dataDir, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  it(`stops on ${signal} to the npm process, leaving no process behind`, async () => {
    const npm = spawn('npm', ['start'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? tmpdir(),
        DATABASE_URL: withDatabase(templateUrl, database),
        TENANCY_DATA_DIR: dataDir,
        PORT: '0',
        HOST: '127.0.0.1',
        DEMO_DATA: 'false',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    npm.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    npm.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      npm.once('exit', (code, exitSignal) => resolve({ code, signal: exitSignal })),
    );
    await expect.poll(() => /"pid":(\d+),"url":"[^"]+","msg":"listening"/.test(output), { timeout: 90_000, interval: 100 }).toBe(true);
    const server = Number(/"pid":(\d+),"url":"[^"]+","msg":"listening"/.exec(output)![1]);
    expect(server).not.toBe(npm.pid);

    npm.kill(signal);
    const result = await exited;
    expect(result, output).toEqual({ code: 0, signal: null });
    expect(output).toContain(`"signal":"${signal}"`);
    expect(output).toContain('"msg":"stopped"');
    await expect.poll(() => alive(server), { timeout: 5_000 }).toBe(false);
  });
}
