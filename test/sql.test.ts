// Runs every psql-runnable file in test/sql against this file's database,
// the way psql would (simple protocol, one script, `\ir` includes read in
// place), and once through psql itself where the machine has it. A failed
// assertion in a file is an error here.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { withRollback } from './helpers/as-member.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

const folder = path.join(import.meta.dirname, 'sql');
const files = readdirSync(folder).filter((file) => file.endsWith('.sql')).sort();

/** A script as psql reads it: each `\ir file` line replaced by that file (relative to the script). */
function script(file: string): string {
  return readFileSync(file, 'utf8').replace(/^\\ir (\S+)$/gm, (_line, included: string) => script(path.resolve(path.dirname(file), included)));
}

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
  expect(files).toContain('usage.sql');
});

it.each(files)('%s passes', async (file) => {
  try {
    await psql.unsafe(script(path.join(folder, file))).simple();
  } finally {
    await psql`rollback`; // a failed script leaves its transaction open
  }
  // Rolled back: it left nothing behind, its helpers included.
  const [row] = await db.owner`
    select (select count(*) from app.tenants where slug like 'sql-%')::int as tenants,
           (select count(*) from pg_namespace where nspname = 'test_helpers')::int as helpers`;
  expect(row).toEqual({ tenants: 0, helpers: 0 });
});

const helpers = () => script(path.join(folder, 'include/helpers.sql'));

it('the helpers fail a test: an accepted statement, an unexpected error, a wrong count', async () => {
  const run = (body: string) => withRollback(psql, (tx) => tx.unsafe(`${helpers()} ${body}`).simple());
  await expect(run(`select test_helpers.assert_refused('select 1', 'was accepted')`)).rejects.toThrow(/was accepted/);
  await expect(run(`select test_helpers.assert_refused('select 1 / 0', 'unused', 'check_violation')`)).rejects.toThrow(/division by zero/);
  await expect(run(`select test_helpers.assert_refused('select 1 / 0', 'unused', 'insufficient_privilege', '22012')`)).resolves.toBeDefined();
  await expect(run(`do $$ begin assert test_helpers.row_count('select 1 union all select 2') = 1, 'counted 2'; end $$`)).rejects.toThrow(/counted 2/);
});

it('test_helpers.become is a request of the member: the request role, the tenant, the role claim applied', async () => {
  const seen = await withRollback(psql, async (tx) => {
    await tx.unsafe(`${helpers()}
      insert into app.tenants (id, slug, name) values ('f0000000-0000-4000-8000-00000000000f', 'sql-become', 'SQL become');
      insert into app.users (id, email) values ('f0000000-0000-4000-8000-0000000000f1', 'lead@sql-become.test');
      insert into app.memberships (tenant_id, user_id, role)
        values ('f0000000-0000-4000-8000-00000000000f', 'f0000000-0000-4000-8000-0000000000f1', 'LEAD')`).simple();
    const [granted] = await tx`select test_helpers.become('sql-become', 'f0000000-0000-4000-8000-0000000000f1', 'MEMBER') as role`;
    const [after] = await tx`
      select current_user as db_role, app.current_member_role() as role, (select array_agg(slug) from app.tenants) as tenants`;
    return { granted: granted!.role as string, ...after };
  });
  expect(seen).toEqual({ granted: 'MEMBER', db_role: 'tenancy_app', role: 'MEMBER', tenants: ['sql-become'] });
});

it('the visibility helpers fail where rows show: the owner sees everything, of every tenant', async () => {
  const asOwner = (check: string) =>
    withRollback(psql, (tx) =>
      tx.unsafe(`${helpers()}
        insert into app.tenants (slug, name) values ('sql-seen-a', 'SQL seen A'), ('sql-seen-b', 'SQL seen B');
        select set_config('app.tenant_id', (select id::text from app.tenants where slug = 'sql-seen-a'), true);
        select ${check}`).simple());
  await expect(asOwner(`test_helpers.assert_nothing_visible('owner')`)).rejects.toThrow(/owner: .*rows of app\.quotas.*rows of app\.tenants/);
  await expect(asOwner(`test_helpers.assert_only_own_tenant('owner')`)).rejects.toThrow(/owner sees another tenant's rows: .*app\.quotas.*app\.tenants/);
});

const psqlBinary = spawnSync('psql', ['--version']).status === 0;

it.skipIf(!psqlBinary)('psql itself runs every file (includes and all)', () => {
  for (const file of files) {
    const result = spawnSync('psql', [db.ownerUrl, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', file], { cwd: folder, encoding: 'utf8' });
    expect(result.status, `${file}: ${result.stderr}`).toBe(0);
  }
});

it('would fail on a broken policy: a failing assertion surfaces as an error', async () => {
  const script = `begin; set local role tenancy_app; do $$ begin assert (select count(*) from app.agents) = 1, 'expected'; end $$; rollback;`;
  await expect(psql.unsafe(script).simple()).rejects.toThrow(/expected/);
  await psql`rollback`;
});
