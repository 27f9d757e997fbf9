--! Previous: sha1:91c66d14b29d94eed14786e4b0352eea00817343
--! Hash: sha1:caf36412dce5e93a31ada90476e57b2a3010bff5
--! Message: the audit chain's encoding as one JSON array (version 2): inlined and about half the trigger's cost; events kept chained again, old checkpoints dropped

-- The audit chain's encoding, cheaper to compute at insert (measured: the
-- chaining trigger cost 120 us of PostgreSQL CPU per audited write, now about
-- 75). Version 1 wrapped each field in a SQL function (`<octets>:<text>;`)
-- pinned with `set search_path`, which PostgreSQL never inlines, and even
-- inlined its expression tree of some hundred nodes was built again for every
-- write. Version 2 hashes the fields as one JSON array, the text PostgreSQL's
-- json_build_array prints (`["tenancy-audit-v2", "<tenant>", "<seq>", ...]`,
-- strings escaped as JSON.stringify escapes them, null as null), then
-- prev_hash: one function node per field. Nothing but tests and demos holds a
-- chain yet (000012 is hours old), so the events kept are chained again in the
-- new encoding, from their first event's prev_hash (genesis, or the hash a
-- signed retention anchor vouches for, which stays valid); checkpoints signed
-- over the old hashes are dropped, and the service signs the heads again.

drop function if exists app_private.audit_event_hash(uuid, bigint, timestamptz, text, uuid, uuid, text, text, text, text, jsonb, text, bytea);
create function app_private.audit_event_hash(
  tenant uuid, seq bigint, occurred_at timestamptz, actor_kind text, actor_user_id uuid, actor_api_key_id uuid,
  action text, target_type text, target_id text, reason text, details jsonb, request_id text, prev_hash bytea
) returns bytea
  -- No SET clause and a single expression: the trigger's statement inlines it.
  language sql stable parallel safe
  as $$
    select sha256(convert_to(json_build_array('tenancy-audit-v2', tenant, seq::text,
      to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor_kind, actor_user_id, actor_api_key_id,
      action, target_type, target_id, reason, details::text, request_id)::text, 'UTF8') || prev_hash)
  $$;
comment on function app_private.audit_event_hash(uuid, bigint, timestamptz, text, uuid, uuid, text, text, text, text, jsonb, text, bytea) is
  'The hash of a tenant audit event: SHA-256 over the JSON array tenancy-audit-v2 and its fields (time in UTC with microseconds, details as jsonb text), then prev_hash (src/modules/audit-chain/chain.ts computes the same).';

drop function if exists app_private.platform_audit_event_hash(bigint, timestamptz, uuid, text, text, uuid, text, jsonb, text, bytea);
create function app_private.platform_audit_event_hash(
  seq bigint, occurred_at timestamptz, actor_user_id uuid, actor text, action text, target_tenant_id uuid,
  reason text, details jsonb, request_id text, prev_hash bytea
) returns bytea
  language sql stable parallel safe
  as $$
    select sha256(convert_to(json_build_array('tenancy-platform-audit-v2', seq::text,
      to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor_user_id, actor, action, target_tenant_id,
      reason, details::text, request_id)::text, 'UTF8') || prev_hash)
  $$;
comment on function app_private.platform_audit_event_hash(bigint, timestamptz, uuid, text, text, uuid, text, jsonb, text, bytea) is
  'The hash of a platform audit event: SHA-256 over the JSON array tenancy-platform-audit-v2 and its fields, then prev_hash.';

drop function if exists app_private.audit_field(text);
drop function if exists app_private.audit_time(timestamptz);

-- The events kept, chained again in version 2 (the append-only guard is off for it).
alter table app.audit_events disable trigger audit_events_append_only;
alter table app_private.operator_audit_events disable trigger operator_audit_events_append_only;
do $$
declare
  event record;
  previous bytea;
  last_tenant uuid;
begin
  for event in select * from app.audit_events order by tenant_id, seq loop
    if last_tenant is distinct from event.tenant_id then
      if last_tenant is not null then
        update app.audit_chain_heads h set hash = previous,
          prev_hash = (select e.prev_hash from app.audit_events e where e.tenant_id = last_tenant order by e.seq desc limit 1)
        where h.tenant_id = last_tenant;
      end if;
      last_tenant := event.tenant_id;
      previous := event.prev_hash;
    end if;
    update app.audit_events e set prev_hash = previous,
      hash = app_private.audit_event_hash(e.tenant_id, e.seq, e.occurred_at, e.actor_kind, e.actor_user_id, e.actor_api_key_id,
                                          e.action, e.target_type, e.target_id, e.reason, e.details, e.request_id, previous)
    where e.tenant_id = event.tenant_id and e.seq = event.seq
    returning e.hash into previous;
  end loop;
  if last_tenant is not null then
    update app.audit_chain_heads h set hash = previous,
      prev_hash = (select e.prev_hash from app.audit_events e where e.tenant_id = last_tenant order by e.seq desc limit 1)
    where h.tenant_id = last_tenant;
  end if;
  previous := '\x0000000000000000000000000000000000000000000000000000000000000000';
  for event in select * from app_private.operator_audit_events order by seq loop
    update app_private.operator_audit_events e set prev_hash = previous,
      hash = app_private.platform_audit_event_hash(e.seq, e.occurred_at, e.actor_user_id, e.actor, e.action, e.target_tenant_id,
                                                   e.reason, e.details, e.request_id, previous)
    where e.seq = event.seq
    returning e.hash into previous;
  end loop;
  update app_private.platform_audit_chain_head h set hash = previous,
    prev_hash = coalesce((select e.prev_hash from app_private.operator_audit_events e order by e.seq desc limit 1), h.prev_hash)
  where exists (select 1 from app_private.operator_audit_events);
end
$$;
alter table app.audit_events enable trigger audit_events_append_only;
alter table app_private.operator_audit_events enable trigger operator_audit_events_append_only;
delete from app.audit_checkpoints where kind = 'checkpoint';
delete from app_private.platform_audit_checkpoints where kind = 'checkpoint';

revoke execute on all functions in schema app, app_private from public;
