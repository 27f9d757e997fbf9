// Ready to shard by tenant (Citus' create_distributed_table(..., 'tenant_id')),
// as a check rather than a claim: every tenant table's primary key, unique
// constraints and foreign keys include tenant_id (a distributed table's must
// include its distribution column); no tenant row takes its id from a global
// sequence; and the hot statements the API sends reach their rows by a
// tenant_id condition; and docs/deployment.md's plan places every table.
// Citus itself is not installed here: docs/deployment.md says what was and
// was not verified.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, createTestTenant, insertWorkSession, type TestApp, type TestTenant } from './helpers/app.ts';
import { asMember } from './helpers/as-member.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
const SCHEMAS = ['app', 'app_private'];

/**
 * Unique constraints on a tenant table without tenant_id, and the plan for
 * each under Citus (docs/deployment.md): a presented secret names its tenant,
 * so the lookup by hash alone must stay global.
 */
const GLOBAL_UNIQUE = new Map([
  ['api_keys_secret_hash_key', 'a reference table api_key_lookup(secret_hash -> tenant_id), or unique (tenant_id, secret_hash) and a tenant-carrying key prefix'],
  ['invitations_token_hash_key', 'the same for invitation tokens'],
]);

/** Tenant columns filled from a sequence, and why that is acceptable (docs/deployment.md). */
const KNOWN_SEQUENCES = new Map([
  ['audit_events.id', 'bigint identity: Citus gives each node its own range; the API names events by event_id, lists order by (occurred_at, event_id), the chain by its per-tenant seq'],
]);

beforeAll(async () => {
  db = await useTestDatabase();
});

async function tenantTables(): Promise<string[]> {
  const rows = await db.owner<{ table: string }[]>`
    select c.relname as table
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped
    where n.nspname = any(${SCHEMAS}) and c.relkind in ('r', 'p')
    order by 1`;
  return rows.map((row) => row.table);
}

type Constraint = { table: string; name: string; type: 'p' | 'u' | 'f'; columns: string[]; referenced: string | null; referencedColumns: string[] | null };

async function constraintsOf(types: Constraint['type'][]): Promise<Constraint[]> {
  return db.owner<Constraint[]>`
    select c.relname as table, k.conname as name, k.contype as type,
           array(select a.attname::text from unnest(k.conkey) with ordinality u(n, i) join pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.n order by u.i) as columns,
           r.relname as referenced,
           case when k.contype = 'f' then array(select a.attname::text from unnest(k.confkey) with ordinality u(n, i) join pg_attribute a on a.attrelid = k.confrelid and a.attnum = u.n order by u.i) end as "referencedColumns"
    from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
    left join pg_class r on r.oid = k.confrelid
    where n.nspname = any(${SCHEMAS}) and c.relname = any(${await tenantTables()}) and k.contype = any(${types}::char[])
    order by 1, 2`;
}

describe('the catalog', () => {
  it('every tenant table has a primary key (or, for request_buckets, a unique key) that leads with tenant_id', async () => {
    const tables = await tenantTables();
    const keys = await constraintsOf(['p', 'u']);
    const keyed = (table: string) => keys.find((key) => key.table === table && (key.type === 'p' || table === 'request_buckets'));
    expect(tables.filter((table) => !keyed(table))).toEqual([]);
    expect(tables.filter((table) => keyed(table)!.columns[0] !== 'tenant_id')).toEqual([]);
  });

  it('every unique constraint and unique index of a tenant table includes tenant_id, but the known global lookups', async () => {
    const rows = await db.owner<{ index: string; table: string; columns: string[] }[]>`
      select i.relname as index, c.relname as table,
             array(select a.attname::text from unnest(x.indkey) u(n) join pg_attribute a on a.attrelid = x.indrelid and a.attnum = u.n) as columns
      from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class c on c.oid = x.indrelid join pg_namespace n on n.oid = c.relnamespace
      where x.indisunique and n.nspname = any(${SCHEMAS}) and c.relname = any(${await tenantTables()})`;
    expect(rows.length).toBeGreaterThan(5);
    const global = rows.filter((row) => !row.columns.includes('tenant_id')).map((row) => row.index);
    expect(global.sort()).toEqual([...GLOBAL_UNIQUE.keys()].sort());
  });

  it('every foreign key between tenant tables includes tenant_id on both sides, in the same place', async () => {
    const tables = new Set(await tenantTables());
    const keys = (await constraintsOf(['f'])).filter((key) => tables.has(key.referenced!));
    expect(keys.length).toBeGreaterThan(3);
    const bad = keys.filter((key) => {
      const at = key.columns.indexOf('tenant_id');
      return at < 0 || key.referencedColumns![at] !== 'tenant_id';
    });
    expect(bad.map((key) => `${key.table}.${key.name}`)).toEqual([]);
  });

  it('tenant tables refer outside their tenant only to the global tables (Citus reference tables)', async () => {
    const tables = new Set(await tenantTables());
    const outside = [...new Set((await constraintsOf(['f'])).filter((key) => !tables.has(key.referenced!)).map((key) => key.referenced!))];
    expect(outside.sort()).toEqual(['tenants', 'users']);
  });

  it("docs/deployment.md's plan places every table: each tenant table distributed, every other one a reference table or named in a note", async () => {
    const doc = await readFile(path.join(import.meta.dirname, '..', 'docs', 'deployment.md'), 'utf8');
    const plan = /### The plan\n+```sql\n([\s\S]*?)```/.exec(doc)![1]!;
    const named = (text: string) => new Set([...text.matchAll(/(app(?:_private)?\.[a-z_]+)(?![a-z_(])/g)].map((match) => match[1]!));
    const distributed = named([...plan.matchAll(/create_distributed_table\((?:'[^']+'|t), 'tenant_id'[^;]*;/g)].map((match) => match[0]).join('\n'));
    const reference = named([...plan.matchAll(/create_reference_table\('[^']+'\)/g)].map((match) => match[0]).join('\n'));
    const noted = named(plan.split('\n').filter((line) => line.startsWith('-- Not distributed')).join('\n'));
    const tables = await db.owner<{ name: string; tenant: boolean }[]>`
      select n.nspname || '.' || c.relname as name,
             exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped) as tenant
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any(${SCHEMAS}) and c.relkind in ('r', 'p') order by 1`;
    expect(tables.length).toBeGreaterThan(15);
    expect(tables.filter((table) => table.tenant && !distributed.has(table.name)).map((table) => table.name)).toEqual([]);
    expect(tables.filter((table) => !table.tenant && !reference.has(table.name) && !noted.has(table.name)).map((table) => table.name)).toEqual([]);
    // And it names no table that is not there (a rename, a table dropped).
    const all = new Set(tables.map((table) => table.name));
    expect([...distributed, ...reference, ...noted].filter((name) => !all.has(name))).toEqual([]);
  });

  it('no tenant row takes its id from a sequence (serial, identity or nextval), but the known audit_events.id', async () => {
    const rows = await db.owner<{ column: string }[]>`
      select c.relname || '.' || a.attname as column
      from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where n.nspname = any(${SCHEMAS}) and c.relname = any(${await tenantTables()}) and a.attnum > 0 and not a.attisdropped
        and (a.attidentity <> '' or pg_get_expr(d.adbin, d.adrelid) ilike '%nextval%')`;
    expect(rows.map((row) => row.column).sort()).toEqual([...KNOWN_SEQUENCES.keys()].sort());
  });
});

describe('the hot statements', () => {
  let api: TestApp;
  let tenant: TestTenant;
  let agentId: string;
  let sessionId: string;
  const sent: { query: string; parameters: readonly unknown[] }[] = [];

  beforeAll(async () => {
    api = createTestApp(db.appPool(2, (query, parameters) => sent.push({ query, parameters })));
    tenant = await createTestTenant(db.owner, 'citus');
    ({ agentId, sessionId } = await insertWorkSession(db.owner, tenant, 'routed'));
  });

  /** The statements an operation sends that read tenant tables (not the request check), each with its plan as the member. */
  async function statementsOf(query: string, variables?: Record<string, unknown>, role: 'VIEWER' | 'ADMIN' = 'VIEWER') {
    sent.length = 0;
    const response = await api.request(query, { token: tenant.members[role].token, variables });
    expect(response.body.errors).toBeUndefined();
    const reads = sent.filter((statement) => /\bfrom app\.(agents|sessions|tasks|contexts|audit_events)\b/.test(statement.query));
    expect(reads.length).toBeGreaterThan(0);
    return Promise.all(
      reads.map(async (statement) => {
        const rows = await asMember(db.owner, tenant.members[role], (tx) =>
          tx.unsafe(`explain ${statement.query}`, statement.parameters as postgres.ParameterOrJSON<never>[]));
        return { ...statement, plan: rows.map((row) => String(row['QUERY PLAN'])).join('\n') };
      }),
    );
  }

  it.each([
    ['agents(first: 20)', '{ agents(first: 20) { edges { node { name } } } }', undefined],
    ['sessions with tasks', '{ sessions(first: 20) { edges { node { tasks(first: 10) { edges { node { title } } } } } } }', undefined],
    ['agent(id:) with its sessions', 'query($id: ID!) { agent(id: $id) { name sessions(first: 10) { edges { node { status } } } } }', () => ({ id: agentId })],
    ['session(id:) with agent and tasks', 'query($id: ID!) { session(id: $id) { id agent { name } tasks(first: 10) { edges { node { title } } } } }', () => ({ id: sessionId })],
    ['auditEvents(first: 20), as ADMIN', '{ auditEvents(first: 20) { edges { node { action } } } }', undefined, 'ADMIN' as const],
  ])('%s: every scan of a tenant table has a tenant_id condition', async (_name, query, variables, role?: 'ADMIN') => {
    const statements = await statementsOf(query, variables?.(), role);
    for (const { plan } of statements) {
      const scans = plan.split('\n').filter((line) => /Scan\b.* on (agents|sessions|tasks|contexts|audit_events)\b/.test(line));
      expect(scans.length, plan).toBeGreaterThan(0);
      // Each scan node is followed by its condition lines; the tenant_id one comes from the policy (an InitPlan) today.
      expect(plan, plan).not.toMatch(/Seq Scan on (agents|sessions|tasks|contexts|audit_events)\b/);
      expect(plan.match(/(Index Cond|Recheck Cond): \(+.*tenant_id = /g)?.length ?? 0, plan).toBeGreaterThanOrEqual(scans.length);
    }
  });

  it('the statements name tenant_id only through the policy: what a distributed router would need is listed in docs/deployment.md', async () => {
    // Records today's state so a change is noticed: no repository statement says `tenant_id = $n` itself.
    const statements = await statementsOf('{ agents(first: 20) { edges { node { name } } } }');
    expect(statements.some((statement) => /\btenant_id\s*=\s*\$\d/.test(statement.query))).toBe(false);
  });
});
