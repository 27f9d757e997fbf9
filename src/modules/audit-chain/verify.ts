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

/**
 * An event of a chain read in batches: what its link points back to, which the batches already let go of cannot say.
 * `linkedTo`: on the first event after the chain's first whose prev_hash is not the hash of the event before it, the
 * seq of the earliest earlier event whose hash it is; otherwise (or when there is none) null. The reader computes it
 * in the chain's own snapshot (src/modules/audit-chain/repo.ts).
 */
export type LinkedChainEvent = ChainEvent & { readonly linkedTo: number | null };

/** A chain as a batched read hands it over: the statements and head first, then the events in seq order, a batch at a time. */
export type ChainBatches = Omit<ChainInput, 'events'> & { readonly batches: AsyncIterable<readonly LinkedChainEvent[]> };

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
/** Events after a misplaced one that its classification looks at (`misplaced`). */
const LOOKAHEAD = 2 * MOVE_WINDOW;

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

/** A chain held whole (an export, a test): where a broken link points back is looked up among its events. */
export function verifyChain(input: ChainInput, key: AuditKey | undefined, options: VerifyOptions = {}): Promise<Verification> {
  const { events } = input;
  const linkedTo = (event: ChainEvent, index: number) => {
    const j = events.findIndex((other) => other.hash.equals(event.prevHash));
    return j >= 0 && j < index - 1 ? events[j]!.seq : null;
  };
  return verifyEvents(input, [events], linkedTo, key, options);
}

/**
 * A chain read in batches, verified as they arrive: what is kept from one batch to the next is the walk's place (the
 * expected seq and link), at most LOOKAHEAD events after a misplaced one, and the hashes at the signed seqs, so
 * verification holds one batch whatever the chain's length. The answer is verifyChain's for the same events.
 */
export function verifyChainBatches(input: ChainBatches, key: AuditKey | undefined, options: VerifyOptions = {}): Promise<Verification> {
  return verifyEvents(input, input.batches, (event) => event.linkedTo, key, options);
}

async function verifyEvents<E extends ChainEvent>(
  input: Omit<ChainInput, 'events'>,
  batches: AsyncIterable<readonly E[]> | Iterable<readonly E[]>,
  linkedTo: (event: E, index: number) => number | null,
  key: AuditKey | undefined,
  options: VerifyOptions,
): Promise<Verification> {
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

  // A forged statement is the answer: the events are only counted, not hashed.
  const walk = forged ? undefined : new ChainWalk(start, linkedTo);
  const signedSeqs = new Set(checkpoints.map((statement) => statement.seq));
  const seen: Seen = { count: 0, firstHash: undefined, hashAtSigned: new Map() };
  let lastSeq = start.seq;
  let unsigned = 0;
  const turn = slicer(options.deadline ?? Infinity);
  for await (const batch of batches) {
    for (const event of batch) {
      if (seen.count % 64 === 0) await turn();
      if (seen.count === 0) seen.firstHash = event.hash;
      if (signedSeqs.has(event.seq)) seen.hashAtSigned.set(event.seq, event.hash);
      if (!checkpoint || event.seq > checkpoint.seq) unsigned++;
      walk?.next(event, seen.count);
      lastSeq = event.seq;
      seen.count++;
    }
    await turn();
  }
  const bad = forged ?? walk!.end() ?? against(seen, start, checkpoints, input.head, lastSeq);
  return {
    ok: bad === undefined,
    tamper: bad?.tamper,
    firstBadSeq: bad ? bad.seq : undefined,
    message: bad?.message ?? (checkpoint ? `intact through seq ${lastSeq}; signed through ${checkpoint.seq}` : `intact through seq ${lastSeq}; no checkpoint signed yet`),
    events: seen.count,
    lastSeq,
    anchorSeq: start.seq,
    checkpoint: checkpoint ? { seq: checkpoint.seq, at: checkpoint.at } : undefined,
    unsignedEvents: unsigned,
  };
}

/** What `against` needs of the events, kept as they pass: how many, the first one's hash, the hashes at the signed seqs. */
type Seen = { count: number; firstHash: Buffer | undefined; readonly hashAtSigned: Map<number, Buffer> };

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

/**
 * Each event against its own hash, its predecessor and its seq, an event at a time; the first that fails, classified.
 * A misplaced event is classified once the LOOKAHEAD events after it have passed (or the chain ended); an unlinked one
 * whose link points nowhere earlier, once an event with the hash it names has passed (or the chain ended).
 */
class ChainWalk<E extends ChainEvent> {
  #expectedSeq: number;
  #expectedPrev: Buffer;
  #previousSeq: number | undefined;
  readonly #linkedTo: (event: E, index: number) => number | null;
  #bad: Bad | undefined;
  #misplaced: { readonly event: E; readonly first: boolean; readonly expectedSeq: number; readonly after: E[] } | undefined;
  #unlinked: { readonly event: E; readonly previousSeq: number | undefined } | undefined;

  constructor(start: { seq: number; hash: Buffer }, linkedTo: (event: E, index: number) => number | null) {
    this.#expectedSeq = start.seq + 1;
    this.#expectedPrev = start.hash;
    this.#linkedTo = linkedTo;
  }

  next(event: E, index: number): void {
    if (this.#bad) return;
    if (this.#misplaced) {
      const { after } = this.#misplaced;
      after.push(event);
      if (after.length === LOOKAHEAD) this.#bad = this.#classifyMisplaced();
      return;
    }
    if (this.#unlinked) {
      if (event.hash.equals(this.#unlinked.event.prevHash)) this.#bad = reordered(this.#unlinked.event, this.#unlinked.previousSeq, event);
      return;
    }
    const expectedSeq = this.#expectedSeq;
    if (event.seq < expectedSeq) {
      this.#bad = { tamper: 'INSERTED', seq: event.seq, message: `an event at seq ${event.seq}, which the signed anchor says was purged` };
    } else if (!event.hashAs(event.seq).equals(event.hash)) {
      this.#misplaced = { event, first: index === 0, expectedSeq, after: [] };
    } else if (event.seq > expectedSeq) {
      this.#bad = index === 0
        ? { tamper: 'OLDEST_DELETED', seq: expectedSeq, message: `the chain starts at seq ${event.seq}, not ${expectedSeq}, and no signed anchor says why` }
        : { tamper: 'DELETED', seq: expectedSeq, message: `seq ${expectedSeq} to ${event.seq - 1} are missing` };
    } else if (!event.prevHash.equals(this.#expectedPrev)) {
      // Where its link points: the earliest event with that hash, earlier ones first (an insertion), then itself, then later.
      const earlier = this.#linkedTo(event, index);
      if (earlier !== null) {
        // The events before this one are an unbroken run of seqs (the walk passed them), so the one after `earlier` is earlier + 1.
        this.#bad = { tamper: 'INSERTED', seq: earlier + 1, message: `seq ${earlier + 1} to ${event.seq - 1} stand between events that were hashed one after the other` };
      } else if (event.hash.equals(event.prevHash)) this.#bad = notAfter(event);
      else this.#unlinked = { event, previousSeq: this.#previousSeq };
    } else {
      this.#expectedSeq = event.seq + 1;
      this.#expectedPrev = event.hash;
      this.#previousSeq = event.seq;
    }
  }

  /** The first bad event, classified with what followed it; undefined when every event held. */
  end(): Bad | undefined {
    if (!this.#bad && this.#misplaced) this.#bad = this.#classifyMisplaced();
    if (!this.#bad && this.#unlinked) this.#bad = notAfter(this.#unlinked.event);
    return this.#bad;
  }

  #classifyMisplaced(): Bad {
    const { event, first, expectedSeq, after } = this.#misplaced!;
    this.#misplaced = undefined;
    return misplaced(event, first, expectedSeq, after);
  }
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

/**
 * An event whose hash is not its content's at its seq: edited, or moved by an insertion, deletion or reordering.
 * `first`: it is the first event kept; `after`: up to LOOKAHEAD events that follow it.
 */
function misplaced(event: ChainEvent, first: boolean, expectedSeq: number, after: readonly ChainEvent[]): Bad {
  const seq = Math.min(event.seq, expectedSeq);
  const offset = originalOffset(event);
  if (offset === undefined) {
    // Not hashed anywhere near: edited in place, or added, when the next event was hashed at this one's seq.
    const next = after[0];
    if (next && next.hashAs(event.seq).equals(next.hash)) {
      return { tamper: 'INSERTED', seq: event.seq, message: `the event at seq ${event.seq} was added: the next one was hashed at its seq` };
    }
    return { tamper: 'EDITED', seq: event.seq, message: `the event at seq ${event.seq} is not what was hashed` };
  }
  // Moved events all one way: a count changed before them. Both ways: the order changed.
  for (const other of after) {
    if (other.hashAs(other.seq).equals(other.hash)) continue;
    const otherOffset = originalOffset(other);
    if (otherOffset !== undefined && Math.sign(otherOffset) !== Math.sign(offset)) {
      return { tamper: 'REORDERED', seq, message: `the events at seq ${event.seq} and ${other.seq} were hashed in another order` };
    }
  }
  if (offset > 0) {
    return first
      ? { tamper: 'OLDEST_DELETED', seq: 1, message: `the first event kept was hashed as seq ${event.seq + offset}: older events were removed and the rest renumbered` }
      : { tamper: 'DELETED', seq, message: `the event at seq ${event.seq} was hashed as seq ${event.seq + offset}: events before it were removed and the rest renumbered` };
  }
  return { tamper: 'INSERTED', seq: Math.max(1, event.seq + offset), message: `the event at seq ${event.seq} was hashed as seq ${event.seq + offset}: events were added before it` };
}

/** An event hashed right at its seq that follows a later event (`linked`, whose hash its prev_hash names). */
function reordered(event: ChainEvent, previousSeq: number | undefined, linked: ChainEvent): Bad {
  return { tamper: 'REORDERED', seq: previousSeq ?? event.seq, message: `the event at seq ${event.seq} follows the one at seq ${linked.seq}` };
}

/** An event hashed right at its seq whose prev_hash names no other event of the chain. */
function notAfter(event: ChainEvent): Bad {
  return { tamper: 'EDITED', seq: Math.max(1, event.seq - 1), message: `the event before seq ${event.seq} is not the one it was hashed after` };
}

/** A chain consistent in itself, held against the signed checkpoints and the database's head. */
function against(
  seen: Seen,
  start: { seq: number; hash: Buffer },
  checkpoints: readonly SignedStatement[],
  head: { seq: number } | undefined,
  lastSeq: number,
): Bad | undefined {
  const checkpoint = checkpoints[0];
  const claimed = Math.max(checkpoint?.seq ?? 0, head?.seq ?? 0);
  const first = checkpoint?.first;
  const oldestChanged = first?.hash != null && first.seq === start.seq + 1 && seen.firstHash !== undefined && seen.firstHash.toString('hex') !== first.hash;
  if (claimed > lastSeq) {
    if (oldestChanged) return { tamper: 'OLDEST_DELETED', seq: first.seq, message: `fewer events than signed, and the oldest is not the one the checkpoint at seq ${checkpoint!.seq} saw` };
    const signed = checkpoint && checkpoint.seq > lastSeq ? `a signed checkpoint vouches for seq ${checkpoint.seq}` : `the chain head says ${claimed}`;
    return seen.count === 0
      ? { tamper: 'CHAIN_DELETED', seq: start.seq + 1, message: `no events are left after seq ${start.seq}, but ${signed}` }
      : { tamper: 'TRUNCATED', seq: lastSeq + 1, message: `the chain ends at seq ${lastSeq}, but ${signed}` };
  }
  if (!checkpoint) return undefined;
  // Every signed checkpoint must still hold, not only the newest: a chain rewritten and hashed again whose new
  // head the service was then made to sign agrees with that newest checkpoint, and with no older one.
  const holdsAt = (statement: SignedStatement) => seen.hashAtSigned.get(statement.seq)?.toString('hex') === statement.hash;
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
