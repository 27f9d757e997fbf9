--! Previous: sha1:cf879be15b47ed6f59fa23dfc17ff0af3e942236
--! Hash: sha1:29ff28d1c2b1f787528efd21d7defa627f965cbb
--! Message: one definition of the write policy shared by agents, sessions, tasks and contexts

-- One definition of "LEAD and ADMIN change any row, MEMBER only the rows they
-- created", which agents, sessions, tasks and contexts each spelled out in
-- their insert, update and delete policies (000001-000003). The policies now
-- call two small functions. Both are plain SQL functions with a single
-- SELECT, so the planner inlines them into the policy, and the role and user
-- checks inside stay uncorrelated sub-selects: InitPlans run once per
-- statement, as before (test/explain.test.ts).

drop policy if exists agents_insert on app.agents;
drop policy if exists agents_update on app.agents;
drop policy if exists agents_delete on app.agents;
drop policy if exists sessions_insert on app.sessions;
drop policy if exists sessions_update on app.sessions;
drop policy if exists sessions_delete on app.sessions;
drop policy if exists tasks_insert on app.tasks;
drop policy if exists tasks_update on app.tasks;
drop policy if exists tasks_delete on app.tasks;
drop policy if exists contexts_insert on app.contexts;
drop policy if exists contexts_update on app.contexts;
drop policy if exists contexts_delete on app.contexts;
drop function if exists app.lead_or_creator(uuid);
drop function if exists app.member_and_creator(uuid);

-- The request's user is at least MEMBER and is `creator`: a member's own row.
create function app.member_and_creator(creator uuid) returns boolean
  language sql stable parallel safe
  as $$ select app.has_role('MEMBER') and creator = app.current_user_id() $$;

-- LEAD and ADMIN may change any row; MEMBER only their own.
create function app.lead_or_creator(creator uuid) returns boolean
  language sql stable parallel safe
  as $$ select app.has_role('LEAD') or app.member_and_creator(creator) $$;

comment on function app.member_and_creator(uuid) is
  'True when the request''s role is at least MEMBER and its user is creator: what a member may do with their own rows (insert policies of agents, sessions, tasks, contexts).';
comment on function app.lead_or_creator(uuid) is
  'True when the request''s role is at least LEAD, or app.member_and_creator(creator): who may change or delete a row of agents, sessions, tasks, contexts.';

revoke execute on function app.member_and_creator(uuid), app.lead_or_creator(uuid) from public;
grant execute on function app.member_and_creator(uuid), app.lead_or_creator(uuid) to :DATABASE_APP;

-- A member creates rows as themself; LEAD and ADMIN change any, MEMBER their own.
create policy agents_insert on app.agents for insert
  with check (tenant_id = (select app.current_tenant_id()) and app.member_and_creator(created_by));
create policy agents_update on app.agents for update
  using (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(created_by))
  with check (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(created_by));
create policy agents_delete on app.agents for delete
  using (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(created_by));

create policy sessions_insert on app.sessions for insert
  with check (tenant_id = (select app.current_tenant_id()) and app.member_and_creator(started_by));
create policy sessions_update on app.sessions for update
  using (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(started_by))
  with check (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(started_by));
create policy sessions_delete on app.sessions for delete
  using (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(started_by));

create policy tasks_insert on app.tasks for insert
  with check (tenant_id = (select app.current_tenant_id()) and app.member_and_creator(created_by));
create policy tasks_update on app.tasks for update
  using (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(created_by))
  with check (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(created_by));
create policy tasks_delete on app.tasks for delete
  using (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(created_by));

create policy contexts_insert on app.contexts for insert
  with check (tenant_id = (select app.current_tenant_id()) and app.member_and_creator(created_by));
create policy contexts_update on app.contexts for update
  using (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(created_by))
  with check (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(created_by));
create policy contexts_delete on app.contexts for delete
  using (tenant_id = (select app.current_tenant_id()) and app.lead_or_creator(created_by));
