-- The audit chain under RLS, independent of the GraphQL layer: a tenant's
-- ADMIN reads its own chain and signed checkpoints (another tenant's never),
-- nobody in a tenant updates or deletes an audit row, and the request role can
-- neither write the chain nor its heads or checkpoints, nor purge what is
-- within the tenant's retention. Appends chain themselves, without gaps.
-- Run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/audit_chain.sql (rolled back).

begin;
\ir include/helpers.sql

insert into app.tenants (id, slug, name) values
  ('d0000000-0000-4000-8000-00000000000a', 'sql-chain-a', 'SQL chain A'),
  ('d0000000-0000-4000-8000-00000000000b', 'sql-chain-b', 'SQL chain B');
insert into app.users (id, email) values
  ('d0000000-0000-4000-8000-0000000000a1', 'admin@sql-chain-a.test'),
  ('d0000000-0000-4000-8000-0000000000a2', 'lead@sql-chain-a.test'),
  ('d0000000-0000-4000-8000-0000000000b1', 'admin@sql-chain-b.test');
insert into app.memberships (tenant_id, user_id, role) values
  ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-0000000000a1', 'ADMIN'),
  ('d0000000-0000-4000-8000-00000000000a', 'd0000000-0000-4000-8000-0000000000a2', 'LEAD'),
  ('d0000000-0000-4000-8000-00000000000b', 'd0000000-0000-4000-8000-0000000000b1', 'ADMIN');
select set_config('app.request_id', 'sql-chain-request', true);
select app_private.record_audit('d0000000-0000-4000-8000-00000000000a', 'test.event', 'thing', n::text, '{}')
from generate_series(1, 3) n;
insert into app.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, jws)
  select tenant_id, 'checkpoint', seq, hash, now(), 'test', 'a.b.c' from app.audit_chain_heads where tenant_id = 'd0000000-0000-4000-8000-00000000000a';

-- The chain as written: seq 1.. without gaps, each linked to the one before, the request id kept.
do $$
begin
  assert (select array_agg(seq order by seq) from app.audit_events where tenant_id = 'd0000000-0000-4000-8000-00000000000a')
    = (select array_agg(n) from generate_series(1, (select count(*) from app.audit_events where tenant_id = 'd0000000-0000-4000-8000-00000000000a')) n),
    'seq has a gap';
  assert not exists (select 1 from app.audit_events e join app.audit_events p on p.tenant_id = e.tenant_id and p.seq = e.seq - 1
                     where e.tenant_id = 'd0000000-0000-4000-8000-00000000000a' and e.prev_hash <> p.hash), 'a link is broken';
  assert (select request_id from app.audit_events where tenant_id = 'd0000000-0000-4000-8000-00000000000a' and action = 'test.event' limit 1)
    = 'sql-chain-request', 'the request id was not kept';
  -- Not even the owner changes an event while the triggers are on.
  perform test_helpers.assert_refused($q$update app.audit_events set details = '{"x": 1}'$q$, 'the owner updated an audit event');
  perform test_helpers.assert_refused($q$delete from app.audit_events where tenant_id = 'd0000000-0000-4000-8000-00000000000a'$q$,
    'the owner deleted an audit event');
end
$$;

-- ADMIN of A: reads A's chain, head and checkpoints; writes none of them.
select test_helpers.become('sql-chain-a', 'd0000000-0000-4000-8000-0000000000a1');
do $$
begin
  assert (select count(*) from app.audit_events) > 3, 'admin cannot read its chain';
  assert (select count(*) from app.audit_events where tenant_id <> 'd0000000-0000-4000-8000-00000000000a') = 0, 'admin reads another tenant''s events';
  assert (select count(*) from app.audit_chain_heads) = 1, 'admin cannot read its chain head';
  assert (select count(*) from app.audit_checkpoints) = 1, 'admin cannot read its checkpoints';
  perform test_helpers.assert_refused($q$update app.audit_events set details = '{}'$q$, 'admin updated audit events');
  perform test_helpers.assert_refused($q$delete from app.audit_events$q$, 'admin deleted audit events');
  perform test_helpers.assert_refused($q$insert into app.audit_events (tenant_id, seq, prev_hash, hash, actor_kind, action, target_type, target_id)
    values (app.current_tenant_id(), 99, sha256(''), sha256(''), 'user', 'forged', 'thing', 'x')$q$, 'admin inserted an audit event');
  perform test_helpers.assert_refused($q$update app.audit_chain_heads set seq = 1$q$, 'admin rewrote its chain head');
  perform test_helpers.assert_refused($q$delete from app.audit_chain_heads$q$, 'admin deleted its chain head');
  perform test_helpers.assert_refused($q$delete from app.audit_checkpoints$q$, 'admin deleted its checkpoints');
  perform test_helpers.assert_refused($q$insert into app.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, jws)
    values (app.current_tenant_id(), 'checkpoint', 1, sha256(''), now(), 'k', 'a.b.c')$q$, 'admin planted a checkpoint');
  -- The chain's own functions are not the request role's.
  perform test_helpers.assert_refused($q$select app_private.record_audit(app.current_tenant_id(), 'forged', 'thing', 'x')$q$, 'admin called record_audit');
  perform test_helpers.assert_refused($q$select app_private.audit_event_hash(null, 1, now(), 'user', null, null, 'a', 'b', 'c', null, '{}', null, sha256(''))$q$,
    'admin called the hash function');
  -- The service's purge: only events past a retention the tenant has.
  perform test_helpers.assert_refused($q$select app_private.purge_audit_events('d0000000-0000-4000-8000-00000000000a', 1,
    (select hash from app.audit_events where seq = 1), now(), 'k', 'a.b.c')$q$, 'purged a tenant without retention', 'invalid_parameter_value', '22023');
end
$$;

-- LEAD of A: no audit rows at all.
select test_helpers.become('sql-chain-a', 'd0000000-0000-4000-8000-0000000000a2');
do $$
begin
  assert (select count(*) from app.audit_events) = 0, 'lead reads audit events';
  assert (select count(*) from app.audit_checkpoints) = 0, 'lead reads checkpoints';
end
$$;

-- ADMIN of B: nothing of A's.
select test_helpers.become('sql-chain-b', 'd0000000-0000-4000-8000-0000000000b1');
do $$
begin
  assert (select count(*) from app.audit_events where tenant_id = 'd0000000-0000-4000-8000-00000000000a') = 0, 'B reads A''s events';
  assert (select count(*) from app.audit_chain_heads where tenant_id = 'd0000000-0000-4000-8000-00000000000a') = 0, 'B reads A''s head';
  assert (select count(*) from app.audit_checkpoints where tenant_id = 'd0000000-0000-4000-8000-00000000000a') = 0, 'B reads A''s checkpoints';
end
$$;

-- No tenant: nothing.
reset role;
select set_config('app.tenant_id', '', true), set_config('app.user_id', '', true), set_config('app.role', '', true);
set local role tenancy_app;
do $$
begin
  assert (select count(*) from app.audit_events) = 0, 'audit events visible without a tenant';
  assert (select count(*) from app.audit_chain_heads) = 0, 'chain heads visible without a tenant';
  assert (select count(*) from app.audit_checkpoints) = 0, 'checkpoints visible without a tenant';
end
$$;

rollback;
