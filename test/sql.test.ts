// Runs every psql-runnable file in test/sql against this file's database,
// the way psql would (simple protocol, one script). A failed assertion in a
// file is an error here.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

const folder = path.join(import.meta.dirname, 'sql');
const files = readdirSync(folder).filter((file) => file.endsWith('.sql')).sort();

let db: TestDatabase;
// One connection, as psql has: the scripts open and roll back their own transaction.
let psql: postgres.Sql;
beforeAll(async () => {
  db = await useTestDatabase();
  psql = postgres(db.ownerUrl, { max: 1, onnotice: () => {} });
});
afterAll(() => psql.end());

it('finds the SQL tests', () => {
  expect(files).toContain('isolation.sql');
  expect(files).toContain('roles.sql');
  expect(files).toContain('sessions_tasks.sql');
  expect(files).toContain('knowledge.sql');
  expect(files).toContain('lifecycle.sql');
});

it.each(files)('%s passes', async (file) => {
  try {
    await psql.unsafe(readFileSync(path.join(folder, file), 'utf8')).simple();
  } finally {
    await psql`rollback`; // a failed script leaves its transaction open
  }
  // Rolled back: it left nothing behind.
  const [row] = await db.owner`select count(*)::int as n from app.tenants where slug like 'sql-%'`;
  expect(row!.n).toBe(0);
});

it('would fail on a broken policy: a failing assertion surfaces as an error', async () => {
  const script = `begin; set local role tenancy_app; do $$ begin assert (select count(*) from app.agents) = 1, 'expected'; end $$; rollback;`;
  await expect(psql.unsafe(script).simple()).rejects.toThrow(/expected/);
  await psql`rollback`;
});
