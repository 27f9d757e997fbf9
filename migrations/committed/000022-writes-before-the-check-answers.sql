--! Previous: sha1:ed2be907654a8bbecc79f879f97fdbd4369fd5f8
--! Hash: sha1:0e103076be3028dbf657d836472b23fec83d754d
--! Message: a write may be sent before the request check answers: the check raises TN409 unless it found the principal assumed

-- A write in one round trip: the service may send a write behind the request
-- check before the check has answered, having decided the write's permissions
-- with the principal the check gave this caller last time (its role, tenant,
-- acting user and key). The check's statement then also asks this function
-- whether the principal it found is the one assumed; when it is not, the
-- function raises TN409 and the transaction is aborted before the write runs
-- (the statements behind it fail, its COMMIT rolls back): the service runs the
-- request again, waiting for the check this time. So a write is never made on
-- a role, membership or key the database did not confirm in its own
-- transaction (DESIGN.md invariant 2: the role is read on every request).
create function app_private.expect_principal(matches boolean) returns boolean
  language plpgsql volatile set search_path = ''
  as $$
begin
  if matches is not true then
    raise exception 'the principal is not the one assumed' using errcode = 'TN409';
  end if;
  return true;
end
$$;
comment on function app_private.expect_principal(boolean) is
  'The request check''s guard for a write sent before the check answered (src/db/tenant-transaction.ts, `assume`): raises TN409 unless the principal the check found is the one the service assumed, so the write behind it never runs on an unconfirmed role.';
grant execute on function app_private.expect_principal(boolean) to :DATABASE_APP;
