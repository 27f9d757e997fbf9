import { resolveCursorConnection } from '@pothos/plugin-relay';
import { badUserInput, forbidden, notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import type { GraphQLContext } from '../../graphql/context.ts';
import { decodeCursor, encodeCursor } from '../../graphql/cursor.ts';
import { idOfType } from '../../graphql/global-id.ts';
import { roleAtLeast } from '../../tenancy/roles.ts';
import { UserRef } from '../users/schema.ts';
import { createAgent, deleteAgent, findAgents, listAgents, updateAgent, type AgentInput, type AgentRow } from './repo.ts';

export const AgentRef = builder.loadableNode('Agent', {
  description: 'An AI agent configured by the tenant',
  id: { resolve: (agent: AgentRow) => agent.id },
  load: (ids: string[], context) => context.db.run((tx) => findAgents(tx, ids)),
  toKey: (agent: AgentRow) => agent.id,
  sort: true,
  fields: (t) => ({
    name: t.exposeString('name'),
    kind: t.exposeString('kind', { description: 'What the agent does, e.g. "assistant" or "coder"' }),
    description: t.exposeString('description'),
    createdBy: t.field({
      type: UserRef,
      nullable: true,
      description: 'Null once the creator has left the tenant',
      resolve: (agent) => agent.createdBy,
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.queryFields((t) => ({
  agents: t.connection({
    type: AgentRef,
    description: "The tenant's agents, oldest first (at most 100 a page, 20 by default)",
    authScopes: { viewer: true },
    resolve: (_root, args, context) =>
      resolveCursorConnection<Promise<AgentRow[]>>(
        { args, toCursor: (agent) => encodeCursor({ at: agent.position, id: agent.id }), defaultSize: 20, maxSize: 100 },
        ({ before, after, limit, inverted }) => {
          const page = { after: decodeCursor(after, 'after'), before: decodeCursor(before, 'before'), limit, inverted };
          return context.db.run((tx) => listAgents(tx, page));
        },
      ),
  }, { name: 'AgentConnection' }, { name: 'AgentEdge' }),
  agent: t.field({
    type: AgentRef,
    nullable: true,
    authScopes: { viewer: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args) => idOfType(args.id, 'Agent') ?? null,
  }),
}));

const CreateAgentInput = builder.inputType('CreateAgentInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    kind: t.string({ required: true }),
    description: t.string({ required: false }),
  }),
});

const UpdateAgentInput = builder.inputType('UpdateAgentInput', {
  description: 'Fields left out keep their value',
  fields: (t) => ({
    id: t.id({ required: true }),
    name: t.string({ required: false }),
    kind: t.string({ required: false }),
    description: t.string({ required: false }),
  }),
});

const DeleteAgentInput = builder.inputType('DeleteAgentInput', {
  fields: (t) => ({ id: t.id({ required: true }) }),
});

const AgentPayload = builder.objectRef<{ agent: AgentRow }>('AgentPayload').implement({
  fields: (t) => ({ agent: t.expose('agent', { type: AgentRef }) }),
});

const DeleteAgentPayload = builder.objectRef<{ deletedAgentId: string }>('DeleteAgentPayload').implement({
  fields: (t) => ({ deletedAgentId: t.exposeID('deletedAgentId') }),
});

builder.mutationFields((t) => ({
  createAgent: t.field({
    type: AgentPayload,
    description: 'MEMBER and above',
    authScopes: { member: true },
    args: { input: t.arg({ type: CreateAgentInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const { name, kind, description } = validAgentInput(input);
      // name and kind are required arguments: GraphQL has checked they are there.
      const agent = await context.db.run((tx) => createAgent(tx, { name: name!, kind: kind!, description: description ?? '' }));
      return { agent };
    },
  }),
  updateAgent: t.field({
    type: AgentPayload,
    description: 'LEAD and above: any agent; MEMBER: the agents they created',
    authScopes: { member: true },
    args: { input: t.arg({ type: UpdateAgentInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = await modifiableAgentId(context, input.id);
      const agent = await context.db.run((tx) => updateAgent(tx, id, validAgentInput(input)));
      if (!agent) throw notFound('Agent');
      return { agent };
    },
  }),
  deleteAgent: t.field({
    type: DeleteAgentPayload,
    description: 'LEAD and above: any agent; MEMBER: the agents they created',
    authScopes: { member: true },
    args: { input: t.arg({ type: DeleteAgentInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = await modifiableAgentId(context, input.id);
      if (!(await context.db.run((tx) => deleteAgent(tx, id)))) throw notFound('Agent');
      return { deletedAgentId: input.id };
    },
  }),
}));

/** The agent's uuid when this request may change it: NOT_FOUND when it cannot see it, FORBIDDEN when it sees but may not change it. */
async function modifiableAgentId(context: GraphQLContext, globalId: string): Promise<string> {
  const id = idOfType(globalId, 'Agent');
  const [agent] = id ? await context.db.run((tx) => findAgents(tx, [id])) : [];
  if (!agent) throw notFound('Agent');
  const { role } = await context.db.tenant();
  if (!roleAtLeast(role, 'LEAD') && agent.createdBy !== context.userId) {
    throw forbidden('A MEMBER can change only the agents they created');
  }
  return agent.id;
}

type AgentFields = { name?: string | null; kind?: string | null; description?: string | null };

/** Trims and checks what a client sent; the database checks the same rules again. */
function validAgentInput(input: AgentFields): Partial<AgentInput> {
  const name = input.name?.trim();
  const kind = input.kind?.trim();
  const description = input.description ?? undefined;
  if (name !== undefined && (name.length < 1 || name.length > 100)) throw badUserInput('name', 'must be 1 to 100 characters');
  if (kind !== undefined && !/^[a-z][a-z0-9_-]{0,39}$/.test(kind)) {
    throw badUserInput('kind', 'must be lowercase letters, digits, - or _ (at most 40), starting with a letter');
  }
  if (description !== undefined && description.length > 2000) throw badUserInput('description', 'must be at most 2000 characters');
  return { name, kind, description };
}
