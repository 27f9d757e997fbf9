// Verification of one audit chain, outside the database: every event's hash
// computed again from its content, every link and seq checked, and the result
// held against the newest checkpoint and anchor that the audit key signed. An
// attacker with write access to the database can recompute hashes but cannot
// sign, so a chain rewritten consistently still disagrees with a checkpoint.
// The answer is ok, or the first bad seq and the tamper it looks like.
import { AuditSignatureError, type AuditKey, type SignedStatement } from './keys.ts';

export const TAMPER_CLASSES = [
  'EDITED',
  'INSERTED',
  'REORDERED',
  'DELETED',
  'OLDEST_DELETED',
  'TRUNCATED',
  'CHAIN_DELETED',
  'FORGED_CHECKPOINT',
] as const;
export type TamperClass = (typeof TAMPER_CLASSES)[number];

/** An event as stored: its seq, links and a way to hash its content as if it sat at another seq. */
export type ChainEvent = {
  readonly seq: number;
  readonly prevHash: Buffer;
  readonly hash: Buffer;
  /** The hash of this event's content and prev_hash at `seq`. */
  hashAs(seq: number): Buffer;
};

export type ChainInput = {
  /** `tenant:<uuid>` or `platform`: statements for another chain are forgeries here. */
  readonly chain: string;
  /** Every event kept, in seq order. */
  readonly events: readonly ChainEvent[];
  /** Signed checkpoints and anchors (compact JWS): the database's, and any kept elsewhere (an export). */
  readonly statements: readonly string[];
  /** The database's own (unsigned) head, when it has one. */
  readonly head?: { readonly seq: number };
};

export type Verification = {
  readonly ok: boolean;
  readonly tamper: TamperClass | undefined;
  readonly firstBadSeq: number | undefined;
  readonly message: string;
  /** Events checked, and the seq of the newest. */
  readonly events: number;
  readonly lastSeq: number;
  /** Where the kept chain starts: the newest signed anchor's seq (0: nothing purged). */
  readonly anchorSeq: number;
  /** The newest signed checkpoint held against the chain. */
  readonly checkpoint: { readonly seq: number; readonly at: string } | undefined;
  /** Events newer than that checkpoint: chained, not yet signed (the tamper window). */
  readonly unsignedEvents: number;
};

const ZERO = Buffer.alloc(32);
/** How far a moved event is looked for from where it stands. */
const MOVE_WINDOW = 8;

type Bad = { tamper: TamperClass; seq: number; message: string };

/** Verification ran past its deadline: the caller answers it (UNAVAILABLE through GraphQL, an operator error in the CLI). */
export class VerificationDeadlineError extends Error {
  constructor() {
    super('the audit chain could not be verified by the deadline');
    this.name = 'VerificationDeadlineError';
  }
}

export type VerifyOptions = {
  /** When verification must be over (ms since the epoch); past it, VerificationDeadlineError. */
  readonly deadline?: number;
};

export async function verifyChain(input: ChainInput, key: AuditKey | undefined, options: VerifyOptions = {}): Promise<Verification> {
  const { events } = input;
  const statements: SignedStatement[] = [];
  let forged: Bad | undefined;
  for (const jws of new Set(input.statements)) {
    if (!key) break;
    try {
      const statement = await key.verify(jws);
      if (statement.chain !== input.chain) throw new AuditSignatureError(`a statement of ${statement.chain}`);
      statements.push(statement);
    } catch (error) {
      if (!(error instanceof AuditSignatureError)) throw error;
      forged ??= { tamper: 'FORGED_CHECKPOINT', seq: 0, message: `a checkpoint or anchor is not the audit key's: ${error.message}` };
    }
  }
  const newest = (typ: SignedStatement['typ']) =>
    statements.filter((statement) => statement.typ === typ).sort((a, b) => b.seq - a.seq)[0];
  const anchor = newest('anchor');
  const start = { seq: anchor?.seq ?? 0, hash: anchor ? Buffer.from(anchor.hash, 'hex') : ZERO };
  const checkpoints = statements.filter((statement) => statement.typ === 'checkpoint' && statement.seq > start.seq).sort((a, b) => b.seq - a.seq);
  const checkpoint = checkpoints[0];

  const bySeq = new Map(events.map((event, index) => [event.seq, index]));
  const last = events.at(-1);
  const lastSeq = last?.seq ?? start.seq;
  const bad = forged ?? walk(events, start, await hashedAtOwnSeq(events, options.deadline ?? Infinity)) ?? against(events, bySeq, start, checkpoints, input.head, lastSeq);
  const unsigned = checkpoint ? events.filter((event) => event.seq > checkpoint.seq).length : events.length;
  return {
    ok: bad === undefined,
    tamper: bad?.tamper,
    firstBadSeq: bad ? bad.seq : undefined,
    message: bad?.message ?? (checkpoint ? `intact through seq ${lastSeq}; signed through ${checkpoint.seq}` : `intact through seq ${lastSeq}; no checkpoint signed yet`),
    events: events.length,
    lastSeq,
    anchorSeq: start.seq,
    checkpoint: checkpoint ? { seq: checkpoint.seq, at: checkpoint.at } : undefined,
    unsignedEvents: unsigned,
  };
}

/** How long hashing holds the event loop between two turns: a long chain must not hold every other request of the process. */
export const HASH_SLICE_MS = 10;

/** Gives the event loop a turn once `sliceMs` have passed since the last; past the deadline, VerificationDeadlineError. */
export function slicer(deadline: number, sliceMs = HASH_SLICE_MS): () => Promise<void> | undefined {
  let since = performance.now();
  return () => {
    if (performance.now() - since < sliceMs) return undefined;
    if (Date.now() >= deadline) throw new VerificationDeadlineError();
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      if (Date.now() >= deadline) throw new VerificationDeadlineError();
      since = performance.now();
    });
  };
}

/** Whether each event's content hashes to its hash at its own seq, computed in slices of HASH_SLICE_MS. */
async function hashedAtOwnSeq(events: readonly ChainEvent[], deadline: number): Promise<boolean[]> {
  const intact: boolean[] = [];
  const turn = slicer(deadline);
  for (let i = 0; i < events.length; i++) {
    if (i % 64 === 0) await turn();
    const event = events[i]!;
    intact.push(event.hashAs(event.seq).equals(event.hash));
  }
  return intact;
}

/** Each event against its own hash, its predecessor and its seq; the first that fails, classified. */
function walk(events: readonly ChainEvent[], start: { seq: number; hash: Buffer }, intact: readonly boolean[]): Bad | undefined {
  let expectedSeq = start.seq + 1;
  let expectedPrev = start.hash;
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    if (event.seq < expectedSeq) {
      return { tamper: 'INSERTED', seq: event.seq, message: `an event at seq ${event.seq}, which the signed anchor says was purged` };
    }
    if (!intact[i]) return misplaced(events, i, expectedSeq);
    if (event.seq > expectedSeq) {
      return i === 0
        ? { tamper: 'OLDEST_DELETED', seq: expectedSeq, message: `the chain starts at seq ${event.seq}, not ${expectedSeq}, and no signed anchor says why` }
        : { tamper: 'DELETED', seq: expectedSeq, message: `seq ${expectedSeq} to ${event.seq - 1} are missing` };
    }
    if (!event.prevHash.equals(expectedPrev)) return unlinked(events, i);
    expectedSeq = event.seq + 1;
    expectedPrev = event.hash;
  }
  return undefined;
}

/** Where an event's content was hashed, if not at its seq: `seq + offset` within the window. */
function originalOffset(event: ChainEvent): number | undefined {
  for (let distance = 1; distance <= MOVE_WINDOW; distance++) {
    for (const offset of [distance, -distance]) {
      if (event.seq + offset > 0 && event.hashAs(event.seq + offset).equals(event.hash)) return offset;
    }
  }
  return undefined;
}

/** An event whose hash is not its content's at its seq: edited, or moved by an insertion, deletion or reordering. */
function misplaced(events: readonly ChainEvent[], i: number, expectedSeq: number): Bad {
  const event = events[i]!;
  const seq = Math.min(event.seq, expectedSeq);
  const offset = originalOffset(event);
  if (offset === undefined) {
    // Not hashed anywhere near: edited in place, or added, when the next event was hashed at this one's seq.
    const next = events[i + 1];
    if (next && next.hashAs(event.seq).equals(next.hash)) {
      return { tamper: 'INSERTED', seq: event.seq, message: `the event at seq ${event.seq} was added: the next one was hashed at its seq` };
    }
    return { tamper: 'EDITED', seq: event.seq, message: `the event at seq ${event.seq} is not what was hashed` };
  }
  // Moved events all one way: a count changed before them. Both ways: the order changed.
  for (let j = i + 1; j < Math.min(events.length, i + 1 + 2 * MOVE_WINDOW); j++) {
    const other = events[j]!;
    if (other.hashAs(other.seq).equals(other.hash)) continue;
    const otherOffset = originalOffset(other);
    if (otherOffset !== undefined && Math.sign(otherOffset) !== Math.sign(offset)) {
      return { tamper: 'REORDERED', seq, message: `the events at seq ${event.seq} and ${other.seq} were hashed in another order` };
    }
  }
  if (offset > 0) {
    return i === 0
      ? { tamper: 'OLDEST_DELETED', seq: 1, message: `the first event kept was hashed as seq ${event.seq + offset}: older events were removed and the rest renumbered` }
      : { tamper: 'DELETED', seq, message: `the event at seq ${event.seq} was hashed as seq ${event.seq + offset}: events before it were removed and the rest renumbered` };
  }
  return { tamper: 'INSERTED', seq: Math.max(1, event.seq + offset), message: `the event at seq ${event.seq} was hashed as seq ${event.seq + offset}: events were added before it` };
}

/** An event hashed right at its seq whose predecessor is not the event before it. */
function unlinked(events: readonly ChainEvent[], i: number): Bad {
  const event = events[i]!;
  const j = events.findIndex((other) => other.hash.equals(event.prevHash));
  if (j > i) return { tamper: 'REORDERED', seq: events[i - 1]?.seq ?? event.seq, message: `the event at seq ${event.seq} follows the one at seq ${events[j]!.seq}` };
  if (j >= 0 && j < i - 1) return { tamper: 'INSERTED', seq: events[j + 1]!.seq, message: `seq ${events[j + 1]!.seq} to ${event.seq - 1} stand between events that were hashed one after the other` };
  return { tamper: 'EDITED', seq: Math.max(1, event.seq - 1), message: `the event before seq ${event.seq} is not the one it was hashed after` };
}

/** A chain consistent in itself, held against the signed checkpoints and the database's head. */
function against(
  events: readonly ChainEvent[],
  bySeq: Map<number, number>,
  start: { seq: number; hash: Buffer },
  checkpoints: readonly SignedStatement[],
  head: { seq: number } | undefined,
  lastSeq: number,
): Bad | undefined {
  const checkpoint = checkpoints[0];
  const claimed = Math.max(checkpoint?.seq ?? 0, head?.seq ?? 0);
  const first = checkpoint?.first;
  const oldestChanged = first?.hash != null && first.seq === start.seq + 1 && events.length > 0 && events[0]!.hash.toString('hex') !== first.hash;
  if (claimed > lastSeq) {
    if (oldestChanged) return { tamper: 'OLDEST_DELETED', seq: first.seq, message: `fewer events than signed, and the oldest is not the one the checkpoint at seq ${checkpoint!.seq} saw` };
    const signed = checkpoint && checkpoint.seq > lastSeq ? `a signed checkpoint vouches for seq ${checkpoint.seq}` : `the chain head says ${claimed}`;
    return events.length === 0
      ? { tamper: 'CHAIN_DELETED', seq: start.seq + 1, message: `no events are left after seq ${start.seq}, but ${signed}` }
      : { tamper: 'TRUNCATED', seq: lastSeq + 1, message: `the chain ends at seq ${lastSeq}, but ${signed}` };
  }
  if (!checkpoint) return undefined;
  // Every signed checkpoint must still hold, not only the newest: a chain rewritten and hashed again whose new
  // head the service was then made to sign agrees with that newest checkpoint, and with no older one.
  const holdsAt = (statement: SignedStatement) => events[bySeq.get(statement.seq) ?? -1]?.hash.toString('hex') === statement.hash;
  const broken = checkpoints.filter((statement) => !holdsAt(statement)).at(-1);
  if (!broken) {
    if (oldestChanged) return { tamper: 'OLDEST_DELETED', seq: first.seq, message: 'the oldest events are not the ones the signed checkpoint saw' };
    return undefined;
  }
  // Consistent hashes that a signed head does not know: the chain was rewritten and hashed again. What it
  // looked like is gone with the old hashes; where it went wrong lies after the newest checkpoint older than
  // the oldest one broken that still holds.
  const holds = checkpoints.find((older) => older.seq < broken.seq && holdsAt(older));
  const from = holds ? holds.seq + 1 : start.seq + 1;
  if (oldestChanged && !holds) return { tamper: 'OLDEST_DELETED', seq: first.seq, message: 'the oldest events are not the ones the signed checkpoint saw, and the chain was hashed again' };
  return { tamper: 'EDITED', seq: from, message: `the chain was rewritten after seq ${from - 1} and hashed again: it disagrees with the checkpoint signed at seq ${broken.seq}` };
}
