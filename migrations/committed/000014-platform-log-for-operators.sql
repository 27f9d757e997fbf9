--! Previous: sha1:09d879ce43832683a8b8e5d478173f9c71700e63
--! Hash: sha1:c9878ee9a8727a14df696c4142523b3fa24dc34c
--! Message: the platform log readable by operators (app_private.operator_audit_log: newest first, filtered, the read itself audited)

-- The platform log readable by platform operators (issue 14, reading): a
-- keyset page of app_private.operator_audit_events, newest first, filtered by
-- action, target tenant, acting user and time. The request role cannot read
-- the table; this function checks the operator capability, and the read is
-- itself recorded in the platform log (audit.read, with its filters) before
-- the page is taken, so an operator's look at the log is in the log.

create index if not exists operator_audit_events_occurred_idx on app_private.operator_audit_events (occurred_at, id);

drop function if exists app_private.operator_audit_log(text, uuid, uuid, timestamptz, timestamptz, text, bigint, text, bigint, integer, boolean);
create function app_private.operator_audit_log(action_filter text, tenant_filter uuid, actor_filter uuid,
                                               occurred_after timestamptz, occurred_before timestamptz,
                                               after_at text, after_id bigint, before_at text, before_id bigint,
                                               page_size integer, inverted boolean)
  returns table(id bigint, seq bigint, occurred_at timestamptz, actor_user_id uuid, actor text, action text,
                target_tenant_id uuid, reason text, details jsonb, request_id text, "position" text)
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  after_key timestamptz := after_at::timestamp at time zone 'UTC';
  before_key timestamptz := before_at::timestamp at time zone 'UTC';
begin
  perform app_private.operator_audit('audit.read', tenant_filter, null,
    jsonb_strip_nulls(jsonb_build_object('action', action_filter, 'actorUserId', actor_filter,
                                         'occurredAfter', occurred_after, 'occurredBefore', occurred_before)));
  -- Newest first: `after` a cursor is older, `before` newer; inverted (Relay last) reads from the oldest end.
  return query
    select e.id, e.seq, e.occurred_at, e.actor_user_id, e.actor, e.action, e.target_tenant_id, e.reason, e.details, e.request_id,
           (e.occurred_at at time zone 'UTC')::text
    from app_private.operator_audit_events e
    where (action_filter is null or e.action = action_filter)
      and (tenant_filter is null or e.target_tenant_id = tenant_filter)
      and (actor_filter is null or e.actor_user_id = actor_filter)
      and (occurred_after is null or e.occurred_at >= occurred_after)
      and (occurred_before is null or e.occurred_at < occurred_before)
      and (after_at is null or (e.occurred_at, e.id) < (after_key, after_id))
      and (before_at is null or (e.occurred_at, e.id) > (before_key, before_id))
    order by case when inverted then e.occurred_at end, case when inverted then e.id end,
             e.occurred_at desc, e.id desc
    limit least(page_size, 101);
end
$$;
comment on function app_private.operator_audit_log(text, uuid, uuid, timestamptz, timestamptz, text, bigint, text, bigint, integer, boolean) is
  'Operators: a keyset page of the platform log (app_private.operator_audit_events), newest first by (occurred_at, id), filtered by action, target tenant, acting user and time; checks the capability and records the read (audit.read) first.';
grant execute on function app_private.operator_audit_log(text, uuid, uuid, timestamptz, timestamptz, text, bigint, text, bigint, integer, boolean) to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
