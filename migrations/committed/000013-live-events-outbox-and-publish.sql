--! Previous: sha1:3957fe59ba7b61b64a3b24b083b9da32afd225e7
--! Hash: sha1:09d879ce43832683a8b8e5d478173f9c71700e63
--! Message: live events: an unlogged outbox filled by statement-level triggers (sessions, tasks, agents, fine-tuning jobs, memberships; access changes), published to NOTIFY tenancy_events in batches by app_private.publish_events

-- Live events (issue 15): every committed change to a followed table becomes a
-- notification on channel tenancy_events carrying the tenant id, the GraphQL
-- type, the row's id and the kind of change, never row content (DESIGN.md
-- invariant 10): a subscriber re-reads the row in its own tenant transaction,
-- so RLS decides what it sees.
--
-- Through an outbox, not NOTIFY in the writing transaction: a transaction
-- that notified takes one database-wide lock at commit and holds it through
-- its WAL flush, so notifying writers commit one at a time (measured on this
-- machine: 789 -> 311 task inserts/s at 32 connections). Writers only add
-- rows to app_private.event_outbox (unlogged: no WAL of its own); the
-- listening processes call app_private.publish_events, which moves a batch to
-- NOTIFY in one transaction at a time (an advisory lock), so the lock is
-- taken once per batch, off the writers' path. Only committed rows are ever
-- published (a rolled-back change notifies nothing); batches leave in outbox
-- order and reach the queue in that order. An unlogged table is emptied by a
-- crash: the crash drops every listening connection too, and the listeners
-- send their subscribers a resync when they are back.
--
-- Statement-level triggers: a statement that changes more than 1000 rows adds
-- one resync per tenant instead of a row per change (a bulk load or a cascade
-- never floods the queue). Access changes (a member removed, a role changed,
-- a key revoked, a tenant suspended or reactivated) go the same way, never
-- folded, so streams can end when access does.

create unlogged table if not exists app_private.event_outbox (
  seq bigint generated always as identity primary key,
  payload text not null constraint event_outbox_payload_size check (octet_length(payload) <= 1000)
);
comment on table app_private.event_outbox is 'Live events not yet published: one JSON notification payload per row (tenant, type, id, kind; or an access change; or a tenant resync), added by the notify_* triggers in the writing transaction and moved to NOTIFY tenancy_events by app_private.publish_events. Unlogged: a crash empties it, and drops the listening connections, whose subscribers then get a resync. The request role has no access.';
alter table app_private.event_outbox enable row level security;
alter table app_private.event_outbox force row level security;
drop policy if exists event_outbox_owner on app_private.event_outbox;
create policy event_outbox_owner on app_private.event_outbox to :DATABASE_OWNER using (true) with check (true);

create or replace function app_private.notify_row_changes() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  change text := case tg_op when 'INSERT' then 'created' when 'UPDATE' then 'updated' else 'deleted' end;
  changed bigint;
begin
  if tg_op = 'DELETE' then
    select count(*) into changed from old_rows;
  else
    select count(*) into changed from new_rows;
  end if;
  if changed > 1000 then
    if tg_op = 'DELETE' then
      insert into app_private.event_outbox (payload)
        select format('{"event":"resync","tenant":"%s"}', tenant_id) from (select distinct tenant_id from old_rows) tenants;
    else
      insert into app_private.event_outbox (payload)
        select format('{"event":"resync","tenant":"%s"}', tenant_id) from (select distinct tenant_id from new_rows) tenants;
    end if;
  elsif tg_op = 'DELETE' then
    insert into app_private.event_outbox (payload)
      select format('{"event":"row","tenant":"%s","type":"%s","id":"%s","kind":"%s"}', r.tenant_id, tg_argv[0], r.id, change) from old_rows r;
  else
    insert into app_private.event_outbox (payload)
      select format('{"event":"row","tenant":"%s","type":"%s","id":"%s","kind":"%s"}', r.tenant_id, tg_argv[0], r.id, change) from new_rows r;
  end if;
  return null;
end;
$$;
comment on function app_private.notify_row_changes() is 'Trigger (after insert, update or delete, for each statement, referencing the changed rows as new_rows / old_rows; argument: the GraphQL type): adds {"event":"row", tenant, type, id, kind} to app_private.event_outbox per changed row, or one {"event":"resync", tenant} per tenant when the statement changed more than 1000 rows. Ids only, never row content.';

create or replace function app_private.notify_member_changes() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if tg_op = 'INSERT' then
    insert into app_private.event_outbox (payload)
      select format('{"event":"row","tenant":"%s","type":"Member","id":"%s","kind":"created"}', tenant_id, user_id) from new_rows;
  elsif tg_op = 'UPDATE' then
    insert into app_private.event_outbox (payload)
      select format('{"event":"access","tenant":"%s","kind":"role_changed","user":"%s"}', n.tenant_id, n.user_id)
        from new_rows n join old_rows o using (tenant_id, user_id)
       where n.role is distinct from o.role;
    insert into app_private.event_outbox (payload)
      select format('{"event":"row","tenant":"%s","type":"Member","id":"%s","kind":"updated"}', tenant_id, user_id) from new_rows;
  else
    insert into app_private.event_outbox (payload)
      select format('{"event":"access","tenant":"%s","kind":"member_removed","user":"%s"}', tenant_id, user_id) from old_rows;
    insert into app_private.event_outbox (payload)
      select format('{"event":"row","tenant":"%s","type":"Member","id":"%s","kind":"deleted"}', tenant_id, user_id) from old_rows;
  end if;
  return null;
end;
$$;
comment on function app_private.notify_member_changes() is 'Trigger (after insert, update or delete on app.memberships, for each statement, referencing new_rows / old_rows): adds a Member row event per changed membership (id: the user id) to app_private.event_outbox and, before it, the access change a subscriber must act on: role_changed when the role changed, member_removed when the membership is gone. Never folded into a resync.';

create or replace function app_private.notify_api_key_revoked() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into app_private.event_outbox (payload)
    values (format('{"event":"access","tenant":"%s","kind":"api_key_revoked","key":"%s"}', new.tenant_id, new.id));
  return null;
end;
$$;
comment on function app_private.notify_api_key_revoked() is 'Trigger (after update of revoked_at on app.api_keys, for each row that became revoked): adds {"event":"access", tenant, kind: api_key_revoked, key} to app_private.event_outbox, so streams opened with the key end.';

create or replace function app_private.notify_tenant_status() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into app_private.event_outbox (payload)
    values (format('{"event":"access","tenant":"%s","kind":"%s"}', new.id,
      case new.status when 'suspended' then 'tenant_suspended' else 'tenant_reactivated' end));
  return null;
end;
$$;
comment on function app_private.notify_tenant_status() is 'Trigger (after update of status on app.tenants, for each row whose status changed): adds {"event":"access", tenant, kind: tenant_suspended | tenant_reactivated} to app_private.event_outbox.';

create or replace function app_private.publish_events(max_events integer) returns integer
language plpgsql security definer set search_path = '' as $$
declare
  payloads text[];
  payload text;
begin
  if max_events is null or max_events < 1 or max_events > 10000 then
    raise exception 'max_events must be from 1 to 10000' using errcode = '22023';
  end if;
  -- One publisher at a time across processes: batches reach the queue in the order they leave the outbox.
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('tenancy.publish-events', 0)) then
    return -1;
  end if;
  with batch as (
    delete from app_private.event_outbox
     where seq in (select seq from app_private.event_outbox order by seq limit max_events)
    returning seq, event_outbox.payload
  )
  select pg_catalog.array_agg(batch.payload order by seq) into payloads from batch;
  if payloads is null then
    return 0;
  end if;
  foreach payload in array payloads loop
    perform pg_catalog.pg_notify('tenancy_events', payload);
  end loop;
  return pg_catalog.cardinality(payloads);
end;
$$;
comment on function app_private.publish_events(integer) is 'Called by the listening processes (src/events/hub.ts), every few milliseconds: moves up to max_events (1..10000) of the oldest committed rows of app_private.event_outbox to NOTIFY tenancy_events, in outbox order, in one transaction (one commit-time notify lock per batch, not per write). Returns how many it published, or -1 when another process is publishing right now.';

drop trigger if exists sessions_notify_insert on app.sessions;
drop trigger if exists sessions_notify_update on app.sessions;
drop trigger if exists sessions_notify_delete on app.sessions;
create trigger sessions_notify_insert after insert on app.sessions referencing new table as new_rows
  for each statement execute function app_private.notify_row_changes('Session');
create trigger sessions_notify_update after update on app.sessions referencing new table as new_rows
  for each statement execute function app_private.notify_row_changes('Session');
create trigger sessions_notify_delete after delete on app.sessions referencing old table as old_rows
  for each statement execute function app_private.notify_row_changes('Session');

drop trigger if exists tasks_notify_insert on app.tasks;
drop trigger if exists tasks_notify_update on app.tasks;
drop trigger if exists tasks_notify_delete on app.tasks;
create trigger tasks_notify_insert after insert on app.tasks referencing new table as new_rows
  for each statement execute function app_private.notify_row_changes('Task');
create trigger tasks_notify_update after update on app.tasks referencing new table as new_rows
  for each statement execute function app_private.notify_row_changes('Task');
create trigger tasks_notify_delete after delete on app.tasks referencing old table as old_rows
  for each statement execute function app_private.notify_row_changes('Task');

drop trigger if exists agents_notify_insert on app.agents;
drop trigger if exists agents_notify_update on app.agents;
drop trigger if exists agents_notify_delete on app.agents;
create trigger agents_notify_insert after insert on app.agents referencing new table as new_rows
  for each statement execute function app_private.notify_row_changes('Agent');
create trigger agents_notify_update after update on app.agents referencing new table as new_rows
  for each statement execute function app_private.notify_row_changes('Agent');
create trigger agents_notify_delete after delete on app.agents referencing old table as old_rows
  for each statement execute function app_private.notify_row_changes('Agent');

drop trigger if exists fine_tuning_jobs_notify_insert on app.fine_tuning_jobs;
drop trigger if exists fine_tuning_jobs_notify_update on app.fine_tuning_jobs;
drop trigger if exists fine_tuning_jobs_notify_delete on app.fine_tuning_jobs;
create trigger fine_tuning_jobs_notify_insert after insert on app.fine_tuning_jobs referencing new table as new_rows
  for each statement execute function app_private.notify_row_changes('FineTuningJob');
create trigger fine_tuning_jobs_notify_update after update on app.fine_tuning_jobs referencing new table as new_rows
  for each statement execute function app_private.notify_row_changes('FineTuningJob');
create trigger fine_tuning_jobs_notify_delete after delete on app.fine_tuning_jobs referencing old table as old_rows
  for each statement execute function app_private.notify_row_changes('FineTuningJob');

drop trigger if exists memberships_notify_insert on app.memberships;
drop trigger if exists memberships_notify_update on app.memberships;
drop trigger if exists memberships_notify_delete on app.memberships;
create trigger memberships_notify_insert after insert on app.memberships referencing new table as new_rows
  for each statement execute function app_private.notify_member_changes();
create trigger memberships_notify_update after update on app.memberships referencing old table as old_rows new table as new_rows
  for each statement execute function app_private.notify_member_changes();
create trigger memberships_notify_delete after delete on app.memberships referencing old table as old_rows
  for each statement execute function app_private.notify_member_changes();

drop trigger if exists api_keys_notify_revoked on app.api_keys;
create trigger api_keys_notify_revoked after update of revoked_at on app.api_keys
  for each row when (old.revoked_at is null and new.revoked_at is not null)
  execute function app_private.notify_api_key_revoked();

drop trigger if exists tenants_notify_status on app.tenants;
create trigger tenants_notify_status after update of status on app.tenants
  for each row when (old.status is distinct from new.status)
  execute function app_private.notify_tenant_status();

revoke execute on all functions in schema app, app_private from public;
grant execute on function app_private.publish_events(integer) to :DATABASE_APP;
