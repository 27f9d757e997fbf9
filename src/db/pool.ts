// The request role's connection pool: bounded reconnects, per-connection
// ceilings for statements and locks, and what the pool knows about its
// requests (their default deadline, the open transactions a shutdown aborts,
// how often a request gave up waiting for a connection).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { GraphQLError } from 'graphql';
import postgres from 'postgres';

export type Sql = postgres.Sql;
/** The request transaction's connection, as repositories see it: queries only. */
export type Tx = postgres.ISql;
/** Either a pool or a transaction: for the operator's owner-side queries. */
export type Queryable = postgres.ISql;
/** A connection held by one request (patches/postgres+3.4.9.patch adds `destroy`). */
export type Reserved = postgres.ReservedSql;

export type PoolOptions = {
  readonly max: number;
  /** Named prepared statements; off behind PgBouncer in transaction mode. */
  readonly prepare: boolean;
  /** Called with every statement sent (tests count and EXPLAIN them). */
  readonly onQuery?: (query: string, parameters: readonly unknown[]) => void;
  /** A request transaction's default deadline, and the ceiling of every statement and lock wait. */
  readonly requestTimeoutMs?: number;
  /** How long one connection attempt may take. */
  readonly connectTimeoutMs?: number;
  /** What pg_stat_activity (and a proxy counting round trips) calls the pool's connections; 'tenancy' by default. */
  readonly applicationName?: string;
};

/** Something the pool can end early: an open request transaction, from the wait for its connection on. */
export type Abortable = {
  abort(error: GraphQLError): void;
  /** When it must be over (ms since the epoch): past it the pool's sweep calls `expire`. */
  readonly deadline: number;
  /** Its deadline has passed: it ends as `abort` ends it, with its timeout. */
  expire(): void;
};

export type PoolState = {
  readonly url: string;
  readonly requestTimeoutMs: number;
  /** Open request transactions: a shutdown aborts those still running at its deadline. */
  readonly open: Set<Abortable>;
  /** Requests that gave up waiting for a free connection (their deadline came first). */
  acquireTimeouts: number;
  /** Set by drainPool: /ready says unavailable (load balancers stop sending), requests still run. */
  draining: boolean;
  /** Set by abortTransactions or end(): new transactions are refused, /ready says unavailable. */
  closing: boolean;
  /** The sweep that ends open transactions past their deadline, while there are any. */
  sweep: NodeJS.Timeout | undefined;
};

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

const states = new WeakMap<Sql, PoolState>();

export function createPool(url: string, options: PoolOptions): Sql {
  assertDriverPatched();
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const sql = postgres(url, {
    max: options.max,
    prepare: options.prepare,
    idle_timeout: 60,
    connect_timeout: Math.min(options.connectTimeoutMs ?? 10_000, requestTimeoutMs) / 1000,
    backoff: reconnectDelay,
    onnotice: () => {},
    ...(options.onQuery ? { debug: (_connection: number, query: string, parameters: unknown[]) => options.onQuery!(query, parameters) } : {}),
    connection: {
      application_name: options.applicationName ?? 'tenancy',
      // Ceilings only: each request transaction lowers them to what is left of its deadline.
      statement_timeout: requestTimeoutMs,
      lock_timeout: requestTimeoutMs,
      idle_in_transaction_session_timeout: Math.max(60_000, 2 * requestTimeoutMs),
      // A backend whose client went away (a request past its deadline) stops and rolls back within a second.
      client_connection_check_interval: 1000,
    },
  });
  const state: PoolState = { url, requestTimeoutMs, open: new Set(), acquireTimeouts: 0, draining: false, closing: false, sweep: undefined };
  states.set(sql, state);
  const end = sql.end.bind(sql);
  sql.end = (endOptions) => {
    state.closing = true;
    return end(endOptions);
  };
  return sql;
}

/** The pool's state; a pool made by postgres() directly (some tests) gets the defaults. */
export function poolState(sql: Sql): PoolState {
  let state = states.get(sql);
  if (!state) {
    state = { url: '', requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS, open: new Set(), acquireTimeouts: 0, draining: false, closing: false, sweep: undefined };
    states.set(sql, state);
  }
  return state;
}

/**
 * How often open transactions are held against their deadlines: one timer for the pool instead of one (or two,
 * with the wait for a connection) a request. A transaction ends at most this much after its deadline; its
 * statements end before it anyway (the server's statement_timeout, src/db/tenant-transaction.ts).
 */
export const DEADLINE_SWEEP_MS = 20;

/** `transaction` is open (waiting for its connection, or holding one) until `closeTransaction`: shutdown and its deadline can end it. */
export function openTransaction(sql: Sql, transaction: Abortable): void {
  const state = poolState(sql);
  state.open.add(transaction);
  state.sweep ??= setInterval(sweep, DEADLINE_SWEEP_MS, state).unref();
}

export function closeTransaction(sql: Sql, transaction: Abortable): void {
  poolState(sql).open.delete(transaction);
}

/** Ends the open transactions past their deadline; stops when none is open (the next one starts it again). */
function sweep(state: PoolState): void {
  if (state.open.size === 0) {
    clearInterval(state.sweep);
    state.sweep = undefined;
    return;
  }
  const now = Date.now();
  for (const transaction of state.open) if (transaction.deadline <= now) transaction.expire();
}

/** Shutdown begins: /ready answers unavailable from now on; requests in flight and arriving still run. */
export function drainPool(sql: Sql): void {
  poolState(sql).draining = true;
}

/**
 * Shutdown: every open request transaction is ended now (its connection
 * dropped, so nothing of it commits later) and new ones are refused.
 */
export function abortTransactions(sql: Sql, error: GraphQLError): number {
  const state = poolState(sql);
  state.closing = true;
  const open = [...state.open];
  for (const transaction of open) transaction.abort(error);
  return open.length;
}

/** Seconds before a connection is tried again after a failure: short (the first request after a restart succeeds), never a spin. */
function reconnectDelay(retries: number): number {
  return Math.min(0.025 * 2 ** retries, 0.5);
}

let patched: boolean | undefined;

/**
 * Text each hunk of patches/postgres+3.4.9.patch that the service relies on leaves in the driver's files, by file
 * (patches/markers.json, which scripts/ensure-runtime.sh reads too). Without patches/ (npm's install scripts skipped),
 * a database restart would crash the process; with an older patches/ (a checkout updated without `npm ci`), every
 * request with a read budget fails (no row byte count), the first request after a terminated backend fails with its
 * stale error, and a cancel that cannot connect is an unhandled rejection.
 */
export const DRIVER_PATCH_MARKERS: Readonly<Record<string, readonly string[]>> = Object.fromEntries(
  Object.entries(JSON.parse(readFileSync(new URL('../../patches/markers.json', import.meta.url), 'utf8')) as Record<string, string[] | string>)
    .filter((entry): entry is [string, string[]] => entry[0].startsWith('postgres/'))
    .map(([file, markers]) => [file.slice('postgres/src/'.length), markers]),
);

/** Refuses to run on a driver without every hunk of patches/ the service relies on (DRIVER_PATCH_MARKERS). */
function assertDriverPatched(): void {
  if (patched === undefined) {
    const source = (file: string) => readFileSync(fileURLToPath(import.meta.resolve('postgres')).replace(/index\.js$/, file), 'utf8');
    patched = Object.entries(DRIVER_PATCH_MARKERS).every(([file, markers]) => {
      const text = source(file);
      return markers.every((marker) => text.includes(marker));
    });
  }
  if (!patched) throw new Error('postgres.js is not patched: run `npm ci` (or `npx patch-package`) so that patches/ is applied');
}
