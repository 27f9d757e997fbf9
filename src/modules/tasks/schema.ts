import { z } from 'zod';
import { notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import { keysetConnection, type ConnectionArgs } from '../../graphql/connection.ts';
import type { GraphQLContext } from '../../graphql/context.ts';
import { idOfType } from '../../graphql/global-id.ts';
import { createdRange, createdRangeFields, SortOrderEnum } from '../../graphql/lists.ts';
import { connectionNodeFields, detailColumns } from '../../graphql/selection.ts';
import { assertMayChange } from '../../graphql/permissions.ts';
import { childList } from '../../graphql/prefetch.ts';
import { isUuid } from '../../auth/tokens.ts';
import { SessionRef } from '../sessions/schema.ts';
import { UserRef } from '../users/schema.ts';
import { assignTask, createTask, findTasks, listTasks, listTasksOfSessions, updateTaskStatus, type TaskFilter, type TaskNode, type TaskRow } from './repo.ts';

export const TaskStatusEnum = builder.enumType('TaskStatus', {
  description: 'pending -> running | cancelled; running -> succeeded | failed | cancelled',
  values: {
    PENDING: { value: 'pending' },
    RUNNING: { value: 'running' },
    SUCCEEDED: { value: 'succeeded' },
    FAILED: { value: 'failed' },
    CANCELLED: { value: 'cancelled' },
  } as const,
});

export const TaskRef = builder.loadableNode('Task', {
  description: 'A unit of work inside a session',
  id: { resolve: (task: TaskNode) => task.id },
  load: (ids: string[], context): Promise<TaskNode[]> => context.db.run((tx) => findTasks(tx, ids)),
  toKey: (task: TaskNode) => task.id,
  sort: true,
  fields: (t) => ({
    session: t.field({ type: SessionRef, resolve: (task) => task.sessionId }),
    title: t.exposeString('title'),
    status: t.expose('status', { type: TaskStatusEnum }),
    input: t.field({ type: 'JSONObject', resolve: (task, _args, context) => detail(task, 'input', context) }),
    output: t.field({ type: 'JSONObject', nullable: true, resolve: (task, _args, context) => detail(task, 'output', context) }),
    tokens: t.exposeFloat('tokens'),
    assignee: t.field({ type: UserRef, nullable: true, resolve: (task, _args, context) => detail(task, 'assigneeId', context) }),
    createdBy: t.field({ type: UserRef, nullable: true, resolve: (task, _args, context) => detail(task, 'createdBy', context) }),
    createdAt: t.field({ type: 'DateTime', resolve: (task, _args, context) => detail(task, 'createdAt', context) }),
    updatedAt: t.field({ type: 'DateTime', resolve: (task, _args, context) => detail(task, 'updatedAt', context) }),
  }),
});

/** A column a list may have left out (see `column`); the loader reads whole rows (findTasks). */
const detail = detailColumns<TaskRow>((context, id): Promise<TaskRow> => TaskRef.getDataloader(context).load(id) as Promise<TaskRow>);

const TaskConnection = builder.connectionObject({ type: TaskRef, name: 'TaskConnection' }, { name: 'TaskEdge' });

const TaskFilterInput = builder.inputType('TaskFilter', {
  fields: (t) => ({
    status: t.field({ type: TaskStatusEnum, required: false }),
    sessionId: t.id({ required: false }),
    agentId: t.id({ required: false, description: "The tasks of this agent's sessions" }),
    assigneeId: t.id({ required: false, description: 'A user id' }),
    ...createdRangeFields(t),
  }),
});

builder.queryFields((t) => ({
  tasks: t.field({
    type: TaskConnection,
    description: "The tenant's tasks by creation time (at most 100 a page, 20 by default)",
    authScopes: { viewer: true },
    args: {
      ...t.arg.connectionArgs(),
      filter: t.arg({ type: TaskFilterInput, required: false }),
      orderBy: t.arg({ type: SortOrderEnum, required: false, defaultValue: 'oldest' }),
    },
    resolve: (_root, args, context, info) => {
      const sessionId = args.filter?.sessionId ? idOfType(args.filter.sessionId, 'Session') : undefined;
      const agentId = args.filter?.agentId ? idOfType(args.filter.agentId, 'Agent') : undefined;
      const assigneeId = args.filter?.assigneeId ?? undefined;
      // An id that names nothing of its kind matches no task.
      const impossible =
        (args.filter?.sessionId && !sessionId) || (args.filter?.agentId && !agentId) || (assigneeId !== undefined && !isUuid(assigneeId));
      const filter: TaskFilter = {
        status: args.filter?.status ?? undefined,
        sessionId,
        agentId,
        assigneeId,
        ...createdRange(args.filter),
      };
      const fields = connectionNodeFields(info);
      return keysetConnection(
        args,
        (page) => (impossible ? Promise.resolve([]) : context.db.run((tx) => listTasks(tx, filter, page, fields))),
        args.orderBy === 'newest',
      );
    },
  }),
  task: t.field({
    type: TaskRef,
    nullable: true,
    authScopes: { viewer: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args) => idOfType(args.id, 'Task') ?? null,
  }),
}));

type SessionTasksArgs = ConnectionArgs & { status?: TaskRow['status'] | null };

const sessionTasks = childList('Session', 'tasks', {
  rows: (tx, sessionIds, args: SessionTasksArgs, page, fields) => listTasksOfSessions(tx, sessionIds, { status: args.status ?? undefined }, page, fields),
  parentOf: (task) => task.sessionId,
});

builder.objectFields(SessionRef, (t) => ({
  tasks: t.field({
    type: TaskConnection,
    description: "This session's tasks, oldest first; batched across sessions",
    args: { ...t.arg.connectionArgs(), status: t.arg({ type: TaskStatusEnum, required: false }) },
    resolve: (session, args, context, info) => sessionTasks(session.id, args, context, info),
  }),
}));

const json64k = z.record(z.string(), z.unknown()).refine((value) => Buffer.byteLength(JSON.stringify(value)) <= 65_536, 'must be at most 64 KiB');
const userId = z.string().uuid('must be a user id');

const CreateTaskInput = builder.inputType('CreateTaskInput', {
  fields: (t) => ({
    sessionId: t.id({ required: true }),
    title: t.string({ required: true, validate: z.string().trim().min(1, 'must be 1 to 300 characters').max(300, 'must be 1 to 300 characters') }),
    input: t.field({ type: 'JSONObject', required: false, validate: json64k }),
    assigneeId: t.id({ required: false, description: 'A user id of a member of the tenant', validate: userId }),
  }),
});

const UpdateTaskStatusInput = builder.inputType('UpdateTaskStatusInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    status: t.field({ type: TaskStatusEnum, required: true }),
    output: t.field({ type: 'JSONObject', required: false, validate: json64k }),
    tokens: t.int({ required: false, description: 'Tokens the task has used so far', validate: z.number().int().min(0, 'must not be negative') }),
  }),
});

const AssignTaskInput = builder.inputType('AssignTaskInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    assigneeId: t.id({ required: false, description: 'A member of the tenant; null unassigns', validate: userId }),
  }),
});

const TaskPayload = builder.objectRef<{ task: TaskRow }>('TaskPayload').implement({
  fields: (t) => ({ task: t.expose('task', { type: TaskRef }) }),
});

builder.mutationFields((t) => ({
  createTask: t.field({
    type: TaskPayload,
    description: 'MEMBER and above; the session must be active',
    authScopes: { member: true },
    args: { input: t.arg({ type: CreateTaskInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const sessionId = idOfType(input.sessionId, 'Session');
      if (!sessionId) throw notFound('Session');
      const task = await context.db.run((tx) =>
        createTask(tx, { sessionId, title: input.title, input: input.input ?? {}, assigneeId: input.assigneeId ?? null }),
      );
      return { task };
    },
  }),
  updateTaskStatus: t.field({
    extensions: { memberOwnsOnly: true },
    type: TaskPayload,
    description: 'LEAD and above: any task; MEMBER: the tasks they created',
    authScopes: { member: true },
    args: { input: t.arg({ type: UpdateTaskStatusInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = await modifiableTaskId(context, input.id);
      const progress = { status: input.status, output: input.output ?? undefined, tokens: input.tokens ?? undefined };
      const task = await context.db.run((tx) => updateTaskStatus(tx, id, progress));
      if (!task) throw notFound('Task');
      return { task };
    },
  }),
  assignTask: t.field({
    extensions: { memberOwnsOnly: true },
    type: TaskPayload,
    description: 'LEAD and above: any task; MEMBER: the tasks they created',
    authScopes: { member: true },
    args: { input: t.arg({ type: AssignTaskInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = await modifiableTaskId(context, input.id);
      const task = await context.db.run((tx) => assignTask(tx, id, input.assigneeId ?? null));
      if (!task) throw notFound('Task');
      return { task };
    },
  }),
}));

async function modifiableTaskId(context: GraphQLContext, globalId: string): Promise<string> {
  const id = idOfType(globalId, 'Task');
  const [task] = id ? await context.db.run((tx) => findTasks(tx, [id])) : [];
  if (!task) throw notFound('Task');
  await assertMayChange(context, task.createdBy, 'tasks');
  return task.id;
}
