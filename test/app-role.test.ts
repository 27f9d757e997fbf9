// The request role is per deployment: named after its database (or
// DATABASE_APP_ROLE), marked as this service's, and a role that is not
// marked for this database is never changed. Two deployments on one
// PostgreSQL server keep serving whatever order they start in.
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';
import { appRoleMark, appRoleName, ensureAppRole, runMigrations } from '../src/db/setup.ts';
import { TEST_TOKENS, tokenFor } from './helpers/app.ts';
import { useTestDatabase } from './helpers/db.ts';
import { withDatabase } from './helpers/local.ts';
import { startServer, type ServerProcess } from './helpers/process.ts';

const { templateUrl } = inject('postgres');
const admin = postgres(withDatabase(templateUrl, 'postgres'), { max: 1, onnotice: () => {} });
const databases: string[] = [];
const roles: string[] = [];
const folders: string[] = [];
const servers: ServerProcess[] = [];

async function freshDatabase(label: string): Promise<string> {
  const name = `${label}_${randomBytes(4).toString('hex')}`;
  await admin`create database ${admin(name)}`;
  databases.push(name);
  roles.push(`${name}_app`);
  return withDatabase(templateUrl, name);
}

async function dataFolder(): Promise<string> {
  const folder = await mkdtemp(path.join(tmpdir(), 'tenancy-role-'));
  await chmod(folder, 0o755);
  folders.push(folder);
  return folder;
}

async function canLogIn(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end();
  }
}

afterAll(async () => {
  await Promise.all(servers.filter((server) => server.child.exitCode === null).map((server) => server.stop()));
  for (const name of databases) await admin`drop database if exists ${admin(name)} with (force)`;
  for (const role of roles) await admin`drop role if exists ${admin(role)}`;
  await admin.end();
  await Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true })));
});

type Deployment = { url: string; env: Record<string, string>; server?: ServerProcess; token?: string };

async function deployment(label: string): Promise<Deployment> {
  const url = await freshDatabase(label);
  const env = { DATABASE_URL: url, TENANCY_DATA_DIR: await dataFolder(), JWT_SECRET: TEST_TOKENS.secret!, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' };
  return { url, env };
}

async function start(deployed: Deployment): Promise<void> {
  deployed.server = await startServer(deployed.env);
  servers.push(deployed.server);
  if (!deployed.token) {
    const owner = postgres(deployed.url, { max: 1, onnotice: () => {} });
    const [admin] = await owner<{ userId: string; tenantId: string }[]>`
      select m.user_id as "userId", m.tenant_id as "tenantId" from app.memberships m
      join app.users u on u.id = m.user_id where u.email = 'admin@acme.example'`;
    await owner.end();
    deployed.token = await tokenFor(admin!.userId, admin!.tenantId);
  }
}

async function agentCount(deployed: Deployment): Promise<unknown> {
  const response = await fetch(`${deployed.server!.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${deployed.token}` },
    body: JSON.stringify({ query: '{ tenant { slug } agents { edges { node { name } } } }' }),
  });
  const body = (await response.json()) as { data?: { tenant: { slug: string }; agents: { edges: unknown[] } }; errors?: unknown };
  return body.errors ?? { slug: body.data!.tenant.slug, agents: body.data!.agents.edges.length };
}

let staging: Deployment;
let production: Deployment;

beforeAll(async () => {
  [staging, production] = await Promise.all([deployment('staging'), deployment('production')]);
});

it('two deployments on one server, two databases: each has its own role, and both serve after the other started', async () => {
  await start(staging);
  expect(await agentCount(staging)).toEqual({ slug: 'acme', agents: 3 });
  await start(production);
  expect(await agentCount(production)).toEqual({ slug: 'acme', agents: 3 });
  expect(await agentCount(staging)).toEqual({ slug: 'acme', agents: 3 });

  // And the other way round: staging restarts while production serves.
  expect(await staging.server!.stop()).toBe(0);
  await start(staging);
  expect(await agentCount(staging)).toEqual({ slug: 'acme', agents: 3 });
  expect(await agentCount(production)).toEqual({ slug: 'acme', agents: 3 });

  const marks = await admin<{ rolname: string; mark: string }[]>`
    select rolname, shobj_description(oid, 'pg_authid') as mark from pg_roles
    where rolname = any(${[appRoleName(staging.url), appRoleName(production.url)]}) order by rolname desc`;
  expect(marks).toEqual([
    { rolname: appRoleName(staging.url), mark: appRoleMark(new URL(staging.url).pathname.slice(1)) },
    { rolname: appRoleName(production.url), mark: appRoleMark(new URL(production.url).pathname.slice(1)) },
  ]);
  // Three starts, each migrating a fresh database and seeding the demo: 60 s (the default) is not enough on a loaded machine.
}, 240_000);

it('leaves alone a role of its name that it did not create for this database, and says what to set', async () => {
  const url = await freshDatabase('theirs');
  const role = appRoleName(url);
  await admin.unsafe(`create role "${role}" login password 'their-password'`);
  const theirs = Object.assign(new URL(url), { username: role, password: 'their-password' }).toString();

  await expect(ensureAppRole(url, await dataFolder())).rejects.toThrow(
    `the role ${role} exists and was not created by this service for the database ${new URL(url).pathname.slice(1)} (it has no comment saying so)`,
  );
  // Marked for another database (a deployment whose database has another name): the same.
  await admin.unsafe(`comment on role "${role}" is '${appRoleMark('elsewhere')}'`);
  await expect(ensureAppRole(url, await dataFolder())).rejects.toThrow(/set DATABASE_APP_ROLE to a role name that is free, or DATABASE_APP_URL/);
  expect(await canLogIn(theirs)).toBe(true);
  const [after] = await admin<{ mark: string }[]>`select shobj_description(oid, 'pg_authid') as mark from pg_roles where rolname = ${role}`;
  expect(after!.mark).toBe(appRoleMark('elsewhere'));

  // The service refuses to start on it, with that message.
  const refused = await startServer({ DATABASE_URL: url, TENANCY_DATA_DIR: await dataFolder(), JWT_SECRET: TEST_TOKENS.secret!, PORT: '0' }).then(
    () => 'started',
    (error: Error) => error.message,
  );
  expect(refused).toContain('exited with 1');
  expect(refused).toContain(`the role ${role} exists and was not created by this service`);
});

it('adopts an unmarked role whose password its data folder holds (created before roles were marked)', async () => {
  const url = await freshDatabase('legacy');
  const role = appRoleName(url);
  const folder = await dataFolder();
  const password = randomBytes(32).toString('hex');
  await writeFile(path.join(folder, 'app-role-password'), `${password}\n`, { mode: 0o600 });
  await admin.unsafe(`create role "${role}" login password '${password}'`);
  const appUrl = await ensureAppRole(url, folder);
  expect(new URL(appUrl).username).toBe(role);
  const [marked] = await admin<{ mark: string }[]>`select shobj_description(oid, 'pg_authid') as mark from pg_roles where rolname = ${role}`;
  expect(marked!.mark).toBe(appRoleMark(new URL(url).pathname.slice(1)));
});

it('names the role DATABASE_APP_ROLE says, and refuses a database migrated for another role', async () => {
  const clone = await useTestDatabase(); // migrated for tenancy_app (test/global-setup.ts)
  const role = `other_${randomBytes(4).toString('hex')}`;
  roles.push(role);
  const appUrl = await ensureAppRole(clone.ownerUrl, await dataFolder(), role);
  expect(new URL(appUrl).username).toBe(role);
  await expect(runMigrations(clone.ownerUrl, appUrl, () => {})).rejects.toThrow(
    `the request role ${role} holds no grants in the database ${new URL(clone.ownerUrl).pathname.slice(1)}: it was migrated for tenancy_app (set DATABASE_APP_ROLE to that role)`,
  );

  expect(loadConfig({ DATABASE_URL: 'postgres://o@db/x', DATABASE_APP_ROLE: 'staging_app' }).databaseAppRole).toBe('staging_app');
  expect(() => loadConfig({ DATABASE_APP_ROLE: 'Staging-App' })).toThrow(ConfigError);
  expect(() => loadConfig({ DATABASE_URL: 'postgres://o@db/x', DATABASE_APP_URL: 'postgres://a@db/x', DATABASE_APP_ROLE: 'a' })).toThrow(/exclusive/);
  expect(appRoleName('postgres://o@db/tenancy')).toBe('tenancy_app');
  expect(appRoleName('postgres://o@db/Shop-Prod')).toBe('shop_prod_app');
});
