import { builder } from '../../graphql/builder.ts';
import { myMemberships } from '../tenants/repo.ts';
import { MembershipRef, RoleEnum, TenantRef } from '../tenants/schema.ts';
import { UserRef } from '../users/schema.ts';

const ViewerRef = builder.objectRef<{ userId: string }>('Viewer').implement({
  description: 'Who is asking, in which tenant, with which role',
  fields: (t) => ({
    user: t.field({ type: UserRef, resolve: (viewer) => viewer.userId }),
    role: t.field({
      type: RoleEnum,
      description: 'The membership role in this tenant, lowered by a role claim',
      resolve: async (_viewer, _args, context) => (await context.identity.tenant()).role,
    }),
    tenant: t.field({ type: TenantRef, resolve: (_viewer, _args, context) => context.identity.tenant() }),
    memberships: t.field({
      type: [MembershipRef],
      description: 'Every tenant this user belongs to (select one with the X-Tenant-ID header)',
      resolve: (_viewer, _args, context) => context.db.run(myMemberships),
    }),
  }),
});

builder.queryField('viewer', (t) =>
  t.field({
    type: ViewerRef,
    authScopes: { viewer: true },
    resolve: async (_root, _args, context) => ({ userId: (await context.identity.principal()).userId }),
  }),
);
