-- Tenant isolation in plain SQL, as the request role (tenancy_app).
-- Run against a migrated database as its owner or a superuser:
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/isolation.sql
-- Everything happens in one transaction that is rolled back: it leaves nothing behind.
-- A failed assertion raises an error (and psql exits non-zero).

begin;

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
declare
  changed int;
begin
  assert (select count(*) from app.tenants) = 0, 'no tenant: tenants visible';
  assert (select count(*) from app.users) = 0, 'no tenant: users visible';
  assert (select count(*) from app.memberships) = 0, 'no tenant: memberships visible';
  assert (select count(*) from app.agents) = 0, 'no tenant: agents visible';

  begin
    insert into app.agents (tenant_id, name, kind, created_by)
      values ('a0000000-0000-4000-8000-00000000000a', 'sneaky', 'assistant', 'a0000000-0000-4000-8000-0000000000a1');
    raise exception 'no tenant: agent insert accepted';
  exception when insufficient_privilege then null;
  end;
  begin
    insert into app.memberships (tenant_id, user_id, role)
      values ('a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-0000000000b1', 'ADMIN');
    raise exception 'no tenant: membership insert accepted';
  exception when insufficient_privilege then null;
  end;

  update app.agents set name = 'changed';
  get diagnostics changed = row_count;
  assert changed = 0, 'no tenant: agents updated';
  delete from app.agents;
  get diagnostics changed = row_count;
  assert changed = 0, 'no tenant: agents deleted';
  update app.memberships set role = 'VIEWER';
  get diagnostics changed = row_count;
  assert changed = 0, 'no tenant: memberships updated';
end
$$;

-- 2. As tenant B's ADMIN, set exactly as the server sets it.
select tenant_slug from app_private.begin_request(null, 'sql-tenant-b', 'b0000000-0000-4000-8000-0000000000b1');

do $$
declare
  changed int;
begin
  assert app.current_tenant_id() = 'b0000000-0000-4000-8000-00000000000b', 'tenant B not set';
  assert (select count(*) from app.agents where tenant_id = 'a0000000-0000-4000-8000-00000000000a') = 0, 'B sees A agents';
  assert (select count(*) from app.agents where id = 'a0000000-0000-4000-8000-0000000a9e01') = 0, 'B sees the A agent by id';
  assert (select array_agg(name) from app.agents) = array['agent of B'], 'B does not see exactly its own agents';
  assert (select count(*) from app.tenants) = 1, 'B sees other tenants';
  assert (select count(*) from app.memberships where tenant_id <> app.current_tenant_id()) = 0, 'B sees A memberships';
  assert (select count(*) from app.users where email like '%sql-tenant-a%') = 0, 'B sees A users';

  -- Insert into A: refused by the policy's WITH CHECK.
  begin
    insert into app.agents (tenant_id, name, kind, created_by)
      values ('a0000000-0000-4000-8000-00000000000a', 'planted', 'assistant', 'b0000000-0000-4000-8000-0000000000b1');
    raise exception 'B inserted an agent into A';
  exception when insufficient_privilege then null;
  end;
  begin
    insert into app.memberships (tenant_id, user_id, role)
      values ('a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-0000000000b1', 'ADMIN');
    raise exception 'B made itself a member of A';
  exception when insufficient_privilege then null;
  end;

  -- Move its own row into A: refused.
  begin
    update app.agents set tenant_id = 'a0000000-0000-4000-8000-00000000000a'
      where id = 'b0000000-0000-4000-8000-0000000b9e01';
    raise exception 'B moved an agent into A';
  exception when insufficient_privilege then null;
  end;
  begin
    update app.memberships set tenant_id = 'a0000000-0000-4000-8000-00000000000a'
      where user_id = 'b0000000-0000-4000-8000-0000000000b1';
    raise exception 'B moved a membership into A';
  exception when insufficient_privilege then null;
  end;

  -- A's rows cannot be changed or removed: they are not there for B.
  update app.agents set name = 'pwned' where id = 'a0000000-0000-4000-8000-0000000a9e01';
  get diagnostics changed = row_count;
  assert changed = 0, 'B updated an A agent';
  delete from app.agents where tenant_id = 'a0000000-0000-4000-8000-00000000000a';
  get diagnostics changed = row_count;
  assert changed = 0, 'B deleted A agents';
  update app.memberships set role = 'VIEWER' where tenant_id = 'a0000000-0000-4000-8000-00000000000a';
  get diagnostics changed = row_count;
  assert changed = 0, 'B changed A memberships';
  delete from app.memberships where tenant_id = 'a0000000-0000-4000-8000-00000000000a';
  get diagnostics changed = row_count;
  assert changed = 0, 'B deleted A memberships';

  -- The request role never writes tenants or users directly.
  begin
    update app.tenants set name = 'renamed';
    raise exception 'request role updated tenants';
  exception when insufficient_privilege then null;
  end;
  begin
    insert into app.users (email) values ('intruder@example.test');
    raise exception 'request role inserted a user';
  exception when insufficient_privilege then null;
  end;
end
$$;

-- 3. Not a member of A: begin_request refuses exactly as for a tenant that does not exist.
do $$
declare
  foreign_state text;
  missing_state text;
begin
  begin
    perform app_private.begin_request(null, 'sql-tenant-a', 'b0000000-0000-4000-8000-0000000000b1');
  exception when others then foreign_state := sqlstate;
  end;
  begin
    perform app_private.begin_request(null, 'no-such-tenant', 'b0000000-0000-4000-8000-0000000000b1');
  exception when others then missing_state := sqlstate;
  end;
  assert foreign_state = 'TN404' and missing_state = 'TN404', 'foreign and missing tenants answer differently';
  -- The failed attempts left tenant B in place, not A.
  assert app.current_tenant_id() = 'b0000000-0000-4000-8000-00000000000b', 'a refused begin_request changed the tenant';
end
$$;

rollback;
