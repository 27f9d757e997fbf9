// Which tenant a request's credentials belong to, known before the request
// runs, so that its share is counted once whatever it calls the tenant (uuid
// or slug) and whatever key it holds. Learnt from the database in batches
// (app_private.resolve_request_tenants), cached per process, refreshed in the
// background while used. A request never waits for it unless its lane is full.
import { isUuid } from './identifiers.ts';
import type { Sql } from '../db/pool.ts';
import type { TenantSelection } from './principal.ts';
import { resolveRequestTenants, type IdentityQuery, type ResolvedIdentity } from './fair-share-repo.ts';

export type { ResolvedIdentity } from './fair-share-repo.ts';

/**
 * What the credentials present, as one string: the user and the tenant as
 * named, or the API key's hash and the tenant as named. Undefined: a signed-in
 * user naming no tenant (platform work, or TENANT_REQUIRED).
 */
export function identityKey(selection: TenantSelection): string | undefined {
  const { credentials, tenant } = selection;
  if (credentials.kind === 'apiKey') return `k ${credentials.secretHash.toString('hex')} ${tenant ?? ''}`;
  return tenant === undefined ? undefined : `u ${credentials.userId} ${tenant}`;
}

function identityQuery(selection: TenantSelection): IdentityQuery {
  const { credentials, tenant } = selection;
  const byId = tenant !== undefined && isUuid(tenant) ? tenant : null;
  return {
    userId: credentials.kind === 'user' ? credentials.userId : null,
    tenantId: byId,
    tenantSlug: byId === null ? (tenant ?? null) : null,
    keyHashHex: credentials.kind === 'apiKey' ? credentials.secretHash.toString('hex') : null,
  };
}

export type DirectoryOptions = {
  /** How long an answer holds; after half of it, a use refreshes it in the background. */
  readonly ttlMs?: number;
  /** How long "no tenant" holds (an unknown key asked again and again costs one lookup per period). */
  readonly negativeTtlMs?: number;
  readonly maxEntries?: number;
  /** Identities looked up per statement. */
  readonly maxBatch?: number;
  readonly onError?: (error: unknown) => void;
  /** Called with each identity the database placed in a tenant. */
  readonly onResolved?: (resolved: NonNullable<ResolvedIdentity>) => void;
};

type Entry = { value: ResolvedIdentity; expiresAt: number; refreshAt: number };
type Pending = { query: IdentityQuery; waiters: ((value: ResolvedIdentity) => void)[] };

export class TenantDirectory {
  readonly #sql: Sql;
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #maxEntries: number;
  readonly #maxBatch: number;
  readonly #onError: (error: unknown) => void;
  readonly #onResolved: (resolved: NonNullable<ResolvedIdentity>) => void;
  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Pending>();
  #flushing = false;
  #scheduled = false;

  constructor(sql: Sql, options: DirectoryOptions = {}) {
    this.#sql = sql;
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#negativeTtlMs = options.negativeTtlMs ?? 5_000;
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#maxBatch = options.maxBatch ?? 500;
    this.#onError = options.onError ?? (() => {});
    this.#onResolved = options.onResolved ?? (() => {});
  }

  /**
   * The identity's tenant if known: null when it belongs to none, undefined
   * when not known yet (a lookup is then on its way).
   */
  peek(key: string, selection: TenantSelection, now = Date.now()): ResolvedIdentity | undefined {
    const entry = this.#entries.get(key);
    if (entry && now < entry.expiresAt) {
      if (now >= entry.refreshAt) {
        entry.refreshAt = entry.expiresAt; // one refresh per period
        this.#ask(key, selection);
      }
      return entry.value;
    }
    this.#ask(key, selection);
    return undefined;
  }

  /** Resolves once no lookup is asked for or under way (tests). */
  async idle(): Promise<void> {
    while (this.#pending.size > 0 || this.#flushing || this.#scheduled) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** The identity's tenant, waiting for the database when it is not known. */
  resolve(key: string, selection: TenantSelection): Promise<ResolvedIdentity> {
    const known = this.peek(key, selection);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve) => this.#pending.get(key)!.waiters.push(resolve));
  }

  #ask(key: string, selection: TenantSelection): void {
    if (!this.#pending.has(key)) this.#pending.set(key, { query: identityQuery(selection), waiters: [] });
    if (!this.#scheduled && !this.#flushing) {
      this.#scheduled = true;
      setImmediate(() => void this.#flush());
    }
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    this.#flushing = true;
    try {
      while (this.#pending.size > 0) {
        const batch = [...this.#pending].slice(0, this.#maxBatch);
        for (const [key] of batch) this.#pending.delete(key);
        let answers: ResolvedIdentity[];
        try {
          answers = await resolveRequestTenants(this.#sql, batch.map(([, pending]) => pending.query));
        } catch (error) {
          this.#onError(error);
          // Not cached: the next use asks again. Waiters go on as "no tenant known".
          for (const [, pending] of batch) for (const waiter of pending.waiters) waiter(null);
          return;
        }
        const now = Date.now();
        batch.forEach(([key, pending], i) => {
          const value = answers[i] ?? null;
          const ttl = value ? this.#ttlMs : this.#negativeTtlMs;
          this.#entries.delete(key); // re-inserted last: the map's order is the eviction order
          this.#entries.set(key, { value, expiresAt: now + ttl, refreshAt: now + ttl / 2 });
          if (value) this.#onResolved(value);
          for (const waiter of pending.waiters) waiter(value);
        });
        for (const key of this.#entries.keys()) {
          if (this.#entries.size <= this.#maxEntries) break;
          this.#entries.delete(key);
        }
      }
    } finally {
      this.#flushing = false;
      if (this.#pending.size > 0 && !this.#scheduled) {
        this.#scheduled = true;
        setTimeout(() => void this.#flush(), 100).unref(); // after a failure: try again shortly
      }
    }
  }
}
