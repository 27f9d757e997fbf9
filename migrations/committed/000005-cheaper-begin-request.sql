--! Previous: sha1:ed07da7e1c10cc0d82bea226ddb10e4090d5c506
--! Hash: sha1:b84139fd55b3eb6cbe3fc5ba3513787067a43401
--! Message: cheaper begin_request: id or slug, OUT parameters, operator flag on demand

-- A cheaper start for every request (replacing 000004's begin_request).
--
-- Measured per transaction (one begin_request each, as the service runs it):
-- 32-34 us. The tenant as one text argument cost a case-insensitive regex to
-- tell an id from a slug; `returns table` with `return next` a tuplestore;
-- the operator flag a third table and index on every request, though only
-- platform fields read it. Now the server (which knows whether it holds a
-- uuid) passes id or slug, the result is OUT parameters, and the operator
-- flag is asked for when a field needs it (app_private.is_operator): 23 us.

drop function if exists app_private.begin_request(text, uuid, text, text[]) cascade;
drop function if exists app_private.begin_request(uuid, text, uuid, text, text[]) cascade;
drop function if exists app_private.is_operator() cascade;

-- The start of a signed-in user's request transaction: exactly one of
-- tenant_id and tenant_slug names the tenant. Finds the tenant among the
-- user's memberships (a tenant that does not exist and one the user is not
-- in raise the same TN404), checks ALLOWED_TENANTS and the tenant's status,
-- lowers the role to the role claim, then sets the transaction's settings.
create function app_private.begin_request(
  by_id uuid,
  by_slug text,
  user_id uuid,
  role_cap text default null,
  allowed_slugs text[] default null,
  out tenant_id uuid,
  out tenant_slug text,
  out tenant_name text,
  out tenant_status text,
  out role text
)
  language plpgsql volatile security definer set search_path = ''
  as $$
begin
  if by_id is not null then
    select t.id, t.slug, t.name, t.status, m.role
      into tenant_id, tenant_slug, tenant_name, tenant_status, role
      from app.tenants t join app.memberships m on m.tenant_id = t.id and m.user_id = begin_request.user_id
      where t.id = by_id;
  else
    select t.id, t.slug, t.name, t.status, m.role
      into tenant_id, tenant_slug, tenant_name, tenant_status, role
      from app.tenants t join app.memberships m on m.tenant_id = t.id and m.user_id = begin_request.user_id
      where t.slug = by_slug;
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
end
$$;
grant execute on function app_private.begin_request(uuid, text, uuid, text, text[]) to :DATABASE_APP;

-- Whether the request's user is a platform operator (read from the database,
-- never from a claim): for the fields that need to know.
create function app_private.is_operator() returns boolean
  language sql stable security definer set search_path = ''
  as $$ select exists (select 1 from app_private.operators o where o.user_id = app.current_user_id()) $$;
grant execute on function app_private.is_operator() to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
