-- Helpers for the psql tests in test/sql. Each test includes this file right
-- after its `begin;` (test/sql.test.ts inlines it the way psql's \ir does):
--   \ir include/helpers.sql
-- Everything here belongs to the test's transaction and is rolled back with it.

create schema test_helpers;
grant usage on schema test_helpers to tenancy_app;

-- Acts as the request role in `tenant` (a slug) as `user_id`, the request
-- started exactly as the server starts one: app_private.begin_request, called
-- as the request role, with an optional role claim. Returns the role the
-- request holds. Call it again to switch user or tenant; `reset role` is the
-- owner again. (Not SECURITY DEFINER: those may not change the role.)
create function test_helpers.become(tenant text, user_id uuid, role_cap text default null) returns text
  language plpgsql
  as $$
declare
  granted text;
begin
  set local role tenancy_app;
  select r.role into granted from app_private.begin_request(null, tenant, user_id, role_cap) r;
  return granted;
end
$$;

-- Runs `statement` and raises `message` unless the statement is refused with
-- one of the `expected` errors (SQLSTATE codes such as TN404, or the names of
-- the privilege and integrity conditions); any other error goes up as it is. A
-- refused statement leaves nothing behind (its subtransaction rolls back).
create function test_helpers.assert_refused(statement text, message text,
                                            variadic expected text[] default array['insufficient_privilege'])
  returns void
  language plpgsql
  as $$
declare
  condition text;
begin
  begin
    execute statement;
  exception when others then
    condition := case SQLSTATE when '42501' then 'insufficient_privilege' when '23001' then 'restrict_violation'
                               when '23502' then 'not_null_violation' when '23503' then 'foreign_key_violation'
                               when '23505' then 'unique_violation' when '23514' then 'check_violation' end;
    if condition = any (expected) or SQLSTATE = any (expected) then
      return;
    end if;
    raise;
  end;
  raise exception '%', message;
end
$$;

-- Runs `statement` and returns how many rows it touched (0 when the policies hid them all).
create function test_helpers.row_count(statement text) returns bigint
  language plpgsql
  as $$
declare
  touched bigint;
begin
  execute statement;
  get diagnostics touched = row_count;
  return touched;
end
$$;

-- The tables a tenant's rows live in (those with a tenant_id), and
-- app.tenants, that the current role may read: new tables are covered as
-- soon as they exist.
create function test_helpers.tenant_tables() returns setof regclass
  language sql stable
  as $$
    select c.oid::regclass from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'app' and c.relkind in ('r', 'p') and has_any_column_privilege(c.oid, 'SELECT')
      and (c.relname = 'tenants'
           or exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped))
    order by c.relname
  $$;

-- Raises unless the current request sees no row of any tenant table, no
-- tenant and no user: a request without a tenant (fail closed).
create function test_helpers.assert_nothing_visible(label text) returns void
  language plpgsql
  as $$
declare
  visible text;
  table_name regclass;
  found bigint;
begin
  for table_name in select * from test_helpers.tenant_tables() union all select 'app.users'::regclass loop
    execute format('select count(*) from %s', table_name) into found;
    if found > 0 then
      visible := concat_ws(', ', visible, format('%s rows of %s', found, table_name));
    end if;
  end loop;
  assert visible is null, format('%s: %s visible', label, visible);
end
$$;

-- Raises unless every row the current request sees in a tenant table is of
-- its own tenant (app.current_tenant_id()).
create function test_helpers.assert_only_own_tenant(label text) returns void
  language plpgsql
  as $$
declare
  foreign_rows text;
  table_name regclass;
  found bigint;
begin
  for table_name in select * from test_helpers.tenant_tables() loop
    execute format('select count(*) from %s where %I is distinct from app.current_tenant_id()', table_name,
                   case when table_name = 'app.tenants'::regclass then 'id' else 'tenant_id' end) into found;
    if found > 0 then
      foreign_rows := concat_ws(', ', foreign_rows, format('%s rows of %s', found, table_name));
    end if;
  end loop;
  assert foreign_rows is null, format('%s sees another tenant''s rows: %s', label, foreign_rows);
end
$$;

grant execute on all functions in schema test_helpers to tenancy_app;
