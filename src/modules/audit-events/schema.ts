// The tenant's audit log for its ADMINs: every change to the tenant's state,
// one event each (written by the database in the change's transaction;
// migrations 000004, 000011, 000012), newest first, filtered by actor, action,
// target and time. Reading it changes nothing and is not itself an event.
import { z } from 'zod';
import { builder } from '../../graphql/builder.ts';
import { NO_ROWS, nodeType } from '../../nodes/index.ts';
import { isUuid } from '../../tenancy/identifiers.ts';
import { ApiKey } from '../api-keys/schema.ts';
import { UserRef } from '../users/schema.ts';
import { auditEventConditions, auditEvents, type AuditEventFilter } from './repo.ts';

const AuditActorKindEnum = builder.enumType('AuditActorKind', {
  values: {
    USER: { value: 'user', description: 'A signed-in member' },
    API_KEY: { value: 'api_key', description: 'An API key (actorUser: the member it acts for)' },
    OPERATOR: { value: 'operator', description: 'A platform operator (tenant lifecycle and limits)' },
    SYSTEM: { value: 'system', description: 'The service itself (idle sessions) or the owner-side CLI' },
  } as const,
});

export const AuditEvent = nodeType('AuditEvent', {
  table: auditEvents,
  description: "One change to the tenant's state, recorded in the transaction that made it",
  fields: (t) => ({
    seq: t.exposeFloat('seq', { description: "Its place in the tenant's chain: gapless, in commit order (an integer)" }),
    occurredAt: t.expose('occurredAt', { type: 'DateTime' }),
    actorKind: t.expose('actorKind', { type: AuditActorKindEnum }),
    actorUserId: t.exposeID('actorUserId', { nullable: true, description: 'The member, or the member an API key acts for; kept when they leave' }),
    actorUser: t.field({
      type: UserRef,
      nullable: true,
      description: 'Null once they are no longer a member (actorUserId stays)',
      extensions: { columns: ['actorUserId'] },
      resolve: (event) => event.actorUserId,
    }),
    actorApiKey: ApiKey.optionalRelation(t, 'actorApiKeyId', { description: 'The API key the change came with' }),
    action: t.exposeString('action', { description: 'What happened: agent.create, member.role_change, tenant.suspend, ...' }),
    targetType: t.exposeString('targetType', { description: 'What it happened to: agent, session, task, context, fine_tuning_job, api_key, invitation, user, tenant' }),
    targetId: t.exposeString('targetId', { description: "The target's own id (a uuid), as stored" }),
    reason: t.exposeString('reason', { nullable: true }),
    details: t.expose('details', { type: 'JSONObject', description: 'A small summary of what changed (never a secret, a body or a config)' }),
    requestId: t.exposeString('requestId', { nullable: true, description: "The request that made the change (its X-Request-Id); null outside a request" }),
  }),
});

const ACTION = /^[a-z][a-z_]*(\.[a-z][a-z_]*)*$/;
const TARGET_TYPE = /^[a-z][a-z_]*$/;

const AuditEventFilterInput = builder.inputType('AuditEventFilter', {
  description: 'Every filter given must hold',
  fields: (t) => ({
    actorKind: t.field({ type: AuditActorKindEnum, required: false }),
    actorUserId: t.id({ required: false, description: 'A user id (uuid)', validate: z.string().refine(isUuid, 'must be a user id') }),
    actorApiKeyId: t.id({ required: false, description: "An API key's id" }),
    action: t.string({
      required: false,
      description: 'Exactly this action',
      validate: z.string().max(100, 'must be at most 100 characters').regex(ACTION, 'must be an action such as agent.create'),
    }),
    targetType: t.string({
      required: false,
      validate: z.string().max(50, 'must be at most 50 characters').regex(TARGET_TYPE, 'must be a target type such as agent'),
    }),
    targetId: t.string({ required: false, description: 'As targetId shows it', validate: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters') }),
    occurredAfter: t.field({ type: 'DateTime', required: false, description: 'Inclusive' }),
    occurredBefore: t.field({ type: 'DateTime', required: false, description: 'Exclusive' }),
  }),
});

type FilterArgs = { [K in keyof AuditEventFilter]?: AuditEventFilter[K] | null } | null | undefined;

/** The filter in repository terms; an API key id that names no key matches nothing. */
function auditEventFilter(filter: FilterArgs): AuditEventFilter | undefined {
  const actorApiKeyId = filter?.actorApiKeyId ? ApiKey.parseId(filter.actorApiKeyId) : undefined;
  if (filter?.actorApiKeyId && !actorApiKeyId) return undefined;
  return {
    actorKind: filter?.actorKind ?? undefined,
    actorUserId: filter?.actorUserId?.toLowerCase() ?? undefined,
    actorApiKeyId,
    action: filter?.action ?? undefined,
    targetType: filter?.targetType ?? undefined,
    targetId: filter?.targetId ?? undefined,
    occurredAfter: filter?.occurredAfter ?? undefined,
    occurredBefore: filter?.occurredBefore ?? undefined,
  };
}

builder.queryField('auditEvents', (t) =>
  t.field({
    type: AuditEvent.connection,
    description: "ADMIN: the tenant's audit log, newest first (at most 100 a page, 20 by default)",
    authScopes: { admin: true },
    args: { ...t.arg.connectionArgs(), filter: t.arg({ type: AuditEventFilterInput, required: false }) },
    resolve: AuditEvent.list(
      (tx, args) => {
        const filter = auditEventFilter(args.filter);
        return filter ? auditEventConditions(tx, filter) : NO_ROWS;
      },
      { newestFirst: true },
    ),
  }),
);

