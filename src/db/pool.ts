// The request role's connection pool.
import postgres from 'postgres';

export type Sql = postgres.Sql;
/** The request transaction's connection, as repositories see it: queries only. */
export type Tx = postgres.ISql;
/** Either a pool or a transaction: for the operator's owner-side queries. */
export type Queryable = postgres.ISql;

export type PoolOptions = {
  readonly max: number;
  /** Named prepared statements; off behind PgBouncer in transaction mode. */
  readonly prepare: boolean;
  /** Called with every statement sent (tests count and EXPLAIN them). */
  readonly onQuery?: (query: string, parameters: readonly unknown[]) => void;
};

export function createPool(url: string, options: PoolOptions): Sql {
  return postgres(url, {
    max: options.max,
    prepare: options.prepare,
    idle_timeout: 60,
    connect_timeout: 10,
    onnotice: () => {},
    ...(options.onQuery ? { debug: (_connection: number, query: string, parameters: unknown[]) => options.onQuery!(query, parameters) } : {}),
    connection: {
      application_name: 'tenancy',
      // A stuck request must not hold a connection (and its transaction) forever.
      statement_timeout: 30_000,
      idle_in_transaction_session_timeout: 60_000,
    },
  });
}
