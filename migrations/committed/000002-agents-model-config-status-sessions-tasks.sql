--! Previous: sha1:c5946d98c10a3f6a9ff6dbdf963c307973077683
--! Hash: sha1:24d4af7f50be0e957d53cf68c8e1bc1cbbe1c3cb
--! Message: agents model config status, sessions, tasks

-- Agent runs: agents gain model, config and status; sessions (one run of an
-- agent) and tasks (units of work in a session), with their state machines
-- enforced here, not only in the API.

drop table if exists app.tasks cascade;
drop table if exists app.sessions cascade;
drop function if exists app_private.check_agent_update() cascade;
drop function if exists app_private.check_session_write() cascade;
drop function if exists app_private.check_task_write() cascade;
drop function if exists app_private.add_task_tokens_to_session() cascade;
alter table app.agents drop column if exists model, drop column if exists config, drop column if exists status;

--------------------------------------------------------------------------------
-- Agents: model, config, status.

alter table app.agents
  add column model text not null default 'default'
    constraint agents_model_length check (char_length(model) between 1 and 200),
  add column config jsonb not null default '{}'
    constraint agents_config_object check (jsonb_typeof(config) = 'object' and pg_column_size(config) <= 16384),
  add column status text not null default 'active'
    constraint agents_status check (status in ('active', 'archived'));

create index agents_tenant_status_created_idx on app.agents (tenant_id, status, created_at, id);

-- Archiving or restoring an agent is LEAD's and ADMIN's (requests only: the
-- operator's owner connection sets no role).
create function app_private.check_agent_update() returns trigger
  language plpgsql
  as $$
begin
  if new.status is distinct from old.status
     and app.current_member_role() is not null and not app.has_role('LEAD') then
    raise exception 'only LEAD and ADMIN archive agents' using errcode = 'insufficient_privilege';
  end if;
  return new;
end
$$;
create trigger agents_check_update before update on app.agents
  for each row execute function app_private.check_agent_update();

grant insert (model, config) on app.agents to :DATABASE_APP;
grant update (model, config, status) on app.agents to :DATABASE_APP;

--------------------------------------------------------------------------------
-- Sessions: active -> completed | failed | cancelled, once.

create table app.sessions (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  agent_id uuid not null,
  status text not null default 'active'
    constraint sessions_status check (status in ('active', 'completed', 'failed', 'cancelled')),
  started_by uuid,
  started_at timestamptz not null default now(),
  ended_at timestamptz,
  tokens_used bigint not null default 0 constraint sessions_tokens_used check (tokens_used >= 0),
  metadata jsonb not null default '{}'
    constraint sessions_metadata_object check (jsonb_typeof(metadata) = 'object' and pg_column_size(metadata) <= 16384),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint sessions_ended_when_not_active check ((status = 'active') = (ended_at is null)),
  constraint sessions_agent_fkey foreign key (tenant_id, agent_id)
    references app.agents (tenant_id, id) on delete cascade,
  constraint sessions_started_by_fkey foreign key (tenant_id, started_by)
    references app.memberships (tenant_id, user_id) on delete set null (started_by)
);
create index sessions_tenant_started_idx on app.sessions (tenant_id, started_at, id);
create index sessions_tenant_agent_started_idx on app.sessions (tenant_id, agent_id, started_at, id);
create index sessions_tenant_status_started_idx on app.sessions (tenant_id, status, started_at, id);
create trigger sessions_updated_at before update on app.sessions
  for each row execute function app_private.touch_updated_at();

create function app_private.check_session_write() returns trigger
  language plpgsql
  as $$
begin
  if tg_op = 'INSERT' then
    if new.status <> 'active' or new.ended_at is not null or new.tokens_used <> 0 then
      raise exception 'a session starts active, with no tokens used'
        using errcode = 'check_violation', constraint = 'sessions_start_state';
    end if;
    -- An agent the request cannot see reads as missing, exactly like the foreign key would say.
    case (select a.status from app.agents a where a.tenant_id = new.tenant_id and a.id = new.agent_id)
      when 'active' then null;
      when 'archived' then
        raise exception 'the agent is archived' using errcode = 'check_violation', constraint = 'sessions_agent_active';
      else
        raise exception 'no such agent' using errcode = 'foreign_key_violation', constraint = 'sessions_agent_fkey';
    end case;
  elsif new.status is distinct from old.status and old.status <> 'active' then
    raise exception 'the session has already ended' using errcode = 'check_violation', constraint = 'sessions_status_transition';
  end if;
  return new;
end
$$;
create trigger sessions_check_write before insert or update on app.sessions
  for each row execute function app_private.check_session_write();

alter table app.sessions enable row level security;
alter table app.sessions force row level security;
create policy sessions_owner on app.sessions to :DATABASE_OWNER using (true) with check (true);
create policy sessions_select on app.sessions for select
  using (tenant_id = (select app.current_tenant_id()));
create policy sessions_insert on app.sessions for insert
  with check (tenant_id = (select app.current_tenant_id())
              and (select app.has_role('MEMBER'))
              and started_by = (select app.current_user_id()));
create policy sessions_update on app.sessions for update
  using (tenant_id = (select app.current_tenant_id())
         and ((select app.has_role('LEAD'))
              or ((select app.has_role('MEMBER')) and started_by = (select app.current_user_id()))))
  with check (tenant_id = (select app.current_tenant_id())
              and ((select app.has_role('LEAD'))
                   or ((select app.has_role('MEMBER')) and started_by = (select app.current_user_id()))));
create policy sessions_delete on app.sessions for delete
  using (tenant_id = (select app.current_tenant_id())
         and ((select app.has_role('LEAD'))
              or ((select app.has_role('MEMBER')) and started_by = (select app.current_user_id()))));

grant select, delete on app.sessions to :DATABASE_APP;
grant insert (tenant_id, agent_id, started_by, metadata) on app.sessions to :DATABASE_APP;
grant update (status, ended_at, metadata) on app.sessions to :DATABASE_APP;

--------------------------------------------------------------------------------
-- Tasks: pending -> running | cancelled; running -> succeeded | failed | cancelled.

create table app.tasks (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  session_id uuid not null,
  title text not null constraint tasks_title_length check (char_length(title) between 1 and 300),
  status text not null default 'pending'
    constraint tasks_status check (status in ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
  input jsonb not null default '{}'
    constraint tasks_input_size check (pg_column_size(input) <= 65536),
  output jsonb constraint tasks_output_size check (pg_column_size(output) <= 65536),
  tokens bigint not null default 0 constraint tasks_tokens check (tokens >= 0),
  assignee_id uuid,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint tasks_session_fkey foreign key (tenant_id, session_id)
    references app.sessions (tenant_id, id) on delete cascade,
  constraint tasks_assignee_fkey foreign key (tenant_id, assignee_id)
    references app.memberships (tenant_id, user_id) on delete set null (assignee_id),
  constraint tasks_created_by_fkey foreign key (tenant_id, created_by)
    references app.memberships (tenant_id, user_id) on delete set null (created_by)
);
create index tasks_tenant_created_idx on app.tasks (tenant_id, created_at, id);
create index tasks_tenant_session_created_idx on app.tasks (tenant_id, session_id, created_at, id);
create index tasks_tenant_assignee_idx on app.tasks (tenant_id, assignee_id) where assignee_id is not null;
create trigger tasks_updated_at before update on app.tasks
  for each row execute function app_private.touch_updated_at();

create function app_private.check_task_write() returns trigger
  language plpgsql
  as $$
begin
  if tg_op = 'INSERT' then
    if new.status <> 'pending' then
      raise exception 'a task starts pending' using errcode = 'check_violation', constraint = 'tasks_start_state';
    end if;
    case (select s.status from app.sessions s where s.tenant_id = new.tenant_id and s.id = new.session_id)
      when 'active' then null;
      when 'completed', 'failed', 'cancelled' then
        raise exception 'the session is not active' using errcode = 'check_violation', constraint = 'tasks_session_active';
      else
        raise exception 'no such session' using errcode = 'foreign_key_violation', constraint = 'tasks_session_fkey';
    end case;
  elsif new.status is distinct from old.status
        and not (old.status = 'pending' and new.status in ('running', 'cancelled'))
        and not (old.status = 'running' and new.status in ('succeeded', 'failed', 'cancelled')) then
    raise exception 'a task cannot go from % to %', old.status, new.status
      using errcode = 'check_violation', constraint = 'tasks_status_transition';
  end if;
  return new;
end
$$;
create trigger tasks_check_write before insert or update on app.tasks
  for each row execute function app_private.check_task_write();

-- A session's tokens_used is the sum of its tasks' tokens, kept as tasks change.
-- SECURITY DEFINER: the task's writer may not be allowed to update the session
-- row itself; the session is the task's own (same tenant_id, by foreign key).
create function app_private.add_task_tokens_to_session() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
declare
  delta bigint := coalesce(new.tokens, 0) - case when tg_op = 'UPDATE' then old.tokens else 0 end;
begin
  if delta <> 0 then
    update app.sessions set tokens_used = tokens_used + delta
      where tenant_id = new.tenant_id and id = new.session_id;
  end if;
  return null;
end
$$;
create trigger tasks_tokens_to_session after insert or update of tokens on app.tasks
  for each row execute function app_private.add_task_tokens_to_session();

alter table app.tasks enable row level security;
alter table app.tasks force row level security;
create policy tasks_owner on app.tasks to :DATABASE_OWNER using (true) with check (true);
create policy tasks_select on app.tasks for select
  using (tenant_id = (select app.current_tenant_id()));
create policy tasks_insert on app.tasks for insert
  with check (tenant_id = (select app.current_tenant_id())
              and (select app.has_role('MEMBER'))
              and created_by = (select app.current_user_id()));
create policy tasks_update on app.tasks for update
  using (tenant_id = (select app.current_tenant_id())
         and ((select app.has_role('LEAD'))
              or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))))
  with check (tenant_id = (select app.current_tenant_id())
              and ((select app.has_role('LEAD'))
                   or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))));
create policy tasks_delete on app.tasks for delete
  using (tenant_id = (select app.current_tenant_id())
         and ((select app.has_role('LEAD'))
              or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))));

grant select, delete on app.tasks to :DATABASE_APP;
grant insert (tenant_id, session_id, title, input, tokens, assignee_id, created_by) on app.tasks to :DATABASE_APP;
grant update (title, status, output, tokens, assignee_id) on app.tasks to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
