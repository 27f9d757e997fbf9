// Fair share between tenants (DESIGN.md invariant 13), as one request guard
// (http/guard.ts): a request is counted against its tenant's request rate
// (tenancy/rate-limit.ts) and then takes one of its tenant's lanes, of which a
// tenant holds at most TENANT_MAX_CONCURRENCY in this process (a share of its
// connection pool); the rest wait in the tenant's own bounded queue. A request
// whose tenant is not known yet (its credentials' first use in this process,
// a stranger's key, a tenant the user is not in) shares one more lane of the
// same size with every other such request, so nobody gains a share by
// renaming a tenant or inventing keys, and nobody can spend a tenant's share
// by naming it.
import { GraphQLError } from 'graphql';
import type { FairShareSettings } from '../config.ts';
import { apiError } from '../errors.ts';
import type { Sql } from '../db/pool.ts';
import type { Admission, GuardRequest, RequestGuard } from '../http/guard.ts';
import { RateLimiter, type RateLimitOptions } from './rate-limit.ts';
import { identityKey, TenantDirectory, type DirectoryOptions } from './tenant-directory.ts';


type Waiter = { readonly grant: () => void; readonly fail: () => void; readonly since: number; readonly expires: number; done: boolean };
type Lane = { readonly name: string; active: number; waiting: number; queue: Waiter[] };
type LaneSettings = Pick<FairShareSettings, 'maxConcurrency' | 'queueMax' | 'queueTimeoutMs' | 'poolSize'>;

/** How often waiting requests are held against their wait's end: one timer for all lanes while any waits, not one a waiting request. */
export const QUEUE_SWEEP_MS = 20;

/**
 * The pool's connections as slots: a request holds one from admission to its
 * end. A lane (a tenant) holds at most `maxConcurrency`; all lanes together at
 * most `poolSize`, so no request of the service waits for a connection inside
 * the pool. A freed slot goes to the waiting lane that holds the fewest (its
 * oldest request first): a tenant arriving beside two that fill the pool is
 * served next, not after their queues.
 */
export class TenantLanes {
  readonly #lanes = new Map<string, Lane>();
  /** Lanes with requests waiting (for a slot of their own, or of the pool). */
  readonly #waiting = new Set<Lane>();
  readonly #settings: LaneSettings;
  #active = 0;
  #sweep: NodeJS.Timeout | undefined;

  constructor(settings: LaneSettings) {
    this.#settings = settings;
  }

  hasRoom(name: string): boolean {
    return (this.#lanes.get(name)?.active ?? 0) < this.#settings.maxConcurrency && this.#active < this.#settings.poolSize;
  }

  /**
   * A slot now (its release function), or a promise of one; RATE_LIMITED when
   * the lane's queue is full, or after the queue timeout when the lane was at
   * its share (UNAVAILABLE when it waited for the pool instead).
   */
  acquire(name: string, waitMs = this.#settings.queueTimeoutMs): (() => void) | Promise<() => void> {
    let lane = this.#lanes.get(name);
    if (!lane) {
      lane = { name, active: 0, waiting: 0, queue: [] };
      this.#lanes.set(name, lane);
    }
    if (lane.waiting === 0 && lane.active < this.#settings.maxConcurrency && this.#active < this.#settings.poolSize) {
      this.#take(lane);
      return this.#releaser(lane);
    }
    if (lane.waiting >= this.#settings.queueMax) throw busy(1);
    const current = lane;
    return new Promise((resolve, reject) => {
      const since = performance.now();
      current.queue.push({
        done: false,
        since,
        expires: since + Math.max(0, Math.min(waitMs, this.#settings.queueTimeoutMs)),
        grant: () => resolve(this.#releaser(current)),
        // Read when it ends: at its share, the tenant's own queue (429); below it, the pool was full (503).
        fail: () => reject(current.active >= this.#settings.maxConcurrency ? busy(1) : poolBusy()),
      });
      current.waiting += 1;
      this.#waiting.add(current);
      this.#sweep ??= setInterval(() => this.#expire(), QUEUE_SWEEP_MS).unref();
    });
  }

  /** Ends the waits that are over (each is answered as its lane stands now); stops when nobody waits. */
  #expire(): void {
    const now = performance.now();
    for (const lane of this.#waiting) {
      for (const waiter of lane.queue) {
        if (waiter.done || waiter.expires > now) continue;
        waiter.done = true;
        lane.waiting -= 1;
        waiter.fail();
      }
      if (lane.waiting === 0) {
        lane.queue.length = 0;
        this.#waiting.delete(lane);
        this.#forget(lane);
      }
    }
    if (this.#waiting.size === 0) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  /** Slots held and requests waiting, per lane (for tests and metrics). */
  snapshot(): Record<string, { active: number; waiting: number }> {
    return Object.fromEntries([...this.#lanes].map(([name, lane]) => [name, { active: lane.active, waiting: lane.waiting }]));
  }

  #take(lane: Lane): void {
    lane.active += 1;
    this.#active += 1;
  }

  #releaser(lane: Lane): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      lane.active -= 1;
      this.#active -= 1;
      this.#dispatch();
      this.#forget(lane);
    };
  }

  /** Free slots to waiting lanes below their share: the one holding fewest first, then the one waiting longest. */
  #dispatch(): void {
    while (this.#active < this.#settings.poolSize && this.#waiting.size > 0) {
      let best: { lane: Lane; head: Waiter } | undefined;
      for (const lane of this.#waiting) {
        if (lane.active >= this.#settings.maxConcurrency) continue;
        while (lane.queue[0]?.done) lane.queue.shift();
        const head = lane.queue[0];
        if (!head) continue;
        if (!best || lane.active < best.lane.active || (lane.active === best.lane.active && head.since < best.head.since)) best = { lane, head };
      }
      if (!best) return;
      const { lane, head } = best;
      lane.queue.shift();
      head.done = true;
      lane.waiting -= 1;
      if (lane.waiting === 0) this.#waiting.delete(lane);
      this.#take(lane);
      head.grant();
    }
  }

  #forget(lane: Lane): void {
    if (lane.active === 0 && lane.waiting === 0 && this.#lanes.get(lane.name) === lane) this.#lanes.delete(lane.name);
  }
}

/** Every connection of this process is taken by other tenants' requests (each within its share): busy, not this tenant's fault. */
function poolBusy(): GraphQLError {
  return apiError('UNAVAILABLE', 'Every database connection is busy: try again shortly', { reason: 'timeout', retryAfter: 1 });
}

function busy(retryAfter: number): GraphQLError {
  return new GraphQLError('Too many concurrent requests for this tenant: try again shortly', {
    extensions: { code: 'RATE_LIMITED', retryAfter, policy: 'concurrency', http: { status: 429, headers: { 'retry-after': String(retryAfter) } } },
  });
}

export type FairShareGuard = RequestGuard & {
  readonly lanes: TenantLanes;
  /** Resolves once the lookups and leases asked for so far have landed (tests). */
  settled(): Promise<void>;
  /** Gives unspent rate tokens back to the database. */
  close(): Promise<void>;
};

/** Lane names: a tenant's, the shared one of requests not placed in a tenant, and platform work's. */
const UNPLACED = 'unplaced';
const PLATFORM = 'platform';

export type FairShareOptions = {
  readonly directory?: DirectoryOptions;
  readonly rateLimit?: RateLimitOptions;
  readonly onError?: (error: unknown) => void;
};

/**
 * `sql`: a connection of the guard's own (one is enough), so that its
 * batched lookups never queue behind the requests it is sharing out.
 */
export function createFairShareGuard(sql: Sql, settings: FairShareSettings, options: FairShareOptions = {}): FairShareGuard {
  const onError = options.onError ?? (() => {});
  const limiter = settings.rateLimits ? new RateLimiter(sql, { onError, ...options.rateLimit }) : undefined;
  const directory = new TenantDirectory(sql, {
    onError,
    ...options.directory,
    onResolved: (resolved) => limiter?.prefetch(resolved.tenantId, resolved.apiKeyId),
  });
  const lanes = new TenantLanes(settings);

  function admitted(release: () => void, headers: Readonly<Record<string, string>> | undefined): Admission {
    return headers ? { headers, release } : { release };
  }

  function inLane(
    name: string,
    deadline: number | undefined,
    headers: Readonly<Record<string, string>> | undefined,
    refund?: () => void,
  ): Admission | Promise<Admission> {
    let lane: (() => void) | Promise<() => void>;
    try {
      lane = lanes.acquire(name, deadline === undefined ? undefined : deadline - Date.now());
    } catch (error) {
      refund?.();
      throw error;
    }
    if (typeof lane === 'function') return admitted(lane, headers);
    return lane.then(
      (release) => admitted(release, headers),
      (error: unknown) => {
        refund?.();
        throw error;
      },
    );
  }

  function placed(tenantId: string, apiKeyId: string | null, deadline: number | undefined): Admission | Promise<Admission> {
    const lane = `tenant ${tenantId}`;
    if (!limiter) return inLane(lane, deadline, undefined);
    const decision = limiter.take(tenantId, apiKeyId);
    const decide = (rate: Awaited<typeof decision>) => {
      if (!rate.ok) throw rate.error;
      return inLane(lane, deadline, rate.headers, rate.refund);
    };
    return decision instanceof Promise ? decision.then(decide) : decide(decision);
  }

  return {
    lanes,
    /** A wait for a slot ends by the request's deadline. */
    admit({ selection, deadline }: GuardRequest): Admission | Promise<Admission> {
      const key = identityKey(selection);
      if (key === undefined) return inLane(PLATFORM, deadline, undefined);
      const known = directory.peek(key, selection);
      if (known) return placed(known.tenantId, known.apiKeyId, deadline);
      if (known === null) return inLane(UNPLACED, deadline, undefined);
      if (lanes.hasRoom(UNPLACED)) {
        // Not held up by the lookup, and counted once it lands (first uses under other names cannot add up to a bucket).
        if (limiter) void directory.resolve(key, selection).then((resolved) => resolved && limiter.charge(resolved.tenantId, resolved.apiKeyId));
        return inLane(UNPLACED, deadline, undefined);
      }
      // First use of these credentials while the shared lane is full: wait for the lookup instead.
      return directory
        .resolve(key, selection)
        .then((resolved) => (resolved ? placed(resolved.tenantId, resolved.apiKeyId, deadline) : inLane(UNPLACED, deadline, undefined)));
    },
    settled: async () => {
      await directory.idle();
      await limiter?.idle();
    },
    close: async () => {
      await limiter?.close();
    },
  };
}
