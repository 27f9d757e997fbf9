-- Contexts and fine-tuning jobs in plain SQL, as the request role: tenant
-- isolation (search included), composite keys, LEAD-only jobs.
-- Run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/knowledge.sql (rolled back).

begin;

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

do $$
begin
  assert (select count(*) from app.contexts) = 0, 'no tenant: contexts visible';
  assert (select count(*) from app.fine_tuning_jobs) = 0, 'no tenant: jobs visible';
  assert (select count(*) from app.fine_tuning_job_contexts) = 0, 'no tenant: datasets visible';
end
$$;

select tenant_slug from app_private.begin_request(null, 'sql-know-b', 'e0000000-0000-4000-8000-0000000000b1');
do $$
declare
  changed int;
  own_job uuid;
begin
  assert (select count(*) from app.contexts where search @@ websearch_to_tsquery('english', 'Nightingale')) = 0, 'B finds A by search';
  assert (select count(*) from app.contexts) = 0, 'B sees A contexts';
  assert (select count(*) from app.fine_tuning_jobs) = 0, 'B sees A jobs';
  assert (select count(*) from app.fine_tuning_job_contexts) = 0, 'B sees A datasets';

  begin
    insert into app.contexts (tenant_id, kind, title, agent_id, created_by)
      values (app.current_tenant_id(), 'note', 'linked to A', 'e0000000-0000-4000-8000-00000000a9e1', app.current_user_id());
    raise exception 'B linked a context to A''s agent';
  exception when foreign_key_violation then null;
  end;
  begin
    insert into app.contexts (tenant_id, kind, title, created_by)
      values ('e0000000-0000-4000-8000-00000000000a', 'note', 'planted', app.current_user_id());
    raise exception 'B inserted a context into A';
  exception when insufficient_privilege then null;
  end;

  insert into app.fine_tuning_jobs (tenant_id, base_model, created_by)
    values (app.current_tenant_id(), 'base', app.current_user_id()) returning id into own_job;
  begin
    insert into app.fine_tuning_job_contexts (tenant_id, job_id, context_id)
      values (app.current_tenant_id(), own_job, 'e0000000-0000-4000-8000-0000000ac001');
    raise exception 'B trained on A''s context';
  exception when foreign_key_violation then null;
  end;
  begin
    insert into app.fine_tuning_job_contexts (tenant_id, job_id, context_id)
      values ('e0000000-0000-4000-8000-00000000000a', 'e0000000-0000-4000-8000-0000000af701', 'e0000000-0000-4000-8000-0000000ac001');
    raise exception 'B wrote into A''s dataset';
  exception when insufficient_privilege then null;
  end;

  update app.fine_tuning_jobs set status = 'cancelled' where id = 'e0000000-0000-4000-8000-0000000af701';
  get diagnostics changed = row_count;
  assert changed = 0, 'B cancelled A''s job';
  delete from app.contexts where id = 'e0000000-0000-4000-8000-0000000ac001';
  get diagnostics changed = row_count;
  assert changed = 0, 'B deleted A''s context';
end
$$;

-- A MEMBER creates no fine-tuning job.
select role from app_private.begin_request(null, 'sql-know-b', 'e0000000-0000-4000-8000-0000000000b2');
do $$
begin
  begin
    insert into app.fine_tuning_jobs (tenant_id, base_model, created_by)
      values (app.current_tenant_id(), 'base', app.current_user_id());
    raise exception 'a member created a fine-tuning job';
  exception when insufficient_privilege then null;
  end;
end
$$;

-- A's LEAD: the context a job uses cannot be deleted; a finished job does not move again.
select role from app_private.begin_request(null, 'sql-know-a', 'e0000000-0000-4000-8000-0000000000a1');
do $$
begin
  begin
    delete from app.contexts where id = 'e0000000-0000-4000-8000-0000000ac001';
    raise exception 'a context in a dataset was deleted';
  exception when restrict_violation then null;
  end;
  update app.fine_tuning_jobs set status = 'cancelled' where id = 'e0000000-0000-4000-8000-0000000af701';
  assert (select finished_at is not null from app.fine_tuning_jobs where id = 'e0000000-0000-4000-8000-0000000af701'), 'finished_at not set';
  begin
    update app.fine_tuning_jobs set status = 'running' where id = 'e0000000-0000-4000-8000-0000000af701';
    raise exception 'a cancelled job ran';
  exception when check_violation then null;
  end;
end
$$;

rollback;
