import { rethrowConstraint } from '../../db/errors.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, conflict, notFound } from '../../errors.ts';
import { conditions, timeRange } from '../../nodes/keyset.ts';
import { table } from '../../nodes/table.ts';

export type ContextKind = 'document' | 'memory' | 'note';

export type ContextRow = {
  id: string;
  kind: ContextKind;
  title: string;
  content: string;
  tags: string[];
  agentId: string | null;
  sessionId: string | null;
  createdBy: string | null;
  createdAt: Date;
  updatedAt: Date;
  contentBytes: number;
};

export type ContextFilter = {
  search?: string | undefined;
  kind?: ContextKind | undefined;
  tag?: string | undefined;
  agentId?: string | undefined;
  sessionId?: string | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
};

export type NewContext = Pick<ContextRow, 'kind' | 'title' | 'content' | 'tags' | 'agentId' | 'sessionId'>;

export type ContextPatch = Partial<Pick<NewContext, 'title' | 'content' | 'tags'>>;

export const contexts = table<ContextRow>({
  name: 'app.contexts',
  columns: [
    { id: true, kind: true, title: true, contentBytes: true, tags: true, agentId: true, sessionId: true },
    { createdAt: true, updatedAt: true },
    { createdBy: true },
    { content: true },
  ],
  orderBy: 'created_at',
});

const constraints = {
  contexts_agent_fkey: () => notFound('Agent'),
  contexts_session_fkey: () => notFound('Session'),
  contexts_content_size: () => badUserInput('input.content', 'must be at most 1 MiB'),
  fine_tuning_job_contexts_context_fkey: () => conflict('A fine-tuning job uses this context'),
};

/** The conditions of a contexts list (`search` is full-text, web search syntax). */
export function contextConditions(tx: Tx, filter: ContextFilter) {
  return conditions(
    tx,
    filter.search && tx`and search @@ websearch_to_tsquery('english', ${filter.search})`,
    filter.kind && tx`and kind = ${filter.kind}`,
    filter.tag && tx`and tags @> array[${filter.tag}]::text[]`,
    filter.agentId && tx`and agent_id = ${filter.agentId}`,
    filter.sessionId && tx`and session_id = ${filter.sessionId}`,
    timeRange(tx, 'created_at', filter.createdAfter, filter.createdBefore),
  );
}

export async function createContext(tx: Tx, context: NewContext): Promise<ContextRow> {
  try {
    const [row] = await tx<ContextRow[]>`
      insert into app.contexts (tenant_id, kind, title, content, tags, agent_id, session_id, created_by)
      values (app.current_tenant_id(), ${context.kind}, ${context.title}, ${context.content}, ${tx.array(context.tags)}::text[],
              ${context.agentId}, ${context.sessionId}, app.current_user_id())
      returning ${contexts.columns(tx)}`;
    return row!;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Undefined when no row is visible and writable to this request (RLS). */
export async function updateContext(tx: Tx, id: string, patch: ContextPatch): Promise<ContextRow | undefined> {
  try {
    const [row] = await tx<ContextRow[]>`
      update app.contexts set
        title = coalesce(${patch.title ?? null}, title),
        content = coalesce(${patch.content ?? null}, content),
        tags = coalesce(${patch.tags ? tx.array(patch.tags) : null}::text[], tags)
      where id = ${id}
      returning ${contexts.columns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

export async function deleteContext(tx: Tx, id: string): Promise<boolean> {
  try {
    const rows = await tx`delete from app.contexts where id = ${id} returning id`;
    return rows.length === 1;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}
