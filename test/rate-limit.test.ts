// The rate limiter against the database, without the HTTP service: tokens
// not spent go back to the bucket, and a limiter whose database stops
// answering keeps each tenant to its rate by refilling locally.
import { beforeAll, expect, it } from 'vitest';
import { RateLimiter } from '../src/tenancy/rate-limit.ts';
import { createTestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { setRequestRates } from './helpers/fair-share.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await useTestDatabase();
});

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function take(limiter: RateLimiter, tenantId: string): Promise<boolean> {
  const decision = await limiter.take(tenantId, null);
  return decision.ok;
}

async function bucketTokens(tenantId: string): Promise<number> {
  const [row] = await db.owner<{ tokens: number }[]>`
    select least(app.request_burst(600), tokens + extract(epoch from now() - refilled_at) * 10)::float8 as tokens
    from app.request_buckets where tenant_id = ${tenantId} and api_key_id is null`;
  return row!.tokens;
}

it('gives back the tokens it leased and did not spend within a second', async () => {
  const tenant = await createTestTenant(db.owner, 'rl-give-back', 'free');
  await setRequestRates(db.owner, tenant.id, { perMinute: 600 }); // a bucket of 100
  const limiter = new RateLimiter(db.appPool(1), { leaseTtlMs: 300 });
  for (let i = 0; i < 30; i++) expect(await take(limiter, tenant.id)).toBe(true);
  await limiter.idle();
  const leased = 100 - (await bucketTokens(tenant.id));
  expect(leased).toBeGreaterThan(30); // it leased ahead of its demand
  await pause(1000); // idle: the sweep gives the rest back
  await limiter.idle();
  expect(100 - (await bucketTokens(tenant.id))).toBeLessThan(31);
  await limiter.close();
});

it('keeps unspent tokens as long as a lease covers, then gives them back', async () => {
  // A tenant asking once every few seconds spends what it leased: giving it back sooner would cost it a lease
  // (a statement, and a request waiting for it) every time. (The default look-ahead is 5 s; 2 s keeps the test short.)
  const tenant = await createTestTenant(db.owner, 'rl-keep', 'free');
  await setRequestRates(db.owner, tenant.id, { perMinute: 600 });
  const limiter = new RateLimiter(db.appPool(1), { leaseAheadMs: 2000 });
  for (let i = 0; i < 5; i++) expect(await take(limiter, tenant.id)).toBe(true);
  await limiter.idle();
  const spentAt = performance.now();
  expect(100 - (await bucketTokens(tenant.id))).toBeGreaterThan(5); // leased ahead of the five spent
  // The bucket's row is written again only by the give-back (no request asks meanwhile).
  const written = async () => (await db.owner<{ at: string }[]>`
    select refilled_at::text as at from app.request_buckets where tenant_id = ${tenant.id} and api_key_id is null`)[0]!.at;
  const leasedAt = await written();
  let returnedAfter: number | undefined;
  while (returnedAfter === undefined && performance.now() - spentAt < 5000) {
    await pause(50);
    if ((await written()) !== leasedAt) returnedAfter = performance.now() - spentAt;
  }
  expect(returnedAfter).toBeDefined(); // given back, within the sweep's second after its time
  expect(returnedAfter!).toBeGreaterThanOrEqual(2000);
  await limiter.close();
});

it('leases five seconds of the demand it sees, within its share', async () => {
  // Fewer lease calls for a tenant far below its limit (each costs PostgreSQL ~0.9 ms under load); near the limit the
  // share (a tenth of the bucket) binds first. Enterprise: 1,000 a second, a bucket of 10,000, always full here, so the
  // bucket's row right after a lease holds 10,000 minus the grant.
  const tenant = await createTestTenant(db.owner, 'rl-ahead', 'enterprise');
  const limiter = new RateLimiter(db.appPool(1));
  const grants: number[] = [];
  for (let i = 0; i < 75; i++) {
    expect(await take(limiter, tenant.id)).toBe(true);
    await limiter.idle();
    const [row] = await db.owner<{ tokens: number }[]>`select tokens from app.request_buckets where tenant_id = ${tenant.id} and api_key_id is null`;
    grants.push(10_000 - row!.tokens);
    await pause(40); // about 20 a second
  }
  // At ~20 a second: five seconds is ~100 a lease (two seconds would be ~40).
  expect(Math.max(...grants)).toBeGreaterThanOrEqual(70);
  expect(Math.max(...grants)).toBeLessThanOrEqual(1000);
  await limiter.close();
});

it('keeps a tenant to its rate when the database stops answering (refilled locally)', async () => {
  const tenant = await createTestTenant(db.owner, 'rl-local', 'free');
  await setRequestRates(db.owner, tenant.id, { perMinute: 600 }); // 10 a second, a bucket of 100
  const pool = db.appPool(1);
  const errors: unknown[] = [];
  const limiter = new RateLimiter(pool, { onError: (error) => errors.push(error), waitMs: 200 });
  while (await take(limiter, tenant.id)); // spend the whole bucket
  await pool.end(); // from now on every lease fails
  let admitted = 0;
  const started = Date.now();
  while (Date.now() - started < 2000) {
    if (await take(limiter, tenant.id)) admitted += 1;
    await pause(2);
  }
  expect(errors.length).toBeGreaterThan(0);
  // Ten a second for two seconds, and at most one lease's worth (10) at once: not the ~600 it asked for.
  expect(admitted).toBeGreaterThanOrEqual(10);
  expect(admitted).toBeLessThanOrEqual(10 + 20 + 2);
  await limiter.close();
});

it('charges requests admitted before their tenant was known, into debt, and the next requests repay it', async () => {
  // The guard admits a credentials' first use before its lookup lands and charges it once it has: however many
  // went through meanwhile, the bucket (30 a minute: 5) pays for them, the database's row included.
  const tenant = await createTestTenant(db.owner, 'rl-charge', 'free');
  await setRequestRates(db.owner, tenant.id, { perMinute: 30 });
  const limiter = new RateLimiter(db.appPool(1));
  for (let i = 0; i < 7; i++) limiter.charge(tenant.id, null); // more than the bucket holds
  await limiter.idle();
  const decisions: boolean[] = [];
  for (let i = 0; i < 4; i++) decisions.push(await take(limiter, tenant.id));
  expect(decisions).toEqual([false, false, false, false]); // the bucket's 5, leased, went to the debt of 7
  const [row] = await db.owner<{ tokens: number }[]>`
    select tokens::float8 as tokens from app.request_buckets where tenant_id = ${tenant.id} and api_key_id is null`;
  expect(row!.tokens).toBeLessThan(1); // leased to the last token
  // Told to come back when the debt is repaid and a token is there (3 tokens at one every 2 s), not in a second or two;
  // and the RateLimit header says none remain, never a negative count.
  const refused = await limiter.take(tenant.id, null);
  expect(refused.ok).toBe(false);
  const extensions = !refused.ok ? (refused.error.extensions as { retryAfter: number; http: { headers: Record<string, string> } }) : undefined;
  expect(extensions!.retryAfter).toBeGreaterThanOrEqual(4);
  expect(extensions!.http.headers.ratelimit).toMatch(/^"tenant";r=0;t=\d+$/);
  await limiter.close();
});

it('leases a debt once, however many requests wait on the lease that repays it', async () => {
  // 60 a minute: a bucket of 10, leases of one token beyond what is asked (a tenth of the bucket). Three first uses
  // charged, four requests waiting at once: the lease takes 3 + 4 = 7, not the debt once per waiting request.
  const tenant = await createTestTenant(db.owner, 'rl-debt-once', 'free');
  await setRequestRates(db.owner, tenant.id, { perMinute: 60 });
  const limiter = new RateLimiter(db.appPool(1));
  for (let i = 0; i < 3; i++) limiter.charge(tenant.id, null);
  const decisions = await Promise.all(Array.from({ length: 4 }, async () => limiter.take(tenant.id, null)));
  expect(decisions.map((decision) => decision.ok)).toEqual([true, true, true, true]);
  await limiter.idle();
  const [row] = await db.owner<{ tokens: number }[]>`
    select tokens::float8 as tokens from app.request_buckets where tenant_id = ${tenant.id} and api_key_id is null`;
  // 7 and the one leased ahead once the four spent it all (the debt once per waiter asked 4 x 4 = 16: the first lease's 10).
  expect(10 - row!.tokens).toBeLessThanOrEqual(8);
  await limiter.close();
});
