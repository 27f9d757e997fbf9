--! Previous: sha1:ebc44024d62a4843ed07f36fb03b6a3ed3e8d706
--! Hash: sha1:787e520092c833462bd9adcac84ab44bdd75bebf
--! Message: idle sessions end (expire_idle_sessions, audited, quota released); context search within the tsvector limit

-- Two faults found while testing how the service survives its clients (issue 12).
-- A session whose client vanished stayed active forever and held the tenant's
-- active-session quota: expire_idle_sessions ends sessions idle for longer
-- than the service's SESSION_IDLE_TIMEOUT (the service calls it every minute
-- or so), audited, the quota released by the sessions' counting trigger.
-- A valid context of 1 MiB with many distinct words failed (54000: a tsvector
-- is at most 1 MiB): its search vector now indexes as much of the content as
-- fits, all of it whenever it can.

--------------------------------------------------------------------------------
-- Sessions: ended once idle

create function app_private.expire_idle_sessions(idle interval, max_sessions integer default 500) returns integer
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  ended integer;
begin
  if idle < interval '1 minute' then
    raise exception 'a session is idle after a minute at the least' using errcode = 'invalid_parameter_value';
  end if;
  -- Idle: neither the session (tokens, metadata) nor any of its tasks written for `idle`.
  -- Rows another transaction holds are left for the next sweep.
  with idle_sessions as (
    select s.tenant_id, s.id, s.updated_at
    from app.sessions s
    where s.status = 'active' and s.updated_at < now() - idle
      and not exists (select 1 from app.tasks t
                      where t.tenant_id = s.tenant_id and t.session_id = s.id and t.updated_at >= now() - idle)
    order by s.updated_at
    limit max_sessions
    for update of s skip locked
  ), ended_sessions as (
    update app.sessions s set status = 'failed', ended_at = now()
    from idle_sessions i
    where s.tenant_id = i.tenant_id and s.id = i.id
    returning s.tenant_id, s.id, i.updated_at as last_activity
  )
  insert into app.audit_events (tenant_id, actor_kind, action, target_type, target_id, reason, details)
  select e.tenant_id, 'system', 'session.expire', 'session', e.id::text, 'idle for longer than ' || idle::text,
         jsonb_build_object('lastActivityAt', e.last_activity, 'idleSeconds', extract(epoch from idle)::bigint)
  from ended_sessions e;
  get diagnostics ended = row_count;
  return ended;
end
$$;
comment on function app_private.expire_idle_sessions(interval, integer) is
  'Ends (status failed) up to max_sessions active sessions with no write to them or their tasks for idle, records session.expire in each tenant''s audit log, and returns how many; the sessions'' counting trigger releases their active_sessions quota. The service''s idle-session sweep calls it (SESSION_IDLE_TIMEOUT).';
grant execute on function app_private.expire_idle_sessions(interval, integer) to :DATABASE_APP;

--------------------------------------------------------------------------------
-- Contexts: a search vector within PostgreSQL's limit

create function app_private.context_search(title text, content text) returns tsvector
  language plpgsql immutable set search_path = ''
  as $$
declare
  indexed integer := length(content);
begin
  loop
    begin
      return setweight(to_tsvector('english'::regconfig, title), 'A')
          || setweight(to_tsvector('english'::regconfig, left(content, indexed)), 'B');
    exception when program_limit_exceeded then
      indexed := indexed / 2; -- more distinct words than a tsvector holds: index the first part of the content
    end;
  end loop;
end
$$;
comment on function app_private.context_search(text, text) is
  'The search vector of a context: title (weight A) and content (B); when the whole content would pass the 1 MiB tsvector limit, its first half, quarter and so on (only contents with a great many distinct words).';
grant execute on function app_private.context_search(text, text) to :DATABASE_APP;

-- The column keeps its place and its GIN index; the table is rewritten once.
alter table app.contexts alter column search set expression as (app_private.context_search(title, content));

revoke execute on all functions in schema app, app_private from public;
