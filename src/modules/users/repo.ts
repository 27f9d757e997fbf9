import type { Tx } from '../../db/pool.ts';
import { idIn } from '../../nodes/ids.ts';

export type UserRow = { id: string; email: string; displayName: string };

/** Users the request may see: itself and the members of its tenant (RLS). */
export async function findUsers(tx: Tx, ids: readonly string[]): Promise<UserRow[]> {
  return tx<UserRow[]>`
    select id, email, display_name as "displayName" from app.users where ${idIn(tx, 'id', ids)}`;
}
