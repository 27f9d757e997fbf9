// A tenant table as its node type reads it (the SQL half of src/nodes/): its
// columns in groups, named by the row keys they fill (never by GraphQL
// fields), and the statements every node type shares: rows by id, a list
// page, one page per parent in one statement, a row found through another
// table's key. Every text here is built once from constants; values are parameters.
import type { Tx } from '../db/pool.ts';
import { idIn, parents, type IdType } from './ids.ts';
import { keysetConditions, keysetOrder, keysetOrderText, noConditions, positionSql, type Fragment, type KeysetPage, type Position } from './keyset.ts';

/**
 * Row key -> the column that fills it: `true` for the key in snake case
 * (`createdAt: true` reads `created_at`), or SQL over the table's columns
 * (`tokensUsed: 'tokens_used::float8'`).
 */
export type ColumnGroup<Row> = { readonly [K in keyof Row]?: true | string };

export type TableOptions<Row> = {
  /** The schema-qualified name, `app.agents`. */
  readonly name: `app.${string}`;
  /**
   * The columns in groups. The first group is always read (the row's id and
   * what most fields need); a list reads each other group only when a
   * selected field needs one of its keys, so a group is what one kind of
   * field costs. Groups rather than single columns bound the statement texts
   * (prepared per connection) to 2^groups per list.
   */
  readonly columns: readonly [ColumnGroup<Row>, ...ColumnGroup<Row>[]];
  /** The time column lists are ordered by, with the id breaking ties. */
  readonly orderBy: 'created_at' | 'started_at' | 'occurred_at';
  /** The column that holds the row's `id`, when not `id` (memberships: `user_id`). */
  readonly idColumn?: string;
  /** The id's type: `uuid` (the default), or `bigint` for an identity column (audit events). */
  readonly idType?: IdType;
};

/** Which columns a statement reads: a bit per group (the first always), and `POSITION`. */
export type ColumnChoice = number;

/** A row as a list reads it: the first group's columns always, others when chosen; `position` when a cursor is asked for. */
export type Listed<Row> = Partial<Row> & { readonly id: string; readonly position?: string };

/** `and …` conditions for `conditions()`; `NO_ROWS`: the filter can match nothing (no statement is sent). */
export type Where = Fragment | Fragment[] | typeof NO_ROWS;
export const NO_ROWS: unique symbol = Symbol('no rows');

export class Table<Row extends { id: string }> {
  readonly name: string;
  /** Every row key, and the group that reads it. */
  readonly #groupOf = new Map<string, number>();
  readonly #columnOf = new Map<string, string | undefined>();
  readonly #groups: string[];
  readonly #orderBy: TableOptions<Row>['orderBy'];
  readonly #idColumn: string;
  /** What the ids are (cursors, global ids and id parameters follow it). */
  readonly idType: IdType;
  /** Texts by choice, built on first use: the columns, `select … from app.x`, and that with a parent condition. */
  readonly #texts: string[] = [];
  readonly #heads: string[] = [];
  readonly #childHeads: Record<string, string> = {};
  /** Whole statement texts of the common shapes (no filter, no cursor, one id), by shape and choice. */
  readonly #statements = new Map<string, string>();
  /** The bit that adds the row's list position. */
  readonly POSITION: ColumnChoice;
  /** Every group, no position: a whole row (read by id, written, returned). */
  readonly WHOLE: ColumnChoice;

  constructor(options: TableOptions<Row>) {
    this.name = options.name;
    this.#orderBy = options.orderBy;
    this.#idColumn = options.idColumn ?? 'id';
    this.idType = options.idType ?? 'uuid';
    this.#groups = options.columns.map((group, index) =>
      Object.entries(group)
        .map(([key, source]) => {
          if (this.#groupOf.has(key)) throw new Error(`${options.name}: the row key ${key} is in two column groups`);
          this.#groupOf.set(key, index);
          const column = source === true ? snakeCase(key) : (source as string);
          this.#columnOf.set(key, /^[a-z_][a-z0-9_]*$/.test(column) ? column : undefined);
          return column === key ? key : `${column} as "${key}"`;
        })
        .join(', '),
    );
    if (this.#groupOf.get('id') !== 0) throw new Error(`${options.name}: the first column group must read the id`);
    this.POSITION = 1 << this.#groups.length;
    this.WHOLE = this.POSITION - 1;
  }

  /** Whether `key` is one of the row's keys. */
  has(key: string): boolean {
    return this.#groupOf.has(key);
  }

  /** The choice that reads `keys` (and the first group). */
  choiceOf(keys: Iterable<string>): ColumnChoice {
    let choice = 1;
    for (const key of keys) {
      const group = this.#groupOf.get(key);
      if (group === undefined) throw new Error(`${this.name} has no column for the row key ${key}`);
      choice |= 1 << group;
    }
    return choice;
  }

  /** The plain column behind a row key (for keys that join tables: a parent key, a foreign key). */
  columnOf(key: keyof Row & string): string {
    const column = this.#columnOf.get(key);
    if (!column) throw new Error(`${this.name}: the row key ${key} is not a plain column`);
    return column;
  }

  /** The chosen columns as one constant fragment, for `returning` and hand-written statements. */
  columns(tx: Tx, choice: ColumnChoice = this.WHOLE): Fragment {
    return tx.unsafe(this.#columnText(choice));
  }

  /** The same as text, for a whole statement built once (a constant text costs one postgres.js query, no fragments). */
  columnsText(choice: ColumnChoice = this.WHOLE): string {
    return this.#columnText(choice);
  }

  // The statements below are async functions on purpose: a postgres.js query
  // is sent when something awaits it, and TenantTransaction.run awaits the
  // request check before it awaits the query; returned from an async function
  // the query is awaited at once and leaves in the request check's round trip.

  /** Whole rows by id, in one statement: the node type's loader. */
  async byIds(tx: Tx, ids: readonly string[]): Promise<Row[]>;
  /** Rows by id with the chosen columns (the by-id root field, relations: what their selection needs). */
  async byIds(tx: Tx, ids: readonly string[], choice: ColumnChoice): Promise<Listed<Row>[]>;
  async byIds(tx: Tx, ids: readonly string[], choice: ColumnChoice = this.WHOLE): Promise<Listed<Row>[]> {
    if (ids.length === 1) {
      const text = this.#statement('id', choice, () => `${this.#headText(choice)} where ${this.#idColumn} = $1::${this.idType}`);
      return tx.unsafe<Listed<Row>[]>(text, [ids[0]!], { prepare: true });
    }
    return tx<Listed<Row>[]>`${this.#head(tx, choice)} where ${idIn(tx, this.#idColumn, ids, this.idType)}`;
  }

  /** A page of the tenant's rows (RLS keeps it to the tenant) matching `where`, with the chosen columns. */
  async page(tx: Tx, page: KeysetPage, choice: ColumnChoice, where: Where): Promise<Listed<Row>[]> {
    if (where === NO_ROWS) return [];
    if (!page.after && !page.before && noConditions(where)) {
      const order = keysetOrderText(this.#orderBy, this.#idColumn, page);
      const text = this.#statement(order, choice, () => `${this.#headText(choice)} where true ${order} limit $1`);
      return tx.unsafe<Listed<Row>[]>(text, [page.limit], { prepare: true });
    }
    return tx<Listed<Row>[]>`
      ${this.#head(tx, choice)} where true ${where} ${keysetConditions(tx, this.#orderBy, this.#idColumn, page, this.idType)}
      ${keysetOrder(tx, this.#orderBy, this.#idColumn, page)}
      limit ${page.limit}`;
  }

  /** One page for each parent, in one statement: the rows whose `parentKey` is one of `parentIds`. */
  async pagesOf(tx: Tx, parentKey: keyof Row & string, parentIds: readonly string[], page: KeysetPage, choice: ColumnChoice, where: Where): Promise<Listed<Row>[]> {
    if (where === NO_ROWS) return [];
    const withParent = choice | this.choiceOf([parentKey]);
    const head = (this.#childHeads[`${parentKey}|${withParent}`] ??= `${this.#headText(withParent)} where ${this.columnOf(parentKey)} = parent.id`);
    if (parentIds.length === 1 && !page.after && !page.before && noConditions(where)) {
      // One parent: a plain page of its rows (an index scan), not a lateral join over a one-row VALUES list.
      const order = keysetOrderText(this.#orderBy, this.#idColumn, page);
      const text = this.#statement(`${parentKey}|${order}`, withParent, () =>
        `${this.#headText(withParent)} where ${this.columnOf(parentKey)} = $1::uuid ${order} limit $2`);
      return tx.unsafe<Listed<Row>[]>(text, [parentIds[0]!, page.limit], { prepare: true });
    }
    return tx<Listed<Row>[]>`
      select page.* from ${parents(tx, parentIds)}
      cross join lateral (
        ${tx.unsafe(head)} ${where}
        ${keysetConditions(tx, this.#orderBy, this.#idColumn, page, this.idType)}
        ${keysetOrder(tx, this.#orderBy, this.#idColumn, page)}
        limit ${page.limit}
      ) page`;
  }

  /**
   * The row that the row `id` of `from` points to through its `key`
   * (a session's agent, read by the session's id), with the chosen columns.
   */
  async rowVia<From extends { id: string }>(tx: Tx, choice: ColumnChoice, from: Table<From>, key: keyof From & string, id: string): Promise<Listed<Row> | undefined> {
    const text = this.#statement(`${from.name}|${key}`, choice, () =>
      `${this.#headText(choice)} where ${this.#idColumn} = (select ${from.columnOf(key)} from ${from.name} where ${from.#idColumn} = $1::${from.idType})`);
    const [row] = await tx.unsafe<Listed<Row>[]>(text, [id], { prepare: true });
    return row;
  }

  /**
   * A whole statement's text for one shape and column choice, built once:
   * sent with its values as parameters, it costs one postgres.js query
   * instead of one per fragment (each a Promise, built again on every call).
   */
  #statement(shape: string, choice: ColumnChoice, build: () => string): string {
    const key = `${shape}|${choice}`;
    let text = this.#statements.get(key);
    if (text === undefined) this.#statements.set(key, (text = build()));
    return text;
  }

  #head(tx: Tx, choice: ColumnChoice): Fragment {
    return tx.unsafe(this.#headText(choice));
  }

  #headText(choice: ColumnChoice): string {
    return (this.#heads[choice] ??= `select ${this.#columnText(choice)} from ${this.name}`);
  }

  #columnText(choice: ColumnChoice): string {
    return (this.#texts[choice] ??= this.#chosenColumns(choice));
  }

  #chosenColumns(choice: ColumnChoice): string {
    const chosen = this.#groups.filter((_, index) => (choice & (1 << index)) !== 0);
    if ((choice & this.POSITION) !== 0) chosen.push(positionSql(this.#orderBy));
    return chosen.join(', ');
  }
}

/** Declares a tenant table (see `TableOptions`); the repository exports it for its node type. */
export function table<Row extends { id: string }>(options: TableOptions<Row>): Table<Row> {
  return new Table(options);
}

/** The position a listed row was read with, if any (see `Listed`). */
export function positionOf(row: { readonly id: string; readonly position?: string }): Position | undefined {
  return row.position === undefined ? undefined : { at: row.position, id: row.id };
}

function snakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}
