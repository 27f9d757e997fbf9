--! Previous: sha1:06043b88d3e83b01157314c9a9958f760d4a1338
--! Hash: sha1:ed07da7e1c10cc0d82bea226ddb10e4090d5c506
--! Message: tenant lifecycle operators audit invitations api keys quotas

-- Tenant lifecycle, platform operators, audit records, invitations, API keys
-- and quotas that hold under concurrency.

drop function if exists app_private.begin_request(text, uuid, text, text[]) cascade;
drop function if exists app_private.begin_api_key_request(bytea, text, text[]) cascade;
drop function if exists app_private.begin_platform_request(uuid) cascade;
drop function if exists app.current_api_key_id() cascade;
drop function if exists app_private.record_audit(uuid, text, text, text, jsonb, text, text) cascade;
drop function if exists app_private.audit_membership() cascade;
drop function if exists app_private.audit_invitation() cascade;
drop function if exists app_private.audit_api_key() cascade;
drop function if exists app_private.keep_an_admin() cascade;
drop function if exists app_private.check_session_tokens() cascade;
drop function if exists app_private.check_invitation_update() cascade;
drop function if exists app_private.quota_limit(uuid, text) cascade;
drop function if exists app_private.consume_quota(uuid, text, bigint) cascade;
drop function if exists app_private.create_tenant_quotas() cascade;
drop function if exists app_private.count_agents() cascade;
drop function if exists app_private.count_members() cascade;
drop function if exists app_private.count_context_bytes() cascade;
drop function if exists app_private.count_sessions() cascade;
drop function if exists app_private.accept_invitation(bytea) cascade;
drop function if exists app_private.assert_operator() cascade;
drop function if exists app_private.operator_audit(text, uuid, text, jsonb) cascade;
drop function if exists app_private.operator_create_tenant(text, text, text, text) cascade;
drop function if exists app_private.operator_set_tenant_status(uuid, text, text) cascade;
drop function if exists app_private.operator_set_tenant_limits(uuid, text, jsonb, text) cascade;
drop function if exists app_private.operator_tenants(text, text, uuid, text, uuid, int, boolean) cascade;
drop function if exists app_private.operator_invite(uuid, text, text, bytea, timestamptz) cascade;
drop function if exists app_private.tenant_summary(uuid, text, text, uuid, text, uuid, int, boolean) cascade;
drop type if exists app_private.tenant_summary_row cascade;
drop table if exists app.audit_events, app.invitations, app.api_keys, app.quotas, app.plan_limits cascade;
drop table if exists app_private.operators, app_private.operator_audit_events cascade;
alter table app.tenants drop column if exists plan cascade;
alter table app.tenants drop column if exists suspended_at cascade;
alter table app.tenants drop column if exists suspended_reason cascade;

--------------------------------------------------------------------------------
-- Tenants: a plan, and why and since when a tenant is suspended.

alter table app.tenants
  add column plan text not null default 'free' constraint tenants_plan check (plan in ('free', 'team', 'enterprise')),
  add column suspended_at timestamptz,
  add column suspended_reason text constraint tenants_suspended_reason_length check (char_length(suspended_reason) <= 500),
  add constraint tenants_suspension check ((status = 'suspended') = (suspended_at is not null));

-- Which API key a request came with (null for a signed-in user).
create function app.current_api_key_id() returns uuid
  language sql stable parallel safe
  as $$ select nullif(current_setting('app.api_key_id', true), '')::uuid $$;
grant execute on function app.current_api_key_id() to :DATABASE_APP;

--------------------------------------------------------------------------------
-- Platform operators: carried here, never trusted from a token alone.
-- Only the owner (the CLI, SECURITY DEFINER functions) reads these tables.

create table app_private.operators (
  user_id uuid primary key references app.users (id) on delete cascade,
  granted_at timestamptz not null default now(),
  granted_by text not null,
  reason text
);
alter table app_private.operators enable row level security;
alter table app_private.operators force row level security;
create policy operators_owner on app_private.operators to :DATABASE_OWNER using (true) with check (true);

-- Every use of the operator capability, in the transaction of the change.
-- No foreign keys: the record outlives the tenant and the user it names.
create table app_private.operator_audit_events (
  id bigint generated always as identity primary key,
  occurred_at timestamptz not null default clock_timestamp(),
  actor_user_id uuid,
  actor text not null,
  action text not null,
  target_tenant_id uuid,
  reason text,
  details jsonb not null default '{}'
);
alter table app_private.operator_audit_events enable row level security;
alter table app_private.operator_audit_events force row level security;
create policy operator_audit_events_owner on app_private.operator_audit_events to :DATABASE_OWNER using (true) with check (true);

--------------------------------------------------------------------------------
-- The tenant's own audit record. Written only by SECURITY DEFINER triggers and
-- functions in the transaction of the change; the request role may only read,
-- and only as ADMIN.

create table app.audit_events (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  id bigint generated always as identity,
  occurred_at timestamptz not null default clock_timestamp(),
  actor_kind text not null constraint audit_events_actor_kind check (actor_kind in ('user', 'api_key', 'operator', 'system')),
  actor_user_id uuid,
  actor_api_key_id uuid,
  action text not null,
  target_type text not null,
  target_id text not null,
  reason text,
  details jsonb not null default '{}',
  primary key (tenant_id, id)
);
create index audit_events_tenant_occurred_idx on app.audit_events (tenant_id, occurred_at, id);

alter table app.audit_events enable row level security;
alter table app.audit_events force row level security;
create policy audit_events_owner on app.audit_events to :DATABASE_OWNER using (true) with check (true);
create policy audit_events_select on app.audit_events for select
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('ADMIN')));
-- Append-only for the request role: no grant and a policy that admits nothing.
create policy audit_events_insert on app.audit_events for insert
  with check (tenant_id = (select app.current_tenant_id()) and false);
create policy audit_events_update on app.audit_events for update
  using (tenant_id = (select app.current_tenant_id()) and false)
  with check (tenant_id = (select app.current_tenant_id()) and false);
create policy audit_events_delete on app.audit_events for delete
  using (tenant_id = (select app.current_tenant_id()) and false);
grant select on app.audit_events to :DATABASE_APP;

-- The actor is whoever the request settings name; 'system' for the owner's CLI.
create function app_private.record_audit(
  tenant uuid, action text, target_type text, target_id text,
  details jsonb default '{}', reason text default null, actor_kind text default null
) returns void
  language sql volatile security definer set search_path = ''
  as $$
    insert into app.audit_events (tenant_id, actor_kind, actor_user_id, actor_api_key_id, action, target_type, target_id, reason, details)
    select tenant,
           coalesce(actor_kind, case when app.current_api_key_id() is not null then 'api_key'
                                     when app.current_user_id() is not null then 'user' else 'system' end),
           app.current_user_id(), app.current_api_key_id(), action, target_type, target_id, reason, details
    -- A cascade from a tenant being deleted has nobody left to tell.
    where exists (select 1 from app.tenants t where t.id = tenant)
  $$;

--------------------------------------------------------------------------------
-- Plans and quotas. A quota row per tenant and quota holds the usage counter
-- and an optional override; consume_quota moves the counter with one
-- conditional UPDATE, so concurrent requests serialize on the row and the
-- limit is re-checked against the committed count (no read-then-write race).

create table app.plan_limits (
  plan text not null constraint plan_limits_plan check (plan in ('free', 'team', 'enterprise')),
  quota text not null,
  max_value bigint constraint plan_limits_max_value check (max_value >= 0), -- null: unlimited
  primary key (plan, quota)
);
alter table app.plan_limits enable row level security;
alter table app.plan_limits force row level security;
create policy plan_limits_owner on app.plan_limits to :DATABASE_OWNER using (true) with check (true);
create policy plan_limits_select on app.plan_limits for select using (true);
grant select on app.plan_limits to :DATABASE_APP;

insert into app.plan_limits (plan, quota, max_value) values
  ('free', 'active_sessions', 5), ('free', 'monthly_tokens', 1000000), ('free', 'agents', 100),
  ('free', 'members', 25), ('free', 'context_bytes', 104857600),
  ('team', 'active_sessions', 50), ('team', 'monthly_tokens', 100000000), ('team', 'agents', 1000),
  ('team', 'members', 250), ('team', 'context_bytes', 10737418240),
  ('enterprise', 'active_sessions', null), ('enterprise', 'monthly_tokens', null), ('enterprise', 'agents', null),
  ('enterprise', 'members', null), ('enterprise', 'context_bytes', null);

create table app.quotas (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  quota text not null
    constraint quotas_quota check (quota in ('active_sessions', 'monthly_tokens', 'agents', 'members', 'context_bytes')),
  used bigint not null default 0 constraint quotas_used check (used >= 0),
  -- The UTC calendar month monthly_tokens counts in; null for the other quotas.
  period date,
  limit_override bigint constraint quotas_limit_override check (limit_override >= 0), -- null: the plan's limit
  updated_at timestamptz not null default now(),
  primary key (tenant_id, quota)
);
create trigger quotas_updated_at before update on app.quotas
  for each row execute function app_private.touch_updated_at();

alter table app.quotas enable row level security;
alter table app.quotas force row level security;
create policy quotas_owner on app.quotas to :DATABASE_OWNER using (true) with check (true);
create policy quotas_select on app.quotas for select using (tenant_id = (select app.current_tenant_id()));
create policy quotas_insert on app.quotas for insert with check (tenant_id = (select app.current_tenant_id()) and false);
create policy quotas_update on app.quotas for update
  using (tenant_id = (select app.current_tenant_id()) and false)
  with check (tenant_id = (select app.current_tenant_id()) and false);
create policy quotas_delete on app.quotas for delete using (tenant_id = (select app.current_tenant_id()) and false);
grant select on app.quotas to :DATABASE_APP;

create function app_private.create_tenant_quotas() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  insert into app.quotas (tenant_id, quota, period)
  select n.id, q.quota, case when q.quota = 'monthly_tokens' then date_trunc('month', now() at time zone 'UTC')::date end
  from new_rows n, unnest(array['active_sessions', 'monthly_tokens', 'agents', 'members', 'context_bytes']) q (quota);
  return null;
end
$$;
create trigger tenants_create_quotas after insert on app.tenants
  referencing new table as new_rows for each statement execute function app_private.create_tenant_quotas();

-- The effective limit: the tenant's override, else its plan's; null is unlimited.
create function app_private.quota_limit(tenant uuid, quota text) returns bigint
  language sql stable security definer set search_path = ''
  as $$
    select coalesce(q.limit_override, p.max_value)
    from app.quotas q join app.tenants t on t.id = q.tenant_id
    left join app.plan_limits p on p.plan = t.plan and p.quota = q.quota
    where q.tenant_id = tenant and q.quota = quota_limit.quota
  $$;

-- Adds `amount` to the tenant's counter, or raises TQ001 (QUOTA_EXCEEDED) with
-- the quota, limit and usage as JSON in DETAIL. Negative amounts release.
create function app_private.consume_quota(tenant uuid, quota text, amount bigint) returns void
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  month date := case when quota = 'monthly_tokens' then date_trunc('month', now() at time zone 'UTC')::date end;
  cap bigint;
  used_now bigint;
begin
  if amount = 0 then
    return;
  elsif amount < 0 then
    update app.quotas q set used = greatest(q.used + amount, 0)
      where q.tenant_id = tenant and q.quota = consume_quota.quota and q.period is not distinct from month;
    return;
  end if;
  cap := app_private.quota_limit(tenant, quota);
  -- The row lock serializes concurrent consumers; the WHERE is re-checked on
  -- the row as committed by whoever held the lock before.
  update app.quotas q
    set used = (case when q.period is distinct from month then 0 else q.used end) + amount, period = month
    where q.tenant_id = tenant and q.quota = consume_quota.quota
      and (cap is null or (case when q.period is distinct from month then 0 else q.used end) + amount <= cap);
  if not found then
    select case when q.period is distinct from month then 0 else q.used end into used_now
      from app.quotas q where q.tenant_id = tenant and q.quota = consume_quota.quota;
    if used_now is null and not exists (select 1 from app.tenants t where t.id = tenant) then
      return; -- the tenant is being deleted
    end if;
    raise exception 'quota % exceeded', quota using errcode = 'TQ001',
      detail = json_build_object('quota', quota, 'limit', cap, 'used', coalesce(used_now, 0), 'requested', amount)::text;
  end if;
end
$$;

-- Usage counters kept by statement-level triggers: one counter update per
-- tenant per statement, however many rows it wrote (bulk seeds stay fast).

create function app_private.count_agents() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    perform app_private.consume_quota(d.tenant_id, 'agents', d.n)
      from (select tenant_id, count(*) as n from new_rows group by tenant_id order by tenant_id) d;
  else
    perform app_private.consume_quota(d.tenant_id, 'agents', -d.n)
      from (select tenant_id, count(*) as n from old_rows group by tenant_id order by tenant_id) d;
  end if;
  return null;
end
$$;
create trigger agents_count_insert after insert on app.agents
  referencing new table as new_rows for each statement execute function app_private.count_agents();
create trigger agents_count_delete after delete on app.agents
  referencing old table as old_rows for each statement execute function app_private.count_agents();

create function app_private.count_members() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    perform app_private.consume_quota(d.tenant_id, 'members', d.n)
      from (select tenant_id, count(*) as n from new_rows group by tenant_id order by tenant_id) d;
  else
    perform app_private.consume_quota(d.tenant_id, 'members', -d.n)
      from (select tenant_id, count(*) as n from old_rows group by tenant_id order by tenant_id) d;
  end if;
  return null;
end
$$;
create trigger memberships_count_insert after insert on app.memberships
  referencing new table as new_rows for each statement execute function app_private.count_members();
create trigger memberships_count_delete after delete on app.memberships
  referencing old table as old_rows for each statement execute function app_private.count_members();

create function app_private.count_context_bytes() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    perform app_private.consume_quota(d.tenant_id, 'context_bytes', d.n)
      from (select tenant_id, sum(content_bytes)::bigint as n from new_rows group by tenant_id order by tenant_id) d;
  elsif tg_op = 'UPDATE' then
    perform app_private.consume_quota(d.tenant_id, 'context_bytes', d.n)
      from (select tenant_id, sum(n)::bigint as n
            from (select tenant_id, content_bytes::bigint as n from new_rows
                  union all select tenant_id, -content_bytes::bigint from old_rows) c
            group by tenant_id order by tenant_id) d;
  else
    perform app_private.consume_quota(d.tenant_id, 'context_bytes', -d.n)
      from (select tenant_id, sum(content_bytes)::bigint as n from old_rows group by tenant_id order by tenant_id) d;
  end if;
  return null;
end
$$;
create trigger contexts_count_insert after insert on app.contexts
  referencing new table as new_rows for each statement execute function app_private.count_context_bytes();
create trigger contexts_count_update after update on app.contexts
  referencing old table as old_rows new table as new_rows for each statement execute function app_private.count_context_bytes();
create trigger contexts_count_delete after delete on app.contexts
  referencing old table as old_rows for each statement execute function app_private.count_context_bytes();

-- Active sessions count while active; tokens count against the month once used.
create function app_private.count_sessions() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    perform app_private.consume_quota(d.tenant_id, 'active_sessions', d.n)
      from (select tenant_id, count(*) as n from new_rows where status = 'active' group by tenant_id order by tenant_id) d;
  elsif tg_op = 'UPDATE' then
    perform app_private.consume_quota(d.tenant_id, 'active_sessions', d.n)
      from (select tenant_id, sum(n)::bigint as n
            from (select tenant_id, 1 as n from new_rows where status = 'active'
                  union all select tenant_id, -1 from old_rows where status = 'active') c
            group by tenant_id order by tenant_id) d;
    perform app_private.consume_quota(d.tenant_id, 'monthly_tokens', d.n)
      from (select n.tenant_id, sum(n.tokens_used - o.tokens_used)::bigint as n
            from new_rows n join old_rows o on o.tenant_id = n.tenant_id and o.id = n.id
            where n.tokens_used > o.tokens_used
            group by n.tenant_id order by n.tenant_id) d;
  else
    perform app_private.consume_quota(d.tenant_id, 'active_sessions', -d.n)
      from (select tenant_id, count(*) as n from old_rows where status = 'active' group by tenant_id order by tenant_id) d;
  end if;
  return null;
end
$$;
create trigger sessions_count_insert after insert on app.sessions
  referencing new table as new_rows for each statement execute function app_private.count_sessions();
create trigger sessions_count_update after update on app.sessions
  referencing old table as old_rows new table as new_rows for each statement execute function app_private.count_sessions();
create trigger sessions_count_delete after delete on app.sessions
  referencing old table as old_rows for each statement execute function app_private.count_sessions();

-- recordUsage adds tokens to a session directly; only an active session takes them.
grant update (tokens_used) on app.sessions to :DATABASE_APP;
create function app_private.check_session_tokens() returns trigger
  language plpgsql
  as $$
begin
  if new.tokens_used <> old.tokens_used and old.status <> 'active' then
    raise exception 'the session has ended' using errcode = 'check_violation', constraint = 'sessions_usage_when_active';
  end if;
  return new;
end
$$;
create trigger sessions_check_tokens before update of tokens_used on app.sessions
  for each row execute function app_private.check_session_tokens();

-- Existing tenants: their quota rows, counted from what they hold.
insert into app.quotas (tenant_id, quota, used, period)
select t.id, q.quota,
  case q.quota
    when 'active_sessions' then (select count(*) from app.sessions s where s.tenant_id = t.id and s.status = 'active')
    when 'monthly_tokens' then 0
    when 'agents' then (select count(*) from app.agents a where a.tenant_id = t.id)
    when 'members' then (select count(*) from app.memberships m where m.tenant_id = t.id)
    when 'context_bytes' then (select coalesce(sum(c.content_bytes), 0) from app.contexts c where c.tenant_id = t.id)
  end,
  case when q.quota = 'monthly_tokens' then date_trunc('month', now() at time zone 'UTC')::date end
from app.tenants t, unnest(array['active_sessions', 'monthly_tokens', 'agents', 'members', 'context_bytes']) q (quota);

--------------------------------------------------------------------------------
-- Members: a tenant always keeps an ADMIN. Demotions and removals of ADMINs
-- lock the tenant row first, so concurrent ones run one after the other and
-- each counts the ADMINs the previous one left.

create function app_private.keep_an_admin() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  if old.role = 'ADMIN' and (tg_op = 'DELETE' or new.role <> 'ADMIN') then
    perform 1 from app.tenants t where t.id = old.tenant_id for no key update;
    if found and not exists (select 1 from app.memberships m
                             where m.tenant_id = old.tenant_id and m.role = 'ADMIN' and m.user_id <> old.user_id) then
      raise exception 'a tenant needs an ADMIN' using errcode = 'check_violation', constraint = 'memberships_keep_an_admin';
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;
create trigger memberships_keep_an_admin before update of role or delete on app.memberships
  for each row execute function app_private.keep_an_admin();

create function app_private.audit_membership() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    perform app_private.record_audit(new.tenant_id, 'member.add', 'user', new.user_id::text, jsonb_build_object('role', new.role));
  elsif tg_op = 'UPDATE' then
    perform app_private.record_audit(new.tenant_id, 'member.role_change', 'user', new.user_id::text,
                                     jsonb_build_object('from', old.role, 'to', new.role));
  else
    perform app_private.record_audit(old.tenant_id, 'member.remove', 'user', old.user_id::text, jsonb_build_object('role', old.role));
  end if;
  return null;
end
$$;
create trigger memberships_audit after insert or delete or update of role on app.memberships
  for each row execute function app_private.audit_membership();

--------------------------------------------------------------------------------
-- Invitations: a one-time token, stored only as its SHA-256, that expires.
-- LEAD invites MEMBER and VIEWER, ADMIN any role: never above one's own.

create table app.invitations (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  email text not null constraint invitations_email_format check (char_length(email) <= 320 and email ~ '^[^@\s]+@[^@\s]+$'),
  role text not null constraint invitations_role check (role in ('ADMIN', 'LEAD', 'MEMBER', 'VIEWER')),
  token_hash bytea not null constraint invitations_token_hash_length check (octet_length(token_hash) = 32),
  invited_by uuid,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  accepted_at timestamptz,
  accepted_by uuid,
  revoked_at timestamptz,
  primary key (tenant_id, id),
  constraint invitations_token_hash_key unique (token_hash),
  constraint invitations_expiry check (expires_at > created_at),
  constraint invitations_one_outcome check (accepted_at is null or revoked_at is null),
  constraint invitations_invited_by_fkey foreign key (tenant_id, invited_by)
    references app.memberships (tenant_id, user_id) on delete set null (invited_by)
);
create index invitations_tenant_created_idx on app.invitations (tenant_id, created_at, id);

alter table app.invitations enable row level security;
alter table app.invitations force row level security;
create policy invitations_owner on app.invitations to :DATABASE_OWNER using (true) with check (true);
create policy invitations_select on app.invitations for select
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('LEAD')));
create policy invitations_insert on app.invitations for insert
  with check (tenant_id = (select app.current_tenant_id())
              and (select app.has_role('LEAD'))
              and (select app.current_api_key_id()) is null
              and invited_by = (select app.current_user_id())
              and ((select app.has_role('ADMIN')) or app.role_rank(role) <= app.role_rank('MEMBER')));
-- Revoking: ADMIN any invitation, LEAD their own.
create policy invitations_update on app.invitations for update
  using (tenant_id = (select app.current_tenant_id())
         and (select app.current_api_key_id()) is null
         and ((select app.has_role('ADMIN')) or ((select app.has_role('LEAD')) and invited_by = (select app.current_user_id()))))
  with check (tenant_id = (select app.current_tenant_id())
              and ((select app.has_role('ADMIN')) or ((select app.has_role('LEAD')) and invited_by = (select app.current_user_id()))));
-- No grant: invitations are revoked, never deleted.
create policy invitations_delete on app.invitations for delete
  using (tenant_id = (select app.current_tenant_id()) and false);
grant select on app.invitations to :DATABASE_APP;
grant insert (tenant_id, email, role, token_hash, invited_by, expires_at) on app.invitations to :DATABASE_APP;
grant update (revoked_at) on app.invitations to :DATABASE_APP;

create function app_private.audit_invitation() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    perform app_private.record_audit(new.tenant_id, 'invitation.create', 'invitation', new.id::text,
                                     jsonb_build_object('email', new.email, 'role', new.role, 'expiresAt', new.expires_at));
  elsif new.revoked_at is not null and old.revoked_at is null then
    perform app_private.record_audit(new.tenant_id, 'invitation.revoke', 'invitation', new.id::text, '{}');
  elsif new.accepted_at is not null and old.accepted_at is null then
    perform app_private.record_audit(new.tenant_id, 'invitation.accept', 'invitation', new.id::text,
                                     jsonb_build_object('userId', new.accepted_by, 'role', new.role));
  end if;
  return null;
end
$$;
create trigger invitations_audit after insert or update on app.invitations
  for each row execute function app_private.audit_invitation();

create function app_private.check_invitation_update() returns trigger
  language plpgsql
  as $$
begin
  if old.accepted_at is not null or old.revoked_at is not null then
    raise exception 'the invitation is no longer pending' using errcode = 'check_violation', constraint = 'invitations_pending';
  end if;
  return new;
end
$$;
create trigger invitations_check_update before update on app.invitations
  for each row execute function app_private.check_invitation_update();

-- The signed-in user (app.user_id) accepts an invitation sent to their email.
-- Unknown tokens and tokens for another email read the same (TI404).
create function app_private.accept_invitation(token_hash bytea)
  returns table (tenant_id uuid, tenant_slug text, tenant_name text, role text)
  language plpgsql volatile security definer set search_path = ''
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
  insert into app.memberships (tenant_id, user_id, role) values (tenant.id, me, invitation.role);
  update app.invitations i set accepted_at = now(), accepted_by = me where i.tenant_id = tenant.id and i.id = invitation.id;
  return query select tenant.id, tenant.slug, tenant.name, invitation.role;
end
$$;
grant execute on function app_private.accept_invitation(bytea) to :DATABASE_APP;

--------------------------------------------------------------------------------
-- API keys: machine access to one tenant. The secret is shown once; only its
-- SHA-256 and a short public prefix are kept. A key acts for its creator with
-- the lower of its role and the creator's current role, and stops working
-- when the creator leaves the tenant.

create table app.api_keys (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null constraint api_keys_name_length check (char_length(name) between 1 and 100),
  prefix text not null constraint api_keys_prefix_format check (prefix ~ '^tnk_[A-Za-z0-9_-]{8}$'),
  secret_hash bytea not null constraint api_keys_secret_hash_length check (octet_length(secret_hash) = 32),
  role text not null constraint api_keys_role check (role in ('ADMIN', 'LEAD', 'MEMBER', 'VIEWER')),
  created_by uuid,
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  last_used_at timestamptz,
  revoked_at timestamptz,
  primary key (tenant_id, id),
  constraint api_keys_secret_hash_key unique (secret_hash),
  constraint api_keys_expiry check (expires_at is null or expires_at > created_at),
  constraint api_keys_created_by_fkey foreign key (tenant_id, created_by)
    references app.memberships (tenant_id, user_id) on delete set null (created_by)
);
create index api_keys_tenant_created_idx on app.api_keys (tenant_id, created_at, id);

alter table app.api_keys enable row level security;
alter table app.api_keys force row level security;
create policy api_keys_owner on app.api_keys to :DATABASE_OWNER using (true) with check (true);
-- ADMIN sees every key of the tenant, everyone else their own.
create policy api_keys_select on app.api_keys for select
  using (tenant_id = (select app.current_tenant_id())
         and ((select app.has_role('ADMIN')) or created_by = (select app.current_user_id())));
-- Only a signed-in user creates keys (a key cannot mint keys), never above their own role.
create policy api_keys_insert on app.api_keys for insert
  with check (tenant_id = (select app.current_tenant_id())
              and (select app.has_role('MEMBER'))
              and (select app.current_api_key_id()) is null
              and created_by = (select app.current_user_id())
              and app.role_rank(role) <= app.role_rank((select app.current_member_role())));
create policy api_keys_update on app.api_keys for update
  using (tenant_id = (select app.current_tenant_id())
         and (select app.current_api_key_id()) is null
         and ((select app.has_role('ADMIN')) or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))))
  with check (tenant_id = (select app.current_tenant_id())
              and ((select app.has_role('ADMIN')) or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))));
-- No grant: keys are revoked, never deleted.
create policy api_keys_delete on app.api_keys for delete
  using (tenant_id = (select app.current_tenant_id()) and false);
grant select (tenant_id, id, name, prefix, role, created_by, created_at, expires_at, last_used_at, revoked_at) on app.api_keys to :DATABASE_APP;
grant insert (tenant_id, name, prefix, secret_hash, role, created_by, expires_at) on app.api_keys to :DATABASE_APP;
grant update (revoked_at) on app.api_keys to :DATABASE_APP;

create function app_private.audit_api_key() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    perform app_private.record_audit(new.tenant_id, 'api_key.create', 'api_key', new.id::text,
                                     jsonb_build_object('name', new.name, 'prefix', new.prefix, 'role', new.role));
  elsif new.revoked_at is not null and old.revoked_at is null then
    perform app_private.record_audit(new.tenant_id, 'api_key.revoke', 'api_key', new.id::text, jsonb_build_object('prefix', new.prefix));
  end if;
  return null;
end
$$;
create trigger api_keys_audit after insert or update of revoked_at on app.api_keys
  for each row execute function app_private.audit_api_key();

--------------------------------------------------------------------------------
-- The start of every request transaction (replacing 000001's): also says
-- whether the user is a platform operator, and which key a request came with.

create function app_private.begin_request(
  tenant text,
  user_id uuid,
  role_cap text default null,
  allowed_slugs text[] default null
) returns table (tenant_id uuid, tenant_slug text, tenant_name text, tenant_status text, role text,
                 acting_user_id uuid, api_key_id uuid, is_operator boolean)
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  by_id boolean := tenant ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
begin
  -- One statement finds the tenant, the membership and the operator flag (it
  -- runs on every request: each statement in a function costs a few us).
  if by_id then
    select t.id, t.slug, t.name, t.status, m.role,
           exists (select 1 from app_private.operators o where o.user_id = begin_request.user_id)
      into tenant_id, tenant_slug, tenant_name, tenant_status, role, is_operator
      from app.tenants t join app.memberships m on m.tenant_id = t.id and m.user_id = begin_request.user_id
      where t.id = tenant::uuid;
  else
    select t.id, t.slug, t.name, t.status, m.role,
           exists (select 1 from app_private.operators o where o.user_id = begin_request.user_id)
      into tenant_id, tenant_slug, tenant_name, tenant_status, role, is_operator
      from app.tenants t join app.memberships m on m.tenant_id = t.id and m.user_id = begin_request.user_id
      where t.slug = tenant;
  end if;

  if role is null or (allowed_slugs is not null and not (tenant_slug = any (allowed_slugs))) then
    raise exception 'tenant not found' using errcode = 'TN404';
  end if;
  if tenant_status <> 'active' then
    raise exception 'tenant suspended' using errcode = 'TN423';
  end if;
  if role_cap is not null then
    if app.role_rank(role_cap) = 0 then
      raise exception 'invalid role cap' using errcode = 'TN401';
    end if;
    if app.role_rank(role_cap) < app.role_rank(role) then
      role := role_cap;
    end if;
  end if;

  perform set_config('app.tenant_id', tenant_id::text, true),
          set_config('app.user_id', begin_request.user_id::text, true),
          set_config('app.role', role, true),
          set_config('app.api_key_id', '', true);
  acting_user_id := begin_request.user_id;
  api_key_id := null;
  return next;
end
$$;
grant execute on function app_private.begin_request(text, uuid, text, text[]) to :DATABASE_APP;

-- An X-Api-Key request: the key (by its SHA-256) names the tenant; an
-- X-Tenant-ID, when sent, must name the same one. Unknown, revoked and
-- expired keys, and keys whose creator left, are all TN401. last_used_at is
-- written at most once a minute per key, and never waits for a lock.
create function app_private.begin_api_key_request(
  secret_hash bytea,
  tenant text default null,
  allowed_slugs text[] default null
) returns table (tenant_id uuid, tenant_slug text, tenant_name text, tenant_status text, role text,
                 acting_user_id uuid, api_key_id uuid, is_operator boolean)
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  key app.api_keys;
  found_tenant app.tenants;
  member_role text;
begin
  select * into key from app.api_keys k where k.secret_hash = begin_api_key_request.secret_hash;
  if key.id is not null then
    select m.role into member_role from app.memberships m where m.tenant_id = key.tenant_id and m.user_id = key.created_by;
  end if;
  if member_role is null or key.revoked_at is not null or (key.expires_at is not null and key.expires_at <= now()) then
    raise exception 'invalid api key' using errcode = 'TN401';
  end if;
  select * into found_tenant from app.tenants t where t.id = key.tenant_id;
  if (tenant is not null and tenant <> found_tenant.id::text and tenant <> found_tenant.slug)
     or (allowed_slugs is not null and not (found_tenant.slug = any (allowed_slugs))) then
    raise exception 'tenant not found' using errcode = 'TN404';
  end if;
  if found_tenant.status <> 'active' then
    raise exception 'tenant suspended' using errcode = 'TN423';
  end if;
  if app.role_rank(key.role) < app.role_rank(member_role) then
    member_role := key.role;
  end if;

  update app.api_keys k set last_used_at = now()
    where (k.tenant_id, k.id) in (select l.tenant_id, l.id from app.api_keys l
                                  where l.tenant_id = key.tenant_id and l.id = key.id
                                    and (l.last_used_at is null or l.last_used_at < now() - interval '1 minute')
                                  for update skip locked);

  perform set_config('app.tenant_id', found_tenant.id::text, true),
          set_config('app.user_id', key.created_by::text, true),
          set_config('app.role', member_role, true),
          set_config('app.api_key_id', key.id::text, true);

  return query select found_tenant.id, found_tenant.slug, found_tenant.name, found_tenant.status, member_role,
    key.created_by, key.id, false;
end
$$;
grant execute on function app_private.begin_api_key_request(bytea, text, text[]) to :DATABASE_APP;

-- A request outside any tenant (accepting an invitation, operator work): the
-- user only; every tenant table reads as empty.
create function app_private.begin_platform_request(user_id uuid) returns table (is_operator boolean)
  language plpgsql volatile security definer set search_path = ''
  as $$
begin
  if not exists (select 1 from app.users u where u.id = begin_platform_request.user_id) then
    raise exception 'unknown user' using errcode = 'TN401';
  end if;
  perform set_config('app.user_id', begin_platform_request.user_id::text, true),
          set_config('app.tenant_id', '', true),
          set_config('app.role', '', true),
          set_config('app.api_key_id', '', true);
  return query select exists (select 1 from app_private.operators o where o.user_id = begin_platform_request.user_id);
end
$$;
grant execute on function app_private.begin_platform_request(uuid) to :DATABASE_APP;

--------------------------------------------------------------------------------
-- Operator functions: each checks the capability in the database and records
-- the use in the same transaction. They return tenant metadata and usage
-- figures, never tenant data.

create function app_private.assert_operator() returns uuid
  language plpgsql stable security definer set search_path = ''
  as $$
begin
  if not exists (select 1 from app_private.operators o where o.user_id = app.current_user_id()) then
    raise exception 'not a platform operator' using errcode = 'TO403';
  end if;
  return app.current_user_id();
end
$$;

create function app_private.operator_audit(action text, target uuid, reason text, details jsonb default '{}') returns void
  language sql volatile security definer set search_path = ''
  as $$
    insert into app_private.operator_audit_events (actor_user_id, actor, action, target_tenant_id, reason, details)
    values (app_private.assert_operator(), 'user:' || app.current_user_id(), action, target, reason, details)
  $$;

-- What operators see of a tenant: its metadata and usage against limits.
create type app_private.tenant_summary_row as (
  id uuid, slug text, name text, status text, plan text, created_at timestamptz,
  suspended_at timestamptz, suspended_reason text, cursor_at text, usage jsonb);
create function app_private.tenant_summary(tenant_filter uuid, status_filter text,
  after_at text, after_id uuid, before_at text, before_id uuid, page_size int, inverted boolean)
  returns setof app_private.tenant_summary_row
  language sql stable security definer set search_path = ''
  as $$
    select t.id, t.slug, t.name, t.status, t.plan, t.created_at, t.suspended_at, t.suspended_reason,
           to_char(t.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           (select jsonb_agg(jsonb_build_object(
                     'quota', q.quota,
                     'used', case when q.period is distinct from
                                   (case when q.quota = 'monthly_tokens' then date_trunc('month', now() at time zone 'UTC')::date end)
                              then 0 else q.used end,
                     'limit', coalesce(q.limit_override, p.max_value),
                     'overridden', q.limit_override is not null) order by q.quota)
            from app.quotas q left join app.plan_limits p on p.plan = t.plan and p.quota = q.quota
            where q.tenant_id = t.id)
    from app.tenants t
    where (tenant_filter is null or t.id = tenant_filter)
      and (status_filter is null or t.status = status_filter)
      and (after_at is null or (t.created_at, t.id) > (after_at::timestamptz, after_id))
      and (before_at is null or (t.created_at, t.id) < (before_at::timestamptz, before_id))
    order by case when inverted then t.created_at end desc, case when inverted then t.id end desc,
             t.created_at, t.id
    limit page_size
  $$;

create function app_private.operator_create_tenant(slug text, name text, plan text, reason text)
  returns setof app_private.tenant_summary_row
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  created uuid;
begin
  perform app_private.assert_operator();
  insert into app.tenants (slug, name, plan) values (slug, name, plan) returning id into created;
  perform app_private.operator_audit('tenant.create', created, reason, jsonb_build_object('slug', slug, 'plan', plan));
  perform app_private.record_audit(created, 'tenant.create', 'tenant', created::text, jsonb_build_object('plan', plan), reason, 'operator');
  return query select * from app_private.tenant_summary(created, null, null, null, null, null, 1, false);
end
$$;

-- The first member of a new tenant arrives by invitation.
create function app_private.operator_invite(tenant uuid, email text, role text, token_hash bytea, expires_at timestamptz)
  returns void
  language plpgsql volatile security definer set search_path = ''
  as $$
begin
  perform app_private.assert_operator();
  perform app_private.operator_audit('invitation.create', tenant, null, jsonb_build_object('email', email, 'role', role));
  insert into app.invitations (tenant_id, email, role, token_hash, expires_at)
    values (tenant, email, role, token_hash, expires_at);
end
$$;

create function app_private.operator_set_tenant_status(tenant uuid, status text, reason text)
  returns setof app_private.tenant_summary_row
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  current_status text;
begin
  perform app_private.assert_operator();
  select t.status into current_status from app.tenants t where t.id = tenant for no key update;
  if current_status is null then
    raise exception 'no such tenant' using errcode = 'P0002';
  elsif current_status = status then
    raise exception 'the tenant is already %', status using errcode = 'TO409';
  end if;
  update app.tenants t
    set status = operator_set_tenant_status.status,
        suspended_at = case when operator_set_tenant_status.status = 'suspended' then now() end,
        suspended_reason = case when operator_set_tenant_status.status = 'suspended' then reason end
    where t.id = tenant;
  perform app_private.operator_audit(case when status = 'suspended' then 'tenant.suspend' else 'tenant.reactivate' end, tenant, reason);
  perform app_private.record_audit(tenant, case when status = 'suspended' then 'tenant.suspend' else 'tenant.reactivate' end,
                                   'tenant', tenant::text, '{}', reason, 'operator');
  return query select * from app_private.tenant_summary(tenant, null, null, null, null, null, 1, false);
end
$$;

-- limits: {"active_sessions": 10, "agents": null, ...}; null returns a quota to the plan's limit.
create function app_private.operator_set_tenant_limits(tenant uuid, plan text, limits jsonb, reason text)
  returns setof app_private.tenant_summary_row
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  new_plan text;
begin
  perform app_private.assert_operator();
  update app.tenants t set plan = coalesce(operator_set_tenant_limits.plan, t.plan) where t.id = tenant returning t.plan into new_plan;
  if new_plan is null then
    raise exception 'no such tenant' using errcode = 'P0002';
  end if;
  update app.quotas q set limit_override = (limits ->> q.quota)::bigint
    where q.tenant_id = tenant and limits ? q.quota;
  perform app_private.operator_audit('tenant.set_limits', tenant, reason, jsonb_build_object('plan', plan, 'limits', limits));
  perform app_private.record_audit(tenant, 'tenant.set_limits', 'tenant', tenant::text,
                                   jsonb_build_object('plan', new_plan, 'limits', limits), reason, 'operator');
  return query select * from app_private.tenant_summary(tenant, null, null, null, null, null, 1, false);
end
$$;

-- A keyset page of tenants (created_at, id) with their usage against limits.
create function app_private.operator_tenants(
  status_filter text, after_at text, after_id uuid, before_at text, before_id uuid, page_size int, inverted boolean
) returns setof app_private.tenant_summary_row
  language plpgsql volatile security definer set search_path = ''
  as $$
begin
  perform app_private.operator_audit('tenant.list', null, null, jsonb_build_object('status', status_filter));
  return query select * from app_private.tenant_summary(null, status_filter, after_at, after_id, before_at, before_id, page_size, inverted);
end
$$;

grant execute on function
  app_private.operator_create_tenant(text, text, text, text),
  app_private.operator_invite(uuid, text, text, bytea, timestamptz),
  app_private.operator_set_tenant_status(uuid, text, text),
  app_private.operator_set_tenant_limits(uuid, text, jsonb, text),
  app_private.operator_tenants(text, text, uuid, text, uuid, int, boolean)
  to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
