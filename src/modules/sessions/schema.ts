import { z } from 'zod';
import { badUserInput, notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import type { GraphQLContext } from '../../graphql/context.ts';
import { assertMayChange } from '../../graphql/permissions.ts';
import { NO_ROWS, nodeType, orderByArg } from '../../nodes/index.ts';
import { Agent } from '../agents/schema.ts';
import { UserRef } from '../users/schema.ts';
import { endSession, recordUsage, sessionConditions, sessions, startSession, type SessionFilter, type SessionRow } from './repo.ts';

export const SessionStatusEnum = builder.enumType('SessionStatus', {
  values: {
    ACTIVE: { value: 'active' },
    COMPLETED: { value: 'completed' },
    FAILED: { value: 'failed' },
    CANCELLED: { value: 'cancelled' },
  } as const,
});

const EndedSessionStatusEnum = builder.enumType('EndedSessionStatus', {
  values: { COMPLETED: { value: 'completed' }, FAILED: { value: 'failed' }, CANCELLED: { value: 'cancelled' } } as const,
});

export const Session = nodeType('Session', {
  table: sessions,
  byId: 'session',
  description: 'One run of an agent',
  fields: (t) => ({
    agent: Agent.relation(t, 'agentId'),
    status: t.expose('status', { type: SessionStatusEnum }),
    startedBy: t.field({ type: UserRef, nullable: true, resolve: (session) => session.startedBy }),
    startedAt: t.expose('startedAt', { type: 'DateTime' }),
    endedAt: t.expose('endedAt', { type: 'DateTime', nullable: true }),
    tokensUsed: t.exposeFloat('tokensUsed', { description: "The sum of its tasks' tokens" }),
    metadata: t.expose('metadata', { type: 'JSONObject' }),
  }),
});

const SessionFilterInput = builder.inputType('SessionFilter', {
  fields: (t) => ({
    status: t.field({ type: SessionStatusEnum, required: false }),
    agentId: t.id({ required: false }),
    startedAfter: t.field({ type: 'DateTime', required: false, description: 'Inclusive' }),
    startedBefore: t.field({ type: 'DateTime', required: false, description: 'Exclusive' }),
  }),
});

type SessionFilterArgs = { status?: SessionRow['status'] | null; agentId?: string | null; startedAfter?: Date | null; startedBefore?: Date | null } | null | undefined;

/** The filter in repository terms; an agent id that names no agent matches nothing. */
function sessionFilter(filter: SessionFilterArgs): SessionFilter | undefined {
  const agentId = filter?.agentId ? Agent.parseId(filter.agentId) : undefined;
  if (filter?.agentId && !agentId) return undefined;
  return {
    status: filter?.status ?? undefined,
    agentId,
    startedAfter: filter?.startedAfter ?? undefined,
    startedBefore: filter?.startedBefore ?? undefined,
  };
}

builder.queryFields((t) => ({
  sessions: t.field({
    type: Session.connection,
    description: "The tenant's sessions by start time (at most 100 a page, 20 by default)",
    authScopes: { viewer: true },
    args: { ...t.arg.connectionArgs(), filter: t.arg({ type: SessionFilterInput, required: false }), orderBy: orderByArg(t.arg) },
    resolve: Session.list((tx, args) => {
      const filter = sessionFilter(args.filter);
      return filter ? sessionConditions(tx, filter) : NO_ROWS;
    }),
  }),
}));

builder.objectFields(Agent.ref, (t) => ({
  sessions: Session.childList(t, {
    parentKey: 'agentId',
    description: "This agent's sessions by start time; batched across agents",
    args: { ...t.arg.connectionArgs(), status: t.arg({ type: SessionStatusEnum, required: false }), orderBy: orderByArg(t.arg) },
    where: (tx, args) => sessionConditions(tx, { status: args.status ?? undefined }),
  }),
}));

const metadata = z.record(z.string(), z.unknown()).refine((value) => Buffer.byteLength(JSON.stringify(value)) <= 16_384, 'must be at most 16 KiB');

const StartSessionInput = builder.inputType('StartSessionInput', {
  fields: (t) => ({
    agentId: t.id({ required: true }),
    metadata: t.field({ type: 'JSONObject', required: false, validate: metadata }),
  }),
});

const EndSessionInput = builder.inputType('EndSessionInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    status: t.field({ type: EndedSessionStatusEnum, required: true }),
  }),
});

const RecordUsageInput = builder.inputType('RecordUsageInput', {
  fields: (t) => ({
    sessionId: t.id({ required: true }),
    tokens: t.int({ required: true, validate: z.number().int().min(1, 'must be at least 1').max(100_000_000, 'must be at most 100000000') }),
  }),
});

const SessionPayload = builder.objectRef<{ session: SessionRow }>('SessionPayload').implement({
  fields: (t) => ({ session: t.expose('session', { type: Session.ref }) }),
});

builder.mutationFields((t) => ({
  startSession: t.field({
    type: SessionPayload,
    description: 'MEMBER and above; the agent must be active',
    authScopes: { member: true },
    args: { input: t.arg({ type: StartSessionInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const agentId = Agent.parseId(input.agentId);
      if (!agentId) throw notFound('Agent');
      return { session: await context.db.run((tx) => startSession(tx, agentId, input.metadata ?? {})) };
    },
  }),
  endSession: t.field({
    extensions: { memberOwnsOnly: true },
    type: SessionPayload,
    description: 'LEAD and above: any session; MEMBER: the sessions they started. Only an active session ends',
    authScopes: { member: true },
    args: { input: t.arg({ type: EndSessionInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const session = await activeSession(context, input.id, 'input.id');
      const ended = await context.db.run((tx) => endSession(tx, session.id, input.status));
      if (!ended) throw notFound('Session');
      return { session: ended };
    },
  }),
  recordUsage: t.field({
    extensions: { memberOwnsOnly: true },
    type: SessionPayload,
    description:
      "Adds tokens used outside any task to an active session. LEAD and above: any session; MEMBER: the sessions they started. QUOTA_EXCEEDED past the tenant's monthly token budget",
    authScopes: { member: true },
    args: { input: t.arg({ type: RecordUsageInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const session = await activeSession(context, input.sessionId, 'input.sessionId');
      const updated = await context.db.run((tx) => recordUsage(tx, session.id, input.tokens));
      if (!updated) throw notFound('Session');
      return { session: updated };
    },
  }),
}));

/** The active session this request may change: NOT_FOUND when it cannot see it, FORBIDDEN when not its own (below LEAD). */
async function activeSession(context: GraphQLContext, globalId: string, argument: string): Promise<SessionRow> {
  const session = await Session.find(context, globalId);
  await assertMayChange(context, session.startedBy, 'sessions');
  if (session.status !== 'active') throw badUserInput(argument, 'the session has already ended');
  return session;
}
