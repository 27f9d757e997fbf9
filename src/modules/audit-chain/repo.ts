// Reading an audit chain for verification and export, and the service's side
// of checkpoints and retention (app_private.audit_checkpoints_due,
// store_audit_checkpoint, audit_purges_due, purge_audit_events). Each chain is
// read by one statement, so its head, signed statements and events are one
// snapshot; the fields come back as the text the chain hashes.
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
import { slicer, type ChainEvent, type ChainInput } from './verify.ts';

/** Checkpoints read besides the newest: older ones narrow down where a rewritten chain went wrong. */
const CHECKPOINTS_READ = 16;
/** Rows fetched a round trip (one statement, one snapshot, read through a cursor): the event loop turns between batches. */
const READ_BATCH = 2000;

type Links = { seq: string; prevHash: Buffer; hash: Buffer };
export type TenantEventRow = TenantEventFields & Links;
export type PlatformEventRow = PlatformEventFields & Links;
type Meta = { head: { seq: number } | null; statements: { kind: 'checkpoint' | 'anchor'; seq: number; jws: string; signedAt: string; keyId: string }[] };

/** `rows`: the events as read, for an export; empty when read for verification only (`ReadOptions.rows` false). */
export type StoredChain<Row> = { readonly chain: ChainId; readonly input: ChainInput; readonly rows: readonly Row[]; readonly meta: Meta };

export type ReadOptions = {
  /** Past it (ms since the epoch), VerificationDeadlineError. */
  readonly deadline?: number;
  /** Keep the rows as read (an export); verification keeps only each event's links and encoding. */
  readonly rows?: boolean;
};

/** An event as verification holds it: its links, and its encoding cut around the seq (no row, no closure: a long chain is small). */
class StoredEvent implements ChainEvent {
  readonly seq: number;
  readonly prevHash: Buffer;
  readonly hash: Buffer;
  readonly #encoding: EventEncoding;

  constructor(row: Links, encoding: EventEncoding) {
    this.seq = Number(row.seq);
    this.prevHash = row.prevHash;
    this.hash = row.hash;
    this.#encoding = encoding;
  }

  hashAs(seq: number): Buffer {
    return hashAt(this.#encoding, String(seq), this.prevHash);
  }
}

/**
 * Every row of one statement, a batch a round trip, the head and statements apart; each event's encoding
 * made as its batch arrives, so the rows themselves die young. Past the deadline, VerificationDeadlineError.
 */
async function readChain<Row extends Links>(
  chain: ChainId,
  query: AsyncIterable<(Row & { meta: Meta | null })[]>,
  encode: (row: Row) => EventEncoding,
  extra: readonly string[],
  options: ReadOptions,
): Promise<StoredChain<Row>> {
  let meta: Meta | undefined;
  const rows: Row[] = [];
  const events: StoredEvent[] = [];
  let head = '';
  const turn = slicer(options.deadline ?? Infinity);
  for await (const batch of query) {
    for (const { meta: first, ...fields } of batch) {
      meta ??= first ?? undefined;
      const row = fields as unknown as Row;
      if (row.seq === null) continue;
      if (options.rows !== false) rows.push(row);
      const encoding = encode(row);
      if (encoding.head !== head) head = encoding.head; // one string for the whole chain
      events.push(new StoredEvent(row, { head, tail: encoding.tail }));
    }
    await turn();
  }
  return {
    chain,
    rows,
    meta: meta!,
    input: {
      chain: chainName(chain),
      events,
      statements: [...meta!.statements.map((statement) => statement.jws), ...extra],
      head: meta!.head ?? undefined,
    },
  };
}

/**
 * A tenant's chain as its ADMIN (RLS) or the owner sees it; `extra`: signed statements kept elsewhere.
 * The head and statements come on the first row only (on every row they were parsed once an event).
 */
export function readTenantChain(tx: Tx, tenantId: string, extra: readonly string[] = [], options: ReadOptions = {}): Promise<StoredChain<TenantEventRow>> {
  const query = tx<(TenantEventRow & { meta: Meta | null })[]>`
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
             e.request_id as "requestId"
      from app.audit_events e where e.tenant_id = ${tenantId} order by e.seq
    ) e on true`;
  return readChain(tenantChain(tenantId), query.cursor(READ_BATCH), (row) => tenantEventEncoding(tenantId, row), extra, options);
}

/** The platform chain (app_private.operator_audit_events), on the owner connection. */
export function readPlatformChain(tx: Tx, extra: readonly string[] = [], options: ReadOptions = {}): Promise<StoredChain<PlatformEventRow>> {
  const query = tx<(PlatformEventRow & { meta: Meta | null })[]>`
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
             e.reason, e.details::text as details, e.request_id as "requestId"
      from app_private.operator_audit_events e order by e.seq
    ) e on true`;
  return readChain(PLATFORM_CHAIN, query.cursor(READ_BATCH), (row) => platformEventEncoding(row), extra, options);
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
