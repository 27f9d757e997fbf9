import type { Tx } from '../../db/pool.ts';
import { rethrowConstraint } from '../../db/errors.ts';
import { badUserInput, conflict } from '../../errors.ts';
import type { Position } from '../../graphql/cursor.ts';

export type AgentRow = {
  id: string;
  name: string;
  kind: string;
  description: string;
  createdBy: string | null;
  createdAt: Date;
  updatedAt: Date;
  /** created_at to the microsecond, for cursors. */
  position: string;
};

export type AgentInput = { name: string; kind: string; description: string };

const agentColumns = (tx: Tx) => tx`
  id, name, kind, description, created_by as "createdBy", created_at as "createdAt", updated_at as "updatedAt",
  to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as position`;

const constraints = {
  agents_name_key: () => conflict('An agent with this name already exists in the tenant'),
  agents_name_length: () => badUserInput('name', 'must be 1 to 100 characters'),
  agents_kind_format: () => badUserInput('kind', 'must be lowercase letters, digits, - or _ (at most 40), starting with a letter'),
  agents_description_length: () => badUserInput('description', 'must be at most 2000 characters'),
};

export type AgentPage = { after?: Position | undefined; before?: Position | undefined; limit: number; inverted: boolean };

/**
 * A page of the tenant's agents in creation order (RLS keeps it to the tenant).
 * Positions are compared as text cast in SQL: a timestamptz parameter would go
 * through a JS Date and lose the microseconds.
 */
export async function listAgents(tx: Tx, page: AgentPage): Promise<AgentRow[]> {
  const direction = page.inverted ? tx`desc` : tx`asc`;
  return tx<AgentRow[]>`
    select ${agentColumns(tx)} from app.agents
    where true
      ${page.after ? tx`and (created_at, id) > (${page.after.at}::text::timestamptz, ${page.after.id}::uuid)` : tx``}
      ${page.before ? tx`and (created_at, id) < (${page.before.at}::text::timestamptz, ${page.before.id}::uuid)` : tx``}
    order by created_at ${direction}, id ${direction}
    limit ${page.limit}`;
}

export async function findAgents(tx: Tx, ids: readonly string[]): Promise<AgentRow[]> {
  return tx<AgentRow[]>`select ${agentColumns(tx)} from app.agents where id = any(${tx.array([...ids], 2950)})`;
}

export async function createAgent(tx: Tx, input: AgentInput): Promise<AgentRow> {
  try {
    const [row] = await tx<AgentRow[]>`
      insert into app.agents (tenant_id, created_by, name, kind, description)
      values (app.current_tenant_id(), app.current_user_id(), ${input.name}, ${input.kind}, ${input.description})
      returning ${agentColumns(tx)}`;
    return row!;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Undefined when no row is visible and writable to this request (RLS). */
export async function updateAgent(tx: Tx, id: string, patch: Partial<AgentInput>): Promise<AgentRow | undefined> {
  try {
    const [row] = await tx<AgentRow[]>`
      update app.agents set
        name = coalesce(${patch.name ?? null}, name),
        kind = coalesce(${patch.kind ?? null}, kind),
        description = coalesce(${patch.description ?? null}, description)
      where id = ${id}
      returning ${agentColumns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

export async function deleteAgent(tx: Tx, id: string): Promise<boolean> {
  const rows = await tx`delete from app.agents where id = ${id} returning id`;
  return rows.length === 1;
}
