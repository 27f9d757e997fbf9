// Reading an audit chain for verification and export, and the service's side
// of checkpoints and retention (app_private.audit_checkpoints_due,
// store_audit_checkpoint, audit_purges_due, purge_audit_events). Each chain is
// read by one statement, so its head, signed statements and events are one
// snapshot; the fields come back as the text the chain hashes.
import type { Tx } from '../../db/pool.ts';
import { chainName, platformEventHash, tenantChain, tenantEventHash, PLATFORM_CHAIN, type ChainId, type PlatformEventFields, type TenantEventFields } from './chain.ts';
import type { ChainEvent, ChainInput } from './verify.ts';

/** Checkpoints read besides the newest: older ones narrow down where a rewritten chain went wrong. */
const CHECKPOINTS_READ = 16;

type Links = { seq: string; prevHash: Buffer; hash: Buffer };
export type TenantEventRow = TenantEventFields & Links;
export type PlatformEventRow = PlatformEventFields & Links;
type Meta = { head: { seq: number } | null; statements: { kind: 'checkpoint' | 'anchor'; seq: number; jws: string; signedAt: string; keyId: string }[] };

export type StoredChain<Row> = { readonly chain: ChainId; readonly input: ChainInput; readonly rows: readonly Row[]; readonly meta: Meta };

function chainEvents<Row extends Links>(rows: readonly Row[], hash: (row: Row, seq: string) => Buffer): ChainEvent[] {
  return rows.map((row) => ({
    seq: Number(row.seq),
    prevHash: row.prevHash,
    hash: row.hash,
    hashAs: (seq: number) => hash(row, String(seq)),
  }));
}

function stored<Row extends Links>(chain: ChainId, rows: readonly (Row & { meta: Meta })[], hash: (row: Row, seq: string) => Buffer, extra: readonly string[]): StoredChain<Row> {
  const meta = rows[0]!.meta;
  const events = rows.filter((row) => row.seq !== null);
  return {
    chain,
    rows: events,
    meta,
    input: {
      chain: chainName(chain),
      events: chainEvents(events, hash),
      statements: [...meta.statements.map((statement) => statement.jws), ...extra],
      head: meta.head ?? undefined,
    },
  };
}

/** A tenant's chain as its ADMIN (RLS) or the owner sees it; `extra`: signed statements kept elsewhere. */
export async function readTenantChain(tx: Tx, tenantId: string, extra: readonly string[] = []): Promise<StoredChain<TenantEventRow>> {
  const rows = await tx<(TenantEventRow & { meta: Meta })[]>`
    select m.meta, e.*
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
  return stored(tenantChain(tenantId), rows, (row, seq) => tenantEventHash(tenantId, { ...row, seq }, row.prevHash), extra);
}

/** The platform chain (app_private.operator_audit_events), on the owner connection. */
export async function readPlatformChain(tx: Tx, extra: readonly string[] = []): Promise<StoredChain<PlatformEventRow>> {
  const rows = await tx<(PlatformEventRow & { meta: Meta })[]>`
    select m.meta, e.*
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
  return stored(PLATFORM_CHAIN, rows, (row, seq) => platformEventHash({ ...row, seq }, row.prevHash), extra);
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
