--! Previous: sha1:4d6c9b9c57e03a5ce61fa07430bb62e2feee589f
--! Hash: sha1:ebc44024d62a4843ed07f36fb03b6a3ed3e8d706
--! Message: comment on every table and every SECURITY DEFINER function

-- What every table and every SECURITY DEFINER function is for, in the
-- catalog, where migrations/schema.sql and psql's \d+ show it. From now on
-- a migration that creates a table or a SECURITY DEFINER function comments
-- it in the same file (test/catalog.test.ts fails otherwise).

--------------------------------------------------------------------------------
-- Tables

comment on table app.tenants is
  'A team sharing the deployment. Global: the request role sees only the current tenant (app.current_tenant_id()). status active|suspended (suspended_at is set exactly while suspended); plan free|team|enterprise sets the quota limits.';
comment on table app.users is
  'A person, across tenants. Visible to themself and to members of the current tenant they belong to; email is unique case-insensitively (users_email_key).';
comment on table app.memberships is
  'A user''s role (ADMIN > LEAD > MEMBER > VIEWER) in a tenant: the source of app.role, read by app_private.begin_request on every request. Only ADMIN changes members; a tenant always keeps an ADMIN (app_private.keep_an_admin). Counts against the members quota.';
comment on table app.agents is
  'An AI agent of a tenant: name unique per tenant, model, config, status active|archived (archiving is LEAD''s and ADMIN''s). Members create agents; LEAD and ADMIN change any, MEMBER their own (app.lead_or_creator). Counts against the agents quota.';
comment on table app.sessions is
  'One run of an agent: active -> completed | failed | cancelled, once (app_private.check_session_write). tokens_used is the sum of its tasks'' tokens plus usage recorded directly; growth counts against monthly_tokens, an active session against active_sessions.';
comment on table app.tasks is
  'A unit of work in a session: pending -> running | cancelled; running -> succeeded | failed | cancelled (app_private.check_task_write). Created only in an active session; its tokens add to the session''s tokens_used.';
comment on table app.contexts is
  'The knowledge store: documents, memories and notes, optionally tied to an agent or a session of the same tenant, with full-text search (search, weighted title A and content B) and tags. content_bytes counts against the context_bytes quota.';
comment on table app.fine_tuning_jobs is
  'A fine-tuning job: queued -> running | cancelled; running -> succeeded | failed | cancelled, finished_at set on the way out. Created and cancelled by LEAD and ADMIN; the training worker (operator side) runs them.';
comment on table app.fine_tuning_job_contexts is
  'The dataset of a fine-tuning job: contexts of the same tenant, kept (on delete restrict) while a job uses them.';
comment on table app.audit_events is
  'The tenant''s own audit record, append-only: written by SECURITY DEFINER triggers and functions (app_private.record_audit) in the transaction of the change; the request role reads it as ADMIN and never writes it.';
comment on table app.plan_limits is
  'Each plan''s limit per quota (null: unlimited). Readable by every request; changed only by migrations.';
comment on table app.quotas is
  'A tenant''s usage counter per quota and an optional limit override. Moved only by app_private.consume_quota (one conditional UPDATE: concurrent requests serialize on the row); monthly_tokens counts in the UTC month named by period.';
comment on table app.invitations is
  'A one-time invitation to a tenant, stored as the SHA-256 of its token, that expires. LEAD invites MEMBER and VIEWER, ADMIN any role; revoked, never deleted; accepted through app_private.accept_invitation.';
comment on table app.api_keys is
  'Machine access to one tenant: the secret is shown once, only its SHA-256 and public prefix are kept. A key acts for its creator with the lower of its role and the creator''s current role, and stops when the creator leaves; revoked, never deleted.';
comment on table app_private.operators is
  'Platform operators (cross-tenant administration), carried in the database and never trusted from a token alone. Read only by the owner and SECURITY DEFINER functions.';
comment on table app_private.operator_audit_events is
  'Every use of the operator capability, in the transaction of the change. No foreign keys: the record outlives the tenant and the user it names.';

--------------------------------------------------------------------------------
-- The helpers every policy calls (wrapped as (select ...): once per statement)

comment on function app.current_tenant_id() is
  'The request''s tenant (app.tenant_id, set transaction-local by a begin_* function); null, and so no tenant row, when unset or '''' after a transaction.';
comment on function app.current_user_id() is
  'The request''s user (app.user_id); for an API key, the key''s creator.';
comment on function app.current_member_role() is
  'The request''s role in the tenant (app.role): the membership role, lowered by a role claim or an API key''s role.';
comment on function app.current_api_key_id() is
  'The API key the request came with; null for a signed-in user.';
comment on function app.role_rank(text) is
  'ADMIN 4, LEAD 3, MEMBER 2, VIEWER 1, anything else 0.';
comment on function app.has_role(text) is
  'True when the request''s role is at least the one named (ADMIN > LEAD > MEMBER > VIEWER).';

--------------------------------------------------------------------------------
-- SECURITY DEFINER functions: the request start

comment on function app_private.begin_request(uuid, text, uuid, text, text[]) is
  'The first statement of a signed-in user''s request transaction. Exactly one of by_id and by_slug names the tenant; a tenant that does not exist, one the user is not in and one outside allowed_slugs raise the same TN404, a suspended one TN423, an invalid role_cap TN401. Lowers the membership role to role_cap, then sets app.tenant_id, app.user_id, app.role and app.api_key_id transaction-local.';
comment on function app_private.begin_api_key_request(bytea, text, text[]) is
  'The first statement of an X-Api-Key request: the key (by its SHA-256) names the tenant; an X-Tenant-ID sent with it must name the same one (TN404). Unknown, revoked and expired keys and keys whose creator left are TN401. Acts as the creator with the lower of the key''s and the creator''s role; writes last_used_at at most once a minute, never waiting for a lock.';
comment on function app_private.begin_platform_request(uuid) is
  'The first statement of a request outside any tenant (accepting an invitation, operator work): sets the user only, so every tenant table reads as empty. TN401 for an unknown user.';
comment on function app_private.is_operator() is
  'Whether the request''s user is a platform operator, read from app_private.operators (never from a claim), for the fields that need to know.';
comment on function app_private.my_memberships() is
  'The signed-in user''s own memberships across tenants (viewer.memberships): reads nothing but rows of the user the request set.';
comment on function app_private.accept_invitation(bytea) is
  'The signed-in user accepts the invitation whose token hashes to token_hash, sent to their email: unknown tokens and tokens for another email are the same TI404; revoked, used and expired ones TI410; a suspended tenant TI423; already a member TI409. Adds the membership and marks the invitation accepted.';

--------------------------------------------------------------------------------
-- SECURITY DEFINER functions: quotas and usage

comment on function app_private.quota_limit(uuid, text) is
  'The effective limit of a tenant''s quota: its override, else its plan''s; null is unlimited.';
comment on function app_private.consume_quota(uuid, text, bigint) is
  'Adds amount to the tenant''s counter in one conditional UPDATE (the row lock serializes concurrent consumers; the limit is re-checked on the committed count), or raises TQ001 with quota, limit, used and requested as JSON in DETAIL. Negative amounts release; monthly_tokens starts again each UTC month.';
comment on function app_private.create_tenant_quotas() is
  'Trigger (after insert on app.tenants, per statement): a quota row for each quota of every new tenant.';
comment on function app_private.add_task_tokens_to_session() is
  'Trigger (after insert or update of tokens on app.tasks): adds the change in a task''s tokens to its session''s tokens_used. Definer: the task''s writer may not be allowed to update the session row itself.';

--------------------------------------------------------------------------------
-- SECURITY DEFINER functions: members and audit

comment on function app_private.keep_an_admin() is
  'Trigger (before update of role or delete on app.memberships): a tenant keeps an ADMIN. Locks the tenant row first, so concurrent demotions and removals each count the ADMINs the previous one left.';
comment on function app_private.record_audit(uuid, text, text, text, jsonb, text, text) is
  'Appends to app.audit_events; the actor is whoever the request settings name (api_key, user), else system, unless actor_kind says. Writes nothing for a tenant being deleted.';
comment on function app_private.audit_membership() is
  'Trigger (after insert, delete or update of role on app.memberships): member.add, member.role_change and member.remove audit events.';
comment on function app_private.audit_invitation() is
  'Trigger (after insert or update on app.invitations): invitation.create, invitation.revoke and invitation.accept audit events.';
comment on function app_private.audit_api_key() is
  'Trigger (after insert or update of revoked_at on app.api_keys): api_key.create and api_key.revoke audit events.';

--------------------------------------------------------------------------------
-- SECURITY DEFINER functions: platform operators (each checks the capability
-- and records the use in the same transaction; tenant metadata and usage
-- figures only, never tenant data)

comment on function app_private.assert_operator() is
  'Raises TO403 unless the request''s user is a platform operator; returns the user.';
comment on function app_private.operator_audit(text, uuid, text, jsonb) is
  'Records a use of the operator capability in app_private.operator_audit_events (checking it first).';
comment on function app_private.tenant_summary(uuid, text, text, uuid, text, uuid, integer, boolean) is
  'What operators see of tenants: metadata and usage against limits, one tenant or a keyset page by (created_at, id).';
comment on function app_private.operator_tenants(text, text, uuid, text, uuid, integer, boolean) is
  'Operators: a keyset page of tenants with their usage (audited as tenant.list).';
comment on function app_private.operator_create_tenant(text, text, text, text) is
  'Operators: creates a tenant on a plan (audited on both sides). Its first member arrives by invitation (app_private.operator_invite).';
comment on function app_private.operator_invite(uuid, text, text, bytea, timestamp with time zone) is
  'Operators: invites someone to a tenant with a role (the way a new tenant gets its first ADMIN).';
comment on function app_private.operator_set_tenant_status(uuid, text, text) is
  'Operators: suspends or reactivates a tenant with a reason (P0002 for no such tenant, TO409 when already so).';
comment on function app_private.operator_set_tenant_limits(uuid, text, jsonb, text) is
  'Operators: changes a tenant''s plan and quota overrides ({"agents": 10, "members": null}; null returns a quota to the plan''s limit).';
