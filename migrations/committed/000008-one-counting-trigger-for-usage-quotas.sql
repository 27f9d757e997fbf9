--! Previous: sha1:29ff28d1c2b1f787528efd21d7defa627f965cbb
--! Hash: sha1:4d6c9b9c57e03a5ce61fa07430bb62e2feee589f
--! Message: one counting trigger function for the usage quotas

-- One counting trigger function for the usage quotas, where 000004 had four
-- of one shape (count_agents, count_members, count_context_bytes,
-- count_sessions). Still statement-level: one counter update per tenant per
-- statement, however many rows it wrote (bulk seeds stay fast).

-- A trigger names the quota and what one row is worth to it: an SQL
-- expression over the row's columns, written in the trigger's definition
-- (never from input); without one, each row counts 1. Inserted rows add
-- their worth, deleted rows release it, an UPDATE adds new minus old.
create or replace function app_private.count_usage() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
declare
  worth text := coalesce(tg_argv[1], '1');
begin
  -- Tenants in order: concurrent statements lock their quota rows in the same order.
  -- Dynamic SQL, since a worth names its own table's columns: planned at each statement.
  execute format('select app_private.consume_quota(tenant_id, $1, n)
                  from (select tenant_id, sum(n)::bigint as n from (%s) c group by tenant_id order by tenant_id) d',
                 case tg_op
                   when 'INSERT' then format('select tenant_id, (%s)::bigint as n from new_rows', worth)
                   when 'DELETE' then format('select tenant_id, -(%s)::bigint as n from old_rows', worth)
                   else format('select tenant_id, (%1$s)::bigint as n from new_rows union all select tenant_id, -(%1$s)::bigint from old_rows', worth)
                 end)
    using tg_argv[0];
  return null;
end
$$;

-- Tokens count against the month once used: an UPDATE adds each session's
-- growth in tokens_used; a session's tokens never return to the month.
create or replace function app_private.count_session_tokens() returns trigger
  language plpgsql security definer set search_path = ''
  as $$
begin
  perform app_private.consume_quota(d.tenant_id, 'monthly_tokens', d.n)
    from (select n.tenant_id, sum(n.tokens_used - o.tokens_used)::bigint as n
          from new_rows n join old_rows o on o.tenant_id = n.tenant_id and o.id = n.id
          where n.tokens_used > o.tokens_used
          group by n.tenant_id order by n.tenant_id) d;
  return null;
end
$$;

comment on function app_private.count_usage() is
  'Statement trigger keeping a usage quota: count_usage(quota [, worth]) adds what inserted rows are worth to quota, releases what deleted rows were worth, and adds new minus old on UPDATE, per tenant, tenants in order (app_private.consume_quota). worth is an SQL expression over the row, default 1.';
comment on function app_private.count_session_tokens() is
  'Statement trigger (after update on app.sessions): each session''s growth in tokens_used counts against monthly_tokens; decreases are not returned.';

create or replace trigger agents_count_insert after insert on app.agents
  referencing new table as new_rows for each statement execute function app_private.count_usage('agents');
create or replace trigger agents_count_delete after delete on app.agents
  referencing old table as old_rows for each statement execute function app_private.count_usage('agents');

create or replace trigger memberships_count_insert after insert on app.memberships
  referencing new table as new_rows for each statement execute function app_private.count_usage('members');
create or replace trigger memberships_count_delete after delete on app.memberships
  referencing old table as old_rows for each statement execute function app_private.count_usage('members');

create or replace trigger contexts_count_insert after insert on app.contexts
  referencing new table as new_rows for each statement execute function app_private.count_usage('context_bytes', 'content_bytes');
create or replace trigger contexts_count_update after update on app.contexts
  referencing old table as old_rows new table as new_rows
  for each statement execute function app_private.count_usage('context_bytes', 'content_bytes');
create or replace trigger contexts_count_delete after delete on app.contexts
  referencing old table as old_rows for each statement execute function app_private.count_usage('context_bytes', 'content_bytes');

-- Active sessions count while active. Statement triggers fire in name order:
-- sessions_count_update, then sessions_meter_tokens, as the one function did.
create or replace trigger sessions_count_insert after insert on app.sessions
  referencing new table as new_rows
  for each statement execute function app_private.count_usage('active_sessions', '(status = ''active'')::int');
create or replace trigger sessions_count_update after update on app.sessions
  referencing old table as old_rows new table as new_rows
  for each statement execute function app_private.count_usage('active_sessions', '(status = ''active'')::int');
create or replace trigger sessions_count_delete after delete on app.sessions
  referencing old table as old_rows
  for each statement execute function app_private.count_usage('active_sessions', '(status = ''active'')::int');
create or replace trigger sessions_meter_tokens after update on app.sessions
  referencing old table as old_rows new table as new_rows for each statement execute function app_private.count_session_tokens();

drop function app_private.count_agents();
drop function app_private.count_members();
drop function app_private.count_context_bytes();
drop function app_private.count_sessions();

revoke execute on all functions in schema app, app_private from public;
