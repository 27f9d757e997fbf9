-- Sessions and tasks in plain SQL, as the request role: tenant isolation,
-- composite foreign keys, the role rules and the state machines.
-- Run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/sessions_tasks.sql (rolled back).

begin;

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
declare
  changed int;
begin
  assert (select count(*) from app.sessions) = 0, 'no tenant: sessions visible';
  assert (select count(*) from app.tasks) = 0, 'no tenant: tasks visible';
  update app.tasks set title = 'x';
  get diagnostics changed = row_count;
  assert changed = 0, 'no tenant: tasks updated';
  begin
    insert into app.sessions (tenant_id, agent_id, started_by)
      values ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-00000000a9e1', 'd0000000-0000-4000-8000-0000000000a1');
    raise exception 'no tenant: session inserted';
  -- The agent is invisible without a tenant: refused as missing before the policy is asked.
  exception when insufficient_privilege or foreign_key_violation then null;
  end;
end
$$;

-- Tenant B's ADMIN against A.
select tenant_slug from app_private.begin_request(null, 'sql-runs-b', 'd0000000-0000-4000-8000-0000000000b1');
do $$
declare
  changed int;
  own_session uuid;
begin
  assert (select count(*) from app.sessions) = 0, 'B sees A sessions';
  assert (select count(*) from app.tasks) = 0, 'B sees A tasks';

  -- A task of B cannot point at A's session; a session of B cannot run A's agent.
  begin
    insert into app.tasks (tenant_id, session_id, title, created_by)
      values (app.current_tenant_id(), 'd0000000-0000-4000-8000-0000000a5e51', 'cross', app.current_user_id());
    raise exception 'B attached a task to A''s session';
  exception when foreign_key_violation then null;
  end;
  begin
    insert into app.sessions (tenant_id, agent_id, started_by)
      values (app.current_tenant_id(), 'd0000000-0000-4000-8000-00000000a9e1', app.current_user_id());
    raise exception 'B started a session of A''s agent';
  exception when foreign_key_violation then null;
  end;
  -- Writing into A directly: refused by the policies.
  begin
    insert into app.sessions (tenant_id, agent_id, started_by)
      values ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-00000000a9e1', app.current_user_id());
    raise exception 'B inserted a session into A';
  -- Refused by the agent check (B cannot see A's agent) before the policy's would.
  exception when insufficient_privilege or foreign_key_violation then null;
  end;
  update app.sessions set status = 'cancelled', ended_at = now();
  get diagnostics changed = row_count;
  assert changed = 0, 'B ended A sessions';
  update app.tasks set status = 'running';
  get diagnostics changed = row_count;
  assert changed = 0, 'B changed A tasks';
  delete from app.tasks;
  get diagnostics changed = row_count;
  assert changed = 0, 'B deleted A tasks';
  -- Assigning someone of another tenant to B's own work: the composite key refuses.
  insert into app.sessions (tenant_id, agent_id, started_by)
    values (app.current_tenant_id(), 'd0000000-0000-4000-8000-00000000b9e1', app.current_user_id())
    returning id into own_session;
  begin
    insert into app.tasks (tenant_id, session_id, title, assignee_id, created_by)
      values (app.current_tenant_id(), own_session, 'assign A''s member',
              'd0000000-0000-4000-8000-0000000000a1', app.current_user_id());
    raise exception 'B assigned a member of A';
  exception when foreign_key_violation then null;
  end;
end
$$;

-- Tenant A: roles and state machines.
select role from app_private.begin_request(null, 'sql-runs-a', 'd0000000-0000-4000-8000-0000000000a2');
do $$
declare
  changed int;
begin
  assert (select count(*) from app.tasks) = 1, 'viewer cannot read tasks';
  begin
    insert into app.tasks (tenant_id, session_id, title, created_by)
      values (app.current_tenant_id(), 'd0000000-0000-4000-8000-0000000a5e51', 'by viewer', app.current_user_id());
    raise exception 'viewer created a task';
  exception when insufficient_privilege then null;
  end;
  update app.tasks set status = 'running';
  get diagnostics changed = row_count;
  assert changed = 0, 'viewer changed a task';
end
$$;

select role from app_private.begin_request(null, 'sql-runs-a', 'd0000000-0000-4000-8000-0000000000a1');
do $$
begin
  begin
    update app.tasks set status = 'succeeded' where id = 'd0000000-0000-4000-8000-0000000a7a51';
    raise exception 'pending -> succeeded accepted';
  exception when check_violation then null;
  end;
  update app.tasks set status = 'running', tokens = 40 where id = 'd0000000-0000-4000-8000-0000000a7a51';
  update app.tasks set status = 'failed', tokens = 50 where id = 'd0000000-0000-4000-8000-0000000a7a51';
  assert (select tokens_used from app.sessions where id = 'd0000000-0000-4000-8000-0000000a5e51') = 50, 'session tokens are not the sum of its tasks';
  begin
    update app.tasks set status = 'running' where id = 'd0000000-0000-4000-8000-0000000a7a51';
    raise exception 'a finished task moved again';
  exception when check_violation then null;
  end;
  begin
    insert into app.tasks (tenant_id, session_id, title, status, created_by)
      values (app.current_tenant_id(), 'd0000000-0000-4000-8000-0000000a5e51', 'born running', 'running', app.current_user_id());
    raise exception 'a task started in a state other than pending';
  -- The request role may not even name the column; the trigger holds for everyone else.
  exception when insufficient_privilege or check_violation then null;
  end;
  update app.sessions set status = 'completed', ended_at = now() where id = 'd0000000-0000-4000-8000-0000000a5e51';
  begin
    update app.sessions set status = 'failed' where id = 'd0000000-0000-4000-8000-0000000a5e51';
    raise exception 'an ended session ended again';
  exception when check_violation then null;
  end;
  begin
    insert into app.tasks (tenant_id, session_id, title, created_by)
      values (app.current_tenant_id(), 'd0000000-0000-4000-8000-0000000a5e51', 'after the end', app.current_user_id());
    raise exception 'an ended session received a task';
  exception when check_violation then null;
  end;
  -- A MEMBER archives nothing.
  begin
    update app.agents set status = 'archived' where id = 'd0000000-0000-4000-8000-00000000a9e1';
    raise exception 'a member archived an agent';
  exception when insufficient_privilege then null;
  end;
end
$$;

select role from app_private.begin_request(null, 'sql-runs-a', 'd0000000-0000-4000-8000-0000000000a3');
do $$
declare
  changed int;
begin
  update app.agents set status = 'archived' where id = 'd0000000-0000-4000-8000-00000000a9e1';
  get diagnostics changed = row_count;
  assert changed = 1, 'a lead could not archive';
  begin
    insert into app.sessions (tenant_id, agent_id, started_by)
      values (app.current_tenant_id(), 'd0000000-0000-4000-8000-00000000a9e1', app.current_user_id());
    raise exception 'a session started on an archived agent';
  exception when check_violation then null;
  end;
end
$$;

rollback;
