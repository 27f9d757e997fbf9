// Loader-friendly id conditions (the SQL half of src/nodes/). PostgreSQL plans a prepared statement once
// per connection (a generic plan) only when that plan looks no dearer than
// planning per call; with an array parameter it guesses 10 or 100 elements and
// keeps re-planning on every execution, which costs more than the query. Most
// batches hold one id (one node, one parent): those get the scalar form.
import type { Tx } from '../db/pool.ts';
import { isUuid } from '../tenancy/identifiers.ts';

/** What a table's ids are: uuids (every tenant object), or a bigint identity (audit events). */
export type IdType = 'uuid' | 'bigint';

/** Array type oids for postgres.js: uuid[] and int8[]. */
const ARRAY_OID: Record<IdType, number> = { uuid: 2950, bigint: 20 };
const BIGINT_ID = /^[1-9]\d{0,17}$/;

/** Whether `id` (as a client sent it) can be an id of that type; bigint ids are positive and below 10^18. */
export function isIdOf(type: IdType, id: string | undefined): id is string {
  return type === 'uuid' ? isUuid(id) : id !== undefined && BIGINT_ID.test(id);
}

/** `column = $1` for one id, `column = any($1)` for several. */
export function idIn(tx: Tx, column: string, ids: readonly string[], type: IdType = 'uuid') {
  if (ids.length === 1) return type === 'uuid' ? tx`${tx(column)} = ${ids[0]!}::uuid` : tx`${tx(column)} = ${ids[0]!}::bigint`;
  return tx`${tx(column)} = any(${tx.array([...ids], ARRAY_OID[type])})`;
}

/** The parents of a batched nested list, as rows `parent(id)`. */
export function parents(tx: Tx, ids: readonly string[]) {
  return ids.length === 1 ? tx`(values (${ids[0]!}::uuid)) as parent(id)` : tx`unnest(${tx.array([...ids], 2950)}::uuid[]) as parent(id)`;
}
