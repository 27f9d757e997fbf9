import { z } from 'zod';
import { notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import type { GraphQLContext } from '../../graphql/context.ts';
import { assertMayChange } from '../../graphql/permissions.ts';
import { createdRange, createdRangeFields, NO_ROWS, nodeType, orderByArg } from '../../nodes/index.ts';
import { Agent } from '../agents/schema.ts';
import { Session } from '../sessions/schema.ts';
import { UserRef } from '../users/schema.ts';
import { contextConditions, contexts, createContext, deleteContext, updateContext, type ContextRow } from './repo.ts';

const ContextKindEnum = builder.enumType('ContextKind', {
  values: { DOCUMENT: { value: 'document' }, MEMORY: { value: 'memory' }, NOTE: { value: 'note' } } as const,
});

export const Context = nodeType('Context', {
  table: contexts,
  byId: 'context',
  description: "An item of the tenant's knowledge store or an agent's memory",
  fields: (t) => ({
    kind: t.expose('kind', { type: ContextKindEnum }),
    title: t.exposeString('title'),
    content: t.exposeString('content'),
    contentBytes: t.exposeInt('contentBytes'),
    tags: t.exposeStringList('tags'),
    agent: Agent.optionalRelation(t, 'agentId'),
    session: Session.optionalRelation(t, 'sessionId'),
    createdBy: t.field({ type: UserRef, nullable: true, resolve: (item) => item.createdBy }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

const ContextFilterInput = builder.inputType('ContextFilter', {
  fields: (t) => ({
    kind: t.field({ type: ContextKindEnum, required: false }),
    tag: t.string({ required: false }),
    agentId: t.id({ required: false }),
    sessionId: t.id({ required: false }),
    ...createdRangeFields(t),
  }),
});

builder.queryFields((t) => ({
  contexts: t.field({
    type: Context.connection,
    description: "The tenant's knowledge, by creation time; `search` is full-text (web search syntax: words, \"phrases\", -exclusions, or)",
    authScopes: { viewer: true },
    args: {
      ...t.arg.connectionArgs(),
      search: t.arg.string({ required: false, validate: z.string().max(500, 'must be at most 500 characters') }),
      filter: t.arg({ type: ContextFilterInput, required: false }),
      orderBy: orderByArg(t.arg),
    },
    resolve: Context.list((tx, { search, filter }) => {
      const agentId = filter?.agentId ? Agent.parseId(filter.agentId) : undefined;
      const sessionId = filter?.sessionId ? Session.parseId(filter.sessionId) : undefined;
      if ((filter?.agentId && !agentId) || (filter?.sessionId && !sessionId)) return NO_ROWS;
      return contextConditions(tx, {
        search: search?.trim() || undefined,
        kind: filter?.kind ?? undefined,
        tag: filter?.tag ?? undefined,
        agentId,
        sessionId,
        ...createdRange(filter),
      });
    }),
  }),
}));

const title = z.string().trim().min(1, 'must be 1 to 300 characters').max(300, 'must be 1 to 300 characters');
const content = z.string().refine((value) => Buffer.byteLength(value) <= 1_048_576, 'must be at most 1 MiB');
const tags = z
  .array(z.string().trim().regex(/^[\p{L}\p{N}][\p{L}\p{N}_.:-]{0,49}$/u, 'each tag is 1 to 50 letters, digits, _ . : or -'))
  .max(32, 'at most 32 tags');

const CreateContextInput = builder.inputType('CreateContextInput', {
  fields: (t) => ({
    kind: t.field({ type: ContextKindEnum, required: true }),
    title: t.string({ required: true, validate: title }),
    content: t.string({ required: false, validate: content }),
    tags: t.stringList({ required: false, validate: tags }),
    agentId: t.id({ required: false }),
    sessionId: t.id({ required: false }),
  }),
});

const UpdateContextInput = builder.inputType('UpdateContextInput', {
  description: 'Fields left out keep their value',
  fields: (t) => ({
    id: t.id({ required: true }),
    title: t.string({ required: false, validate: title }),
    content: t.string({ required: false, validate: content }),
    tags: t.stringList({ required: false, validate: tags }),
  }),
});

const ContextIdInput = builder.inputType('ContextIdInput', { fields: (t) => ({ id: t.id({ required: true }) }) });

const ContextPayload = builder.objectRef<{ context: ContextRow }>('ContextPayload').implement({
  fields: (t) => ({ context: t.expose('context', { type: Context.ref }) }),
});

const DeleteContextPayload = builder.objectRef<{ deletedContextId: string }>('DeleteContextPayload').implement({
  fields: (t) => ({ deletedContextId: t.exposeID('deletedContextId') }),
});

builder.mutationFields((t) => ({
  createContext: t.field({
    type: ContextPayload,
    description: 'MEMBER and above',
    authScopes: { member: true },
    args: { input: t.arg({ type: CreateContextInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const agentId = input.agentId ? Agent.parseId(input.agentId) : null;
      const sessionId = input.sessionId ? Session.parseId(input.sessionId) : null;
      if (agentId === undefined) throw notFound('Agent');
      if (sessionId === undefined) throw notFound('Session');
      const created = await context.db.run((tx) =>
        createContext(tx, { kind: input.kind, title: input.title, content: input.content ?? '', tags: input.tags ?? [], agentId, sessionId }),
      );
      return { context: created };
    },
  }),
  updateContext: t.field({
    extensions: { memberOwnsOnly: true },
    type: ContextPayload,
    description: 'LEAD and above: any context; MEMBER: the contexts they created',
    authScopes: { member: true },
    args: { input: t.arg({ type: UpdateContextInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = await modifiableContextId(context, input.id);
      const patch = { title: input.title ?? undefined, content: input.content ?? undefined, tags: input.tags ?? undefined };
      const updated = await context.db.run((tx) => updateContext(tx, id, patch));
      if (!updated) throw notFound('Context');
      return { context: updated };
    },
  }),
  deleteContext: t.field({
    extensions: { memberOwnsOnly: true },
    type: DeleteContextPayload,
    description: 'LEAD and above: any context; MEMBER: the contexts they created. Refused while a fine-tuning job uses it',
    authScopes: { member: true },
    args: { input: t.arg({ type: ContextIdInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = await modifiableContextId(context, input.id);
      if (!(await context.db.run((tx) => deleteContext(tx, id)))) throw notFound('Context');
      return { deletedContextId: input.id };
    },
  }),
}));

async function modifiableContextId(context: GraphQLContext, globalId: string): Promise<string> {
  const row = await Context.find(context, globalId);
  await assertMayChange(context, row.createdBy, 'contexts');
  return row.id;
}
