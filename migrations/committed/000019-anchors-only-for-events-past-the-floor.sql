--! Previous: sha1:5e74caea0deda5ad413a5198f3f0000fcd58ed47
--! Hash: sha1:6a8ea035bbfb78696856d6d966b55d025b265e0a
--! Message: the service signs a retention anchor only for an event it has hashed again and seen past the 90-day floor (audit_purges_due answers its content)

-- The service signs a retention anchor only for an event it has seen is past
-- the retention floor. The sweep used to sign whatever audit_purges_due named:
-- a superuser who replaced that function (and purge_audit_events) had a
-- genuine anchor signed over events still within retention, and verification
-- then accepted their deletion, also against every checkpoint kept outside the
-- database (test/attacks/audit-open-holes.attack.ts). audit_purges_due now
-- also answers the through event's content as the chain hashes it and its
-- prev_hash; the service computes its hash again, signs only when it is the
-- hash named and the event is older than 90 days (the floor, a constant of the
-- service). A database that lies about the content gets an anchor for a hash
-- the kept chain does not link to, which verification reports.

drop function if exists app_private.audit_purges_due(integer, integer);
create function app_private.audit_purges_due(batch integer default 1000, max_chains integer default 100)
  returns table (tenant_id uuid, through_seq bigint, through_hash bytea, through_prev_hash bytea, occurred_at text,
                 actor_kind text, actor_user_id text, actor_api_key_id text, action text, target_type text, target_id text,
                 reason text, details text, request_id text)
  language sql stable security definer set search_path = ''
  as $$
    select h.tenant_id, p.seq, p.hash, e.prev_hash,
           to_char(e.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), e.actor_kind, e.actor_user_id::text,
           e.actor_api_key_id::text, e.action, e.target_type, e.target_id, e.reason, e.details::text, e.request_id
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
    join app.audit_events e on e.tenant_id = t.id and e.seq = p.seq
    where t.audit_retention_days is not null
      and (select e.occurred_at from app.audit_events e where e.tenant_id = t.id and e.seq = h.purged_through + 1)
          < now() - make_interval(days => t.audit_retention_days)
    order by t.id
    limit max_chains
  $$;
comment on function app_private.audit_purges_due(integer, integer) is
  'Tenants with audit events past their retention: the newest seq of the oldest batch to purge, its hash, and that event''s content as the chain hashes it, for the service to check and sign as an anchor.';
grant execute on function app_private.audit_purges_due(integer, integer) to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
