import { rethrowConstraint } from '../../db/errors.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, conflict } from '../../errors.ts';
import { conditions, timeRange } from '../../nodes/keyset.ts';
import { table } from '../../nodes/table.ts';

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
};

export type AgentInput = { name: string; kind: string; description: string; model: string; config: Record<string, unknown> };
export type AgentFilter = { status?: AgentStatus | undefined; createdAfter?: Date | undefined; createdBefore?: Date | undefined };

export const agents = table<AgentRow>({
  name: 'app.agents',
  columns: [
    { id: true, name: true, kind: true, status: true },
    { createdAt: true, updatedAt: true },
    { createdBy: true },
    { description: true, model: true, config: true },
  ],
  orderBy: 'created_at',
});

const constraints = {
  agents_name_key: () => conflict('An agent with this name already exists in the tenant'),
  agents_config_object: () => badUserInput('config', 'must be a JSON object of at most 16 KiB'),
};

/** The conditions of an agents list. */
export function agentConditions(tx: Tx, filter: AgentFilter) {
  return conditions(tx, filter.status && tx`and status = ${filter.status}`, timeRange(tx, 'created_at', filter.createdAfter, filter.createdBefore));
}

export async function createAgent(tx: Tx, input: AgentInput): Promise<AgentRow> {
  try {
    const [row] = await tx<AgentRow[]>`
      insert into app.agents (tenant_id, created_by, name, kind, description, model, config)
      values (app.current_tenant_id(), app.current_user_id(), ${input.name}, ${input.kind}, ${input.description},
              ${input.model}, ${tx.json(input.config as Json)})
      returning ${agents.columns(tx)}`;
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
      returning ${agents.columns(tx)}`;
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
