// The operator's functions (app_private.operator_*): each checks the
// capability in the database and records its use in the same transaction.
// They run in a platform transaction: no tenant is set, no tenant data is read.
import { isPgError } from '../../db/errors.ts';
import type { KeysetPage } from '../../nodes/keyset.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, conflict, forbidden, notFound } from '../../errors.ts';
import type { Plan } from '../../operator/repo.ts';
import type { Role } from '../../tenancy/roles.ts';

export type QuotaName =
  | 'active_sessions'
  | 'monthly_tokens'
  | 'agents'
  | 'members'
  | 'context_bytes'
  | 'requests_per_minute'
  | 'api_key_requests_per_minute';
export type QuotaUsage = { quota: QuotaName; used: number; limit: number | null; overridden: boolean };

export type PlatformTenantRow = {
  id: string;
  slug: string;
  name: string;
  status: 'active' | 'suspended';
  plan: Plan;
  createdAt: Date;
  suspendedAt: Date | null;
  suspendedReason: string | null;
  position: string;
  usage: QuotaUsage[];
};

export type Limits = Partial<Record<QuotaName, number | null>>;

const TENANT_COLUMNS = `id, slug, name, status, plan, created_at as "createdAt", suspended_at as "suspendedAt",
  suspended_reason as "suspendedReason", cursor_at as position, coalesce(usage, '[]') as usage`;

/** Operator-function errors in the contract's words. */
function operatorError(error: unknown): unknown {
  if (!isPgError(error)) return error;
  switch (error.code) {
    case 'TO403':
      return forbidden('Only platform operators may do this');
    case 'TO409':
      return conflict(`The ${error.message.replace(/^the /, '')}`);
    case 'P0002':
      return notFound('Tenant');
    case '23505':
      return error.constraint_name === 'tenants_slug_key' ? conflict('A tenant with this slug already exists') : error;
    case '23514':
      return error.constraint_name === 'tenants_slug_format' || error.constraint_name === 'tenants_slug_not_uuid'
        ? badUserInput('input.slug', 'must be 3 to 63 lowercase letters, digits or -, starting with a letter')
        : error;
    default:
      return error;
  }
}

async function operatorCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw operatorError(error);
  }
}

export function createTenant(tx: Tx, input: { slug: string; name: string; plan: Plan; reason: string | undefined }) {
  return operatorCall(async () => {
    const [row] = await tx<PlatformTenantRow[]>`
      select ${tx.unsafe(TENANT_COLUMNS)} from app_private.operator_create_tenant(${input.slug}, ${input.name}, ${input.plan}, ${input.reason ?? null})`;
    return row!;
  });
}

export function inviteFirstMember(tx: Tx, tenantId: string, input: { email: string; role: Role; tokenHash: Buffer; expiresAt: Date }) {
  return operatorCall(async () => {
    await tx`select app_private.operator_invite(${tenantId}, ${input.email}, ${input.role}, ${input.tokenHash}, ${input.expiresAt.toISOString()}::timestamptz)`;
  });
}

export function setTenantStatus(tx: Tx, tenantId: string, status: 'active' | 'suspended', reason: string | undefined) {
  return operatorCall(async () => {
    const [row] = await tx<PlatformTenantRow[]>`
      select ${tx.unsafe(TENANT_COLUMNS)} from app_private.operator_set_tenant_status(${tenantId}, ${status}, ${reason ?? null})`;
    return row!;
  });
}

export function setTenantLimits(tx: Tx, tenantId: string, plan: Plan | undefined, limits: Limits, reason: string | undefined) {
  return operatorCall(async () => {
    const [row] = await tx<PlatformTenantRow[]>`
      select ${tx.unsafe(TENANT_COLUMNS)}
      from app_private.operator_set_tenant_limits(${tenantId}, ${plan ?? null}, ${tx.json(limits)}, ${reason ?? null})`;
    return row!;
  });
}

export function listTenants(tx: Tx, status: 'active' | 'suspended' | undefined, page: KeysetPage) {
  return operatorCall(() =>
    tx<PlatformTenantRow[]>`
      select ${tx.unsafe(TENANT_COLUMNS)}
      from app_private.operator_tenants(${status ?? null}, ${page.after?.at ?? null}, ${page.after?.id ?? null},
                                        ${page.before?.at ?? null}, ${page.before?.id ?? null}, ${page.limit}, ${page.inverted})`,
  );
}

/** The request tenant's quotas (RLS: its own rows only); a request rate's use is its bucket's (app.request_rate_used). */
export async function tenantUsage(tx: Tx): Promise<QuotaUsage[]> {
  return tx<QuotaUsage[]>`
    select q.quota,
           (case
              when q.quota in ('requests_per_minute', 'api_key_requests_per_minute') then
                (select coalesce(max(app.request_rate_used(coalesce(q.limit_override, p.max_value), b.tokens, b.refilled_at)), 0)
                 from app.request_buckets b
                 where b.tenant_id = q.tenant_id and (b.api_key_id is null) = (q.quota = 'requests_per_minute'))
              when q.period is distinct from
                   (case when q.quota = 'monthly_tokens' then date_trunc('month', now() at time zone 'UTC')::date end)
                 then 0 else q.used end)::float8 as used,
           coalesce(q.limit_override, p.max_value)::float8 as "limit",
           q.limit_override is not null as overridden
    from app.quotas q join app.tenants t on t.id = q.tenant_id
    left join app.plan_limits p on p.plan = t.plan and p.quota = q.quota
    order by q.quota`;
}
