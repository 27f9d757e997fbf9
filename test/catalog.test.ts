// The database catalog keeps the isolation invariants (DESIGN.md section 2):
// these fail the moment a table, grant, role or function breaks one.
import { beforeAll, describe, expect, it } from 'vitest';
import { APP_ROLE } from '../src/db/setup.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await useTestDatabase();
});

const SCHEMAS = ['app', 'app_private'];
// Indexes on tenant tables that may not lead with tenant_id, and why.
const INDEX_EXCEPTIONS = new Set([
  'memberships_user_idx', // a user's own memberships across tenants (app_private.my_memberships)
  'api_keys_secret_hash_key', // a presented key names its tenant (app_private.begin_api_key_request)
  'invitations_token_hash_key', // a presented invitation names its tenant (app_private.accept_invitation)
]);

async function tenantTables(): Promise<string[]> {
  const rows = await db.owner<{ table: string }[]>`
    select c.relname as table
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped
    where n.nspname = any(${SCHEMAS}) and c.relkind in ('r', 'p')
    order by 1`;
  return rows.map((row) => row.table);
}

describe('tables', () => {
  it('knows the tenant tables', async () => {
    expect(await tenantTables()).toEqual(expect.arrayContaining(['agents', 'memberships']));
  });

  it('every table in the app schemas has RLS enabled and forced', async () => {
    const rows = await db.owner<{ relname: string; relrowsecurity: boolean; relforcerowsecurity: boolean }[]>`
      select c.relname, c.relrowsecurity, c.relforcerowsecurity
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any(${SCHEMAS}) and c.relkind in ('r', 'p')`;
    expect(rows.length).toBeGreaterThanOrEqual(4);
    const unsafe = rows.filter((row) => !row.relrowsecurity || !row.relforcerowsecurity).map((row) => row.relname);
    expect(unsafe).toEqual([]);
  });

  it('every tenant table has a policy for each command that applies to the request role', async () => {
    for (const table of await tenantTables()) {
      const policies = await db.owner<{ cmd: string }[]>`
        select p.cmd from pg_policies p
        where p.schemaname = 'app' and p.tablename = ${table}
          and ('public' = any(p.roles) or ${APP_ROLE} = any(p.roles))`;
      const commands = new Set(policies.flatMap((policy) => (policy.cmd === 'ALL' ? ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] : [policy.cmd])));
      expect([...commands].sort(), table).toEqual(['DELETE', 'INSERT', 'SELECT', 'UPDATE']);
    }
  });

  it('every policy the request role falls under checks the tenant', async () => {
    const rows = await db.owner<{ tablename: string; policyname: string; qual: string | null; with_check: string | null }[]>`
      select tablename, policyname, qual, with_check from pg_policies
      where schemaname = 'app' and tablename = any(${await tenantTables()})
        and ('public' = any(roles) or ${APP_ROLE} = any(roles))`;
    for (const policy of rows) {
      for (const expression of [policy.qual, policy.with_check]) {
        if (expression !== null) expect(expression, policy.policyname).toContain('current_tenant_id()');
      }
    }
  });

  it('every index on a tenant table leads with tenant_id', async () => {
    const rows = await db.owner<{ index: string; first: string }[]>`
      select i.relname as index, a.attname as first
      from pg_index x
      join pg_class t on t.oid = x.indrelid join pg_namespace n on n.oid = t.relnamespace
      join pg_class i on i.oid = x.indexrelid
      left join pg_attribute a on a.attrelid = t.oid and a.attnum = x.indkey[0]
      where n.nspname = 'app' and t.relname = any(${await tenantTables()})`;
    const offenders = rows.filter((row) => row.first !== 'tenant_id' && !INDEX_EXCEPTIONS.has(row.index));
    expect(offenders).toEqual([]);
  });

  it('every foreign key between tenant tables includes tenant_id', async () => {
    const rows = await db.owner<{ name: string; columns: string[] }[]>`
      select c.conname as name, array(select attname from pg_attribute where attrelid = c.conrelid and attnum = any(c.conkey))::text[] as columns
      from pg_constraint c
      join pg_class src on src.oid = c.conrelid join pg_class dst on dst.oid = c.confrelid
      join pg_namespace n on n.oid = src.relnamespace
      where c.contype = 'f' and n.nspname = 'app'
        and src.relname = any(${await tenantTables()}) and dst.relname = any(${await tenantTables()})`;
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.columns, row.name).toContain('tenant_id');
  });

  it('every table and view says what it is for (comment on table)', async () => {
    const rows = await db.owner<{ name: string }[]>`
      select c.oid::regclass::text as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any(${SCHEMAS}) and c.relkind in ('r', 'p', 'v', 'm') and obj_description(c.oid, 'pg_class') is null
      order by 1`;
    expect(rows.map((row) => row.name)).toEqual([]);
  });

  it('views over app data run as the invoker', async () => {
    const rows = await db.owner`
      select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any(${SCHEMAS}) and c.relkind = 'v'
        and not coalesce('security_invoker=true' = any(c.reloptions) or 'security_invoker=on' = any(c.reloptions), false)`;
    expect(rows).toEqual([]);
  });
});

describe('roles', () => {
  it('the request role is not superuser, cannot bypass RLS and cannot create roles or databases', async () => {
    const [role] = await db.owner`
      select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolinherit from pg_roles where rolname = ${APP_ROLE}`;
    expect(role).toEqual({ rolsuper: false, rolbypassrls: false, rolcreaterole: false, rolcreatedb: false, rolinherit: false });
  });

  it('the request role owns nothing and is a member of no other role', async () => {
    const owned = await db.owner`
      select c.relname from pg_class c join pg_roles r on r.oid = c.relowner where r.rolname = ${APP_ROLE}`;
    expect(owned).toEqual([]);
    const memberOf = await db.owner`
      select g.rolname from pg_auth_members m join pg_roles g on g.oid = m.roleid
      join pg_roles u on u.oid = m.member where u.rolname = ${APP_ROLE}`;
    expect(memberOf).toEqual([]);
  });

  it('the request role has neither TRUNCATE nor REFERENCES on any table (both ignore RLS)', async () => {
    const rows = await db.owner`
      select c.relname,
        has_table_privilege(${APP_ROLE}, c.oid, 'TRUNCATE') as truncate,
        has_table_privilege(${APP_ROLE}, c.oid, 'REFERENCES') as references
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any(${SCHEMAS}) and c.relkind in ('r', 'p', 'v')`;
    expect(rows.filter((row) => row.truncate || row.references)).toEqual([]);
  });

  it('no role but superusers can bypass RLS', async () => {
    const rows = await db.owner`select rolname from pg_roles where rolbypassrls and not rolsuper`;
    expect(rows).toEqual([]);
  });

  it('the request role can execute only the functions meant for it', async () => {
    const rows = await db.owner<{ name: string }[]>`
      select n.nspname || '.' || p.proname as name from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = any(${SCHEMAS}) and has_function_privilege(${APP_ROLE}, p.oid, 'EXECUTE')
      order by 1`;
    expect(rows.map((row) => row.name)).toEqual([
      'app.current_api_key_id',
      'app.current_member_role',
      'app.current_tenant_id',
      'app.current_user_id',
      'app.has_role',
      'app.lead_or_creator',
      'app.member_and_creator',
      'app.request_burst',
      'app.request_rate_used',
      'app.role_rank',
      'app_private.accept_invitation',
      'app_private.audit_checkpoints_due',
      'app_private.audit_purges_due',
      'app_private.begin_api_key_request',
      'app_private.begin_platform_request',
      'app_private.begin_request',
      'app_private.context_search',
      'app_private.expect_principal',
      'app_private.expire_idle_sessions',
      'app_private.is_operator',
      'app_private.my_memberships',
      'app_private.operator_audit_log',
      'app_private.operator_create_tenant',
      'app_private.operator_invite',
      'app_private.operator_set_tenant_limits',
      'app_private.operator_set_tenant_status',
      'app_private.operator_tenants',
      'app_private.publish_events',
      'app_private.purge_audit_events',
      'app_private.resolve_request_tenants',
      'app_private.store_audit_checkpoint',
      'app_private.take_request_tokens',
    ]);
  });

  it('every SECURITY DEFINER function says what it is for (comment on function)', async () => {
    const rows = await db.owner<{ name: string }[]>`
      select p.oid::regprocedure::text as name from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = any(${SCHEMAS}) and p.prosecdef and obj_description(p.oid, 'pg_proc') is null
      order by 1`;
    expect(rows.map((row) => row.name)).toEqual([]);
  });

  it('every SECURITY DEFINER function pins its search_path', async () => {
    const rows = await db.owner<{ name: string; config: string[] | null }[]>`
      select p.proname as name, p.proconfig as config from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = any(${SCHEMAS}) and p.prosecdef`;
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.config ?? [], row.name).toContain('search_path=""');
  });
});
