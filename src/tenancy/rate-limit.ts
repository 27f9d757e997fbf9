// Request rate limits per tenant and per API key: token buckets kept in
// PostgreSQL (app.request_buckets), shared by every process and replica, and
// spent locally. A process leases a few tokens at a time for each bucket it
// serves (app_private.take_request_tokens, batched over buckets, ahead of the
// demand it sees), spends them without a round trip and gives back what it has
// not spent within the time a lease covers (five seconds). The database never
// grants more than a bucket holds, so processes cannot overspend it together; what they can do is spend
// tokens leased before the bucket refilled (bounded by the leases held, a
// tenth of the bucket per process at most) or leave leased tokens unspent for
// a while (the same bound, the other way). When the database does not answer
// a lease in time, each process refills its buckets itself at their limit's
// pace until it does: a tenant then gets at most its rate in each process.
import { GraphQLError } from 'graphql';
import type { Sql } from '../db/pool.ts';
import { takeRequestTokens, type TokenLease } from './fair-share-repo.ts';

export type RateLimitOptions = {
  /** A lease covers this much of the demand seen (ms). */
  readonly leaseAheadMs?: number;
  /** Tokens not spent this long after being leased (or after the last spent) go back to the bucket; by default as long as a lease covers. */
  readonly leaseTtlMs?: number;
  /** The most a lease takes of a bucket (a share of its size). */
  readonly maxLeaseShare?: number;
  /** An empty bucket is asked again at most this often. */
  readonly minRetryMs?: number;
  /** A request waits at most this long for a lease; past it (the database is slow or down) the bucket refills locally. */
  readonly waitMs?: number;
  readonly onError?: (error: unknown) => void;
};

export type RateDecision =
  | { readonly ok: true; readonly headers: Readonly<Record<string, string>> | undefined; readonly refund: () => void }
  | { readonly ok: false; readonly error: GraphQLError };

type Lease = { want: number; settled: Promise<void>; settle: () => void };

type Bucket = {
  readonly tenantId: string;
  readonly apiKeyId: string | null;
  readonly policy: 'tenant' | 'api-key';
  /** Undefined until the first lease answers; null: unlimited. */
  perMinute: number | null | undefined;
  burst: number;
  policyHeader: string;
  /** Leased tokens this process may spend. */
  tokens: number;
  /** What the bucket held after this process's last lease, and when. */
  remote: number;
  syncedAt: number;
  emptyUntil: number;
  /** The database did not answer a lease: the bucket refills here, from `localAt`, until a lease lands. */
  local: boolean;
  localAt: number;
  /** In local mode, the next lease is tried no sooner than this. */
  retryLeaseAt: number;
  leasedAt: number;
  lastSpentAt: number;
  /** Tokens a second spent here (moving average). */
  demand: number;
  pending: Lease | undefined;
};

const IDLE_MS = 5 * 60_000;
const MAX_BATCH = 1000;

export class RateLimiter {
  readonly #sql: Sql;
  readonly #leaseAheadMs: number;
  readonly #leaseTtlMs: number;
  readonly #maxLeaseShare: number;
  readonly #minRetryMs: number;
  readonly #waitMs: number;
  readonly #onError: (error: unknown) => void;
  readonly #buckets = new Map<string, Bucket>();
  readonly #queue = new Set<Bucket>();
  #returns: TokenLease[] = [];
  #flushing = false;
  #scheduled = false;
  readonly #sweeper: NodeJS.Timeout;

  constructor(sql: Sql, options: RateLimitOptions = {}) {
    this.#sql = sql;
    // Five seconds of demand a lease (within the share below): a lease costs PostgreSQL ~0.4 ms plus ~0.15 ms a bucket
    // (~0.9 ms a call under load, bench:pg-cost). Near the limit the share binds anyway (a tenth of the bucket is one
    // second of its rate), so the look-ahead only spares lease calls to tenants far below their limit.
    this.#leaseAheadMs = options.leaseAheadMs ?? 5000;
    // A lease is the demand of the next leaseAheadMs: kept as long, so a tenant asking once every second or two
    // spends what it leased instead of giving it back and waiting for a lease on its next request.
    this.#leaseTtlMs = options.leaseTtlMs ?? this.#leaseAheadMs;
    this.#maxLeaseShare = options.maxLeaseShare ?? 0.1;
    this.#minRetryMs = options.minRetryMs ?? 100;
    this.#waitMs = options.waitMs ?? 1000;
    this.#onError = options.onError ?? (() => {});
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(this.#leaseTtlMs, 1000)); // unspent tokens back within a second of their time
    this.#sweeper.unref();
  }

  /** One request of the tenant (and API key): a decision now, or after one batched lease. */
  take(tenantId: string, apiKeyId: string | null): RateDecision | Promise<RateDecision> {
    const tenant = this.#bucket(tenantId, null);
    const key = apiKeyId === null ? undefined : this.#bucket(tenantId, apiKeyId);
    const now = Date.now();
    const waits = [this.#wait(tenant, now), key && this.#wait(key, now)].filter((wait) => wait !== undefined);
    if (waits.length === 0) return this.#decide(tenant, key, now);
    return this.#retry(tenant, key, waits, 3);
  }

  /** Leases tokens for a tenant ahead of its first request (its identity was just resolved). */
  prefetch(tenantId: string, apiKeyId: string | null): void {
    for (const bucket of [this.#bucket(tenantId, null), apiKeyId === null ? undefined : this.#bucket(tenantId, apiKeyId)]) {
      if (bucket && bucket.perMinute === undefined && !bucket.pending) void this.#lease(bucket, 0);
    }
  }

  /**
   * Counts a request admitted before its tenant was known (its credentials'
   * first use): spent now, into debt if the bucket is dry, so that the next
   * requests repay it. Naming the tenant anew gains nothing but time.
   */
  charge(tenantId: string, apiKeyId: string | null): void {
    const now = Date.now();
    for (const bucket of [this.#bucket(tenantId, null), apiKeyId === null ? undefined : this.#bucket(tenantId, apiKeyId)]) {
      if (!bucket || bucket.perMinute === null || bucket.local) continue; // unlimited, or the database away: nothing leased to owe
      bucket.tokens -= 1;
      this.#spent(bucket, now);
    }
  }

  /** Resolves once no lease is asked for or under way (tests). */
  async idle(): Promise<void> {
    while (this.#queue.size > 0 || this.#flushing || this.#scheduled) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** Gives every unspent token back (on shutdown), waiting at most two seconds for the database. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    for (const bucket of this.#buckets.values()) this.#giveBack(bucket);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#flush(), new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
    clearTimeout(timer);
  }

  async #retry(tenant: Bucket, key: Bucket | undefined, waits: Promise<void>[], tries: number): Promise<RateDecision> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.#waitMs)));
    const outcome = await Promise.race([Promise.all(waits), timedOut]);
    clearTimeout(timer);
    const now = Date.now();
    if (outcome === 'timeout') {
      for (const bucket of [tenant, key]) if (bucket && bucket.tokens < 1) this.#goLocal(bucket, now);
      this.#onError(new Error(`no token lease within ${this.#waitMs} ms: buckets refill locally meanwhile`));
      return this.#decide(tenant, key, now);
    }
    // Others may have taken what the lease brought; ask again unless the bucket is known to be empty.
    const again = [this.#wait(tenant, now), key && this.#wait(key, now)].filter((wait) => wait !== undefined);
    if (again.length > 0 && tries > 1) return this.#retry(tenant, key, again, tries - 1);
    return this.#decide(tenant, key, now);
  }

  /** Undefined when the bucket can decide now; else the lease to wait for. */
  #wait(bucket: Bucket, now: number): Promise<void> | undefined {
    if (bucket.local) this.#refillLocally(bucket, now);
    if (bucket.perMinute === null || bucket.tokens >= 1 || bucket.local) return undefined;
    if (bucket.perMinute !== undefined && now < bucket.emptyUntil) return undefined;
    return this.#lease(bucket, 1); // the debt of requests charged afterwards is added once, by the lease itself
  }

  /** The database did not answer: refill here from now on, try a lease again later. */
  #goLocal(bucket: Bucket, now: number): void {
    if (!bucket.local) {
      bucket.local = true;
      bucket.localAt = now;
    }
    bucket.retryLeaseAt = now + this.#waitMs;
  }

  /** At the limit's pace, at most one lease's worth held (a limit not known yet admits: nothing to go by). */
  #refillLocally(bucket: Bucket, now: number): void {
    if (typeof bucket.perMinute !== 'number') return;
    const cap = Math.max(1, Math.floor(bucket.burst * this.#maxLeaseShare));
    const refilled = bucket.tokens + ((now - bucket.localAt) * bucket.perMinute) / 60_000;
    bucket.tokens = Math.max(bucket.tokens, Math.min(cap, refilled)); // never takes tokens away, never above a lease's worth
    bucket.localAt = now;
  }

  #decide(tenant: Bucket, key: Bucket | undefined, now: number): RateDecision {
    for (const bucket of [tenant, key]) {
      if (bucket && !this.#has(bucket)) return { ok: false, error: this.#refusal(tenant, key, bucket, now) };
    }
    const spent = [tenant, key].filter((bucket) => bucket !== undefined && this.#spend(bucket, now));
    return {
      ok: true,
      headers: this.#headers(tenant, key, now),
      refund: () => {
        for (const bucket of spent) bucket!.tokens += 1;
      },
    };
  }

  #has(bucket: Bucket): boolean {
    return bucket.perMinute === null || bucket.tokens >= 1 || bucket.perMinute === undefined;
  }

  /** False when nothing was spent: unlimited, or admitted while the database was away. */
  #spend(bucket: Bucket, now: number): boolean {
    if (typeof bucket.perMinute !== 'number' || bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    this.#spent(bucket, now);
    return true;
  }

  /** A token was spent: the demand seen moves, and a lease is asked for ahead of the bucket running dry. */
  #spent(bucket: Bucket, now: number): void {
    const elapsed = Math.max(now - bucket.lastSpentAt, 1);
    // Demand in tokens a second, averaged over about a second.
    const weight = Math.min(1, elapsed / 1000);
    bucket.demand = bucket.demand * (1 - weight) + (1000 / elapsed) * weight;
    bucket.lastSpentAt = now;
    if (bucket.tokens < Math.max(1, this.#chunk(bucket) / 2) && !bucket.pending && (!bucket.local || now >= bucket.retryLeaseAt)) {
      void this.#lease(bucket, 0);
    }
  }

  /** Tokens one lease asks for: the demand expected until the next, within a share of the bucket. */
  #chunk(bucket: Bucket): number {
    const cap = Math.max(1, Math.floor(bucket.burst * this.#maxLeaseShare));
    return Math.min(cap, Math.max(1, Math.ceil((bucket.demand * this.#leaseAheadMs) / 1000)));
  }

  #lease(bucket: Bucket, extra: number): Promise<void> {
    if (!bucket.pending) {
      let settle!: () => void;
      const settled = new Promise<void>((resolve) => (settle = resolve));
      bucket.pending = { want: 0, settled, settle };
      this.#queue.add(bucket);
      this.#schedule();
    }
    bucket.pending.want += extra;
    return bucket.pending.settled;
  }

  #schedule(): void {
    if (this.#scheduled || this.#flushing) return;
    this.#scheduled = true;
    setImmediate(() => void this.#flush());
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      while (this.#queue.size > 0 || this.#returns.length > 0) {
        const buckets = [...this.#queue].slice(0, MAX_BATCH);
        const leases = buckets.map((bucket) => {
          this.#queue.delete(bucket);
          const lease = bucket.pending!;
          bucket.pending = undefined;
          // What the waiting requests need, and once the debt of first uses charged after they ran (tokens below 0).
          const debt = Math.max(0, Math.ceil(-bucket.tokens));
          const want = Math.min(Math.max(lease.want + debt, this.#chunk(bucket)), bucket.perMinute === undefined ? MAX_FIRST_LEASE : Math.max(1, bucket.burst));
          return { bucket, lease, want };
        });
        const returns = this.#returns.splice(0, MAX_BATCH - leases.length);
        try {
          const results = await takeRequestTokens(this.#sql, [
            ...leases.map(({ bucket, want }) => ({ tenantId: bucket.tenantId, apiKeyId: bucket.apiKeyId, want })),
            ...returns,
          ]);
          const now = Date.now();
          leases.forEach(({ bucket, want }, i) => this.#apply(bucket, want, results[i]!, now));
        } catch (error) {
          this.#onError(error);
          const now = Date.now();
          for (const { bucket } of leases) this.#goLocal(bucket, now);
        } finally {
          for (const { lease } of leases) lease.settle();
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  #apply(bucket: Bucket, want: number, result: { granted: number; remaining: number; perMinute: number | null }, now: number): void {
    if (bucket.perMinute !== result.perMinute) {
      bucket.perMinute = result.perMinute;
      bucket.burst = result.perMinute === null ? Infinity : result.perMinute === 0 ? 0 : Math.max(1, Math.ceil(result.perMinute / 6));
      bucket.policyHeader = result.perMinute ? `"${bucket.policy}";q=${bucket.burst};w=${Math.round((bucket.burst * 60) / result.perMinute)}` : '';
    }
    bucket.tokens += result.granted;
    bucket.remote = result.remaining;
    bucket.syncedAt = now;
    bucket.leasedAt = now;
    bucket.local = false;
    if (result.perMinute !== null && result.granted < want && bucket.tokens < 1) {
      // The bucket ran dry: asked again once it holds a token beyond the debt here (a debt deeper than one token included).
      // While it still grants, a debt deeper than a lease is leased again at once instead.
      const wait = result.perMinute === 0 ? 60_000 : (Math.max(0, 1 - bucket.tokens - result.remaining) * 60_000) / result.perMinute;
      bucket.emptyUntil = now + Math.max(this.#minRetryMs, wait);
    }
  }

  #refusal(tenant: Bucket, key: Bucket | undefined, empty: Bucket, now: number): GraphQLError {
    const retryAfter = Math.max(1, Math.ceil((empty.emptyUntil - now) / 1000));
    const headers: Record<string, string> = { 'retry-after': String(retryAfter), ...this.#headers(tenant, key, now) };
    const message = empty.policy === 'tenant'
      ? 'Too many requests for this tenant: try again later'
      : 'Too many requests for this API key: try again later';
    return new GraphQLError(message, {
      extensions: { code: 'RATE_LIMITED', retryAfter, policy: empty.policy, http: { status: 429, headers } },
    });
  }

  /** RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers): one item per limited bucket. */
  #headers(tenant: Bucket, key: Bucket | undefined, now: number): Record<string, string> | undefined {
    const policies: string[] = [];
    const states: string[] = [];
    for (const bucket of [tenant, key]) {
      if (!bucket || !bucket.perMinute) continue;
      const perSecond = bucket.perMinute / 60;
      const remote = Math.max(0, bucket.remote + ((now - bucket.syncedAt) / 1000) * perSecond);
      const remaining = Math.max(0, Math.floor(Math.min(bucket.burst, bucket.tokens + remote))); // never below 0, in debt too
      const reset = Math.ceil((bucket.burst - remaining) / perSecond);
      policies.push(bucket.policyHeader);
      states.push(`"${bucket.policy}";r=${remaining};t=${reset}`);
    }
    return policies.length === 0 ? undefined : { 'ratelimit-policy': policies.join(', '), ratelimit: states.join(', ') };
  }

  #bucket(tenantId: string, apiKeyId: string | null): Bucket {
    const id = apiKeyId === null ? tenantId : `${tenantId} ${apiKeyId}`;
    let bucket = this.#buckets.get(id);
    if (!bucket) {
      bucket = {
        tenantId,
        apiKeyId,
        policy: apiKeyId === null ? 'tenant' : 'api-key',
        perMinute: undefined,
        burst: 1,
        policyHeader: '',
        tokens: 0,
        remote: 0,
        syncedAt: 0,
        emptyUntil: 0,
        local: false,
        localAt: 0,
        retryLeaseAt: 0,
        leasedAt: 0,
        lastSpentAt: 0,
        demand: 0,
        pending: undefined,
      };
      this.#buckets.set(id, bucket);
    }
    return bucket;
  }

  /** Gives back tokens leased and not spent in time; forgets buckets idle for minutes. */
  #sweep(): void {
    const now = Date.now();
    for (const [id, bucket] of this.#buckets) {
      if (bucket.pending) continue;
      if (bucket.tokens >= 1 && now - Math.max(bucket.lastSpentAt, bucket.leasedAt) >= this.#leaseTtlMs) this.#giveBack(bucket);
      if (bucket.tokens < 1 && now - Math.max(bucket.lastSpentAt, bucket.leasedAt) >= IDLE_MS) this.#buckets.delete(id);
    }
    if (this.#returns.length > 0) this.#schedule();
  }

  #giveBack(bucket: Bucket): void {
    const unspent = Math.floor(bucket.tokens);
    if (unspent < 1 || typeof bucket.perMinute !== 'number' || bucket.local) return; // tokens refilled here were never leased
    bucket.tokens -= unspent;
    this.#returns.push({ tenantId: bucket.tenantId, apiKeyId: bucket.apiKeyId, want: -unspent });
  }
}

/** The first lease of a bucket, before its size is known. */
const MAX_FIRST_LEASE = 10;
