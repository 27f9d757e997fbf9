// Gets a database ready for the service: the owner connection (given, or the
// embedded server), the request role, and the committed migrations.
import path from 'node:path';
import { Logger, migrate } from 'graphile-migrate';
// Not re-exported by the package index; ends the pools migrate() keeps warm.
import { clearAllPools } from 'graphile-migrate/dist/pgReal.js';
import postgres from 'postgres';
import type { Config } from '../config.ts';
import { readOrCreateSecret } from '../secret-file.ts';
import { waitForDatabase } from './connect.ts';
import type { EmbeddedServer } from './embedded.ts';

/** The request role of a database named `tenancy` (the embedded server's, docker-compose's), and the test suite's. */
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
  await waitForDatabase(ownerUrl, config.dbConnectTimeoutMs, log); // bounded: never a silent hang at start
  const appUrl = config.databaseAppUrl ?? (await ensureAppRole(ownerUrl, config.dataDir, config.databaseAppRole));
  return { ownerUrl, appUrl, embedded };
}

/**
 * The request role's name for the database of `ownerUrl`: `<database>_app`,
 * so that deployments sharing a PostgreSQL server (staging and production,
 * say) never share, or fight over, one role.
 */
export function appRoleName(ownerUrl: string): string {
  const database = decodeURIComponent(new URL(ownerUrl).pathname.slice(1)) || decodeURIComponent(new URL(ownerUrl).username);
  const name = `${database.toLowerCase().replace(/[^a-z0-9_]/g, '_')}_app`;
  if (Buffer.byteLength(name) > 63) throw new Error(`the database name "${database}" is too long to name its request role after: set DATABASE_APP_ROLE`);
  return name;
}

/**
 * Creates the login role the server's requests use, or refreshes one that
 * this service created for this database (its comment says so), with a
 * password kept in the data folder; returns its connection string. A role of
 * that name that is not ours is never changed: start-up stops instead.
 */
export async function ensureAppRole(ownerUrl: string, dataDir: string, role = appRoleName(ownerUrl)): Promise<string> {
  const password = await readOrCreateSecret(path.join(dataDir, 'app-role-password'));
  if (!/^[0-9a-f]{64}$/.test(password)) throw new Error('app-role-password in the data folder is not ours: remove it');
  const url = new URL(ownerUrl);
  url.username = role;
  url.password = password;
  const sql = postgres(ownerUrl, { max: 1, onnotice: () => {} });
  try {
    const [me] = await sql<{ can: boolean; database: string }[]>`
      select rolsuper or rolcreaterole as can, current_database() as database from pg_roles where rolname = current_user`;
    if (!me?.can) {
      throw new Error(`DATABASE_APP_URL is not set and the DATABASE_URL role cannot create the ${role} role: set DATABASE_APP_URL`);
    }
    const mark = appRoleMark(me.database);
    // Role statements take no parameters: the name is quoted, the password is our own hex string (checked above).
    const attributes = `login nosuperuser nobypassrls nocreatedb nocreaterole noinherit password '${password}'`;
    const markIt = `comment on role ${quoteIdentifier(role)} is ${quoteLiteral(mark)}`;
    for (let attempt = 0; ; attempt++) {
      const [existing] = await sql<{ mark: string | null }[]>`
        select shobj_description(oid, 'pg_authid') as mark from pg_roles where rolname = ${role}`;
      if (!existing) {
        const created = await sql
          .begin(async (tx) => {
            await tx.unsafe(`create role ${quoteIdentifier(role)} with ${attributes}`);
            await tx.unsafe(markIt);
            return true;
          })
          .catch((error: { code?: string }) => {
            if (error.code === '42710' && attempt === 0) return false; // created meanwhile by another process: look again
            throw error;
          });
        if (created) break;
        continue;
      }
      if (existing.mark !== mark && !(existing.mark === null && (await canLogIn(url)))) {
        throw new Error(
          `the role ${role} exists and was not created by this service for the database ${me.database}` +
            ` (${existing.mark === null ? 'it has no comment saying so' : `its comment: "${existing.mark}"`}), so it is left as it is:` +
            ' set DATABASE_APP_ROLE to a role name that is free, or DATABASE_APP_URL to connect as that role',
        );
      }
      // Ours (or unmarked, from before roles were marked, with our password): refresh it.
      await sql.begin(async (tx) => {
        await tx.unsafe(`alter role ${quoteIdentifier(role)} with ${attributes}`);
        await tx.unsafe(markIt);
      });
      break;
    }
  } finally {
    await sql.end();
  }
  return url.toString();
}

/** The comment that marks a request role as created by this service for one database. */
export function appRoleMark(database: string): string {
  return `Tenancy request role of database ${database}`;
}

async function canLogIn(url: URL): Promise<boolean> {
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end();
  }
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
  await checkAppRole(ownerUrl, app);
}

/**
 * The request role after migrating holds this database's grants: a database
 * migrated for another role would answer every request with "permission
 * denied". (Whether RLS holds for it is db/request-role.ts's check.)
 */
async function checkAppRole(ownerUrl: string, app: string): Promise<void> {
  const sql = postgres(ownerUrl, { max: 1, onnotice: () => {} });
  try {
    const [role] = await sql<{ granted: boolean; grantees: string | null; database: string }[]>`
      select has_schema_privilege(r.oid, 'app', 'USAGE') as granted,
             current_database() as database,
             (select string_agg(g.rolname, ', ') from pg_namespace n, aclexplode(n.nspacl) a
                join pg_roles g on g.oid = a.grantee
               where n.nspname = 'app' and a.privilege_type = 'USAGE' and g.oid <> n.nspowner) as grantees
      from pg_roles r where r.rolname = ${app}`;
    if (!role) throw new Error(`the request role ${app} does not exist`);
    if (!role.granted) {
      throw new Error(
        `the request role ${app} holds no grants in the database ${role.database}` +
          (role.grantees ? `: it was migrated for ${role.grantees} (set DATABASE_APP_ROLE to that role)` : ''),
      );
    }
  } finally {
    await sql.end();
  }
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

