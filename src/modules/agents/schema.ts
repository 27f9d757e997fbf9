import { z } from 'zod';
import { notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import type { GraphQLContext } from '../../graphql/context.ts';
import { assertMayChange } from '../../graphql/permissions.ts';
import { createdRange, createdRangeFields, nodeType, orderByArg } from '../../nodes/index.ts';
import { UserRef } from '../users/schema.ts';
import { agentConditions, agents, createAgent, deleteAgent, updateAgent, type AgentRow } from './repo.ts';

export const AgentStatusEnum = builder.enumType('AgentStatus', {
  values: { ACTIVE: { value: 'active' }, ARCHIVED: { value: 'archived' } } as const,
});

export const Agent = nodeType('Agent', {
  table: agents,
  byId: 'agent',
  description: 'An AI agent configured by the tenant',
  fields: (t) => ({
    name: t.exposeString('name'),
    kind: t.exposeString('kind', { description: 'What the agent does, e.g. "assistant" or "coder"' }),
    description: t.exposeString('description'),
    model: t.exposeString('model', { description: 'The model the agent runs on' }),
    config: t.expose('config', { type: 'JSONObject' }),
    status: t.expose('status', { type: AgentStatusEnum, description: 'Archived agents start no sessions' }),
    createdBy: t.field({ type: UserRef, nullable: true, description: 'Null once the creator has left the tenant', resolve: (agent) => agent.createdBy }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

const AgentFilter = builder.inputType('AgentFilter', {
  fields: (t) => ({ status: t.field({ type: AgentStatusEnum, required: false }), ...createdRangeFields(t) }),
});

builder.queryFields((t) => ({
  agents: t.field({
    type: Agent.connection,
    description: "The tenant's agents by creation time (at most 100 a page, 20 by default)",
    authScopes: { viewer: true },
    args: { ...t.arg.connectionArgs(), filter: t.arg({ type: AgentFilter, required: false }), orderBy: orderByArg(t.arg) },
    resolve: Agent.list((tx, args) => agentConditions(tx, { status: args.filter?.status ?? undefined, ...createdRange(args.filter) })),
  }),
}));

const name = z.string().trim().min(1, 'must be 1 to 100 characters').max(100, 'must be 1 to 100 characters');
const kind = z.string().trim().regex(/^[a-z][a-z0-9_-]{0,39}$/, 'must be lowercase letters, digits, - or _ (at most 40), starting with a letter');
const description = z.string().max(2000, 'must be at most 2000 characters');
const model = z.string().trim().min(1, 'must be 1 to 200 characters').max(200, 'must be 1 to 200 characters');
const config = z.record(z.string(), z.unknown()).refine((value) => Buffer.byteLength(JSON.stringify(value)) <= 16_384, 'must be at most 16 KiB');

const CreateAgentInput = builder.inputType('CreateAgentInput', {
  fields: (t) => ({
    name: t.string({ required: true, validate: name }),
    kind: t.string({ required: true, validate: kind }),
    description: t.string({ required: false, validate: description }),
    model: t.string({ required: false, validate: model, description: 'Defaults to "default"' }),
    config: t.field({ type: 'JSONObject', required: false, validate: config }),
  }),
});

const UpdateAgentInput = builder.inputType('UpdateAgentInput', {
  description: 'Fields left out keep their value',
  fields: (t) => ({
    id: t.id({ required: true }),
    name: t.string({ required: false, validate: name }),
    kind: t.string({ required: false, validate: kind }),
    description: t.string({ required: false, validate: description }),
    model: t.string({ required: false, validate: model }),
    config: t.field({ type: 'JSONObject', required: false, validate: config }),
  }),
});

const AgentIdInput = builder.inputType('AgentIdInput', {
  fields: (t) => ({ id: t.id({ required: true }) }),
});

const AgentPayload = builder.objectRef<{ agent: AgentRow }>('AgentPayload').implement({
  fields: (t) => ({ agent: t.expose('agent', { type: Agent.ref }) }),
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
      const agent = await context.db.run((tx) =>
        createAgent(tx, {
          name: input.name,
          kind: input.kind,
          description: input.description ?? '',
          model: input.model ?? 'default',
          config: input.config ?? {},
        }),
      );
      return { agent };
    },
  }),
  updateAgent: t.field({
    extensions: { memberOwnsOnly: true },
    type: AgentPayload,
    description: 'LEAD and above: any agent; MEMBER: the agents they created',
    authScopes: { member: true },
    args: { input: t.arg({ type: UpdateAgentInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = await modifiableAgentId(context, input.id);
      const patch = {
        name: input.name ?? undefined,
        kind: input.kind ?? undefined,
        description: input.description ?? undefined,
        model: input.model ?? undefined,
        config: input.config ?? undefined,
      };
      const agent = await context.db.run((tx) => updateAgent(tx, id, patch));
      if (!agent) throw notFound('Agent');
      return { agent };
    },
  }),
  archiveAgent: t.field({
    type: AgentPayload,
    description: 'LEAD and above. An archived agent keeps its sessions and starts no new ones',
    authScopes: { lead: true },
    args: { input: t.arg({ type: AgentIdInput, required: true }) },
    resolve: (_root, { input }, context) => setAgentStatus(context, input.id, 'archived'),
  }),
  restoreAgent: t.field({
    type: AgentPayload,
    description: 'LEAD and above',
    authScopes: { lead: true },
    args: { input: t.arg({ type: AgentIdInput, required: true }) },
    resolve: (_root, { input }, context) => setAgentStatus(context, input.id, 'active'),
  }),
  deleteAgent: t.field({
    extensions: { memberOwnsOnly: true },
    type: DeleteAgentPayload,
    description: 'LEAD and above: any agent; MEMBER: the agents they created. Deletes its sessions and tasks too',
    authScopes: { member: true },
    args: { input: t.arg({ type: AgentIdInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = await modifiableAgentId(context, input.id);
      if (!(await context.db.run((tx) => deleteAgent(tx, id)))) throw notFound('Agent');
      return { deletedAgentId: input.id };
    },
  }),
}));

async function setAgentStatus(context: GraphQLContext, globalId: string, status: 'active' | 'archived') {
  const id = Agent.parseId(globalId);
  const agent = id ? await context.db.run((tx) => updateAgent(tx, id, { status })) : undefined;
  if (!agent) throw notFound('Agent');
  return { agent };
}

/** The agent's uuid when this request may change it: NOT_FOUND when it cannot see it, FORBIDDEN when it sees but may not change it. */
async function modifiableAgentId(context: GraphQLContext, globalId: string): Promise<string> {
  const agent = await Agent.find(context, globalId);
  await assertMayChange(context, agent.createdBy, 'agents');
  return agent.id;
}
