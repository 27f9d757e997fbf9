// The event source of subscriptions: one dedicated connection per process
// (direct to PostgreSQL, never through PgBouncer in transaction mode: LISTEN
// is session state) that LISTENs on tenancy_events and fans notifications out
// in memory to the subscribers of each tenant. Writers never NOTIFY: their
// triggers add rows to an outbox (migration 000013), and this connection moves
// them to NOTIFY every few tens of milliseconds (app_private.publish_events, one
// publisher at a time across processes: a session advisory lock), so the commit-time notify lock is
// taken once per batch instead of once per write. Notifications carry only
// tenant id, type, id and kind; a subscriber re-reads the row in its own
// tenant transaction. When the connection is lost it is made again with
// backoff, and every subscriber gets a `resync`: anything may have been
// missed, so silence is never mistaken for "nothing happened".
import postgres from 'postgres';
import { isUuid } from '../tenancy/identifiers.ts';
import { withTimeout } from '../timeout.ts';
import type { Logger } from '../logger.ts';

export type ChangeKind = 'created' | 'updated' | 'deleted';

/** What a notification carries, and nothing more: never row content (isolation by construction). */
export interface RowChange {
  readonly tenantId: string;
  /** the GraphQL type whose row changed: 'Session' | 'Task' | 'Agent' | 'FineTuningJob' | 'Member' */
  readonly type: string;
  /** the row's key as the node type's global id encodes it (what encodeGlobalId(type, id) takes) */
  readonly id: string;
  readonly kind: ChangeKind;
}

export type AccessChangeKind = 'member_removed' | 'role_changed' | 'api_key_revoked' | 'tenant_suspended' | 'tenant_reactivated' | 'user_disabled';

/** Something that may end or narrow a principal's access; the subscriber re-checks (or ends) its stream. */
export interface AccessChange {
  readonly tenantId: string;
  readonly kind: AccessChangeKind;
  readonly userId?: string;
  readonly apiKeyId?: string;
}

export type HubEvent =
  | { readonly type: 'row'; readonly change: RowChange }
  | { readonly type: 'access'; readonly change: AccessChange }
  /** the listening connection was lost and is back, or one statement changed more than 1000 of the tenant's rows:
   *  anything may have changed (access too), so re-read what you show */
  | { readonly type: 'resync' };

export interface EventHub {
  /** Every event of one tenant, in commit order, plus every resync; returns the unsubscribe. Listeners are called
   *  synchronously and must not throw or block (queue and return). */
  subscribe(tenantId: string, onEvent: (event: HubEvent) => void): () => void;
  /** true while the dedicated LISTEN connection is up */
  readonly connected: boolean;
  close(): Promise<void>;
}

/** The one channel every trigger notifies on (migrations: app_private.notify_row_change and friends). */
export const EVENTS_CHANNEL = 'tenancy_events';

export const ROW_TYPES: readonly string[] = ['Session', 'Task', 'Agent', 'FineTuningJob', 'Member'];
const ROW_KINDS: readonly string[] = ['created', 'updated', 'deleted'];
const ACCESS_KINDS: readonly string[] = ['member_removed', 'role_changed', 'api_key_revoked', 'tenant_suspended', 'tenant_reactivated', 'user_disabled'];

export type EventHubOptions = {
  /** a DIRECT connection string, never through PgBouncer in transaction mode (LISTEN is session state) */
  readonly url: string;
  readonly logger: Logger;
  /** How often the outbox is published while events flow (the added latency, on average half of it). */
  readonly publishIntervalMs?: number;
  /** After publishes that found nothing, the interval doubles up to this: an idle hub costs the database little. */
  readonly idlePublishIntervalMs?: number;
  /** A publish that takes longer means a dead connection (a frozen server, a dropped network): it is replaced. */
  readonly publishTimeoutMs?: number;
  /** Reconnect delays grow from `minBackoffMs` to `maxBackoffMs`. */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
};

type Listener = (event: HubEvent) => void;

const CONNECT_TIMEOUT_S = 5;
/** Events one publish moves at most; a full batch is followed by the next at once. */
const PUBLISH_BATCH = 1000;
/** A process that is not the publisher asks for the publisher's lock this often (its heartbeat too). */
const FOLLOWER_RETRY_MS = 1_000;
/** A warning about a bad payload or a throwing listener at most this often (a loop would flood the log). */
const WARN_EVERY_MS = 10_000;

/** The hub of this process: listens at once, and keeps listening (reconnecting) until `close`. */
export function createEventHub(options: EventHubOptions): EventHub {
  const log = options.logger.child({ component: 'events' });
  const publishIntervalMs = options.publishIntervalMs ?? 40;
  const idlePublishIntervalMs = Math.max(publishIntervalMs, options.idlePublishIntervalMs ?? 100);
  let interval = publishIntervalMs;
  let publisher = false;
  const publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
  const minBackoffMs = options.minBackoffMs ?? 100;
  const maxBackoffMs = options.maxBackoffMs ?? 5_000;
  const tenants = new Map<string, Set<Listener>>();
  let connection: postgres.Sql | undefined;
  let connected = false;
  let closing = false;
  let everConnected = false;
  let attempts = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let publishTimer: NodeJS.Timeout | undefined;
  let connecting: Promise<void> | undefined;
  const warnedAt = new Map<string, number>();

  const warn = (what: string, fields: object, message: string) => {
    const now = Date.now();
    if (now - (warnedAt.get(what) ?? 0) < WARN_EVERY_MS) return;
    warnedAt.set(what, now);
    log.warn(fields, message);
  };

  const call = (listener: Listener, event: HubEvent) => {
    try {
      listener(event);
    } catch (error) {
      warn('listener', { err: error }, 'events: a subscriber threw; the others still get the event');
    }
  };

  const deliver = (payload: string) => {
    const parsed = parsePayload(payload);
    if (!parsed) {
      warn('payload', { bytes: payload.length }, 'events: a notification on the events channel is not one of ours; dropped');
      return;
    }
    const listeners = tenants.get(parsed.tenantId);
    if (!listeners) return;
    for (const listener of [...listeners]) call(listener, parsed.event);
  };

  const resyncAll = () => {
    const event: HubEvent = { type: 'resync' };
    for (const listeners of [...tenants.values()]) for (const listener of [...listeners]) call(listener, event);
  };

  /** One connection's life: LISTEN, then notifications until it closes; a lost one is replaced. */
  const open = async () => {
    // postgres.js calls onnotify for every notification on the connection (its types leave the option out).
    const notifications = {
      onnotify: (channel: string, payload: string) => {
        if (channel === EVENTS_CHANNEL && sql === connection) deliver(payload);
      },
    };
    const sql: postgres.Sql = postgres(options.url, {
      max: 1,
      max_lifetime: null,
      connect_timeout: CONNECT_TIMEOUT_S,
      fetch_types: false,
      prepare: false,
      onnotice: () => {},
      connection: { application_name: 'tenancy-events' },
      ...notifications,
      onclose: () => {
        if (sql === connection) lost(sql, 'closed');
      },
    });
    connection = sql;
    let serverPort: number | null | undefined;
    try {
      // A connected server that never answers (frozen) must not hold the hub here: bounded like a publish.
      const [, rows] = await withTimeout(
        Promise.all([sql.unsafe(`listen ${EVENTS_CHANNEL}`), sql<{ port: number | null }[]>`select inet_server_port() as port`]),
        publishTimeoutMs,
      );
      serverPort = rows[0]?.port;
    } catch (error) {
      if (sql !== connection) return;
      connection = undefined;
      void sql.end({ timeout: 0 });
      const delay = backoff(attempts++);
      warn('connect', { err: error, attempt: attempts, retryInMs: delay }, 'events: cannot listen on the database yet; trying again');
      if (!closing) retryTimer = setTimeout(start, delay);
      return;
    }
    if (sql !== connection || closing) return;
    connected = true;
    attempts = 0;
    if (everConnected) log.info('events: listening again; subscribers get a resync');
    else log.info('events: listening');
    const urlPort = portOf(options.url);
    if (!everConnected && serverPort != null && urlPort !== undefined && serverPort !== urlPort) {
      // PgBouncer in transaction mode (or another proxy) between us and PostgreSQL: LISTEN would hear only by chance.
      log.warn({ urlPort, serverPort }, 'events: the listening connection reaches PostgreSQL on another port than its URL names: through a proxy? LISTEN needs a direct connection (DATABASE_LISTEN_URL)');
    }
    everConnected = true;
    // Events between the loss and this LISTEN are gone; a subscriber that came meanwhile may have missed some too.
    resyncAll();
    interval = publishIntervalMs;
    publisher = false; // a session lock: it went with the connection that held it
    void publish(sql);
  };

  /**
   * Moves the outbox to NOTIFY, again and again while this connection lasts; its answer doubles as the heartbeat.
   * One process at a time publishes (a session advisory lock): the others only ask for the lock now and then, and
   * one of them takes over within FOLLOWER_RETRY_MS when the publisher's connection ends.
   */
  const publish = async (sql: postgres.Sql) => {
    publishTimer = undefined;
    if (sql !== connection || closing) return;
    let published = 0;
    try {
      if (!publisher) {
        const [row] = await withTimeout(sql<{ got: boolean }[]>`select pg_try_advisory_lock(hashtextextended('tenancy.events-publisher', 0)) as got`, publishTimeoutMs);
        publisher = row?.got === true;
      }
      if (publisher) {
        const rows = await withTimeout(sql<{ published: number }[]>`select app_private.publish_events(${PUBLISH_BATCH}) as published`, publishTimeoutMs);
        published = rows[0]?.published ?? 0;
      }
    } catch (error) {
      if (sql === connection) lost(sql, error instanceof Error ? error.message : 'publish failed');
      return;
    }
    if (sql !== connection || closing) return;
    if (!publisher) {
      publishTimer = setTimeout(() => void publish(sql), FOLLOWER_RETRY_MS);
      return;
    }
    // Events flowing: every publishIntervalMs (at once after a full batch); none found: less and less often.
    interval = published > 0 ? publishIntervalMs : Math.min(idlePublishIntervalMs, interval * 2);
    publishTimer = setTimeout(() => void publish(sql), published >= PUBLISH_BATCH ? 0 : interval);
  };

  const lost = (sql: postgres.Sql, reason: string) => {
    if (sql !== connection) return;
    connection = undefined;
    clearTimeout(publishTimer);
    void sql.end({ timeout: 0 });
    if (closing) return;
    if (connected) log.warn({ reason }, 'events: lost the listening connection; reconnecting (subscribers get a resync when it is back)');
    connected = false;
    retryTimer = setTimeout(start, backoff(attempts++));
  };

  const backoff = (attempt: number) => {
    const base = Math.min(maxBackoffMs, minBackoffMs * 2 ** Math.min(attempt, 16));
    return Math.round(base / 2 + (Math.random() * base) / 2); // jitter: many processes do not reconnect in step
  };

  const start = () => {
    retryTimer = undefined;
    if (closing || connection) return;
    connecting = open().finally(() => (connecting = undefined));
  };

  start();

  return {
    subscribe(tenantId, onEvent) {
      let listeners = tenants.get(tenantId);
      if (!listeners) tenants.set(tenantId, (listeners = new Set()));
      // A function subscribed twice is two subscriptions: wrap it so each unsubscribe removes its own.
      const listener: Listener = (event) => onEvent(event);
      listeners.add(listener);
      let subscribed = true;
      return () => {
        if (!subscribed) return;
        subscribed = false;
        const current = tenants.get(tenantId);
        current?.delete(listener);
        if (current?.size === 0) tenants.delete(tenantId);
      };
    },
    get connected() {
      return connected;
    },
    async close() {
      closing = true;
      clearTimeout(retryTimer);
      clearTimeout(publishTimer);
      await connecting;
      const sql = connection;
      connection = undefined;
      connected = false;
      tenants.clear();
      await sql?.end({ timeout: 1 });
    },
  };
}


/** The port a connection string names (5432 when it names none); undefined when it is not a URL. */
function portOf(url: string): number | undefined {
  try {
    return Number(new URL(url).port || 5432);
  } catch {
    return undefined;
  }
}

/** A notification's payload (JSON, from the triggers) as the tenant's event; undefined when it is not one of ours. */
export function parsePayload(payload: string): { tenantId: string; event: HubEvent } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const fields = value as Record<string, unknown>;
  const tenantId = fields.tenant;
  if (typeof tenantId !== 'string' || !isUuid(tenantId)) return undefined;
  if (fields.event === 'row') {
    const { type, id, kind } = fields;
    if (typeof type !== 'string' || !ROW_TYPES.includes(type)) return undefined;
    if (typeof id !== 'string' || !isUuid(id)) return undefined;
    if (typeof kind !== 'string' || !ROW_KINDS.includes(kind)) return undefined;
    return { tenantId, event: { type: 'row', change: { tenantId, type, id, kind: kind as ChangeKind } } };
  }
  if (fields.event === 'access') {
    const { kind, user, key } = fields;
    if (typeof kind !== 'string' || !ACCESS_KINDS.includes(kind)) return undefined;
    if (user !== undefined && (typeof user !== 'string' || !isUuid(user))) return undefined;
    if (key !== undefined && (typeof key !== 'string' || !isUuid(key))) return undefined;
    const change: AccessChange = { tenantId, kind: kind as AccessChangeKind, ...(user !== undefined ? { userId: user } : {}), ...(key !== undefined ? { apiKeyId: key } : {}) };
    return { tenantId, event: { type: 'access', change } };
  }
  // A statement changed too many of this tenant's rows to name each one (the triggers fold them).
  if (fields.event === 'resync') return { tenantId, event: { type: 'resync' } };
  return undefined;
}
