// verifyAuditChain reads and verifies a tenant's chain a batch at a time
// (repo.ts READ_BATCH rows through the one statement's cursor): its memory is
// about one batch whatever the chain's length, and its answer is the one the
// whole chain held in memory gives, also for a tamper in a later batch or right
// at a batch boundary (the walk's place, a misplaced event's lookahead and a
// broken link's target carried from one batch to the next).
import v8 from 'node:v8';
import vm from 'node:vm';
import { beforeAll, describe, expect, it } from 'vitest';
import { tenantEventHash } from '../src/modules/audit-chain/chain.ts';
import type { AuditKey } from '../src/modules/audit-chain/keys.ts';
import { READ_BATCH, readTenantChain, readTenantChainBatches } from '../src/modules/audit-chain/repo.ts';
import { verifyChain, verifyChainBatches, type LinkedChainEvent, type TamperClass, type Verification } from '../src/modules/audit-chain/verify.ts';
import type { Sql } from '../src/db/pool.ts';
import type { TestApp, TestTenant } from './helpers/app.ts';
import { chainedTenant, rolledBack as rolledBackAs, tamper, tenantWithLongChain, useAuditTestService } from './helpers/audit.ts';
import type { TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let key: AuditKey;
let api: TestApp;
let tenants = 0;

beforeAll(async () => {
  ({ db, key, api } = await useAuditTestService(4));
});

const VERIFY = '{ verifyAuditChain { ok tamper firstBadSeq message events lastSeq unsignedEvents } }';
type Verified = { ok: boolean; tamper: TamperClass | null; firstBadSeq: number | null; message: string; events: number; lastSeq: number; unsignedEvents: number };

async function verifyThroughGraphQL(tenant: TestTenant): Promise<Verified> {
  const response = await api.request(VERIFY, { token: tenant.members.ADMIN.token });
  expect(response.body.errors).toBeUndefined();
  return response.body.data!.verifyAuditChain as Verified;
}

/** The same chain held whole in memory, on the owner connection: the answer the batched read must give. */
async function verifiedWhole(tenantId: string): Promise<Verified> {
  const result = await verifyChain((await readTenantChain(db.owner, tenantId, [], { rows: false })).input, key);
  return { ok: result.ok, tamper: result.tamper ?? null, firstBadSeq: result.firstBadSeq ?? null, message: result.message, events: result.events, lastSeq: result.lastSeq, unsignedEvents: result.unsignedEvents };
}

/** A tenant whose chain runs from seq 1 to `length` (test/helpers/audit.ts tenantWithLongChain). */
function longChainTenant(length: number, padBytes = 0): Promise<TestTenant> {
  return tenantWithLongChain(db.owner, key, `batches-${++tenants}`, length, padBytes);
}

/** The event at `seq` linked to the event at `to` and hashed again at its own seq: only its link is wrong. */
const relink = (seq: number, to: number) => `
  update app.audit_events e set prev_hash = p.hash,
    hash = app_private.audit_event_hash($1, e.seq, e.occurred_at, e.actor_kind, e.actor_user_id, e.actor_api_key_id, e.action,
                                        e.target_type, e.target_id, e.reason, e.details, e.request_id, p.hash)
  from app.audit_events p where e.tenant_id = $1 and e.seq = ${seq} and p.tenant_id = $1 and p.seq = ${to}`;

const B = READ_BATCH;
const LENGTH = 3 * B + 500;

type Case = { name: string; statements: string[]; tamper: TamperClass; firstBadSeq: number; message?: RegExp };

const CASES: Case[] = [
  { name: 'an event edited in a later batch', statements: [`update app.audit_events set details = '{"n": 0}' where tenant_id = $1 and seq = ${2 * B + 500}`], tamper: 'EDITED', firstBadSeq: 2 * B + 500 },
  { name: "an event edited at a batch's last seq", statements: [`update app.audit_events set details = '{"n": 0}' where tenant_id = $1 and seq = ${B}`], tamper: 'EDITED', firstBadSeq: B },
  { name: "an event edited at a batch's first seq", statements: [`update app.audit_events set details = '{"n": 0}' where tenant_id = $1 and seq = ${B + 1}`], tamper: 'EDITED', firstBadSeq: B + 1 },
  { name: "the event at a batch's first seq deleted", statements: [`delete from app.audit_events where tenant_id = $1 and seq = ${B + 1}`], tamper: 'DELETED', firstBadSeq: B + 1, message: new RegExp(`seq ${B + 1} to ${B + 1} are missing`) },
  {
    name: 'an event deleted and the later ones renumbered, the lookahead crossing a batch boundary',
    statements: [
      `delete from app.audit_events where tenant_id = $1 and seq = ${B - 2}`,
      `update app.audit_events set seq = -seq where tenant_id = $1 and seq > ${B - 2}`,
      'update app.audit_events set seq = -seq - 1 where tenant_id = $1 and seq < 0',
    ],
    tamper: 'DELETED',
    firstBadSeq: B - 2,
  },
  {
    name: 'the two events either side of a batch boundary swapped',
    statements: [
      `update app.audit_events set seq = -1 where tenant_id = $1 and seq = ${B}`,
      `update app.audit_events set seq = ${B} where tenant_id = $1 and seq = ${B + 1}`,
      `update app.audit_events set seq = ${B + 1} where tenant_id = $1 and seq = -1`,
    ],
    tamper: 'REORDERED',
    firstBadSeq: B,
  },
  {
    name: 'an event in a later batch linked back to an event batches earlier (events inserted between, as the walk sees it)',
    statements: [relink(2 * B + 500, 10)],
    tamper: 'INSERTED',
    firstBadSeq: 11,
    message: new RegExp(`seq 11 to ${2 * B + 499} stand between`),
  },
  {
    name: "the first event of a batch linked to an event of a later batch",
    statements: [relink(B + 1, 3 * B + 200)],
    tamper: 'REORDERED',
    firstBadSeq: B,
    message: new RegExp(`follows the one at seq ${3 * B + 200}`),
  },
  { name: 'the newest events of the last batch deleted', statements: [`delete from app.audit_events where tenant_id = $1 and seq > ${3 * B + 100}`], tamper: 'TRUNCATED', firstBadSeq: 3 * B + 101 },
];

const rolledBack = (attack: (tx: Sql) => Promise<void>) => rolledBackAs(db.owner, attack);

/** What verifyChain answers, as the GraphQL field shows it. */
const shown = (result: Verification): Verified => ({
  ok: result.ok,
  tamper: result.tamper ?? null,
  firstBadSeq: result.firstBadSeq ?? null,
  message: result.message,
  events: result.events,
  lastSeq: result.lastSeq,
  unsignedEvents: result.unsignedEvents,
});

describe(`a chain of ${LENGTH} events, read ${B} a batch`, () => {
  let long: TestTenant;
  beforeAll(async () => {
    long = await longChainTenant(LENGTH);
  });

  it('verifies intact through GraphQL, every event counted', async () => {
    const result = await verifyThroughGraphQL(long);
    expect(result).toMatchObject({ ok: true, tamper: null, events: LENGTH, lastSeq: LENGTH, unsignedEvents: 0 });
    expect(result).toEqual(await verifiedWhole(long.id));
  });

  // Each tamper in a transaction rolled back afterwards (one chain serves them all), read as verifyAuditChain reads it.
  it.each(CASES)('$name: caught, and answered as the whole chain is', async ({ statements, tamper: tamperClass, firstBadSeq, message }) => {
    await rolledBack(async (tx) => {
      for (const statement of statements) await tx.unsafe(statement, [long.id]);
      const batched = shown(await readTenantChainBatches(tx, long.id, [], {}, (input) => verifyChainBatches(input, key)));
      expect(batched, batched.message).toMatchObject({ ok: false, tamper: tamperClass, firstBadSeq });
      if (message) expect(batched.message).toMatch(message);
      expect(batched).toEqual(shown(await verifyChain((await readTenantChain(tx, long.id, [], { rows: false })).input, key)));
    });
  });

  // Through GraphQL (the request's transaction, RLS): a tamper whose lookahead, and one whose link, crosses batches.
  it.each(CASES.filter((c) => /swapped|linked back/.test(c.name)))('$name, through GraphQL', async ({ statements, tamper: tamperClass, firstBadSeq }) => {
    const tenant = await longChainTenant(LENGTH);
    await tamper(db.owner, tenant.id, statements);
    const result = await verifyThroughGraphQL(tenant);
    expect(result, result.message).toMatchObject({ ok: false, tamper: tamperClass, firstBadSeq });
    expect(result).toEqual(await verifiedWhole(tenant.id));
  });
});

describe('batches of every size give the answer of the whole chain', () => {
  const ATTACKS: Record<string, string[]> = {
    none: [],
    'edited at 7': [`update app.audit_events set details = '{"n": 99}' where tenant_id = $1 and seq = 7`],
    'deleted at 7': ['delete from app.audit_events where tenant_id = $1 and seq = 7'],
    'deleted at 4, renumbered': ['delete from app.audit_events where tenant_id = $1 and seq = 4', 'update app.audit_events set seq = -seq where tenant_id = $1 and seq > 4', 'update app.audit_events set seq = -seq - 1 where tenant_id = $1 and seq < 0'],
    'swapped 6 and 7': ['update app.audit_events set seq = -1 where tenant_id = $1 and seq = 6', 'update app.audit_events set seq = 6 where tenant_id = $1 and seq = 7', 'update app.audit_events set seq = 7 where tenant_id = $1 and seq = -1'],
    '9 linked to 2': [relink(9, 2)],
    '3 linked to 8': [relink(3, 8)],
    '1 linked to 5': [relink(1, 5)],
    'truncated after 8': ['delete from app.audit_events where tenant_id = $1 and seq > 8'],
  };

  it('every attack, in batches of 1 to 11 events', async () => {
    const tenant = await chainedTenant(db.owner, key, `batches-${++tenants}`);
    for (const [name, statements] of Object.entries(ATTACKS)) {
      await rolledBack(async (tx) => {
        for (const statement of statements) await tx.unsafe(statement, [tenant.id]);
        const whole = await verifyChain((await readTenantChain(tx, tenant.id)).input, key);
        if (name !== 'none') expect(whole.ok, name).toBe(false);
        for (let batch = 1; batch <= 11; batch++) {
          const batched = await readTenantChainBatches(tx, tenant.id, [], { batch }, (input) => verifyChainBatches(input, key));
          expect(batched, `${name}, batches of ${batch}`).toEqual(whole);
        }
      });
    }
  });
});

describe('memory of one batch', () => {
  // A full collection on demand (node --expose-gc, turned on from here), so what is measured is what is held.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;

  it('verifyChainBatches lets each batch go before it reads the one after next', async () => {
    const tenantId = '00000000-0000-4000-8000-000000000001';
    const alive: WeakRef<object>[][] = [];
    let prev: Buffer = Buffer.alloc(32);
    let seq = 0;
    const collectedWhenRead: number[] = [];
    async function* batches(): AsyncGenerator<LinkedChainEvent[]> {
      for (let b = 0; b < 12; b++) {
        await new Promise((resolve) => setImmediate(resolve)); // a new macrotask: WeakRefs made earlier may be cleared
        gc();
        if (b >= 2) collectedWhenRead.push(alive[b - 2]!.filter((ref) => ref.deref() === undefined).length);
        const batch: LinkedChainEvent[] = [];
        for (let i = 0; i < 100; i++) {
          const fields = { seq: String(++seq), occurredAt: '2026-12-01T00:00:00.000000Z', actorKind: 'system', actorUserId: null, actorApiKeyId: null, action: 'test.batch', targetType: 'thing', targetId: String(seq), reason: null, details: '{}', requestId: null };
          const prevHash = prev;
          const hash = tenantEventHash(tenantId, fields, prevHash);
          batch.push({ seq, prevHash, hash, linkedTo: null, hashAs: (at: number) => tenantEventHash(tenantId, { ...fields, seq: String(at) }, prevHash) });
          prev = hash;
        }
        alive.push(batch.map((event) => new WeakRef(event)));
        yield batch;
      }
    }
    const result: Verification = await verifyChainBatches({ chain: `tenant:${tenantId}`, statements: [], batches: batches() }, key);
    expect(result).toMatchObject({ ok: true, events: 1200, lastSeq: 1200 });
    // Every event of the batch before last is gone when a batch is read: nothing holds the events already walked.
    expect(collectedWhenRead).toEqual(Array.from({ length: 10 }, () => 100));
  });

  it("verifyAuditChain of a chain far larger than a batch holds about a batch: its heap grows by a fraction of the chain's text", async () => {
    const events = 16 * B;
    const tenant = await longChainTenant(events, 2048);
    const [row] = await db.owner<{ bytes: number }[]>`select sum(octet_length(details::text))::int as bytes from app.audit_events where tenant_id = ${tenant.id}`;
    const bytes = row!.bytes;
    expect(bytes).toBeGreaterThan(32e6); // held whole, the events' encodings alone would take this much
    gc();
    const baseline = process.memoryUsage().heapUsed;
    let peak = 0;
    const sample = () => {
      gc();
      peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
    };
    const sampler = setInterval(sample, 250); // a full collection stops the event loop: not too often, or the request misses its deadline
    try {
      const result = await verifyThroughGraphQL(tenant);
      expect(result).toMatchObject({ ok: true, events, lastSeq: events });
    } finally {
      clearInterval(sampler);
    }
    // About three batches' worth at most (a batch's rows, their encodings, the next rows arriving): ~2 MB of details each.
    expect(peak, `the heap grew by up to ${Math.round(peak / 1e6)} MB while verifying ${Math.round(bytes / 1e6)} MB of events`).toBeLessThan(bytes / 2);
  }, 60_000);
});
