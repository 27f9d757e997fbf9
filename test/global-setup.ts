// One embedded PostgreSQL for the whole run, with a migrated template
// database; each test file clones its own database from it (test/helpers/db.ts).
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { openEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.ts';
import { APP_ROLE, ensureAppRole, runMigrations } from '../src/db/setup.ts';
import { freePort, withDatabase } from './helpers/local.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    postgres: { templateUrl: string; appRoleUrl: string; templateName: string };
  }
}

const TEMPLATE = 'tenancy_template';

let server: EmbeddedServer | undefined;
let dataDir: string | undefined;

export async function setup(project: TestProject) {
  dataDir = await mkdtemp(path.join(tmpdir(), 'tenancy-test-'));
  await chmod(dataDir, 0o755);
  server = await openEmbeddedPostgres({ dataDir, port: await freePort() });
  const templateUrl = withDatabase(server.ownerUrl, TEMPLATE);
  const admin = postgres(server.ownerUrl, { max: 1, onnotice: () => {} });
  await admin`create database ${admin(TEMPLATE)}`;
  await admin.end();
  // tenancy_app, as test/sql/*.sql and the catalog tests name it; clones keep the template's grants to it.
  const appRoleUrl = await ensureAppRole(templateUrl, dataDir, APP_ROLE);
  await runMigrations(templateUrl, appRoleUrl, () => {});
  project.provide('postgres', { templateUrl, appRoleUrl, templateName: TEMPLATE });
}

export async function teardown() {
  await server?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}
