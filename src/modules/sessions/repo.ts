import { rethrowConstraint } from '../../db/errors.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, notFound } from '../../errors.ts';
import { conditions, timeRange } from '../../nodes/keyset.ts';
import { table } from '../../nodes/table.ts';

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
};

export type SessionFilter = {
  status?: SessionStatus | undefined;
  agentId?: string | undefined;
  startedAfter?: Date | undefined;
  startedBefore?: Date | undefined;
};

type Json = Parameters<Tx['json']>[0];

export const sessions = table<SessionRow>({
  name: 'app.sessions',
  columns: [
    { id: true, agentId: true, status: true, tokensUsed: 'tokens_used::float8' },
    { startedAt: true, endedAt: true },
    { startedBy: true },
    { metadata: true },
  ],
  orderBy: 'started_at',
});

/** The conditions of a sessions list (the tenant's, or an agent's). */
export const sessionConditions = (tx: Tx, filter: SessionFilter) =>
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

export async function startSession(tx: Tx, agentId: string, metadata: Record<string, unknown>): Promise<SessionRow> {
  try {
    const [row] = await tx<SessionRow[]>`
      insert into app.sessions (tenant_id, agent_id, started_by, metadata)
      values (app.current_tenant_id(), ${agentId}, app.current_user_id(), ${tx.json(metadata as Json)})
      returning ${sessions.columns(tx)}`;
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
      returning ${sessions.columns(tx)}`;
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
      returning ${sessions.columns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}
