// Reading an audit chain for verification and export, and the service's side
// of checkpoints and retention (app_private.audit_checkpoints_due,
// store_audit_checkpoint, audit_purges_due, purge_audit_events). Each chain is
// read by one statement, so its head, signed statements and events are one
// snapshot; the fields come back as the text the chain hashes, a batch at a
// time through the statement's cursor.
import type { Tx } from '../../db/pool.ts';
import {
  chainName,
  hashAt,
  platformEventEncoding,
  tenantChain,
  tenantEventEncoding,
  PLATFORM_CHAIN,
  type ChainId,
  type EventEncoding,
  type PlatformEventFields,
  type TenantEventFields,
} from './chain.ts';
import { slicer, VerificationDeadlineError, type ChainBatches, type ChainInput, type LinkedChainEvent } from './verify.ts';
import { withTimeout } from '../../timeout.ts';

/** Checkpoints read besides the newest: older ones narrow down where a rewritten chain went wrong. */
const CHECKPOINTS_READ = 16;
/**
 * Rows fetched a round trip, through the one statement's cursor (one snapshot: separate statements would each see
 * the chain as of their own start, and a purge between two would read as a deletion). Verification holds about one
 * batch of rows and events at a time, so this bounds its memory (an event's row is up to a few KiB, its details
 * capped by the tables that write them) whatever the chain's length; the event loop turns between batches.
 */
export const READ_BATCH = 1000;

type Links = { seq: string; prevHash: Buffer; hash: Buffer };
export type TenantEventRow = TenantEventFields & Links;
export type PlatformEventRow = PlatformEventFields & Links;
type Meta = { head: { seq: number } | null; statements: { kind: 'checkpoint' | 'anchor'; seq: number; jws: string; signedAt: string; keyId: string }[] };
/** A row as the chain's statement returns it: the head and statements on the first only; `linkedTo` (text) as LinkedChainEvent says. */
type ChainRow<Row> = Row & { meta: Meta | null; linkedTo: string | null };

/** `rows`: the events as read (tests hold an export's rows to this); empty when read for verification only (`ReadOptions.rows` false). */
export type StoredChain<Row> = { readonly chain: ChainId; readonly input: ChainInput; readonly rows: readonly Row[]; readonly meta: Meta };

export type ReadOptions = {
  /** Past it (ms since the epoch), VerificationDeadlineError. */
  readonly deadline?: number;
  /** Keep the rows as read (readTenantChain); verification keeps only each event's links and encoding. */
  readonly rows?: boolean;
  /** Rows a round trip (READ_BATCH unless given: tests make the batches small). */
  readonly batch?: number;
};

/** An event as verification holds it: its links, and its encoding cut around the seq (no row, no closure: a long chain is small). */
class StoredEvent implements LinkedChainEvent {
  readonly seq: number;
  readonly prevHash: Buffer;
  readonly hash: Buffer;
  readonly linkedTo: number | null;
  readonly #encoding: EventEncoding;

  constructor(row: Links, encoding: EventEncoding, linkedTo: string | null) {
    this.seq = Number(row.seq);
    this.prevHash = row.prevHash;
    this.hash = row.hash;
    this.linkedTo = linkedTo === null ? null : Number(linkedTo);
    this.#encoding = encoding;
  }

  hashAs(seq: number): Buffer {
    return hashAt(this.#encoding, String(seq), this.prevHash);
  }
}

/**
 * How long the read waits for the database to act on what it asked when it is done with the statement: a fetch
 * cancelled at the deadline to end (57014), the statement's close to be answered. A backend that cannot act (frozen)
 * or a connection gone silent must not hold the read, and the CLI with it.
 */
const SETTLE_MS = 1_000;

type ChainQuery<Row> = { cursor(rows: number): AsyncIterable<ChainRow<Row>[]>; cancel(): Promise<void> | null };

/**
 * The chain's statement, handed to `use`: the head and statements (from its first row), then its rows a batch at a
 * time, the next fetched only when `use` asks for it. The cursor is closed when `use` ends, however it ends. Past the
 * deadline (a fetch still waiting then is cancelled), VerificationDeadlineError.
 */
async function readStatement<Row, T>(query: ChainQuery<Row>, options: ReadOptions, use: (meta: Meta, batches: AsyncGenerator<ChainRow<Row>[]>) => Promise<T>): Promise<T> {
  const deadline = options.deadline ?? Infinity;
  const cursor = query.cursor(options.batch ?? READ_BATCH)[Symbol.asyncIterator]();
  const fetch = () => fetchBy(query, () => cursor.next(), deadline);
  try {
    let read = await fetch();
    // The statement always returns a first row: the head and statements, with the first event or without one.
    const meta = read.done ? undefined : read.value[0]?.meta;
    if (!meta) throw new Error('the audit chain statement returned no head and statements');
    const turn = slicer(deadline);
    async function* batches(): AsyncGenerator<ChainRow<Row>[]> {
      for (; !read.done; read = await fetch()) {
        yield read.value;
        await turn();
      }
    }
    return await use(meta, batches());
  } finally {
    await cursor.return?.();
    // postgres.js's return() only asks for the portal's close (Close, Sync) and returns at once; the statement and its
    // snapshot end with the CloseComplete that settles one more next() (a plain value when the statement had ended).
    // Waited for, so whoever goes on after the read (an export cut short by its deadline) finds the snapshot released;
    // for SETTLE_MS at most, since a connection gone silent never answers (the CLI would wait for ever).
    // A failure is the statement's own error, already met by the read.
    const last = await withTimeout(Promise.resolve(cursor.next()), SETTLE_MS).catch(() => undefined);
    // A fetch given up on (its cancel failed) that has answered since: its portal is closed now, not waited for again.
    if (last && !last.done) await cursor.return?.();
  }
}

/**
 * The cursor's next batch, by the deadline: a fetch that waits for the database (a lock a migration holds, the first
 * fetch running the whole plan) is cancelled then (postgres.js sends the backend a CancelRequest; the fetch fails with
 * 57014), VerificationDeadlineError. Without it only the turns between batches saw the deadline. The cancel opens a
 * connection of its own, which may fail (refused, the database gone; an unhandled rejection would end the CLI): then,
 * or SETTLE_MS after a cancel the fetch did not end with, the read stops waiting for the fetch.
 */
async function fetchBy<T>(query: ChainQuery<unknown>, next: () => Promise<T>, deadline: number): Promise<T> {
  if (deadline === Infinity) return next();
  if (Date.now() >= deadline) throw new VerificationDeadlineError();
  const fetched = Promise.resolve(next()); // postgres.js's next() answers a plain value once the statement has ended
  let late = false;
  let timer: NodeJS.Timeout | undefined;
  // Settled only by the deadline; Promise.race listens to it, so a rejection after the fetch won is no unhandled one.
  const givenUp = new Promise<never>((_, reject) => {
    const giveUp = () => reject(new VerificationDeadlineError());
    timer = setTimeout(() => {
      late = true;
      // No logger here (the CLI's output is its JSON): a cancel that failed is seen as the deadline's error.
      Promise.resolve(query.cancel()).catch(giveUp);
      timer = setTimeout(giveUp, SETTLE_MS);
    }, deadline - Date.now());
  });
  try {
    return await Promise.race([fetched, givenUp]);
  } catch (error) {
    throw late ? new VerificationDeadlineError() : error;
  } finally {
    clearTimeout(timer);
    fetched.catch(() => {}); // given up on: its own end (57014 once cancelled) concerns no one now
  }
}

/**
 * The chain's statement, handed to `use` as ChainBatches: each event's encoding made as its batch arrives, so the
 * rows themselves die young.
 */
function readBatches<Row extends Links, T>(
  chain: ChainId,
  query: ChainQuery<Row>,
  encode: (row: Row) => EventEncoding,
  extra: readonly string[],
  options: ReadOptions,
  use: (input: ChainBatches, meta: Meta) => Promise<T>,
  keep?: (row: Row) => void,
): Promise<T> {
  return readStatement(query, options, (meta, rows) => {
    let head = '';
    async function* batches(): AsyncGenerator<StoredEvent[]> {
      for await (const batch of rows) {
        const events: StoredEvent[] = [];
        for (const { meta: _meta, linkedTo, ...fields } of batch) {
          const row = fields as unknown as Row;
          if (row.seq === null) continue;
          keep?.(row);
          const encoding = encode(row);
          if (encoding.head !== head) head = encoding.head; // one string for the whole chain
          events.push(new StoredEvent(row, { head, tail: encoding.tail }, linkedTo));
        }
        yield events;
      }
    }
    const input: ChainBatches = {
      chain: chainName(chain),
      statements: [...meta.statements.map((statement) => statement.jws), ...extra],
      head: meta.head ?? undefined,
      batches: batches(),
    };
    return use(input, meta);
  });
}

/** What an export writes: the chain, its head and signed statements, and its rows as read a batch at a time. */
export type ChainRows<Row> = { readonly chain: string; readonly meta: Meta; readonly batches: AsyncIterable<Row[]> };

/** The chain's rows for an export, a batch at a time in `use` (the one statement: one snapshot; memory of a batch). */
function readRows<Row extends Links, T>(chain: ChainId, query: ChainQuery<Row>, options: ReadOptions, use: (rows: ChainRows<Row>) => Promise<T>): Promise<T> {
  return readStatement(query, options, (meta, read) => {
    async function* batches(): AsyncGenerator<Row[]> {
      for await (const batch of read) {
        const rows: Row[] = [];
        for (const { meta: _meta, linkedTo: _linkedTo, ...fields } of batch) if (fields.seq !== null) rows.push(fields as unknown as Row);
        yield rows;
      }
    }
    return use({ chain: chainName(chain), meta, batches: batches() });
  });
}

/** The whole chain in memory (tests: what the batched reads must give): its events and, unless `rows` is false, its rows as read. */
async function readWhole<Row extends Links>(
  chain: ChainId,
  query: ChainQuery<Row>,
  encode: (row: Row) => EventEncoding,
  extra: readonly string[],
  options: ReadOptions,
): Promise<StoredChain<Row>> {
  const rows: Row[] = [];
  const read = async (batched: ChainBatches, meta: Meta): Promise<StoredChain<Row>> => {
    const events: LinkedChainEvent[] = [];
    for await (const batch of batched.batches) events.push(...batch);
    const { batches: _batches, ...header } = batched;
    return { chain, rows, meta, input: { ...header, events } };
  };
  return readBatches(chain, query, encode, extra, options, read, options.rows === false ? undefined : (row) => rows.push(row));
}

/**
 * A tenant's chain as its ADMIN (RLS) or the owner sees it. The head and statements come on the first row only (on
 * every row they were parsed once an event). `linkedTo`: on the first row after the first whose prev_hash is not the
 * previous row's hash, the earliest earlier seq with that hash, computed in the statement (its snapshot) once.
 */
function tenantChainQuery(tx: Tx, tenantId: string): ChainQuery<TenantEventRow> {
  return tx<ChainRow<TenantEventRow>[]>`
    select case when e.seq is null or e.seq::bigint = (select min(x.seq) from app.audit_events x where x.tenant_id = ${tenantId}) then m.meta end as meta, e.*
    from (select json_build_object(
            'head', (select json_build_object('seq', h.seq) from app.audit_chain_heads h where h.tenant_id = ${tenantId}),
            'statements', coalesce((select json_agg(s order by s.kind, s.seq) from (
                (select c.kind, c.seq, c.jws, c.signed_at as "signedAt", c.key_id as "keyId" from app.audit_checkpoints c
                 where c.tenant_id = ${tenantId} and c.kind = 'anchor' order by c.seq desc limit 1)
                union all
                (select c.kind, c.seq, c.jws, c.signed_at, c.key_id from app.audit_checkpoints c
                 where c.tenant_id = ${tenantId} and c.kind = 'checkpoint' order by c.seq desc limit ${CHECKPOINTS_READ})) s), '[]')
          ) as meta) m
    left join lateral (
      select e.seq::text as seq, e.prev_hash as "prevHash", e.hash,
             to_char(e.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as "occurredAt",
             e.actor_kind as "actorKind", e.actor_user_id::text as "actorUserId", e.actor_api_key_id::text as "actorApiKeyId",
             e.action, e.target_type as "targetType", e.target_id as "targetId", e.reason, e.details::text as details,
             e.request_id as "requestId",
             case when e.breaks and e.breaks_so_far = 1 then
               (select min(x.seq) from app.audit_events x where x.tenant_id = ${tenantId} and x.hash = e.prev_hash and x.seq < e.seq)::text
             end as "linkedTo"
      from (select b.*, count(*) filter (where b.breaks) over (order by b.seq rows unbounded preceding) as breaks_so_far
            from (select e.*, coalesce(e.prev_hash <> lag(e.hash) over (order by e.seq), false) as breaks
                  from app.audit_events e where e.tenant_id = ${tenantId}) b) e
      order by e.seq
    ) e on true`;
}

/** The platform chain (app_private.operator_audit_events), on the owner connection; `linkedTo` as the tenant's. */
function platformChainQuery(tx: Tx): ChainQuery<PlatformEventRow> {
  return tx<ChainRow<PlatformEventRow>[]>`
    select case when e.seq is null or e.seq::bigint = (select min(x.seq) from app_private.operator_audit_events x) then m.meta end as meta, e.*
    from (select json_build_object(
            'head', (select json_build_object('seq', h.seq) from app_private.platform_audit_chain_head h),
            'statements', coalesce((select json_agg(s order by s.seq) from (
                select c.kind, c.seq, c.jws, c.signed_at as "signedAt", c.key_id as "keyId" from app_private.platform_audit_checkpoints c
                where c.kind = 'checkpoint' order by c.seq desc limit ${CHECKPOINTS_READ}) s), '[]')
          ) as meta) m
    left join lateral (
      select e.seq::text as seq, e.prev_hash as "prevHash", e.hash,
             to_char(e.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as "occurredAt",
             e.actor_user_id::text as "actorUserId", e.actor, e.action, e.target_tenant_id::text as "targetTenantId",
             e.reason, e.details::text as details, e.request_id as "requestId",
             case when e.breaks and e.breaks_so_far = 1 then
               (select min(x.seq) from app_private.operator_audit_events x where x.hash = e.prev_hash and x.seq < e.seq)::text
             end as "linkedTo"
      from (select b.*, count(*) filter (where b.breaks) over (order by b.seq rows unbounded preceding) as breaks_so_far
            from (select e.*, coalesce(e.prev_hash <> lag(e.hash) over (order by e.seq), false) as breaks
                  from app_private.operator_audit_events e) b) e
      order by e.seq
    ) e on true`;
}

/** A tenant's chain held whole; `extra`: signed statements kept elsewhere. */
export function readTenantChain(tx: Tx, tenantId: string, extra: readonly string[] = [], options: ReadOptions = {}): Promise<StoredChain<TenantEventRow>> {
  return readWhole(tenantChain(tenantId), tenantChainQuery(tx, tenantId), (row) => tenantEventEncoding(tenantId, row), extra, options);
}

/** A tenant's chain a batch at a time, handed to `use` (verifyChainBatches): memory of one batch, whatever the chain's length. */
export function readTenantChainBatches<T>(tx: Tx, tenantId: string, extra: readonly string[], options: ReadOptions, use: (input: ChainBatches) => Promise<T>): Promise<T> {
  return readBatches(tenantChain(tenantId), tenantChainQuery(tx, tenantId), (row) => tenantEventEncoding(tenantId, row), extra, options, use);
}

/** A tenant's rows a batch at a time, handed to `use` (an export: memory of one batch, whatever the chain's length). */
export function readTenantChainRows<T>(tx: Tx, tenantId: string, options: ReadOptions, use: (rows: ChainRows<TenantEventRow>) => Promise<T>): Promise<T> {
  return readRows(tenantChain(tenantId), tenantChainQuery(tx, tenantId), options, use);
}

/** The platform chain held whole. */
export function readPlatformChain(tx: Tx, extra: readonly string[] = [], options: ReadOptions = {}): Promise<StoredChain<PlatformEventRow>> {
  return readWhole(PLATFORM_CHAIN, platformChainQuery(tx), (row) => platformEventEncoding(row), extra, options);
}

/** The platform chain a batch at a time, handed to `use`. */
export function readPlatformChainBatches<T>(tx: Tx, extra: readonly string[], options: ReadOptions, use: (input: ChainBatches) => Promise<T>): Promise<T> {
  return readBatches(PLATFORM_CHAIN, platformChainQuery(tx), (row) => platformEventEncoding(row), extra, options, use);
}

/** The platform chain's rows a batch at a time, handed to `use`. */
export function readPlatformChainRows<T>(tx: Tx, options: ReadOptions, use: (rows: ChainRows<PlatformEventRow>) => Promise<T>): Promise<T> {
  return readRows(PLATFORM_CHAIN, platformChainQuery(tx), options, use);
}

export type DueCheckpoint = {
  tenantId: string | null;
  seq: string;
  hash: Buffer;
  firstSeq: string;
  firstHash: Buffer | null;
  purgedThrough: string;
  /** The chain's newest checkpoint, and the hash the event it names has now (null: not there). */
  signedJws: string | null;
  signedEventHash: Buffer | null;
};

/** Chain heads newer than their newest checkpoint (tenantId null: the platform chain). */
export function checkpointsDue(tx: Tx, maxChains: number): Promise<DueCheckpoint[]> {
  return tx<DueCheckpoint[]>`
    select tenant_id as "tenantId", seq::text as seq, hash, first_seq::text as "firstSeq", first_hash as "firstHash",
           purged_through::text as "purgedThrough", signed_jws as "signedJws", signed_event_hash as "signedEventHash"
    from app_private.audit_checkpoints_due(${maxChains})`;
}

export async function storeCheckpoint(tx: Tx, due: DueCheckpoint, signedAt: string, keyId: string, jws: string): Promise<boolean> {
  const [row] = await tx<{ stored: boolean }[]>`
    select app_private.store_audit_checkpoint(${due.tenantId}, ${due.seq}, ${due.hash}, ${signedAt}, ${keyId}, ${jws}) as stored`;
  return row!.stored;
}

/** A purge to sign: through which event, and that event's content and link, for the service to hash again. */
export type DuePurge = { tenantId: string; throughSeq: string; throughHash: Buffer; through: Omit<TenantEventFields, 'seq'> & { prevHash: Buffer } };

export async function purgesDue(tx: Tx, batch: number, maxChains: number): Promise<DuePurge[]> {
  const rows = await tx<(Omit<DuePurge, 'through'> & DuePurge['through'])[]>`
    select tenant_id as "tenantId", through_seq::text as "throughSeq", through_hash as "throughHash", through_prev_hash as "prevHash",
           occurred_at as "occurredAt", actor_kind as "actorKind", actor_user_id as "actorUserId", actor_api_key_id as "actorApiKeyId",
           action, target_type as "targetType", target_id as "targetId", reason, details, request_id as "requestId"
    from app_private.audit_purges_due(${batch}, ${maxChains})`;
  return rows.map(({ tenantId, throughSeq, throughHash, ...through }) => ({ tenantId, throughSeq, throughHash, through }));
}

/** Deletes the events the anchor covers; the number deleted (0: another worker purged them first). */
export async function purge(tx: Tx, due: DuePurge, signedAt: string, keyId: string, anchor: string): Promise<number> {
  const [row] = await tx<{ purged: number }[]>`
    select app_private.purge_audit_events(${due.tenantId}, ${due.throughSeq}, ${due.throughHash}, ${signedAt}, ${keyId}, ${anchor}) as purged`;
  return row!.purged;
}
