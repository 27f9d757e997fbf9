// The audit chain against a database superuser: each tamper class done with
// plain SQL on the owner connection (triggers off, as a DBA would), then
// verifyAuditChain through GraphQL must say which event went wrong and how,
// also when the attacker recomputed every hash (they cannot sign). A
// legitimate retention purge verifies clean; 20 concurrent writers never fork
// the chain or leave a gap; the tamper window is what the README says.
import postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { auditKeyFromPem, generateAuditKeyPem, type AuditKey } from '../src/modules/audit-chain/keys.ts';
import { readTenantChain } from '../src/modules/audit-chain/repo.ts';
import { purgeExpired, signCheckpoints, type RefusedCheckpoint } from '../src/modules/audit-chain/signing.ts';
import { verifyChain, type TamperClass } from '../src/modules/audit-chain/verify.ts';
import { codes, createTestTenant, type TestApp, type TestTenant } from './helpers/app.ts';
import { auditHeadSeq, chainedTenant as chainedTenantOf, recordAuditEvent, rehashChain, tamper, useAuditTestService } from './helpers/audit.ts';
import type { TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let key: AuditKey;
let api: TestApp;
let tenants = 0;

beforeAll(async () => {
  ({ db, key, api } = await useAuditTestService(20));
});

const VERIFY = `query($checkpoint: String) {
  verifyAuditChain(checkpoint: $checkpoint) { ok tamper firstBadSeq message events lastSeq anchorSeq checkpointSeq unsignedEvents signed }
}`;

type Verified = { ok: boolean; tamper: TamperClass | null; firstBadSeq: number | null; message: string; events: number; lastSeq: number; anchorSeq: number; checkpointSeq: number | null; unsignedEvents: number; signed: boolean };

async function verify(tenant: TestTenant, checkpoint?: string): Promise<Verified> {
  const response = await api.request(VERIFY, { token: tenant.members.ADMIN.token, variables: { checkpoint } });
  expect(response.body.errors).toBeUndefined();
  return response.body.data!.verifyAuditChain as Verified;
}

const record = (tenantId: string, n: number) => recordAuditEvent(db.owner, tenantId, n, `req-${n}`);
const headSeq = (tenantId: string) => auditHeadSeq(db.owner, tenantId);
const rehash = (tenantId: string) => rehashChain(db.owner, tenantId);

/** A tenant whose chain holds seq 1..10, signed at 5 and at 10. */
async function chainedTenant(): Promise<TestTenant> {
  const tenant = await chainedTenantOf(db.owner, key, `chain-${++tenants}`, { requestIds: true });
  expect(await headSeq(tenant.id)).toBe(10);
  return tenant;
}

const FORGED_EVENT_AT_7 = `insert into app.audit_events (tenant_id, seq, prev_hash, hash, occurred_at, actor_kind, action, target_type, target_id, details)
  select $1, 7, p.hash, app_private.audit_event_hash($1, 7, p.occurred_at, 'system', null, null, 'test.forged', 'thing', 'x', null, '{}', null, p.hash),
         p.occurred_at, 'system', 'test.forged', 'thing', 'x', '{}'
  from app.audit_events p where p.tenant_id = $1 and p.seq = 6`;

type Case = { name: string; statements: string[]; tamper: TamperClass; firstBadSeq: number };

const CASES: Case[] = [
  { name: 'an edited event', statements: [`update app.audit_events set details = '{"n": 99}' where tenant_id = $1 and seq = 7`], tamper: 'EDITED', firstBadSeq: 7 },
  { name: 'an edited hash', statements: [`update app.audit_events set hash = sha256('x') where tenant_id = $1 and seq = 7`], tamper: 'EDITED', firstBadSeq: 7 },
  {
    name: 'an inserted event (later ones renumbered)',
    statements: [
      'update app.audit_events set seq = -seq where tenant_id = $1 and seq >= 7',
      'update app.audit_events set seq = -seq + 1 where tenant_id = $1 and seq < 0',
      FORGED_EVENT_AT_7,
    ],
    tamper: 'INSERTED',
    firstBadSeq: 7,
  },
  {
    name: 'reordered events',
    statements: [
      'update app.audit_events set seq = -1 where tenant_id = $1 and seq = 7',
      'update app.audit_events set seq = 7 where tenant_id = $1 and seq = 8',
      'update app.audit_events set seq = 8 where tenant_id = $1 and seq = -1',
    ],
    tamper: 'REORDERED',
    firstBadSeq: 7,
  },
  { name: 'an interior deletion', statements: ['delete from app.audit_events where tenant_id = $1 and seq = 7'], tamper: 'DELETED', firstBadSeq: 7 },
  {
    name: 'an interior deletion (later ones renumbered)',
    // Renumbered through negative numbers, like the insertion above: in one `seq = seq - 1` the unique (tenant_id, seq)
    // is checked row by row, so it fails whenever the heap yields a later row first.
    statements: [
      'delete from app.audit_events where tenant_id = $1 and seq = 7',
      'update app.audit_events set seq = -seq where tenant_id = $1 and seq > 7',
      'update app.audit_events set seq = -seq - 1 where tenant_id = $1 and seq < 0',
    ],
    tamper: 'DELETED',
    firstBadSeq: 7,
  },
  { name: 'deletion of the oldest events', statements: ['delete from app.audit_events where tenant_id = $1 and seq <= 3'], tamper: 'OLDEST_DELETED', firstBadSeq: 1 },
  {
    name: 'deletion of the oldest events (the rest renumbered)',
    statements: [
      'delete from app.audit_events where tenant_id = $1 and seq <= 3',
      'update app.audit_events set seq = -seq where tenant_id = $1',
      'update app.audit_events set seq = -seq - 3 where tenant_id = $1 and seq < 0',
    ],
    tamper: 'OLDEST_DELETED',
    firstBadSeq: 1,
  },
  { name: 'truncation of the newest events', statements: ['delete from app.audit_events where tenant_id = $1 and seq >= 9'], tamper: 'TRUNCATED', firstBadSeq: 9 },
  {
    name: 'truncation of the newest events (the head set back)',
    statements: [
      'delete from app.audit_events where tenant_id = $1 and seq >= 9',
      'update app.audit_chain_heads h set seq = 8, hash = e.hash from app.audit_events e where h.tenant_id = $1 and e.tenant_id = $1 and e.seq = 8',
    ],
    tamper: 'TRUNCATED',
    firstBadSeq: 9,
  },
  { name: 'deletion of the whole chain', statements: ['delete from app.audit_events where tenant_id = $1'], tamper: 'CHAIN_DELETED', firstBadSeq: 1 },
  {
    name: 'deletion of the whole chain and its head',
    statements: ['delete from app.audit_events where tenant_id = $1', 'delete from app.audit_chain_heads where tenant_id = $1'],
    tamper: 'CHAIN_DELETED',
    firstBadSeq: 1,
  },
];

describe('each tamper class, done with plain SQL as a superuser, is caught by verifyAuditChain', () => {
  it('an untouched chain verifies, signed through its newest checkpoint', async () => {
    const tenant = await chainedTenant();
    expect(await verify(tenant)).toMatchObject({ ok: true, tamper: null, firstBadSeq: null, events: 10, lastSeq: 10, anchorSeq: 0, checkpointSeq: 10, unsignedEvents: 0, signed: true });
    await record(tenant.id, 11);
    expect(await verify(tenant)).toMatchObject({ ok: true, lastSeq: 11, checkpointSeq: 10, unsignedEvents: 1 });
  });

  it('the service computes the hash the database wrote, whatever the text: quotes, escapes, control characters, emoji', async () => {
    const tenant = await createTestTenant(db.owner, `chain-${++tenants}`);
    const nasty = `quote" back\\ new\nline tab\t bell\u0007 nul-less é 😀 \u2028 </script>`;
    await db.owner.begin(async (tx) => {
      await tx`select set_config('app.request_id', ${`req:${nasty.slice(0, 20)}`}, true)`;
      await tx`select app_private.record_audit(${tenant.id}, ${`test.${nasty}`}, 'thing', ${nasty}, ${JSON.stringify({ [nasty]: [nasty, 1.5, null, true] })}::jsonb, ${nasty})`;
    });
    await signCheckpoints(db.owner, key);
    expect(await verify(tenant)).toMatchObject({ ok: true, unsignedEvents: 0 });
  });

  it.each(CASES)('$name', async ({ statements, tamper: expected, firstBadSeq }) => {
    const tenant = await chainedTenant();
    await tamper(db.owner, tenant.id, statements);
    const result = await verify(tenant);
    expect(result, result.message).toMatchObject({ ok: false, tamper: expected, firstBadSeq });
  });

  // Recomputed hashes leave only the signed checkpoints (and what the seqs show) to compare with: the class
  // is what is left to see (a rewritten stretch reads as EDITED), the first bad seq at most the checkpoint's.
  const REHASHED: Record<string, [TamperClass, number]> = {
    'an edited event': ['EDITED', 6],
    'an inserted event (later ones renumbered)': ['EDITED', 6],
    'reordered events': ['EDITED', 6],
    'an interior deletion': ['DELETED', 7],
    'an interior deletion (later ones renumbered)': ['TRUNCATED', 10],
    'deletion of the oldest events': ['OLDEST_DELETED', 1],
    'deletion of the oldest events (the rest renumbered)': ['OLDEST_DELETED', 1],
    'truncation of the newest events': ['TRUNCATED', 9],
    'truncation of the newest events (the head set back)': ['TRUNCATED', 9],
  };
  it.each(CASES.filter((c) => c.name in REHASHED))('$name, every hash recomputed afterwards', async ({ name, statements }) => {
    const tenant = await chainedTenant();
    await tamper(db.owner, tenant.id, statements);
    await rehash(tenant.id);
    const [tamperClass, firstBadSeq] = REHASHED[name]!;
    const result = await verify(tenant);
    expect(result, result.message).toMatchObject({ ok: false, tamper: tamperClass, firstBadSeq });
  });

  it('an edited hash, every hash recomputed afterwards, is the original chain again', async () => {
    const tenant = await chainedTenant();
    await tamper(db.owner, tenant.id, [`update app.audit_events set hash = sha256('x') where tenant_id = $1 and seq = 7`]);
    await rehash(tenant.id);
    expect(await verify(tenant)).toMatchObject({ ok: true, events: 10 });
  });

  it('the whole chain deleted with its checkpoints and head: caught by a checkpoint kept outside the database', async () => {
    const tenant = await chainedTenant();
    const [exported] = await db.owner<{ jws: string }[]>`
      select jws from app.audit_checkpoints where tenant_id = ${tenant.id} and kind = 'checkpoint' order by seq desc limit 1`;
    await tamper(db.owner, tenant.id, [
      'delete from app.audit_events where tenant_id = $1',
      'delete from app.audit_checkpoints where tenant_id = $1',
      'delete from app.audit_chain_heads where tenant_id = $1',
    ]);
    // Nothing is left in the database to compare with: an empty chain looks like a new tenant's.
    expect(await verify(tenant)).toMatchObject({ ok: true, events: 0 });
    expect(await verify(tenant, exported!.jws)).toMatchObject({ ok: false, tamper: 'CHAIN_DELETED', firstBadSeq: 1 });
  });

  it('a rewritten chain with a checkpoint the attacker signed with their own key: FORGED_CHECKPOINT', async () => {
    const tenant = await chainedTenant();
    await tamper(db.owner, tenant.id, [`update app.audit_events set details = '{"n": 99}' where tenant_id = $1 and seq = 7`]);
    await rehash(tenant.id);
    const theirs = await auditKeyFromPem(generateAuditKeyPem());
    const [head] = await db.owner<{ hash: Buffer }[]>`select hash from app.audit_chain_heads where tenant_id = ${tenant.id}`;
    const forged = await theirs.sign({ typ: 'checkpoint', chain: `tenant:${tenant.id}`, seq: 10, hash: head!.hash.toString('hex'), at: new Date().toISOString() });
    await tamper(db.owner, tenant.id, [
      `insert into app.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, jws)
       select $1, 'checkpoint', 11, hash, now(), 'theirs', '${forged}' from app.audit_chain_heads where tenant_id = $1`,
    ]);
    expect(await verify(tenant)).toMatchObject({ ok: false, tamper: 'FORGED_CHECKPOINT' });
  });

  it("another tenant's genuine checkpoint copied in: FORGED_CHECKPOINT", async () => {
    const [mine, other] = [await chainedTenant(), await chainedTenant()];
    await tamper(db.owner, mine.id, [
      `insert into app.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, jws)
       select $1, kind, seq + 100, hash, signed_at, key_id, jws from app.audit_checkpoints where tenant_id = '${other.id}' and seq = 10`,
    ]);
    expect(await verify(mine)).toMatchObject({ ok: false, tamper: 'FORGED_CHECKPOINT' });
  });

  it('the service refuses to sign a chain that no longer holds its newest checkpoint', async () => {
    const tenant = await chainedTenant();
    await tamper(db.owner, tenant.id, [`update app.audit_events set details = '{"n": 99}' where tenant_id = $1 and seq = 7`]);
    await rehash(tenant.id);
    await record(tenant.id, 11);
    const refused: RefusedCheckpoint[] = [];
    const signed = await signCheckpoints(db.owner, key, 1000, refused);
    // (Chains tampered with by earlier tests that got no write since are not due; those that did are refused too.)
    expect(refused.filter((chain) => chain.chain === `tenant:${tenant.id}`)).toEqual([
      { chain: `tenant:${tenant.id}`, seq: 11, reason: 'the event at seq 10 is not the one its newest checkpoint signed' },
    ]);
    expect(signed.map((checkpoint) => checkpoint.chain)).not.toContain(`tenant:${tenant.id}`);
    expect(await verify(tenant)).toMatchObject({ ok: false, tamper: 'EDITED', firstBadSeq: 6, checkpointSeq: 10 });
  });

  it('the tamper window: events newer than the newest checkpoint can be removed unnoticed by a DBA who also sets the head back', async () => {
    const tenant = await chainedTenant();
    await record(tenant.id, 11);
    await record(tenant.id, 12);
    expect(await verify(tenant)).toMatchObject({ ok: true, lastSeq: 12, unsignedEvents: 2 });
    await tamper(db.owner, tenant.id, [
      'delete from app.audit_events where tenant_id = $1 and seq > 10',
      'update app.audit_chain_heads h set seq = 10, hash = e.hash from app.audit_events e where h.tenant_id = $1 and e.tenant_id = $1 and e.seq = 10',
    ]);
    expect(await verify(tenant)).toMatchObject({ ok: true, lastSeq: 10, unsignedEvents: 0 });
  });
});

describe('retention', () => {
  it('a purge in batches under signed anchors verifies clean; removing its anchor or more events does not', async () => {
    // A tenant whose oldest events are past retention (written behind the API with their old times).
    const old = await db.owner<{ id: string }[]>`insert into app.tenants (slug, name) values ('retained-old', 'Old') returning id`;
    const tenantId = old[0]!.id;
    await db.owner`
      insert into app.audit_events (tenant_id, occurred_at, actor_kind, action, target_type, target_id, details)
      select ${tenantId}, now() - interval '200 days' + n * interval '1 minute', 'system', 'test.old', 'thing', n::text, '{}'
      from generate_series(1, 25) n`;
    for (let n = 26; n <= 28; n++) await record(tenantId, n);
    await db.owner`update app.tenants set audit_retention_days = 90 where id = ${tenantId}`;
    await signCheckpoints(db.owner, key);

    const verifyOld = async () => verifyChain((await readTenantChain(db.owner, tenantId)).input, key);
    const batches: number[] = [];
    for (let round = 0; round < 4; round++) {
      for (const batch of await purgeExpired(db.owner, key, 10)) if (batch.tenantId === tenantId) batches.push(batch.events);
      expect(await verifyOld()).toMatchObject({ ok: true });
    }
    expect(batches).toEqual([10, 10, 5]); // the young events stay
    expect(await verifyOld()).toMatchObject({ ok: true, anchorSeq: 25, events: 3, lastSeq: 28, checkpoint: { seq: 28 } });
    expect(await db.owner`select seq from app.audit_checkpoints where tenant_id = ${tenantId} and kind = 'anchor'`).toEqual([{ seq: '25' }]);

    // A superuser removing the anchor, or one more event, is not retention.
    await db.owner.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`delete from app.audit_events where tenant_id = ${tenantId} and seq = 26`;
      expect(await verifyChain((await readTenantChain(tx, tenantId)).input, key)).toMatchObject({ ok: false, tamper: 'OLDEST_DELETED', firstBadSeq: 26 });
      await tx`rollback and chain`;
    });
    await db.owner.begin(async (tx) => {
      await tx`delete from app.audit_checkpoints where tenant_id = ${tenantId} and kind = 'anchor'`;
      expect(await verifyChain((await readTenantChain(tx, tenantId)).input, key)).toMatchObject({ ok: false, tamper: 'OLDEST_DELETED', firstBadSeq: 1 });
      await tx`rollback and chain`;
    });
    expect(await verifyOld()).toMatchObject({ ok: true });
  });

  it('the floor: retention under 90 days is refused; the purge refuses events still within retention', async () => {
    const tenant = await chainedTenant();
    await expect(db.owner`update app.tenants set audit_retention_days = 30 where id = ${tenant.id}`).rejects.toThrow(/tenants_audit_retention_floor/);
    await db.owner`update app.tenants set audit_retention_days = 90 where id = ${tenant.id}`;
    const [event] = await db.owner<{ hash: Buffer }[]>`select hash from app.audit_events where tenant_id = ${tenant.id} and seq = 5`;
    const app = postgres(db.appUrl, { max: 1, onnotice: () => {} });
    try {
      await expect(app`select app_private.purge_audit_events(${tenant.id}, 5, ${event!.hash}, now(), 'k', 'a.b.c')`).rejects.toThrow(/not all past the tenant's retention/);
    } finally {
      await app.end();
    }
    expect(await verify(tenant)).toMatchObject({ ok: true, events: 10 });
  });
});

describe('concurrent writers', () => {
  it('20 clients of one tenant creating agents at once: one chain, no fork, no gap', async () => {
    const tenant = await createTestTenant(db.owner, 'busy');
    const before = await headSeq(tenant.id);
    const clients = Array.from({ length: 20 }, (_, client) => async () => {
      for (let n = 0; n < 5; n++) {
        const response = await api.request(`mutation($name: String!) { createAgent(input: { name: $name, kind: "assistant" }) { agent { id } } }`, {
          token: tenant.members.MEMBER.token,
          variables: { name: `agent ${client}-${n}` },
        });
        expect(codes(response)).toEqual([]);
      }
    });
    await Promise.all(clients.map((client) => client()));
    const [chain] = await db.owner<{ events: number; seqs: number; prevs: number; first: string; last: string; requests: number }[]>`
      select count(*)::int as events, count(distinct seq)::int as seqs, count(distinct prev_hash)::int as prevs,
             min(seq)::text as first, max(seq)::text as last, count(distinct request_id)::int as requests
      from app.audit_events where tenant_id = ${tenant.id}`;
    expect(chain!.events).toBe(before + 100);
    expect(chain).toMatchObject({ seqs: chain!.events, prevs: chain!.events, first: '1', last: String(chain!.events) });
    await signCheckpoints(db.owner, key);
    expect(await verify(tenant)).toMatchObject({ ok: true, events: before + 100, unsignedEvents: 0 });
  });

  it('20 transactions appending at once, each holding its turn a moment: the chain stays whole', async () => {
    const tenant = await createTestTenant(db.owner, 'racing');
    const owners = postgres(db.ownerUrl, { max: 20, onnotice: () => {} });
    try {
      await Promise.all(
        Array.from({ length: 20 }, (_, n) =>
          owners.begin(async (tx) => {
            await tx`select app_private.record_audit(${tenant.id}, 'test.race', 'thing', ${String(n)}, '{}')`;
            await tx`select pg_sleep(0.01)`;
            await tx`select app_private.record_audit(${tenant.id}, 'test.race', 'thing', ${String(n)}, '{"second": true}')`;
          }),
        ),
      );
    } finally {
      await owners.end();
    }
    const result = await verifyChain((await readTenantChain(db.owner, tenant.id)).input, key);
    expect(result).toMatchObject({ ok: true, lastSeq: result.events });
    // One transaction's two events are neighbours: the head's lock is held to commit.
    const rows = await db.owner<{ target_id: string }[]>`select target_id from app.audit_events where tenant_id = ${tenant.id} and action = 'test.race' order by seq`;
    for (let i = 0; i < rows.length; i += 2) expect(rows[i]!.target_id).toBe(rows[i + 1]!.target_id);
  });
});

describe('who may verify', () => {
  it('ADMIN only; each tenant verifies its own chain', async () => {
    const [a, b] = [await chainedTenant(), await chainedTenant()];
    for (const role of ['LEAD', 'MEMBER', 'VIEWER'] as const) {
      expect(codes(await api.request(VERIFY, { token: a.members[role].token }))).toEqual(['FORBIDDEN']);
    }
    await tamper(db.owner, b.id, ['delete from app.audit_events where tenant_id = $1 and seq = 3']);
    expect(await verify(a)).toMatchObject({ ok: true, events: 10 });
    expect(await verify(b)).toMatchObject({ ok: false, tamper: 'DELETED', firstBadSeq: 3 });
  });

  it('a checkpoint argument that is no JWS is BAD_USER_INPUT', async () => {
    const tenant = await chainedTenant();
    const response = await api.request(VERIFY, { token: tenant.members.ADMIN.token, variables: { checkpoint: 'x'.repeat(5000) } });
    expect(codes(response)).toEqual(['BAD_USER_INPUT']);
    const garbage = await api.request(VERIFY, { token: tenant.members.ADMIN.token, variables: { checkpoint: 'a.b.c' } });
    expect(garbage.body.data?.verifyAuditChain).toMatchObject({ ok: false, tamper: 'FORGED_CHECKPOINT' });
  });
});
