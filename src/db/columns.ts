// A table's columns in groups named by the GraphQL fields they serve, so a
// list statement reads only what the request asks for.
import type { Tx } from './pool.ts';

export type ColumnGroup = {
  /**
   * The fields this group's columns serve; `cursor` names the list position
   * that cursors encode (see `connectionNodeFields`).
   */
  readonly fields: readonly string[];
  /** The columns, as constant SQL text (never built from input). */
  readonly sql: string;
};

/**
 * The first group always, then each group with a field in `fields`, as one
 * fragment; without `fields`, a whole row: every group but the cursor's
 * (a row read by id or written is no list's). Groups rather than single
 * columns bound the statement texts, so the prepared statements a connection
 * keeps, to 2^(groups - 1) per list and filter. Constant text rather than
 * nested fragments: postgres.js builds each fragment per call, which showed
 * in every by-id load.
 */
export function columns(tx: Tx, groups: readonly ColumnGroup[], fields?: ReadonlySet<string>) {
  const chosen = fields
    ? groups.filter((group, i) => i === 0 || group.fields.some((field) => fields.has(field)))
    : groups.filter((group) => !group.fields.includes('cursor'));
  return tx.unsafe(chosen.map((group) => group.sql).join(', '));
}
