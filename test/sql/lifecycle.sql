-- Invitations, API keys, audit events and quotas in plain SQL, as the request
-- role: tenant B never reads or writes tenant A's rows, the role rules hold in
-- the policies, audit events are append-only, quotas and the last ADMIN hold.
-- Run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/lifecycle.sql (rolled back).

begin;
\ir include/helpers.sql

insert into app.tenants (id, slug, name, plan) values
  ('a1000000-0000-4000-8000-00000000000a', 'sql-life-a', 'SQL life A', 'free'),
  ('b1000000-0000-4000-8000-00000000000b', 'sql-life-b', 'SQL life B', 'free');
insert into app.users (id, email) values
  ('a1000000-0000-4000-8000-0000000000a1', 'admin@sql-life-a.test'),
  ('a1000000-0000-4000-8000-0000000000a2', 'lead@sql-life-a.test'),
  ('a1000000-0000-4000-8000-0000000000a3', 'member@sql-life-a.test'),
  ('b1000000-0000-4000-8000-0000000000b1', 'admin@sql-life-b.test'),
  ('c1000000-0000-4000-8000-0000000000c1', 'guest@sql-life.test');
insert into app.memberships (tenant_id, user_id, role) values
  ('a1000000-0000-4000-8000-00000000000a', 'a1000000-0000-4000-8000-0000000000a1', 'ADMIN'),
  ('a1000000-0000-4000-8000-00000000000a', 'a1000000-0000-4000-8000-0000000000a2', 'LEAD'),
  ('a1000000-0000-4000-8000-00000000000a', 'a1000000-0000-4000-8000-0000000000a3', 'MEMBER'),
  ('b1000000-0000-4000-8000-00000000000b', 'b1000000-0000-4000-8000-0000000000b1', 'ADMIN');
insert into app.invitations (tenant_id, id, email, role, token_hash, invited_by, expires_at) values
  ('a1000000-0000-4000-8000-00000000000a', 'a1000000-0000-4000-8000-00000000e001', 'guest@sql-life.test', 'VIEWER',
   sha256('tni_a'), 'a1000000-0000-4000-8000-0000000000a1', now() + interval '1 day');
insert into app.api_keys (tenant_id, id, name, prefix, secret_hash, role, created_by) values
  ('a1000000-0000-4000-8000-00000000000a', 'a1000000-0000-4000-8000-00000000c001', 'ci', 'tnk_aaaaaaaa',
   sha256('tnk_aaaaaaaa_secret'), 'MEMBER', 'a1000000-0000-4000-8000-0000000000a3');

-- The owner's writes were counted and audited.
do $$
begin
  assert (select used from app.quotas where tenant_id = 'a1000000-0000-4000-8000-00000000000a' and quota = 'members') = 3,
    'members not counted';
  assert (select count(*) from app.audit_events where tenant_id = 'a1000000-0000-4000-8000-00000000000a'
          and action in ('member.add', 'invitation.create', 'api_key.create')) = 5, 'changes not audited';
  assert (select actor_kind from app.audit_events where tenant_id = 'a1000000-0000-4000-8000-00000000000a' limit 1) = 'system',
    'owner writes are not the system';
end
$$;

set local role tenancy_app;

-- 1. No tenant: nothing visible, nothing writable.
do $$
begin
  perform test_helpers.assert_nothing_visible('no tenant');
  perform test_helpers.assert_refused($q$insert into app.invitations (tenant_id, email, role, token_hash, invited_by, expires_at)
    values ('a1000000-0000-4000-8000-00000000000a', 'x@x.test', 'VIEWER', sha256('x'), null, now() + interval '1 day')$q$,
    'no tenant: invitation inserted');
end
$$;

-- 2. Tenant B's ADMIN: none of A's rows, no writes into A.
select test_helpers.become('sql-life-b', 'b1000000-0000-4000-8000-0000000000b1');
do $$
begin
  perform test_helpers.assert_only_own_tenant('B');
  assert (select count(*) from app.quotas) = 7, 'B does not see its own quotas';
  assert test_helpers.row_count($q$update app.invitations set revoked_at = now() where id = 'a1000000-0000-4000-8000-00000000e001'$q$) = 0,
    'B revoked an A invitation';
  assert test_helpers.row_count($q$update app.api_keys set revoked_at = now() where id = 'a1000000-0000-4000-8000-00000000c001'$q$) = 0,
    'B revoked an A key';
  perform test_helpers.assert_refused($q$insert into app.invitations (tenant_id, email, role, token_hash, invited_by, expires_at)
    values ('a1000000-0000-4000-8000-00000000000a', 'planted@x.test', 'ADMIN', sha256('planted'),
    'b1000000-0000-4000-8000-0000000000b1', now() + interval '1 day')$q$,
    'B planted an invitation in A');
  perform test_helpers.assert_refused($q$insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by)
    values ('a1000000-0000-4000-8000-00000000000a', 'planted', 'tnk_bbbbbbbb', sha256('planted'), 'ADMIN',
    'b1000000-0000-4000-8000-0000000000b1')$q$,
    'B planted a key in A');
  -- Audit events and quotas are not the request role's to write.
  perform test_helpers.assert_refused($q$update app.quotas set used = 0$q$,
    'quotas updated by the request role');
  perform test_helpers.assert_refused($q$delete from app.audit_events$q$,
    'audit events deleted by the request role');
  -- The secret hash is not readable, even of one's own keys.
  perform test_helpers.assert_refused($q$select secret_hash from app.api_keys$q$,
    'secret hashes readable');
  -- Operator functions refuse a non-operator.
  perform test_helpers.assert_refused($q$select app_private.operator_set_tenant_status('a1000000-0000-4000-8000-00000000000a', 'suspended', 'x')$q$,
    'a tenant ADMIN suspended a tenant', 'TO403');
end
$$;

-- 3. Tenant A: LEAD invites MEMBER or VIEWER only; MEMBER invites nobody.
select test_helpers.become('sql-life-a', 'a1000000-0000-4000-8000-0000000000a2');
do $$
begin
  insert into app.invitations (tenant_id, email, role, token_hash, invited_by, expires_at)
    values (app.current_tenant_id(), 'v@x.test', 'VIEWER', sha256('tni_v'), app.current_user_id(), now() + interval '1 day');
  perform test_helpers.assert_refused($q$insert into app.invitations (tenant_id, email, role, token_hash, invited_by, expires_at)
    values (app.current_tenant_id(), 'l@x.test', 'LEAD', sha256('tni_l'), app.current_user_id(), now() + interval '1 day')$q$,
    'a LEAD invited a LEAD');
  perform test_helpers.assert_refused($q$insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by)
    values (app.current_tenant_id(), 'too high', 'tnk_cccccccc', sha256('tnk_c'), 'ADMIN', app.current_user_id())$q$,
    'a LEAD created an ADMIN key');
  assert (select count(*) from app.api_keys) = 0, 'a LEAD sees keys of others';
end
$$;

select test_helpers.become('sql-life-a', 'a1000000-0000-4000-8000-0000000000a3');
do $$
begin
  perform test_helpers.assert_refused($q$insert into app.invitations (tenant_id, email, role, token_hash, invited_by, expires_at)
    values (app.current_tenant_id(), 'v2@x.test', 'VIEWER', sha256('tni_v2'), app.current_user_id(), now() + interval '1 day')$q$,
    'a MEMBER invited');
  assert (select count(*) from app.api_keys) = 1, 'a MEMBER does not see their own key';
end
$$;

-- 4. An API key request: the key's tenant, the lower role, and it cannot mint keys.
select role, api_key_id from app_private.begin_api_key_request(sha256('tnk_aaaaaaaa_secret'));
do $$
begin
  assert app.current_tenant_id() = 'a1000000-0000-4000-8000-00000000000a', 'the key did not select its tenant';
  assert app.current_member_role() = 'MEMBER', 'the key role is wrong';
  assert app.current_api_key_id() = 'a1000000-0000-4000-8000-00000000c001', 'the key id is not set';
  perform test_helpers.assert_refused($q$insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by)
    values (app.current_tenant_id(), 'child', 'tnk_dddddddd', sha256('tnk_d'), 'VIEWER', app.current_user_id())$q$,
    'a key minted a key');
end
$$;

-- 5. Unknown keys and keys for another tenant.
do $$
begin
  perform test_helpers.assert_refused($q$select app_private.begin_api_key_request(sha256('tnk_unknown'))$q$,
    'an unknown key was accepted', 'TN401');
  perform test_helpers.assert_refused($q$select app_private.begin_api_key_request(sha256('tnk_aaaaaaaa_secret'), 'sql-life-b')$q$,
    'a key entered another tenant', 'TN404');
end
$$;

-- 6. Accepting an invitation: outside any tenant, by the right email only.
select * from app_private.begin_platform_request('a1000000-0000-4000-8000-0000000000a3');
do $$
begin
  assert app.current_tenant_id() is null and app.current_api_key_id() is null and app.current_member_role() is null,
    'a platform request carries a tenant';
  assert (select count(*) from app.api_keys) + (select count(*) from app.invitations) = 0, 'a platform request sees tenant rows';
  perform test_helpers.assert_refused($q$select app_private.accept_invitation(sha256('tni_a'))$q$,
    'the wrong user accepted', 'TI404');
end
$$;
select * from app_private.begin_platform_request('c1000000-0000-4000-8000-0000000000c1');
select role from app_private.accept_invitation(sha256('tni_a'));
reset role;
do $$
begin
  assert (select role from app.memberships where tenant_id = 'a1000000-0000-4000-8000-00000000000a'
          and user_id = 'c1000000-0000-4000-8000-0000000000c1') = 'VIEWER', 'the invitation did not make a member';
  assert (select used from app.quotas where tenant_id = 'a1000000-0000-4000-8000-00000000000a' and quota = 'members') = 4,
    'the new member was not counted';
end
$$;

-- 7. The last ADMIN stays, even for the owner.
do $$
begin
  perform test_helpers.assert_refused($q$update app.memberships set role = 'LEAD'
    where tenant_id = 'b1000000-0000-4000-8000-00000000000b' and user_id = 'b1000000-0000-4000-8000-0000000000b1'$q$,
    'the last ADMIN was demoted', 'check_violation');
end
$$;

-- 8. Quotas: the sixth active session of a free tenant is refused with the figures.
insert into app.agents (tenant_id, id, name, kind, created_by) values
  ('a1000000-0000-4000-8000-00000000000a', 'a1000000-0000-4000-8000-0000000a9e01', 'runner', 'assistant', 'a1000000-0000-4000-8000-0000000000a3');
insert into app.sessions (tenant_id, agent_id, started_by)
  select 'a1000000-0000-4000-8000-00000000000a', 'a1000000-0000-4000-8000-0000000a9e01', 'a1000000-0000-4000-8000-0000000000a3'
  from generate_series(1, 5);
do $$
declare
  detail text;
begin
  insert into app.sessions (tenant_id, agent_id, started_by)
    values ('a1000000-0000-4000-8000-00000000000a', 'a1000000-0000-4000-8000-0000000a9e01', 'a1000000-0000-4000-8000-0000000000a3');
  raise exception 'a sixth active session started';
exception when sqlstate 'TQ001' then
  get stacked diagnostics detail = pg_exception_detail;
  assert detail::jsonb @> '{"quota": "active_sessions", "limit": 5, "used": 5}', 'wrong quota figures: ' || detail;
end
$$;

rollback;
