// The operator's path to the database: the owner connection, used by the CLI
// and the demo seed only. Never reachable from a GraphQL request.
import type { Queryable } from '../db/pool.ts';
import { isUuid } from '../auth/tokens.ts';
import type { Role } from '../tenancy/roles.ts';

export type Plan = 'free' | 'team' | 'enterprise';
export const PLANS: readonly Plan[] = ['free', 'team', 'enterprise'];
export type TenantRecord = { id: string; slug: string; name: string; status: string; plan: Plan; createdAt: Date };
export type UserRecord = { id: string; email: string; displayName: string };
export type MembershipRecord = { tenantId: string; userId: string; role: Role };

export class OperatorError extends Error {
  override name = 'OperatorError';
}

const TENANT_COLUMNS = 'id, slug, name, status, plan, created_at as "createdAt"';

export async function createTenant(sql: Queryable, slug: string, name: string, plan: Plan = 'free'): Promise<TenantRecord> {
  try {
    const [row] = await sql<TenantRecord[]>`
      insert into app.tenants (slug, name, plan) values (${slug}, ${name}, ${plan}) returning ${sql.unsafe(TENANT_COLUMNS)}`;
    return row!;
  } catch (error) {
    throw describe(error, { tenants_slug_key: `a tenant with slug "${slug}" already exists` });
  }
}

export async function listTenants(sql: Queryable): Promise<TenantRecord[]> {
  return sql<TenantRecord[]>`select ${sql.unsafe(TENANT_COLUMNS)} from app.tenants order by slug`;
}

/** A tenant by uuid or slug. */
export async function findTenant(sql: Queryable, idOrSlug: string): Promise<TenantRecord> {
  const [row] = isUuid(idOrSlug)
    ? await sql<TenantRecord[]>`select ${sql.unsafe(TENANT_COLUMNS)} from app.tenants where id = ${idOrSlug}`
    : await sql<TenantRecord[]>`select ${sql.unsafe(TENANT_COLUMNS)} from app.tenants where slug = ${idOrSlug}`;
  if (!row) throw new OperatorError(`no tenant "${idOrSlug}"`);
  return row;
}

export async function createUser(sql: Queryable, email: string, displayName: string): Promise<UserRecord> {
  try {
    const [row] = await sql<UserRecord[]>`
      insert into app.users (email, display_name) values (${email}, ${displayName})
      returning id, email, display_name as "displayName"`;
    return row!;
  } catch (error) {
    throw describe(error, { users_email_key: `a user with email "${email}" already exists` });
  }
}

/** A user by uuid or email. */
export async function findUser(sql: Queryable, idOrEmail: string): Promise<UserRecord> {
  const [row] = isUuid(idOrEmail)
    ? await sql<UserRecord[]>`select id, email, display_name as "displayName" from app.users where id = ${idOrEmail}`
    : await sql<UserRecord[]>`select id, email, display_name as "displayName" from app.users where lower(email) = lower(${idOrEmail})`;
  if (!row) throw new OperatorError(`no user "${idOrEmail}"`);
  return row;
}

/** Adds the user to the tenant, or changes their role there. */
export async function addMember(sql: Queryable, tenantId: string, userId: string, role: Role): Promise<MembershipRecord> {
  const [row] = await sql<MembershipRecord[]>`
    insert into app.memberships (tenant_id, user_id, role) values (${tenantId}, ${userId}, ${role})
    on conflict (tenant_id, user_id) do update set role = excluded.role
    returning tenant_id as "tenantId", user_id as "userId", role`;
  return row!;
}

export type OperatorGrant = { userId: string; email: string; operator: boolean };

/**
 * Grants or revokes the platform-operator capability and records it in the
 * operator audit log; pass a transaction to make both one change. `actor`
 * names who ran it.
 */
export async function setOperator(sql: Queryable, user: UserRecord, grant: boolean, actor: string, reason: string | undefined): Promise<OperatorGrant> {
  const changed = grant
    ? await sql`insert into app_private.operators (user_id, granted_by, reason) values (${user.id}, ${actor}, ${reason ?? null})
                on conflict (user_id) do nothing returning user_id`
    : await sql`delete from app_private.operators where user_id = ${user.id} returning user_id`;
  if (changed.length > 0) {
    await sql`insert into app_private.operator_audit_events (actor, action, reason, details)
              values (${actor}, ${grant ? 'operator.grant' : 'operator.revoke'}, ${reason ?? null},
                      ${sql.json({ userId: user.id, email: user.email })})`;
  }
  return { userId: user.id, email: user.email, operator: grant };
}

/** Constraint violations in operator words; anything else unchanged. */
function describe(error: unknown, messages: Record<string, string>): unknown {
  const { code, constraint_name: constraint } = error as { code?: string; constraint_name?: string };
  if (constraint && messages[constraint]) return new OperatorError(messages[constraint]);
  if (code === '23514') return new OperatorError(`invalid value (${constraint ?? 'check'} failed)`);
  return error;
}
