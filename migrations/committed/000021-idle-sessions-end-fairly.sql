--! Previous: sha1:126544a920624ae29db1ad5e3ef8372389ebf3d8
--! Hash: sha1:ed2be907654a8bbecc79f879f97fdbd4369fd5f8
--! Message: idle sessions end fairly across tenants (each tenant's oldest first, the tenants in turn)

-- Idle sessions end fairly across tenants: a sweep takes each tenant's oldest idle session first, then each
-- tenant's second, and so on (up to max_sessions), so one tenant with thousands of idle sessions cannot fill
-- every sweep while another tenant's abandoned session keeps its active_sessions quota (availability red team).
-- The ranking reads without locks (FOR UPDATE cannot stand beside a window function); the rows chosen are then
-- locked, skipping those another transaction holds, and are checked again under the lock (still active, still idle).

create or replace function app_private.expire_idle_sessions(idle interval, max_sessions integer default 500) returns integer
  language plpgsql volatile security definer set search_path = ''
  as $$
declare
  ended integer;
begin
  if idle < interval '1 minute' then
    raise exception 'a session is idle after a minute at the least' using errcode = 'invalid_parameter_value';
  end if;
  -- The sessions' audit trigger records each as session.update (status failed, actor system) with this reason.
  perform set_config('app.audit_reason', 'idle for longer than ' || idle::text, true);
  -- Idle: neither the session (tokens, metadata) nor any of its tasks written for `idle`.
  with idle_sessions as (
    select s.tenant_id, s.id, s.updated_at,
           row_number() over (partition by s.tenant_id order by s.updated_at, s.id) as turn
    from app.sessions s
    where s.status = 'active' and s.updated_at < now() - idle
      and not exists (select 1 from app.tasks t
                      where t.tenant_id = s.tenant_id and t.session_id = s.id and t.updated_at >= now() - idle)
  ), chosen as (
    select i.tenant_id, i.id from idle_sessions i order by i.turn, i.updated_at, i.tenant_id limit max_sessions
  ), locked as (
    select s.tenant_id, s.id
    from app.sessions s join chosen c on c.tenant_id = s.tenant_id and c.id = s.id
    where s.status = 'active' and s.updated_at < now() - idle
    for update of s skip locked
  )
  update app.sessions s set status = 'failed', ended_at = now()
  from locked l
  where s.tenant_id = l.tenant_id and s.id = l.id;
  get diagnostics ended = row_count;
  perform set_config('app.audit_reason', '', true);
  return ended;
end
$$;
comment on function app_private.expire_idle_sessions(interval, integer) is
  'Ends (status failed) up to max_sessions active sessions with no write to them or their tasks for idle, each tenant''s oldest first and the tenants in turn (one tenant''s backlog cannot hold back another''s), and returns how many; each is audited by the sessions'' trigger (session.update, reason "idle for longer than ..."), and the sessions'' counting trigger releases their active_sessions quota. The service''s idle-session sweep calls it (SESSION_IDLE_TIMEOUT).';
grant execute on function app_private.expire_idle_sessions(interval, integer) to :DATABASE_APP;
