--! Previous: sha1:24d4af7f50be0e957d53cf68c8e1bc1cbbe1c3cb
--! Hash: sha1:06043b88d3e83b01157314c9a9958f760d4a1338
--! Message: contexts with full-text search, fine-tuning jobs

-- The knowledge store (contexts, with full-text search) and fine-tuning jobs
-- whose datasets are contexts of the same tenant.

drop table if exists app.fine_tuning_job_contexts cascade;
drop table if exists app.fine_tuning_jobs cascade;
drop table if exists app.contexts cascade;
drop function if exists app_private.check_fine_tuning_job_write() cascade;

-- GIN indexes that lead with tenant_id (a btree column) need btree_gin.
create extension if not exists btree_gin;

--------------------------------------------------------------------------------
-- Contexts: documents, memories and notes, optionally tied to an agent or session.

create table app.contexts (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  kind text not null constraint contexts_kind check (kind in ('document', 'memory', 'note')),
  title text not null constraint contexts_title_length check (char_length(title) between 1 and 300),
  content text not null default '' constraint contexts_content_size check (octet_length(content) <= 1048576),
  tags text[] not null default '{}'
    constraint contexts_tags check (cardinality(tags) <= 32 and array_position(tags, null) is null),
  agent_id uuid,
  session_id uuid,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  content_bytes int generated always as (octet_length(content)) stored,
  search tsvector generated always as (
    setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', content), 'B')
  ) stored,
  primary key (tenant_id, id),
  constraint contexts_agent_fkey foreign key (tenant_id, agent_id)
    references app.agents (tenant_id, id) on delete set null (agent_id),
  constraint contexts_session_fkey foreign key (tenant_id, session_id)
    references app.sessions (tenant_id, id) on delete set null (session_id),
  constraint contexts_created_by_fkey foreign key (tenant_id, created_by)
    references app.memberships (tenant_id, user_id) on delete set null (created_by)
);
create index contexts_tenant_created_idx on app.contexts (tenant_id, created_at, id);
create index contexts_tenant_search_idx on app.contexts using gin (tenant_id, search);
create index contexts_tenant_tags_idx on app.contexts using gin (tenant_id, tags);
create index contexts_tenant_agent_idx on app.contexts (tenant_id, agent_id) where agent_id is not null;
create index contexts_tenant_session_idx on app.contexts (tenant_id, session_id) where session_id is not null;
create trigger contexts_updated_at before update on app.contexts
  for each row execute function app_private.touch_updated_at();

alter table app.contexts enable row level security;
alter table app.contexts force row level security;
create policy contexts_owner on app.contexts to :DATABASE_OWNER using (true) with check (true);
create policy contexts_select on app.contexts for select
  using (tenant_id = (select app.current_tenant_id()));
create policy contexts_insert on app.contexts for insert
  with check (tenant_id = (select app.current_tenant_id())
              and (select app.has_role('MEMBER'))
              and created_by = (select app.current_user_id()));
create policy contexts_update on app.contexts for update
  using (tenant_id = (select app.current_tenant_id())
         and ((select app.has_role('LEAD'))
              or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))))
  with check (tenant_id = (select app.current_tenant_id())
              and ((select app.has_role('LEAD'))
                   or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))));
create policy contexts_delete on app.contexts for delete
  using (tenant_id = (select app.current_tenant_id())
         and ((select app.has_role('LEAD'))
              or ((select app.has_role('MEMBER')) and created_by = (select app.current_user_id()))));

grant select, delete on app.contexts to :DATABASE_APP;
grant insert (tenant_id, kind, title, content, tags, agent_id, session_id, created_by) on app.contexts to :DATABASE_APP;
grant update (title, content, tags, agent_id, session_id) on app.contexts to :DATABASE_APP;

--------------------------------------------------------------------------------
-- Fine-tuning jobs: queued -> running | cancelled; running -> succeeded | failed | cancelled.
-- Created and cancelled by LEAD and ADMIN; the training worker (operator side) runs them.

create table app.fine_tuning_jobs (
  tenant_id uuid not null references app.tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  base_model text not null constraint fine_tuning_jobs_base_model_length check (char_length(base_model) between 1 and 200),
  hyperparameters jsonb not null default '{}'
    constraint fine_tuning_jobs_hyperparameters_object
      check (jsonb_typeof(hyperparameters) = 'object' and pg_column_size(hyperparameters) <= 16384),
  status text not null default 'queued'
    constraint fine_tuning_jobs_status check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  result_model text constraint fine_tuning_jobs_result_model_length check (char_length(result_model) <= 200),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz,
  primary key (tenant_id, id),
  constraint fine_tuning_jobs_created_by_fkey foreign key (tenant_id, created_by)
    references app.memberships (tenant_id, user_id) on delete set null (created_by)
);
create index fine_tuning_jobs_tenant_created_idx on app.fine_tuning_jobs (tenant_id, created_at, id);
create index fine_tuning_jobs_tenant_status_idx on app.fine_tuning_jobs (tenant_id, status, created_at, id);
create trigger fine_tuning_jobs_updated_at before update on app.fine_tuning_jobs
  for each row execute function app_private.touch_updated_at();

create function app_private.check_fine_tuning_job_write() returns trigger
  language plpgsql
  as $$
begin
  if tg_op = 'INSERT' then
    if new.status <> 'queued' or new.result_model is not null or new.finished_at is not null then
      raise exception 'a job starts queued' using errcode = 'check_violation', constraint = 'fine_tuning_jobs_start_state';
    end if;
  elsif new.status is distinct from old.status then
    if not (old.status = 'queued' and new.status in ('running', 'cancelled'))
       and not (old.status = 'running' and new.status in ('succeeded', 'failed', 'cancelled')) then
      raise exception 'a job cannot go from % to %', old.status, new.status
        using errcode = 'check_violation', constraint = 'fine_tuning_jobs_status_transition';
    end if;
    if new.status in ('succeeded', 'failed', 'cancelled') then
      new.finished_at := now();
    end if;
  end if;
  return new;
end
$$;
create trigger fine_tuning_jobs_check_write before insert or update on app.fine_tuning_jobs
  for each row execute function app_private.check_fine_tuning_job_write();

-- The dataset: contexts of the same tenant (composite keys), kept while a job uses them.
create table app.fine_tuning_job_contexts (
  tenant_id uuid not null,
  job_id uuid not null,
  context_id uuid not null,
  primary key (tenant_id, job_id, context_id),
  constraint fine_tuning_job_contexts_job_fkey foreign key (tenant_id, job_id)
    references app.fine_tuning_jobs (tenant_id, id) on delete cascade,
  constraint fine_tuning_job_contexts_context_fkey foreign key (tenant_id, context_id)
    references app.contexts (tenant_id, id) on delete restrict
);
create index fine_tuning_job_contexts_context_idx on app.fine_tuning_job_contexts (tenant_id, context_id);

alter table app.fine_tuning_jobs enable row level security;
alter table app.fine_tuning_jobs force row level security;
create policy fine_tuning_jobs_owner on app.fine_tuning_jobs to :DATABASE_OWNER using (true) with check (true);
create policy fine_tuning_jobs_select on app.fine_tuning_jobs for select
  using (tenant_id = (select app.current_tenant_id()));
create policy fine_tuning_jobs_insert on app.fine_tuning_jobs for insert
  with check (tenant_id = (select app.current_tenant_id())
              and (select app.has_role('LEAD'))
              and created_by = (select app.current_user_id()));
create policy fine_tuning_jobs_update on app.fine_tuning_jobs for update
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('LEAD')))
  with check (tenant_id = (select app.current_tenant_id()) and (select app.has_role('LEAD')));
create policy fine_tuning_jobs_delete on app.fine_tuning_jobs for delete
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('LEAD')));

alter table app.fine_tuning_job_contexts enable row level security;
alter table app.fine_tuning_job_contexts force row level security;
create policy fine_tuning_job_contexts_owner on app.fine_tuning_job_contexts to :DATABASE_OWNER using (true) with check (true);
create policy fine_tuning_job_contexts_select on app.fine_tuning_job_contexts for select
  using (tenant_id = (select app.current_tenant_id()));
create policy fine_tuning_job_contexts_insert on app.fine_tuning_job_contexts for insert
  with check (tenant_id = (select app.current_tenant_id()) and (select app.has_role('LEAD')));
create policy fine_tuning_job_contexts_update on app.fine_tuning_job_contexts for update
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('LEAD')))
  with check (tenant_id = (select app.current_tenant_id()) and (select app.has_role('LEAD')));
create policy fine_tuning_job_contexts_delete on app.fine_tuning_job_contexts for delete
  using (tenant_id = (select app.current_tenant_id()) and (select app.has_role('LEAD')));

grant select on app.fine_tuning_jobs, app.fine_tuning_job_contexts to :DATABASE_APP;
grant insert (tenant_id, base_model, hyperparameters, created_by) on app.fine_tuning_jobs to :DATABASE_APP;
grant update (status) on app.fine_tuning_jobs to :DATABASE_APP;
grant insert (tenant_id, job_id, context_id) on app.fine_tuning_job_contexts to :DATABASE_APP;

revoke execute on all functions in schema app, app_private from public;
