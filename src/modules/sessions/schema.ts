import { z } from 'zod';
import { badUserInput, notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import { keysetConnection, type ConnectionArgs } from '../../graphql/connection.ts';
import { idOfType } from '../../graphql/global-id.ts';
import { SortOrderEnum } from '../../graphql/lists.ts';
import { connectionNodeFields, detailColumns, objectFields } from '../../graphql/selection.ts';
import { assertMayChange } from '../../graphql/permissions.ts';
import { childList, prefetchChildren, prefetched, registerPrefetch } from '../../graphql/prefetch.ts';
import { findAgentOfSession, type AgentNode } from '../agents/repo.ts';
import { AgentRef } from '../agents/schema.ts';
import { UserRef } from '../users/schema.ts';
import {
  endSession,
  findSessions,
  listSessions,
  listSessionsOfAgents,
  recordUsage,
  startSession,
  type SessionFilter,
  type SessionNode,
  type SessionRow,
} from './repo.ts';

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

export const SessionRef = builder.loadableNode('Session', {
  description: 'One run of an agent',
  id: { resolve: (session: SessionNode) => session.id },
  load: (ids: string[], context): Promise<SessionNode[]> => context.db.run((tx) => findSessions(tx, ids)),
  toKey: (session: SessionNode) => session.id,
  sort: true,
  fields: (t) => ({
    agent: t.field({
      type: AgentRef,
      resolve: (session, _args, context, info) =>
        prefetched<AgentNode | undefined>(context, info, session.id)?.then((agent) => agent ?? session.agentId) ?? session.agentId,
    }),
    status: t.expose('status', { type: SessionStatusEnum }),
    startedBy: t.field({ type: UserRef, nullable: true, resolve: (session, _args, context) => detail(session, 'startedBy', context) }),
    startedAt: t.field({ type: 'DateTime', resolve: (session, _args, context) => detail(session, 'startedAt', context) }),
    endedAt: t.field({ type: 'DateTime', nullable: true, resolve: (session, _args, context) => detail(session, 'endedAt', context) }),
    tokensUsed: t.exposeFloat('tokensUsed', { description: "The sum of its tasks' tokens" }),
    metadata: t.field({ type: 'JSONObject', resolve: (session, _args, context) => detail(session, 'metadata', context) }),
  }),
});

/** A column a list may have left out (see `column`); the loader reads whole rows (findSessions). */
const detail = detailColumns<SessionRow>((context, id): Promise<SessionRow> => SessionRef.getDataloader(context).load(id) as Promise<SessionRow>);

export const SessionConnection = builder.connectionObject({ type: SessionRef, name: 'SessionConnection' }, { name: 'SessionEdge' });

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
  const agentId = filter?.agentId ? idOfType(filter.agentId, 'Agent') : undefined;
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
    type: SessionConnection,
    description: "The tenant's sessions by start time (at most 100 a page, 20 by default)",
    authScopes: { viewer: true },
    args: {
      ...t.arg.connectionArgs(),
      filter: t.arg({ type: SessionFilterInput, required: false }),
      orderBy: t.arg({ type: SortOrderEnum, required: false, defaultValue: 'oldest' }),
    },
    resolve: (_root, args, context, info) => {
      const filter = sessionFilter(args.filter);
      const fields = connectionNodeFields(info);
      return keysetConnection(
        args,
        (page) => (filter ? context.db.run((tx) => listSessions(tx, filter, page, fields)) : Promise.resolve([])),
        args.orderBy === 'newest',
      );
    },
  }),
  session: t.field({
    type: SessionRef,
    nullable: true,
    authScopes: { viewer: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, context, info) => {
      const id = idOfType(args.id, 'Session');
      if (id) prefetchChildren(context, info, 'Session', id);
      return id ?? null;
    },
  }),
}));

// `session(id) { agent }`: read with the session (src/graphql/prefetch.ts).
registerPrefetch('Session', 'agent', (context, sessionId, child) => context.db.run((tx) => findAgentOfSession(tx, sessionId, objectFields(child))));

type AgentSessionsArgs = ConnectionArgs & { status?: SessionRow['status'] | null; orderBy?: 'oldest' | 'newest' | null };

const agentSessions = childList('Agent', 'sessions', {
  rows: (tx, agentIds, args: AgentSessionsArgs, page, fields) => listSessionsOfAgents(tx, agentIds, { status: args.status ?? undefined }, page, fields),
  parentOf: (session) => session.agentId,
  newestFirst: (args) => args.orderBy === 'newest',
});

builder.objectFields(AgentRef, (t) => ({
  sessions: t.field({
    type: SessionConnection,
    description: "This agent's sessions by start time; batched across agents",
    args: {
      ...t.arg.connectionArgs(),
      status: t.arg({ type: SessionStatusEnum, required: false }),
      orderBy: t.arg({ type: SortOrderEnum, required: false, defaultValue: 'oldest' }),
    },
    resolve: (agent, args, context, info) => agentSessions(agent.id, args, context, info),
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
  fields: (t) => ({ session: t.expose('session', { type: SessionRef }) }),
});

builder.mutationFields((t) => ({
  startSession: t.field({
    type: SessionPayload,
    description: 'MEMBER and above; the agent must be active',
    authScopes: { member: true },
    args: { input: t.arg({ type: StartSessionInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const agentId = idOfType(input.agentId, 'Agent');
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
      const id = idOfType(input.id, 'Session');
      const [session] = id ? await context.db.run((tx) => findSessions(tx, [id])) : [];
      if (!session) throw notFound('Session');
      await assertMayChange(context, session.startedBy, 'sessions');
      if (session.status !== 'active') throw badUserInput('input.id', 'the session has already ended');
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
      const id = idOfType(input.sessionId, 'Session');
      const [session] = id ? await context.db.run((tx) => findSessions(tx, [id])) : [];
      if (!session) throw notFound('Session');
      await assertMayChange(context, session.startedBy, 'sessions');
      if (session.status !== 'active') throw badUserInput('input.sessionId', 'the session has already ended');
      const updated = await context.db.run((tx) => recordUsage(tx, session.id, input.tokens));
      if (!updated) throw notFound('Session');
      return { session: updated };
    },
  }),
}));
