// The one way requests reach tenant data: a transaction whose first statement
// (app_private.begin_request and its API-key and platform variants) checks the
// credentials, tenant and membership and sets the transaction-local settings
// every RLS policy reads. It lives within the request's deadline: the wait for
// a connection, every statement and the commit; past it the connection is
// dropped (the server rolls back what has not committed: a COMMIT already sent
// behind the statements, commitEarly, commitWithWrite, may still commit) and
// every use answers UNAVAILABLE (a write whose COMMIT was sent and not yet
// answered: UNAVAILABLE outcome-unknown, since it may have committed; the
// same when the connection is lost then).
import type { GraphQLError } from 'graphql';
import { outcomeUnknown, responseTooLarge, tenantNotFound, tenantRequired, tenantSuspended, unauthenticated, unavailable } from '../errors.ts';
import { isUuid } from '../tenancy/identifiers.ts';
import type { Credentials, Principal, TenantContext, TenantSelection } from '../tenancy/principal.ts';
import type { Role } from '../tenancy/roles.ts';
import { unavailableFor } from './errors.ts';
import { closeTransaction, openTransaction, poolState, type Reserved, type Sql, type Tx } from './pool.ts';

// Who asks and what for, and who the database accepted: defined in src/tenancy/principal.ts, re-exported for this module's callers.
export type { Credentials, Principal, TenantContext, TenantSelection } from '../tenancy/principal.ts';

/**
 * `tenant`: the request works inside one tenant (the default).
 * `platform`: it works outside any tenant (operator work, accepting an
 * invitation): only the user is set, every tenant table reads as empty.
 */
export type TransactionMode = 'tenant' | 'platform';

export type TransactionOptions = {
  /** When the request must be over, in ms since the epoch; default: now plus the pool's request timeout. */
  readonly deadline?: number;
  /** Bytes of rows the request may read (MAX_RESPONSE_BYTES): past it every use answers the response limit. */
  readonly readBytes?: number;
  /** The request's id (the request log's, the response's): set as `app.request_id`, so audit events name it. */
  readonly requestId?: string;
  /** One snapshot for every statement (REPEATABLE READ): a subscription's re-read shows each row and its relations as of one moment. */
  readonly snapshot?: boolean;
  /**
   * The operation only reads and is expected to send all its statements as it
   * starts (it did last time): COMMIT is queued behind the statements of the
   * first tick, so BEGIN, the request check, the statements and COMMIT leave
   * in one write and the read costs one round trip. A statement sent later
   * begins a new transaction on the same connection, with its own request
   * check (see `sentLate`).
   */
  readonly commitEarly?: boolean;
  /**
   * The operation is one write whose statement is its last act that can fail
   * (src/graphql/operation.ts `commitsWithStatement`), and it sent all its
   * statements in one tick after the request check last time: COMMIT is queued
   * behind the statements of that tick, so the write and its COMMIT leave in
   * one write (2 round trips: the check, then the write; 1 with `assume`). A failed statement
   * makes that COMMIT a rollback. A statement sent after it is refused: it
   * would run outside the write's transaction.
   */
  readonly commitWithWrite?: boolean;
  /**
   * With `commitWithWrite`, in a tenant: the principal the request check answered for these credentials last time.
   * The operation runs as that principal from the start, so its write leaves with BEGIN, the check and COMMIT in one
   * write (one round trip). The check's statement then also asks the database whether it found exactly that
   * principal (app_private.expect_principal, migration 000022): when not, it raises TN409, the transaction is aborted
   * before the write runs (the statements behind it fail, COMMIT rolls back), and `confirmed()` rejects with
   * PrincipalChanged: the caller runs the operation again without an assumption.
   */
  readonly assume?: Principal;
  /**
   * The operation may write (a mutation; implied by `commitWithWrite`): cut short (its deadline, a shutdown) while its
   * COMMIT is sent and unanswered, every use answers UNAVAILABLE `outcome-unknown` instead of `timeout` or `shutdown`.
   */
  readonly writes?: boolean;
};

type Opened = { readonly tx: Reserved; readonly principal: Promise<Principal> };

/** Server-side timeouts end a little before the deadline, so a slow statement fails cleanly and the connection is kept. */
const SERVER_MARGIN_MS = 250;

/**
 * One transaction per GraphQL operation, opened on first use and ended once
 * by `end`. Queries run through `run` are pipelined behind the request check,
 * so the tenant context costs no extra round trip.
 */
export class TenantTransaction {
  readonly #sql: Sql;
  readonly #selection: TenantSelection;
  #mode: TransactionMode = 'tenant';
  #opened: Promise<Opened> | undefined;
  #ended = false;
  #known: Principal | undefined;
  #operator: Promise<boolean> | undefined;
  readonly #deadline: number;
  readonly #snapshot: boolean;
  /** Bytes of rows still allowed (undefined: no budget); charged as each repository call returns. */
  #readBytesLeft: number | undefined;
  readonly #readBytes: number | undefined;
  /** The connection's row bytes (Reserved.rowBytes) already charged to the budget. */
  #charged = 0;
  readonly #requestId: string;
  #reserved: Reserved | undefined;
  /** While the connection is awaited: ends that wait (the deadline, a shutdown). */
  #stopWaiting: ((error: GraphQLError) => void) | undefined;
  /** Why the transaction was cut short (deadline, shutdown): every later use answers it. */
  #failure: GraphQLError | undefined;
  /** What repositories get: the reserved connection, refusing queries once the transaction has ended. */
  #tx: Tx | undefined;
  /** The same, marking every query it sends `uncharged` (the driver leaves their rows out of rowBytes): run's `charged: false`. */
  #unchargedTx: Tx | undefined;
  readonly #commitEarly: boolean;
  /** True from BEGIN until the end of its tick: statements sent meanwhile leave in BEGIN's write. */
  #firstTick = false;
  #sentLate = false;
  /** The COMMIT queued behind the statements (commitEarly), while no statement has followed it. */
  #committing: Promise<unknown> | undefined;
  /** A later transaction's request check refused (a membership revoked mid-request): its statements fail with this. */
  #recheckError: unknown;
  readonly #commitWithWrite: boolean;
  /** Ticks in which statements were sent once the request check had answered (a write's shape). */
  #writeTicks = 0;
  #inWriteTick = false;
  /** `assume`: who the operation runs as until the check has answered (and is confirmed to be, or the write never runs). */
  #assumed: Principal | undefined;
  /** A statement was sent in the first tick as the assumed principal: COMMIT is queued at that tick's end, behind it. */
  #wroteAsAssumed = false;
  /** `writes`: a COMMIT cut short by `abort` may have committed. */
  readonly #writes: boolean;
  /** A COMMIT was sent (or queued behind the statements) and the database has not answered it yet (a lost connection is no answer). */
  #commitUnanswered = false;
  /** The connection was lost before the database answered BEGIN: nothing of the transaction ran (`lostBeforeBegin`). */
  #lostBeforeBegin = false;

  constructor(sql: Sql, selection: TenantSelection, options: TransactionOptions = {}) {
    this.#sql = sql;
    this.#selection = selection;
    this.#deadline = options.deadline ?? Date.now() + poolState(sql).requestTimeoutMs;
    this.#snapshot = options.snapshot === true;
    this.#readBytes = this.#readBytesLeft = options.readBytes;
    this.#requestId = options.requestId ?? '';
    this.#commitEarly = options.commitEarly ?? false;
    this.#commitWithWrite = options.commitWithWrite ?? false;
    this.#assumed = this.#commitWithWrite && options.assume?.tenant ? options.assume : undefined;
    this.#writes = this.#commitWithWrite || options.writes === true;
  }

  /**
   * Ticks in which statements were sent after the request check answered: 1 for
   * a write that sends its statements at once (it may then commit with them,
   * `commitWithWrite`), more for one that reads before it writes.
   */
  get writeTicks(): number {
    return this.#writeTicks;
  }

  /**
   * True when a statement was sent after the tick in which the transaction
   * began (a nested list's next level, a repository that awaits one statement
   * before the next): such an operation cannot be read in one round trip.
   */
  get sentLate(): boolean {
    return this.#sentLate;
  }

  /**
   * True when the connection turned out lost before the database answered BEGIN (a backend terminated or a restart
   * the pool had not noticed yet, a connection dropped on the way) and, for a write, no COMMIT was sent: nothing of the
   * transaction ran, so the operation may run again on another connection (the pipeline does, once). A write whose
   * COMMIT left with BEGIN (one round trip) is not: through a proxy (PgBouncer) that write may have reached the
   * database and committed although no answer came back; it answers outcome-unknown.
   */
  get lostBeforeBegin(): boolean {
    return this.#lostBeforeBegin && !(this.#writes && this.#commitUnanswered);
  }

  /** True once the rows read passed `readBytes`: the request is refused with the response limit. */
  get overReadBudget(): boolean {
    return this.#readBytesLeft !== undefined && this.#readBytesLeft < 0;
  }

  /**
   * Who the request runs as: the principal the database accepted, or with `assume` the assumed one (once the
   * transaction has begun), whose every statement the database runs only if its check confirmed it (`confirmed`).
   */
  async principal(): Promise<Principal> {
    const { principal } = await this.#open();
    return this.#assumed ?? principal;
  }

  /** Who the database accepted this request as, once its check has answered (PrincipalChanged: not the one assumed). */
  async confirmed(): Promise<Principal> {
    return (await this.#open()).principal;
  }

  /** The request's tenant and role, as checked by the database; TENANT_REQUIRED outside a tenant. */
  async tenant(): Promise<TenantContext> {
    const { tenant } = await this.principal();
    if (!tenant) throw tenantRequired();
    return tenant;
  }

  /**
   * Whether the user is a platform operator (read from the database, never
   * from a claim; an API key never is). A signed-in user's tenant transaction
   * asks only when a field needs to know, so other requests do not pay for it.
   */
  isOperator(): Promise<boolean> {
    this.#operator ??= this.principal().then(
      ({ operator }) => operator ?? this.run(async (tx) => (await tx<{ yes: boolean }[]>`select app_private.is_operator() as yes`)[0]!.yes),
    );
    return this.#operator;
  }

  /**
   * Runs repository code inside the request transaction. The rows it reads are charged to the read budget, unless
   * `charged: false`: rows read to compute a small answer, never to be the answer (verifyAuditChain reads a whole
   * chain to say whether it holds), bounded by the request's deadline instead. Its queries are marked, so calls that
   * overlap it are charged for their own rows only.
   */
  async run<T>(query: (tx: Tx) => Promise<T>, options?: { readonly charged?: boolean }): Promise<T> {
    if (this.overReadBudget) throw responseTooLarge(this.#readBytes!);
    const { principal } = await this.#open();
    const result = query(options?.charged === false ? (this.#unchargedTx ??= marking(this.#tx!)) : this.#tx!);
    // A query handed back unawaited is sent now, in this tick (postgres.js sends once something awaits it): after the
    // check it could follow an early COMMIT and run outside the transaction. Its failure is still observed below.
    result.catch(() => {});
    // A refused check is the answer (the statements behind it failed with it). As an assumed principal the statement
    // has left already, behind the check, and succeeds only if the check confirmed it: its failure is the check's.
    if (!this.#assumed) await principal;
    let value: T;
    try {
      value = await result;
    } catch (error) {
      if (this.#assumed) await principal;
      throw this.#recheckError ?? this.#lostCommit(error) ?? error; // its transaction's request check refused: that is the answer
    }
    if (this.#readBytesLeft === undefined) return value;
    // Charged per call with what the rows took on the wire since the last charge (every call's statements share the
    // one connection): a request stops reading once past its budget instead of building the whole answer.
    const read = this.#reserved!.rowBytes();
    this.#readBytesLeft -= read - this.#charged; // an uncharged call's queries are not in `read`, whenever they ran
    this.#charged = read;
    // An uncharged call answers what it computed; the charged call whose rows passed the budget answers the limit.
    if (this.overReadBudget && options?.charged !== false) throw responseTooLarge(this.#readBytes!);
    return value;
  }

  /**
   * Ends the transaction now, from outside (its deadline, a shutdown): the
   * connection is dropped, so the server rolls back what has not committed;
   * queries in flight and every later use fail with `error`, or, for a write
   * whose COMMIT the database had received and not answered (it may commit
   * all the same), with UNAVAILABLE outcome-unknown.
   */
  abort(error: GraphQLError): void {
    this.#failure ??= this.#writes && this.#commitUnanswered ? outcomeUnknown() : error;
    this.#stopWaiting?.(this.#failure);
    this.#reserved?.destroy(this.#failure); // a no-op once released
  }

  /** The pool's sweep found the deadline passed (src/db/pool.ts): UNAVAILABLE timeout, as `abort`; a wait for a connection is counted. */
  expire(): void {
    if (this.#stopWaiting) poolState(this.#sql).acquireTimeouts++;
    this.abort(unavailable('timeout'));
  }

  /**
   * Starts the transaction now, so the request check overlaps with other
   * work. A platform transaction is only for signed-in users: an API key
   * always works inside its tenant.
   */
  start(mode: TransactionMode = 'tenant'): void {
    if (!this.#opened && this.#selection.credentials.kind === 'user') this.#mode = mode;
    this.#open().catch(() => {}); // the same failure reaches whoever awaits it
  }

  /** True unless the operation runs outside any tenant (known as soon as it starts). */
  get inTenant(): boolean {
    return this.#mode === 'tenant';
  }

  /** True for a signed-in user, false for an API key (known from the credentials). */
  get byPerson(): boolean {
    return this.#selection.credentials.kind === 'user';
  }

  /** The principal once the database has accepted it (for log lines). */
  get known(): Principal | undefined {
    return this.#known;
  }

  /** When the request must be over (ms since the epoch): work outside the database (a long verification) stops by it too. */
  get deadline(): number {
    return this.#deadline;
  }

  /**
   * Commits or rolls back and returns the connection to the pool; idempotent.
   * A commit error is thrown (UNAVAILABLE when the transaction was cut short);
   * a rollback never throws: a connection that cannot roll back is dropped.
   */
  async end(commit: boolean): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    if (!this.#opened) return;
    let tx: Reserved;
    try {
      ({ tx } = await this.#opened);
    } catch {
      return; // no connection was reserved
    }
    try {
      if (this.#failure) throw this.#failure;
      // Already queued behind the statements (a read: committing and rolling back keep the same nothing).
      if (this.#committing) {
        const done = (await this.#committing.catch((error: unknown) => {
          tx.destroy(); // its state is unknown: never hand it to the next request
          throw error;
        })) as { command?: string };
        // A write committed with its statement, then the operation failed: what `commitsWithStatement` rules out. Never silent.
        if (!commit && this.#commitWithWrite && done.command === 'COMMIT') throw new CommittedBeforeFailure();
        // The other way round (a resolver that swallowed its statement's error): nothing was written, so no success.
        if (commit && this.#commitWithWrite && done.command === 'ROLLBACK') throw new Error('the write was rolled back with its failed statement, yet the operation succeeded');
      } else if (commit) {
        this.#commitUnanswered = true;
        await tx`commit`;
        this.#commitUnanswered = false;
      } else {
        await tx`rollback`.catch(() => {
          tx.destroy(); // its state is unknown: never hand it to the next request
        });
      }
    } catch (error) {
      if (commit || error instanceof CommittedBeforeFailure) throw this.#failure ?? this.#lostCommit(error) ?? error;
    } finally {
      closeTransaction(this.#sql, this);
      tx.release();
    }
  }

  #open(): Promise<Opened> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#ended) return Promise.reject(new Error('the request transaction has already ended'));
    if (this.#mode === 'tenant' && this.#selection.credentials.kind === 'user' && !this.#selection.tenant) {
      return Promise.reject(tenantRequired()); // no transaction needed to say so
    }
    this.#opened ??= this.#begin();
    return this.#opened;
  }

  /**
   * BEGIN, the timeouts left of the deadline, the request check and the first
   * queries leave in one write to the server (postgres.js batches what is
   * queued in the same tick on a reserved connection): one round trip for all
   * of them, one more for COMMIT.
   */
  async #begin(): Promise<Opened> {
    const state = poolState(this.#sql);
    if (state.closing) throw unavailable('shutdown');
    if (this.#deadline <= Date.now()) throw unavailable('timeout');
    // Open from the wait on: the pool's sweep ends it at its deadline (no timer of its own), a shutdown at once.
    openTransaction(this.#sql, this);
    if (this.#mode !== 'tenant') this.#assumed = undefined; // only a tenant's check can confirm one (begin_request, begin_api_key_request)
    let tx: Reserved;
    try {
      tx = await this.#acquire();
      if (this.#failure || state.closing) {
        tx.release();
        throw this.#failure ?? unavailable('shutdown');
      }
    } catch (error) {
      closeTransaction(this.#sql, this); // no connection: nothing for end() to give back
      throw error;
    }
    this.#reserved = tx;
    this.#charged = tx.rowBytes();
    this.#tx = refusingAfterEnd(tx, () => this.#ended, () => this.#beforeStatement());
    // Registered before BEGIN is queued, so it runs before postgres.js writes what this tick queued (setImmediate is FIFO).
    this.#firstTick = true;
    setImmediate(() => {
      this.#firstTick = false;
      this.#commitIfEarly();
    });
    const timeout = this.#serverTimeout();
    const begun = this.#beginStatement(tx, timeout);
    const checked = beginRequest(tx, this.#selection, this.#mode, this.#requestId, timeout, this.#assumed);
    const principal = begun
      .then(
        () => checked,
        (error: unknown) => {
          this.#lostBeforeBegin = lostConnection(error); // no answer to BEGIN: the database began nothing of this transaction
          throw error;
        },
      )
      .catch((error: unknown) => {
        throw this.#failure ?? this.#lostCommit(error) ?? unavailableFor(error) ?? error; // a lost connection is UNAVAILABLE, not INTERNAL
      });
    checked.catch(() => {}); // observed through `principal`
    principal.then((known) => (this.#known = known), () => {}); // failures are observed by run() and principal()
    return { tx, principal };
  }

  /** A connection, or the failure that ended the wait (the deadline, a shutdown): a connection handed over after that goes back. */
  async #acquire(): Promise<Reserved> {
    const reserving = this.#sql.reserve();
    try {
      return await new Promise<Reserved>((resolve, reject) => {
        this.#stopWaiting = reject;
        reserving.then(resolve, reject);
      });
    } catch (error) {
      if (this.#failure) reserving.then((late) => late.release(), () => {});
      throw this.#failure ?? unavailableFor(error) ?? error;
    } finally {
      this.#stopWaiting = undefined;
    }
  }

  /**
   * BEGIN: a constant statement (prepared once per connection); the timeouts are set by the request check's statement,
   * so the check itself runs under the connection's ceilings (src/db/pool.ts). Without prepared statements (DB_PREPARE=false,
   * behind PgBouncer, which drops those startup parameters) the check would run under none: a check waiting for a lock
   * (a migration's) would hold its backend past the deadline. There BEGIN sets the timeouts first, in one simple-protocol
   * message (no parameter, so no Parse/Describe round trip); `timeout` is an integer computed here, never input.
   */
  #beginStatement(tx: Reserved, timeout: string) {
    const begin = this.#snapshot ? 'begin isolation level repeatable read' : 'begin';
    if (!this.#sql.options.prepare) {
      return tx.unsafe(`${begin}; set local statement_timeout = ${timeout}; set local lock_timeout = ${timeout}; set local client_connection_check_interval = 1000`);
    }
    return this.#snapshot ? tx`begin isolation level repeatable read` : tx`begin`;
  }

  /** The server-side timeouts, in ms: a little before what is left of the deadline, so a slow statement fails cleanly and the connection is kept. */
  #serverTimeout(): string {
    const left = this.#deadline - Date.now();
    return String(Math.max(1, Math.floor(left - Math.min(SERVER_MARGIN_MS, left / 10))));
  }

  /**
   * The first statement sent after the request check answered opens a write tick; commitWithWrite: COMMIT is queued
   * at its end, behind its statements. Registered before the statement is queued, so it runs before postgres.js writes.
   */
  #startWriteTick(): void {
    this.#inWriteTick = true;
    this.#writeTicks++;
    setImmediate(() => {
      this.#inWriteTick = false;
      if (!this.#commitWithWrite || this.#writeTicks !== 1 || this.#ended || this.#failure || this.#committing || !this.#reserved) return;
      this.#committing = this.#queueCommit(this.#reserved);
    });
  }

  /** commitEarly, or a write sent as the assumed principal: COMMIT queued behind what the tick sent, in the same write. */
  #commitIfEarly(): void {
    // Not onto a connection already found lost before BEGIN was answered: a COMMIT sent would make a write's outcome unknown.
    if (!(this.#commitEarly || this.#wroteAsAssumed) || this.#ended || this.#failure || this.#committing || this.#lostBeforeBegin || !this.#reserved) return;
    this.#committing = this.#queueCommit(this.#reserved);
  }

  /** COMMIT behind what this tick sent, unanswered until the database answers it. */
  #queueCommit(tx: Reserved): Promise<unknown> {
    const committing = tx`commit`;
    this.#commitUnanswered = true;
    // A lost connection is no answer (#lostCommit). One function for both outcomes, as before: a closure a COMMIT.
    const answered = (outcome: unknown) => {
      if (!(outcome instanceof Error && lostConnection(outcome))) this.#commitUnanswered = false;
    };
    committing.then(answered, answered); // observed by end(); this also queues it now, before postgres.js writes
    return committing;
  }

  /**
   * The connection lost (the backend terminated, the database restarted) while a write's COMMIT is sent and unanswered:
   * it may have committed before the connection went, so from here on every use answers outcome-unknown, as `abort`
   * does at the deadline. A connection lost before any COMMIT was sent answers `database` (nothing was written).
   */
  #lostCommit(error: unknown): GraphQLError | undefined {
    if (!this.#writes || !this.#commitUnanswered || !lostConnection(error)) return undefined;
    return (this.#failure ??= outcomeUnknown());
  }

  /** Before each statement a repository sends: noted when late; after an early COMMIT, a new transaction first. */
  #beforeStatement(): void {
    if (!this.#firstTick) this.#sentLate = true;
    else if (this.#assumed && !this.#wroteAsAssumed) {
      this.#wroteAsAssumed = true; // its write tick is the first: COMMIT follows at its end (#commitIfEarly)
      this.#writeTicks++;
    }
    // As the assumed principal, a tick after the write's is a write tick of its own whether or not the check has answered
    // yet: counted, its shape is learned as an unassumed run learns it (two ticks: never committed with its statement again).
    if ((this.#known || (this.#wroteAsAssumed && !this.#firstTick)) && !this.#inWriteTick) this.#startWriteTick();
    if (!this.#committing) return;
    if (this.#commitWithWrite) throw new Error('a statement after the write committed with its statement: it cannot join the write\'s transaction');
    // The statement would run outside any transaction (no tenant: zero rows). BEGIN and the request check again,
    // pipelined before it: each transaction checks the credentials and sets the settings itself (also through PgBouncer).
    this.#committing = undefined;
    const tx = this.#reserved!;
    const timeout = this.#serverTimeout();
    const begun = this.#beginStatement(tx, timeout);
    const checked = beginRequest(tx, this.#selection, this.#mode, this.#requestId, timeout);
    begun.catch(() => {}); // a failed BEGIN fails the statements behind it
    checked.catch((error: unknown) => (this.#recheckError ??= unavailableFor(error) ?? error));
    setImmediate(() => this.#commitIfEarly());
  }
}

/**
 * The request check found another principal than the one assumed (TenantTransaction's `assume`): a role, a
 * membership, a key or the tenant changed since. Nothing of the transaction ran past the check; run it again.
 */
export class PrincipalChanged extends Error {
  constructor() {
    super('the request check found another principal than the one assumed');
  }
}

/** A write committed with its statement although the operation then failed (a resolver broke `commitsWithStatement`'s promise). */
export class CommittedBeforeFailure extends Error {
  constructor() {
    super('the write committed with its statement, then the operation failed: its field must not be marked commitsWithStatement');
  }
}

/** `view`, with every query it makes marked `uncharged`: patches/postgres+3.4.9.patch leaves their rows out of rowBytes. */
function marking(view: Tx): Tx {
  const mark = <Q>(query: Q): Q => (((query as { uncharged?: boolean }).uncharged = true), query);
  const marked = ((first: unknown, ...rest: unknown[]) => mark((view as unknown as (...args: unknown[]) => unknown)(first, ...rest))) as unknown as Tx;
  const target = marked as unknown as Record<string, unknown>;
  target.unsafe = (...args: Parameters<Tx['unsafe']>) => mark(view.unsafe(...args));
  target.file = (...args: Parameters<Tx['file']>) => mark(view.file(...args));
  // eslint-disable-next-line @typescript-eslint/unbound-method -- the view's are closures, no `this` (see refusingAfterEnd)
  target.notify = view.notify;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- as above
  target.json = view.json;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- as above
  target.array = view.array;
  target.typed = view.typed;
  target.types = view.types;
  return marked;
}

/**
 * The connection as repositories see it: once the transaction has ended, a
 * query throws instead of running on a connection another request may hold.
 * It is a statement sender (tagged template, identifiers, unsafe, file,
 * notify, json, array, typed): transactions, savepoints, release and the
 * rest stay with TenantTransaction.
 */
function refusingAfterEnd(tx: Reserved, ended: () => boolean, before: () => void): Tx {
  const check = () => {
    if (ended()) throw new Error('the request transaction has already ended: a query cannot run after it');
    before();
  };
  const guarded = ((first: unknown, ...rest: unknown[]) => {
    check();
    return (tx as unknown as (...args: unknown[]) => unknown)(first, ...rest);
  }) as unknown as Tx;
  // Only what repositories use, each set alone: Object.assign of all 19 of a reserved connection's properties
  // turned the function into a dictionary, ~10-40 us a request (measured on this machine, load 5-20).
  const view = guarded as unknown as Record<string, unknown>;
  view.unsafe = (...args: Parameters<Tx['unsafe']>) => (check(), tx.unsafe(...args));
  view.file = (...args: Parameters<Tx['file']>) => (check(), tx.file(...args));
  view.notify = (...args: Parameters<Tx['notify']>) => (check(), tx.notify(...args));
  // eslint-disable-next-line @typescript-eslint/unbound-method -- postgres.js's json and array are closures, no `this` (Object.assign copied them the same way)
  view.json = tx.json;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- as above
  view.array = tx.array;
  view.typed = tx.typed;
  view.types = tx.types;
  return guarded;
}

type TenantRow = {
  tenant_id: string;
  tenant_slug: string;
  tenant_name: string;
  tenant_status: 'active' | 'suspended';
  role: Role;
};

// The request check's statement also sets, in its select list (after the check ran; no statement more, no join):
// app.request_id ('' when the caller has no id), statement_timeout and lock_timeout to what is left of the
// deadline, and client_connection_check_interval, so a backend whose client went away (a request dropped at its
// deadline) stops within a second. Transaction-local. Three `set local` in BEGIN's simple-protocol message cost the
// backend ~50 us a transaction (parsed every time), these four set_config calls ~15 (bench:pg-cost, Q1 shapes
// interleaved one by one: 432 against 383 us). Behind PgBouncer (no startup ceilings) BEGIN sets the timeouts as well,
// so the check itself is bounded there too (`#beginStatement`).
// Each statement is one constant text, built here once and prepared once per connection: a tagged template is
// stringified again on every call (its pieces joined around `$n`), and this is every transaction's first statement.
// $1 the request id, $2 the timeout (both timeouts), then the function's arguments, then the expected principal.
const SETTINGS = `set_config('app.request_id', $1, true), set_config('statement_timeout', $2, true),
       set_config('lock_timeout', $2, true), set_config('client_connection_check_interval', '1000', true)`;
/** With an assumed principal: raises TN409 unless the check found every field of it, in this order (`expected`). */
const EXPECT_USER = `, app_private.expect_principal(array[$5::text, '', b.tenant_id::text, b.tenant_slug, b.tenant_name, b.role] = $8::text[])`;
const EXPECT_KEY = `, app_private.expect_principal(array[b.acting_user_id::text, b.api_key_id::text, b.tenant_id::text, b.tenant_slug, b.tenant_name, b.role] = $6::text[])`;
const USER_CHECK = (expect: string) => `select b.*, ${SETTINGS}${expect} from app_private.begin_request($3::uuid, $4, $5, $6, $7) b`;
const KEY_CHECK = (expect: string) => `select b.*, ${SETTINGS}${expect} from app_private.begin_api_key_request($3, $4, $5) b`;
const CHECKS = {
  user: USER_CHECK(''),
  userExpecting: USER_CHECK(EXPECT_USER),
  key: KEY_CHECK(''),
  keyExpecting: KEY_CHECK(EXPECT_KEY),
  platform: `select b.*, ${SETTINGS} from app_private.begin_platform_request($3) b`,
} as const;
const PREPARED = { prepare: true } as const;

async function beginRequest(tx: Tx, selection: TenantSelection, mode: TransactionMode, requestId: string, timeout: string, assumed?: Principal): Promise<Principal> {
  const { credentials, tenant, allowedSlugs } = selection;
  const allowed = allowedSlugs ? tx.array([...allowedSlugs]) : null;
  const tenantOf = (row: TenantRow): TenantContext => ({
    id: row.tenant_id,
    slug: row.tenant_slug,
    name: row.tenant_name,
    status: row.tenant_status,
    role: row.role,
  });
  // With an assumed principal: every field of it, as the check's row has them (tenantOf, the key's ids), in this order.
  const expected = assumed?.tenant && tx.array([assumed.userId, assumed.apiKeyId ?? '', assumed.tenant.id, assumed.tenant.slug, assumed.tenant.name, assumed.tenant.role]);
  try {
    if (credentials.kind === 'apiKey') {
      const args = [requestId, timeout, credentials.secretHash, tenant ?? null, allowed];
      const [row] = expected
        ? await tx.unsafe<(TenantRow & { acting_user_id: string; api_key_id: string })[]>(CHECKS.keyExpecting, [...args, expected], PREPARED)
        : await tx.unsafe<(TenantRow & { acting_user_id: string; api_key_id: string })[]>(CHECKS.key, args, PREPARED);
      return { userId: row!.acting_user_id, apiKeyId: row!.api_key_id, operator: false, tenant: tenantOf(row!) };
    }
    if (mode === 'platform') {
      const [row] = await tx.unsafe<{ is_operator: boolean }[]>(CHECKS.platform, [requestId, timeout, credentials.userId], PREPARED);
      return { userId: credentials.userId, apiKeyId: null, operator: row!.is_operator, tenant: undefined };
    }
    // The server knows whether it holds an id or a slug; the function need not find out.
    const byId = isUuid(tenant);
    const args = [requestId, timeout, byId ? tenant : null, byId ? null : tenant!, credentials.userId, credentials.roleCap ?? null, allowed];
    const [row] = expected
      ? await tx.unsafe<TenantRow[]>(CHECKS.userExpecting, [...args, expected], PREPARED)
      : await tx.unsafe<TenantRow[]>(CHECKS.user, args, PREPARED);
    return { userId: credentials.userId, apiKeyId: null, tenant: tenantOf(row!) };
  } catch (error) {
    throw tenantError(error, credentials.kind) ?? error;
  }
}

/** The connection went away (the driver's codes, a backend terminated, the server shutting down): UNAVAILABLE `database`. */
function lostConnection(error: unknown): boolean {
  return unavailableFor(error)?.extensions.reason === 'database';
}

/** The only place a database error becomes a tenant error (SQLSTATE class TN). */
function tenantError(error: unknown, kind: Credentials['kind']) {
  switch ((error as { code?: string }).code) {
    case 'TN404':
      return tenantNotFound();
    case 'TN423':
      return tenantSuspended();
    case 'TN409':
      return new PrincipalChanged();
    case 'TN401':
      return unauthenticated(kind === 'apiKey' ? 'Unknown, revoked or expired API key' : 'The credentials name no valid user or role');
    default:
      return undefined;
  }
}
