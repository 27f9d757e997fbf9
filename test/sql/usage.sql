-- Usage counters (app_private.count_usage and count_session_tokens) in plain
-- SQL: statements that write rows of several tenants at once, inserts,
-- updates and deletes of every counted table, and a request's own writes.
-- The counters must always equal what the rows say.
-- Run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/usage.sql (rolled back).

begin;
\ir include/helpers.sql

insert into app.tenants (id, slug, name, plan) values
  ('a2000000-0000-4000-8000-00000000000a', 'sql-usage-a', 'SQL usage A', 'enterprise'),
  ('b2000000-0000-4000-8000-00000000000b', 'sql-usage-b', 'SQL usage B', 'enterprise');
insert into app.users (id, email) values
  ('a2000000-0000-4000-8000-0000000000a1', 'member@sql-usage-a.test'),
  ('b2000000-0000-4000-8000-0000000000b1', 'member@sql-usage-b.test'),
  ('c2000000-0000-4000-8000-0000000000c1', 'guest@sql-usage.test');

-- What each counter must read: recounted from the rows.
create function test_helpers.assert_usage_counted(label text) returns void
  language plpgsql
  as $$
declare
  wrong text;
begin
  select string_agg(format('%s %s: counted %s, rows say %s', t.slug, q.quota, q.used, actual.n), '; ') into wrong
  from app.tenants t join app.quotas q on q.tenant_id = t.id
  cross join lateral (select case q.quota
    when 'agents' then (select count(*) from app.agents a where a.tenant_id = t.id)
    when 'members' then (select count(*) from app.memberships m where m.tenant_id = t.id)
    when 'context_bytes' then (select coalesce(sum(c.content_bytes), 0) from app.contexts c where c.tenant_id = t.id)
    when 'active_sessions' then (select count(*) from app.sessions s where s.tenant_id = t.id and s.status = 'active')
    end as n) actual
  where t.slug like 'sql-usage-%' and actual.n is not null and q.used <> actual.n;
  assert wrong is null, label || ': ' || wrong;
end
$$;

-- Members and agents: rows of both tenants in one statement, then some removed.
insert into app.memberships (tenant_id, user_id, role) values
  ('a2000000-0000-4000-8000-00000000000a', 'a2000000-0000-4000-8000-0000000000a1', 'ADMIN'),
  ('b2000000-0000-4000-8000-00000000000b', 'b2000000-0000-4000-8000-0000000000b1', 'ADMIN'),
  ('a2000000-0000-4000-8000-00000000000a', 'c2000000-0000-4000-8000-0000000000c1', 'MEMBER'),
  ('b2000000-0000-4000-8000-00000000000b', 'c2000000-0000-4000-8000-0000000000c1', 'MEMBER');
insert into app.agents (tenant_id, name, kind, created_by)
  select t.id, 'agent ' || g, 'assistant', null from app.tenants t, generate_series(1, 7) g
  where t.slug like 'sql-usage-%';
select test_helpers.assert_usage_counted('after inserts across tenants');
do $$
begin
  assert (select used from app.quotas where tenant_id = 'a2000000-0000-4000-8000-00000000000a' and quota = 'agents') = 7, 'agents not counted';
  assert (select used from app.quotas where tenant_id = 'b2000000-0000-4000-8000-00000000000b' and quota = 'members') = 2, 'members not counted';
end
$$;
delete from app.agents where name in ('agent 1', 'agent 2', 'agent 3') or (tenant_id = 'b2000000-0000-4000-8000-00000000000b' and name = 'agent 7');
delete from app.memberships where user_id = 'c2000000-0000-4000-8000-0000000000c1';
select test_helpers.assert_usage_counted('after deletes across tenants');

-- Contexts: bytes added, grown and shrunk in one statement, released.
insert into app.contexts (tenant_id, kind, title, content)
  select t.id, 'note', 'note ' || g, repeat('x', 100 * g) from app.tenants t, generate_series(1, 4) g
  where t.slug like 'sql-usage-%';
update app.contexts set content = case when tenant_id = 'a2000000-0000-4000-8000-00000000000a' then content || content else left(content, 10) end
  where tenant_id in ('a2000000-0000-4000-8000-00000000000a', 'b2000000-0000-4000-8000-00000000000b');
select test_helpers.assert_usage_counted('after contexts grew and shrank');
delete from app.contexts where title = 'note 4';
select test_helpers.assert_usage_counted('after contexts were deleted');

-- Sessions: active ones count; tokens count against the month as they grow, and stay counted.
insert into app.sessions (tenant_id, agent_id, started_by)
  select a.tenant_id, a.id, null from app.agents a join app.tenants t on t.id = a.tenant_id where t.slug like 'sql-usage-%';
select test_helpers.assert_usage_counted('after sessions started');
update app.sessions set tokens_used = tokens_used + 100 where tenant_id = 'a2000000-0000-4000-8000-00000000000a';
update app.sessions set tokens_used = tokens_used - 40 where tenant_id = 'a2000000-0000-4000-8000-00000000000a';
update app.sessions set status = 'completed', ended_at = now()
  where agent_id in (select id from app.agents where name = 'agent 4');
select test_helpers.assert_usage_counted('after sessions ended');
do $$
begin
  assert (select used from app.quotas where tenant_id = 'a2000000-0000-4000-8000-00000000000a' and quota = 'monthly_tokens')
         = 100 * (select count(*) from app.sessions where tenant_id = 'a2000000-0000-4000-8000-00000000000a'),
    'monthly tokens are not the growth of tokens_used';
  assert (select used from app.quotas where tenant_id = 'b2000000-0000-4000-8000-00000000000b' and quota = 'monthly_tokens') = 0,
    'B was charged for A''s tokens';
end
$$;
delete from app.sessions where status = 'active' and agent_id in (select id from app.agents where name = 'agent 5');
select test_helpers.assert_usage_counted('after sessions were deleted');

-- A request's own writes count the same way (the counters are SECURITY DEFINER).
select test_helpers.become('sql-usage-a', 'a2000000-0000-4000-8000-0000000000a1');
insert into app.agents (tenant_id, name, kind, created_by)
  values (app.current_tenant_id(), 'by request', 'assistant', app.current_user_id());
reset role;
select test_helpers.assert_usage_counted('after a request created an agent');

rollback;
