// The rows a subscriber can see when its subscription starts, so that it
// hears of their deletion later (engine.ts keeps them in its seen set). Read
// in the subscriber's own tenant transaction: RLS decides, as for any query.
import type { Tx } from '../db/pool.ts';

type Ids = { id: string }[];

/** The newest `limit` tasks of a session. */
export async function taskIdsOfSession(tx: Tx, sessionId: string, limit: number): Promise<string[]> {
  const rows = await tx<Ids>`select id from app.tasks where session_id = ${sessionId} order by created_at desc, id desc limit ${limit}`;
  return rows.map((row) => row.id);
}

/** The newest `limit` sessions of an agent. */
export async function sessionIdsOfAgent(tx: Tx, agentId: string, limit: number): Promise<string[]> {
  const rows = await tx<Ids>`select id from app.sessions where agent_id = ${agentId} order by started_at desc, id desc limit ${limit}`;
  return rows.map((row) => row.id);
}

/** The newest `limit` fine-tuning jobs of the tenant. */
export async function fineTuningJobIds(tx: Tx, limit: number): Promise<string[]> {
  const rows = await tx<Ids>`select id from app.fine_tuning_jobs order by created_at desc, id desc limit ${limit}`;
  return rows.map((row) => row.id);
}

/** The user ids of the tenant's newest `limit` members (a Member's key). */
export async function memberIds(tx: Tx, limit: number): Promise<string[]> {
  const rows = await tx<Ids>`select user_id as id from app.memberships order by created_at desc, user_id desc limit ${limit}`;
  return rows.map((row) => row.id);
}

/** How long the request's API key has left (ms, by the database's clock: the one that refuses it), or null when it never expires. */
export async function apiKeyExpiresIn(tx: Tx): Promise<number | null> {
  const [row] = await tx<{ ms: number | null }[]>`
    select (extract(epoch from expires_at - now()) * 1000)::float8 as ms from app.api_keys
    where tenant_id = app.current_tenant_id() and id = app.current_api_key_id()`;
  return row?.ms ?? null;
}
