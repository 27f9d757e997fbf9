import type { Tx } from '../../db/pool.ts';
import type { Role } from '../../tenancy/roles.ts';

export type TenantSummary = { id: string; slug: string; name: string; status: 'active' | 'suspended' };
export type MembershipRow = { role: Role; tenant: TenantSummary };

/** The signed-in user's memberships in every tenant (their own rows only). */
export async function myMemberships(tx: Tx): Promise<MembershipRow[]> {
  const rows = await tx<(TenantSummary & { role: Role })[]>`
    select tenant_id as id, tenant_slug as slug, tenant_name as name, tenant_status as status, role
    from app_private.my_memberships()`;
  return rows.map(({ role, ...tenant }) => ({ role, tenant }));
}
