// Keyset pagination over (time column, id) in either direction, as SQL
// fragments (the SQL half of src/nodes/, used by table.ts and the list filters of repositories).
import type postgres from 'postgres';
import type { Tx } from '../db/pool.ts';

export type Fragment = postgres.PendingQuery<postgres.Row[]>;

/**
 * The `and …` conditions present, as one value for a statement template.
 * postgres.js builds every fragment on every call, so an absent condition
 * should cost nothing: a list with no filter and no cursor carries one empty
 * fragment per helper instead of one per possible condition.
 */
export function conditions(tx: Tx, ...present: (Fragment | readonly Fragment[] | false | '' | null | undefined)[]): Fragment | Fragment[] {
  let fragments: Fragment[] | undefined; // a loop, not flat().filter(): most lists have no condition, and pay nothing
  for (const item of present) {
    if (!item) continue;
    if (Array.isArray(item)) {
      for (const fragment of item as readonly Fragment[]) (fragments ??= []).push(fragment);
    } else (fragments ??= []).push(item as Fragment);
  }
  if (fragments) return fragments;
  const none = tx.unsafe('') as Marked;
  none[NONE] = true;
  return none;
}

/**
 * Marks the empty fragments `conditions` made: a statement with none is sent as one constant text (table.ts).
 * A property, not a WeakSet: adding a young key to an old WeakSet is a write V8's scavenges must track and
 * clear again (400 against 90 ns a fragment made and marked, micro-benchmark on Node 24).
 */
const NONE = Symbol('no conditions');
type Marked = Fragment & { [NONE]?: true };

/** True when `where` adds no condition (`conditions()` of nothing, or no fragments). */
export function noConditions(where: Fragment | readonly Fragment[]): boolean {
  return Array.isArray(where) ? where.length === 0 : (where as Marked)[NONE] === true;
}

/** A row's place in a list: its time column to the microsecond (UTC, PostgreSQL's ISO text), and its id. */
export type Position = { readonly at: string; readonly id: string };

export type KeysetPage = {
  readonly after?: Position | undefined;
  readonly before?: Position | undefined;
  readonly limit: number;
  /** Fetch from the end backwards (Relay `last`); the caller reverses the rows. */
  readonly inverted: boolean;
  readonly newestFirst?: boolean | undefined;
};

/**
 * The column as a cursor position, as constant SQL text: text, because a JS
 * Date would lose the microseconds. The plain text output of a UTC timestamp
 * costs a third of to_char's formatting, which showed in every list query (bench: 21 rows).
 */
export const positionSql = (column: string) => `(${column} at time zone 'UTC')::text as position`;

/** `and …` conditions for the page's cursors; compare with the list's display order. */
export function keysetConditions(tx: Tx, column: string, idColumn: string, page: KeysetPage, idType: 'uuid' | 'bigint' = 'uuid') {
  if (!page.after && !page.before) return tx.unsafe('');
  const newest = page.newestFirst === true;
  // ::text first: a parameter typed timestamp would go through a JS Date and lose the microseconds.
  const at = (position: Position) =>
    idType === 'uuid'
      ? tx`(${position.at}::text::timestamp at time zone 'UTC', ${position.id}::uuid)`
      : tx`(${position.at}::text::timestamp at time zone 'UTC', ${position.id}::bigint)`;
  const key = tx.unsafe(`(${column}, ${idColumn})`);
  return conditions(
    tx,
    page.after && (newest ? tx`and ${key} < ${at(page.after)}` : tx`and ${key} > ${at(page.after)}`),
    page.before && (newest ? tx`and ${key} > ${at(page.before)}` : tx`and ${key} < ${at(page.before)}`),
  );
}

/** `and …` bounds on a time column, from inclusive, to exclusive: for `conditions`. */
export function timeRange(tx: Tx, column: string, from: Date | undefined, to: Date | undefined): Fragment[] | undefined {
  if (!from && !to) return undefined;
  return [from && tx`and ${tx(column)} >= ${from}`, to && tx`and ${tx(column)} < ${to}`].filter((fragment) => fragment !== undefined);
}

/** `order by …` fetching the rows the page needs first, as constant text. */
export function keysetOrder(tx: Tx, column: string, idColumn: string, page: KeysetPage) {
  return tx.unsafe(keysetOrderText(column, idColumn, page));
}

/** The same as text. */
export function keysetOrderText(column: string, idColumn: string, page: KeysetPage): string {
  const descending = (page.newestFirst === true) !== page.inverted;
  return descending ? `order by ${column} desc, ${idColumn} desc` : `order by ${column} asc, ${idColumn} asc`;
}
