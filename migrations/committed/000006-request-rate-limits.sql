--! Previous: sha1:b84139fd55b3eb6cbe3fc5ba3513787067a43401
--! Hash: sha1:cf879be15b47ed6f59fa23dfc17ff0af3e942236
--! Message: request rate limits per tenant and per API key

-- Fair share: request rate limits per tenant and per API key (DESIGN.md
-- invariant 13). The limits are quotas like the others (plan defaults in
-- app.plan_limits, operator overrides in app.quotas.limit_override, set with
-- operator_set_tenant_limits); the token buckets live in app.request_buckets.
-- The server never calls these per request: each process leases tokens in
-- batches (src/tenancy/rate-limit.ts) and spends them locally.

drop function if exists app_private.take_request_tokens(uuid[], uuid[], int[]) cascade;
drop function if exists app_private.resolve_request_tenants(uuid[], uuid[], text[], bytea[]) cascade;
drop function if exists app.request_rate_used(bigint, double precision, timestamptz) cascade;
drop function if exists app.request_burst(bigint) cascade;
drop table if exists app.request_buckets cascade;

-- Two more quotas: requests a minute by the whole tenant, and by each of its API keys.
alter table app.quotas drop constraint quotas_quota;
alter table app.quotas add constraint quotas_quota check (quota in (
  'active_sessions', 'monthly_tokens', 'agents', 'members', 'context_bytes',
  'requests_per_minute', 'api_key_requests_per_minute'));

insert into app.plan_limits (plan, quota, max_value) values
  ('free', 'requests_per_minute', 600), ('free', 'api_key_requests_per_minute', 300),
  ('team', 'requests_per_minute', 6000), ('team', 'api_key_requests_per_minute', 3000),
  ('enterprise', 'requests_per_minute', 60000), ('enterprise', 'api_key_requests_per_minute', 30000)
  on conflict (plan, quota) do update set max_value = excluded.max_value;

insert into app.quotas (tenant_id, quota)
  select t.id, q.quota from app.tenants t, unnest(array['requests_per_minute', 'api_key_requests_per_minute']) q (quota)
  on conflict do nothing;

create or replace function app_private.create_tenant_quotas() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  insert into app.quotas (tenant_id, quota, period)
  select n.id, q.quota, case when q.quota = 'monthly_tokens' then date_trunc('month', now() at time zone 'UTC')::date end
  from new_rows n, unnest(array['active_sessions', 'monthly_tokens', 'agents', 'members', 'context_bytes',
                                'requests_per_minute', 'api_key_requests_per_minute']) q (quota);
  return null;
end
$$;

-- A bucket holds ten seconds' worth of the per-minute limit (at least one
-- request) and refills at the limit's pace.
create function app.request_burst(per_minute bigint) returns double precision
  language sql immutable parallel safe
  as $$ select greatest(1, ceil(per_minute / 6.0)) $$;

-- What `usage` shows for a request rate: the share of the bucket spent now,
-- in the limit's unit; it reaches the limit when requests are being refused.
create function app.request_rate_used(per_minute bigint, tokens double precision, refilled_at timestamptz) returns bigint
  language sql stable parallel safe
  as $$
    select case when per_minute is null or per_minute = 0 then 0
                else round(per_minute * (1 - least(app.request_burst(per_minute),
                       tokens + greatest(0, extract(epoch from now() - refilled_at)) * per_minute / 60.0)
                     / app.request_burst(per_minute)))::bigint end
  $$;

-- One token bucket per tenant (api_key_id null) and per API key.
create table app.request_buckets (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  api_key_id uuid,
  tokens double precision not null,
  refilled_at timestamptz not null,
  constraint request_buckets_key unique nulls not distinct (tenant_id, api_key_id),
  constraint request_buckets_api_key_fkey foreign key (tenant_id, api_key_id)
    references app.api_keys (tenant_id, id) on delete cascade
);
alter table app.request_buckets enable row level security;
alter table app.request_buckets force row level security;
create policy request_buckets_owner on app.request_buckets to :DATABASE_OWNER using (true) with check (true);
create policy request_buckets_select on app.request_buckets for select using (tenant_id = (select app.current_tenant_id()));
-- Written only by app_private.take_request_tokens.
create policy request_buckets_insert on app.request_buckets for insert
  with check (tenant_id = (select app.current_tenant_id()) and false);
create policy request_buckets_update on app.request_buckets for update
  using (tenant_id = (select app.current_tenant_id()) and false)
  with check (tenant_id = (select app.current_tenant_id()) and false);
create policy request_buckets_delete on app.request_buckets for delete
  using (tenant_id = (select app.current_tenant_id()) and false);
grant select on app.request_buckets to :DATABASE_APP;

-- Which tenant (and API key) each presented identity belongs to, before its
-- request runs: a user in a tenant named by id or slug (a member of an active
-- tenant), or an API key by its SHA-256 (valid, its creator still a member).
-- Anything else resolves to null: the server then counts it against no
-- tenant's share (a stranger naming a tenant cannot spend that tenant's share).
create function app_private.resolve_request_tenants(user_ids uuid[], by_ids uuid[], by_slugs text[], key_hashes bytea[])
  returns table (ord bigint, tenant_id uuid, api_key_id uuid)
  language sql stable security definer set search_path = ''
  as $$
    select r.ord, coalesce(k.tenant_id, u.tenant_id), k.id
    from unnest(user_ids, by_ids, by_slugs, key_hashes) with ordinality as r (user_id, by_id, by_slug, key_hash, ord)
    left join lateral (
      select k.tenant_id, k.id from app.api_keys k
      join app.tenants t on t.id = k.tenant_id
      where r.key_hash is not null and k.secret_hash = r.key_hash
        and k.revoked_at is null and (k.expires_at is null or k.expires_at > now())
        and t.status = 'active' and (r.by_id is null or t.id = r.by_id) and (r.by_slug is null or t.slug = r.by_slug)
        and exists (select 1 from app.memberships m where m.tenant_id = k.tenant_id and m.user_id = k.created_by)
    ) k on true
    left join lateral (
      select t.id as tenant_id from app.tenants t
      join app.memberships m on m.tenant_id = t.id and m.user_id = r.user_id
      where r.key_hash is null and t.status = 'active' and (t.id = r.by_id or t.slug = r.by_slug)
    ) u on true
  $$;

-- Leases tokens from buckets: for each (tenant, API key or null, wanted),
-- refills the bucket to now, grants at most what it holds (whole tokens) and
-- returns the grant, what is left and the limit. A negative `wanted` returns
-- unspent tokens. Rows are locked in key order, so concurrent leases from
-- several processes never deadlock. A null limit is unlimited.
create function app_private.take_request_tokens(tenant_ids uuid[], api_key_ids uuid[], wants int[])
  returns table (ord bigint, granted int, remaining double precision, per_minute bigint)
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  w record;
  cap double precision;
  available double precision;
  last_refill timestamptz;
  refill_at timestamptz;
begin
  for w in
    select x.tenant_id, x.api_key_id, x.want, x.ord
    from unnest(tenant_ids, api_key_ids, wants) with ordinality as x (tenant_id, api_key_id, want, ord)
    order by x.tenant_id, x.api_key_id nulls first
  loop
    ord := w.ord;
    select coalesce(q.limit_override, p.max_value) into per_minute
      from app.quotas q join app.tenants t on t.id = q.tenant_id
      left join app.plan_limits p on p.plan = t.plan and p.quota = q.quota
      where q.tenant_id = w.tenant_id
        and q.quota = case when w.api_key_id is null then 'requests_per_minute' else 'api_key_requests_per_minute' end;
    if not found then -- no such tenant
      granted := 0; remaining := 0; per_minute := 0;
      return next;
      continue;
    end if;
    if per_minute is null then -- unlimited
      granted := greatest(w.want, 0); remaining := null;
      return next;
      continue;
    elsif per_minute = 0 then -- refused altogether
      granted := 0; remaining := 0;
      return next;
      continue;
    end if;
    cap := app.request_burst(per_minute);
    insert into app.request_buckets as b (tenant_id, api_key_id, tokens, refilled_at)
      values (w.tenant_id, w.api_key_id, cap, clock_timestamp())
      on conflict (tenant_id, api_key_id) do nothing;
    select b.tokens, b.refilled_at into available, last_refill
      from app.request_buckets b
      where b.tenant_id = w.tenant_id and b.api_key_id is not distinct from w.api_key_id
      for update;
    refill_at := greatest(clock_timestamp(), last_refill);
    available := least(cap, available + extract(epoch from refill_at - last_refill) * per_minute / 60.0);
    if w.want >= 0 then
      granted := least(w.want, floor(greatest(available, 0)))::int;
      available := available - granted;
    else
      granted := w.want;
      available := least(cap, available - w.want);
    end if;
    update app.request_buckets b set tokens = available, refilled_at = refill_at
      where b.tenant_id = w.tenant_id and b.api_key_id is not distinct from w.api_key_id;
    remaining := available;
    return next;
  end loop;
end
$$;

-- Operators see the request rates with the other quotas.
create or replace function app_private.tenant_summary(tenant_filter uuid, status_filter text,
  after_at text, after_id uuid, before_at text, before_id uuid, page_size int, inverted boolean)
  returns setof app_private.tenant_summary_row
  language sql stable security definer set search_path = ''
  as $$
    select t.id, t.slug, t.name, t.status, t.plan, t.created_at, t.suspended_at, t.suspended_reason,
           to_char(t.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           (select jsonb_agg(jsonb_build_object(
                     'quota', q.quota,
                     'used', case
                               when q.quota in ('requests_per_minute', 'api_key_requests_per_minute') then
                                 (select coalesce(max(app.request_rate_used(coalesce(q.limit_override, p.max_value), b.tokens, b.refilled_at)), 0)
                                  from app.request_buckets b
                                  where b.tenant_id = t.id and (b.api_key_id is null) = (q.quota = 'requests_per_minute'))
                               when q.period is distinct from
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

comment on table app.request_buckets is
  'Request rate token buckets: one per tenant (api_key_id null) and one per API key, sized by app.request_burst of the limit; written only by app_private.take_request_tokens';
comment on function app_private.resolve_request_tenants(uuid[], uuid[], text[], bytea[]) is
  'The tenant (and API key) of each presented identity, for the request guards; null when the identity belongs to no active tenant';
comment on function app_private.take_request_tokens(uuid[], uuid[], int[]) is
  'Leases (or, negative, gives back) tokens of request rate buckets, batched; never grants more than a bucket holds';

grant execute on function
  app.request_burst(bigint),
  app.request_rate_used(bigint, double precision, timestamptz),
  app_private.resolve_request_tenants(uuid[], uuid[], text[], bytea[]),
  app_private.take_request_tokens(uuid[], uuid[], int[])
  to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
