// The operator's path to the database: the owner connection, used by the CLI
// and the demo seed only. Never reachable from a GraphQL request.
import type { Queryable } from '../db/pool.ts';
import type { ApiKeyRow } from '../modules/api-keys/repo.ts';
import { isUuid } from '../tenancy/identifiers.ts';
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
  try {
    const [row] = await sql<MembershipRecord[]>`
      insert into app.memberships (tenant_id, user_id, role) values (${tenantId}, ${userId}, ${role})
      on conflict (tenant_id, user_id) do update set role = excluded.role
      returning tenant_id as "tenantId", user_id as "userId", role`;
    return row!;
  } catch (error) {
    throw describe(error);
  }
}

export type MemberRecord = { email: string; displayName: string; role: Role; since: Date };

export async function listMembers(sql: Queryable, tenantId: string): Promise<MemberRecord[]> {
  return sql<MemberRecord[]>`
    select u.email, u.display_name as "displayName", m.role, m.created_at as since
    from app.memberships m join app.users u on u.id = m.user_id
    where m.tenant_id = ${tenantId}
    order by app.role_rank(m.role) desc, u.email`;
}

/** Removes the user from the tenant (their API keys stop working); a tenant's last ADMIN stays. */
export async function removeMember(sql: Queryable, tenant: TenantRecord, user: UserRecord): Promise<{ tenant: string; email: string; removed: true }> {
  try {
    const removed = await sql`delete from app.memberships where tenant_id = ${tenant.id} and user_id = ${user.id} returning 1`;
    if (removed.length === 0) throw new OperatorError(`${user.email} is not a member of ${tenant.slug}`);
    return { tenant: tenant.slug, email: user.email, removed: true };
  } catch (error) {
    throw describe(error, { memberships_keep_an_admin: `${user.email} is the last ADMIN of ${tenant.slug}: make another member ADMIN first` });
  }
}

/** An API key as the operator sees it: the request role's row, with the creator's email instead of their id, and a status. */
export type ApiKeyRecord = Omit<ApiKeyRow, 'createdBy'> & { createdBy: string | null; status: 'active' | 'expired' | 'revoked' };

const API_KEY_COLUMNS = `k.id, k.name, k.prefix, k.role, u.email as "createdBy", k.created_at as "createdAt",
  k.expires_at as "expiresAt", k.last_used_at as "lastUsedAt", k.revoked_at as "revokedAt",
  case when k.revoked_at is not null then 'revoked' when k.expires_at <= now() then 'expired' else 'active' end as status`;

export async function listApiKeys(sql: Queryable, tenantId: string): Promise<ApiKeyRecord[]> {
  return sql<ApiKeyRecord[]>`
    select ${sql.unsafe(API_KEY_COLUMNS)} from app.api_keys k left join app.users u on u.id = k.created_by
    where k.tenant_id = ${tenantId} order by k.created_at, k.id`;
}

/** Revokes a key of the tenant, named by id or by its prefix (tnk_xxxxxxxx). */
export async function revokeApiKey(sql: Queryable, tenant: TenantRecord, key: string): Promise<ApiKeyRecord> {
  const [found] = isUuid(key)
    ? await sql<{ id: string; revoked: boolean }[]>`select id, revoked_at is not null as revoked from app.api_keys where tenant_id = ${tenant.id} and id = ${key}`
    : await sql<{ id: string; revoked: boolean }[]>`select id, revoked_at is not null as revoked from app.api_keys where tenant_id = ${tenant.id} and prefix = ${key}`;
  if (!found) throw new OperatorError(`no API key "${key}" in ${tenant.slug} (name it by id or by prefix, as key list shows them)`);
  if (found.revoked) throw new OperatorError(`the API key ${key} is already revoked`);
  await sql`update app.api_keys set revoked_at = now() where tenant_id = ${tenant.id} and id = ${found.id}`;
  const [row] = await sql<ApiKeyRecord[]>`
    select ${sql.unsafe(API_KEY_COLUMNS)} from app.api_keys k left join app.users u on u.id = k.created_by
    where k.tenant_id = ${tenant.id} and k.id = ${found.id}`;
  return row!;
}

/**
 * Records an owner-side change (the CLI) in the platform log, by `actor`;
 * pass the change's transaction, so the change and its record commit
 * together or not at all. The tenant's own log records the change through
 * its triggers (API keys, memberships) or `recordTenantCreated`.
 */
export async function recordOwnerChange(sql: Queryable, actor: string, action: string, tenantId: string | null, details: Record<string, string>): Promise<void> {
  await sql`insert into app_private.operator_audit_events (actor, action, target_tenant_id, details)
            values (${actor}, ${action}, ${tenantId}, ${sql.json(details)})`;
}

/** The first event of a tenant created behind the API (the CLI): tenant.create in its own log, by the platform's owner. */
export async function recordTenantCreated(sql: Queryable, tenant: TenantRecord): Promise<void> {
  await sql`select app_private.record_audit(${tenant.id}, 'tenant.create', 'tenant', ${tenant.id}, ${sql.json({ plan: tenant.plan })}, null, 'operator')`;
}

export type TenantStatusRecord = TenantRecord & { suspendedAt: Date | null; suspendedReason: string | null };

/**
 * Suspends or reactivates a tenant, recorded in the operator audit log and the
 * tenant's own; pass a transaction to make it one change. `actor` names who ran it.
 */
export async function setTenantStatus(
  sql: Queryable,
  tenant: TenantRecord,
  status: 'active' | 'suspended',
  actor: string,
  reason: string | undefined,
): Promise<TenantStatusRecord> {
  if (tenant.status === status) throw new OperatorError(`${tenant.slug} is already ${status}`);
  const action = status === 'suspended' ? 'tenant.suspend' : 'tenant.reactivate';
  try {
    const [row] = await sql<TenantStatusRecord[]>`
      update app.tenants
      set status = ${status},
          suspended_at = case when ${status} = 'suspended' then now() end,
          suspended_reason = case when ${status} = 'suspended' then ${reason ?? null}::text end
      where id = ${tenant.id}
      returning ${sql.unsafe(TENANT_COLUMNS)}, suspended_at as "suspendedAt", suspended_reason as "suspendedReason"`;
    await sql`insert into app_private.operator_audit_events (actor, action, target_tenant_id, reason)
              values (${actor}, ${action}, ${tenant.id}, ${reason ?? null})`;
    await sql`select app_private.record_audit(${tenant.id}, ${action}, 'tenant', ${tenant.id}, '{}', ${reason ?? null}, 'operator')`;
    return row!;
  } catch (error) {
    throw describe(error);
  }
}

export type QuotaRecord = { quota: string; used: number; limit: number | null; overridden: boolean };

/** The tenant's usage against its limits, as operators see it (app_private.tenant_summary). */
export async function tenantUsage(sql: Queryable, tenant: TenantRecord): Promise<{ tenant: string; plan: Plan; status: string; usage: QuotaRecord[] }> {
  const [row] = await sql<{ usage: QuotaRecord[] | null }[]>`
    select usage from app_private.tenant_summary(${tenant.id}, null, null, null, null, null, 1, false)`;
  return { tenant: tenant.slug, plan: tenant.plan, status: tenant.status, usage: row?.usage ?? [] };
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

/** What each check constraint an operator can meet allows, in the CLI's words. */
const ALLOWED: Record<string, string> = {
  tenants_slug_format: 'a slug is 3 to 63 lowercase letters, digits or -, starting with a letter and ending with a letter or digit',
  tenants_slug_not_uuid: 'a slug cannot have the form of a uuid',
  tenants_name_length: 'a tenant name is 1 to 200 characters',
  tenants_suspended_reason_length: 'a reason is at most 500 characters',
  users_email_format: 'an email address is name@domain (no spaces), at most 320 characters',
  users_display_name_length: 'a display name is at most 200 characters',
  memberships_keep_an_admin: 'a tenant always keeps an ADMIN: make another member ADMIN first',
};

/** Constraint violations in operator words; anything else unchanged. */
function describe(error: unknown, messages: Record<string, string> = {}): unknown {
  const { code, constraint_name: constraint } = error as { code?: string; constraint_name?: string };
  if (constraint && messages[constraint]) return new OperatorError(messages[constraint]);
  if (code === '23514') return new OperatorError(constraint && ALLOWED[constraint] ? ALLOWED[constraint] : `not allowed (${constraint ?? 'a check'} failed)`);
  return error;
}
