// Refuses to serve with a request role that RLS would not hold: a superuser,
// a role with BYPASSRLS, or one that owns (or inherits the owner of) any table
// of tenant data, whose policies would then not apply to it unless forced.
import type { Sql } from './pool.ts';

export class UnsafeRequestRoleError extends Error {
  override name = 'UnsafeRequestRoleError';
}

export async function assertSafeRequestRole(sql: Sql): Promise<void> {
  const [role] = await sql<{ name: string; superuser: boolean; bypassrls: boolean; owns: string | null }[]>`
    select r.rolname as name, r.rolsuper as superuser, r.rolbypassrls as bypassrls,
           (select c.relname from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
             where n.nspname in ('app', 'app_private') and c.relkind in ('r', 'p', 'v', 'm')
               and pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE')
             limit 1) as owns
      from pg_catalog.pg_roles r where r.rolname = current_user`;
  if (!role) throw new UnsafeRequestRoleError('the request role is not in pg_roles');
  const reasons = [
    role.superuser ? 'is a superuser' : undefined,
    role.bypassrls ? 'has BYPASSRLS' : undefined,
    role.owns ? `owns (or acts as the owner of) ${role.owns}` : undefined,
  ].filter((reason) => reason !== undefined);
  if (reasons.length > 0) {
    throw new UnsafeRequestRoleError(`the request role ${role.name} ${reasons.join(', ')}: row-level security would not hold; connect as a role that owns nothing (DATABASE_APP_URL)`);
  }
}
