// Tenant roles, highest first: ADMIN ⊃ LEAD ⊃ MEMBER ⊃ VIEWER.
export const ROLES = ['ADMIN', 'LEAD', 'MEMBER', 'VIEWER'] as const;
export type Role = (typeof ROLES)[number];

const RANK: Record<Role, number> = { ADMIN: 4, LEAD: 3, MEMBER: 2, VIEWER: 1 };

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export function roleAtLeast(role: Role, required: Role): boolean {
  return RANK[role] >= RANK[required];
}
