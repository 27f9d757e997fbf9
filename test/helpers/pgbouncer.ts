// PgBouncer (Debian's package, `pgbouncer` on the PATH or in /usr/sbin) in
// transaction mode in front of the test PostgreSQL, started and stopped by the
// test file that uses it: its own ini and auth file in a temp folder, a free
// port, every database of the server reachable by its name. It refuses to run
// as root, so as root it is started with `-u nobody` (CI runs as root). A
// watchdog stops it when the test worker ends, even if nobody calls stop().
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { freePort } from './local.ts';

export type PgBouncerOptions = {
  /** Server connections per database and user (PgBouncer's default_pool_size). */
  readonly poolSize?: number;
  /** PgBouncer >= 1.21 only: protocol-level prepared statements kept per server connection (0: off). */
  readonly maxPreparedStatements?: number;
};

export type PgBouncer = {
  readonly version: string;
  readonly port: number;
  /** The same connection string (user, password, database), through PgBouncer. */
  url(databaseUrl: string): string;
  /** Everything PgBouncer logged so far (warnings, refused logins). */
  log(): string;
  stop(): Promise<void>;
};

/**
 * Startup parameters the service sends (src/db/pool.ts: per-connection
 * ceilings) that PgBouncer 1.18 does not track: without this it refuses the
 * login ("unsupported startup parameter"). Behind PgBouncer those ceilings
 * come from the role instead (docs/deployment.md); every request transaction
 * sets its own statement and lock timeout anyway.
 */
export const IGNORED_STARTUP_PARAMETERS = [
  'extra_float_digits',
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'client_connection_check_interval',
];

/** The pgbouncer binary, or undefined when it is not installed (.ci/run installs it: npm run ensure-pgbouncer). */
export function pgbouncerBinary(): string | undefined {
  const onPath = spawnSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) return onPath;
  return existsSync('/usr/sbin/pgbouncer') ? '/usr/sbin/pgbouncer' : undefined;
}

/** "1.18.0", from `pgbouncer --version`. */
export function pgbouncerVersion(binary = pgbouncerBinary()): string {
  if (!binary) throw new Error('pgbouncer is not installed: run `npm run ensure-pgbouncer` (Debian: apt-get install pgbouncer)');
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout;
  const version = /PgBouncer (\d+\.\d+(?:\.\d+)?)/.exec(out)?.[1];
  if (!version) throw new Error(`unexpected pgbouncer --version output: ${out}`);
  return version;
}

/** True when `version` is at least `major.minor`. */
export function versionAtLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

/** Starts PgBouncer in front of the run's test PostgreSQL (test/global-setup.ts). */
export async function startPgBouncer(options: PgBouncerOptions = {}): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  const version = pgbouncerVersion(binary);
  const { templateUrl, appRoleUrl } = inject('postgres');
  const server = new URL(templateUrl);
  const dir = await mkdtemp(path.join(tmpdir(), 'tenancy-pgbouncer-'));
  await chmod(dir, 0o755); // readable by `nobody`
  const port = await freePort();
  // PgBouncer logs in to PostgreSQL with these (SCRAM from the plain passwords) and checks its clients against them.
  const users = [new URL(templateUrl), new URL(appRoleUrl)].map(
    (url) => `"${decodeURIComponent(url.username)}" "${decodeURIComponent(url.password)}"`,
  );
  await writeFile(path.join(dir, 'userlist.txt'), `${users.join('\n')}\n`, { mode: 0o644 });
  const settings = [
    '[databases]',
    `* = host=${server.hostname} port=${server.port}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = scram-sha-256',
    `auth_file = ${path.join(dir, 'userlist.txt')}`,
    'pool_mode = transaction',
    `default_pool_size = ${options.poolSize ?? 4}`,
    'max_client_conn = 2000',
    `ignore_startup_parameters = ${IGNORED_STARTUP_PARAMETERS.join(', ')}`,
    ...(options.maxPreparedStatements !== undefined ? [`max_prepared_statements = ${options.maxPreparedStatements}`] : []),
    'log_connections = 0',
    'log_disconnections = 0',
    'server_login_retry = 1',
  ];
  const ini = path.join(dir, 'pgbouncer.ini');
  await writeFile(ini, `${settings.join('\n')}\n`, { mode: 0o644 });
  const args = process.getuid?.() === 0 ? ['-u', 'nobody', ini] : [ini];
  // A watchdog shell between us and PgBouncer: when this process ends, however it ends, its stdin closes and PgBouncer is stopped.
  const child = spawn('sh', ['-c', 'exec 3<&0 0</dev/null; "$@" & p=$!; cat <&3 >/dev/null; kill -TERM $p 2>/dev/null; wait $p', 'pgbouncer', binary!, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Never what keeps a test worker alive: the watchdog ends PgBouncer when the worker goes.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, child, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    version,
    port,
    url(databaseUrl) {
      const url = new URL(databaseUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    log: () => output,
    stop,
  };
}

async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pgbouncer exited at start:\n${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > until) throw new Error(`pgbouncer did not listen on ${port} within 10 s:\n${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

let appPoolsThroughPgBouncer: PgBouncerOptions | undefined;

/**
 * From now on, in this test file, useTestDatabase's appPool connects through
 * a PgBouncer of its own (transaction mode, prepare: false): a test file that
 * calls this and then imports another runs that file's tests through PgBouncer.
 */
export function routeAppPoolsThroughPgBouncer(options: PgBouncerOptions = {}): void {
  appPoolsThroughPgBouncer = options;
}

/** Set by routeAppPoolsThroughPgBouncer (read by test/helpers/db.ts). */
export function appPoolRouting(): PgBouncerOptions | undefined {
  return appPoolsThroughPgBouncer;
}
