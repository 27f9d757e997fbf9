-- Tenant isolation in plain SQL, as the request role (tenancy_app).
-- Run against a migrated database as its owner or a superuser:
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/isolation.sql
-- Everything happens in one transaction that is rolled back: it leaves nothing behind.
-- A failed assertion raises an error (and psql exits non-zero).

begin;
\ir include/helpers.sql

insert into app.tenants (id, slug, name) values
  ('a0000000-0000-4000-8000-00000000000a', 'sql-tenant-a', 'SQL tenant A'),
  ('b0000000-0000-4000-8000-00000000000b', 'sql-tenant-b', 'SQL tenant B');
insert into app.users (id, email) values
  ('a0000000-0000-4000-8000-0000000000a1', 'admin@sql-tenant-a.test'),
  ('b0000000-0000-4000-8000-0000000000b1', 'admin@sql-tenant-b.test');
insert into app.memberships (tenant_id, user_id, role) values
  ('a0000000-0000-4000-8000-00000000000a', 'a0000000-0000-4000-8000-0000000000a1', 'ADMIN'),
  ('b0000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-0000000000b1', 'ADMIN');
insert into app.agents (tenant_id, id, name, kind, created_by) values
  ('a0000000-0000-4000-8000-00000000000a', 'a0000000-0000-4000-8000-0000000a9e01', 'agent of A', 'assistant', 'a0000000-0000-4000-8000-0000000000a1'),
  ('b0000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-0000000b9e01', 'agent of B', 'assistant', 'b0000000-0000-4000-8000-0000000000b1');

set local role tenancy_app;

-- 1. No tenant set: every table shows zero rows and accepts no writes (fail closed).
do $$
begin
  perform test_helpers.assert_nothing_visible('no tenant');

  perform test_helpers.assert_refused($q$insert into app.agents (tenant_id, name, kind, created_by)
    values ('a0000000-0000-4000-8000-00000000000a', 'sneaky', 'assistant', 'a0000000-0000-4000-8000-0000000000a1')$q$,
    'no tenant: agent insert accepted');
  perform test_helpers.assert_refused($q$insert into app.memberships (tenant_id, user_id, role)
    values ('a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-0000000000b1', 'ADMIN')$q$,
    'no tenant: membership insert accepted');

  assert test_helpers.row_count($q$update app.agents set name = 'changed'$q$) = 0,
    'no tenant: agents updated';
  assert test_helpers.row_count($q$delete from app.agents$q$) = 0,
    'no tenant: agents deleted';
  assert test_helpers.row_count($q$update app.memberships set role = 'VIEWER'$q$) = 0,
    'no tenant: memberships updated';
end
$$;

-- 2. As tenant B's ADMIN, set exactly as the server sets it.
select test_helpers.become('sql-tenant-b', 'b0000000-0000-4000-8000-0000000000b1');

do $$
begin
  assert app.current_tenant_id() = 'b0000000-0000-4000-8000-00000000000b', 'tenant B not set';
  assert (select count(*) from app.agents where tenant_id = 'a0000000-0000-4000-8000-00000000000a') = 0, 'B sees A agents';
  assert (select count(*) from app.agents where id = 'a0000000-0000-4000-8000-0000000a9e01') = 0, 'B sees the A agent by id';
  assert (select array_agg(name) from app.agents) = array['agent of B'], 'B does not see exactly its own agents';
  perform test_helpers.assert_only_own_tenant('B');
  assert (select count(*) from app.tenants) = 1, 'B does not see its own tenant';
  assert (select count(*) from app.users where email like '%sql-tenant-a%') = 0, 'B sees A users';

  -- Insert into A: refused by the policy's WITH CHECK.
  perform test_helpers.assert_refused($q$insert into app.agents (tenant_id, name, kind, created_by)
    values ('a0000000-0000-4000-8000-00000000000a', 'planted', 'assistant', 'b0000000-0000-4000-8000-0000000000b1')$q$,
    'B inserted an agent into A');
  perform test_helpers.assert_refused($q$insert into app.memberships (tenant_id, user_id, role)
    values ('a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-0000000000b1', 'ADMIN')$q$,
    'B made itself a member of A');

  -- Move its own row into A: refused.
  perform test_helpers.assert_refused($q$update app.agents set tenant_id = 'a0000000-0000-4000-8000-00000000000a'
    where id = 'b0000000-0000-4000-8000-0000000b9e01'$q$,
    'B moved an agent into A');
  perform test_helpers.assert_refused($q$update app.memberships set tenant_id = 'a0000000-0000-4000-8000-00000000000a'
    where user_id = 'b0000000-0000-4000-8000-0000000000b1'$q$,
    'B moved a membership into A');

  -- A's rows cannot be changed or removed: they are not there for B.
  assert test_helpers.row_count($q$update app.agents set name = 'pwned' where id = 'a0000000-0000-4000-8000-0000000a9e01'$q$) = 0,
    'B updated an A agent';
  assert test_helpers.row_count($q$delete from app.agents where tenant_id = 'a0000000-0000-4000-8000-00000000000a'$q$) = 0,
    'B deleted A agents';
  assert test_helpers.row_count($q$update app.memberships set role = 'VIEWER' where tenant_id = 'a0000000-0000-4000-8000-00000000000a'$q$) = 0,
    'B changed A memberships';
  assert test_helpers.row_count($q$delete from app.memberships where tenant_id = 'a0000000-0000-4000-8000-00000000000a'$q$) = 0,
    'B deleted A memberships';

  -- The request role never writes tenants or users directly.
  perform test_helpers.assert_refused($q$update app.tenants set name = 'renamed'$q$,
    'request role updated tenants');
  perform test_helpers.assert_refused($q$insert into app.users (email) values ('intruder@example.test')$q$,
    'request role inserted a user');
end
$$;

-- 3. Not a member of A: begin_request refuses exactly as for a tenant that does not exist.
do $$
begin
  perform test_helpers.assert_refused($q$select app_private.begin_request(null, 'sql-tenant-a', 'b0000000-0000-4000-8000-0000000000b1')$q$,
    'B entered A', 'TN404');
  perform test_helpers.assert_refused($q$select app_private.begin_request(null, 'no-such-tenant', 'b0000000-0000-4000-8000-0000000000b1')$q$,
    'B entered a tenant that does not exist', 'TN404');
  -- The failed attempts left tenant B in place, not A.
  assert app.current_tenant_id() = 'b0000000-0000-4000-8000-00000000000b', 'a refused begin_request changed the tenant';
end
$$;

rollback;
