import { z } from 'zod';
import { notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import { keysetConnection } from '../../graphql/connection.ts';
import type { GraphQLContext } from '../../graphql/context.ts';
import { idOfType } from '../../graphql/global-id.ts';
import { createdRange, createdRangeFields, SortOrderEnum } from '../../graphql/lists.ts';
import { connectionNodeFields, detailColumns } from '../../graphql/selection.ts';
import { assertMayChange } from '../../graphql/permissions.ts';
import { AgentRef } from '../agents/schema.ts';
import { SessionRef } from '../sessions/schema.ts';
import { UserRef } from '../users/schema.ts';
import { createContext, deleteContext, findContexts, listContexts, updateContext, type ContextFilter, type ContextNode, type ContextRow } from './repo.ts';

const ContextKindEnum = builder.enumType('ContextKind', {
  values: { DOCUMENT: { value: 'document' }, MEMORY: { value: 'memory' }, NOTE: { value: 'note' } } as const,
});

export const ContextRef = builder.loadableNode('Context', {
  description: "An item of the tenant's knowledge store or an agent's memory",
  id: { resolve: (context: ContextNode) => context.id },
  load: (ids: string[], context): Promise<ContextNode[]> => context.db.run((tx) => findContexts(tx, ids)),
  toKey: (context: ContextNode) => context.id,
  sort: true,
  fields: (t) => ({
    kind: t.expose('kind', { type: ContextKindEnum }),
    title: t.exposeString('title'),
    content: t.string({ resolve: (item, _args, context) => detail(item, 'content', context) }),
    contentBytes: t.exposeInt('contentBytes'),
    tags: t.exposeStringList('tags'),
    agent: t.field({ type: AgentRef, nullable: true, resolve: (item) => item.agentId }),
    session: t.field({ type: SessionRef, nullable: true, resolve: (item) => item.sessionId }),
    createdBy: t.field({ type: UserRef, nullable: true, resolve: (item, _args, context) => detail(item, 'createdBy', context) }),
    createdAt: t.field({ type: 'DateTime', resolve: (item, _args, context) => detail(item, 'createdAt', context) }),
    updatedAt: t.field({ type: 'DateTime', resolve: (item, _args, context) => detail(item, 'updatedAt', context) }),
  }),
});

/** A column a list may have left out (see `column`); the loader reads whole rows (findContexts). */
const detail = detailColumns<ContextRow>((context, id): Promise<ContextRow> => ContextRef.getDataloader(context).load(id) as Promise<ContextRow>);

const ContextConnection = builder.connectionObject({ type: ContextRef, name: 'ContextConnection' }, { name: 'ContextEdge' });

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
    type: ContextConnection,
    description: "The tenant's knowledge, by creation time; `search` is full-text (web search syntax: words, \"phrases\", -exclusions, or)",
    authScopes: { viewer: true },
    args: {
      ...t.arg.connectionArgs(),
      search: t.arg.string({ required: false, validate: z.string().max(500, 'must be at most 500 characters') }),
      filter: t.arg({ type: ContextFilterInput, required: false }),
      orderBy: t.arg({ type: SortOrderEnum, required: false, defaultValue: 'oldest' }),
    },
    resolve: (_root, args, context, info) => {
      const agentId = args.filter?.agentId ? idOfType(args.filter.agentId, 'Agent') : undefined;
      const sessionId = args.filter?.sessionId ? idOfType(args.filter.sessionId, 'Session') : undefined;
      const impossible = (args.filter?.agentId && !agentId) || (args.filter?.sessionId && !sessionId);
      const filter: ContextFilter = {
        search: args.search?.trim() || undefined,
        kind: args.filter?.kind ?? undefined,
        tag: args.filter?.tag ?? undefined,
        agentId,
        sessionId,
        ...createdRange(args.filter),
      };
      const fields = connectionNodeFields(info);
      return keysetConnection(
        args,
        (page) => (impossible ? Promise.resolve([]) : context.db.run((tx) => listContexts(tx, filter, page, fields))),
        args.orderBy === 'newest',
      );
    },
  }),
  context: t.field({
    type: ContextRef,
    nullable: true,
    authScopes: { viewer: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args) => idOfType(args.id, 'Context') ?? null,
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
  fields: (t) => ({ context: t.expose('context', { type: ContextRef }) }),
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
      const agentId = input.agentId ? idOfType(input.agentId, 'Agent') : null;
      const sessionId = input.sessionId ? idOfType(input.sessionId, 'Session') : null;
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
  const id = idOfType(globalId, 'Context');
  const [row] = id ? await context.db.run((tx) => findContexts(tx, [id])) : [];
  if (!row) throw notFound('Context');
  await assertMayChange(context, row.createdBy, 'contexts');
  return row.id;
}
