-- Contexts and fine-tuning jobs in plain SQL, as the request role: tenant
-- isolation (search included), composite keys, LEAD-only jobs.
-- Run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/knowledge.sql (rolled back).

begin;
\ir include/helpers.sql

insert into app.tenants (id, slug, name) values
  ('e0000000-0000-4000-8000-00000000000a', 'sql-know-a', 'SQL knowledge A'),
  ('e0000000-0000-4000-8000-00000000000b', 'sql-know-b', 'SQL knowledge B');
insert into app.users (id, email) values
  ('e0000000-0000-4000-8000-0000000000a1', 'lead@sql-know-a.test'),
  ('e0000000-0000-4000-8000-0000000000b1', 'lead@sql-know-b.test'),
  ('e0000000-0000-4000-8000-0000000000b2', 'member@sql-know-b.test');
insert into app.memberships (tenant_id, user_id, role) values
  ('e0000000-0000-4000-8000-00000000000a', 'e0000000-0000-4000-8000-0000000000a1', 'LEAD'),
  ('e0000000-0000-4000-8000-00000000000b', 'e0000000-0000-4000-8000-0000000000b1', 'LEAD'),
  ('e0000000-0000-4000-8000-00000000000b', 'e0000000-0000-4000-8000-0000000000b2', 'MEMBER');
insert into app.agents (tenant_id, id, name, kind, created_by) values
  ('e0000000-0000-4000-8000-00000000000a', 'e0000000-0000-4000-8000-00000000a9e1', 'agent A', 'assistant', 'e0000000-0000-4000-8000-0000000000a1');
insert into app.contexts (tenant_id, id, kind, title, content, created_by) values
  ('e0000000-0000-4000-8000-00000000000a', 'e0000000-0000-4000-8000-0000000ac001', 'document', 'Secret roadmap', 'Project Nightingale launches in May', 'e0000000-0000-4000-8000-0000000000a1');
insert into app.fine_tuning_jobs (tenant_id, id, base_model, created_by) values
  ('e0000000-0000-4000-8000-00000000000a', 'e0000000-0000-4000-8000-0000000af701', 'base', 'e0000000-0000-4000-8000-0000000000a1');
insert into app.fine_tuning_job_contexts (tenant_id, job_id, context_id) values
  ('e0000000-0000-4000-8000-00000000000a', 'e0000000-0000-4000-8000-0000000af701', 'e0000000-0000-4000-8000-0000000ac001');

set local role tenancy_app;
select test_helpers.assert_nothing_visible('no tenant');

select test_helpers.become('sql-know-b', 'e0000000-0000-4000-8000-0000000000b1');
do $$
declare
  own_job uuid;
begin
  assert (select count(*) from app.contexts where search @@ websearch_to_tsquery('english', 'Nightingale')) = 0, 'B finds A by search';
  perform test_helpers.assert_only_own_tenant('B');

  perform test_helpers.assert_refused($q$insert into app.contexts (tenant_id, kind, title, agent_id, created_by)
    values (app.current_tenant_id(), 'note', 'linked to A', 'e0000000-0000-4000-8000-00000000a9e1', app.current_user_id())$q$,
    'B linked a context to A''s agent', 'foreign_key_violation');
  perform test_helpers.assert_refused($q$insert into app.contexts (tenant_id, kind, title, created_by)
    values ('e0000000-0000-4000-8000-00000000000a', 'note', 'planted', app.current_user_id())$q$,
    'B inserted a context into A');

  insert into app.fine_tuning_jobs (tenant_id, base_model, created_by)
    values (app.current_tenant_id(), 'base', app.current_user_id()) returning id into own_job;
  perform test_helpers.assert_refused(format($q$insert into app.fine_tuning_job_contexts (tenant_id, job_id, context_id)
    values (app.current_tenant_id(), %L, 'e0000000-0000-4000-8000-0000000ac001')$q$, own_job),
    'B trained on A''s context', 'foreign_key_violation');
  perform test_helpers.assert_refused($q$insert into app.fine_tuning_job_contexts (tenant_id, job_id, context_id)
    values ('e0000000-0000-4000-8000-00000000000a', 'e0000000-0000-4000-8000-0000000af701', 'e0000000-0000-4000-8000-0000000ac001')$q$,
    'B wrote into A''s dataset');

  assert test_helpers.row_count($q$update app.fine_tuning_jobs set status = 'cancelled' where id = 'e0000000-0000-4000-8000-0000000af701'$q$) = 0,
    'B cancelled A''s job';
  assert test_helpers.row_count($q$delete from app.contexts where id = 'e0000000-0000-4000-8000-0000000ac001'$q$) = 0,
    'B deleted A''s context';
end
$$;

-- A MEMBER creates no fine-tuning job.
select test_helpers.become('sql-know-b', 'e0000000-0000-4000-8000-0000000000b2');
do $$
begin
  perform test_helpers.assert_refused($q$insert into app.fine_tuning_jobs (tenant_id, base_model, created_by)
    values (app.current_tenant_id(), 'base', app.current_user_id())$q$,
    'a member created a fine-tuning job');
end
$$;

-- A's LEAD: the context a job uses cannot be deleted; a finished job does not move again.
select test_helpers.become('sql-know-a', 'e0000000-0000-4000-8000-0000000000a1');
do $$
begin
  perform test_helpers.assert_refused($q$delete from app.contexts where id = 'e0000000-0000-4000-8000-0000000ac001'$q$,
    'a context in a dataset was deleted', 'restrict_violation');
  update app.fine_tuning_jobs set status = 'cancelled' where id = 'e0000000-0000-4000-8000-0000000af701';
  assert (select finished_at is not null from app.fine_tuning_jobs where id = 'e0000000-0000-4000-8000-0000000af701'), 'finished_at not set';
  perform test_helpers.assert_refused($q$update app.fine_tuning_jobs set status = 'running' where id = 'e0000000-0000-4000-8000-0000000af701'$q$,
    'a cancelled job ran', 'check_violation');
end
$$;

rollback;
