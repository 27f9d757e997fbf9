// The one way requests reach tenant data: a transaction whose first statement
// (app_private.begin_request) checks the tenant and membership and sets the
// transaction-local settings every RLS policy reads.
import { tenantNotFound, tenantSuspended, unauthenticated } from '../errors.ts';
import type { Role } from '../tenancy/roles.ts';
import type { Sql, Tx } from './pool.ts';

/** What the credentials ask for; the database decides what they get. */
export type TenantSelection = {
  /** Tenant uuid or slug. */
  readonly tenant: string;
  readonly userId: string;
  /** A role claim: can only lower the membership's role. */
  readonly roleCap: Role | undefined;
  /** ALLOWED_TENANTS: every other tenant reads as not found. */
  readonly allowedSlugs: readonly string[] | undefined;
};

export type TenantContext = {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly status: 'active' | 'suspended';
  /** The membership role, lowered to the role claim. */
  readonly role: Role;
};

type Opened = { readonly tx: Tx; readonly tenant: Promise<TenantContext> };

const ROLLBACK = Symbol('rollback');

/**
 * One transaction per GraphQL operation, opened on first use and ended once
 * by `end`. Queries run through `run` are pipelined behind the tenant check,
 * so the tenant context costs no extra round trip.
 */
export class TenantTransaction {
  readonly #sql: Sql;
  readonly #selection: TenantSelection;
  #opened: Promise<Opened> | undefined;
  #finish: ((commit: boolean) => void) | undefined;
  #done: Promise<void> | undefined;
  #ended = false;
  #known: TenantContext | undefined;

  constructor(sql: Sql, selection: TenantSelection) {
    this.#sql = sql;
    this.#selection = selection;
  }

  /** The request's tenant and role, as checked by the database. */
  async tenant(): Promise<TenantContext> {
    return (await this.#open()).tenant;
  }

  /** Runs repository code inside the tenant transaction. */
  async run<T>(query: (tx: Tx) => Promise<T>): Promise<T> {
    const { tx, tenant } = await this.#open();
    const result = query(tx);
    try {
      await tenant;
    } catch (error) {
      result.catch(() => {}); // failed only because the transaction was aborted
      throw error;
    }
    return result;
  }

  /** Starts the transaction now, so the tenant check overlaps with parsing work. */
  start(): void {
    this.#open().catch(() => {}); // the same failure reaches whoever awaits it
  }

  /** The tenant once the database has accepted it (for log lines). */
  get known(): TenantContext | undefined {
    return this.#known;
  }

  /** Commits or rolls back; idempotent. A commit error is thrown. */
  async end(commit: boolean): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    if (!this.#opened) return;
    this.#finish?.(commit);
    await this.#done;
  }

  #open(): Promise<Opened> {
    if (this.#ended) return Promise.reject(new Error('the request transaction has already ended'));
    this.#opened ??= new Promise<Opened>((opened, failed) => {
      const finished = new Promise<boolean>((resolve) => (this.#finish = resolve));
      this.#done = this.#sql
        .begin(async (tx) => {
          const tenant = beginRequest(tx, this.#selection);
          tenant.then((known) => (this.#known = known), () => {}); // failures are observed by run() and tenant()
          opened({ tx, tenant });
          if (!(await finished)) throw ROLLBACK;
        })
        .then(
          () => {},
          (error: unknown) => {
            if (error !== ROLLBACK) throw error;
          },
        );
      this.#done.catch(failed); // BEGIN itself failed: nobody got a transaction
    });
    return this.#opened;
  }
}

type BeginRequestRow = {
  tenant_id: string;
  tenant_slug: string;
  tenant_name: string;
  tenant_status: 'active' | 'suspended';
  role: Role;
};

async function beginRequest(tx: Tx, selection: TenantSelection): Promise<TenantContext> {
  try {
    const [row] = await tx<BeginRequestRow[]>`
      select * from app_private.begin_request(
        ${selection.tenant}, ${selection.userId}, ${selection.roleCap ?? null},
        ${selection.allowedSlugs ? tx.array([...selection.allowedSlugs]) : null})`;
    if (!row) throw new Error('begin_request returned no row');
    return { id: row.tenant_id, slug: row.tenant_slug, name: row.tenant_name, status: row.tenant_status, role: row.role };
  } catch (error) {
    throw tenantError(error) ?? error;
  }
}

/** The only place a database error becomes a tenant error (SQLSTATE class TN). */
function tenantError(error: unknown) {
  switch ((error as { code?: string }).code) {
    case 'TN404':
      return tenantNotFound();
    case 'TN423':
      return tenantSuspended();
    case 'TN401':
      return unauthenticated('The role claim is not a tenant role');
    default:
      return undefined;
  }
}
