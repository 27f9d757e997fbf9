import { columns, type ColumnGroup } from '../../db/columns.ts';
import { rethrowConstraint } from '../../db/errors.ts';
import { idIn } from '../../db/ids.ts';
import { conditions, keysetConditions, keysetOrder, positionSql, timeRange, type KeysetPage } from '../../db/keyset.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, conflict } from '../../errors.ts';

export type AgentStatus = 'active' | 'archived';

export type AgentRow = {
  id: string;
  name: string;
  kind: string;
  description: string;
  model: string;
  config: Record<string, unknown>;
  status: AgentStatus;
  createdBy: string | null;
  createdAt: Date;
  updatedAt: Date;
  position: string;
};

/** An agent as a list may read it: these columns always, the others when asked for. */
export type AgentNode = Pick<AgentRow, 'id' | 'name' | 'kind' | 'status'> & Partial<AgentRow>;

export type AgentInput = { name: string; kind: string; description: string; model: string; config: Record<string, unknown> };
export type AgentFilter = { status?: AgentStatus | undefined; createdAfter?: Date | undefined; createdBefore?: Date | undefined };

const agentGroups: readonly ColumnGroup[] = [
  { fields: ['id', 'name', 'kind', 'status', 'sessions'], sql: `id, name, kind, status` },
  { fields: ['createdAt', 'updatedAt'], sql: `created_at as "createdAt", updated_at as "updatedAt"` },
  { fields: ['createdBy'], sql: `created_by as "createdBy"` },
  { fields: ['description', 'model', 'config'], sql: `description, model, config` },
  { fields: ['cursor'], sql: positionSql('created_at') },
];
const agentColumns = (tx: Tx) => columns(tx, agentGroups);

const constraints = {
  agents_name_key: () => conflict('An agent with this name already exists in the tenant'),
  agents_config_object: () => badUserInput('config', 'must be a JSON object of at most 16 KiB'),
};

/** A page of the tenant's agents by creation time (RLS keeps it to the tenant), with the columns `fields` need. */
export async function listAgents(tx: Tx, filter: AgentFilter, page: KeysetPage, fields: ReadonlySet<string>): Promise<AgentNode[]> {
  return tx<AgentNode[]>`
    select ${columns(tx, agentGroups, fields)} from app.agents
    where true
      ${conditions(tx, filter.status && tx`and status = ${filter.status}`, timeRange(tx, 'created_at', filter.createdAfter, filter.createdBefore))}
      ${keysetConditions(tx, 'created_at', page)}
    ${keysetOrder(tx, 'created_at', page)}
    limit ${page.limit}`;
}

export async function findAgents(tx: Tx, ids: readonly string[]): Promise<AgentRow[]> {
  return tx<AgentRow[]>`select ${agentColumns(tx)} from app.agents where ${idIn(tx, 'id', ids)}`;
}

/** The agent a session runs, read by the session's id, with the columns `fields` need. */
export async function findAgentOfSession(tx: Tx, sessionId: string, fields: ReadonlySet<string>): Promise<AgentNode | undefined> {
  const [row] = await tx<AgentNode[]>`
    select ${columns(tx, agentGroups, fields)} from app.agents where id = (select agent_id from app.sessions where id = ${sessionId}::uuid)`;
  return row;
}

export async function createAgent(tx: Tx, input: AgentInput): Promise<AgentRow> {
  try {
    const [row] = await tx<AgentRow[]>`
      insert into app.agents (tenant_id, created_by, name, kind, description, model, config)
      values (app.current_tenant_id(), app.current_user_id(), ${input.name}, ${input.kind}, ${input.description},
              ${input.model}, ${tx.json(input.config as Json)})
      returning ${agentColumns(tx)}`;
    return row!;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Undefined when no row is visible and writable to this request (RLS). */
export async function updateAgent(
  tx: Tx,
  id: string,
  patch: Partial<AgentInput> & { status?: AgentStatus | undefined },
): Promise<AgentRow | undefined> {
  try {
    const [row] = await tx<AgentRow[]>`
      update app.agents set
        name = coalesce(${patch.name ?? null}, name),
        kind = coalesce(${patch.kind ?? null}, kind),
        description = coalesce(${patch.description ?? null}, description),
        model = coalesce(${patch.model ?? null}, model),
        config = coalesce(${patch.config ? tx.json(patch.config as Json) : null}, config),
        status = coalesce(${patch.status ?? null}, status)
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

type Json = Parameters<Tx['json']>[0];
