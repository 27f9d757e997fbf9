// The Subscription type: live events of a session and its tasks, an agent's
// sessions, fine-tuning jobs and the tenant's members. Every event is
// { kind, id, node }: the node as the subscriber re-reads it in its own tenant
// transaction (null on DELETED), its global id, or RESYNC when events may have
// been missed. Each field checks what it follows when it starts (NOT_FOUND for
// what the subscriber cannot see, like the by-id queries) and names the rows
// it can see then (the newest SEED_ROWS, priced in the document's cost), so
// their deletion reaches it (engine.ts); with an API key, also when the key expires.
import { z } from 'zod';
import { notFound } from '../errors.ts';
import { builder } from '../graphql/builder.ts';
import type { GraphQLContext } from '../graphql/context.ts';
import { encodeGlobalId } from '../nodes/global-id.ts';
import { Agent } from '../modules/agents/schema.ts';
import { FineTuningJob } from '../modules/fine-tuning/schema.ts';
import { Member } from '../modules/members/schema.ts';
import { Session } from '../modules/sessions/schema.ts';
import { Task } from '../modules/tasks/schema.ts';
import { LiveSource, rowKey, type LivePayload, type LiveRow, type LiveScope } from './live.ts';
import { apiKeyExpiresIn, fineTuningJobIds, memberIds, sessionIdsOfAgent, taskIdsOfSession } from './repo.ts';

/**
 * Rows named at the start of a subscription (their deletion is reported): the newest page, as large as a
 * connection's largest page, and priced like one (SEED_PRICE) in the document's cost.
 */
export const SEED_ROWS = 100;
/** The start's statement and its rows, as graphql/prices.ts prices a `first: 100` page. */
const SEED_PRICE = { field: SEED_ROWS + 2, multiplier: 1 };
/** Ids one `fineTuningJobs(ids:)` subscription may name. */
export const MAX_FOLLOWED_IDS = 100;

const ChangeKindEnum = builder.enumType('ChangeKind', {
  description: 'What happened to the node of a live event',
  values: {
    CREATED: { description: 'The node was created (node is set)' },
    UPDATED: { description: 'The node changed (node is set, as it is now)' },
    DELETED: { description: 'The node was deleted or is no longer visible to you: only id is set. Sent only for nodes you could see' },
    RESYNC: { description: 'Events may have been missed (the service lost its database connection meanwhile): query again what you show. id and node are null' },
  } as const,
});

type Types = typeof builder.$inferSchemaTypes;
type EventFields = PothosSchemaTypes.ObjectFieldBuilder<Types, LivePayload>;

/** kind and id, the fields every event type has. */
function eventFields(t: EventFields) {
  return {
    kind: t.expose('kind', { type: ChangeKindEnum }),
    id: t.id({ nullable: true, description: "The node's global id (null on RESYNC)", resolve: (event) => (event.type && event.id ? encodeGlobalId(event.type, event.id) : null) }),
  };
}

function eventType(name: string, description: string, node: Parameters<EventFields['field']>[0]['type'], nodeDescription: string) {
  return builder.objectRef<LivePayload>(name).implement({
    description,
    fields: (t) => ({
      ...eventFields(t),
      node: t.field({ type: node, nullable: true, description: nodeDescription, resolve: (event) => event.row as never }),
    }),
  });
}

/** The node type a row was loaded as, for the union's resolveType. */
const typeOfRow = new WeakMap<object, string>();

const SessionActivityNode = builder.unionType('SessionActivityNode', {
  description: 'A session or one of its tasks',
  types: [Session.ref, Task.ref],
  resolveType: (row) => typeOfRow.get(row) as 'Session' | 'Task',
});

const SessionActivityEvent = builder.objectRef<LivePayload>('SessionActivityEvent').implement({
  description: 'A change to a session or one of its tasks (status, tokens, output as the agent works)',
  fields: (t) => ({
    ...eventFields(t),
    node: t.field({
      type: SessionActivityNode,
      nullable: true,
      description: 'The session or task as it is now; null on DELETED and RESYNC',
      resolve: (event) => {
        if (!event.row) return null;
        typeOfRow.set(event.row, event.type!);
        return event.row as never;
      },
    }),
  }),
});

const SessionEvent = eventType('SessionEvent', "A change to one of an agent's sessions", Session.ref, 'The session as it is now; null on DELETED and RESYNC');
const FineTuningJobEvent = eventType('FineTuningJobEvent', 'A change to a fine-tuning job (its progress)', FineTuningJob.ref, 'The job as it is now; null on DELETED and RESYNC');
const MemberEvent = eventType('MemberEvent', 'A member joined, changed role or left', Member.ref, 'The membership as it is now; null on DELETED and RESYNC');

const ids = z.array(z.string().max(200, 'must be at most 200 characters')).min(1, 'must name at least one id').max(MAX_FOLLOWED_IDS, `must name at most ${MAX_FOLLOWED_IDS} ids`);

/** The row a global id names, as the subscriber sees it now, or NOT_FOUND (another tenant's reads as one that does not exist). */
async function visible(context: GraphQLContext, node: { parseId(id: string): string | undefined; load(context: GraphQLContext, id: string): Promise<unknown> }, globalId: string, what: string): Promise<string> {
  const id = node.parseId(globalId);
  if (!id || !(await node.load(context, id))) throw notFound(what);
  return id;
}

/** The field's source; with an API key, also when that key expires (its stream ends then, like a token's at its exp). */
async function started(context: GraphQLContext, scope: LiveScope, seen: string[]): Promise<AsyncIterable<LivePayload>> {
  const { apiKeyId } = await context.identity.principal();
  const expiresIn = apiKeyId ? await context.db.run((tx) => apiKeyExpiresIn(tx)) : null;
  return new LiveSource(scope, seen, expiresIn === null ? undefined : Date.now() + expiresIn);
}
const event = (payload: LivePayload) => payload;

builder.subscriptionType({ description: 'Live events (README: Live events). Over SSE (Accept: text/event-stream) or WebSocket (graphql-ws)' });

builder.subscriptionFields((t) => ({
  sessionActivity: t.field({
    type: SessionActivityEvent,
    description: 'Changes to one session and its tasks. NOT_FOUND when you cannot see the session',
    authScopes: { viewer: true },
    complexity: SEED_PRICE,
    args: { sessionId: t.arg.id({ required: true, description: 'A Session id' }) },
    subscribe: async (_root, args, context) => {
      const sessionId = await visible(context, Session, args.sessionId, 'Session');
      const tasks = await context.db.run((tx) => taskIdsOfSession(tx, sessionId, SEED_ROWS));
      const scope: LiveScope = {
        types: ['Session', 'Task'],
        matches: (type, row) => (type === 'Session' ? row.id === sessionId : (row as LiveRow & { sessionId?: string }).sessionId === sessionId),
      };
      return started(context, scope, [rowKey('Session', sessionId), ...tasks.map((id) => rowKey('Task', id))]);
    },
    resolve: event,
  }),
  agentSessions: t.field({
    type: SessionEvent,
    description: "Sessions of one agent as they start, progress and end. NOT_FOUND when you cannot see the agent",
    authScopes: { viewer: true },
    complexity: SEED_PRICE,
    args: { agentId: t.arg.id({ required: true, description: 'An Agent id' }) },
    subscribe: async (_root, args, context) => {
      const agentId = await visible(context, Agent, args.agentId, 'Agent');
      const sessions = await context.db.run((tx) => sessionIdsOfAgent(tx, agentId, SEED_ROWS));
      const scope: LiveScope = { types: ['Session'], matches: (_type, row) => (row as LiveRow & { agentId?: string }).agentId === agentId };
      return started(context, scope, sessions.map((id) => rowKey('Session', id)));
    },
    resolve: event,
  }),
  fineTuningJobs: t.field({
    type: FineTuningJobEvent,
    description: `Fine-tuning jobs as they are created and progress: the ones named by ids (at most ${MAX_FOLLOWED_IDS}; NOT_FOUND for one you cannot see), or all of the tenant's`,
    authScopes: { viewer: true },
    complexity: SEED_PRICE,
    args: { ids: t.arg.idList({ required: false, description: `FineTuningJob ids, at most ${MAX_FOLLOWED_IDS}`, validate: ids }) },
    subscribe: async (_root, args, context) => {
      if (args.ids) {
        const followed = new Set<string>();
        for (const globalId of args.ids) followed.add(await visible(context, FineTuningJob, globalId, 'FineTuningJob'));
        const scope: LiveScope = { types: ['FineTuningJob'], matches: (_type, row) => followed.has(row.id) };
        return started(context, scope, [...followed].map((id) => rowKey('FineTuningJob', id)));
      }
      const jobs = await context.db.run((tx) => fineTuningJobIds(tx, SEED_ROWS));
      return started(context, { types: ['FineTuningJob'], matches: () => true }, jobs.map((id) => rowKey('FineTuningJob', id)));
    },
    resolve: event,
  }),
  members: t.field({
    type: MemberEvent,
    description: "The tenant's membership changes: members joining, changing role, leaving",
    authScopes: { viewer: true },
    complexity: SEED_PRICE,
    subscribe: async (_root, _args, context) => {
      const members = await context.db.run((tx) => memberIds(tx, SEED_ROWS));
      return started(context, { types: ['Member'], matches: () => true }, members.map((id) => rowKey('Member', id)));
    },
    resolve: event,
  }),
}));
