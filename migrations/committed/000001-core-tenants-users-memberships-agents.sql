--! Previous: -
--! Hash: sha1:c5946d98c10a3f6a9ff6dbdf963c307973077683
--! Message: core tenants users memberships agents

-- Core schema: tenants, users, memberships, agents, and the request entry point.
--
-- Roles (placeholders filled by graphile-migrate):
--   :DATABASE_OWNER  runs migrations and owns every object here.
--   :DATABASE_APP    the server's request role: not owner, not superuser,
--                    NOBYPASSRLS; sees tenant rows only through the policies.

drop schema if exists app_private cascade;
drop schema if exists app cascade;

create schema app;
create schema app_private;
revoke all on schema app, app_private from public;
grant usage on schema app, app_private to :DATABASE_APP;

--------------------------------------------------------------------------------
-- Request settings. Set only by app_private.begin_request, transaction-local.
-- After a transaction ends an unset custom setting reads as '' (not NULL):
-- nullif keeps that meaning "no tenant" (fail closed).

create function app.current_tenant_id() returns uuid
  language sql stable parallel safe
  as $$ select nullif(current_setting('app.tenant_id', true), '')::uuid $$;

create function app.current_user_id() returns uuid
  language sql stable parallel safe
  as $$ select nullif(current_setting('app.user_id', true), '')::uuid $$;

create function app.current_member_role() returns text
  language sql stable parallel safe
  as $$ select nullif(current_setting('app.role', true), '') $$;

create function app.role_rank(role text) returns int
  language sql immutable parallel safe
  as $$ select case role when 'ADMIN' then 4 when 'LEAD' then 3 when 'MEMBER' then 2 when 'VIEWER' then 1 else 0 end $$;

-- True when the request's role is at least `required` (ADMIN > LEAD > MEMBER > VIEWER).
create function app.has_role(required text) returns boolean
  language sql stable parallel safe
  as $$ select app.role_rank(app.current_member_role()) >= app.role_rank(required) and app.role_rank(required) > 0 $$;

-- Functions are executable by PUBLIC unless revoked: every function here is
-- revoked from PUBLIC at the end of this file, and granted by name.
grant execute on function app.current_tenant_id(), app.current_user_id(), app.current_member_role(),
  app.role_rank(text), app.has_role(text) to :DATABASE_APP;

create function app_private.touch_updated_at() returns trigger
  language plpgsql
  as $$ begin new.updated_at := now(); return new; end $$;

--------------------------------------------------------------------------------
-- Global tables.

create table app.tenants (
  id uuid primary key default gen_random_uuid(),
  slug text not null unique
    constraint tenants_slug_format check (slug ~ '^[a-z][a-z0-9-]{1,61}[a-z0-9]$')
    -- X-Tenant-ID takes a uuid or a slug: a slug must never read as a uuid.
    constraint tenants_slug_not_uuid check (slug !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'),
  name text not null constraint tenants_name_length check (char_length(name) between 1 and 200),
  status text not null default 'active' constraint tenants_status check (status in ('active', 'suspended')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create trigger tenants_updated_at before update on app.tenants
  for each row execute function app_private.touch_updated_at();

create table app.users (
  id uuid primary key default gen_random_uuid(),
  email text not null
    constraint users_email_format check (char_length(email) <= 320 and email ~ '^[^@\s]+@[^@\s]+$'),
  display_name text not null default ''
    constraint users_display_name_length check (char_length(display_name) <= 200),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index users_email_key on app.users (lower(email));
create trigger users_updated_at before update on app.users
  for each row execute function app_private.touch_updated_at();

--------------------------------------------------------------------------------
-- Tenant-scoped tables: tenant_id leads every key and index.

create table app.memberships (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  user_id uuid not null references app.users (id) on delete cascade,
  role text not null constraint memberships_role check (role in ('ADMIN', 'LEAD', 'MEMBER', 'VIEWER')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, user_id)
);
-- "Which tenants is this user in": only app_private.my_memberships uses it.
create index memberships_user_idx on app.memberships (user_id);
create trigger memberships_updated_at before update on app.memberships
  for each row execute function app_private.touch_updated_at();

create table app.agents (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null constraint agents_name_length check (char_length(name) between 1 and 100),
  kind text not null constraint agents_kind_format check (kind ~ '^[a-z][a-z0-9_-]{0,39}$'),
  description text not null default ''
    constraint agents_description_length check (char_length(description) <= 2000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint agents_name_key unique (tenant_id, name),
  -- The creator is a member of the same tenant; removing the member keeps the agent.
  constraint agents_created_by_fkey foreign key (tenant_id, created_by)
    references app.memberships (tenant_id, user_id) on delete set null (created_by)
);
create index agents_tenant_created_idx on app.agents (tenant_id, created_at, id);
create trigger agents_updated_at before update on app.agents
  for each row execute function app_private.touch_updated_at();

--------------------------------------------------------------------------------
-- Row-level security. ENABLE and FORCE everywhere; every policy names its command.
-- The owner's policies are the operator's path (CLI, SECURITY DEFINER
-- functions); the request role never matches them.

alter table app.tenants enable row level security;
alter table app.tenants force row level security;
create policy tenants_owner on app.tenants to :DATABASE_OWNER using (true) with check (true);
create policy tenants_select on app.tenants for select
  using (id = (select app.current_tenant_id()));

alter table app.users enable row level security;
alter table app.users force row level security;
create policy users_owner on app.users to :DATABASE_OWNER using (true) with check (true);
-- A user is visible to themself and to the members of the current tenant they belong to.
create policy users_select on app.users for select
  using (id = (select app.current_user_id())
         or exists (select 1 from app.memberships m
                    where m.tenant_id = (select app.current_tenant_id()) and m.user_id = users.id));

alter table app.memberships enable row level security;
alter table app.memberships force row level security;
create policy memberships_owner on app.memberships to :DATABASE_OWNER using (true) with check (true);
create policy memberships_select on app.memberships for select
  using (tenant_id = (select app.current_tenant_id()));
create policy memberships_insert on app.memberships for insert
  with check (tenant_id = (select app.current_tenant_id()) and (select app.has_role('ADMIN')));
create policy memberships_update on app.memberships for update
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('ADMIN')))
  with check (tenant_id = (select app.current_tenant_id()) and (select app.has_role('ADMIN')));
create policy memberships_delete on app.memberships for delete
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('ADMIN')));

alter table app.agents enable row level security;
alter table app.agents force row level security;
create policy agents_owner on app.agents to :DATABASE_OWNER using (true) with check (true);
create policy agents_select on app.agents for select
  using (tenant_id = (select app.current_tenant_id()));
create policy agents_insert on app.agents for insert
  with check (tenant_id = (select app.current_tenant_id())
              and (select app.has_role('MEMBER'))
              and created_by = (select app.current_user_id()));
-- LEAD and ADMIN change any agent; MEMBER only the ones they created.
create policy agents_update on app.agents for update
  using (tenant_id = (select app.current_tenant_id())
         and ((select app.has_role('LEAD'))
              or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))))
  with check (tenant_id = (select app.current_tenant_id())
              and ((select app.has_role('LEAD'))
                   or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))));
create policy agents_delete on app.agents for delete
  using (tenant_id = (select app.current_tenant_id())
         and ((select app.has_role('LEAD'))
              or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))));

-- Never TRUNCATE or REFERENCES (both ignore RLS); updates only of the columns a user edits.
grant select on app.tenants, app.users to :DATABASE_APP;
grant select, insert, delete on app.memberships to :DATABASE_APP;
grant update (role) on app.memberships to :DATABASE_APP;
grant select, delete on app.agents to :DATABASE_APP;
grant insert (name, kind, description, tenant_id, created_by) on app.agents to :DATABASE_APP;
grant update (name, kind, description) on app.agents to :DATABASE_APP;

--------------------------------------------------------------------------------
-- The start of every request transaction.
--
-- Finds the tenant (uuid or slug) among the user's memberships, refuses an
-- unknown tenant, a tenant the user is not in and a tenant outside the
-- allowlist with the same error (TN404), refuses a suspended tenant (TN423),
-- lowers the membership role to the cap when one is given, and sets the
-- transaction-local settings every policy reads. One statement: revocation
-- and suspension apply to the very next request.

create function app_private.begin_request(
  tenant text,
  user_id uuid,
  role_cap text default null,
  allowed_slugs text[] default null
) returns table (tenant_id uuid, tenant_slug text, tenant_name text, tenant_status text, role text)
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  found_tenant app.tenants;
  member_role text;
begin
  if tenant ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select * into found_tenant from app.tenants t where t.id = tenant::uuid;
  else
    select * into found_tenant from app.tenants t where t.slug = tenant;
  end if;

  if found_tenant.id is not null then
    select m.role into member_role from app.memberships m
      where m.tenant_id = found_tenant.id and m.user_id = begin_request.user_id;
  end if;

  if member_role is null
     or (allowed_slugs is not null and not (found_tenant.slug = any (allowed_slugs))) then
    raise exception 'tenant not found' using errcode = 'TN404';
  end if;
  if found_tenant.status <> 'active' then
    raise exception 'tenant suspended' using errcode = 'TN423';
  end if;
  if role_cap is not null then
    if app.role_rank(role_cap) = 0 then
      raise exception 'invalid role cap' using errcode = 'TN401';
    end if;
    if app.role_rank(role_cap) < app.role_rank(member_role) then
      member_role := role_cap;
    end if;
  end if;

  perform set_config('app.tenant_id', found_tenant.id::text, true),
          set_config('app.user_id', begin_request.user_id::text, true),
          set_config('app.role', member_role, true);

  return query select found_tenant.id, found_tenant.slug, found_tenant.name, found_tenant.status, member_role;
end
$$;
grant execute on function app_private.begin_request(text, uuid, text, text[]) to :DATABASE_APP;

-- The signed-in user's own memberships across tenants (viewer.memberships).
-- Reads nothing but rows of the user the request already set.
create function app_private.my_memberships()
  returns table (tenant_id uuid, tenant_slug text, tenant_name text, tenant_status text, role text)
  language sql stable security definer set search_path = ''
  as $$
    select t.id, t.slug, t.name, t.status, m.role
    from app.memberships m join app.tenants t on t.id = m.tenant_id
    where m.user_id = app.current_user_id()
    order by t.slug
  $$;
grant execute on function app_private.my_memberships() to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
