-- Helpers for the psql tests in test/sql. Each test includes this file right
-- after its `begin;` (test/sql.test.ts inlines it the way psql's \ir does):
--   \ir include/helpers.sql
-- Everything here belongs to the test's transaction and is rolled back with it.

create schema test_helpers;
grant usage on schema test_helpers to tenancy_app;

-- Acts as the request role in `tenant` (a slug) as `user_id`, the request
-- started exactly as the server starts one: app_private.begin_request, called
-- as the request role, with an optional role claim. Returns the role the
-- request holds. Call it again to switch user or tenant; `reset role` is the
-- owner again. (Not SECURITY DEFINER: those may not change the role.)
create function test_helpers.become(tenant text, user_id uuid, role_cap text default null) returns text
  language plpgsql
  as $$
declare
  granted text;
begin
  set local role tenancy_app;
  select r.role into granted from app_private.begin_request(null, tenant, user_id, role_cap) r;
  return granted;
end
$$;

-- Runs `statement` and raises `message` unless the statement is refused with
-- one of the `expected` errors (SQLSTATE codes such as TN404, or the names of
-- the privilege and integrity conditions); any other error goes up as it is. A
-- refused statement leaves nothing behind (its subtransaction rolls back).
create function test_helpers.assert_refused(statement text, message text,
                                            variadic expected text[] default array['insufficient_privilege'])
  returns void
  language plpgsql
  as $$
declare
  condition text;
begin
  begin
    execute statement;
  exception when others then
    condition := case SQLSTATE when '42501' then 'insufficient_privilege' when '23001' then 'restrict_violation'
                               when '23502' then 'not_null_violation' when '23503' then 'foreign_key_violation'
                               when '23505' then 'unique_violation' when '23514' then 'check_violation' end;
    if condition = any (expected) or SQLSTATE = any (expected) then
      return;
    end if;
    raise;
  end;
  raise exception '%', message;
end
$$;

-- Runs `statement` and returns how many rows it touched (0 when the policies hid them all).
create function test_helpers.row_count(statement text) returns bigint
  language plpgsql
  as $$
declare
  touched bigint;
begin
  execute statement;
  get diagnostics touched = row_count;
  return touched;
end
$$;

grant execute on all functions in schema test_helpers to tenancy_app;
