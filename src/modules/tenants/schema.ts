import { builder } from '../../graphql/builder.ts';
import { ROLES } from '../../tenancy/roles.ts';
import type { MembershipRow, TenantSummary } from './repo.ts';

export const RoleEnum = builder.enumType('Role', {
  description: 'Tenant roles, each including the ones below it: ADMIN > LEAD > MEMBER > VIEWER',
  values: ROLES,
});

export const TenantStatusEnum = builder.enumType('TenantStatus', {
  values: { ACTIVE: { value: 'active' }, SUSPENDED: { value: 'suspended' } } as const,
});

export const TenantRef = builder.objectRef<TenantSummary>('Tenant').implement({
  description: 'An organization sharing this deployment; its data is visible to its members only',
  fields: (t) => ({
    id: t.exposeID('id'),
    slug: t.exposeString('slug'),
    name: t.exposeString('name'),
    status: t.expose('status', { type: TenantStatusEnum }),
  }),
});

export const MembershipRef = builder.objectRef<MembershipRow>('Membership').implement({
  fields: (t) => ({
    role: t.expose('role', { type: RoleEnum }),
    tenant: t.expose('tenant', { type: TenantRef }),
  }),
});

builder.queryField('tenant', (t) =>
  t.field({
    type: TenantRef,
    description: "The request's tenant",
    authScopes: { viewer: true },
    resolve: (_root, _args, context) => context.identity.tenant(),
  }),
);
