// Per-file databases cloned from the migrated template (test/global-setup.ts).
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, inject } from 'vitest';
import { createPool, type Sql } from '../../src/db/pool.ts';
import { withDatabase } from './local.ts';
import { appPoolRouting, startPgBouncer } from './pgbouncer.ts';

// Cleanups registered while the file runs (useTestDatabase is called inside
// beforeAll, where an afterAll registered is never run by vitest 4): run when
// the file ends, newest first. This module is imported at the top of each test
// file, so its afterAll belongs to the file and runs after the file's own.
const fileCleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of fileCleanups.splice(0).reverse()) await cleanup();
});

/** Runs `cleanup` when the test file has ended (callable from inside beforeAll, unlike afterAll). */
export function atFileEnd(cleanup: () => Promise<void> | void): void {
  fileCleanups.push(async () => cleanup());
}

export type TestDatabase = {
  /** Owner (superuser) connection to this file's database. */
  readonly ownerUrl: string;
  /** The request role on this file's database. */
  readonly appUrl: string;
  /** Owner pool: fixtures and checks behind the API's back. */
  readonly owner: Sql;
  /** A request-role pool, closed with the database. */
  appPool(max?: number, onQuery?: (query: string, parameters: readonly unknown[]) => void): Sql;
};

/** A fresh migrated database for this test file, dropped after it. */
export async function useTestDatabase(): Promise<TestDatabase> {
  const { templateUrl, appRoleUrl, templateName } = inject('postgres');
  const name = `test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(withDatabase(templateUrl, 'postgres'), { max: 1, onnotice: () => {} });
  await admin`create database ${admin(name)} template ${admin(templateName)}`;
  const ownerUrl = withDatabase(templateUrl, name);
  const appUrl = withDatabase(appRoleUrl, name);
  const owner = postgres(ownerUrl, { max: 4, onnotice: () => {} });
  const pools: Sql[] = [];
  // routeAppPoolsThroughPgBouncer(): app pools reach this database through PgBouncer (transaction mode, no prepared statements).
  const routing = appPoolRouting();
  const bouncer = routing ? await startPgBouncer(routing) : undefined;
  atFileEnd(async () => {
    await Promise.all([owner, ...pools].map((pool) => pool.end({ timeout: 5 })));
    await bouncer?.stop();
    await admin`drop database if exists ${admin(name)} with (force)`;
    await admin.end();
  });
  return {
    ownerUrl,
    appUrl,
    owner,
    appPool: (max = 4, onQuery?: (query: string, parameters: readonly unknown[]) => void) => {
      const pool = createPool(bouncer ? bouncer.url(appUrl) : appUrl, { max, prepare: !bouncer, onQuery });
      pools.push(pool);
      return pool;
    },
  };
}
