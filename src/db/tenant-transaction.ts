// The one way requests reach tenant data: a transaction whose first statement
// (app_private.begin_request and its API-key and platform variants) checks the
// credentials, tenant and membership and sets the transaction-local settings
// every RLS policy reads.
import { isUuid } from '../auth/tokens.ts';
import { tenantNotFound, tenantRequired, tenantSuspended, unauthenticated } from '../errors.ts';
import type { Role } from '../tenancy/roles.ts';
import type { Sql, Tx } from './pool.ts';

type Reserved = Awaited<ReturnType<Sql['reserve']>>;

/** Who is asking: a signed-in user (JWT), or an API key (by its SHA-256). */
export type Credentials =
  | { readonly kind: 'user'; readonly userId: string; /** A role claim: can only lower the membership's role. */ readonly roleCap: Role | undefined }
  | { readonly kind: 'apiKey'; readonly secretHash: Buffer };

/** What the credentials ask for; the database decides what they get. */
export type TenantSelection = {
  readonly credentials: Credentials;
  /** Tenant uuid or slug; undefined when the credentials name none. */
  readonly tenant: string | undefined;
  /** ALLOWED_TENANTS: every other tenant reads as not found. */
  readonly allowedSlugs: readonly string[] | undefined;
};

export type TenantContext = {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly status: 'active' | 'suspended';
  /** The membership role, lowered to the role claim or the API key's role. */
  readonly role: Role;
};

/** The request as the database accepted it. */
export type Principal = {
  /** The signed-in user, or the user an API key acts for. */
  readonly userId: string;
  readonly apiKeyId: string | null;
  /** Known from the start of platform and API-key transactions; otherwise see TenantTransaction.isOperator. */
  readonly operator?: boolean;
  /** Undefined in a platform transaction. */
  readonly tenant: TenantContext | undefined;
};

/**
 * `tenant`: the request works inside one tenant (the default).
 * `platform`: it works outside any tenant (operator work, accepting an
 * invitation): only the user is set, every tenant table reads as empty.
 */
export type TransactionMode = 'tenant' | 'platform';

type Opened = { readonly tx: Reserved; readonly principal: Promise<Principal> };

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

  constructor(sql: Sql, selection: TenantSelection) {
    this.#sql = sql;
    this.#selection = selection;
  }

  /** Who the database accepted this request as. */
  async principal(): Promise<Principal> {
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

  /** Runs repository code inside the request transaction. */
  async run<T>(query: (tx: Tx) => Promise<T>): Promise<T> {
    const { tx, principal } = await this.#open();
    const result = query(tx);
    try {
      await principal;
    } catch (error) {
      result.catch(() => {}); // failed only because the transaction was aborted
      throw error;
    }
    return result;
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

  /** Commits or rolls back and returns the connection to the pool; idempotent. A commit error is thrown. */
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
      await (commit ? tx`commit` : tx`rollback`);
    } finally {
      tx.release();
    }
  }

  #open(): Promise<Opened> {
    if (this.#ended) return Promise.reject(new Error('the request transaction has already ended'));
    if (this.#mode === 'tenant' && this.#selection.credentials.kind === 'user' && !this.#selection.tenant) {
      return Promise.reject(tenantRequired()); // no transaction needed to say so
    }
    this.#opened ??= this.#begin();
    return this.#opened;
  }

  /**
   * BEGIN, the request check and the first queries leave in one write to the
   * server (postgres.js batches what is queued in the same tick on a reserved
   * connection): one round trip for all of them, one more for COMMIT.
   */
  async #begin(): Promise<Opened> {
    const tx = await this.#sql.reserve();
    const begun = tx`begin`;
    const checked = beginRequest(tx, this.#selection, this.#mode);
    const principal = begun.then(() => checked);
    checked.catch(() => {}); // observed through `principal`
    principal.then((known) => (this.#known = known), () => {}); // failures are observed by run() and principal()
    return { tx, principal };
  }
}

type TenantRow = {
  tenant_id: string;
  tenant_slug: string;
  tenant_name: string;
  tenant_status: 'active' | 'suspended';
  role: Role;
};

async function beginRequest(tx: Tx, selection: TenantSelection, mode: TransactionMode): Promise<Principal> {
  const { credentials, tenant, allowedSlugs } = selection;
  const allowed = allowedSlugs ? tx.array([...allowedSlugs]) : null;
  const tenantOf = (row: TenantRow): TenantContext => ({
    id: row.tenant_id,
    slug: row.tenant_slug,
    name: row.tenant_name,
    status: row.tenant_status,
    role: row.role,
  });
  try {
    if (credentials.kind === 'apiKey') {
      const [row] = await tx<(TenantRow & { acting_user_id: string; api_key_id: string })[]>`
        select * from app_private.begin_api_key_request(${credentials.secretHash}, ${tenant ?? null}, ${allowed})`;
      return { userId: row!.acting_user_id, apiKeyId: row!.api_key_id, operator: false, tenant: tenantOf(row!) };
    }
    if (mode === 'platform') {
      const [row] = await tx<{ is_operator: boolean }[]>`select * from app_private.begin_platform_request(${credentials.userId})`;
      return { userId: credentials.userId, apiKeyId: null, operator: row!.is_operator, tenant: undefined };
    }
    // The server knows whether it holds an id or a slug; the function need not find out.
    const [row] = await tx<TenantRow[]>`
      select * from app_private.begin_request(${isUuid(tenant) ? tenant : null}::uuid, ${isUuid(tenant) ? null : tenant!},
                                              ${credentials.userId}, ${credentials.roleCap ?? null}, ${allowed})`;
    return { userId: credentials.userId, apiKeyId: null, tenant: tenantOf(row!) };
  } catch (error) {
    throw tenantError(error, credentials.kind) ?? error;
  }
}

/** The only place a database error becomes a tenant error (SQLSTATE class TN). */
function tenantError(error: unknown, kind: Credentials['kind']) {
  switch ((error as { code?: string }).code) {
    case 'TN404':
      return tenantNotFound();
    case 'TN423':
      return tenantSuspended();
    case 'TN401':
      return unauthenticated(kind === 'apiKey' ? 'Unknown, revoked or expired API key' : 'The credentials name no valid user or role');
    default:
      return undefined;
  }
}
