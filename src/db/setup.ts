// Gets a database ready for the service: the owner connection (given, or the
// embedded server), the request role, and the committed migrations.
import path from 'node:path';
import { Logger, migrate } from 'graphile-migrate';
// Not re-exported by the package index; ends the pools migrate() keeps warm.
import { clearAllPools } from 'graphile-migrate/dist/pgReal.js';
import postgres from 'postgres';
import type { Config } from '../config.ts';
import { readOrCreateSecret } from '../secret-file.ts';
import type { EmbeddedServer } from './embedded.ts';

export const APP_ROLE = 'tenancy_app';
export const MIGRATIONS_FOLDER = path.resolve(import.meta.dirname, '../../migrations');

export type DatabaseUrls = {
  /** Owns the schema; migrations and the operator CLI. */
  readonly ownerUrl: string;
  /** The request role: not owner, not superuser, NOBYPASSRLS. */
  readonly appUrl: string;
  readonly embedded: EmbeddedServer | undefined;
};

type Log = (message: string) => void;

/** Owner and app connections, starting the embedded server when no DATABASE_URL is set. */
export async function connectDatabase(config: Config, log: Log): Promise<DatabaseUrls> {
  // Loaded only when used: a deployment with DATABASE_URL needs no server binaries.
  const embedded = config.databaseUrl
    ? undefined
    : await (await import('./embedded.ts')).openEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, log });
  const ownerUrl = config.databaseUrl ?? embedded!.ownerUrl;
  const appUrl = config.databaseAppUrl ?? (await ensureAppRole(ownerUrl, config.dataDir));
  return { ownerUrl, appUrl, embedded };
}

/**
 * Creates (or refreshes) the login role the server's requests use, with a
 * password kept in the data folder, and returns its connection string.
 */
export async function ensureAppRole(ownerUrl: string, dataDir: string): Promise<string> {
  const password = await readOrCreateSecret(path.join(dataDir, 'app-role-password'));
  if (!/^[0-9a-f]{64}$/.test(password)) throw new Error('app-role-password in the data folder is not ours: remove it');
  const sql = postgres(ownerUrl, { max: 1, onnotice: () => {} });
  try {
    const [me] = await sql<{ can: boolean }[]>`
      select rolsuper or rolcreaterole as can from pg_roles where rolname = current_user`;
    if (!me?.can) {
      throw new Error(`DATABASE_APP_URL is not set and the DATABASE_URL role cannot create the ${APP_ROLE} role: set DATABASE_APP_URL`);
    }
    // Role statements take no parameters; the password is our own hex string (checked above).
    const attributes = `login nosuperuser nobypassrls nocreatedb nocreaterole noinherit password '${password}'`;
    const [role] = await sql`select 1 from pg_roles where rolname = ${APP_ROLE}`;
    await sql.unsafe(`${role ? 'alter' : 'create'} role ${APP_ROLE} with ${attributes}`).catch((error: { code?: string }) => {
      if (error.code !== '42710') throw error; // created meanwhile by another process
    });
  } finally {
    await sql.end();
  }
  const url = new URL(ownerUrl);
  url.username = APP_ROLE;
  url.password = password;
  return url.toString();
}

/** Applies the committed migrations (graphile-migrate takes an advisory lock). */
export async function runMigrations(ownerUrl: string, appUrl: string, log: Log): Promise<void> {
  const owner = decodeURIComponent(new URL(ownerUrl).username);
  const app = decodeURIComponent(new URL(appUrl).username);
  try {
    await migrate({
      connectionString: ownerUrl,
      databaseOwner: owner,
      migrationsFolder: MIGRATIONS_FOLDER,
      placeholders: { ':DATABASE_APP': quoteIdentifier(app) },
      logger: new Logger(() => (level, message) => log(`[migrate ${level}] ${message}`)),
    });
  } finally {
    // Its pool exits the process with 1 on any error of an idle connection,
    // such as PostgreSQL stopping: close it now rather than 200 ms later.
    clearAllPools();
  }
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

