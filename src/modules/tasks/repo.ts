import { columns, type ColumnGroup } from '../../db/columns.ts';
import { rethrowConstraint } from '../../db/errors.ts';
import { idIn, parents } from '../../db/ids.ts';
import { conditions, keysetConditions, keysetOrder, positionSql, timeRange, type KeysetPage } from '../../db/keyset.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, notFound } from '../../errors.ts';

export type TaskStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export type TaskRow = {
  id: string;
  sessionId: string;
  title: string;
  status: TaskStatus;
  input: Record<string, unknown>;
  output: Record<string, unknown> | null;
  tokens: number;
  assigneeId: string | null;
  createdBy: string | null;
  createdAt: Date;
  updatedAt: Date;
  position: string;
};

/** A task as a list may read it: these columns always, the others when asked for. */
export type TaskNode = Pick<TaskRow, 'id' | 'sessionId' | 'title' | 'status' | 'tokens'> & Partial<TaskRow>;

export type TaskFilter = {
  status?: TaskStatus | undefined;
  sessionId?: string | undefined;
  /** Tasks of this agent's sessions. */
  agentId?: string | undefined;
  assigneeId?: string | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
};
export type NewTask = { sessionId: string; title: string; input: Record<string, unknown>; assigneeId: string | null };
export type TaskProgress = { status: TaskStatus; output?: Record<string, unknown> | undefined; tokens?: number | undefined };

type Json = Parameters<Tx['json']>[0];

const taskGroups: readonly ColumnGroup[] = [
  { fields: ['id', 'session', 'title', 'status', 'tokens'], sql: `id, session_id as "sessionId", title, status, tokens::float8 as tokens` },
  { fields: ['createdAt', 'updatedAt'], sql: `created_at as "createdAt", updated_at as "updatedAt"` },
  { fields: ['assignee', 'createdBy'], sql: `assignee_id as "assigneeId", created_by as "createdBy"` },
  { fields: ['input', 'output'], sql: `input, output` },
  { fields: ['cursor'], sql: positionSql('created_at') },
];
const taskColumns = (tx: Tx) => columns(tx, taskGroups);

const filterConditions = (tx: Tx, filter: TaskFilter) =>
  conditions(
    tx,
    filter.status && tx`and status = ${filter.status}`,
    filter.sessionId && tx`and session_id = ${filter.sessionId}`,
    filter.agentId && tx`and session_id in (select id from app.sessions where agent_id = ${filter.agentId})`,
    filter.assigneeId && tx`and assignee_id = ${filter.assigneeId}`,
    timeRange(tx, 'created_at', filter.createdAfter, filter.createdBefore),
  );

const constraints = {
  tasks_session_fkey: () => notFound('Session'),
  tasks_session_active: () => badUserInput('input.sessionId', 'the session is not active'),
  tasks_assignee_fkey: () => badUserInput('input.assigneeId', 'is not a member of the tenant'),
  tasks_status_transition: () =>
    badUserInput('input.status', 'not allowed from the current status (pending -> running | cancelled; running -> succeeded | failed | cancelled)'),
  tasks_input_size: () => badUserInput('input.input', 'must be at most 64 KiB'),
  tasks_output_size: () => badUserInput('input.output', 'must be at most 64 KiB'),
};

/** A page of the tenant's tasks, with the columns `fields` need. */
export async function listTasks(tx: Tx, filter: TaskFilter, page: KeysetPage, fields: ReadonlySet<string>): Promise<TaskNode[]> {
  return tx<TaskNode[]>`
    select ${columns(tx, taskGroups, fields)} from app.tasks
    where true ${filterConditions(tx, filter)} ${keysetConditions(tx, 'created_at', page)}
    ${keysetOrder(tx, 'created_at', page)}
    limit ${page.limit}`;
}

/** One page of tasks for each session, in one statement, with the columns `fields` need. */
export async function listTasksOfSessions(
  tx: Tx,
  sessionIds: readonly string[],
  filter: TaskFilter,
  page: KeysetPage,
  fields: ReadonlySet<string>,
): Promise<TaskNode[]> {
  return tx<TaskNode[]>`
    select t.* from ${parents(tx, sessionIds)}
    cross join lateral (
      select ${columns(tx, taskGroups, fields)} from app.tasks
      where session_id = parent.id ${filterConditions(tx, filter)} ${keysetConditions(tx, 'created_at', page)}
      ${keysetOrder(tx, 'created_at', page)}
      limit ${page.limit}
    ) t`;
}

export async function findTasks(tx: Tx, ids: readonly string[]): Promise<TaskRow[]> {
  return tx<TaskRow[]>`select ${taskColumns(tx)} from app.tasks where ${idIn(tx, 'id', ids)}`;
}

export async function createTask(tx: Tx, task: NewTask): Promise<TaskRow> {
  try {
    const [row] = await tx<TaskRow[]>`
      insert into app.tasks (tenant_id, session_id, title, input, assignee_id, created_by)
      values (app.current_tenant_id(), ${task.sessionId}, ${task.title}, ${tx.json(task.input as Json)}, ${task.assigneeId},
              app.current_user_id())
      returning ${taskColumns(tx)}`;
    return row!;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Undefined when no row is visible and writable to this request (RLS). */
export async function updateTaskStatus(tx: Tx, id: string, progress: TaskProgress): Promise<TaskRow | undefined> {
  try {
    const [row] = await tx<TaskRow[]>`
      update app.tasks set
        status = ${progress.status},
        output = coalesce(${progress.output ? tx.json(progress.output as Json) : null}, output),
        tokens = coalesce(${progress.tokens ?? null}, tokens)
      where id = ${id}
      returning ${taskColumns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

export async function assignTask(tx: Tx, id: string, assigneeId: string | null): Promise<TaskRow | undefined> {
  try {
    const [row] = await tx<TaskRow[]>`
      update app.tasks set assignee_id = ${assigneeId} where id = ${id} returning ${taskColumns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}
