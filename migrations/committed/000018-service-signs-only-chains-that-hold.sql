--! Previous: sha1:8aaca175fe69a58a58a72d1b8534d7b516d12b3f
--! Hash: sha1:5e74caea0deda5ad413a5198f3f0000fcd58ed47
--! Message: the service signs only a chain that still holds its newest checkpoint (audit_checkpoints_due answers it and its event's hash now)

-- The service signs only a chain that still holds what it signed before. A
-- superuser who rewrote old events and hashed the chain again could have the
-- next sweep sign the rewritten head; verification holds every stored
-- checkpoint against the chain, but one who also deleted the older
-- checkpoints would have had the rewrite signed. audit_checkpoints_due now
-- also answers each chain's newest checkpoint (its JWS, which the service
-- verifies with its key) and the hash the event at that seq has now; the
-- service refuses to sign a chain where they differ, and logs it.

drop function if exists app_private.audit_checkpoints_due(integer);
create function app_private.audit_checkpoints_due(max_chains integer default 1000)
  returns table (tenant_id uuid, seq bigint, hash bytea, first_seq bigint, first_hash bytea,
                 purged_through bigint, signed_jws text, signed_event_hash bytea)
  language sql stable security definer set search_path = ''
  as $$
    (select null::uuid, h.seq, h.hash, 1::bigint,
            (select e.hash from app_private.operator_audit_events e order by e.seq limit 1),
            0::bigint, c.jws,
            (select e.hash from app_private.operator_audit_events e where e.seq = c.seq)
     from app_private.platform_audit_chain_head h
     left join lateral (select c.seq, c.jws from app_private.platform_audit_checkpoints c
                        where c.kind = 'checkpoint' order by c.seq desc limit 1) c on true
     where h.seq > coalesce(c.seq, 0))
    union all
    (select h.tenant_id, h.seq, h.hash, h.purged_through + 1,
            (select e.hash from app.audit_events e where e.tenant_id = h.tenant_id and e.seq = h.purged_through + 1),
            h.purged_through, c.jws,
            (select e.hash from app.audit_events e where e.tenant_id = h.tenant_id and e.seq = c.seq)
     from app.audit_chain_heads h
     left join lateral (select c.seq, c.jws from app.audit_checkpoints c
                        where c.tenant_id = h.tenant_id and c.kind = 'checkpoint' order by c.seq desc limit 1) c on true
     where h.seq > coalesce(c.seq, 0) and h.seq > h.purged_through
     order by h.tenant_id
     limit max_chains)
  $$;
comment on function app_private.audit_checkpoints_due(integer) is
  'The chain heads newer than their newest checkpoint (tenant null: the platform chain), with the first event still kept, what retention purged, and the newest checkpoint with the hash its event has now: what the service signs next, once it has checked that.';
grant execute on function app_private.audit_checkpoints_due(integer) to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
