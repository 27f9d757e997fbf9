// migrations/schema.sql is what the committed migrations build: this file's
// clone of the migrated test template, dumped, equals the committed file.
import { readFileSync } from 'node:fs';
import { beforeAll, expect, it } from 'vitest';
import { APP_ROLE } from '../src/db/setup.ts';
import { dumpSchema, SCHEMA_DUMP_FILE, type DumpRoles } from '../scripts/schema-dump.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let roles: DumpRoles;
beforeAll(async () => {
  db = await useTestDatabase();
  roles = { owner: decodeURIComponent(new URL(db.ownerUrl).username), app: APP_ROLE };
});

it('migrations/schema.sql is current (run `npm run db:dump` and commit it)', async () => {
  expect(await dumpSchema(db.owner, roles)).toBe(readFileSync(SCHEMA_DUMP_FILE, 'utf8'));
});

it('names roles by their migration placeholders, never by the names of this server', async () => {
  const dump = await dumpSchema(db.owner, roles);
  expect(dump).toContain('TO :DATABASE_APP;');
  expect(dump).toContain('TO :DATABASE_OWNER');
  expect(dump).not.toMatch(new RegExp(`\\b(${APP_ROLE}|${roles.owner})\\b`));
});

it('shows a new table with its comment, policy and grants', async () => {
  await db.owner.unsafe(`
    create table app.dump_probe (tenant_id uuid not null, note text, primary key (tenant_id));
    comment on table app.dump_probe is 'A probe; it''s dropped.';
    create policy dump_probe_select on app.dump_probe for select to ${APP_ROLE} using (tenant_id = (select app.current_tenant_id()));
    grant select, update (note) on app.dump_probe to ${APP_ROLE};`);
  try {
    const dump = await dumpSchema(db.owner, roles);
    expect(dump).toContain('-- Table app.dump_probe\n\nCREATE TABLE app.dump_probe (\n  tenant_id uuid NOT NULL,\n  note text,\n');
    expect(dump).toContain("COMMENT ON TABLE app.dump_probe IS 'A probe; it''s dropped.';");
    expect(dump).toContain('CREATE POLICY dump_probe_select ON app.dump_probe FOR SELECT TO :DATABASE_APP\n');
    expect(dump).toContain('GRANT SELECT ON TABLE app.dump_probe TO :DATABASE_APP;\nGRANT UPDATE (note) ON TABLE app.dump_probe TO :DATABASE_APP;');
  } finally {
    await db.owner`drop table app.dump_probe`;
  }
});

it('refuses an object it cannot show rather than leaving it out', async () => {
  await db.owner`create text search configuration app.dump_probe (copy = english)`;
  try {
    await expect(dumpSchema(db.owner, roles)).rejects.toThrow(/cannot show: text search configuration dump_probe/);
  } finally {
    await db.owner`drop text search configuration app.dump_probe`;
  }
});
