--! Previous: sha1:c9878ee9a8727a14df696c4142523b3fa24dc34c
--! Hash: sha1:91c66d14b29d94eed14786e4b0352eea00817343
--! Message: cheaper audit events for the tenant's objects (old row to jsonb once, one aggregate, camel_case inlined)

-- Cheaper audit events for the tenant's objects (000011's app_private.audit_row):
-- the old row is converted to jsonb once (it was once per column compared: a
-- context's update converted its whole body a dozen times); the summary is one
-- aggregate instead of a loop of concatenations; camel_case has no SET clause
-- (pg_catalog names instead), so the planner inlines it (9 us -> 3 us a call).

create or replace function app_private.camel_case(name text) returns text
  language sql immutable parallel safe
  as $$ select pg_catalog.left(name, 1) || pg_catalog.substr(pg_catalog.replace(pg_catalog.initcap(pg_catalog.replace(name, '_', ' ')), ' ', ''), 2) $$;
comment on function app_private.camel_case(text) is
  'A snake_case column name as the API spells it (agent_id -> agentId), for audit event details. No SET clause, so it inlines: it names only pg_catalog functions.';

create or replace function app_private.audit_row() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
declare
  target_type text := tg_argv[0];
  row_json jsonb := to_jsonb(case when tg_op = 'DELETE' then old else new end);
  old_json jsonb;
  details jsonb;
  changed jsonb;
begin
  -- Written by another trigger or a foreign-key action: the change that caused it is audited.
  if pg_trigger_depth() > 1 then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  if tg_op = 'UPDATE' then
    -- Generated and maintained columns are not a change of their own (and generated ones are not computed yet).
    old_json := to_jsonb(old); -- once: a context's row holds its whole body
    select jsonb_agg(app_private.camel_case(n.key) order by n.key) into changed
    from jsonb_each(row_json) n
    where n.key not in ('updated_at', 'search', 'content_bytes') and n.value is distinct from old_json -> n.key;
    if changed is null then
      return new; -- nothing changed
    end if;
  end if;
  select coalesce(jsonb_object_agg(case when s like 'bytes:%' then app_private.camel_case(substr(s, 7)) || 'Bytes' else app_private.camel_case(s) end,
                                   case when s like 'bytes:%' then to_jsonb(octet_length(row_json ->> substr(s, 7))) else row_json -> s end), '{}')
    into details
  from unnest(tg_argv[1:]) s;
  if changed is not null then
    details := details || jsonb_build_object('changed', changed);
  end if;
  perform app_private.record_audit((row_json ->> 'tenant_id')::uuid,
                                   target_type || '.' || case tg_op when 'INSERT' then 'create' when 'UPDATE' then 'update' else 'delete' end,
                                   target_type, row_json ->> 'id', details,
                                   nullif(current_setting('app.audit_reason', true), ''));
  return case when tg_op = 'DELETE' then old else new end;
end
$$;
comment on function app_private.audit_row() is
  'Trigger (before insert, update or delete, for each row, named to fire after the table''s other before triggers): one audit event <target>.create|update|delete for the row (target type: the first trigger argument), with the columns named by the other arguments (bytes:<column>: its length in bytes) and, for an update, the changed columns. None for an update that changes nothing, nor for a change that another trigger or a foreign-key action made (depth > 1: its cause is audited). app.audit_reason, when set, is the event''s reason.';

revoke execute on all functions in schema app, app_private from public;
