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
import type { Sql } from '../db/pool.ts';
import type { Admission, GuardRequest, RequestGuard } from '../http/guard.ts';
import { RateLimiter, type RateLimitOptions } from './rate-limit.ts';
import { identityKey, TenantDirectory, type DirectoryOptions } from './tenant-directory.ts';


type Waiter = { readonly grant: () => void; done: boolean; timer?: NodeJS.Timeout };
type Lane = { active: number; waiting: number; queue: Waiter[] };

/** Bounded lanes per name, each with its own FIFO queue. */
export class TenantLanes {
  readonly #lanes = new Map<string, Lane>();
  readonly #settings: Pick<FairShareSettings, 'maxConcurrency' | 'queueMax' | 'queueTimeoutMs'>;

  constructor(settings: Pick<FairShareSettings, 'maxConcurrency' | 'queueMax' | 'queueTimeoutMs'>) {
    this.#settings = settings;
  }

  hasRoom(name: string): boolean {
    return (this.#lanes.get(name)?.active ?? 0) < this.#settings.maxConcurrency;
  }

  /** A lane now (its release function), a promise of one, or RATE_LIMITED when the queue is full. */
  acquire(name: string): (() => void) | Promise<() => void> {
    let lane = this.#lanes.get(name);
    if (!lane) {
      lane = { active: 0, waiting: 0, queue: [] };
      this.#lanes.set(name, lane);
    }
    const release = this.#releaser(name, lane);
    if (lane.active < this.#settings.maxConcurrency) {
      lane.active += 1;
      return release;
    }
    if (lane.waiting >= this.#settings.queueMax) throw busy(1);
    const current = lane;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { done: false, grant: () => resolve(release) };
      waiter.timer = setTimeout(() => {
        waiter.done = true;
        current.waiting -= 1;
        reject(busy(1));
        this.#forget(name, current);
      }, this.#settings.queueTimeoutMs);
      current.queue.push(waiter);
      current.waiting += 1;
    });
  }

  /** Lanes held and requests waiting, per name (for tests and metrics). */
  snapshot(): Record<string, { active: number; waiting: number }> {
    return Object.fromEntries([...this.#lanes].map(([name, lane]) => [name, { active: lane.active, waiting: lane.waiting }]));
  }

  #releaser(name: string, lane: Lane): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // Hand the lane to the oldest waiter still waiting, else give it up.
      for (let next = lane.queue.shift(); next; next = lane.queue.shift()) {
        if (next.done) continue;
        next.done = true;
        clearTimeout(next.timer);
        lane.waiting -= 1;
        next.grant();
        return;
      }
      lane.active -= 1;
      this.#forget(name, lane);
    };
  }

  #forget(name: string, lane: Lane): void {
    if (lane.active === 0 && lane.waiting === 0 && this.#lanes.get(name) === lane) this.#lanes.delete(name);
  }
}

function busy(retryAfter: number): GraphQLError {
  return new GraphQLError('Too many concurrent requests for this tenant: try again shortly', {
    extensions: { code: 'RATE_LIMITED', retryAfter, policy: 'concurrency', http: { status: 429, headers: { 'retry-after': String(retryAfter) } } },
  });
}

export type FairShareGuard = RequestGuard & {
  readonly lanes: TenantLanes;
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

  function inLane(name: string, headers: Readonly<Record<string, string>> | undefined, refund?: () => void): Admission | Promise<Admission> {
    let lane: (() => void) | Promise<() => void>;
    try {
      lane = lanes.acquire(name);
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

  function placed(tenantId: string, apiKeyId: string | null): Admission | Promise<Admission> {
    const lane = `tenant ${tenantId}`;
    if (!limiter) return inLane(lane, undefined);
    const decision = limiter.take(tenantId, apiKeyId);
    const decide = (rate: Awaited<typeof decision>) => {
      if (!rate.ok) throw rate.error;
      return inLane(lane, rate.headers, rate.refund);
    };
    return decision instanceof Promise ? decision.then(decide) : decide(decision);
  }

  return {
    lanes,
    admit({ selection }: GuardRequest): Admission | Promise<Admission> {
      const key = identityKey(selection);
      if (key === undefined) return inLane(PLATFORM, undefined);
      const known = directory.peek(key, selection);
      if (known) return placed(known.tenantId, known.apiKeyId);
      if (known === null || lanes.hasRoom(UNPLACED)) return inLane(UNPLACED, undefined);
      // First use of these credentials while the shared lane is full: wait for the lookup instead.
      return directory.resolve(key, selection).then((resolved) => (resolved ? placed(resolved.tenantId, resolved.apiKeyId) : inLane(UNPLACED, undefined)));
    },
    close: async () => {
      await limiter?.close();
    },
  };
}
