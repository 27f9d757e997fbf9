// Two service replicas on one database, behind nothing but their own ports:
// each its own app, pool and fair-share guard (one straight to PostgreSQL, one
// through PgBouncer, as a rolling migration to a pooler would run). What must
// hold across processes holds across them: a quota under parallel requests to
// both, a tenant's request rate (the token buckets live in PostgreSQL), a
// revocation on one refused by the other on its very next request, live events
// of a write through one heard by subscribers of both (each replica's event hub
// on its own direct connection, the requests through PgBouncer on one), and one
// tenant's audit chain written through both while both sign checkpoints.
import { beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Sql } from '../src/db/pool.ts';
import { auditKeyFromPem, generateAuditKeyPem, type AuditKey } from '../src/modules/audit-chain/keys.ts';
import { readTenantChain } from '../src/modules/audit-chain/repo.ts';
import { signCheckpoints } from '../src/modules/audit-chain/signing.ts';
import { verifyChain } from '../src/modules/audit-chain/verify.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { codes, createTestApp, createTestTenant, insertAgents, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { TEST_FAIR_SHARE, setRequestRates } from './helpers/fair-share.ts';
import { sse, startLiveServer, wsConnect, type LiveResult, type LiveServer, type Received } from './helpers/live.ts';
import { startPgBouncer } from './helpers/pgbouncer.ts';
import { createFairShareGuard, type FairShareGuard } from '../src/tenancy/fair-share.ts';

let db: TestDatabase;
let replicas: [TestApp, TestApp];
let guards: FairShareGuard[];
/** Each replica's request pool: [0] straight to PostgreSQL, [1] through PgBouncer (transaction mode, `prepare: false`). */
let pools: [Sql, Sql];
let key: AuditKey;

beforeAll(async () => {
  db = await useTestDatabase();
  key = await auditKeyFromPem(generateAuditKeyPem());
  const bouncer = await startPgBouncer({ poolSize: 4 });
  const through = (max: number) => createPool(bouncer.url(db.appUrl), { max, prepare: false });
  pools = [db.appPool(6), through(6)];
  guards = [createFairShareGuard(db.appPool(1), TEST_FAIR_SHARE), createFairShareGuard(through(1), TEST_FAIR_SHARE)];
  replicas = [createTestApp(pools[0], { guards: [guards[0]!], audit: { key } }), createTestApp(pools[1], { guards: [guards[1]!], audit: { key } })];
  expect(await replicas[0].origin()).not.toBe(await replicas[1].origin());
  return async () => {
    await Promise.all(guards.map((guard) => guard.close()));
    await pools[1].end({ timeout: 5 });
    await bouncer.stop();
  };
});

const START = 'mutation($agentId: ID!) { startSession(input: { agentId: $agentId }) { session { id } } }';
const VIEWER = '{ viewer { role } }';
/** Request i goes to replica i % 2. */
const on = (i: number) => replicas[i % 2]!;

describe('quotas', () => {
  let tenant: TestTenant;
  let agentId: string;

  beforeAll(async () => {
    tenant = await createTestTenant(db.owner, 'replica-quota', 'free');
    const [agent] = await insertAgents(db.owner, tenant.id, tenant.members.MEMBER.userId, ['replicated']);
    agentId = encodeGlobalId('Agent', agent!);
    await db.owner`update app.quotas set limit_override = 5 where tenant_id = ${tenant.id} and quota = 'active_sessions'`;
    await setRequestRates(db.owner, tenant.id, { perMinute: 60_000 }); // 120 requests in a few seconds: the quota is under test, not the free plan's request rate
  });

  it('40 parallel startSession split over both replicas against a limit of 5: exactly 5 succeed, in every round', async () => {
    for (let round = 0; round < 3; round++) {
      const responses = await Promise.all(
        Array.from({ length: 40 }, (_, i) => on(i).request(START, { token: tenant.members.MEMBER.token, variables: { agentId } })),
      );
      const started = (response: GraphQLResponse) => Boolean((response.body.data as { startSession?: unknown } | null)?.startSession);
      const succeeded = responses.filter(started).length;
      const refused = responses.filter((response) => codes(response)[0] === 'QUOTA_EXCEEDED').length;
      const other = responses.filter((response) => !started(response) && codes(response)[0] !== 'QUOTA_EXCEEDED').map((response) => codes(response)[0]);
      expect([succeeded, refused, other], `round ${round}`).toEqual([5, 35, []]);
      const [active] = await db.owner<{ n: number }[]>`select count(*)::int as n from app.sessions where tenant_id = ${tenant.id} and status = 'active'`;
      expect(active!.n).toBe(5);
      await db.owner`update app.sessions set status = 'completed', ended_at = now() where tenant_id = ${tenant.id} and status = 'active'`;
    }
  });
});

describe('request rates', () => {
  it("one tenant's bucket is shared: alternating over both replicas admits about one bucket, not one per replica", async () => {
    const tenant = await createTestTenant(db.owner, 'replica-rate', 'free');
    await setRequestRates(db.owner, tenant.id, { perMinute: 36 }); // a bucket of 6, one more every 10 s
    const token = tenant.members.MEMBER.token;
    // First use places the credentials in their tenant (not counted yet), on each replica.
    for (const replica of replicas) await replica.request(VIEWER, { token });
    await Promise.all(guards.map((guard) => guard.settled()));
    const statuses: number[] = [];
    for (let i = 0; i < 24; i++) statuses.push((await on(i).request(VIEWER, { token })).status);
    const admitted = statuses.filter((status) => status === 200).length;
    console.info(`replicas: ${admitted} of 24 admitted against a shared bucket of 6`);
    // Per-replica buckets would admit 12; a shared bucket of 6 admits at most that plus a lease's slack.
    expect(admitted).toBeGreaterThanOrEqual(4);
    expect(admitted).toBeLessThanOrEqual(8);
    expect(statuses.filter((status, i) => status === 429 && i % 2 === 0).length).toBeGreaterThan(0);
    expect(statuses.filter((status, i) => status === 429 && i % 2 === 1).length).toBeGreaterThan(0);
  });
});

describe('revocation', () => {
  let tenant: TestTenant;

  beforeAll(async () => {
    tenant = await createTestTenant(db.owner, 'replica-revoke', 'enterprise');
  });

  it('a member removed on one replica is refused by the other on its next request', async () => {
    const member = tenant.members.MEMBER;
    for (const replica of replicas) expect((await replica.request(VIEWER, { token: member.token })).status).toBe(200);
    const removed = await replicas[0].request('mutation($user: ID!) { removeMember(input: { userId: $user }) { removedUserId } }', {
      token: tenant.members.ADMIN.token,
      variables: { user: member.userId },
    });
    expect(removed.body.errors).toBeUndefined();
    const after = await replicas[1].request(VIEWER, { token: member.token });
    expect([after.status, codes(after)]).toEqual([403, ['TENANT_NOT_FOUND']]);
    expect(codes(await replicas[0].request(VIEWER, { token: member.token }))).toEqual(['TENANT_NOT_FOUND']);
  });

  it('an API key revoked on one replica is refused by the other on its next request', async () => {
    const created = await replicas[1].request('mutation { createApiKey(input: { name: "replicated", role: VIEWER }) { secret apiKey { id } } }', {
      token: tenant.members.ADMIN.token,
    });
    const { secret, apiKey } = (created.body.data as { createApiKey: { secret: string; apiKey: { id: string } } }).createApiKey;
    for (const replica of replicas) expect((await replica.request(VIEWER, { headers: { 'x-api-key': secret } })).status).toBe(200);
    const revoked = await replicas[1].request('mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { revokedAt } } }', {
      token: tenant.members.ADMIN.token,
      variables: { id: apiKey.id },
    });
    expect(revoked.body.errors).toBeUndefined();
    const after = await replicas[0].request(VIEWER, { headers: { 'x-api-key': secret } });
    expect([after.status, codes(after)]).toEqual([401, ['UNAUTHENTICATED']]);
  });
});

describe('live events', () => {
  let live: LiveServer[];
  let tenant: TestTenant;
  let session: string;

  beforeAll(async () => {
    tenant = await createTestTenant(db.owner, 'replica-events', 'enterprise');
    const [agent] = await insertAgents(db.owner, tenant.id, tenant.members.MEMBER.userId, ['live']);
    [{ id: session }] = await db.owner<[{ id: string }]>`insert into app.sessions (tenant_id, agent_id) values (${tenant.id}, ${agent!}) returning id`;
    // Each replica with its event hub (LISTEN on its own direct connection); subscribers re-read rows through its request pool.
    live = await Promise.all(pools.map((pool) => startLiveServer(pool, db.appUrl)));
    return () => Promise.all(live.map((server) => server.close()));
  });

  const ACTIVITY = 'subscription($id: ID!) { sessionActivity(sessionId: $id) { kind id node { ... on Task { title } } } }';
  const titles = (results: LiveResult[]) =>
    results.map((result) => (result.data?.sessionActivity as { node?: { title?: string } | null } | undefined)?.node?.title).filter(Boolean);

  /** Marker tasks (written behind the service) until the stream hears one: a WebSocket subscribe is not acknowledged. */
  async function flowing(stream: Received): Promise<void> {
    for (let attempt = 0; attempt < 40; attempt++) {
      const title = `marker ${attempt}`;
      await db.owner`insert into app.tasks (tenant_id, session_id, title) values (${tenant.id}, ${session}, ${title})`;
      if (await stream.until((results) => titles(results).includes(title), 300).then(() => true, () => false)) return;
    }
    throw new Error('the subscription never started');
  }

  it('a write through either replica reaches subscribers of both, over SSE and WebSocket, the rows re-read through PgBouncer on one', async () => {
    const variables = { id: encodeGlobalId('Session', session) };
    const headers = { authorization: `Bearer ${tenant.members.VIEWER.token}` };
    const socket = await wsConnect(live[0]!.origin);
    await socket.init(headers);
    const streams: Received[] = [await sse(live[1]!.origin, ACTIVITY, { headers, variables }), socket.subscribe(ACTIVITY, variables)];
    try {
      await Promise.all(streams.map(flowing));
      for (const [i, replica] of replicas.entries()) {
        const created = await replica.request('mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id } } }', {
          token: tenant.members.MEMBER.token,
          variables: { input: { sessionId: encodeGlobalId('Session', session), title: `through replica ${i}` } },
        });
        expect(codes(created)).toEqual([]);
      }
      for (const stream of streams) {
        await stream.until((results) => ['through replica 0', 'through replica 1'].every((title) => titles(results).includes(title)));
        expect(stream.results.flatMap((result) => result.errors ?? [])).toEqual([]);
      }
    } finally {
      for (const stream of streams) stream.close();
    }
  });
});

describe('audit chains', () => {
  it("one tenant written through both replicas at once while both sign checkpoints: one chain, gapless, signed, verified by either", async () => {
    const tenant = await createTestTenant(db.owner, 'replica-audit', 'enterprise');
    const failures: unknown[] = [];
    let writing = true;
    // Each replica's checkpoint sweep on its own pool (the service's runs every AUDIT_CHECKPOINT_INTERVAL), back to back.
    const sweeping = pools.map(async (pool) => {
      while (writing) await signCheckpoints(pool, key).catch((error: unknown) => failures.push(error));
    });
    try {
      const responses = await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          on(i).request('mutation($name: String!) { createAgent(input: { name: $name, kind: "assistant" }) { agent { id } } }', {
            token: tenant.members.MEMBER.token,
            variables: { name: `audited ${i}` },
          }),
        ),
      );
      expect(responses.flatMap(codes)).toEqual([]);
    } finally {
      writing = false;
      await Promise.all(sweeping);
    }
    expect(failures).toEqual([]);
    await signCheckpoints(pools[1], key);
    const events = await db.owner<{ seq: string; action: string }[]>`select seq, action from app.audit_events where tenant_id = ${tenant.id} order by seq`;
    expect(events.map((event) => Number(event.seq))).toEqual(events.map((_, i) => i + 1));
    expect(events.filter((event) => event.action === 'agent.create')).toHaveLength(24);
    const verified = await verifyChain((await readTenantChain(db.owner, tenant.id)).input, key);
    expect(verified, verified.message).toMatchObject({ ok: true, unsignedEvents: 0, lastSeq: events.length });
    for (const replica of replicas) {
      const answer = await replica.request('{ verifyAuditChain { ok signed lastSeq checkpointSeq } }', { token: tenant.members.ADMIN.token });
      expect(answer.body.data).toEqual({ verifyAuditChain: { ok: true, signed: true, lastSeq: events.length, checkpointSeq: events.length } });
    }
  });
});
