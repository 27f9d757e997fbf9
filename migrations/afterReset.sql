-- Runs as the root role after graphile-migrate resets a database (the shadow
-- database in development). The service creates the same role itself
-- (src/db/setup.ts); here it only has to exist for the migrations' grants.
do $$
begin
  create role :DATABASE_APP with login nosuperuser nobypassrls nocreatedb nocreaterole noinherit;
exception when duplicate_object then
  null;
end
$$;
