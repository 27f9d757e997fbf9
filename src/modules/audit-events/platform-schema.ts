// The platform log for platform operators: every use of the operator
// capability and every owner-side CLI change, newest first. Reading it is
// itself recorded there (audit.read). Works outside any tenant (`platform`).
import { z } from 'zod';
import { builder } from '../../graphql/builder.ts';
import { connectionType, keysetConnection } from '../../nodes/index.ts';
import { isUuid } from '../../tenancy/identifiers.ts';
import { platformAuditEvents, type PlatformAuditEventRow } from './repo.ts';

const PlatformAuditEventRef = builder.objectRef<PlatformAuditEventRow>('PlatformAuditEvent').implement({
  description: 'One use of the operator capability or one owner-side change (the CLI), recorded in its transaction',
  fields: (t) => ({
    id: t.exposeID('id'),
    seq: t.exposeFloat('seq', { description: "Its place in the platform's chain: gapless, in commit order (an integer)" }),
    occurredAt: t.expose('occurredAt', { type: 'DateTime' }),
    actor: t.exposeString('actor', { description: 'user:<id> for an operator, cli:<OS user> for the owner-side CLI' }),
    actorUserId: t.exposeID('actorUserId', { nullable: true }),
    action: t.exposeString('action', { description: 'tenant.create, tenant.suspend, member.add, operator.grant, audit.read, ...' }),
    targetTenantId: t.exposeID('targetTenantId', { nullable: true }),
    reason: t.exposeString('reason', { nullable: true }),
    details: t.expose('details', { type: 'JSONObject' }),
    requestId: t.exposeString('requestId', { nullable: true, description: 'The request that made it; null for the CLI' }),
  }),
});

const PlatformAuditEventConnection = connectionType('PlatformAuditEvent', PlatformAuditEventRef);

const uuid = (what: string) => z.string().refine(isUuid, `must be a ${what} id`);

const PlatformAuditEventFilterInput = builder.inputType('PlatformAuditEventFilter', {
  description: 'Every filter given must hold',
  fields: (t) => ({
    action: t.string({
      required: false,
      validate: z.string().max(100, 'must be at most 100 characters').regex(/^[a-z][a-z_]*(\.[a-z][a-z_]*)*$/, 'must be an action such as tenant.suspend'),
    }),
    tenantId: t.id({ required: false, description: 'The tenant it concerns', validate: uuid('tenant') }),
    actorUserId: t.id({ required: false, description: 'The operator who acted', validate: uuid('user') }),
    occurredAfter: t.field({ type: 'DateTime', required: false, description: 'Inclusive' }),
    occurredBefore: t.field({ type: 'DateTime', required: false, description: 'Exclusive' }),
  }),
});

builder.queryField('platformAuditEvents', (t) =>
  t.field({
    extensions: { platform: true },
    type: PlatformAuditEventConnection,
    description: 'Platform operators: the platform log, newest first (at most 100 a page, 20 by default). The read is audited',
    authScopes: { operator: true },
    args: { ...t.arg.connectionArgs(), filter: t.arg({ type: PlatformAuditEventFilterInput, required: false }) },
    resolve: (_root, args, context) => {
      const filter = {
        action: args.filter?.action ?? undefined,
        tenantId: args.filter?.tenantId?.toLowerCase() ?? undefined,
        actorUserId: args.filter?.actorUserId?.toLowerCase() ?? undefined,
        occurredAfter: args.filter?.occurredAfter ?? undefined,
        occurredBefore: args.filter?.occurredBefore ?? undefined,
      };
      return keysetConnection(args, (page) => context.db.run((tx) => platformAuditEvents(tx, filter, page)), true, 'bigint');
    },
  }),
);
