--! Previous: sha1:cd64e56496b077dd61cbd296e4715896ddb25a1f
--! Hash: sha1:3957fe59ba7b61b64a3b24b083b9da32afd225e7
--! Message: the audit log as hash chains (per tenant and the platform's), signed checkpoints and retention anchors, a per-tenant audit retention

-- The audit log proves itself (issue 14): each tenant's app.audit_events and
-- the platform's app_private.operator_audit_events become hash chains. Every
-- event gets a gapless seq in its chain, prev_hash (the previous event's hash,
-- 32 zero bytes before the first) and hash = SHA-256 over a canonical encoding
-- of its content and prev_hash, computed at insert under the chain head's row
-- lock, so concurrent writers queue and never fork the chain. The request id
-- (the transaction setting app.request_id) is part of the event and the hash.
-- The service signs chain heads (checkpoints) and retention purges (anchors)
-- with a key the database never holds and keeps them in the checkpoint
-- tables; verification happens outside the database (src/audit/verify.ts).

--------------------------------------------------------------------------------
-- The canonical encoding: each field as `<octets>:<text>;`, a null as `N;`,
-- the fields in a fixed order behind a version tag, then prev_hash.

drop function if exists app_private.audit_field(text) cascade;
create function app_private.audit_field(value text) returns text
  language sql immutable parallel safe set search_path = ''
  as $$ select coalesce(octet_length(value)::text || ':' || value || ';', 'N;') $$;
comment on function app_private.audit_field(text) is
  'One field of the canonical audit encoding: <octets>:<text>; or N; for null (src/audit/chain.ts encodes alike).';

drop function if exists app_private.audit_time(timestamptz) cascade;
create function app_private.audit_time(at timestamptz) returns text
  language sql immutable parallel safe set search_path = ''
  as $$ select to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;
comment on function app_private.audit_time(timestamptz) is
  'An audit event''s time as the chain hashes it: UTC, microseconds, whatever the session''s TimeZone and DateStyle.';

drop function if exists app_private.audit_event_hash(uuid, bigint, timestamptz, text, uuid, uuid, text, text, text, text, jsonb, text, bytea) cascade;
create function app_private.audit_event_hash(
  tenant uuid, seq bigint, occurred_at timestamptz, actor_kind text, actor_user_id uuid, actor_api_key_id uuid,
  action text, target_type text, target_id text, reason text, details jsonb, request_id text, prev_hash bytea
) returns bytea
  language sql immutable parallel safe set search_path = ''
  as $$
    select sha256(convert_to(
      'tenancy-audit-v1;' || app_private.audit_field(tenant::text) || app_private.audit_field(seq::text)
      || app_private.audit_field(app_private.audit_time(occurred_at)) || app_private.audit_field(actor_kind)
      || app_private.audit_field(actor_user_id::text) || app_private.audit_field(actor_api_key_id::text)
      || app_private.audit_field(action) || app_private.audit_field(target_type) || app_private.audit_field(target_id)
      || app_private.audit_field(reason) || app_private.audit_field(details::text) || app_private.audit_field(request_id),
      'UTF8') || prev_hash)
  $$;
comment on function app_private.audit_event_hash(uuid, bigint, timestamptz, text, uuid, uuid, text, text, text, text, jsonb, text, bytea) is
  'The hash of a tenant audit event: SHA-256 over tenancy-audit-v1 and its fields in the canonical encoding, then prev_hash.';

drop function if exists app_private.platform_audit_event_hash(bigint, timestamptz, uuid, text, text, uuid, text, jsonb, text, bytea) cascade;
create function app_private.platform_audit_event_hash(
  seq bigint, occurred_at timestamptz, actor_user_id uuid, actor text, action text, target_tenant_id uuid,
  reason text, details jsonb, request_id text, prev_hash bytea
) returns bytea
  language sql immutable parallel safe set search_path = ''
  as $$
    select sha256(convert_to(
      'tenancy-platform-audit-v1;' || app_private.audit_field(seq::text)
      || app_private.audit_field(app_private.audit_time(occurred_at)) || app_private.audit_field(actor_user_id::text)
      || app_private.audit_field(actor) || app_private.audit_field(action) || app_private.audit_field(target_tenant_id::text)
      || app_private.audit_field(reason) || app_private.audit_field(details::text) || app_private.audit_field(request_id),
      'UTF8') || prev_hash)
  $$;
comment on function app_private.platform_audit_event_hash(bigint, timestamptz, uuid, text, text, uuid, text, jsonb, text, bytea) is
  'The hash of a platform audit event: SHA-256 over tenancy-platform-audit-v1 and its fields in the canonical encoding, then prev_hash.';

--------------------------------------------------------------------------------
-- Retention: a per-tenant setting with a floor (null keeps every event).

alter table app.tenants add column if not exists audit_retention_days integer;
alter table app.tenants drop constraint if exists tenants_audit_retention_floor;
alter table app.tenants add constraint tenants_audit_retention_floor
  check (audit_retention_days is null or audit_retention_days between 90 and 36600);
comment on column app.tenants.audit_retention_days is
  'Audit events older than this many days are purged by the service under a signed anchor; at least 90, null keeps them all.';

--------------------------------------------------------------------------------
-- Chain heads: one row per chain, locked by each append until its commit.

create table if not exists app.audit_chain_heads (
  tenant_id uuid primary key references app.tenants (id) on delete cascade,
  seq bigint not null default 0,
  hash bytea not null default '\x0000000000000000000000000000000000000000000000000000000000000000',
  -- The hash before the newest event's: what the appending update hands to its event.
  prev_hash bytea,
  -- Events up to here were purged under a signed anchor (0: none).
  purged_through bigint not null default 0
);
comment on table app.audit_chain_heads is
  'The head of each tenant''s audit chain (seq and hash of the newest event, what retention purged); written only by the chain''s own functions, read by ADMINs.';
alter table app.audit_chain_heads enable row level security;
alter table app.audit_chain_heads force row level security;
drop policy if exists audit_chain_heads_select on app.audit_chain_heads;
create policy audit_chain_heads_select on app.audit_chain_heads for select
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('ADMIN')));
drop policy if exists audit_chain_heads_insert on app.audit_chain_heads;
create policy audit_chain_heads_insert on app.audit_chain_heads for insert
  with check (tenant_id = (select app.current_tenant_id()) and false);
drop policy if exists audit_chain_heads_update on app.audit_chain_heads;
create policy audit_chain_heads_update on app.audit_chain_heads for update
  using (tenant_id = (select app.current_tenant_id()) and false) with check (tenant_id = (select app.current_tenant_id()) and false);
drop policy if exists audit_chain_heads_delete on app.audit_chain_heads;
create policy audit_chain_heads_delete on app.audit_chain_heads for delete
  using (tenant_id = (select app.current_tenant_id()) and false);
drop policy if exists audit_chain_heads_owner on app.audit_chain_heads;
create policy audit_chain_heads_owner on app.audit_chain_heads to :DATABASE_OWNER using (true) with check (true);
grant select on app.audit_chain_heads to :DATABASE_APP;

create table if not exists app_private.platform_audit_chain_head (
  singleton boolean primary key default true check (singleton),
  seq bigint not null default 0,
  hash bytea not null default '\x0000000000000000000000000000000000000000000000000000000000000000',
  prev_hash bytea
);
comment on table app_private.platform_audit_chain_head is
  'The head of the platform audit chain (app_private.operator_audit_events): one row, locked by each append until its commit.';
alter table app_private.platform_audit_chain_head enable row level security;
alter table app_private.platform_audit_chain_head force row level security;
drop policy if exists platform_audit_chain_head_owner on app_private.platform_audit_chain_head;
create policy platform_audit_chain_head_owner on app_private.platform_audit_chain_head to :DATABASE_OWNER using (true) with check (true);

--------------------------------------------------------------------------------
-- Checkpoints and anchors, signed by the service (compact JWS, EdDSA).

create table if not exists app.audit_checkpoints (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  -- checkpoint: the chain head at signed_at; anchor: events up to seq were purged by retention.
  kind text not null check (kind in ('checkpoint', 'anchor')),
  seq bigint not null check (seq > 0),
  hash bytea not null check (octet_length(hash) = 32),
  signed_at timestamptz not null,
  key_id text not null check (char_length(key_id) between 1 and 100),
  jws text not null check (octet_length(jws) <= 4096),
  primary key (tenant_id, kind, seq)
);
comment on table app.audit_checkpoints is
  'Signed statements about a tenant''s audit chain (the JWS is what counts; the columns index it): checkpoints of its head and anchors of retention purges. Written only by app_private.store_audit_checkpoint and app_private.purge_audit_events; read by ADMINs.';
alter table app.audit_checkpoints enable row level security;
alter table app.audit_checkpoints force row level security;
drop policy if exists audit_checkpoints_select on app.audit_checkpoints;
create policy audit_checkpoints_select on app.audit_checkpoints for select
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('ADMIN')));
drop policy if exists audit_checkpoints_insert on app.audit_checkpoints;
create policy audit_checkpoints_insert on app.audit_checkpoints for insert
  with check (tenant_id = (select app.current_tenant_id()) and false);
drop policy if exists audit_checkpoints_update on app.audit_checkpoints;
create policy audit_checkpoints_update on app.audit_checkpoints for update
  using (tenant_id = (select app.current_tenant_id()) and false) with check (tenant_id = (select app.current_tenant_id()) and false);
drop policy if exists audit_checkpoints_delete on app.audit_checkpoints;
create policy audit_checkpoints_delete on app.audit_checkpoints for delete
  using (tenant_id = (select app.current_tenant_id()) and false);
drop policy if exists audit_checkpoints_owner on app.audit_checkpoints;
create policy audit_checkpoints_owner on app.audit_checkpoints to :DATABASE_OWNER using (true) with check (true);
grant select on app.audit_checkpoints to :DATABASE_APP;

create table if not exists app_private.platform_audit_checkpoints (
  kind text not null check (kind in ('checkpoint', 'anchor')),
  seq bigint not null check (seq > 0),
  hash bytea not null check (octet_length(hash) = 32),
  signed_at timestamptz not null,
  key_id text not null check (char_length(key_id) between 1 and 100),
  jws text not null check (octet_length(jws) <= 4096),
  primary key (kind, seq)
);
comment on table app_private.platform_audit_checkpoints is
  'Signed checkpoints of the platform audit chain (app_private.operator_audit_events), as app.audit_checkpoints for a tenant.';
alter table app_private.platform_audit_checkpoints enable row level security;
alter table app_private.platform_audit_checkpoints force row level security;
drop policy if exists platform_audit_checkpoints_owner on app_private.platform_audit_checkpoints;
create policy platform_audit_checkpoints_owner on app_private.platform_audit_checkpoints to :DATABASE_OWNER using (true) with check (true);

--------------------------------------------------------------------------------
-- The chain columns; existing events are chained in their order of old.

alter table app.audit_events add column if not exists seq bigint;
alter table app.audit_events add column if not exists prev_hash bytea;
alter table app.audit_events add column if not exists hash bytea;
alter table app.audit_events add column if not exists request_id text;
alter table app_private.operator_audit_events add column if not exists seq bigint;
alter table app_private.operator_audit_events add column if not exists prev_hash bytea;
alter table app_private.operator_audit_events add column if not exists hash bytea;
alter table app_private.operator_audit_events add column if not exists request_id text;

drop trigger if exists audit_events_chain on app.audit_events;
drop trigger if exists audit_events_append_only on app.audit_events;
drop trigger if exists operator_audit_events_chain on app_private.operator_audit_events;
drop trigger if exists operator_audit_events_append_only on app_private.operator_audit_events;

do $$
declare
  event record;
  previous bytea;
  last_tenant uuid;
  n bigint;
begin
  for event in select * from app.audit_events where hash is null order by tenant_id, occurred_at, id loop
    if last_tenant is distinct from event.tenant_id then
      last_tenant := event.tenant_id;
      n := 0;
      previous := '\x0000000000000000000000000000000000000000000000000000000000000000';
    end if;
    n := n + 1;
    update app.audit_events e set seq = n, prev_hash = previous,
      hash = app_private.audit_event_hash(e.tenant_id, n, e.occurred_at, e.actor_kind, e.actor_user_id, e.actor_api_key_id,
                                          e.action, e.target_type, e.target_id, e.reason, e.details, e.request_id, previous)
    where e.tenant_id = event.tenant_id and e.id = event.id
    returning e.hash into previous;
    insert into app.audit_chain_heads as h (tenant_id, seq, hash) values (event.tenant_id, n, previous)
      on conflict (tenant_id) do update set seq = excluded.seq, hash = excluded.hash;
  end loop;
  n := 0;
  previous := '\x0000000000000000000000000000000000000000000000000000000000000000';
  for event in select * from app_private.operator_audit_events where hash is null order by occurred_at, id loop
    n := n + 1;
    update app_private.operator_audit_events e set seq = n, prev_hash = previous,
      hash = app_private.platform_audit_event_hash(n, e.occurred_at, e.actor_user_id, e.actor, e.action, e.target_tenant_id,
                                                   e.reason, e.details, e.request_id, previous)
    where e.id = event.id
    returning e.hash into previous;
  end loop;
  insert into app_private.platform_audit_chain_head as h (seq, hash) values (n, previous)
    on conflict (singleton) do update set seq = excluded.seq, hash = excluded.hash;
end
$$;

alter table app.audit_events alter column seq set not null, alter column prev_hash set not null, alter column hash set not null;
alter table app.audit_events drop constraint if exists audit_events_seq_key;
alter table app.audit_events add constraint audit_events_seq_key unique (tenant_id, seq);
alter table app.audit_events drop constraint if exists audit_events_request_id_length;
alter table app.audit_events add constraint audit_events_request_id_length check (char_length(request_id) between 1 and 200);
alter table app_private.operator_audit_events alter column seq set not null, alter column prev_hash set not null, alter column hash set not null;
alter table app_private.operator_audit_events drop constraint if exists operator_audit_events_seq_key;
alter table app_private.operator_audit_events add constraint operator_audit_events_seq_key unique (seq);
alter table app_private.operator_audit_events drop constraint if exists operator_audit_events_request_id_length;
alter table app_private.operator_audit_events add constraint operator_audit_events_request_id_length check (char_length(request_id) between 1 and 200);
comment on column app.audit_events.seq is 'The event''s place in its tenant''s chain: 1, 2, 3 … without gaps (until a signed retention anchor).';
comment on column app.audit_events.hash is 'SHA-256 over the canonical encoding of the event and prev_hash (app_private.audit_event_hash).';
comment on column app.audit_events.request_id is 'The request that wrote it (the transaction setting app.request_id), when one did.';

--------------------------------------------------------------------------------
-- Appending: seq, prev_hash and hash under the head's row lock.

create or replace function app_private.chain_audit_event() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  new.request_id := coalesce(new.request_id, nullif(current_setting('app.request_id', true), ''));
  loop
    -- The head's row lock is held to commit: the tenant's next writer waits for it, so seq order is commit
    -- order and no two events share a predecessor. Under READ COMMITTED a waiting update recomputes its SET
    -- list on the committed head, so the hash always chains to the newest event.
    update app.audit_chain_heads h
      set seq = h.seq + 1, prev_hash = h.hash,
          hash = app_private.audit_event_hash(new.tenant_id, h.seq + 1, new.occurred_at, new.actor_kind, new.actor_user_id,
                   new.actor_api_key_id, new.action, new.target_type, new.target_id, new.reason, new.details, new.request_id, h.hash)
      where h.tenant_id = new.tenant_id
      returning h.seq, h.prev_hash, h.hash into new.seq, new.prev_hash, new.hash;
    exit when found;
    insert into app.audit_chain_heads (tenant_id) values (new.tenant_id) on conflict (tenant_id) do nothing;
  end loop;
  return new;
end
$$;
comment on function app_private.chain_audit_event() is
  'Trigger (before insert on app.audit_events): the event''s seq, prev_hash and hash from its tenant''s chain head, locked to commit; request_id from app.request_id.';
create trigger audit_events_chain before insert on app.audit_events
  for each row execute function app_private.chain_audit_event();

create or replace function app_private.chain_platform_audit_event() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  new.request_id := coalesce(new.request_id, nullif(current_setting('app.request_id', true), ''));
  loop
    update app_private.platform_audit_chain_head h
      set seq = h.seq + 1, prev_hash = h.hash,
          hash = app_private.platform_audit_event_hash(h.seq + 1, new.occurred_at, new.actor_user_id, new.actor, new.action,
                   new.target_tenant_id, new.reason, new.details, new.request_id, h.hash)
      returning h.seq, h.prev_hash, h.hash into new.seq, new.prev_hash, new.hash;
    exit when found;
    insert into app_private.platform_audit_chain_head (singleton) values (true) on conflict (singleton) do nothing;
  end loop;
  return new;
end
$$;
comment on function app_private.chain_platform_audit_event() is
  'Trigger (before insert on app_private.operator_audit_events): seq, prev_hash and hash from the platform chain''s head, locked to commit.';
create trigger operator_audit_events_chain before insert on app_private.operator_audit_events
  for each row execute function app_private.chain_platform_audit_event();

-- Append-only, for every role that does not turn triggers off: an event is never changed; it leaves with its
-- tenant, or by a retention purge under a signed anchor. (A superuser can still do anything: that is what
-- the signed checkpoints are for.)
create or replace function app_private.audit_events_append_only() returns trigger
  language plpgsql set search_path = ''
  as $$
begin
  if tg_op = 'DELETE' and tg_table_name = 'audit_events'
     and (not exists (select 1 from app.tenants t where t.id = old.tenant_id)
          or current_setting('app_private.purging_audit_of', true) = old.tenant_id::text) then
    return old;
  end if;
  raise exception 'audit events are append-only (% refused)', lower(tg_op) using errcode = 'insufficient_privilege';
end
$$;
comment on function app_private.audit_events_append_only() is
  'Trigger (before update or delete on the audit tables): refuses, but for a deleted tenant''s events and a retention purge.';
create trigger audit_events_append_only before update or delete on app.audit_events
  for each row execute function app_private.audit_events_append_only();
create trigger operator_audit_events_append_only before update or delete on app_private.operator_audit_events
  for each row execute function app_private.audit_events_append_only();

--------------------------------------------------------------------------------
-- The service's side: heads to sign, checkpoints to keep, purges to make.

create or replace function app_private.audit_checkpoints_due(max_chains integer default 1000)
  returns table (tenant_id uuid, seq bigint, hash bytea, first_seq bigint, first_hash bytea)
  language sql stable security definer set search_path = ''
  as $$
    (select null::uuid, h.seq, h.hash, 1::bigint,
            (select e.hash from app_private.operator_audit_events e order by e.seq limit 1)
     from app_private.platform_audit_chain_head h
     where h.seq > coalesce((select max(c.seq) from app_private.platform_audit_checkpoints c where c.kind = 'checkpoint'), 0))
    union all
    (select h.tenant_id, h.seq, h.hash, h.purged_through + 1,
            (select e.hash from app.audit_events e where e.tenant_id = h.tenant_id and e.seq = h.purged_through + 1)
     from app.audit_chain_heads h
     where h.seq > coalesce((select max(c.seq) from app.audit_checkpoints c where c.tenant_id = h.tenant_id and c.kind = 'checkpoint'), 0)
       and h.seq > h.purged_through
     order by h.tenant_id
     limit max_chains)
  $$;
comment on function app_private.audit_checkpoints_due(integer) is
  'The chain heads newer than their latest checkpoint (tenant null: the platform chain), with the first event still kept: what the service signs next.';
grant execute on function app_private.audit_checkpoints_due(integer) to :DATABASE_APP;

create or replace function app_private.store_audit_checkpoint(tenant uuid, seq bigint, hash bytea, signed_at timestamptz, key_id text, jws text)
  returns boolean
  language plpgsql security definer set search_path = ''
  as $$
declare
  stored integer;
begin
  -- Only a checkpoint of an event that is there: a mistaken one would fail every later verification.
  if tenant is null then
    if not exists (select 1 from app_private.operator_audit_events e where e.seq = store_audit_checkpoint.seq and e.hash = store_audit_checkpoint.hash) then
      raise exception 'no platform audit event % with that hash', seq using errcode = 'P0002';
    end if;
    insert into app_private.platform_audit_checkpoints (kind, seq, hash, signed_at, key_id, jws)
      values ('checkpoint', seq, hash, signed_at, key_id, jws) on conflict do nothing;
  else
    if not exists (select 1 from app.audit_events e where e.tenant_id = tenant and e.seq = store_audit_checkpoint.seq and e.hash = store_audit_checkpoint.hash) then
      raise exception 'no audit event % with that hash in the tenant', seq using errcode = 'P0002';
    end if;
    insert into app.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, jws)
      values (tenant, 'checkpoint', seq, hash, signed_at, key_id, jws) on conflict do nothing;
  end if;
  get diagnostics stored = row_count;
  return stored = 1;
end
$$;
comment on function app_private.store_audit_checkpoint(uuid, bigint, bytea, timestamptz, text, text) is
  'Keeps a checkpoint the service signed of a chain head (tenant null: the platform chain); false when that one was kept already.';
grant execute on function app_private.store_audit_checkpoint(uuid, bigint, bytea, timestamptz, text, text) to :DATABASE_APP;

create or replace function app_private.audit_purges_due(batch integer default 1000, max_chains integer default 100)
  returns table (tenant_id uuid, through_seq bigint, through_hash bytea)
  language sql stable security definer set search_path = ''
  as $$
    select h.tenant_id, p.seq, p.hash
    from app.tenants t
    join app.audit_chain_heads h on h.tenant_id = t.id
    cross join lateral (
      -- The longest run of the oldest events kept, at most `batch`, that are all past retention.
      select b.seq, b.hash from (
        select e.seq, e.hash, bool_and(e.occurred_at < now() - make_interval(days => t.audit_retention_days)) over (order by e.seq) as past
        from (select e.seq, e.hash, e.occurred_at from app.audit_events e
              where e.tenant_id = t.id and e.seq > h.purged_through order by e.seq limit least(batch, 10000)) e
      ) b
      where b.past order by b.seq desc limit 1
    ) p
    where t.audit_retention_days is not null
      and (select e.occurred_at from app.audit_events e where e.tenant_id = t.id and e.seq = h.purged_through + 1)
          < now() - make_interval(days => t.audit_retention_days)
    order by t.id
    limit max_chains
  $$;
comment on function app_private.audit_purges_due(integer, integer) is
  'Tenants with audit events past their retention: the newest seq of the oldest batch to purge and its hash, for the service to sign as an anchor.';
grant execute on function app_private.audit_purges_due(integer, integer) to :DATABASE_APP;

create or replace function app_private.purge_audit_events(tenant uuid, through_seq bigint, through_hash bytea, signed_at timestamptz, key_id text, anchor text)
  returns integer
  language plpgsql security definer set search_path = ''
  as $$
declare
  retention integer;
  purged_through bigint;
  purged integer;
begin
  select t.audit_retention_days into retention from app.tenants t where t.id = tenant;
  if retention is null then
    raise exception 'the tenant keeps its audit events (no retention set)' using errcode = 'invalid_parameter_value';
  end if;
  -- Purges of one tenant take turns; appends go on meanwhile (they never touch the oldest events).
  perform pg_advisory_xact_lock(hashtextextended('tenancy.audit-purge:' || tenant::text, 0));
  select h.purged_through into purged_through from app.audit_chain_heads h where h.tenant_id = tenant;
  if through_seq <= purged_through then
    return 0; -- another worker purged it first
  elsif through_seq - purged_through > 10000 then
    raise exception 'a purge takes at most 10000 events' using errcode = 'invalid_parameter_value';
  elsif not exists (select 1 from app.audit_events e where e.tenant_id = tenant and e.seq = through_seq and e.hash = through_hash) then
    raise exception 'no audit event % with that hash in the tenant', through_seq using errcode = 'P0002';
  elsif exists (select 1 from app.audit_events e
                where e.tenant_id = tenant and e.seq > purged_through and e.seq <= through_seq
                  and e.occurred_at >= now() - make_interval(days => retention)) then
    raise exception 'events up to % are not all past the tenant''s retention', through_seq using errcode = 'invalid_parameter_value';
  end if;
  insert into app.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, jws)
    values (tenant, 'anchor', through_seq, through_hash, signed_at, key_id, anchor);
  update app.audit_chain_heads h set purged_through = through_seq where h.tenant_id = tenant;
  perform set_config('app_private.purging_audit_of', tenant::text, true);
  delete from app.audit_events e where e.tenant_id = tenant and e.seq <= through_seq;
  get diagnostics purged = row_count;
  perform set_config('app_private.purging_audit_of', '', true);
  -- The new anchor stands for what it covers: older checkpoints and anchors say nothing more.
  delete from app.audit_checkpoints c where c.tenant_id = tenant and c.seq < through_seq;
  return purged;
end
$$;
comment on function app_private.purge_audit_events(uuid, bigint, bytea, timestamptz, text, text) is
  'Retention: deletes a tenant''s audit events up to through_seq (all past its audit_retention_days, at most 10000) and keeps the anchor the service signed for them.';
grant execute on function app_private.purge_audit_events(uuid, bigint, bytea, timestamptz, text, text) to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
