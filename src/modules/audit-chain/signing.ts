// The service's signatures on the audit chains: a checkpoint of every chain
// head that moved since its last one, and an anchor for every retention purge
// (the events up to seq were deleted because they were past the tenant's
// retention), both kept in the database. Every worker runs the sweep on a
// timer (AUDIT_CHECKPOINT_INTERVAL); the CLI runs the same on demand. Two
// workers signing the same head keep one checkpoint (the second is a no-op).
// A chain whose newest checkpoint no longer holds (the event it names has
// another hash now, or the checkpoint is not the key's) is not signed again:
// the service never vouches for a chain someone rewrote.
import type { Sql, Tx } from '../../db/pool.ts';
import type { Logger } from '../../logger.ts';
import { chainName, PLATFORM_CHAIN, tenantChain, tenantEventHash } from './chain.ts';
import { AuditSignatureError, type AuditKey, type SignedStatement } from './keys.ts';
import { checkpointsDue, purge, purgesDue, storeCheckpoint, type DueCheckpoint, type DuePurge } from './repo.ts';

export type SignedCheckpoint = { readonly chain: string; readonly seq: number; readonly hash: string; readonly jws: string; readonly stored: boolean };
/** A chain left unsigned because it no longer agrees with its newest checkpoint. */
export type RefusedCheckpoint = { readonly chain: string; readonly seq: number; readonly reason: string };

/** Why the chain must not be signed on top of its newest checkpoint, if it must not. */
async function rewritten(due: DueCheckpoint, key: AuditKey, chain: string): Promise<string | undefined> {
  if (due.signedJws === null) return undefined;
  let signed: SignedStatement;
  try {
    signed = await key.verify(due.signedJws);
  } catch (error) {
    if (!(error instanceof AuditSignatureError)) throw error;
    return `its newest checkpoint is not the audit key's (${error.message})`;
  }
  if (signed.chain !== chain) return `its newest checkpoint is ${signed.chain}'s`;
  if (signed.seq <= Number(due.purgedThrough)) return undefined; // purged since, under a newer anchor
  const now = due.signedEventHash?.toString('hex');
  if (now !== signed.hash) return now === undefined ? `the event at seq ${signed.seq}, which its newest checkpoint signed, is gone` : `the event at seq ${signed.seq} is not the one its newest checkpoint signed`;
  return undefined;
}
/** A purge left unsigned: the database named events the service cannot see are past the retention floor. */
export type RefusedPurge = { readonly tenantId: string; readonly throughSeq: number; readonly reason: string };
export type Purged = { readonly tenantId: string; readonly throughSeq: number; readonly events: number; readonly anchor: string };

/**
 * Signs and keeps a checkpoint of every chain head newer than its newest
 * checkpoint (at most `maxChains`); `refused` collects the chains that no
 * longer hold their newest checkpoint.
 */
export async function signCheckpoints(tx: Tx, key: AuditKey, maxChains = 1000, refused: RefusedCheckpoint[] = []): Promise<SignedCheckpoint[]> {
  const signed: SignedCheckpoint[] = [];
  for (const due of await checkpointsDue(tx, maxChains)) {
    const chain = chainName(due.tenantId === null ? PLATFORM_CHAIN : tenantChain(due.tenantId));
    const reason = await rewritten(due, key, chain);
    if (reason !== undefined) {
      refused.push({ chain, seq: Number(due.seq), reason });
      continue;
    }
    const at = new Date().toISOString();
    const statement: SignedStatement = {
      typ: 'checkpoint',
      chain,
      seq: Number(due.seq),
      hash: due.hash.toString('hex'),
      first: { seq: Number(due.firstSeq), hash: due.firstHash?.toString('hex') ?? null },
      at,
    };
    const jws = await key.sign(statement);
    const stored = await storeCheckpoint(tx, due, at, key.keyId, jws);
    signed.push({ chain: statement.chain, seq: statement.seq, hash: statement.hash, jws, stored });
  }
  return signed;
}

/** The youngest an event may be for the service to sign its purge: the retention floor (migration 000012's constraint). */
const RETENTION_FLOOR_MS = 90 * 24 * 3600 * 1000;

/** Why the purge must not be signed: the database named an event the service cannot see is past the floor. */
function tooYoung(due: DuePurge, now: number): string | undefined {
  const hash = tenantEventHash(due.tenantId, { ...due.through, seq: due.throughSeq }, due.through.prevHash);
  if (!hash.equals(due.throughHash)) return `the event at seq ${due.throughSeq} does not hash to the hash the purge names`;
  const occurred = Date.parse(due.through.occurredAt);
  if (!(occurred < now - RETENTION_FLOOR_MS)) return `the event at seq ${due.throughSeq} (${due.through.occurredAt}) is within the 90-day retention floor`;
  return undefined;
}

/**
 * One batch per tenant past its retention: signs its anchor, then deletes the
 * events it covers. Only for a batch whose last event the service hashed
 * again and saw past the floor; `refused` collects the others.
 */
export async function purgeExpired(tx: Tx, key: AuditKey, batch: number, maxChains = 100, refused: RefusedPurge[] = []): Promise<Purged[]> {
  const purged: Purged[] = [];
  for (const due of await purgesDue(tx, batch, maxChains)) {
    const reason = tooYoung(due, Date.now());
    if (reason !== undefined) {
      refused.push({ tenantId: due.tenantId, throughSeq: Number(due.throughSeq), reason });
      continue;
    }
    const at = new Date().toISOString();
    const statement: SignedStatement = {
      typ: 'anchor',
      chain: chainName(tenantChain(due.tenantId)),
      seq: Number(due.throughSeq),
      hash: due.throughHash.toString('hex'),
      at,
    };
    const anchor = await key.sign(statement);
    const events = await purge(tx, due, at, key.keyId, anchor);
    purged.push({ tenantId: due.tenantId, throughSeq: statement.seq, events, anchor });
  }
  return purged;
}

export type AuditSweep = {
  /** One round now: checkpoints first (so a purge never leaves a head unsigned), then retention batches. */
  sweep(): Promise<{ checkpoints: SignedCheckpoint[]; refused: RefusedCheckpoint[]; purged: Purged[] }>;
  stop(): void;
};

export function startAuditSweep(sql: Sql, key: AuditKey, settings: { intervalSeconds: number; purgeBatch: number }, log: Logger): AuditSweep {
  let warnedAt = 0;
  let running: ReturnType<AuditSweep['sweep']> | undefined;
  const round = async () => {
    const refused: RefusedCheckpoint[] = [];
    const checkpoints = await signCheckpoints(sql, key, 1000, refused);
    // Every signed checkpoint also goes to the log, which leaves the machine: a copy no DBA can reach.
    for (const checkpoint of checkpoints) if (checkpoint.stored) log.info({ audit: checkpoint }, 'audit checkpoint signed');
    for (const chain of refused) log.error({ audit: chain }, 'audit chain no longer holds its newest checkpoint: not signed (tampered? run tenancy audit verify)');
    const refusedPurges: RefusedPurge[] = [];
    const purged = await purgeExpired(sql, key, settings.purgeBatch, 100, refusedPurges);
    for (const batch of purged) if (batch.events > 0) log.info({ audit: batch }, 'audit events past retention purged under a signed anchor');
    for (const purge of refusedPurges) log.error({ audit: purge }, 'audit purge not signed: the database named events not past the retention floor (tampered? run tenancy audit verify)');
    return { checkpoints, refused, purged };
  };
  const sweep = () => (running ??= round().finally(() => (running = undefined)));
  const timer = setInterval(() => {
    sweep().catch((error: unknown) => {
      if (Date.now() - warnedAt < 600_000) return; // a database outage is reported by requests and /ready
      warnedAt = Date.now();
      log.warn({ err: error }, 'audit checkpoint sweep failed; it runs again shortly');
    });
  }, settings.intervalSeconds * 1000);
  timer.unref();
  return { sweep, stop: () => clearInterval(timer) };
}
