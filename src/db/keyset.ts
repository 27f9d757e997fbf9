// Keyset pagination over (time column, id) in either direction, as SQL fragments.
import type { Tx } from './pool.ts';

/** A row's place in a list: its time column to the microsecond (UTC), and its id. */
export type Position = { readonly at: string; readonly id: string };

export type KeysetPage = {
  readonly after?: Position | undefined;
  readonly before?: Position | undefined;
  readonly limit: number;
  /** Fetch from the end backwards (Relay `last`); the caller reverses the rows. */
  readonly inverted: boolean;
  readonly newestFirst?: boolean | undefined;
};

/** The column as a cursor position (text: a timestamptz parameter would lose the microseconds in a JS Date). */
export function positionColumn(tx: Tx, column: string) {
  return tx`to_char(${tx(column)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as position`;
}

/** `and …` conditions for the page's cursors; compare with the list's display order. */
export function keysetConditions(tx: Tx, column: string, page: KeysetPage) {
  const newest = page.newestFirst === true;
  const key = tx`(${tx(column)}, id)`;
  const at = (position: Position) => tx`(${position.at}::text::timestamptz, ${position.id}::uuid)`;
  return tx`
    ${page.after ? (newest ? tx`and ${key} < ${at(page.after)}` : tx`and ${key} > ${at(page.after)}`) : tx``}
    ${page.before ? (newest ? tx`and ${key} > ${at(page.before)}` : tx`and ${key} < ${at(page.before)}`) : tx``}`;
}

/** `order by …` fetching the rows the page needs first. */
export function keysetOrder(tx: Tx, column: string, page: KeysetPage) {
  const descending = (page.newestFirst === true) !== page.inverted;
  return descending ? tx`order by ${tx(column)} desc, id desc` : tx`order by ${tx(column)} asc, id asc`;
}
