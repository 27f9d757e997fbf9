--! Previous: sha1:787e520092c833462bd9adcac84ab44bdd75bebf
--! Hash: sha1:cd64e56496b077dd61cbd296e4715896ddb25a1f
--! Message: every change to agents, sessions, tasks, contexts and fine-tuning jobs audited by one trigger function; idle expiry audited by it; accepting an invitation is one event

-- Every change to tenant state writes one audit event in its transaction
-- (issue 14, coverage). Agents, sessions, tasks, contexts and fine-tuning jobs
-- had none; API keys, invitations, memberships and the tenant lifecycle had
-- theirs already. One trigger function serves the five tables, so a write by
-- any path (a request, the CLI, the idle sweep, plain SQL) is audited the same
-- way: `<target>.create|update|delete`, the row's id, a few small columns the
-- trigger names (never a body, a config or metadata), and for an update the
-- names of the columns it changed. A change made by another trigger or a
-- foreign-key action (a task's tokens added to its session, an agent's
-- sessions deleted with it) is part of the change that caused it and is
-- audited there, once. An update that changes nothing writes nothing.
-- Accepting an invitation wrote two events (member.add and invitation.accept):
-- now the one invitation.accept, which names the user and role.

--------------------------------------------------------------------------------
-- One trigger function for the tenant's own objects

create or replace function app_private.audit_row() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
declare
  target_type text := tg_argv[0];
  row_json jsonb := to_jsonb(case when tg_op = 'DELETE' then old else new end);
  details jsonb := '{}';
  changed text[];
  summarised text;
begin
  -- Written by another trigger or a foreign-key action: the change that caused it is audited.
  if pg_trigger_depth() > 1 then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  if tg_op = 'UPDATE' then
    -- Generated and maintained columns are not a change of their own (and generated ones are not computed yet).
    select array_agg(app_private.camel_case(n.key) order by n.key) into changed
    from jsonb_each(row_json) n
    where n.key not in ('updated_at', 'search', 'content_bytes') and n.value is distinct from (to_jsonb(old) -> n.key);
    if changed is null then
      return new; -- nothing changed
    end if;
    details := jsonb_build_object('changed', to_jsonb(changed));
  end if;
  foreach summarised in array tg_argv[1:] loop
    details := details || case
      when summarised like 'bytes:%' then jsonb_build_object(app_private.camel_case(substr(summarised, 7)) || 'Bytes', octet_length(row_json ->> substr(summarised, 7)))
      else jsonb_build_object(app_private.camel_case(summarised), row_json -> summarised) end;
  end loop;
  perform app_private.record_audit((row_json ->> 'tenant_id')::uuid,
                                   target_type || '.' || case tg_op when 'INSERT' then 'create' when 'UPDATE' then 'update' else 'delete' end,
                                   target_type, row_json ->> 'id', details,
                                   nullif(current_setting('app.audit_reason', true), ''));
  return case when tg_op = 'DELETE' then old else new end;
end
$$;
comment on function app_private.audit_row() is
  'Trigger (before insert, update or delete, for each row, named to fire after the table''s other before triggers): one audit event <target>.create|update|delete for the row (target type: the first trigger argument), with the columns named by the other arguments (bytes:<column>: its length in bytes) and, for an update, the changed columns. None for an update that changes nothing, nor for a change that another trigger or a foreign-key action made (depth > 1: its cause is audited). app.audit_reason, when set, is the event''s reason.';

create or replace function app_private.camel_case(name text) returns text
  language sql immutable parallel safe set search_path = ''
  as $$ select left(name, 1) || substr(replace(initcap(replace(name, '_', ' ')), ' ', ''), 2) $$;
comment on function app_private.camel_case(text) is 'A snake_case column name as the API spells it (agent_id -> agentId), for audit event details.';

drop trigger if exists agents_z_audit on app.agents;
create trigger agents_z_audit before insert or update or delete on app.agents
  for each row execute function app_private.audit_row('agent', 'name', 'kind', 'status', 'model');
drop trigger if exists sessions_z_audit on app.sessions;
create trigger sessions_z_audit before insert or update or delete on app.sessions
  for each row execute function app_private.audit_row('session', 'agent_id', 'status', 'tokens_used');
drop trigger if exists tasks_z_audit on app.tasks;
create trigger tasks_z_audit before insert or update or delete on app.tasks
  for each row execute function app_private.audit_row('task', 'session_id', 'status', 'assignee_id', 'tokens');
drop trigger if exists contexts_z_audit on app.contexts;
create trigger contexts_z_audit before insert or update or delete on app.contexts
  for each row execute function app_private.audit_row('context', 'kind', 'bytes:content', 'agent_id', 'session_id');
drop trigger if exists fine_tuning_jobs_z_audit on app.fine_tuning_jobs;
create trigger fine_tuning_jobs_z_audit before insert or update or delete on app.fine_tuning_jobs
  for each row execute function app_private.audit_row('fine_tuning_job', 'base_model', 'status');

--------------------------------------------------------------------------------
-- Idle sessions: audited by the sessions' trigger, with the reason

create or replace function app_private.expire_idle_sessions(idle interval, max_sessions integer default 500) returns integer
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  ended integer;
begin
  if idle < interval '1 minute' then
    raise exception 'a session is idle after a minute at the least' using errcode = 'invalid_parameter_value';
  end if;
  -- The sessions' audit trigger records each as session.update (status failed, actor system) with this reason.
  perform set_config('app.audit_reason', 'idle for longer than ' || idle::text, true);
  -- Idle: neither the session (tokens, metadata) nor any of its tasks written for `idle`.
  -- Rows another transaction holds are left for the next sweep.
  with idle_sessions as (
    select s.tenant_id, s.id
    from app.sessions s
    where s.status = 'active' and s.updated_at < now() - idle
      and not exists (select 1 from app.tasks t
                      where t.tenant_id = s.tenant_id and t.session_id = s.id and t.updated_at >= now() - idle)
    order by s.updated_at
    limit max_sessions
    for update of s skip locked
  )
  update app.sessions s set status = 'failed', ended_at = now()
  from idle_sessions i
  where s.tenant_id = i.tenant_id and s.id = i.id;
  get diagnostics ended = row_count;
  perform set_config('app.audit_reason', '', true);
  return ended;
end
$$;
comment on function app_private.expire_idle_sessions(interval, integer) is
  'Ends (status failed) up to max_sessions active sessions with no write to them or their tasks for idle, and returns how many; each is audited by the sessions'' trigger (session.update, reason "idle for longer than ..."), and the sessions'' counting trigger releases their active_sessions quota. The service''s idle-session sweep calls it (SESSION_IDLE_TIMEOUT).';
grant execute on function app_private.expire_idle_sessions(interval, integer) to :DATABASE_APP;

--------------------------------------------------------------------------------
-- Accepting an invitation: one event

create or replace function app_private.accept_invitation(token_hash bytea)
  returns table(tenant_id uuid, tenant_slug text, tenant_name text, role text)
  language plpgsql security definer set search_path = ''
  as $$
declare
  invitation app.invitations;
  tenant app.tenants;
  me uuid := app.current_user_id();
begin
  select * into invitation from app.invitations i where i.token_hash = accept_invitation.token_hash for update;
  if invitation.id is null or not exists (select 1 from app.users u where u.id = me and lower(u.email) = lower(invitation.email)) then
    raise exception 'no such invitation' using errcode = 'TI404';
  end if;
  if invitation.revoked_at is not null then
    raise exception 'was revoked' using errcode = 'TI410';
  elsif invitation.accepted_at is not null then
    raise exception 'has already been used' using errcode = 'TI410';
  elsif invitation.expires_at <= now() then
    raise exception 'has expired' using errcode = 'TI410';
  end if;
  select * into tenant from app.tenants t where t.id = invitation.tenant_id;
  if tenant.status <> 'active' then
    raise exception 'tenant suspended' using errcode = 'TI423';
  end if;
  if exists (select 1 from app.memberships m where m.tenant_id = tenant.id and m.user_id = me) then
    raise exception 'already a member' using errcode = 'TI409';
  end if;
  -- The invitation first: its invitation.accept event names the member, and the membership's trigger sees it accepted.
  update app.invitations i set accepted_at = now(), accepted_by = me where i.tenant_id = tenant.id and i.id = invitation.id;
  insert into app.memberships (tenant_id, user_id, role) values (tenant.id, me, invitation.role);
  return query select tenant.id, tenant.slug, tenant.name, invitation.role;
end
$$;

create or replace function app_private.audit_membership() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    -- A membership that an invitation brought in this transaction is its invitation.accept event.
    if not exists (select 1 from app.invitations i
                   where i.tenant_id = new.tenant_id and i.accepted_by = new.user_id and i.accepted_at = now()) then
      perform app_private.record_audit(new.tenant_id, 'member.add', 'user', new.user_id::text, jsonb_build_object('role', new.role));
    end if;
  elsif tg_op = 'UPDATE' then
    perform app_private.record_audit(new.tenant_id, 'member.role_change', 'user', new.user_id::text,
                                     jsonb_build_object('from', old.role, 'to', new.role));
  else
    perform app_private.record_audit(old.tenant_id, 'member.remove', 'user', old.user_id::text, jsonb_build_object('role', old.role));
  end if;
  return null;
end
$$;
comment on function app_private.audit_membership() is
  'Trigger (after insert, delete or update of role on app.memberships): member.add, member.role_change and member.remove audit events; a membership an invitation brought in the same transaction is audited as that invitation.accept.';

revoke execute on all functions in schema app, app_private from public;
