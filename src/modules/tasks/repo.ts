import { rethrowConstraint } from '../../db/errors.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, notFound } from '../../errors.ts';
import { conditions, timeRange } from '../../nodes/keyset.ts';
import { table, type ColumnChoice, type Listed } from '../../nodes/table.ts';

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
};

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

export const tasks = table<TaskRow>({
  name: 'app.tasks',
  columns: [
    { id: true, sessionId: true, title: true, status: true, tokens: 'tokens::float8' },
    { createdAt: true, updatedAt: true },
    { assigneeId: true, createdBy: true },
    { input: true, output: true },
  ],
  orderBy: 'created_at',
});

/** The conditions of a tasks list (the tenant's, or a session's). */
export const taskConditions = (tx: Tx, filter: TaskFilter) =>
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

// One constant text per column choice (prepared once per connection): a tagged template with a `returning`
// fragment was built and signed again on every call. It returns what the answer shows (`choice`, from the
// payload's selection): the whole row was 11 columns, two of them jsonb and two timestamps, parsed for `{ id title status }`.
const createTaskTexts = new Map<ColumnChoice, string>();
const createTaskText = (choice: ColumnChoice) => {
  let text = createTaskTexts.get(choice);
  if (text === undefined) {
    text = `insert into app.tasks (tenant_id, session_id, title, input, assignee_id, created_by)
            values (app.current_tenant_id(), $1, $2, $3, $4, app.current_user_id())
            returning ${tasks.columnsText(choice)}`;
    createTaskTexts.set(choice, text);
  }
  return text;
};

/** The new row with the columns `choice` reads (the whole row unless told). */
export async function createTask(tx: Tx, task: NewTask, choice: ColumnChoice = tasks.WHOLE): Promise<Listed<TaskRow>> {
  try {
    const [row] = await tx.unsafe<Listed<TaskRow>[]>(createTaskText(choice & tasks.WHOLE), [task.sessionId, task.title, tx.json(task.input as Json), task.assigneeId], { prepare: true });
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
      returning ${tasks.columns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

export async function assignTask(tx: Tx, id: string, assigneeId: string | null): Promise<TaskRow | undefined> {
  try {
    const [row] = await tx<TaskRow[]>`
      update app.tasks set assignee_id = ${assigneeId} where id = ${id} returning ${tasks.columns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}
