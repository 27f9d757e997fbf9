import { columns, type ColumnGroup } from '../../db/columns.ts';
import { rethrowConstraint } from '../../db/errors.ts';
import { idIn } from '../../db/ids.ts';
import { conditions, keysetConditions, keysetOrder, positionSql, timeRange, type KeysetPage } from '../../db/keyset.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, conflict, notFound } from '../../errors.ts';

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
  position: string;
};

/** A context as a list may read it: these columns always, the others when asked for. */
export type ContextNode = Pick<ContextRow, 'id' | 'kind' | 'title' | 'contentBytes' | 'tags' | 'agentId' | 'sessionId'> &
  Partial<ContextRow>;

export type ContextFilter = {
  search?: string | undefined;
  kind?: ContextKind | undefined;
  tag?: string | undefined;
  agentId?: string | undefined;
  sessionId?: string | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
};

export type NewContext = {
  kind: ContextKind;
  title: string;
  content: string;
  tags: string[];
  agentId: string | null;
  sessionId: string | null;
};

export type ContextPatch = Partial<Pick<NewContext, 'title' | 'content' | 'tags'>>;

const contextGroups: readonly ColumnGroup[] = [
  {
    fields: ['id', 'kind', 'title', 'contentBytes', 'tags', 'agent', 'session'],
    sql: `
      id, kind, title, content_bytes as "contentBytes", tags, agent_id as "agentId", session_id as "sessionId"`,
  },
  { fields: ['createdAt', 'updatedAt'], sql: `created_at as "createdAt", updated_at as "updatedAt"` },
  { fields: ['createdBy'], sql: `created_by as "createdBy"` },
  { fields: ['content'], sql: `content` },
  { fields: ['cursor'], sql: positionSql('created_at') },
];
const contextColumns = (tx: Tx) => columns(tx, contextGroups);

const constraints = {
  contexts_agent_fkey: () => notFound('Agent'),
  contexts_session_fkey: () => notFound('Session'),
  contexts_content_size: () => badUserInput('input.content', 'must be at most 1 MiB'),
  fine_tuning_job_contexts_context_fkey: () => conflict('A fine-tuning job uses this context'),
};

/** A page of the tenant's contexts, with the columns `fields` need (a list of titles leaves the content out). */
export async function listContexts(tx: Tx, filter: ContextFilter, page: KeysetPage, fields: ReadonlySet<string>): Promise<ContextNode[]> {
  return tx<ContextNode[]>`
    select ${columns(tx, contextGroups, fields)} from app.contexts
    where true
      ${conditions(
        tx,
        filter.search && tx`and search @@ websearch_to_tsquery('english', ${filter.search})`,
        filter.kind && tx`and kind = ${filter.kind}`,
        filter.tag && tx`and tags @> array[${filter.tag}]::text[]`,
        filter.agentId && tx`and agent_id = ${filter.agentId}`,
        filter.sessionId && tx`and session_id = ${filter.sessionId}`,
        timeRange(tx, 'created_at', filter.createdAfter, filter.createdBefore),
      )}
      ${keysetConditions(tx, 'created_at', page)}
    ${keysetOrder(tx, 'created_at', page)}
    limit ${page.limit}`;
}

export async function findContexts(tx: Tx, ids: readonly string[]): Promise<ContextRow[]> {
  return tx<ContextRow[]>`select ${contextColumns(tx)} from app.contexts where ${idIn(tx, 'id', ids)}`;
}

export async function createContext(tx: Tx, context: NewContext): Promise<ContextRow> {
  try {
    const [row] = await tx<ContextRow[]>`
      insert into app.contexts (tenant_id, kind, title, content, tags, agent_id, session_id, created_by)
      values (app.current_tenant_id(), ${context.kind}, ${context.title}, ${context.content}, ${tx.array(context.tags)}::text[],
              ${context.agentId}, ${context.sessionId}, app.current_user_id())
      returning ${contextColumns(tx)}`;
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
      returning ${contextColumns(tx)}`;
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
