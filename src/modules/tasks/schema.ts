import { z } from 'zod';
import { notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import type { GraphQLContext } from '../../graphql/context.ts';
import { assertMayChange } from '../../graphql/permissions.ts';
import { createdRange, createdRangeFields, NO_ROWS, nodeType, orderByArg } from '../../nodes/index.ts';
import { isUuid } from '../../tenancy/identifiers.ts';
import { Agent } from '../agents/schema.ts';
import { Session } from '../sessions/schema.ts';
import { UserRef } from '../users/schema.ts';
import { assignTask, createTask, taskConditions, tasks, updateTaskStatus, type TaskRow } from './repo.ts';

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

export const Task = nodeType('Task', {
  table: tasks,
  byId: 'task',
  description: 'A unit of work inside a session',
  fields: (t) => ({
    session: Session.relation(t, 'sessionId'),
    title: t.exposeString('title'),
    status: t.expose('status', { type: TaskStatusEnum }),
    input: t.expose('input', { type: 'JSONObject' }),
    output: t.expose('output', { type: 'JSONObject', nullable: true }),
    tokens: t.exposeFloat('tokens'),
    assignee: t.field({ type: UserRef, nullable: true, extensions: { columns: ['assigneeId'] }, resolve: (task) => task.assigneeId }),
    createdBy: t.field({ type: UserRef, nullable: true, resolve: (task) => task.createdBy }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

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
    type: Task.connection,
    description: "The tenant's tasks by creation time (at most 100 a page, 20 by default)",
    authScopes: { viewer: true },
    args: { ...t.arg.connectionArgs(), filter: t.arg({ type: TaskFilterInput, required: false }), orderBy: orderByArg(t.arg) },
    resolve: Task.list((tx, { filter }) => {
      const sessionId = filter?.sessionId ? Session.parseId(filter.sessionId) : undefined;
      const agentId = filter?.agentId ? Agent.parseId(filter.agentId) : undefined;
      const assigneeId = filter?.assigneeId ?? undefined;
      // An id that names nothing of its kind matches no task.
      if ((filter?.sessionId && !sessionId) || (filter?.agentId && !agentId) || (assigneeId !== undefined && !isUuid(assigneeId))) return NO_ROWS;
      return taskConditions(tx, { status: filter?.status ?? undefined, sessionId, agentId, assigneeId, ...createdRange(filter) });
    }),
  }),
}));

builder.objectFields(Session.ref, (t) => ({
  tasks: Task.childList(t, {
    parentKey: 'sessionId',
    description: "This session's tasks, oldest first; batched across sessions",
    args: { ...t.arg.connectionArgs(), status: t.arg({ type: TaskStatusEnum, required: false }) },
    where: (tx, args) => taskConditions(tx, { status: args.status ?? undefined }),
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
  fields: (t) => ({ task: t.expose('task', { type: Task.ref }) }),
});

builder.mutationFields((t) => ({
  createTask: t.field({
    // Its insert is its last act that can fail: it may commit with it (src/graphql/operation.ts, 2 round trips).
    extensions: { commitsWithStatement: true },
    type: TaskPayload,
    description: 'MEMBER and above; the session must be active',
    authScopes: { member: true },
    args: { input: t.arg({ type: CreateTaskInput, required: true }) },
    resolve: async (_root, { input }, context, info) => {
      const sessionId = Session.parseId(input.sessionId);
      if (!sessionId) throw notFound('Session');
      // The columns `task { … }` shows, as a row read by id chooses them (a field the choice missed would be completed
      // from the whole row: a statement after the COMMIT sent with the insert, refused; the analysis sees every field).
      const choice = Task.payloadChoice(info, 'task');
      const task = await context.db.run((tx) =>
        createTask(tx, { sessionId, title: input.title, input: input.input ?? {}, assigneeId: input.assigneeId ?? null }, choice),
      );
      return { task: task as TaskRow };
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
  const task = await Task.find(context, globalId);
  await assertMayChange(context, task.createdBy, 'tasks');
  return task.id;
}
