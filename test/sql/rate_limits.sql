-- Request rate buckets in plain SQL, as the request role: a tenant sees only
-- its own buckets and nobody writes them but app_private.take_request_tokens,
-- which never grants more than a bucket holds, refills it at the limit's pace
-- and takes unspent tokens back; app_private.resolve_request_tenants places an
-- identity only in a tenant it belongs to.
-- Run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f test/sql/rate_limits.sql (rolled back).

begin;
\ir include/helpers.sql

insert into app.tenants (id, slug, name, plan) values
  ('a3000000-0000-4000-8000-00000000000a', 'sql-rate-a', 'SQL rate A', 'free'),
  ('b3000000-0000-4000-8000-00000000000b', 'sql-rate-b', 'SQL rate B', 'free');
insert into app.users (id, email) values
  ('a3000000-0000-4000-8000-0000000000a1', 'admin@sql-rate-a.test'),
  ('b3000000-0000-4000-8000-0000000000b1', 'admin@sql-rate-b.test');
insert into app.memberships (tenant_id, user_id, role) values
  ('a3000000-0000-4000-8000-00000000000a', 'a3000000-0000-4000-8000-0000000000a1', 'ADMIN'),
  ('b3000000-0000-4000-8000-00000000000b', 'b3000000-0000-4000-8000-0000000000b1', 'ADMIN');
insert into app.api_keys (tenant_id, id, name, prefix, secret_hash, role, created_by, revoked_at) values
  ('a3000000-0000-4000-8000-00000000000a', 'a3000000-0000-4000-8000-00000000c001', 'ci', 'tnk_rateaaaa',
   sha256('tnk_rateaaaa_secret'), 'MEMBER', 'a3000000-0000-4000-8000-0000000000a1', null),
  ('a3000000-0000-4000-8000-00000000000a', 'a3000000-0000-4000-8000-00000000c002', 'old', 'tnk_ratebbbb',
   sha256('tnk_ratebbbb_secret'), 'MEMBER', 'a3000000-0000-4000-8000-0000000000a1', now());
-- A: 60 a minute (a bucket of 10), 30 a minute for each key (a bucket of 5); B keeps the free plan's 600 (100).
update app.quotas set limit_override = 60
  where tenant_id = 'a3000000-0000-4000-8000-00000000000a' and quota = 'requests_per_minute';
update app.quotas set limit_override = 30
  where tenant_id = 'a3000000-0000-4000-8000-00000000000a' and quota = 'api_key_requests_per_minute';

set local role tenancy_app;

-- 1. Leases: never more than the bucket holds; what is given back is leased again; buckets are separate.
do $$
declare
  a constant uuid := 'a3000000-0000-4000-8000-00000000000a';
  b constant uuid := 'b3000000-0000-4000-8000-00000000000b';
  key constant uuid := 'a3000000-0000-4000-8000-00000000c001';
  got int;
  grants int[];
  left_over double precision;
  per_minute bigint;
begin
  select t.granted, t.per_minute into got, per_minute from app_private.take_request_tokens(array[a], array[null::uuid], array[25]) t;
  assert got = 10 and per_minute = 60, format('A''s first lease: %s of a bucket of 10 (limit %s)', got, per_minute);
  select t.granted into got from app_private.take_request_tokens(array[a], array[null::uuid], array[5]) t;
  assert got = 0, format('A''s empty bucket granted %s', got);
  perform app_private.take_request_tokens(array[a], array[null::uuid], array[-4]);
  select t.granted into got from app_private.take_request_tokens(array[a], array[null::uuid], array[10]) t;
  assert got = 4, format('A got %s of the 4 tokens given back', got);
  -- One statement, several buckets, in any order: the key's own bucket, and B's, untouched by A's.
  select array_agg(t.granted order by t.ord) into grants
    from app_private.take_request_tokens(array[b, a], array[null::uuid, key], array[200, 9]) t;
  assert grants = array[100, 5], format('B''s bucket of 100 and the key''s of 5 granted %s', grants);
  select t.granted into got from app_private.take_request_tokens(array[a], array[key], array[9]) t;
  assert got = 0, format('the key''s bucket of 5 granted %s more', got);
  -- B refills at 10 a second.
  perform pg_sleep(0.35);
  select t.granted, t.remaining into got, left_over from app_private.take_request_tokens(array[b], array[null::uuid], array[50]) t;
  assert got between 2 and 6, format('B refilled %s tokens in 0.35 s at 10 a second', got);
  -- A tenant that does not exist is granted nothing.
  select t.granted into got from app_private.take_request_tokens(array['c3000000-0000-4000-8000-00000000000c'::uuid], array[null::uuid], array[5]) t;
  assert got = 0, 'a tenant that does not exist was granted tokens';
end
$$;

-- 2. No tenant: no bucket visible; nobody writes a bucket directly.
do $$
begin
  perform test_helpers.assert_nothing_visible('no tenant');
  perform test_helpers.assert_refused($q$update app.request_buckets set tokens = 1e9$q$, 'a bucket was refilled by hand');
  perform test_helpers.assert_refused($q$delete from app.request_buckets$q$, 'a bucket was deleted');
  perform test_helpers.assert_refused($q$insert into app.request_buckets (tenant_id, tokens, refilled_at)
    values ('b3000000-0000-4000-8000-00000000000b', 1e9, now())$q$, 'a bucket was planted');
end
$$;

-- 3. In A: A's buckets only (its own and its key's), still not writable.
select test_helpers.become('sql-rate-a', 'a3000000-0000-4000-8000-0000000000a1');
do $$
begin
  perform test_helpers.assert_only_own_tenant('A');
  assert (select count(*) from app.request_buckets) = 2, 'A does not see its two buckets';
  perform test_helpers.assert_refused($q$update app.request_buckets set tokens = 1e9$q$, 'A refilled its bucket');
  -- What usage shows: A's bucket is spent (of 60 a minute, most is used).
  assert (select app.request_rate_used(60, b.tokens, b.refilled_at) from app.request_buckets b where b.api_key_id is null) >= 50,
    'a spent bucket does not show as used';
end
$$;

-- 4. Identities: placed only in a tenant they belong to.
do $$
declare
  placed uuid[];
begin
  select array_agg(r.tenant_id order by r.ord) into placed from app_private.resolve_request_tenants(
    array['a3000000-0000-4000-8000-0000000000a1', 'a3000000-0000-4000-8000-0000000000a1',
          'b3000000-0000-4000-8000-0000000000b1', null, null, null, null]::uuid[],
    array['a3000000-0000-4000-8000-00000000000a', null, 'a3000000-0000-4000-8000-00000000000a', null, null, null, null]::uuid[],
    array[null, 'sql-rate-a', null, null, 'sql-rate-b', null, null]::text[],
    array[null, null, null, sha256('tnk_rateaaaa_secret'), sha256('tnk_rateaaaa_secret'), sha256('tnk_ratebbbb_secret'),
          sha256('unknown')]::bytea[]) r;
  assert placed = array['a3000000-0000-4000-8000-00000000000a', 'a3000000-0000-4000-8000-00000000000a', null,
                        'a3000000-0000-4000-8000-00000000000a', null, null, null]::uuid[],
    format('placed %s: a member by id and by slug, a stranger nowhere, a key in its tenant only, a revoked or unknown key nowhere', placed);
  assert (select r.api_key_id from app_private.resolve_request_tenants(array[null]::uuid[], array[null]::uuid[], array[null]::text[],
          array[sha256('tnk_rateaaaa_secret')]) r) = 'a3000000-0000-4000-8000-00000000c001', 'the key is not named';
end
$$;

reset role;
update app.tenants set status = 'suspended', suspended_at = now() where id = 'a3000000-0000-4000-8000-00000000000a';
set local role tenancy_app;
do $$
begin
  assert (select r.tenant_id from app_private.resolve_request_tenants(array['a3000000-0000-4000-8000-0000000000a1']::uuid[],
          array['a3000000-0000-4000-8000-00000000000a']::uuid[], array[null]::text[], array[null]::bytea[]) r) is null,
    'a suspended tenant placed its member';
end
$$;

rollback;
