import { columns, type ColumnGroup } from '../../db/columns.ts';
import { rethrowConstraint } from '../../db/errors.ts';
import { idIn, parents } from '../../db/ids.ts';
import { conditions, keysetConditions, keysetOrder, positionSql, timeRange, type KeysetPage } from '../../db/keyset.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, notFound } from '../../errors.ts';

export type SessionStatus = 'active' | 'completed' | 'failed' | 'cancelled';

export type SessionRow = {
  id: string;
  agentId: string;
  status: SessionStatus;
  startedBy: string | null;
  startedAt: Date;
  endedAt: Date | null;
  tokensUsed: number;
  metadata: Record<string, unknown>;
  position: string;
};

/** A session as a list may read it: these columns always, the others when asked for. */
export type SessionNode = Pick<SessionRow, 'id' | 'agentId' | 'status' | 'tokensUsed'> & Partial<SessionRow>;

export type SessionFilter = {
  status?: SessionStatus | undefined;
  agentId?: string | undefined;
  startedAfter?: Date | undefined;
  startedBefore?: Date | undefined;
};

type Json = Parameters<Tx['json']>[0];

const sessionGroups: readonly ColumnGroup[] = [
  { fields: ['id', 'agent', 'status', 'tokensUsed', 'tasks'], sql: `id, agent_id as "agentId", status, tokens_used::float8 as "tokensUsed"` },
  { fields: ['startedAt', 'endedAt'], sql: `started_at as "startedAt", ended_at as "endedAt"` },
  { fields: ['startedBy'], sql: `started_by as "startedBy"` },
  { fields: ['metadata'], sql: `metadata` },
  { fields: ['cursor'], sql: positionSql('started_at') },
];
const sessionColumns = (tx: Tx) => columns(tx, sessionGroups);

const filterConditions = (tx: Tx, filter: SessionFilter) =>
  conditions(
    tx,
    filter.status && tx`and status = ${filter.status}`,
    filter.agentId && tx`and agent_id = ${filter.agentId}`,
    timeRange(tx, 'started_at', filter.startedAfter, filter.startedBefore),
  );

const constraints = {
  sessions_agent_fkey: () => notFound('Agent'),
  sessions_agent_active: () => badUserInput('input.agentId', 'the agent is archived'),
  sessions_status_transition: () => badUserInput('input.id', 'the session has already ended'),
  sessions_metadata_object: () => badUserInput('input.metadata', 'must be a JSON object of at most 16 KiB'),
  sessions_usage_when_active: () => badUserInput('input.sessionId', 'the session has already ended'),
};

/** A page of the tenant's sessions, with the columns `fields` need. */
export async function listSessions(tx: Tx, filter: SessionFilter, page: KeysetPage, fields: ReadonlySet<string>): Promise<SessionNode[]> {
  return tx<SessionNode[]>`
    select ${columns(tx, sessionGroups, fields)} from app.sessions
    where true ${filterConditions(tx, filter)} ${keysetConditions(tx, 'started_at', page)}
    ${keysetOrder(tx, 'started_at', page)}
    limit ${page.limit}`;
}

/** One page of sessions for each agent, in one statement, with the columns `fields` need. */
export async function listSessionsOfAgents(
  tx: Tx,
  agentIds: readonly string[],
  filter: SessionFilter,
  page: KeysetPage,
  fields: ReadonlySet<string>,
): Promise<SessionNode[]> {
  return tx<SessionNode[]>`
    select s.* from ${parents(tx, agentIds)}
    cross join lateral (
      select ${columns(tx, sessionGroups, fields)} from app.sessions
      where agent_id = parent.id ${filterConditions(tx, filter)} ${keysetConditions(tx, 'started_at', page)}
      ${keysetOrder(tx, 'started_at', page)}
      limit ${page.limit}
    ) s`;
}

export async function findSessions(tx: Tx, ids: readonly string[]): Promise<SessionRow[]> {
  return tx<SessionRow[]>`select ${sessionColumns(tx)} from app.sessions where ${idIn(tx, 'id', ids)}`;
}

export async function startSession(tx: Tx, agentId: string, metadata: Record<string, unknown>): Promise<SessionRow> {
  try {
    const [row] = await tx<SessionRow[]>`
      insert into app.sessions (tenant_id, agent_id, started_by, metadata)
      values (app.current_tenant_id(), ${agentId}, app.current_user_id(), ${tx.json(metadata as Json)})
      returning ${sessionColumns(tx)}`;
    return row!;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Undefined when no row is visible and writable to this request (RLS). */
export async function endSession(tx: Tx, id: string, status: Exclude<SessionStatus, 'active'>): Promise<SessionRow | undefined> {
  try {
    const [row] = await tx<SessionRow[]>`
      update app.sessions set status = ${status}, ended_at = now() where id = ${id}
      returning ${sessionColumns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Adds tokens to the session and the tenant's monthly budget (QUOTA_EXCEEDED past it); undefined when not writable. */
export async function recordUsage(tx: Tx, id: string, tokens: number): Promise<SessionRow | undefined> {
  try {
    const [row] = await tx<SessionRow[]>`
      update app.sessions set tokens_used = tokens_used + ${tokens} where id = ${id}
      returning ${sessionColumns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}
