-- Sessions and tasks in plain SQL, as the request role: tenant isolation,
-- composite foreign keys, the role rules and the state machines.
-- Run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/sessions_tasks.sql (rolled back).

begin;
\ir include/helpers.sql

insert into app.tenants (id, slug, name) values
  ('d0000000-0000-4000-8000-00000000000a', 'sql-runs-a', 'SQL runs A'),
  ('d0000000-0000-4000-8000-00000000000b', 'sql-runs-b', 'SQL runs B');
insert into app.users (id, email) values
  ('d0000000-0000-4000-8000-0000000000a1', 'member@sql-runs-a.test'),
  ('d0000000-0000-4000-8000-0000000000a2', 'viewer@sql-runs-a.test'),
  ('d0000000-0000-4000-8000-0000000000a3', 'lead@sql-runs-a.test'),
  ('d0000000-0000-4000-8000-0000000000b1', 'admin@sql-runs-b.test');
insert into app.memberships (tenant_id, user_id, role) values
  ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-0000000000a1', 'MEMBER'),
  ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-0000000000a2', 'VIEWER'),
  ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-0000000000a3', 'LEAD'),
  ('d0000000-0000-4000-8000-00000000000b', 'd0000000-0000-4000-8000-0000000000b1', 'ADMIN');
insert into app.agents (tenant_id, id, name, kind, created_by) values
  ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-00000000a9e1', 'runner A', 'assistant', 'd0000000-0000-4000-8000-0000000000a1'),
  ('d0000000-0000-4000-8000-00000000000b', 'd0000000-0000-4000-8000-00000000b9e1', 'runner B', 'assistant', 'd0000000-0000-4000-8000-0000000000b1');
insert into app.sessions (tenant_id, id, agent_id, started_by) values
  ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-0000000a5e51', 'd0000000-0000-4000-8000-00000000a9e1', 'd0000000-0000-4000-8000-0000000000a1');
insert into app.tasks (tenant_id, id, session_id, title, created_by) values
  ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-0000000a7a51', 'd0000000-0000-4000-8000-0000000a5e51', 'task of A', 'd0000000-0000-4000-8000-0000000000a1');

set local role tenancy_app;

-- No tenant: nothing visible, nothing writable.
do $$
begin
  perform test_helpers.assert_nothing_visible('no tenant');
  assert test_helpers.row_count($q$update app.tasks set title = 'x'$q$) = 0,
    'no tenant: tasks updated';
  -- The agent is invisible without a tenant: refused as missing before the policy is asked.
  perform test_helpers.assert_refused($q$insert into app.sessions (tenant_id, agent_id, started_by)
    values ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-00000000a9e1', 'd0000000-0000-4000-8000-0000000000a1')$q$,
    'no tenant: session inserted', 'insufficient_privilege', 'foreign_key_violation');
end
$$;

-- Tenant B's ADMIN against A.
select test_helpers.become('sql-runs-b', 'd0000000-0000-4000-8000-0000000000b1');
do $$
declare
  own_session uuid;
begin
  perform test_helpers.assert_only_own_tenant('B');

  -- A task of B cannot point at A's session; a session of B cannot run A's agent.
  perform test_helpers.assert_refused($q$insert into app.tasks (tenant_id, session_id, title, created_by)
    values (app.current_tenant_id(), 'd0000000-0000-4000-8000-0000000a5e51', 'cross', app.current_user_id())$q$,
    'B attached a task to A''s session', 'foreign_key_violation');
  perform test_helpers.assert_refused($q$insert into app.sessions (tenant_id, agent_id, started_by)
    values (app.current_tenant_id(), 'd0000000-0000-4000-8000-00000000a9e1', app.current_user_id())$q$,
    'B started a session of A''s agent', 'foreign_key_violation');
  -- Writing into A directly: refused by the policies.
  -- Refused by the agent check (B cannot see A's agent) before the policy's would.
  perform test_helpers.assert_refused($q$insert into app.sessions (tenant_id, agent_id, started_by)
    values ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-00000000a9e1', app.current_user_id())$q$,
    'B inserted a session into A', 'insufficient_privilege', 'foreign_key_violation');
  assert test_helpers.row_count($q$update app.sessions set status = 'cancelled', ended_at = now()$q$) = 0,
    'B ended A sessions';
  assert test_helpers.row_count($q$update app.tasks set status = 'running'$q$) = 0,
    'B changed A tasks';
  assert test_helpers.row_count($q$delete from app.tasks$q$) = 0,
    'B deleted A tasks';
  -- Assigning someone of another tenant to B's own work: the composite key refuses.
  insert into app.sessions (tenant_id, agent_id, started_by)
    values (app.current_tenant_id(), 'd0000000-0000-4000-8000-00000000b9e1', app.current_user_id())
    returning id into own_session;
  perform test_helpers.assert_refused(format($q$insert into app.tasks (tenant_id, session_id, title, assignee_id, created_by)
    values (app.current_tenant_id(), %L, 'assign A''s member', 'd0000000-0000-4000-8000-0000000000a1', app.current_user_id())$q$,
    own_session),
    'B assigned a member of A', 'foreign_key_violation');
end
$$;

-- Tenant A: roles and state machines.
select test_helpers.become('sql-runs-a', 'd0000000-0000-4000-8000-0000000000a2');
do $$
begin
  assert (select count(*) from app.tasks) = 1, 'viewer cannot read tasks';
  perform test_helpers.assert_refused($q$insert into app.tasks (tenant_id, session_id, title, created_by)
    values (app.current_tenant_id(), 'd0000000-0000-4000-8000-0000000a5e51', 'by viewer', app.current_user_id())$q$,
    'viewer created a task');
  assert test_helpers.row_count($q$update app.tasks set status = 'running'$q$) = 0,
    'viewer changed a task';
end
$$;

select test_helpers.become('sql-runs-a', 'd0000000-0000-4000-8000-0000000000a1');
do $$
begin
  perform test_helpers.assert_refused($q$update app.tasks set status = 'succeeded' where id = 'd0000000-0000-4000-8000-0000000a7a51'$q$,
    'pending -> succeeded accepted', 'check_violation');
  update app.tasks set status = 'running', tokens = 40 where id = 'd0000000-0000-4000-8000-0000000a7a51';
  update app.tasks set status = 'failed', tokens = 50 where id = 'd0000000-0000-4000-8000-0000000a7a51';
  assert (select tokens_used from app.sessions where id = 'd0000000-0000-4000-8000-0000000a5e51') = 50, 'session tokens are not the sum of its tasks';
  perform test_helpers.assert_refused($q$update app.tasks set status = 'running' where id = 'd0000000-0000-4000-8000-0000000a7a51'$q$,
    'a finished task moved again', 'check_violation');
  -- The request role may not even name the column; the trigger holds for everyone else.
  perform test_helpers.assert_refused($q$insert into app.tasks (tenant_id, session_id, title, status, created_by)
    values (app.current_tenant_id(), 'd0000000-0000-4000-8000-0000000a5e51', 'born running', 'running', app.current_user_id())$q$,
    'a task started in a state other than pending', 'insufficient_privilege', 'check_violation');
  update app.sessions set status = 'completed', ended_at = now() where id = 'd0000000-0000-4000-8000-0000000a5e51';
  perform test_helpers.assert_refused($q$update app.sessions set status = 'failed' where id = 'd0000000-0000-4000-8000-0000000a5e51'$q$,
    'an ended session ended again', 'check_violation');
  perform test_helpers.assert_refused($q$insert into app.tasks (tenant_id, session_id, title, created_by)
    values (app.current_tenant_id(), 'd0000000-0000-4000-8000-0000000a5e51', 'after the end', app.current_user_id())$q$,
    'an ended session received a task', 'check_violation');
  -- A MEMBER archives nothing.
  perform test_helpers.assert_refused($q$update app.agents set status = 'archived' where id = 'd0000000-0000-4000-8000-00000000a9e1'$q$,
    'a member archived an agent');
end
$$;

select test_helpers.become('sql-runs-a', 'd0000000-0000-4000-8000-0000000000a3');
do $$
begin
  assert test_helpers.row_count($q$update app.agents set status = 'archived' where id = 'd0000000-0000-4000-8000-00000000a9e1'$q$) = 1,
    'a lead could not archive';
  perform test_helpers.assert_refused($q$insert into app.sessions (tenant_id, agent_id, started_by)
    values (app.current_tenant_id(), 'd0000000-0000-4000-8000-00000000a9e1', app.current_user_id())$q$,
    'a session started on an archived agent', 'check_violation');
end
$$;

rollback;
