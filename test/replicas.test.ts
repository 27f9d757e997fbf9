// Two service replicas on one database, behind nothing but their own ports:
// each its own app, pool and fair-share guard (one straight to PostgreSQL, one
// through PgBouncer, as a rolling migration to a pooler would run). What must
// hold across processes holds across them: a quota under parallel requests to
// both, a tenant's request rate (the token buckets live in PostgreSQL), and a
// revocation on one refused by the other on its very next request.
import { beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Sql } from '../src/db/pool.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { codes, createTestApp, createTestTenant, insertAgents, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { TEST_FAIR_SHARE, setRequestRates } from './helpers/fair-share.ts';
import { startPgBouncer } from './helpers/pgbouncer.ts';
import { createFairShareGuard, type FairShareGuard } from '../src/tenancy/fair-share.ts';

let db: TestDatabase;
let replicas: [TestApp, TestApp];
let guards: FairShareGuard[];

beforeAll(async () => {
  db = await useTestDatabase();
  const bouncer = await startPgBouncer({ poolSize: 4 });
  const through = (max: number) => createPool(bouncer.url(db.appUrl), { max, prepare: false });
  const pools: Sql[] = [db.appPool(6), through(6)];
  guards = [createFairShareGuard(db.appPool(1), TEST_FAIR_SHARE), createFairShareGuard(through(1), TEST_FAIR_SHARE)];
  replicas = [createTestApp(pools[0]!, { guards: [guards[0]!] }), createTestApp(pools[1]!, { guards: [guards[1]!] })];
  expect(await replicas[0].origin()).not.toBe(await replicas[1].origin());
  return async () => {
    await Promise.all(guards.map((guard) => guard.close()));
    await pools[1]!.end({ timeout: 5 });
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
