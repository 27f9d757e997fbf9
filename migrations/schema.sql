-- The database schema as the committed migrations leave it (schemas app, app_private).
-- For reading and reviewing, not for running: the migrations build databases.
-- Written by `npm run db:dump`; test/schema-dump.test.ts fails when it is stale.
-- :DATABASE_OWNER is the role that runs the migrations, :DATABASE_APP the request role.

--------------------------------------------------------------------------------
-- Schemas and extensions

CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO :DATABASE_APP;
CREATE SCHEMA app_private;
GRANT USAGE ON SCHEMA app_private TO :DATABASE_APP;
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public;

--------------------------------------------------------------------------------
-- Types

CREATE TYPE app_private.tenant_summary_row AS (
  id uuid,
  slug text,
  name text,
  status text,
  plan text,
  created_at timestamp with time zone,
  suspended_at timestamp with time zone,
  suspended_reason text,
  cursor_at text,
  usage jsonb
);

--------------------------------------------------------------------------------
-- Table app.agents

CREATE TABLE app.agents (
  tenant_id uuid NOT NULL,
  id uuid DEFAULT gen_random_uuid() NOT NULL,
  name text NOT NULL,
  kind text NOT NULL,
  description text DEFAULT ''::text NOT NULL,
  created_by uuid,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  model text DEFAULT 'default'::text NOT NULL,
  config jsonb DEFAULT '{}'::jsonb NOT NULL,
  status text DEFAULT 'active'::text NOT NULL,
  CONSTRAINT agents_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT agents_name_key UNIQUE (tenant_id, name),
  CONSTRAINT agents_created_by_fkey FOREIGN KEY (tenant_id, created_by) REFERENCES app.memberships(tenant_id, user_id) ON DELETE SET NULL (created_by),
  CONSTRAINT agents_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT agents_config_object CHECK (jsonb_typeof(config) = 'object'::text AND pg_column_size(config) <= 16384),
  CONSTRAINT agents_description_length CHECK (char_length(description) <= 2000),
  CONSTRAINT agents_kind_format CHECK (kind ~ '^[a-z][a-z0-9_-]{0,39}$'::text),
  CONSTRAINT agents_model_length CHECK (char_length(model) >= 1 AND char_length(model) <= 200),
  CONSTRAINT agents_name_length CHECK (char_length(name) >= 1 AND char_length(name) <= 100),
  CONSTRAINT agents_status CHECK (status = ANY (ARRAY['active'::text, 'archived'::text]))
);
COMMENT ON TABLE app.agents IS 'An AI agent of a tenant: name unique per tenant, model, config, status active|archived (archiving is LEAD''s and ADMIN''s). Members create agents; LEAD and ADMIN change any, MEMBER their own (app.lead_or_creator). Counts against the agents quota.';

CREATE INDEX agents_tenant_created_idx ON app.agents USING btree (tenant_id, created_at, id);
CREATE INDEX agents_tenant_status_created_idx ON app.agents USING btree (tenant_id, status, created_at, id);

CREATE TRIGGER agents_check_update BEFORE UPDATE ON app.agents FOR EACH ROW EXECUTE FUNCTION app_private.check_agent_update();
CREATE TRIGGER agents_count_delete AFTER DELETE ON app.agents REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('agents');
CREATE TRIGGER agents_count_insert AFTER INSERT ON app.agents REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('agents');
CREATE TRIGGER agents_notify AFTER INSERT OR DELETE OR UPDATE ON app.agents FOR EACH ROW EXECUTE FUNCTION app_private.notify_row_change('Agent');
CREATE TRIGGER agents_updated_at BEFORE UPDATE ON app.agents FOR EACH ROW EXECUTE FUNCTION app_private.touch_updated_at();
CREATE TRIGGER agents_z_audit BEFORE INSERT OR DELETE OR UPDATE ON app.agents FOR EACH ROW EXECUTE FUNCTION app_private.audit_row('agent', 'name', 'kind', 'status', 'model');

ALTER TABLE app.agents ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.agents FORCE ROW LEVEL SECURITY;
CREATE POLICY agents_delete ON app.agents FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(created_by)));
CREATE POLICY agents_insert ON app.agents FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.member_and_creator(created_by)));
CREATE POLICY agents_owner ON app.agents TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY agents_select ON app.agents FOR SELECT
  USING ((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)));
CREATE POLICY agents_update ON app.agents FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(created_by)))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(created_by)));

GRANT INSERT (tenant_id, name, kind, description, created_by, model, config) ON TABLE app.agents TO :DATABASE_APP;
GRANT SELECT, DELETE ON TABLE app.agents TO :DATABASE_APP;
GRANT UPDATE (name, kind, description, model, config, status) ON TABLE app.agents TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.api_keys

CREATE TABLE app.api_keys (
  tenant_id uuid NOT NULL,
  id uuid DEFAULT gen_random_uuid() NOT NULL,
  name text NOT NULL,
  prefix text NOT NULL,
  secret_hash bytea NOT NULL,
  role text NOT NULL,
  created_by uuid,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  expires_at timestamp with time zone,
  last_used_at timestamp with time zone,
  revoked_at timestamp with time zone,
  CONSTRAINT api_keys_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT api_keys_secret_hash_key UNIQUE (secret_hash),
  CONSTRAINT api_keys_created_by_fkey FOREIGN KEY (tenant_id, created_by) REFERENCES app.memberships(tenant_id, user_id) ON DELETE SET NULL (created_by),
  CONSTRAINT api_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT api_keys_expiry CHECK (expires_at IS NULL OR expires_at > created_at),
  CONSTRAINT api_keys_name_length CHECK (char_length(name) >= 1 AND char_length(name) <= 100),
  CONSTRAINT api_keys_prefix_format CHECK (prefix ~ '^tnk_[A-Za-z0-9_-]{8}$'::text),
  CONSTRAINT api_keys_role CHECK (role = ANY (ARRAY['ADMIN'::text, 'LEAD'::text, 'MEMBER'::text, 'VIEWER'::text])),
  CONSTRAINT api_keys_secret_hash_length CHECK (octet_length(secret_hash) = 32)
);
COMMENT ON TABLE app.api_keys IS 'Machine access to one tenant: the secret is shown once, only its SHA-256 and public prefix are kept. A key acts for its creator with the lower of its role and the creator''s current role, and stops when the creator leaves; revoked, never deleted.';

CREATE INDEX api_keys_tenant_created_idx ON app.api_keys USING btree (tenant_id, created_at, id);

CREATE TRIGGER api_keys_audit AFTER INSERT OR UPDATE OF revoked_at ON app.api_keys FOR EACH ROW EXECUTE FUNCTION app_private.audit_api_key();
CREATE TRIGGER api_keys_notify_revoked AFTER UPDATE OF revoked_at ON app.api_keys FOR EACH ROW WHEN (old.revoked_at IS NULL AND new.revoked_at IS NOT NULL) EXECUTE FUNCTION app_private.notify_api_key_revoked();

ALTER TABLE app.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY api_keys_delete ON app.api_keys FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY api_keys_insert ON app.api_keys FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('MEMBER'::text) AS has_role) AND (( SELECT app.current_api_key_id() AS current_api_key_id) IS NULL) AND (created_by = ( SELECT app.current_user_id() AS current_user_id)) AND (app.role_rank(role) <= app.role_rank(( SELECT app.current_member_role() AS current_member_role)))));
CREATE POLICY api_keys_owner ON app.api_keys TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY api_keys_select ON app.api_keys FOR SELECT
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND (( SELECT app.has_role('ADMIN'::text) AS has_role) OR (created_by = ( SELECT app.current_user_id() AS current_user_id)))));
CREATE POLICY api_keys_update ON app.api_keys FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND (( SELECT app.current_api_key_id() AS current_api_key_id) IS NULL) AND (( SELECT app.has_role('ADMIN'::text) AS has_role) OR (( SELECT app.has_role('MEMBER'::text) AS has_role) AND (created_by = ( SELECT app.current_user_id() AS current_user_id))))))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND (( SELECT app.has_role('ADMIN'::text) AS has_role) OR (( SELECT app.has_role('MEMBER'::text) AS has_role) AND (created_by = ( SELECT app.current_user_id() AS current_user_id))))));

GRANT INSERT (tenant_id, name, prefix, secret_hash, role, created_by, expires_at) ON TABLE app.api_keys TO :DATABASE_APP;
GRANT SELECT (tenant_id, id, name, prefix, role, created_by, created_at, expires_at, last_used_at, revoked_at) ON TABLE app.api_keys TO :DATABASE_APP;
GRANT UPDATE (revoked_at) ON TABLE app.api_keys TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.audit_chain_heads

CREATE TABLE app.audit_chain_heads (
  tenant_id uuid NOT NULL,
  seq bigint DEFAULT 0 NOT NULL,
  hash bytea DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea NOT NULL,
  prev_hash bytea,
  purged_through bigint DEFAULT 0 NOT NULL,
  CONSTRAINT audit_chain_heads_pkey PRIMARY KEY (tenant_id),
  CONSTRAINT audit_chain_heads_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE
);
COMMENT ON TABLE app.audit_chain_heads IS 'The head of each tenant''s audit chain (seq and hash of the newest event, what retention purged); written only by the chain''s own functions, read by ADMINs.';

ALTER TABLE app.audit_chain_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.audit_chain_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_chain_heads_delete ON app.audit_chain_heads FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY audit_chain_heads_insert ON app.audit_chain_heads FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY audit_chain_heads_owner ON app.audit_chain_heads TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY audit_chain_heads_select ON app.audit_chain_heads FOR SELECT
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('ADMIN'::text) AS has_role)));
CREATE POLICY audit_chain_heads_update ON app.audit_chain_heads FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));

GRANT SELECT ON TABLE app.audit_chain_heads TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.audit_checkpoints

CREATE TABLE app.audit_checkpoints (
  tenant_id uuid NOT NULL,
  kind text NOT NULL,
  seq bigint NOT NULL,
  hash bytea NOT NULL,
  signed_at timestamp with time zone NOT NULL,
  key_id text NOT NULL,
  jws text NOT NULL,
  CONSTRAINT audit_checkpoints_pkey PRIMARY KEY (tenant_id, kind, seq),
  CONSTRAINT audit_checkpoints_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT audit_checkpoints_hash_check CHECK (octet_length(hash) = 32),
  CONSTRAINT audit_checkpoints_jws_check CHECK (octet_length(jws) <= 4096),
  CONSTRAINT audit_checkpoints_key_id_check CHECK (char_length(key_id) >= 1 AND char_length(key_id) <= 100),
  CONSTRAINT audit_checkpoints_kind_check CHECK (kind = ANY (ARRAY['checkpoint'::text, 'anchor'::text])),
  CONSTRAINT audit_checkpoints_seq_check CHECK (seq > 0)
);
COMMENT ON TABLE app.audit_checkpoints IS 'Signed statements about a tenant''s audit chain (the JWS is what counts; the columns index it): checkpoints of its head and anchors of retention purges. Written only by app_private.store_audit_checkpoint and app_private.purge_audit_events; read by ADMINs.';

ALTER TABLE app.audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_checkpoints_delete ON app.audit_checkpoints FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY audit_checkpoints_insert ON app.audit_checkpoints FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY audit_checkpoints_owner ON app.audit_checkpoints TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY audit_checkpoints_select ON app.audit_checkpoints FOR SELECT
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('ADMIN'::text) AS has_role)));
CREATE POLICY audit_checkpoints_update ON app.audit_checkpoints FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));

GRANT SELECT ON TABLE app.audit_checkpoints TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.audit_events

CREATE TABLE app.audit_events (
  tenant_id uuid NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
  occurred_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
  actor_kind text NOT NULL,
  actor_user_id uuid,
  actor_api_key_id uuid,
  action text NOT NULL,
  target_type text NOT NULL,
  target_id text NOT NULL,
  reason text,
  details jsonb DEFAULT '{}'::jsonb NOT NULL,
  seq bigint NOT NULL,
  prev_hash bytea NOT NULL,
  hash bytea NOT NULL,
  request_id text,
  event_id uuid DEFAULT gen_random_uuid() NOT NULL,
  CONSTRAINT audit_events_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT audit_events_seq_key UNIQUE (tenant_id, seq),
  CONSTRAINT audit_events_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT audit_events_actor_kind CHECK (actor_kind = ANY (ARRAY['user'::text, 'api_key'::text, 'operator'::text, 'system'::text])),
  CONSTRAINT audit_events_request_id_length CHECK (char_length(request_id) >= 1 AND char_length(request_id) <= 200)
);
COMMENT ON TABLE app.audit_events IS 'The tenant''s own audit record, append-only: written by SECURITY DEFINER triggers and functions (app_private.record_audit) in the transaction of the change; the request role reads it as ADMIN and never writes it.';
COMMENT ON COLUMN app.audit_events.seq IS 'The event''s place in its tenant''s chain: 1, 2, 3 … without gaps (until a signed retention anchor).';
COMMENT ON COLUMN app.audit_events.hash IS 'SHA-256 over the canonical encoding of the event and prev_hash (app_private.audit_event_hash).';
COMMENT ON COLUMN app.audit_events.request_id IS 'The request that wrote it (the transaction setting app.request_id), when one did.';
COMMENT ON COLUMN app.audit_events.event_id IS 'The event''s handle in the API (AuditEvent.id, cursors): random, so it tells nothing of other tenants'' events; not hashed (a handle, not content).';

CREATE UNIQUE INDEX audit_events_tenant_event_idx ON app.audit_events USING btree (tenant_id, event_id);
CREATE INDEX audit_events_tenant_occurred_idx ON app.audit_events USING btree (tenant_id, occurred_at, event_id);

CREATE TRIGGER audit_events_append_only BEFORE DELETE OR UPDATE ON app.audit_events FOR EACH ROW EXECUTE FUNCTION app_private.audit_events_append_only();
CREATE TRIGGER audit_events_chain BEFORE INSERT ON app.audit_events FOR EACH ROW EXECUTE FUNCTION app_private.chain_audit_event();

ALTER TABLE app.audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_events_delete ON app.audit_events FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY audit_events_insert ON app.audit_events FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY audit_events_owner ON app.audit_events TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY audit_events_select ON app.audit_events FOR SELECT
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('ADMIN'::text) AS has_role)));
CREATE POLICY audit_events_update ON app.audit_events FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));

GRANT SELECT ON TABLE app.audit_events TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.contexts

CREATE TABLE app.contexts (
  tenant_id uuid NOT NULL,
  id uuid DEFAULT gen_random_uuid() NOT NULL,
  kind text NOT NULL,
  title text NOT NULL,
  content text DEFAULT ''::text NOT NULL,
  tags text[] DEFAULT '{}'::text[] NOT NULL,
  agent_id uuid,
  session_id uuid,
  created_by uuid,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  content_bytes integer GENERATED ALWAYS AS (octet_length(content)) STORED,
  search tsvector GENERATED ALWAYS AS (app_private.context_search(title, content)) STORED,
  CONSTRAINT contexts_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT contexts_agent_fkey FOREIGN KEY (tenant_id, agent_id) REFERENCES app.agents(tenant_id, id) ON DELETE SET NULL (agent_id),
  CONSTRAINT contexts_created_by_fkey FOREIGN KEY (tenant_id, created_by) REFERENCES app.memberships(tenant_id, user_id) ON DELETE SET NULL (created_by),
  CONSTRAINT contexts_session_fkey FOREIGN KEY (tenant_id, session_id) REFERENCES app.sessions(tenant_id, id) ON DELETE SET NULL (session_id),
  CONSTRAINT contexts_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT contexts_content_size CHECK (octet_length(content) <= 1048576),
  CONSTRAINT contexts_kind CHECK (kind = ANY (ARRAY['document'::text, 'memory'::text, 'note'::text])),
  CONSTRAINT contexts_tags CHECK (cardinality(tags) <= 32 AND array_position(tags, NULL::text) IS NULL),
  CONSTRAINT contexts_title_length CHECK (char_length(title) >= 1 AND char_length(title) <= 300)
);
COMMENT ON TABLE app.contexts IS 'The knowledge store: documents, memories and notes, optionally tied to an agent or a session of the same tenant, with full-text search (search, weighted title A and content B) and tags. content_bytes counts against the context_bytes quota.';

CREATE INDEX contexts_tenant_agent_idx ON app.contexts USING btree (tenant_id, agent_id) WHERE agent_id IS NOT NULL;
CREATE INDEX contexts_tenant_created_idx ON app.contexts USING btree (tenant_id, created_at, id);
CREATE INDEX contexts_tenant_search_idx ON app.contexts USING gin (tenant_id, search);
CREATE INDEX contexts_tenant_session_idx ON app.contexts USING btree (tenant_id, session_id) WHERE session_id IS NOT NULL;
CREATE INDEX contexts_tenant_tags_idx ON app.contexts USING gin (tenant_id, tags);

CREATE TRIGGER contexts_count_delete AFTER DELETE ON app.contexts REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('context_bytes', 'content_bytes');
CREATE TRIGGER contexts_count_insert AFTER INSERT ON app.contexts REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('context_bytes', 'content_bytes');
CREATE TRIGGER contexts_count_update AFTER UPDATE ON app.contexts REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('context_bytes', 'content_bytes');
CREATE TRIGGER contexts_updated_at BEFORE UPDATE ON app.contexts FOR EACH ROW EXECUTE FUNCTION app_private.touch_updated_at();
CREATE TRIGGER contexts_z_audit BEFORE INSERT OR DELETE OR UPDATE ON app.contexts FOR EACH ROW EXECUTE FUNCTION app_private.audit_row('context', 'kind', 'bytes:content', 'agent_id', 'session_id');

ALTER TABLE app.contexts ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.contexts FORCE ROW LEVEL SECURITY;
CREATE POLICY contexts_delete ON app.contexts FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(created_by)));
CREATE POLICY contexts_insert ON app.contexts FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.member_and_creator(created_by)));
CREATE POLICY contexts_owner ON app.contexts TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY contexts_select ON app.contexts FOR SELECT
  USING ((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)));
CREATE POLICY contexts_update ON app.contexts FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(created_by)))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(created_by)));

GRANT INSERT (tenant_id, kind, title, content, tags, agent_id, session_id, created_by) ON TABLE app.contexts TO :DATABASE_APP;
GRANT SELECT, DELETE ON TABLE app.contexts TO :DATABASE_APP;
GRANT UPDATE (title, content, tags, agent_id, session_id) ON TABLE app.contexts TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.fine_tuning_job_contexts

CREATE TABLE app.fine_tuning_job_contexts (
  tenant_id uuid NOT NULL,
  job_id uuid NOT NULL,
  context_id uuid NOT NULL,
  CONSTRAINT fine_tuning_job_contexts_pkey PRIMARY KEY (tenant_id, job_id, context_id),
  CONSTRAINT fine_tuning_job_contexts_context_fkey FOREIGN KEY (tenant_id, context_id) REFERENCES app.contexts(tenant_id, id) ON DELETE RESTRICT,
  CONSTRAINT fine_tuning_job_contexts_job_fkey FOREIGN KEY (tenant_id, job_id) REFERENCES app.fine_tuning_jobs(tenant_id, id) ON DELETE CASCADE
);
COMMENT ON TABLE app.fine_tuning_job_contexts IS 'The dataset of a fine-tuning job: contexts of the same tenant, kept (on delete restrict) while a job uses them.';

CREATE INDEX fine_tuning_job_contexts_context_idx ON app.fine_tuning_job_contexts USING btree (tenant_id, context_id);

ALTER TABLE app.fine_tuning_job_contexts ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.fine_tuning_job_contexts FORCE ROW LEVEL SECURITY;
CREATE POLICY fine_tuning_job_contexts_delete ON app.fine_tuning_job_contexts FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role)));
CREATE POLICY fine_tuning_job_contexts_insert ON app.fine_tuning_job_contexts FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role)));
CREATE POLICY fine_tuning_job_contexts_owner ON app.fine_tuning_job_contexts TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY fine_tuning_job_contexts_select ON app.fine_tuning_job_contexts FOR SELECT
  USING ((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)));
CREATE POLICY fine_tuning_job_contexts_update ON app.fine_tuning_job_contexts FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role)))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role)));

GRANT INSERT (tenant_id, job_id, context_id) ON TABLE app.fine_tuning_job_contexts TO :DATABASE_APP;
GRANT SELECT ON TABLE app.fine_tuning_job_contexts TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.fine_tuning_jobs

CREATE TABLE app.fine_tuning_jobs (
  tenant_id uuid NOT NULL,
  id uuid DEFAULT gen_random_uuid() NOT NULL,
  base_model text NOT NULL,
  hyperparameters jsonb DEFAULT '{}'::jsonb NOT NULL,
  status text DEFAULT 'queued'::text NOT NULL,
  result_model text,
  created_by uuid,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  finished_at timestamp with time zone,
  CONSTRAINT fine_tuning_jobs_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT fine_tuning_jobs_created_by_fkey FOREIGN KEY (tenant_id, created_by) REFERENCES app.memberships(tenant_id, user_id) ON DELETE SET NULL (created_by),
  CONSTRAINT fine_tuning_jobs_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT fine_tuning_jobs_base_model_length CHECK (char_length(base_model) >= 1 AND char_length(base_model) <= 200),
  CONSTRAINT fine_tuning_jobs_hyperparameters_object CHECK (jsonb_typeof(hyperparameters) = 'object'::text AND pg_column_size(hyperparameters) <= 16384),
  CONSTRAINT fine_tuning_jobs_result_model_length CHECK (char_length(result_model) <= 200),
  CONSTRAINT fine_tuning_jobs_status CHECK (status = ANY (ARRAY['queued'::text, 'running'::text, 'succeeded'::text, 'failed'::text, 'cancelled'::text]))
);
COMMENT ON TABLE app.fine_tuning_jobs IS 'A fine-tuning job: queued -> running | cancelled; running -> succeeded | failed | cancelled, finished_at set on the way out. Created and cancelled by LEAD and ADMIN; the training worker (operator side) runs them.';

CREATE INDEX fine_tuning_jobs_tenant_created_idx ON app.fine_tuning_jobs USING btree (tenant_id, created_at, id);
CREATE INDEX fine_tuning_jobs_tenant_status_idx ON app.fine_tuning_jobs USING btree (tenant_id, status, created_at, id);

CREATE TRIGGER fine_tuning_jobs_check_write BEFORE INSERT OR UPDATE ON app.fine_tuning_jobs FOR EACH ROW EXECUTE FUNCTION app_private.check_fine_tuning_job_write();
CREATE TRIGGER fine_tuning_jobs_notify AFTER INSERT OR DELETE OR UPDATE ON app.fine_tuning_jobs FOR EACH ROW EXECUTE FUNCTION app_private.notify_row_change('FineTuningJob');
CREATE TRIGGER fine_tuning_jobs_updated_at BEFORE UPDATE ON app.fine_tuning_jobs FOR EACH ROW EXECUTE FUNCTION app_private.touch_updated_at();
CREATE TRIGGER fine_tuning_jobs_z_audit BEFORE INSERT OR DELETE OR UPDATE ON app.fine_tuning_jobs FOR EACH ROW EXECUTE FUNCTION app_private.audit_row('fine_tuning_job', 'base_model', 'status');

ALTER TABLE app.fine_tuning_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.fine_tuning_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY fine_tuning_jobs_delete ON app.fine_tuning_jobs FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role)));
CREATE POLICY fine_tuning_jobs_insert ON app.fine_tuning_jobs FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role) AND (created_by = ( SELECT app.current_user_id() AS current_user_id))));
CREATE POLICY fine_tuning_jobs_owner ON app.fine_tuning_jobs TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY fine_tuning_jobs_select ON app.fine_tuning_jobs FOR SELECT
  USING ((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)));
CREATE POLICY fine_tuning_jobs_update ON app.fine_tuning_jobs FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role)))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role)));

GRANT INSERT (tenant_id, base_model, hyperparameters, created_by) ON TABLE app.fine_tuning_jobs TO :DATABASE_APP;
GRANT SELECT ON TABLE app.fine_tuning_jobs TO :DATABASE_APP;
GRANT UPDATE (status) ON TABLE app.fine_tuning_jobs TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.invitations

CREATE TABLE app.invitations (
  tenant_id uuid NOT NULL,
  id uuid DEFAULT gen_random_uuid() NOT NULL,
  email text NOT NULL,
  role text NOT NULL,
  token_hash bytea NOT NULL,
  invited_by uuid,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  expires_at timestamp with time zone NOT NULL,
  accepted_at timestamp with time zone,
  accepted_by uuid,
  revoked_at timestamp with time zone,
  CONSTRAINT invitations_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT invitations_token_hash_key UNIQUE (token_hash),
  CONSTRAINT invitations_invited_by_fkey FOREIGN KEY (tenant_id, invited_by) REFERENCES app.memberships(tenant_id, user_id) ON DELETE SET NULL (invited_by),
  CONSTRAINT invitations_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT invitations_email_format CHECK (char_length(email) <= 320 AND email ~ '^[^@\s]+@[^@\s]+$'::text),
  CONSTRAINT invitations_expiry CHECK (expires_at > created_at),
  CONSTRAINT invitations_one_outcome CHECK (accepted_at IS NULL OR revoked_at IS NULL),
  CONSTRAINT invitations_role CHECK (role = ANY (ARRAY['ADMIN'::text, 'LEAD'::text, 'MEMBER'::text, 'VIEWER'::text])),
  CONSTRAINT invitations_token_hash_length CHECK (octet_length(token_hash) = 32)
);
COMMENT ON TABLE app.invitations IS 'A one-time invitation to a tenant, stored as the SHA-256 of its token, that expires. LEAD invites MEMBER and VIEWER, ADMIN any role; revoked, never deleted; accepted through app_private.accept_invitation.';

CREATE INDEX invitations_tenant_created_idx ON app.invitations USING btree (tenant_id, created_at, id);

CREATE TRIGGER invitations_audit AFTER INSERT OR UPDATE ON app.invitations FOR EACH ROW EXECUTE FUNCTION app_private.audit_invitation();
CREATE TRIGGER invitations_check_update BEFORE UPDATE ON app.invitations FOR EACH ROW EXECUTE FUNCTION app_private.check_invitation_update();

ALTER TABLE app.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY invitations_delete ON app.invitations FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY invitations_insert ON app.invitations FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role) AND (( SELECT app.current_api_key_id() AS current_api_key_id) IS NULL) AND (invited_by = ( SELECT app.current_user_id() AS current_user_id)) AND (( SELECT app.has_role('ADMIN'::text) AS has_role) OR (app.role_rank(role) <= app.role_rank('MEMBER'::text)))));
CREATE POLICY invitations_owner ON app.invitations TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY invitations_select ON app.invitations FOR SELECT
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('LEAD'::text) AS has_role)));
CREATE POLICY invitations_update ON app.invitations FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND (( SELECT app.current_api_key_id() AS current_api_key_id) IS NULL) AND (( SELECT app.has_role('ADMIN'::text) AS has_role) OR (( SELECT app.has_role('LEAD'::text) AS has_role) AND (invited_by = ( SELECT app.current_user_id() AS current_user_id))))))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND (( SELECT app.has_role('ADMIN'::text) AS has_role) OR (( SELECT app.has_role('LEAD'::text) AS has_role) AND (invited_by = ( SELECT app.current_user_id() AS current_user_id))))));

GRANT INSERT (tenant_id, email, role, token_hash, invited_by, expires_at) ON TABLE app.invitations TO :DATABASE_APP;
GRANT SELECT ON TABLE app.invitations TO :DATABASE_APP;
GRANT UPDATE (revoked_at) ON TABLE app.invitations TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.memberships

CREATE TABLE app.memberships (
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  role text NOT NULL,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT memberships_pkey PRIMARY KEY (tenant_id, user_id),
  CONSTRAINT memberships_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT memberships_user_id_fkey FOREIGN KEY (user_id) REFERENCES app.users(id) ON DELETE CASCADE,
  CONSTRAINT memberships_role CHECK (role = ANY (ARRAY['ADMIN'::text, 'LEAD'::text, 'MEMBER'::text, 'VIEWER'::text]))
);
COMMENT ON TABLE app.memberships IS 'A user''s role (ADMIN > LEAD > MEMBER > VIEWER) in a tenant: the source of app.role, read by app_private.begin_request on every request. Only ADMIN changes members; a tenant always keeps an ADMIN (app_private.keep_an_admin). Counts against the members quota.';

CREATE INDEX memberships_user_idx ON app.memberships USING btree (user_id);

CREATE TRIGGER memberships_audit AFTER INSERT OR DELETE OR UPDATE OF role ON app.memberships FOR EACH ROW EXECUTE FUNCTION app_private.audit_membership();
CREATE TRIGGER memberships_count_delete AFTER DELETE ON app.memberships REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('members');
CREATE TRIGGER memberships_count_insert AFTER INSERT ON app.memberships REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('members');
CREATE TRIGGER memberships_keep_an_admin BEFORE DELETE OR UPDATE OF role ON app.memberships FOR EACH ROW EXECUTE FUNCTION app_private.keep_an_admin();
CREATE TRIGGER memberships_notify AFTER INSERT OR DELETE OR UPDATE ON app.memberships FOR EACH ROW EXECUTE FUNCTION app_private.notify_member_change();
CREATE TRIGGER memberships_updated_at BEFORE UPDATE ON app.memberships FOR EACH ROW EXECUTE FUNCTION app_private.touch_updated_at();

ALTER TABLE app.memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY memberships_delete ON app.memberships FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('ADMIN'::text) AS has_role)));
CREATE POLICY memberships_insert ON app.memberships FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('ADMIN'::text) AS has_role)));
CREATE POLICY memberships_owner ON app.memberships TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY memberships_select ON app.memberships FOR SELECT
  USING ((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)));
CREATE POLICY memberships_update ON app.memberships FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('ADMIN'::text) AS has_role)))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND ( SELECT app.has_role('ADMIN'::text) AS has_role)));

GRANT SELECT, INSERT, DELETE ON TABLE app.memberships TO :DATABASE_APP;
GRANT UPDATE (role) ON TABLE app.memberships TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.plan_limits

CREATE TABLE app.plan_limits (
  plan text NOT NULL,
  quota text NOT NULL,
  max_value bigint,
  CONSTRAINT plan_limits_pkey PRIMARY KEY (plan, quota),
  CONSTRAINT plan_limits_max_value CHECK (max_value >= 0),
  CONSTRAINT plan_limits_plan CHECK (plan = ANY (ARRAY['free'::text, 'team'::text, 'enterprise'::text]))
);
COMMENT ON TABLE app.plan_limits IS 'Each plan''s limit per quota (null: unlimited). Readable by every request; changed only by migrations.';

ALTER TABLE app.plan_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.plan_limits FORCE ROW LEVEL SECURITY;
CREATE POLICY plan_limits_owner ON app.plan_limits TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY plan_limits_select ON app.plan_limits FOR SELECT
  USING (true);

GRANT SELECT ON TABLE app.plan_limits TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.quotas

CREATE TABLE app.quotas (
  tenant_id uuid NOT NULL,
  quota text NOT NULL,
  used bigint DEFAULT 0 NOT NULL,
  period date,
  limit_override bigint,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT quotas_pkey PRIMARY KEY (tenant_id, quota),
  CONSTRAINT quotas_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT quotas_limit_override CHECK (limit_override >= 0),
  CONSTRAINT quotas_quota CHECK (quota = ANY (ARRAY['active_sessions'::text, 'monthly_tokens'::text, 'agents'::text, 'members'::text, 'context_bytes'::text, 'requests_per_minute'::text, 'api_key_requests_per_minute'::text])),
  CONSTRAINT quotas_used CHECK (used >= 0)
);
COMMENT ON TABLE app.quotas IS 'A tenant''s usage counter per quota and an optional limit override. Moved only by app_private.consume_quota (one conditional UPDATE: concurrent requests serialize on the row); monthly_tokens counts in the UTC month named by period.';

CREATE TRIGGER quotas_updated_at BEFORE UPDATE ON app.quotas FOR EACH ROW EXECUTE FUNCTION app_private.touch_updated_at();

ALTER TABLE app.quotas ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.quotas FORCE ROW LEVEL SECURITY;
CREATE POLICY quotas_delete ON app.quotas FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY quotas_insert ON app.quotas FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY quotas_owner ON app.quotas TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY quotas_select ON app.quotas FOR SELECT
  USING ((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)));
CREATE POLICY quotas_update ON app.quotas FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));

GRANT SELECT ON TABLE app.quotas TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.request_buckets

CREATE TABLE app.request_buckets (
  tenant_id uuid NOT NULL,
  api_key_id uuid,
  tokens double precision NOT NULL,
  refilled_at timestamp with time zone NOT NULL,
  CONSTRAINT request_buckets_key UNIQUE NULLS NOT DISTINCT (tenant_id, api_key_id),
  CONSTRAINT request_buckets_api_key_fkey FOREIGN KEY (tenant_id, api_key_id) REFERENCES app.api_keys(tenant_id, id) ON DELETE CASCADE,
  CONSTRAINT request_buckets_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE
);
COMMENT ON TABLE app.request_buckets IS 'Request rate token buckets: one per tenant (api_key_id null) and one per API key, sized by app.request_burst of the limit; written only by app_private.take_request_tokens';

ALTER TABLE app.request_buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.request_buckets FORCE ROW LEVEL SECURITY;
CREATE POLICY request_buckets_delete ON app.request_buckets FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY request_buckets_insert ON app.request_buckets FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));
CREATE POLICY request_buckets_owner ON app.request_buckets TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY request_buckets_select ON app.request_buckets FOR SELECT
  USING ((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)));
CREATE POLICY request_buckets_update ON app.request_buckets FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND false));

GRANT SELECT ON TABLE app.request_buckets TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.sessions

CREATE TABLE app.sessions (
  tenant_id uuid NOT NULL,
  id uuid DEFAULT gen_random_uuid() NOT NULL,
  agent_id uuid NOT NULL,
  status text DEFAULT 'active'::text NOT NULL,
  started_by uuid,
  started_at timestamp with time zone DEFAULT now() NOT NULL,
  ended_at timestamp with time zone,
  tokens_used bigint DEFAULT 0 NOT NULL,
  metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT sessions_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT sessions_agent_fkey FOREIGN KEY (tenant_id, agent_id) REFERENCES app.agents(tenant_id, id) ON DELETE CASCADE,
  CONSTRAINT sessions_started_by_fkey FOREIGN KEY (tenant_id, started_by) REFERENCES app.memberships(tenant_id, user_id) ON DELETE SET NULL (started_by),
  CONSTRAINT sessions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT sessions_ended_when_not_active CHECK ((status = 'active'::text) = (ended_at IS NULL)),
  CONSTRAINT sessions_metadata_object CHECK (jsonb_typeof(metadata) = 'object'::text AND pg_column_size(metadata) <= 16384),
  CONSTRAINT sessions_status CHECK (status = ANY (ARRAY['active'::text, 'completed'::text, 'failed'::text, 'cancelled'::text])),
  CONSTRAINT sessions_tokens_used CHECK (tokens_used >= 0)
);
COMMENT ON TABLE app.sessions IS 'One run of an agent: active -> completed | failed | cancelled, once (app_private.check_session_write). tokens_used is the sum of its tasks'' tokens plus usage recorded directly; growth counts against monthly_tokens, an active session against active_sessions.';

CREATE INDEX sessions_tenant_agent_started_idx ON app.sessions USING btree (tenant_id, agent_id, started_at, id);
CREATE INDEX sessions_tenant_started_idx ON app.sessions USING btree (tenant_id, started_at, id);
CREATE INDEX sessions_tenant_status_started_idx ON app.sessions USING btree (tenant_id, status, started_at, id);

CREATE TRIGGER sessions_check_tokens BEFORE UPDATE OF tokens_used ON app.sessions FOR EACH ROW EXECUTE FUNCTION app_private.check_session_tokens();
CREATE TRIGGER sessions_check_write BEFORE INSERT OR UPDATE ON app.sessions FOR EACH ROW EXECUTE FUNCTION app_private.check_session_write();
CREATE TRIGGER sessions_count_delete AFTER DELETE ON app.sessions REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('active_sessions', '(status = ''active'')::int');
CREATE TRIGGER sessions_count_insert AFTER INSERT ON app.sessions REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('active_sessions', '(status = ''active'')::int');
CREATE TRIGGER sessions_count_update AFTER UPDATE ON app.sessions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_usage('active_sessions', '(status = ''active'')::int');
CREATE TRIGGER sessions_meter_tokens AFTER UPDATE ON app.sessions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.count_session_tokens();
CREATE TRIGGER sessions_notify AFTER INSERT OR DELETE OR UPDATE ON app.sessions FOR EACH ROW EXECUTE FUNCTION app_private.notify_row_change('Session');
CREATE TRIGGER sessions_updated_at BEFORE UPDATE ON app.sessions FOR EACH ROW EXECUTE FUNCTION app_private.touch_updated_at();
CREATE TRIGGER sessions_z_audit BEFORE INSERT OR DELETE OR UPDATE ON app.sessions FOR EACH ROW EXECUTE FUNCTION app_private.audit_row('session', 'agent_id', 'status', 'tokens_used');

ALTER TABLE app.sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY sessions_delete ON app.sessions FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(started_by)));
CREATE POLICY sessions_insert ON app.sessions FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.member_and_creator(started_by)));
CREATE POLICY sessions_owner ON app.sessions TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY sessions_select ON app.sessions FOR SELECT
  USING ((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)));
CREATE POLICY sessions_update ON app.sessions FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(started_by)))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(started_by)));

GRANT INSERT (tenant_id, agent_id, started_by, metadata) ON TABLE app.sessions TO :DATABASE_APP;
GRANT SELECT, DELETE ON TABLE app.sessions TO :DATABASE_APP;
GRANT UPDATE (status, ended_at, tokens_used, metadata) ON TABLE app.sessions TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.tasks

CREATE TABLE app.tasks (
  tenant_id uuid NOT NULL,
  id uuid DEFAULT gen_random_uuid() NOT NULL,
  session_id uuid NOT NULL,
  title text NOT NULL,
  status text DEFAULT 'pending'::text NOT NULL,
  input jsonb DEFAULT '{}'::jsonb NOT NULL,
  output jsonb,
  tokens bigint DEFAULT 0 NOT NULL,
  assignee_id uuid,
  created_by uuid,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT tasks_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT tasks_assignee_fkey FOREIGN KEY (tenant_id, assignee_id) REFERENCES app.memberships(tenant_id, user_id) ON DELETE SET NULL (assignee_id),
  CONSTRAINT tasks_created_by_fkey FOREIGN KEY (tenant_id, created_by) REFERENCES app.memberships(tenant_id, user_id) ON DELETE SET NULL (created_by),
  CONSTRAINT tasks_session_fkey FOREIGN KEY (tenant_id, session_id) REFERENCES app.sessions(tenant_id, id) ON DELETE CASCADE,
  CONSTRAINT tasks_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES app.tenants(id) ON DELETE CASCADE,
  CONSTRAINT tasks_input_size CHECK (pg_column_size(input) <= 65536),
  CONSTRAINT tasks_output_size CHECK (pg_column_size(output) <= 65536),
  CONSTRAINT tasks_status CHECK (status = ANY (ARRAY['pending'::text, 'running'::text, 'succeeded'::text, 'failed'::text, 'cancelled'::text])),
  CONSTRAINT tasks_title_length CHECK (char_length(title) >= 1 AND char_length(title) <= 300),
  CONSTRAINT tasks_tokens CHECK (tokens >= 0)
);
COMMENT ON TABLE app.tasks IS 'A unit of work in a session: pending -> running | cancelled; running -> succeeded | failed | cancelled (app_private.check_task_write). Created only in an active session; its tokens add to the session''s tokens_used.';

CREATE INDEX tasks_tenant_assignee_idx ON app.tasks USING btree (tenant_id, assignee_id) WHERE assignee_id IS NOT NULL;
CREATE INDEX tasks_tenant_created_idx ON app.tasks USING btree (tenant_id, created_at, id);
CREATE INDEX tasks_tenant_session_created_idx ON app.tasks USING btree (tenant_id, session_id, created_at, id);

CREATE TRIGGER tasks_check_write BEFORE INSERT OR UPDATE ON app.tasks FOR EACH ROW EXECUTE FUNCTION app_private.check_task_write();
CREATE TRIGGER tasks_notify AFTER INSERT OR DELETE OR UPDATE ON app.tasks FOR EACH ROW EXECUTE FUNCTION app_private.notify_row_change('Task');
CREATE TRIGGER tasks_tokens_to_session AFTER INSERT OR UPDATE OF tokens ON app.tasks FOR EACH ROW EXECUTE FUNCTION app_private.add_task_tokens_to_session();
CREATE TRIGGER tasks_updated_at BEFORE UPDATE ON app.tasks FOR EACH ROW EXECUTE FUNCTION app_private.touch_updated_at();
CREATE TRIGGER tasks_z_audit BEFORE INSERT OR DELETE OR UPDATE ON app.tasks FOR EACH ROW EXECUTE FUNCTION app_private.audit_row('task', 'session_id', 'status', 'assignee_id', 'tokens');

ALTER TABLE app.tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY tasks_delete ON app.tasks FOR DELETE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(created_by)));
CREATE POLICY tasks_insert ON app.tasks FOR INSERT
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.member_and_creator(created_by)));
CREATE POLICY tasks_owner ON app.tasks TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY tasks_select ON app.tasks FOR SELECT
  USING ((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)));
CREATE POLICY tasks_update ON app.tasks FOR UPDATE
  USING (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(created_by)))
  WITH CHECK (((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND app.lead_or_creator(created_by)));

GRANT INSERT (tenant_id, session_id, title, input, tokens, assignee_id, created_by) ON TABLE app.tasks TO :DATABASE_APP;
GRANT SELECT, DELETE ON TABLE app.tasks TO :DATABASE_APP;
GRANT UPDATE (title, status, output, tokens, assignee_id) ON TABLE app.tasks TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.tenants

CREATE TABLE app.tenants (
  id uuid DEFAULT gen_random_uuid() NOT NULL,
  slug text NOT NULL,
  name text NOT NULL,
  status text DEFAULT 'active'::text NOT NULL,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  plan text DEFAULT 'free'::text NOT NULL,
  suspended_at timestamp with time zone,
  suspended_reason text,
  audit_retention_days integer,
  CONSTRAINT tenants_pkey PRIMARY KEY (id),
  CONSTRAINT tenants_slug_key UNIQUE (slug),
  CONSTRAINT tenants_audit_retention_floor CHECK (audit_retention_days IS NULL OR audit_retention_days >= 90 AND audit_retention_days <= 36600),
  CONSTRAINT tenants_name_length CHECK (char_length(name) >= 1 AND char_length(name) <= 200),
  CONSTRAINT tenants_plan CHECK (plan = ANY (ARRAY['free'::text, 'team'::text, 'enterprise'::text])),
  CONSTRAINT tenants_slug_format CHECK (slug ~ '^[a-z][a-z0-9-]{1,61}[a-z0-9]$'::text),
  CONSTRAINT tenants_slug_not_uuid CHECK (slug !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'::text),
  CONSTRAINT tenants_status CHECK (status = ANY (ARRAY['active'::text, 'suspended'::text])),
  CONSTRAINT tenants_suspended_reason_length CHECK (char_length(suspended_reason) <= 500),
  CONSTRAINT tenants_suspension CHECK ((status = 'suspended'::text) = (suspended_at IS NOT NULL))
);
COMMENT ON TABLE app.tenants IS 'A team sharing the deployment. Global: the request role sees only the current tenant (app.current_tenant_id()). status active|suspended (suspended_at is set exactly while suspended); plan free|team|enterprise sets the quota limits.';
COMMENT ON COLUMN app.tenants.audit_retention_days IS 'Audit events older than this many days are purged by the service under a signed anchor; at least 90, null keeps them all.';

CREATE TRIGGER tenants_create_quotas AFTER INSERT ON app.tenants REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION app_private.create_tenant_quotas();
CREATE TRIGGER tenants_notify_status AFTER UPDATE OF status ON app.tenants FOR EACH ROW WHEN (old.status IS DISTINCT FROM new.status) EXECUTE FUNCTION app_private.notify_tenant_status();
CREATE TRIGGER tenants_updated_at BEFORE UPDATE ON app.tenants FOR EACH ROW EXECUTE FUNCTION app_private.touch_updated_at();

ALTER TABLE app.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenants_owner ON app.tenants TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY tenants_select ON app.tenants FOR SELECT
  USING ((id = ( SELECT app.current_tenant_id() AS current_tenant_id)));

GRANT SELECT ON TABLE app.tenants TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app.users

CREATE TABLE app.users (
  id uuid DEFAULT gen_random_uuid() NOT NULL,
  email text NOT NULL,
  display_name text DEFAULT ''::text NOT NULL,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT users_pkey PRIMARY KEY (id),
  CONSTRAINT users_display_name_length CHECK (char_length(display_name) <= 200),
  CONSTRAINT users_email_format CHECK (char_length(email) <= 320 AND email ~ '^[^@\s]+@[^@\s]+$'::text)
);
COMMENT ON TABLE app.users IS 'A person, across tenants. Visible to themself and to members of the current tenant they belong to; email is unique case-insensitively (users_email_key).';

CREATE UNIQUE INDEX users_email_key ON app.users USING btree (lower(email));

CREATE TRIGGER users_updated_at BEFORE UPDATE ON app.users FOR EACH ROW EXECUTE FUNCTION app_private.touch_updated_at();

ALTER TABLE app.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.users FORCE ROW LEVEL SECURITY;
CREATE POLICY users_owner ON app.users TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);
CREATE POLICY users_select ON app.users FOR SELECT
  USING (((id = ( SELECT app.current_user_id() AS current_user_id)) OR (EXISTS ( SELECT 1
   FROM app.memberships m
  WHERE ((m.tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) AND (m.user_id = users.id))))));

GRANT SELECT ON TABLE app.users TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Table app_private.event_outbox

CREATE UNLOGGED TABLE app_private.event_outbox (
  seq bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
  payload text NOT NULL,
  CONSTRAINT event_outbox_payload_size CHECK (octet_length(payload) <= 1000)
);
COMMENT ON TABLE app_private.event_outbox IS 'Live events not yet published: one JSON notification payload per row (tenant, type, id, kind; or an access change; or a tenant resync), added by the notify_* triggers in the writing transaction and moved to NOTIFY tenancy_events by app_private.publish_events. Unlogged: a crash empties it, and drops the listening connections, whose subscribers then get a resync. The request role has no access.';

ALTER TABLE app_private.event_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE app_private.event_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY event_outbox_owner ON app_private.event_outbox TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);

--------------------------------------------------------------------------------
-- Table app_private.operator_audit_events

CREATE TABLE app_private.operator_audit_events (
  id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
  occurred_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
  actor_user_id uuid,
  actor text NOT NULL,
  action text NOT NULL,
  target_tenant_id uuid,
  reason text,
  details jsonb DEFAULT '{}'::jsonb NOT NULL,
  seq bigint NOT NULL,
  prev_hash bytea NOT NULL,
  hash bytea NOT NULL,
  request_id text,
  CONSTRAINT operator_audit_events_pkey PRIMARY KEY (id),
  CONSTRAINT operator_audit_events_seq_key UNIQUE (seq),
  CONSTRAINT operator_audit_events_request_id_length CHECK (char_length(request_id) >= 1 AND char_length(request_id) <= 200)
);
COMMENT ON TABLE app_private.operator_audit_events IS 'Every use of the operator capability, in the transaction of the change. No foreign keys: the record outlives the tenant and the user it names.';

CREATE INDEX operator_audit_events_occurred_idx ON app_private.operator_audit_events USING btree (occurred_at, id);

CREATE TRIGGER operator_audit_events_append_only BEFORE DELETE OR UPDATE ON app_private.operator_audit_events FOR EACH ROW EXECUTE FUNCTION app_private.audit_events_append_only();
CREATE TRIGGER operator_audit_events_chain BEFORE INSERT ON app_private.operator_audit_events FOR EACH ROW EXECUTE FUNCTION app_private.chain_platform_audit_event();

ALTER TABLE app_private.operator_audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE app_private.operator_audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY operator_audit_events_owner ON app_private.operator_audit_events TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);

--------------------------------------------------------------------------------
-- Table app_private.operators

CREATE TABLE app_private.operators (
  user_id uuid NOT NULL,
  granted_at timestamp with time zone DEFAULT now() NOT NULL,
  granted_by text NOT NULL,
  reason text,
  CONSTRAINT operators_pkey PRIMARY KEY (user_id),
  CONSTRAINT operators_user_id_fkey FOREIGN KEY (user_id) REFERENCES app.users(id) ON DELETE CASCADE
);
COMMENT ON TABLE app_private.operators IS 'Platform operators (cross-tenant administration), carried in the database and never trusted from a token alone. Read only by the owner and SECURITY DEFINER functions.';

ALTER TABLE app_private.operators ENABLE ROW LEVEL SECURITY;
ALTER TABLE app_private.operators FORCE ROW LEVEL SECURITY;
CREATE POLICY operators_owner ON app_private.operators TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);

--------------------------------------------------------------------------------
-- Table app_private.platform_audit_chain_head

CREATE TABLE app_private.platform_audit_chain_head (
  singleton boolean DEFAULT true NOT NULL,
  seq bigint DEFAULT 0 NOT NULL,
  hash bytea DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea NOT NULL,
  prev_hash bytea,
  CONSTRAINT platform_audit_chain_head_pkey PRIMARY KEY (singleton),
  CONSTRAINT platform_audit_chain_head_singleton_check CHECK (singleton)
);
COMMENT ON TABLE app_private.platform_audit_chain_head IS 'The head of the platform audit chain (app_private.operator_audit_events): one row, locked by each append until its commit.';

ALTER TABLE app_private.platform_audit_chain_head ENABLE ROW LEVEL SECURITY;
ALTER TABLE app_private.platform_audit_chain_head FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_audit_chain_head_owner ON app_private.platform_audit_chain_head TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);

--------------------------------------------------------------------------------
-- Table app_private.platform_audit_checkpoints

CREATE TABLE app_private.platform_audit_checkpoints (
  kind text NOT NULL,
  seq bigint NOT NULL,
  hash bytea NOT NULL,
  signed_at timestamp with time zone NOT NULL,
  key_id text NOT NULL,
  jws text NOT NULL,
  CONSTRAINT platform_audit_checkpoints_pkey PRIMARY KEY (kind, seq),
  CONSTRAINT platform_audit_checkpoints_hash_check CHECK (octet_length(hash) = 32),
  CONSTRAINT platform_audit_checkpoints_jws_check CHECK (octet_length(jws) <= 4096),
  CONSTRAINT platform_audit_checkpoints_key_id_check CHECK (char_length(key_id) >= 1 AND char_length(key_id) <= 100),
  CONSTRAINT platform_audit_checkpoints_kind_check CHECK (kind = ANY (ARRAY['checkpoint'::text, 'anchor'::text])),
  CONSTRAINT platform_audit_checkpoints_seq_check CHECK (seq > 0)
);
COMMENT ON TABLE app_private.platform_audit_checkpoints IS 'Signed checkpoints of the platform audit chain (app_private.operator_audit_events), as app.audit_checkpoints for a tenant.';

ALTER TABLE app_private.platform_audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE app_private.platform_audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_audit_checkpoints_owner ON app_private.platform_audit_checkpoints TO :DATABASE_OWNER
  USING (true)
  WITH CHECK (true);

--------------------------------------------------------------------------------
-- Functions in app

CREATE OR REPLACE FUNCTION app.current_api_key_id()
 RETURNS uuid
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$ select nullif(current_setting('app.api_key_id', true), '')::uuid $function$;
COMMENT ON FUNCTION app.current_api_key_id() IS 'The API key the request came with; null for a signed-in user.';
GRANT EXECUTE ON FUNCTION app.current_api_key_id() TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app.current_member_role()
 RETURNS text
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$ select nullif(current_setting('app.role', true), '') $function$;
COMMENT ON FUNCTION app.current_member_role() IS 'The request''s role in the tenant (app.role): the membership role, lowered by a role claim or an API key''s role.';
GRANT EXECUTE ON FUNCTION app.current_member_role() TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app.current_tenant_id()
 RETURNS uuid
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$ select nullif(current_setting('app.tenant_id', true), '')::uuid $function$;
COMMENT ON FUNCTION app.current_tenant_id() IS 'The request''s tenant (app.tenant_id, set transaction-local by a begin_* function); null, and so no tenant row, when unset or '''' after a transaction.';
GRANT EXECUTE ON FUNCTION app.current_tenant_id() TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app.current_user_id()
 RETURNS uuid
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$ select nullif(current_setting('app.user_id', true), '')::uuid $function$;
COMMENT ON FUNCTION app.current_user_id() IS 'The request''s user (app.user_id); for an API key, the key''s creator.';
GRANT EXECUTE ON FUNCTION app.current_user_id() TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app.has_role(required text)
 RETURNS boolean
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$ select app.role_rank(app.current_member_role()) >= app.role_rank(required) and app.role_rank(required) > 0 $function$;
COMMENT ON FUNCTION app.has_role(text) IS 'True when the request''s role is at least the one named (ADMIN > LEAD > MEMBER > VIEWER).';
GRANT EXECUTE ON FUNCTION app.has_role(text) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app.lead_or_creator(creator uuid)
 RETURNS boolean
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$ select app.has_role('LEAD') or app.member_and_creator(creator) $function$;
COMMENT ON FUNCTION app.lead_or_creator(uuid) IS 'True when the request''s role is at least LEAD, or app.member_and_creator(creator): who may change or delete a row of agents, sessions, tasks, contexts.';
GRANT EXECUTE ON FUNCTION app.lead_or_creator(uuid) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app.member_and_creator(creator uuid)
 RETURNS boolean
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$ select app.has_role('MEMBER') and creator = app.current_user_id() $function$;
COMMENT ON FUNCTION app.member_and_creator(uuid) IS 'True when the request''s role is at least MEMBER and its user is creator: what a member may do with their own rows (insert policies of agents, sessions, tasks, contexts).';
GRANT EXECUTE ON FUNCTION app.member_and_creator(uuid) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app.request_burst(per_minute bigint)
 RETURNS double precision
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ select greatest(1, ceil(per_minute / 6.0)) $function$;
GRANT EXECUTE ON FUNCTION app.request_burst(bigint) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app.request_rate_used(per_minute bigint, tokens double precision, refilled_at timestamp with time zone)
 RETURNS bigint
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
    select case when per_minute is null or per_minute = 0 then 0
                else round(per_minute * (1 - least(app.request_burst(per_minute),
                       tokens + greatest(0, extract(epoch from now() - refilled_at)) * per_minute / 60.0)
                     / app.request_burst(per_minute)))::bigint end
  $function$;
GRANT EXECUTE ON FUNCTION app.request_rate_used(bigint,double precision,timestamp with time zone) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app.role_rank(role text)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ select case role when 'ADMIN' then 4 when 'LEAD' then 3 when 'MEMBER' then 2 when 'VIEWER' then 1 else 0 end $function$;
COMMENT ON FUNCTION app.role_rank(text) IS 'ADMIN 4, LEAD 3, MEMBER 2, VIEWER 1, anything else 0.';
GRANT EXECUTE ON FUNCTION app.role_rank(text) TO :DATABASE_APP;

--------------------------------------------------------------------------------
-- Functions in app_private

CREATE OR REPLACE FUNCTION app_private.accept_invitation(token_hash bytea)
 RETURNS TABLE(tenant_id uuid, tenant_slug text, tenant_name text, role text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  invitation app.invitations;
  tenant app.tenants;
  me uuid := app.current_user_id();
begin
  select * into invitation from app.invitations i where i.token_hash = accept_invitation.token_hash for update;
  if invitation.id is null or not exists (select 1 from app.users u where u.id = me and lower(u.email) = lower(invitation.email)) then
    raise exception 'no such invitation' using errcode = 'TI404';
  end if;
  if invitation.revoked_at is not null then
    raise exception 'was revoked' using errcode = 'TI410';
  elsif invitation.accepted_at is not null then
    raise exception 'has already been used' using errcode = 'TI410';
  elsif invitation.expires_at <= now() then
    raise exception 'has expired' using errcode = 'TI410';
  end if;
  select * into tenant from app.tenants t where t.id = invitation.tenant_id;
  if tenant.status <> 'active' then
    raise exception 'tenant suspended' using errcode = 'TI423';
  end if;
  if exists (select 1 from app.memberships m where m.tenant_id = tenant.id and m.user_id = me) then
    raise exception 'already a member' using errcode = 'TI409';
  end if;
  -- The invitation first: its invitation.accept event names the member, and the membership's trigger sees it accepted.
  update app.invitations i set accepted_at = now(), accepted_by = me where i.tenant_id = tenant.id and i.id = invitation.id;
  insert into app.memberships (tenant_id, user_id, role) values (tenant.id, me, invitation.role);
  return query select tenant.id, tenant.slug, tenant.name, invitation.role;
end
$function$;
COMMENT ON FUNCTION app_private.accept_invitation(bytea) IS 'The signed-in user accepts the invitation whose token hashes to token_hash, sent to their email: unknown tokens and tokens for another email are the same TI404; revoked, used and expired ones TI410; a suspended tenant TI423; already a member TI409. Adds the membership and marks the invitation accepted.';
GRANT EXECUTE ON FUNCTION app_private.accept_invitation(bytea) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.add_task_tokens_to_session()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  delta bigint := coalesce(new.tokens, 0) - case when tg_op = 'UPDATE' then old.tokens else 0 end;
begin
  if delta <> 0 then
    update app.sessions set tokens_used = tokens_used + delta
      where tenant_id = new.tenant_id and id = new.session_id;
  end if;
  return null;
end
$function$;
COMMENT ON FUNCTION app_private.add_task_tokens_to_session() IS 'Trigger (after insert or update of tokens on app.tasks): adds the change in a task''s tokens to its session''s tokens_used. Definer: the task''s writer may not be allowed to update the session row itself.';

CREATE OR REPLACE FUNCTION app_private.assert_operator()
 RETURNS uuid
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if not exists (select 1 from app_private.operators o where o.user_id = app.current_user_id()) then
    raise exception 'not a platform operator' using errcode = 'TO403';
  end if;
  return app.current_user_id();
end
$function$;
COMMENT ON FUNCTION app_private.assert_operator() IS 'Raises TO403 unless the request''s user is a platform operator; returns the user.';

CREATE OR REPLACE FUNCTION app_private.audit_api_key()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if tg_op = 'INSERT' then
    perform app_private.record_audit(new.tenant_id, 'api_key.create', 'api_key', new.id::text,
                                     jsonb_build_object('name', new.name, 'prefix', new.prefix, 'role', new.role));
  elsif new.revoked_at is not null and old.revoked_at is null then
    perform app_private.record_audit(new.tenant_id, 'api_key.revoke', 'api_key', new.id::text, jsonb_build_object('prefix', new.prefix));
  end if;
  return null;
end
$function$;
COMMENT ON FUNCTION app_private.audit_api_key() IS 'Trigger (after insert or update of revoked_at on app.api_keys): api_key.create and api_key.revoke audit events.';

CREATE OR REPLACE FUNCTION app_private.audit_checkpoints_due(max_chains integer DEFAULT 1000)
 RETURNS TABLE(tenant_id uuid, seq bigint, hash bytea, first_seq bigint, first_hash bytea, purged_through bigint, signed_jws text, signed_event_hash bytea)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
    (select null::uuid, h.seq, h.hash, 1::bigint,
            (select e.hash from app_private.operator_audit_events e order by e.seq limit 1),
            0::bigint, c.jws,
            (select e.hash from app_private.operator_audit_events e where e.seq = c.seq)
     from app_private.platform_audit_chain_head h
     left join lateral (select c.seq, c.jws from app_private.platform_audit_checkpoints c
                        where c.kind = 'checkpoint' order by c.seq desc limit 1) c on true
     where h.seq > coalesce(c.seq, 0))
    union all
    (select h.tenant_id, h.seq, h.hash, h.purged_through + 1,
            (select e.hash from app.audit_events e where e.tenant_id = h.tenant_id and e.seq = h.purged_through + 1),
            h.purged_through, c.jws,
            (select e.hash from app.audit_events e where e.tenant_id = h.tenant_id and e.seq = c.seq)
     from app.audit_chain_heads h
     left join lateral (select c.seq, c.jws from app.audit_checkpoints c
                        where c.tenant_id = h.tenant_id and c.kind = 'checkpoint' order by c.seq desc limit 1) c on true
     where h.seq > coalesce(c.seq, 0) and h.seq > h.purged_through
     order by h.tenant_id
     limit max_chains)
  $function$;
COMMENT ON FUNCTION app_private.audit_checkpoints_due(integer) IS 'The chain heads newer than their newest checkpoint (tenant null: the platform chain), with the first event still kept, what retention purged, and the newest checkpoint with the hash its event has now: what the service signs next, once it has checked that.';
GRANT EXECUTE ON FUNCTION app_private.audit_checkpoints_due(integer) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.audit_event_hash(tenant uuid, seq bigint, occurred_at timestamp with time zone, actor_kind text, actor_user_id uuid, actor_api_key_id uuid, action text, target_type text, target_id text, reason text, details jsonb, request_id text, prev_hash bytea)
 RETURNS bytea
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
    select sha256(convert_to(json_build_array('tenancy-audit-v2', tenant, seq::text,
      to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor_kind, actor_user_id, actor_api_key_id,
      action, target_type, target_id, reason, details::text, request_id)::text, 'UTF8') || prev_hash)
  $function$;
COMMENT ON FUNCTION app_private.audit_event_hash(uuid,bigint,timestamp with time zone,text,uuid,uuid,text,text,text,text,jsonb,text,bytea) IS 'The hash of a tenant audit event: SHA-256 over the JSON array tenancy-audit-v2 and its fields (time in UTC with microseconds, details as jsonb text), then prev_hash (src/modules/audit-chain/chain.ts computes the same).';

CREATE OR REPLACE FUNCTION app_private.audit_events_append_only()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
begin
  if tg_op = 'DELETE' and tg_table_name = 'audit_events'
     and (not exists (select 1 from app.tenants t where t.id = old.tenant_id)
          or current_setting('app_private.purging_audit_of', true) = old.tenant_id::text) then
    return old;
  end if;
  raise exception 'audit events are append-only (% refused)', lower(tg_op) using errcode = 'insufficient_privilege';
end
$function$;
COMMENT ON FUNCTION app_private.audit_events_append_only() IS 'Trigger (before update or delete on the audit tables): refuses, but for a deleted tenant''s events and a retention purge.';

CREATE OR REPLACE FUNCTION app_private.audit_invitation()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if tg_op = 'INSERT' then
    perform app_private.record_audit(new.tenant_id, 'invitation.create', 'invitation', new.id::text,
                                     jsonb_build_object('email', new.email, 'role', new.role, 'expiresAt', new.expires_at));
  elsif new.revoked_at is not null and old.revoked_at is null then
    perform app_private.record_audit(new.tenant_id, 'invitation.revoke', 'invitation', new.id::text, '{}');
  elsif new.accepted_at is not null and old.accepted_at is null then
    perform app_private.record_audit(new.tenant_id, 'invitation.accept', 'invitation', new.id::text,
                                     jsonb_build_object('userId', new.accepted_by, 'role', new.role));
  end if;
  return null;
end
$function$;
COMMENT ON FUNCTION app_private.audit_invitation() IS 'Trigger (after insert or update on app.invitations): invitation.create, invitation.revoke and invitation.accept audit events.';

CREATE OR REPLACE FUNCTION app_private.audit_membership()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if tg_op = 'INSERT' then
    -- A membership that an invitation brought in this transaction is its invitation.accept event.
    if not exists (select 1 from app.invitations i
                   where i.tenant_id = new.tenant_id and i.accepted_by = new.user_id and i.accepted_at = now()) then
      perform app_private.record_audit(new.tenant_id, 'member.add', 'user', new.user_id::text, jsonb_build_object('role', new.role));
    end if;
  elsif tg_op = 'UPDATE' then
    perform app_private.record_audit(new.tenant_id, 'member.role_change', 'user', new.user_id::text,
                                     jsonb_build_object('from', old.role, 'to', new.role));
  else
    perform app_private.record_audit(old.tenant_id, 'member.remove', 'user', old.user_id::text, jsonb_build_object('role', old.role));
  end if;
  return null;
end
$function$;
COMMENT ON FUNCTION app_private.audit_membership() IS 'Trigger (after insert, delete or update of role on app.memberships): member.add, member.role_change and member.remove audit events; a membership an invitation brought in the same transaction is audited as that invitation.accept.';

CREATE OR REPLACE FUNCTION app_private.audit_purges_due(batch integer DEFAULT 1000, max_chains integer DEFAULT 100)
 RETURNS TABLE(tenant_id uuid, through_seq bigint, through_hash bytea, through_prev_hash bytea, occurred_at text, actor_kind text, actor_user_id text, actor_api_key_id text, action text, target_type text, target_id text, reason text, details text, request_id text)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
    select h.tenant_id, p.seq, p.hash, e.prev_hash,
           to_char(e.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), e.actor_kind, e.actor_user_id::text,
           e.actor_api_key_id::text, e.action, e.target_type, e.target_id, e.reason, e.details::text, e.request_id
    from app.tenants t
    join app.audit_chain_heads h on h.tenant_id = t.id
    cross join lateral (
      -- The longest run of the oldest events kept, at most `batch`, that are all past retention.
      select b.seq, b.hash from (
        select e.seq, e.hash, bool_and(e.occurred_at < now() - make_interval(days => t.audit_retention_days)) over (order by e.seq) as past
        from (select e.seq, e.hash, e.occurred_at from app.audit_events e
              where e.tenant_id = t.id and e.seq > h.purged_through order by e.seq limit least(batch, 10000)) e
      ) b
      where b.past order by b.seq desc limit 1
    ) p
    join app.audit_events e on e.tenant_id = t.id and e.seq = p.seq
    where t.audit_retention_days is not null
      and (select e.occurred_at from app.audit_events e where e.tenant_id = t.id and e.seq = h.purged_through + 1)
          < now() - make_interval(days => t.audit_retention_days)
    order by t.id
    limit max_chains
  $function$;
COMMENT ON FUNCTION app_private.audit_purges_due(integer,integer) IS 'Tenants with audit events past their retention: the newest seq of the oldest batch to purge, its hash, and that event''s content as the chain hashes it, for the service to check and sign as an anchor.';
GRANT EXECUTE ON FUNCTION app_private.audit_purges_due(integer,integer) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.audit_row()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;
COMMENT ON FUNCTION app_private.audit_row() IS 'Trigger (before insert, update or delete, for each row, named to fire after the table''s other before triggers): one audit event <target>.create|update|delete for the row (target type: the first trigger argument), with the columns named by the other arguments (bytes:<column>: its length in bytes) and, for an update, the changed columns. None for an update that changes nothing, nor for a change that another trigger or a foreign-key action made (depth > 1: its cause is audited). app.audit_reason, when set, is the event''s reason.';

CREATE OR REPLACE FUNCTION app_private.begin_api_key_request(secret_hash bytea, tenant text DEFAULT NULL::text, allowed_slugs text[] DEFAULT NULL::text[])
 RETURNS TABLE(tenant_id uuid, tenant_slug text, tenant_name text, tenant_status text, role text, acting_user_id uuid, api_key_id uuid, is_operator boolean)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  key app.api_keys;
  found_tenant app.tenants;
  member_role text;
begin
  select * into key from app.api_keys k where k.secret_hash = begin_api_key_request.secret_hash;
  if key.id is not null then
    select m.role into member_role from app.memberships m where m.tenant_id = key.tenant_id and m.user_id = key.created_by;
  end if;
  if member_role is null or key.revoked_at is not null or (key.expires_at is not null and key.expires_at <= now()) then
    raise exception 'invalid api key' using errcode = 'TN401';
  end if;
  select * into found_tenant from app.tenants t where t.id = key.tenant_id;
  if (tenant is not null and tenant <> found_tenant.id::text and tenant <> found_tenant.slug)
     or (allowed_slugs is not null and not (found_tenant.slug = any (allowed_slugs))) then
    raise exception 'tenant not found' using errcode = 'TN404';
  end if;
  if found_tenant.status <> 'active' then
    raise exception 'tenant suspended' using errcode = 'TN423';
  end if;
  if app.role_rank(key.role) < app.role_rank(member_role) then
    member_role := key.role;
  end if;

  update app.api_keys k set last_used_at = now()
    where (k.tenant_id, k.id) in (select l.tenant_id, l.id from app.api_keys l
                                  where l.tenant_id = key.tenant_id and l.id = key.id
                                    and (l.last_used_at is null or l.last_used_at < now() - interval '1 minute')
                                  for update skip locked);

  perform set_config('app.tenant_id', found_tenant.id::text, true),
          set_config('app.user_id', key.created_by::text, true),
          set_config('app.role', member_role, true),
          set_config('app.api_key_id', key.id::text, true);

  return query select found_tenant.id, found_tenant.slug, found_tenant.name, found_tenant.status, member_role,
    key.created_by, key.id, false;
end
$function$;
COMMENT ON FUNCTION app_private.begin_api_key_request(bytea,text,text[]) IS 'The first statement of an X-Api-Key request: the key (by its SHA-256) names the tenant; an X-Tenant-ID sent with it must name the same one (TN404). Unknown, revoked and expired keys and keys whose creator left are TN401. Acts as the creator with the lower of the key''s and the creator''s role; writes last_used_at at most once a minute, never waiting for a lock.';
GRANT EXECUTE ON FUNCTION app_private.begin_api_key_request(bytea,text,text[]) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.begin_platform_request(user_id uuid)
 RETURNS TABLE(is_operator boolean)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if not exists (select 1 from app.users u where u.id = begin_platform_request.user_id) then
    raise exception 'unknown user' using errcode = 'TN401';
  end if;
  perform set_config('app.user_id', begin_platform_request.user_id::text, true),
          set_config('app.tenant_id', '', true),
          set_config('app.role', '', true),
          set_config('app.api_key_id', '', true);
  return query select exists (select 1 from app_private.operators o where o.user_id = begin_platform_request.user_id);
end
$function$;
COMMENT ON FUNCTION app_private.begin_platform_request(uuid) IS 'The first statement of a request outside any tenant (accepting an invitation, operator work): sets the user only, so every tenant table reads as empty. TN401 for an unknown user.';
GRANT EXECUTE ON FUNCTION app_private.begin_platform_request(uuid) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.begin_request(by_id uuid, by_slug text, user_id uuid, role_cap text DEFAULT NULL::text, allowed_slugs text[] DEFAULT NULL::text[], OUT tenant_id uuid, OUT tenant_slug text, OUT tenant_name text, OUT tenant_status text, OUT role text)
 RETURNS record
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if by_id is not null then
    select t.id, t.slug, t.name, t.status, m.role
      into tenant_id, tenant_slug, tenant_name, tenant_status, role
      from app.tenants t join app.memberships m on m.tenant_id = t.id and m.user_id = begin_request.user_id
      where t.id = by_id;
  else
    select t.id, t.slug, t.name, t.status, m.role
      into tenant_id, tenant_slug, tenant_name, tenant_status, role
      from app.tenants t join app.memberships m on m.tenant_id = t.id and m.user_id = begin_request.user_id
      where t.slug = by_slug;
  end if;

  if role is null or (allowed_slugs is not null and not (tenant_slug = any (allowed_slugs))) then
    raise exception 'tenant not found' using errcode = 'TN404';
  end if;
  if tenant_status <> 'active' then
    raise exception 'tenant suspended' using errcode = 'TN423';
  end if;
  if role_cap is not null then
    if app.role_rank(role_cap) = 0 then
      raise exception 'invalid role cap' using errcode = 'TN401';
    end if;
    if app.role_rank(role_cap) < app.role_rank(role) then
      role := role_cap;
    end if;
  end if;

  perform set_config('app.tenant_id', tenant_id::text, true),
          set_config('app.user_id', begin_request.user_id::text, true),
          set_config('app.role', role, true),
          set_config('app.api_key_id', '', true);
end
$function$;
COMMENT ON FUNCTION app_private.begin_request(uuid,text,uuid,text,text[]) IS 'The first statement of a signed-in user''s request transaction. Exactly one of by_id and by_slug names the tenant; a tenant that does not exist, one the user is not in and one outside allowed_slugs raise the same TN404, a suspended one TN423, an invalid role_cap TN401. Lowers the membership role to role_cap, then sets app.tenant_id, app.user_id, app.role and app.api_key_id transaction-local.';
GRANT EXECUTE ON FUNCTION app_private.begin_request(uuid,text,uuid,text,text[]) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.camel_case(name text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ select pg_catalog.left(name, 1) || pg_catalog.substr(pg_catalog.replace(pg_catalog.initcap(pg_catalog.replace(name, '_', ' ')), ' ', ''), 2) $function$;
COMMENT ON FUNCTION app_private.camel_case(text) IS 'A snake_case column name as the API spells it (agent_id -> agentId), for audit event details. No SET clause, so it inlines: it names only pg_catalog functions.';

CREATE OR REPLACE FUNCTION app_private.chain_audit_event()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  new.request_id := coalesce(new.request_id, nullif(current_setting('app.request_id', true), ''));
  loop
    -- The head's row lock is held to commit: the tenant's next writer waits for it, so seq order is commit
    -- order and no two events share a predecessor. Under READ COMMITTED a waiting update recomputes its SET
    -- list on the committed head, so the hash always chains to the newest event.
    update app.audit_chain_heads h
      set seq = h.seq + 1, prev_hash = h.hash,
          hash = app_private.audit_event_hash(new.tenant_id, h.seq + 1, new.occurred_at, new.actor_kind, new.actor_user_id,
                   new.actor_api_key_id, new.action, new.target_type, new.target_id, new.reason, new.details, new.request_id, h.hash)
      where h.tenant_id = new.tenant_id
      returning h.seq, h.prev_hash, h.hash into new.seq, new.prev_hash, new.hash;
    exit when found;
    insert into app.audit_chain_heads (tenant_id) values (new.tenant_id) on conflict (tenant_id) do nothing;
  end loop;
  return new;
end
$function$;
COMMENT ON FUNCTION app_private.chain_audit_event() IS 'Trigger (before insert on app.audit_events): the event''s seq, prev_hash and hash from its tenant''s chain head, locked to commit; request_id from app.request_id.';

CREATE OR REPLACE FUNCTION app_private.chain_platform_audit_event()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  new.request_id := coalesce(new.request_id, nullif(current_setting('app.request_id', true), ''));
  loop
    update app_private.platform_audit_chain_head h
      set seq = h.seq + 1, prev_hash = h.hash,
          hash = app_private.platform_audit_event_hash(h.seq + 1, new.occurred_at, new.actor_user_id, new.actor, new.action,
                   new.target_tenant_id, new.reason, new.details, new.request_id, h.hash)
      returning h.seq, h.prev_hash, h.hash into new.seq, new.prev_hash, new.hash;
    exit when found;
    insert into app_private.platform_audit_chain_head (singleton) values (true) on conflict (singleton) do nothing;
  end loop;
  return new;
end
$function$;
COMMENT ON FUNCTION app_private.chain_platform_audit_event() IS 'Trigger (before insert on app_private.operator_audit_events): seq, prev_hash and hash from the platform chain''s head, locked to commit.';

CREATE OR REPLACE FUNCTION app_private.check_agent_update()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
begin
  if new.status is distinct from old.status
     and app.current_member_role() is not null and not app.has_role('LEAD') then
    raise exception 'only LEAD and ADMIN archive agents' using errcode = 'insufficient_privilege';
  end if;
  return new;
end
$function$;

CREATE OR REPLACE FUNCTION app_private.check_fine_tuning_job_write()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION app_private.check_invitation_update()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
begin
  if old.accepted_at is not null or old.revoked_at is not null then
    raise exception 'the invitation is no longer pending' using errcode = 'check_violation', constraint = 'invitations_pending';
  end if;
  return new;
end
$function$;

CREATE OR REPLACE FUNCTION app_private.check_session_tokens()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
begin
  if new.tokens_used <> old.tokens_used and old.status <> 'active' then
    raise exception 'the session has ended' using errcode = 'check_violation', constraint = 'sessions_usage_when_active';
  end if;
  return new;
end
$function$;

CREATE OR REPLACE FUNCTION app_private.check_session_write()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
begin
  if tg_op = 'INSERT' then
    if new.status <> 'active' or new.ended_at is not null or new.tokens_used <> 0 then
      raise exception 'a session starts active, with no tokens used'
        using errcode = 'check_violation', constraint = 'sessions_start_state';
    end if;
    -- An agent the request cannot see reads as missing, exactly like the foreign key would say.
    case (select a.status from app.agents a where a.tenant_id = new.tenant_id and a.id = new.agent_id)
      when 'active' then null;
      when 'archived' then
        raise exception 'the agent is archived' using errcode = 'check_violation', constraint = 'sessions_agent_active';
      else
        raise exception 'no such agent' using errcode = 'foreign_key_violation', constraint = 'sessions_agent_fkey';
    end case;
  elsif new.status is distinct from old.status and old.status <> 'active' then
    raise exception 'the session has already ended' using errcode = 'check_violation', constraint = 'sessions_status_transition';
  end if;
  return new;
end
$function$;

CREATE OR REPLACE FUNCTION app_private.check_task_write()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
begin
  if tg_op = 'INSERT' then
    if new.status <> 'pending' then
      raise exception 'a task starts pending' using errcode = 'check_violation', constraint = 'tasks_start_state';
    end if;
    case (select s.status from app.sessions s where s.tenant_id = new.tenant_id and s.id = new.session_id)
      when 'active' then null;
      when 'completed', 'failed', 'cancelled' then
        raise exception 'the session is not active' using errcode = 'check_violation', constraint = 'tasks_session_active';
      else
        raise exception 'no such session' using errcode = 'foreign_key_violation', constraint = 'tasks_session_fkey';
    end case;
  elsif new.status is distinct from old.status
        and not (old.status = 'pending' and new.status in ('running', 'cancelled'))
        and not (old.status = 'running' and new.status in ('succeeded', 'failed', 'cancelled')) then
    raise exception 'a task cannot go from % to %', old.status, new.status
      using errcode = 'check_violation', constraint = 'tasks_status_transition';
  end if;
  return new;
end
$function$;

CREATE OR REPLACE FUNCTION app_private.consume_quota(tenant uuid, quota text, amount bigint)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  month date := case when quota = 'monthly_tokens' then date_trunc('month', now() at time zone 'UTC')::date end;
  cap bigint;
  used_now bigint;
begin
  if amount = 0 then
    return;
  elsif amount < 0 then
    update app.quotas q set used = greatest(q.used + amount, 0)
      where q.tenant_id = tenant and q.quota = consume_quota.quota and q.period is not distinct from month;
    return;
  end if;
  cap := app_private.quota_limit(tenant, quota);
  -- The row lock serializes concurrent consumers; the WHERE is re-checked on
  -- the row as committed by whoever held the lock before.
  update app.quotas q
    set used = (case when q.period is distinct from month then 0 else q.used end) + amount, period = month
    where q.tenant_id = tenant and q.quota = consume_quota.quota
      and (cap is null or (case when q.period is distinct from month then 0 else q.used end) + amount <= cap);
  if not found then
    select case when q.period is distinct from month then 0 else q.used end into used_now
      from app.quotas q where q.tenant_id = tenant and q.quota = consume_quota.quota;
    if used_now is null and not exists (select 1 from app.tenants t where t.id = tenant) then
      return; -- the tenant is being deleted
    end if;
    raise exception 'quota % exceeded', quota using errcode = 'TQ001',
      detail = json_build_object('quota', quota, 'limit', cap, 'used', coalesce(used_now, 0), 'requested', amount)::text;
  end if;
end
$function$;
COMMENT ON FUNCTION app_private.consume_quota(uuid,text,bigint) IS 'Adds amount to the tenant''s counter in one conditional UPDATE (the row lock serializes concurrent consumers; the limit is re-checked on the committed count), or raises TQ001 with quota, limit, used and requested as JSON in DETAIL. Negative amounts release; monthly_tokens starts again each UTC month.';

CREATE OR REPLACE FUNCTION app_private.context_search(title text, content text)
 RETURNS tsvector
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO ''
AS $function$
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
$function$;
COMMENT ON FUNCTION app_private.context_search(text,text) IS 'The search vector of a context: title (weight A) and content (B); when the whole content would pass the 1 MiB tsvector limit, its first half, quarter and so on (only contents with a great many distinct words).';
GRANT EXECUTE ON FUNCTION app_private.context_search(text,text) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.count_session_tokens()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  perform app_private.consume_quota(d.tenant_id, 'monthly_tokens', d.n)
    from (select n.tenant_id, sum(n.tokens_used - o.tokens_used)::bigint as n
          from new_rows n join old_rows o on o.tenant_id = n.tenant_id and o.id = n.id
          where n.tokens_used > o.tokens_used
          group by n.tenant_id order by n.tenant_id) d;
  return null;
end
$function$;
COMMENT ON FUNCTION app_private.count_session_tokens() IS 'Statement trigger (after update on app.sessions): each session''s growth in tokens_used counts against monthly_tokens; decreases are not returned.';

CREATE OR REPLACE FUNCTION app_private.count_usage()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;
COMMENT ON FUNCTION app_private.count_usage() IS 'Statement trigger keeping a usage quota: count_usage(quota [, worth]) adds what inserted rows are worth to quota, releases what deleted rows were worth, and adds new minus old on UPDATE, per tenant, tenants in order (app_private.consume_quota). worth is an SQL expression over the row, default 1.';

CREATE OR REPLACE FUNCTION app_private.create_tenant_quotas()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  insert into app.quotas (tenant_id, quota, period)
  select n.id, q.quota, case when q.quota = 'monthly_tokens' then date_trunc('month', now() at time zone 'UTC')::date end
  from new_rows n, unnest(array['active_sessions', 'monthly_tokens', 'agents', 'members', 'context_bytes',
                                'requests_per_minute', 'api_key_requests_per_minute']) q (quota);
  return null;
end
$function$;
COMMENT ON FUNCTION app_private.create_tenant_quotas() IS 'Trigger (after insert on app.tenants, per statement): a quota row for each quota of every new tenant.';

CREATE OR REPLACE FUNCTION app_private.expect_principal(matches boolean)
 RETURNS boolean
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
begin
  if matches is not true then
    raise exception 'the principal is not the one assumed' using errcode = 'TN409';
  end if;
  return true;
end
$function$;
COMMENT ON FUNCTION app_private.expect_principal(boolean) IS 'The request check''s guard for a write sent before the check answered (src/db/tenant-transaction.ts, `assume`): raises TN409 unless the principal the check found is the one the service assumed, so the write behind it never runs on an unconfirmed role.';
GRANT EXECUTE ON FUNCTION app_private.expect_principal(boolean) TO PUBLIC;
GRANT EXECUTE ON FUNCTION app_private.expect_principal(boolean) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.expire_idle_sessions(idle interval, max_sessions integer DEFAULT 500)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;
COMMENT ON FUNCTION app_private.expire_idle_sessions(interval,integer) IS 'Ends (status failed) up to max_sessions active sessions with no write to them or their tasks for idle, each tenant''s oldest first and the tenants in turn (one tenant''s backlog cannot hold back another''s), and returns how many; each is audited by the sessions'' trigger (session.update, reason "idle for longer than ..."), and the sessions'' counting trigger releases their active_sessions quota. The service''s idle-session sweep calls it (SESSION_IDLE_TIMEOUT).';
GRANT EXECUTE ON FUNCTION app_private.expire_idle_sessions(interval,integer) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.is_operator()
 RETURNS boolean
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$ select exists (select 1 from app_private.operators o where o.user_id = app.current_user_id()) $function$;
COMMENT ON FUNCTION app_private.is_operator() IS 'Whether the request''s user is a platform operator, read from app_private.operators (never from a claim), for the fields that need to know.';
GRANT EXECUTE ON FUNCTION app_private.is_operator() TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.keep_an_admin()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if old.role = 'ADMIN' and (tg_op = 'DELETE' or new.role <> 'ADMIN') then
    perform 1 from app.tenants t where t.id = old.tenant_id for no key update;
    if found and not exists (select 1 from app.memberships m
                             where m.tenant_id = old.tenant_id and m.role = 'ADMIN' and m.user_id <> old.user_id) then
      raise exception 'a tenant needs an ADMIN' using errcode = 'check_violation', constraint = 'memberships_keep_an_admin';
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$function$;
COMMENT ON FUNCTION app_private.keep_an_admin() IS 'Trigger (before update of role or delete on app.memberships): a tenant keeps an ADMIN. Locks the tenant row first, so concurrent demotions and removals each count the ADMINs the previous one left.';

CREATE OR REPLACE FUNCTION app_private.my_memberships()
 RETURNS TABLE(tenant_id uuid, tenant_slug text, tenant_name text, tenant_status text, role text)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
    select t.id, t.slug, t.name, t.status, m.role
    from app.memberships m join app.tenants t on t.id = m.tenant_id
    where m.user_id = app.current_user_id()
    order by t.slug
  $function$;
COMMENT ON FUNCTION app_private.my_memberships() IS 'The signed-in user''s own memberships across tenants (viewer.memberships): reads nothing but rows of the user the request set.';
GRANT EXECUTE ON FUNCTION app_private.my_memberships() TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.notify_api_key_revoked()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  insert into app_private.event_outbox (payload)
    values (format('{"event":"access","tenant":"%s","kind":"api_key_revoked","key":"%s"}', new.tenant_id, new.id));
  return null;
end;
$function$;
COMMENT ON FUNCTION app_private.notify_api_key_revoked() IS 'Trigger (after update of revoked_at on app.api_keys, for each row that became revoked): adds {"event":"access", tenant, kind: api_key_revoked, key} to app_private.event_outbox, so streams opened with the key end.';

CREATE OR REPLACE FUNCTION app_private.notify_member_change()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if tg_op = 'INSERT' then
    insert into app_private.event_outbox (payload)
      values (format('{"event":"row","tenant":"%s","type":"Member","id":"%s","kind":"created"}', new.tenant_id, new.user_id));
  elsif tg_op = 'UPDATE' then
    if new.role is distinct from old.role then
      insert into app_private.event_outbox (payload)
        values (format('{"event":"access","tenant":"%s","kind":"role_changed","user":"%s"}', new.tenant_id, new.user_id));
    end if;
    insert into app_private.event_outbox (payload)
      values (format('{"event":"row","tenant":"%s","type":"Member","id":"%s","kind":"updated"}', new.tenant_id, new.user_id));
  else
    insert into app_private.event_outbox (payload)
      values (format('{"event":"access","tenant":"%s","kind":"member_removed","user":"%s"}', old.tenant_id, old.user_id)),
             (format('{"event":"row","tenant":"%s","type":"Member","id":"%s","kind":"deleted"}', old.tenant_id, old.user_id));
  end if;
  return null;
end;
$function$;
COMMENT ON FUNCTION app_private.notify_member_change() IS 'Trigger (after insert, update or delete on app.memberships, for each row): adds a Member row event (id: the user id) to app_private.event_outbox and, before it, the access change a subscriber must act on: role_changed when the role changed, member_removed when the membership is gone.';

CREATE OR REPLACE FUNCTION app_private.notify_row_change()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if tg_op = 'DELETE' then
    insert into app_private.event_outbox (payload)
      values (format('{"event":"row","tenant":"%s","type":"%s","id":"%s","kind":"deleted"}', old.tenant_id, tg_argv[0], old.id));
  else
    insert into app_private.event_outbox (payload)
      values (format('{"event":"row","tenant":"%s","type":"%s","id":"%s","kind":"%s"}', new.tenant_id, tg_argv[0], new.id,
        case tg_op when 'INSERT' then 'created' else 'updated' end));
  end if;
  return null;
end;
$function$;
COMMENT ON FUNCTION app_private.notify_row_change() IS 'Trigger (after insert, update or delete, for each row; argument: the GraphQL type): adds {"event":"row", tenant, type, id, kind} to app_private.event_outbox. Ids only, never row content.';

CREATE OR REPLACE FUNCTION app_private.notify_tenant_status()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  insert into app_private.event_outbox (payload)
    values (format('{"event":"access","tenant":"%s","kind":"%s"}', new.id,
      case new.status when 'suspended' then 'tenant_suspended' else 'tenant_reactivated' end));
  return null;
end;
$function$;
COMMENT ON FUNCTION app_private.notify_tenant_status() IS 'Trigger (after update of status on app.tenants, for each row whose status changed): adds {"event":"access", tenant, kind: tenant_suspended | tenant_reactivated} to app_private.event_outbox.';

CREATE OR REPLACE FUNCTION app_private.operator_audit(action text, target uuid, reason text, details jsonb DEFAULT '{}'::jsonb)
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
    insert into app_private.operator_audit_events (actor_user_id, actor, action, target_tenant_id, reason, details)
    values (app_private.assert_operator(), 'user:' || app.current_user_id(), action, target, reason, details)
  $function$;
COMMENT ON FUNCTION app_private.operator_audit(text,uuid,text,jsonb) IS 'Records a use of the operator capability in app_private.operator_audit_events (checking it first).';

CREATE OR REPLACE FUNCTION app_private.operator_audit_log(action_filter text, tenant_filter uuid, actor_filter uuid, occurred_after timestamp with time zone, occurred_before timestamp with time zone, after_at text, after_id bigint, before_at text, before_id bigint, page_size integer, inverted boolean)
 RETURNS TABLE(id bigint, seq bigint, occurred_at timestamp with time zone, actor_user_id uuid, actor text, action text, target_tenant_id uuid, reason text, details jsonb, request_id text, "position" text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;
COMMENT ON FUNCTION app_private.operator_audit_log(text,uuid,uuid,timestamp with time zone,timestamp with time zone,text,bigint,text,bigint,integer,boolean) IS 'Operators: a keyset page of the platform log (app_private.operator_audit_events), newest first by (occurred_at, id), filtered by action, target tenant, acting user and time; checks the capability and records the read (audit.read) first.';
GRANT EXECUTE ON FUNCTION app_private.operator_audit_log(text,uuid,uuid,timestamp with time zone,timestamp with time zone,text,bigint,text,bigint,integer,boolean) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.operator_create_tenant(slug text, name text, plan text, reason text)
 RETURNS SETOF app_private.tenant_summary_row
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  created uuid;
begin
  perform app_private.assert_operator();
  insert into app.tenants (slug, name, plan) values (slug, name, plan) returning id into created;
  perform app_private.operator_audit('tenant.create', created, reason, jsonb_build_object('slug', slug, 'plan', plan));
  perform app_private.record_audit(created, 'tenant.create', 'tenant', created::text, jsonb_build_object('plan', plan), reason, 'operator');
  return query select * from app_private.tenant_summary(created, null, null, null, null, null, 1, false);
end
$function$;
COMMENT ON FUNCTION app_private.operator_create_tenant(text,text,text,text) IS 'Operators: creates a tenant on a plan (audited on both sides). Its first member arrives by invitation (app_private.operator_invite).';
GRANT EXECUTE ON FUNCTION app_private.operator_create_tenant(text,text,text,text) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.operator_invite(tenant uuid, email text, role text, token_hash bytea, expires_at timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  perform app_private.assert_operator();
  perform app_private.operator_audit('invitation.create', tenant, null, jsonb_build_object('email', email, 'role', role));
  insert into app.invitations (tenant_id, email, role, token_hash, expires_at)
    values (tenant, email, role, token_hash, expires_at);
end
$function$;
COMMENT ON FUNCTION app_private.operator_invite(uuid,text,text,bytea,timestamp with time zone) IS 'Operators: invites someone to a tenant with a role (the way a new tenant gets its first ADMIN).';
GRANT EXECUTE ON FUNCTION app_private.operator_invite(uuid,text,text,bytea,timestamp with time zone) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.operator_set_tenant_limits(tenant uuid, plan text, limits jsonb, reason text)
 RETURNS SETOF app_private.tenant_summary_row
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  new_plan text;
begin
  perform app_private.assert_operator();
  update app.tenants t set plan = coalesce(operator_set_tenant_limits.plan, t.plan) where t.id = tenant returning t.plan into new_plan;
  if new_plan is null then
    raise exception 'no such tenant' using errcode = 'P0002';
  end if;
  update app.quotas q set limit_override = (limits ->> q.quota)::bigint
    where q.tenant_id = tenant and limits ? q.quota;
  perform app_private.operator_audit('tenant.set_limits', tenant, reason, jsonb_build_object('plan', plan, 'limits', limits));
  perform app_private.record_audit(tenant, 'tenant.set_limits', 'tenant', tenant::text,
                                   jsonb_build_object('plan', new_plan, 'limits', limits), reason, 'operator');
  return query select * from app_private.tenant_summary(tenant, null, null, null, null, null, 1, false);
end
$function$;
COMMENT ON FUNCTION app_private.operator_set_tenant_limits(uuid,text,jsonb,text) IS 'Operators: changes a tenant''s plan and quota overrides ({"agents": 10, "members": null}; null returns a quota to the plan''s limit).';
GRANT EXECUTE ON FUNCTION app_private.operator_set_tenant_limits(uuid,text,jsonb,text) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.operator_set_tenant_status(tenant uuid, status text, reason text)
 RETURNS SETOF app_private.tenant_summary_row
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  current_status text;
begin
  perform app_private.assert_operator();
  select t.status into current_status from app.tenants t where t.id = tenant for no key update;
  if current_status is null then
    raise exception 'no such tenant' using errcode = 'P0002';
  elsif current_status = status then
    raise exception 'the tenant is already %', status using errcode = 'TO409';
  end if;
  update app.tenants t
    set status = operator_set_tenant_status.status,
        suspended_at = case when operator_set_tenant_status.status = 'suspended' then now() end,
        suspended_reason = case when operator_set_tenant_status.status = 'suspended' then reason end
    where t.id = tenant;
  perform app_private.operator_audit(case when status = 'suspended' then 'tenant.suspend' else 'tenant.reactivate' end, tenant, reason);
  perform app_private.record_audit(tenant, case when status = 'suspended' then 'tenant.suspend' else 'tenant.reactivate' end,
                                   'tenant', tenant::text, '{}', reason, 'operator');
  return query select * from app_private.tenant_summary(tenant, null, null, null, null, null, 1, false);
end
$function$;
COMMENT ON FUNCTION app_private.operator_set_tenant_status(uuid,text,text) IS 'Operators: suspends or reactivates a tenant with a reason (P0002 for no such tenant, TO409 when already so).';
GRANT EXECUTE ON FUNCTION app_private.operator_set_tenant_status(uuid,text,text) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.operator_tenants(status_filter text, after_at text, after_id uuid, before_at text, before_id uuid, page_size integer, inverted boolean)
 RETURNS SETOF app_private.tenant_summary_row
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  perform app_private.operator_audit('tenant.list', null, null, jsonb_build_object('status', status_filter));
  return query select * from app_private.tenant_summary(null, status_filter, after_at, after_id, before_at, before_id, page_size, inverted);
end
$function$;
COMMENT ON FUNCTION app_private.operator_tenants(text,text,uuid,text,uuid,integer,boolean) IS 'Operators: a keyset page of tenants with their usage (audited as tenant.list).';
GRANT EXECUTE ON FUNCTION app_private.operator_tenants(text,text,uuid,text,uuid,integer,boolean) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.platform_audit_event_hash(seq bigint, occurred_at timestamp with time zone, actor_user_id uuid, actor text, action text, target_tenant_id uuid, reason text, details jsonb, request_id text, prev_hash bytea)
 RETURNS bytea
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
    select sha256(convert_to(json_build_array('tenancy-platform-audit-v2', seq::text,
      to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor_user_id, actor, action, target_tenant_id,
      reason, details::text, request_id)::text, 'UTF8') || prev_hash)
  $function$;
COMMENT ON FUNCTION app_private.platform_audit_event_hash(bigint,timestamp with time zone,uuid,text,text,uuid,text,jsonb,text,bytea) IS 'The hash of a platform audit event: SHA-256 over the JSON array tenancy-platform-audit-v2 and its fields, then prev_hash.';

CREATE OR REPLACE FUNCTION app_private.publish_events(max_events integer)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  payloads text[];
  payload text;
  taken integer;
begin
  if max_events is null or max_events < 1 or max_events > 10000 then
    raise exception 'max_events must be from 1 to 10000' using errcode = '22023';
  end if;
  -- One publisher at a time across processes: batches reach the queue in the order they leave the outbox.
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('tenancy.publish-events', 0)) then
    return -1;
  end if;
  with batch as (
    delete from app_private.event_outbox
     where seq in (select seq from app_private.event_outbox order by seq limit max_events)
    returning seq, event_outbox.payload
  ), parsed as (
    select seq, batch.payload, (batch.payload::json ->> 'event') = 'row' as is_row, batch.payload::json ->> 'tenant' as tenant from batch
  ), flooded as (
    select tenant from parsed where is_row group by tenant having count(*) > 100
  )
  select pg_catalog.array_agg(p order by s), (select pg_catalog.count(*) from parsed) into payloads, taken from (
    select seq as s, parsed.payload as p from parsed where not (is_row and tenant in (select tenant from flooded))
    union all
    select min(seq), format('{"event":"resync","tenant":"%s"}', tenant) from parsed
     where is_row and tenant in (select tenant from flooded) group by tenant
  ) published;
  foreach payload in array coalesce(payloads, '{}') loop
    perform pg_catalog.pg_notify('tenancy_events', payload);
  end loop;
  return taken;
end;
$function$;
COMMENT ON FUNCTION app_private.publish_events(integer) IS 'Called by the listening processes (src/events/hub.ts) every few milliseconds: moves up to max_events (1..10000) of the oldest committed rows of app_private.event_outbox to NOTIFY tenancy_events, in outbox order, in one transaction (one commit-time notify lock per batch, not per write). A tenant with more than 100 row events in the batch gets one {"event":"resync", tenant} in their place; access changes always pass one by one. Returns how many rows it took (published or folded), or -1 when another process is publishing right now.';
GRANT EXECUTE ON FUNCTION app_private.publish_events(integer) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.purge_audit_events(tenant uuid, through_seq bigint, through_hash bytea, signed_at timestamp with time zone, key_id text, anchor text)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  retention integer;
  purged_through bigint;
  purged integer;
begin
  select t.audit_retention_days into retention from app.tenants t where t.id = tenant;
  if retention is null then
    raise exception 'the tenant keeps its audit events (no retention set)' using errcode = 'invalid_parameter_value';
  end if;
  -- Purges of one tenant take turns; appends go on meanwhile (they never touch the oldest events).
  perform pg_advisory_xact_lock(hashtextextended('tenancy.audit-purge:' || tenant::text, 0));
  select h.purged_through into purged_through from app.audit_chain_heads h where h.tenant_id = tenant;
  if through_seq <= purged_through then
    return 0; -- another worker purged it first
  elsif through_seq - purged_through > 10000 then
    raise exception 'a purge takes at most 10000 events' using errcode = 'invalid_parameter_value';
  elsif not exists (select 1 from app.audit_events e where e.tenant_id = tenant and e.seq = through_seq and e.hash = through_hash) then
    raise exception 'no audit event % with that hash in the tenant', through_seq using errcode = 'P0002';
  elsif exists (select 1 from app.audit_events e
                where e.tenant_id = tenant and e.seq > purged_through and e.seq <= through_seq
                  and e.occurred_at >= now() - make_interval(days => retention)) then
    raise exception 'events up to % are not all past the tenant''s retention', through_seq using errcode = 'invalid_parameter_value';
  end if;
  insert into app.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, jws)
    values (tenant, 'anchor', through_seq, through_hash, signed_at, key_id, anchor);
  update app.audit_chain_heads h set purged_through = through_seq where h.tenant_id = tenant;
  perform set_config('app_private.purging_audit_of', tenant::text, true);
  delete from app.audit_events e where e.tenant_id = tenant and e.seq <= through_seq;
  get diagnostics purged = row_count;
  perform set_config('app_private.purging_audit_of', '', true);
  -- The new anchor stands for what it covers: older checkpoints and anchors say nothing more.
  delete from app.audit_checkpoints c where c.tenant_id = tenant and c.seq < through_seq;
  return purged;
end
$function$;
COMMENT ON FUNCTION app_private.purge_audit_events(uuid,bigint,bytea,timestamp with time zone,text,text) IS 'Retention: deletes a tenant''s audit events up to through_seq (all past its audit_retention_days, at most 10000) and keeps the anchor the service signed for them.';
GRANT EXECUTE ON FUNCTION app_private.purge_audit_events(uuid,bigint,bytea,timestamp with time zone,text,text) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.quota_limit(tenant uuid, quota text)
 RETURNS bigint
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
    select coalesce(q.limit_override, p.max_value)
    from app.quotas q join app.tenants t on t.id = q.tenant_id
    left join app.plan_limits p on p.plan = t.plan and p.quota = q.quota
    where q.tenant_id = tenant and q.quota = quota_limit.quota
  $function$;
COMMENT ON FUNCTION app_private.quota_limit(uuid,text) IS 'The effective limit of a tenant''s quota: its override, else its plan''s; null is unlimited.';

CREATE OR REPLACE FUNCTION app_private.record_audit(tenant uuid, action text, target_type text, target_id text, details jsonb DEFAULT '{}'::jsonb, reason text DEFAULT NULL::text, actor_kind text DEFAULT NULL::text)
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
    insert into app.audit_events (tenant_id, actor_kind, actor_user_id, actor_api_key_id, action, target_type, target_id, reason, details)
    select tenant,
           coalesce(actor_kind, case when app.current_api_key_id() is not null then 'api_key'
                                     when app.current_user_id() is not null then 'user' else 'system' end),
           app.current_user_id(), app.current_api_key_id(), action, target_type, target_id, reason, details
    -- A cascade from a tenant being deleted has nobody left to tell.
    where exists (select 1 from app.tenants t where t.id = tenant)
  $function$;
COMMENT ON FUNCTION app_private.record_audit(uuid,text,text,text,jsonb,text,text) IS 'Appends to app.audit_events; the actor is whoever the request settings name (api_key, user), else system, unless actor_kind says. Writes nothing for a tenant being deleted.';

CREATE OR REPLACE FUNCTION app_private.resolve_request_tenants(user_ids uuid[], by_ids uuid[], by_slugs text[], key_hashes bytea[])
 RETURNS TABLE(ord bigint, tenant_id uuid, api_key_id uuid)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
    select r.ord, coalesce(k.tenant_id, u.tenant_id), k.id
    from unnest(user_ids, by_ids, by_slugs, key_hashes) with ordinality as r (user_id, by_id, by_slug, key_hash, ord)
    left join lateral (
      select k.tenant_id, k.id from app.api_keys k
      join app.tenants t on t.id = k.tenant_id
      where r.key_hash is not null and k.secret_hash = r.key_hash
        and k.revoked_at is null and (k.expires_at is null or k.expires_at > now())
        and t.status = 'active' and (r.by_id is null or t.id = r.by_id) and (r.by_slug is null or t.slug = r.by_slug)
        and exists (select 1 from app.memberships m where m.tenant_id = k.tenant_id and m.user_id = k.created_by)
    ) k on true
    left join lateral (
      select t.id as tenant_id from app.tenants t
      join app.memberships m on m.tenant_id = t.id and m.user_id = r.user_id
      where r.key_hash is null and t.status = 'active' and (t.id = r.by_id or t.slug = r.by_slug)
    ) u on true
  $function$;
COMMENT ON FUNCTION app_private.resolve_request_tenants(uuid[],uuid[],text[],bytea[]) IS 'The tenant (and API key) of each presented identity, for the request guards; null when the identity belongs to no active tenant';
GRANT EXECUTE ON FUNCTION app_private.resolve_request_tenants(uuid[],uuid[],text[],bytea[]) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.store_audit_checkpoint(tenant uuid, seq bigint, hash bytea, signed_at timestamp with time zone, key_id text, jws text)
 RETURNS boolean
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  stored integer;
begin
  -- Only a checkpoint of an event that is there: a mistaken one would fail every later verification.
  if tenant is null then
    if not exists (select 1 from app_private.operator_audit_events e where e.seq = store_audit_checkpoint.seq and e.hash = store_audit_checkpoint.hash) then
      raise exception 'no platform audit event % with that hash', seq using errcode = 'P0002';
    end if;
    insert into app_private.platform_audit_checkpoints (kind, seq, hash, signed_at, key_id, jws)
      values ('checkpoint', seq, hash, signed_at, key_id, jws) on conflict do nothing;
  else
    if not exists (select 1 from app.audit_events e where e.tenant_id = tenant and e.seq = store_audit_checkpoint.seq and e.hash = store_audit_checkpoint.hash) then
      raise exception 'no audit event % with that hash in the tenant', seq using errcode = 'P0002';
    end if;
    insert into app.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, jws)
      values (tenant, 'checkpoint', seq, hash, signed_at, key_id, jws) on conflict do nothing;
  end if;
  get diagnostics stored = row_count;
  return stored = 1;
end
$function$;
COMMENT ON FUNCTION app_private.store_audit_checkpoint(uuid,bigint,bytea,timestamp with time zone,text,text) IS 'Keeps a checkpoint the service signed of a chain head (tenant null: the platform chain); false when that one was kept already.';
GRANT EXECUTE ON FUNCTION app_private.store_audit_checkpoint(uuid,bigint,bytea,timestamp with time zone,text,text) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.take_request_tokens(tenant_ids uuid[], api_key_ids uuid[], wants integer[])
 RETURNS TABLE(ord bigint, granted integer, remaining double precision, per_minute bigint)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  w record;
  cap double precision;
  available double precision;
  last_refill timestamptz;
  refill_at timestamptz;
begin
  for w in
    select x.tenant_id, x.api_key_id, x.want, x.ord
    from unnest(tenant_ids, api_key_ids, wants) with ordinality as x (tenant_id, api_key_id, want, ord)
    order by x.tenant_id, x.api_key_id nulls first
  loop
    ord := w.ord;
    select coalesce(q.limit_override, p.max_value) into per_minute
      from app.quotas q join app.tenants t on t.id = q.tenant_id
      left join app.plan_limits p on p.plan = t.plan and p.quota = q.quota
      where q.tenant_id = w.tenant_id
        and q.quota = case when w.api_key_id is null then 'requests_per_minute' else 'api_key_requests_per_minute' end;
    if not found then -- no such tenant
      granted := 0; remaining := 0; per_minute := 0;
      return next;
      continue;
    end if;
    if per_minute is null then -- unlimited
      granted := greatest(w.want, 0); remaining := null;
      return next;
      continue;
    elsif per_minute = 0 then -- refused altogether
      granted := 0; remaining := 0;
      return next;
      continue;
    end if;
    cap := app.request_burst(per_minute);
    insert into app.request_buckets as b (tenant_id, api_key_id, tokens, refilled_at)
      values (w.tenant_id, w.api_key_id, cap, clock_timestamp())
      on conflict (tenant_id, api_key_id) do nothing;
    select b.tokens, b.refilled_at into available, last_refill
      from app.request_buckets b
      where b.tenant_id = w.tenant_id and b.api_key_id is not distinct from w.api_key_id
      for update;
    refill_at := greatest(clock_timestamp(), last_refill);
    available := least(cap, available + extract(epoch from refill_at - last_refill) * per_minute / 60.0);
    if w.want >= 0 then
      granted := least(w.want, floor(greatest(available, 0)))::int;
      available := available - granted;
    else
      granted := w.want;
      available := least(cap, available - w.want);
    end if;
    update app.request_buckets b set tokens = available, refilled_at = refill_at
      where b.tenant_id = w.tenant_id and b.api_key_id is not distinct from w.api_key_id;
    remaining := available;
    return next;
  end loop;
end
$function$;
COMMENT ON FUNCTION app_private.take_request_tokens(uuid[],uuid[],integer[]) IS 'Leases (or, negative, gives back) tokens of request rate buckets, batched; never grants more than a bucket holds';
GRANT EXECUTE ON FUNCTION app_private.take_request_tokens(uuid[],uuid[],integer[]) TO :DATABASE_APP;

CREATE OR REPLACE FUNCTION app_private.tenant_summary(tenant_filter uuid, status_filter text, after_at text, after_id uuid, before_at text, before_id uuid, page_size integer, inverted boolean)
 RETURNS SETOF app_private.tenant_summary_row
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
    select t.id, t.slug, t.name, t.status, t.plan, t.created_at, t.suspended_at, t.suspended_reason,
           to_char(t.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           (select jsonb_agg(jsonb_build_object(
                     'quota', q.quota,
                     'used', case
                               when q.quota in ('requests_per_minute', 'api_key_requests_per_minute') then
                                 (select coalesce(max(app.request_rate_used(coalesce(q.limit_override, p.max_value), b.tokens, b.refilled_at)), 0)
                                  from app.request_buckets b
                                  where b.tenant_id = t.id and (b.api_key_id is null) = (q.quota = 'requests_per_minute'))
                               when q.period is distinct from
                                   (case when q.quota = 'monthly_tokens' then date_trunc('month', now() at time zone 'UTC')::date end)
                               then 0 else q.used end,
                     'limit', coalesce(q.limit_override, p.max_value),
                     'overridden', q.limit_override is not null) order by q.quota)
            from app.quotas q left join app.plan_limits p on p.plan = t.plan and p.quota = q.quota
            where q.tenant_id = t.id)
    from app.tenants t
    where (tenant_filter is null or t.id = tenant_filter)
      and (status_filter is null or t.status = status_filter)
      and (after_at is null or (t.created_at, t.id) > (after_at::timestamptz, after_id))
      and (before_at is null or (t.created_at, t.id) < (before_at::timestamptz, before_id))
    order by case when inverted then t.created_at end desc, case when inverted then t.id end desc,
             t.created_at, t.id
    limit page_size
  $function$;
COMMENT ON FUNCTION app_private.tenant_summary(uuid,text,text,uuid,text,uuid,integer,boolean) IS 'What operators see of tenants: metadata and usage against limits, one tenant or a keyset page by (created_at, id).';

CREATE OR REPLACE FUNCTION app_private.touch_updated_at()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$ begin new.updated_at := now(); return new; end $function$;
