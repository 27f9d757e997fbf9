// The subscriptions of this process. Each follows one tenant's events from
// the hub (src/events/hub.ts: tenant, type, id and kind, never row content)
// and re-reads every change inside its own tenant transaction as its own
// principal: RLS and the schema's permissions decide what it sees, exactly as
// for a query. Subscribers with the same credentials in the same tenant share
// a group, and a group's pending changes are re-read together, one
// transaction (one begin_request) for many events and subscribers, one
// statement per node type; groups take slots of their tenant's lane in the
// fair-share guard, so re-reads stay within the tenant's share of the pool.
//
// A delete, or a row that no longer passes (RLS, the subscription's filter),
// reaches only a subscriber that could see the row before (its seen set: what
// it could read when it started and what it was sent since), and carries the
// id only. Every re-read is also the principal's check: a removed member, a
// revoked key or a suspended tenant ends the stream with a coded error, and
// an access change from the hub asks for that check at once. A token's exp
// and an API key's expires_at end the stream by a timer.
//
// A subscription listens before it reads: `listen` attaches to the tenant's
// events before the start's first read (the pipeline calls it after the
// principal's check), holds what arrives while the start reads, and `open`
// hands the held events to the new subscriber, then the group's own from the
// hub, in the hub's order. A change committed after the read's snapshot is
// heard after `listen`, so it is held: no gap. A change heard then but
// committed before the snapshot (the read already reflects it) is re-read like
// any event, as the row is now: an UPDATED or CREATED showing what the row
// is (harmless: an event is a re-read, never a diff), a delete of a row the
// read did not see is filtered by the seen set. Each held event reaches the
// subscriber once (held before `open`, through its group after): no duplicate.
import { execute, GraphQLError, type DocumentNode, type ExecutionResult, type GraphQLSchema } from 'graphql';
import type { Sql } from '../db/pool.ts';
import { TenantTransaction } from '../db/tenant-transaction.ts';
import { apiError, forbidden, internal, isApiError, responseTooLarge, unauthenticated, unavailable } from '../errors.ts';
import type { EventHub, HubEvent, RowChange } from '../events/hub.ts';
import { requestContext } from '../graphql/context.ts';
import type { Logger } from '../logger.ts';
import { nodeTypeNamed } from '../nodes/global-id.ts';
import type { TenantLanes } from '../tenancy/fair-share.ts';
import type { Principal, TenantSelection } from '../tenancy/principal.ts';
import { roleAtLeast, type Role } from '../tenancy/roles.ts';
import { rowKey, type LivePayload, type LiveRow, type LiveScope, type LiveSource } from './live.ts';

export type SubscriptionSettings = {
  /** Open subscriptions of one tenant in this process; past it QUOTA_EXCEEDED. */
  readonly perTenant: number;
  /** Open subscriptions of one user or API key in one tenant, in this process; past it QUOTA_EXCEEDED. */
  readonly perPrincipal: number;
  /** Open subscriptions of this process; past it UNAVAILABLE (another replica may take it). */
  readonly total: number;
  /** Events one subscriber may have waiting (re-read or not yet sent); past it the stream ends (UNAVAILABLE, reason slow-subscriber). */
  readonly buffer: number;
  /** Open WebSocket connections of this process; past it the upgrade is answered 503. */
  readonly wsConnections: number;
  /** Acknowledged WebSockets of one tenant in this process; past it connection_init is closed 1013 (one tenant cannot hold every socket). */
  readonly wsConnectionsPerTenant: number;
  /** How long a WebSocket may take to send connection_init. */
  readonly wsInitTimeoutMs: number;
};

export type EngineOptions = {
  readonly sql: Sql;
  readonly schema: GraphQLSchema;
  readonly hub: EventHub | undefined;
  readonly log: Logger;
  readonly settings: SubscriptionSettings;
  /** The fair-share guard's lanes: re-reads take slots of their tenant's lane. Without them, `readConcurrency` slots in all. */
  readonly lanes?: TenantLanes | undefined;
  /** The deadline of one re-read transaction (its wait for a slot, its statements). */
  readonly readTimeoutMs: number;
  /** An event larger than this is replaced by the response-limit error. */
  readonly maxResponseBytes: number;
};

/** What the pipeline hands over once the subscription's start was accepted. */
export type LiveRequest = {
  readonly requestId: string;
  readonly selection: TenantSelection;
  /** As begin_request accepted it, in a tenant. */
  readonly principal: Principal;
  /** The token's exp (ms since the epoch); the stream ends UNAUTHENTICATED then (an API key's expiry comes with the source). */
  readonly expiresAt: number | undefined;
  /** The lowest role the subscription field admits. */
  readonly requiredRole: Role;
  readonly document: DocumentNode;
  readonly operationName: string | undefined;
  readonly variables: Record<string, unknown> | undefined;
  readonly source: LiveSource;
  /** A result as the client gets it (masked errors, JSON). */
  readonly encode: (result: ExecutionResult) => string;
  /** The tenant's events since before the start's read (`listen`), handed to the new subscriber first. */
  readonly listening?: Listening;
};

/** The events of a tenant held for a subscription that is starting (SubscriptionEngine.listen). */
export type Listening = {
  /** Stops holding events (open takes them over; a start that fails drops them); idempotent. */
  close(): void;
};

/** The events of one subscription, each a JSON text of { data, errors }; the last one is the error that ended it, if any. */
export type LiveStream = AsyncIterableIterator<string> & {
  /** The code of the error that ended the stream (UNAUTHENTICATED, FORBIDDEN, ...), once it has. */
  readonly endedWith: string | undefined;
};

export type SubscriptionEngine = {
  /**
   * Attaches to a tenant's events before a subscription's start reads what it can see, holding them for `open`
   * (at most `buffer`; past it a RESYNC instead); throws UNAVAILABLE when there are no live events.
   */
  listen(tenantId: string): Listening;
  /** Opens a stream, or throws QUOTA_EXCEEDED / UNAVAILABLE. */
  open(request: LiveRequest): LiveStream;
  /** Open subscriptions (all, or one tenant's). */
  count(tenantId?: string): number;
  /** Ends every stream (UNAVAILABLE, reason shutdown). */
  close(): void;
};

/** Rows re-read in one transaction at most: a connection's largest page (its rows also within MAX_RESPONSE_BYTES). */
const BATCH_ROWS = 100;
/** Rows a subscriber remembers having seen (for deletes); the oldest are forgotten past it. */
export const SEEN_MAX = 1_000;
/** Re-read slots in all when there is no fair-share guard. */
const READ_CONCURRENCY = 4;
/** setTimeout's largest delay; a later exp is waited for in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Item = { readonly subscriber: Subscriber; readonly change: RowChange | 'resync' };

type Group = {
  readonly key: string;
  readonly tenantId: string;
  readonly selection: TenantSelection;
  /** Whom the database accepted the credentials as (the user, or the key and the user it acts for). */
  readonly userId: string;
  readonly apiKeyId: string | null;
  readonly subscribers: Set<Subscriber>;
  pending: Item[];
  /** The principal must be checked again (an access change) even with nothing to re-read. */
  recheck: boolean;
  running: boolean;
};

type TenantEntry = {
  readonly groups: Map<string, Group>;
  count: number;
  /** Open subscriptions by principalKey(). */
  readonly principals: Map<string, number>;
  readonly unsubscribe: () => void;
};

export function createSubscriptionEngine(options: EngineOptions): SubscriptionEngine {
  const { sql, schema, hub, log, settings } = options;
  const tenants = new Map<string, TenantEntry>();
  let total = 0;
  let closed = false;
  const slots = options.lanes ? undefined : new Semaphore(READ_CONCURRENCY);

  function onEvent(tenantId: string, event: HubEvent): void {
    const entry = tenants.get(tenantId);
    if (!entry) return;
    for (const group of entry.groups.values()) route(group, event, group.subscribers);
  }

  /** One event to a group: to its subscribers (all of them; a starting one alone for the events held for it). */
  function route(group: Group, event: HubEvent, subscribers: Iterable<Subscriber>): void {
    if (event.type === 'access') {
      const { userId, apiKeyId } = event.change;
      const affected = (userId === undefined && apiKeyId === undefined) || (userId !== undefined && group.userId === userId) || (apiKeyId !== undefined && group.apiKeyId === apiKeyId);
      if (affected) {
        group.recheck = true;
        schedule(group);
      }
      return;
    }
    for (const subscriber of subscribers) {
      if (event.type === 'resync') enqueue(group, subscriber, 'resync');
      else if (subscriber.scope.types.includes(event.change.type)) enqueue(group, subscriber, event.change);
    }
    // A resync also re-checks: access may have changed while events were missed.
    if (event.type === 'resync') group.recheck = true;
    schedule(group);
  }

  function enqueue(group: Group, subscriber: Subscriber, change: Item['change']): void {
    if (subscriber.done) return;
    if (subscriber.waiting() >= settings.buffer) {
      subscriber.end(apiError('UNAVAILABLE', `More than ${settings.buffer} events were waiting for this subscriber: it reads too slowly`, { reason: 'slow-subscriber', limit: settings.buffer }), true);
      return;
    }
    subscriber.pending++;
    group.pending.push({ subscriber, change });
  }

  function schedule(group: Group): void {
    if (group.running) return;
    group.running = true;
    setImmediate(() => void drain(group));
  }

  async function drain(group: Group): Promise<void> {
    try {
      while (!closed && (group.pending.length > 0 || group.recheck) && group.subscribers.size > 0) {
        const batch = group.pending.splice(0, batchLength(group.pending));
        group.recheck = false;
        await rereadWithinBudget(group, batch);
        for (const item of batch) item.subscriber.pending--;
      }
    } catch (error) {
      log.error({ err: error }, 'subscriptions: a re-read failed unexpectedly');
    } finally {
      group.running = false;
      if (group.subscribers.size === 0) group.pending = []; // its subscribers have ended: nothing left to read for
      else if (group.pending.length > 0 || group.recheck) schedule(group);
    }
  }

  /**
   * A batch whose rows (and what the events select) pass MAX_RESPONSE_BYTES
   * together is read again in halves; one row past it alone is the
   * response-limit error to its subscribers, as for a query.
   */
  async function rereadWithinBudget(group: Group, batch: readonly Item[]): Promise<void> {
    if ((await reread(group, batch)) !== 'over-budget') return;
    const keyOf = (item: Item) => (item.change === 'resync' ? undefined : rowKey(item.change.type, item.change.id));
    const keys = [...new Set(batch.map(keyOf).filter((key) => key !== undefined))];
    if (keys.length <= 1) {
      resync(batch.filter((item) => item.change === 'resync'));
      const told = new Set<Subscriber>();
      for (const { subscriber, change } of batch) {
        if (change === 'resync' || told.has(subscriber)) continue;
        told.add(subscriber);
        subscriber.push(subscriber.encode({ errors: [responseTooLarge(options.maxResponseBytes)] }));
      }
      return;
    }
    const first = new Set(keys.slice(0, Math.ceil(keys.length / 2)));
    const inFirst = (item: Item) => keyOf(item) === undefined || first.has(keyOf(item)!);
    await rereadWithinBudget(group, batch.filter(inFirst));
    await rereadWithinBudget(group, batch.filter((item) => !inFirst(item)));
  }

  /** One transaction as the group's principal: the check, the rows, each subscriber's event; 'over-budget' when they passed MAX_RESPONSE_BYTES (nothing sent). */
  async function reread(group: Group, batch: readonly Item[]): Promise<'over-budget' | undefined> {
    const deadline = Date.now() + options.readTimeoutMs;
    let release: (() => void) | undefined;
    try {
      release = await slot(group.tenantId, deadline);
    } catch {
      resync(batch); // no slot in time: these events are missed, and the subscribers are told
      return undefined;
    }
    const db = new TenantTransaction(sql, group.selection, { deadline, snapshot: true, readBytes: options.maxResponseBytes });
    const context = requestContext(`subscription ${group.key}`, db);
    try {
      db.start('tenant');
      let principal: Principal;
      try {
        principal = await db.principal();
      } catch (error) {
        accessLost(group, batch, error);
        return undefined;
      }
      const role = principal.tenant!.role;
      for (const subscriber of group.subscribers) {
        if (!roleAtLeast(role, subscriber.requiredRole)) subscriber.end(forbidden('Your role no longer allows this subscription'));
      }
      const rows = new Map<string, Promise<LiveRow | null>>();
      for (const { subscriber, change } of batch) {
        if (subscriber.done || change === 'resync' || change.kind === 'deleted') continue;
        const key = rowKey(change.type, change.id);
        if (!rows.has(key)) rows.set(key, (nodeTypeNamed(change.type)?.load(context, change.id) ?? Promise.resolve(null)) as Promise<LiveRow | null>);
      }
      const loaded = new Map<string, LiveRow | null>();
      await Promise.all([...rows].map(async ([key, row]) => loaded.set(key, await row)));
      const events = batch.map(({ subscriber, change }) => {
        if (subscriber.done) return undefined;
        const payload = decide(subscriber, change, loaded);
        return payload && { subscriber, result: execute({ schema, document: subscriber.document, rootValue: payload, contextValue: context, variableValues: subscriber.variables, operationName: subscriber.operationName }) };
      });
      const results = await Promise.all(events.map(async (event) => event && { subscriber: event.subscriber, result: await event.result }));
      if (db.overReadBudget) return 'over-budget';
      for (const event of results) {
        if (!event) continue;
        let json = event.subscriber.encode(event.result);
        if (Buffer.byteLength(json) > options.maxResponseBytes) json = event.subscriber.encode({ errors: [responseTooLarge(options.maxResponseBytes)] });
        event.subscriber.push(json);
      }
    } catch (error) {
      if (db.overReadBudget) return 'over-budget';
      log.warn({ err: error }, 'subscriptions: a re-read failed; its subscribers get a resync');
      resync(batch);
    } finally {
      await db.end(false);
      release();
    }
  }

  /** What one change means to one subscriber, from the row it re-read; undefined: nothing to send. */
  function decide(subscriber: Subscriber, change: Item['change'], loaded: ReadonlyMap<string, LiveRow | null>): LivePayload | undefined {
    if (change === 'resync') return { kind: 'RESYNC', row: null };
    const key = rowKey(change.type, change.id);
    const row = change.kind === 'deleted' ? null : (loaded.get(key) ?? null);
    if (row && subscriber.scope.matches(change.type, row)) {
      subscriber.saw(key);
      return { kind: change.kind === 'created' ? 'CREATED' : 'UPDATED', type: change.type, id: change.id, row };
    }
    // Gone, hidden or filtered out: only a subscriber that could see it hears of it, and only its id.
    return subscriber.forget(key) ? { kind: 'DELETED', type: change.type, id: change.id, row: null } : undefined;
  }

  /** The events of `batch` could not be re-read: their subscribers are told to query again (RESYNC reads nothing). */
  function resync(batch: readonly Item[]): void {
    const told = new Set<Subscriber>();
    for (const { subscriber } of batch) {
      if (told.has(subscriber) || subscriber.done) continue;
      told.add(subscriber);
      const unread = new TenantTransaction(sql, subscriber.selection); // never started: no connection is taken
      const payload: LivePayload = { kind: 'RESYNC', row: null };
      void Promise.resolve(execute({ schema, document: subscriber.document, rootValue: payload, contextValue: requestContext('resync', unread), variableValues: subscriber.variables, operationName: subscriber.operationName }))
        .then((result) => subscriber.push(subscriber.encode(result)))
        .catch((error: unknown) => log.error({ err: error }, 'subscriptions: a resync event failed'));
    }
  }

  /** The principal's check failed: access ended (coded), or the database could not say (resync, checked again later). */
  function accessLost(group: Group, batch: readonly Item[], error: unknown): void {
    const code = isApiError(error) ? String(error.extensions.code) : undefined;
    let ending: GraphQLError | undefined;
    if (code === 'TENANT_SUSPENDED') ending = apiError('TENANT_SUSPENDED', 'The tenant was suspended');
    else if (code === 'TENANT_NOT_FOUND') ending = forbidden('You are no longer a member of this tenant');
    else if (code === 'UNAUTHENTICATED') ending = unauthenticated(group.selection.credentials.kind === 'apiKey' ? 'The API key was revoked or has expired' : 'The user can no longer sign in');
    if (ending) {
      for (const subscriber of [...group.subscribers]) subscriber.end(ending);
      return;
    }
    if (code !== 'UNAVAILABLE') {
      log.error({ err: error }, 'subscriptions: the principal check failed unexpectedly');
      for (const subscriber of [...group.subscribers]) subscriber.end(internal());
      return;
    }
    resync(batch);
    group.recheck = true; // asked again by the next event or resync; the hub resyncs after the database is back
  }

  async function slot(tenantId: string, deadline: number): Promise<() => void> {
    if (slots) return slots.acquire();
    return options.lanes!.acquire(`tenant ${tenantId}`, deadline - Date.now());
  }

  function detach(subscriber: Subscriber): void {
    const entry = tenants.get(subscriber.tenantId);
    const group = entry?.groups.get(subscriber.groupKey);
    if (!entry || !group?.subscribers.delete(subscriber)) return;
    total--;
    entry.count--;
    const principal = principalKey(subscriber);
    const left = (entry.principals.get(principal) ?? 1) - 1;
    if (left === 0) entry.principals.delete(principal);
    else entry.principals.set(principal, left);
    if (group.subscribers.size === 0) entry.groups.delete(group.key);
    if (entry.count === 0) {
      entry.unsubscribe();
      tenants.delete(subscriber.tenantId);
    }
  }

  return {
    listen(tenantId) {
      if (closed) throw unavailable('shutdown');
      if (!hub) throw unavailable('events', 'Live events are not available on this server');
      return new Held(hub, tenantId, settings.buffer);
    },
    open(request) {
      if (closed) throw unavailable('shutdown');
      if (!hub) throw unavailable('events', 'Live events are not available on this server');
      const tenantId = request.principal.tenant!.id;
      const used = tenants.get(tenantId)?.count ?? 0;
      if (used >= settings.perTenant) {
        throw apiError('QUOTA_EXCEEDED', `The tenant has ${used} open subscriptions on this server, the most it may (${settings.perTenant})`, { quota: 'subscriptions', limit: settings.perTenant, used });
      }
      const principal = principalKey(request.principal);
      const mine = tenants.get(tenantId)?.principals.get(principal) ?? 0;
      if (mine >= settings.perPrincipal) {
        const who = request.principal.apiKeyId ? 'This API key has' : 'You have';
        throw apiError('QUOTA_EXCEEDED', `${who} ${mine} open subscriptions in this tenant on this server, the most one may (${settings.perPrincipal})`, { quota: 'subscriptionsPerPrincipal', limit: settings.perPrincipal, used: mine });
      }
      if (total >= settings.total) throw apiError('UNAVAILABLE', 'This server has as many open subscriptions as it takes: try again shortly', { reason: 'subscriptions', retryAfter: 1 });
      let entry = tenants.get(tenantId);
      if (!entry) {
        entry = { groups: new Map(), count: 0, principals: new Map(), unsubscribe: hub.subscribe(tenantId, (event) => onEvent(tenantId, event)) };
        tenants.set(tenantId, entry);
      }
      const key = groupKey(request.selection);
      let group = entry.groups.get(key);
      if (!group) {
        const { userId, apiKeyId } = request.principal;
        group = { key, tenantId, selection: request.selection, userId, apiKeyId, subscribers: new Set(), pending: [], recheck: false, running: false };
        entry.groups.set(key, group);
      }
      const subscriber = new Subscriber(request, tenantId, key, detach);
      group.subscribers.add(subscriber);
      entry.count++;
      entry.principals.set(principal, mine + 1);
      total++;
      const held = request.listening;
      if (held instanceof Held) {
        // From here on the tenant's events reach the subscriber through its group; before, they were held for it.
        held.close();
        const events = held.overflowed || held.tenantId !== tenantId ? [RESYNC] : held.events;
        held.events = [];
        for (const event of events) route(group, event, [subscriber]);
      }
      return subscriber;
    },
    count: (tenantId) => (tenantId === undefined ? total : (tenants.get(tenantId)?.count ?? 0)),
    close() {
      closed = true;
      for (const entry of [...tenants.values()]) {
        for (const group of [...entry.groups.values()]) for (const subscriber of [...group.subscribers]) subscriber.end(unavailable('shutdown', 'The server is shutting down: subscribe again'));
      }
    },
  };
}

const RESYNC: HubEvent = { type: 'resync' };

/**
 * A tenant's events held for a subscription that is starting, from before its
 * read until `open`: at most `max` (the subscriber's buffer), past it only the
 * fact that some were dropped (the subscriber's first event is then a RESYNC).
 */
class Held implements Listening {
  readonly tenantId: string;
  events: HubEvent[] = [];
  overflowed = false;
  readonly #stop: () => void;

  constructor(hub: EventHub, tenantId: string, max: number) {
    this.tenantId = tenantId;
    this.#stop = hub.subscribe(tenantId, (event) => {
      if (this.overflowed) return;
      if (this.events.length < max) this.events.push(event);
      else {
        this.overflowed = true;
        this.events = [];
      }
    });
  }

  close(): void {
    this.#stop(); // the hub's unsubscribe is idempotent
  }
}

/** How many of the pending items (from the first) name at most BATCH_ROWS distinct rows. */
function batchLength(pending: readonly Item[]): number {
  const rows = new Set<string>();
  for (let i = 0; i < pending.length; i++) {
    const { change } = pending[i]!;
    if (change !== 'resync') rows.add(rowKey(change.type, change.id));
    if (rows.size > BATCH_ROWS) return i;
  }
  return pending.length;
}

/** Whom the per-principal cap counts: the user, or the API key (apart from the user it acts for). */
function principalKey(principal: { readonly userId: string; readonly apiKeyId: string | null }): string {
  return principal.apiKeyId ? `key ${principal.apiKeyId}` : `user ${principal.userId}`;
}

/** Who re-reads: the credentials and the tenant they asked for, and a token's role claim (it lowers the role). */
function groupKey(selection: TenantSelection): string {
  const { credentials, tenant } = selection;
  return credentials.kind === 'apiKey' ? `key ${credentials.secretHash.toString('hex')} ${tenant ?? ''}` : `user ${credentials.userId} ${credentials.roleCap ?? ''} ${tenant ?? ''}`;
}

/**
 * One subscription: its queue of encoded events (pulled by the transport),
 * the rows it could see, the timer of its token's exp.
 */
class Subscriber implements LiveStream {
  readonly tenantId: string;
  readonly groupKey: string;
  readonly userId: string;
  readonly apiKeyId: string | null;
  /** What it follows (the source's seen rows are copied into #seen, not kept). */
  readonly scope: LiveScope;
  readonly requiredRole: Role;
  readonly document: DocumentNode;
  readonly operationName: string | undefined;
  readonly variables: Record<string, unknown> | undefined;
  readonly encode: (result: ExecutionResult) => string;
  readonly selection: TenantSelection;
  /** Changes queued for a re-read. */
  pending = 0;
  done = false;
  endedWith: string | undefined;
  readonly #queue: string[] = [];
  readonly #seen: Set<string>;
  #waiter: ((result: IteratorResult<string>) => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #detach: (subscriber: Subscriber) => void;

  constructor(request: LiveRequest, tenantId: string, groupKey: string, detach: (subscriber: Subscriber) => void) {
    this.tenantId = tenantId;
    this.groupKey = groupKey;
    this.userId = request.principal.userId;
    this.apiKeyId = request.principal.apiKeyId;
    this.scope = request.source.scope;
    this.requiredRole = request.requiredRole;
    this.document = request.document;
    this.operationName = request.operationName;
    this.variables = request.variables;
    this.encode = request.encode;
    this.selection = request.selection;
    this.#seen = new Set(request.source.seen.map(compactKey));
    this.#detach = detach;
    const { keyExpiresAt } = request.source;
    if (keyExpiresAt !== undefined && (request.expiresAt === undefined || keyExpiresAt < request.expiresAt)) this.#expireAt(keyExpiresAt, 'The API key expired');
    else if (request.expiresAt !== undefined) this.#expireAt(request.expiresAt, 'The token expired');
  }

  #expireAt(at: number, why: string): void {
    const left = at - Date.now();
    if (left <= 0) return this.end(unauthenticated(why));
    this.#timer = setTimeout(() => (left > MAX_TIMER_MS ? this.#expireAt(at, why) : this.end(unauthenticated(why))), Math.min(left, MAX_TIMER_MS));
  }

  /** Events queued or being re-read: what the buffer bounds. */
  waiting(): number {
    return this.#queue.length + this.pending;
  }

  saw(rowKey: string): void {
    const key = compactKey(rowKey);
    this.#seen.delete(key); // re-inserted as the newest
    this.#seen.add(key);
    if (this.#seen.size > SEEN_MAX) this.#seen.delete(this.#seen.values().next().value!);
  }

  forget(rowKey: string): boolean {
    return this.#seen.delete(compactKey(rowKey));
  }

  push(json: string): void {
    if (this.done) return;
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter({ value: json, done: false });
    } else this.#queue.push(json);
  }

  /** Ends the stream; with an error, that is its last event (alone when `drop`: the events still queued are not sent). */
  end(error?: GraphQLError, drop = false): void {
    if (this.done) return;
    if (error) {
      if (drop) this.#queue.length = 0;
      this.push(this.encode({ errors: [error] }));
      this.endedWith = String(error.extensions.code);
    }
    this.done = true;
    clearTimeout(this.#timer);
    this.#detach(this);
    if (this.#waiter && this.#queue.length === 0) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<string>> {
    const value = this.#queue.shift();
    if (value !== undefined) return Promise.resolve({ value, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.#waiter = resolve));
  }

  return(): Promise<IteratorResult<string>> {
    this.end();
    this.#queue.length = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A seen set's key for a rowKey `Type:id` whose id is a uuid: the type, a NUL
 * and the uuid's 16 bytes, one flat string (about 40 bytes of heap, where the
 * rowKey held its id and a concatenation, about 150). Other ids keep their rowKey.
 */
function compactKey(rowKey: string): string {
  const colon = rowKey.indexOf(':');
  const id = rowKey.slice(colon + 1);
  if (colon < 0 || !UUID.test(id)) return rowKey;
  const bytes = Buffer.allocUnsafe(colon + 17);
  bytes.write(rowKey.slice(0, colon), 0, 'latin1');
  bytes[colon] = 0;
  bytes.write(id.replaceAll('-', ''), colon + 1, 'hex');
  return bytes.toString('latin1');
}

/** At most `size` holders at once, the others wait in order. */
class Semaphore {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(size: number) {
    this.#free = size;
  }

  async acquire(): Promise<() => void> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    };
  }
}
