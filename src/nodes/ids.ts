// Loader-friendly id conditions (the SQL half of src/nodes/). PostgreSQL plans a prepared statement once
// per connection (a generic plan) only when that plan looks no dearer than
// planning per call; with an array parameter it guesses 10 or 100 elements and
// keeps re-planning on every execution, which costs more than the query. Most
// batches hold one id (one node, one parent): those get the scalar form.
import type { Tx } from '../db/pool.ts';

/** `column = $1` for one id, `column = any($1)` for several. */
export function idIn(tx: Tx, column: string, ids: readonly string[]) {
  return ids.length === 1 ? tx`${tx(column)} = ${ids[0]!}::uuid` : tx`${tx(column)} = any(${tx.array([...ids], 2950)})`;
}

/** The parents of a batched nested list, as rows `parent(id)`. */
export function parents(tx: Tx, ids: readonly string[]) {
  return ids.length === 1 ? tx`(values (${ids[0]!}::uuid)) as parent(id)` : tx`unnest(${tx.array([...ids], 2950)}::uuid[]) as parent(id)`;
}
