-- Role rules in the write policies, independent of the GraphQL layer:
-- VIEWER reads only; MEMBER creates and changes its own agents; LEAD and ADMIN
-- change any agent; only ADMIN changes memberships; a role claim only lowers.
-- Run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/roles.sql (rolled back).

begin;
\ir include/helpers.sql

insert into app.tenants (id, slug, name) values ('c0000000-0000-4000-8000-00000000000c', 'sql-roles', 'SQL roles');
insert into app.users (id, email) values
  ('c0000000-0000-4000-8000-0000000000c1', 'admin@sql-roles.test'),
  ('c0000000-0000-4000-8000-0000000000c2', 'lead@sql-roles.test'),
  ('c0000000-0000-4000-8000-0000000000c3', 'member@sql-roles.test'),
  ('c0000000-0000-4000-8000-0000000000c4', 'other-member@sql-roles.test'),
  ('c0000000-0000-4000-8000-0000000000c5', 'viewer@sql-roles.test');
insert into app.memberships (tenant_id, user_id, role) values
  ('c0000000-0000-4000-8000-00000000000c', 'c0000000-0000-4000-8000-0000000000c1', 'ADMIN'),
  ('c0000000-0000-4000-8000-00000000000c', 'c0000000-0000-4000-8000-0000000000c2', 'LEAD'),
  ('c0000000-0000-4000-8000-00000000000c', 'c0000000-0000-4000-8000-0000000000c3', 'MEMBER'),
  ('c0000000-0000-4000-8000-00000000000c', 'c0000000-0000-4000-8000-0000000000c4', 'MEMBER'),
  ('c0000000-0000-4000-8000-00000000000c', 'c0000000-0000-4000-8000-0000000000c5', 'VIEWER');
insert into app.agents (tenant_id, id, name, kind, created_by) values
  ('c0000000-0000-4000-8000-00000000000c', 'c0000000-0000-4000-8000-000000a9e001', 'by member', 'assistant', 'c0000000-0000-4000-8000-0000000000c3'),
  ('c0000000-0000-4000-8000-00000000000c', 'c0000000-0000-4000-8000-000000a9e002', 'by other member', 'assistant', 'c0000000-0000-4000-8000-0000000000c4');

-- VIEWER: reads, writes nothing.
select test_helpers.become('sql-roles', 'c0000000-0000-4000-8000-0000000000c5');
do $$
begin
  assert (select count(*) from app.agents) = 2, 'viewer cannot read';
  perform test_helpers.assert_refused($q$insert into app.agents (tenant_id, name, kind, created_by)
    values (app.current_tenant_id(), 'by viewer', 'assistant', app.current_user_id())$q$, 'viewer created an agent');
  assert test_helpers.row_count($q$update app.agents set name = name || '!'$q$) = 0, 'viewer updated agents';
  assert test_helpers.row_count($q$delete from app.agents$q$) = 0, 'viewer deleted agents';
end
$$;

-- MEMBER: creates as itself, changes only its own.
select test_helpers.become('sql-roles', 'c0000000-0000-4000-8000-0000000000c3');
do $$
begin
  insert into app.agents (tenant_id, name, kind, created_by)
    values (app.current_tenant_id(), 'new by member', 'assistant', app.current_user_id());
  perform test_helpers.assert_refused($q$insert into app.agents (tenant_id, name, kind, created_by)
    values (app.current_tenant_id(), 'forged creator', 'assistant', 'c0000000-0000-4000-8000-0000000000c4')$q$,
    'member created an agent in another member''s name');
  assert test_helpers.row_count($q$update app.agents set description = 'mine' where id = 'c0000000-0000-4000-8000-000000a9e001'$q$) = 1,
    'member could not update its own agent';
  assert test_helpers.row_count($q$update app.agents set description = 'theirs' where id = 'c0000000-0000-4000-8000-000000a9e002'$q$) = 0,
    'member updated another member''s agent';
  assert test_helpers.row_count($q$delete from app.agents where id = 'c0000000-0000-4000-8000-000000a9e002'$q$) = 0,
    'member deleted another member''s agent';
  assert test_helpers.row_count($q$update app.memberships set role = 'ADMIN' where user_id = app.current_user_id()$q$) = 0,
    'member promoted itself';
end
$$;

-- ADMIN with a VIEWER role claim: the claim wins, it only lowers.
select test_helpers.become('sql-roles', 'c0000000-0000-4000-8000-0000000000c1', 'VIEWER');
do $$
begin
  assert app.current_member_role() = 'VIEWER', 'role claim did not lower the role';
  perform test_helpers.assert_refused($q$insert into app.agents (tenant_id, name, kind, created_by)
    values (app.current_tenant_id(), 'by capped admin', 'assistant', app.current_user_id())$q$, 'admin capped to VIEWER created an agent');
end
$$;

-- VIEWER with an ADMIN role claim: still VIEWER.
select test_helpers.become('sql-roles', 'c0000000-0000-4000-8000-0000000000c5', 'ADMIN');
do $$
begin
  assert app.current_member_role() = 'VIEWER', 'role claim raised the role';
end
$$;

-- LEAD: changes and deletes anyone's agents, not memberships.
select test_helpers.become('sql-roles', 'c0000000-0000-4000-8000-0000000000c2');
do $$
begin
  assert test_helpers.row_count($q$update app.agents set description = 'reviewed' where id = 'c0000000-0000-4000-8000-000000a9e002'$q$) = 1,
    'lead could not update a member''s agent';
  assert test_helpers.row_count($q$delete from app.agents where id = 'c0000000-0000-4000-8000-000000a9e002'$q$) = 1,
    'lead could not delete a member''s agent';
  assert test_helpers.row_count($q$update app.memberships set role = 'VIEWER' where user_id = 'c0000000-0000-4000-8000-0000000000c3'$q$) = 0,
    'lead changed a membership';
end
$$;

-- ADMIN: changes memberships.
select test_helpers.become('sql-roles', 'c0000000-0000-4000-8000-0000000000c1');
do $$
begin
  assert test_helpers.row_count($q$update app.memberships set role = 'VIEWER' where user_id = 'c0000000-0000-4000-8000-0000000000c4'$q$) = 1,
    'admin could not change a membership';
end
$$;

rollback;
