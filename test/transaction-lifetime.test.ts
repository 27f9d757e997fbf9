// A request transaction lives within its request: a query sent through it
// after it ended throws instead of running on a connection another request
// now holds (issue 11); waiting for a connection and every statement are
// bounded by the request's deadline, and neither costs the pool a connection.
import { beforeAll, expect, it } from 'vitest';
import { errorForSqlState } from '../src/db/errors.ts';
import { DEADLINE_SWEEP_MS, poolState, type Sql, type Tx } from '../src/db/pool.ts';
import { TenantTransaction } from '../src/db/tenant-transaction.ts';
import { createTestTenant, type TestTenant } from './helpers/app.ts';
import { useTestDatabase } from './helpers/db.ts';

let pool: Sql;
let tenant: TestTenant;
const sent: string[] = [];

beforeAll(async () => {
  const db = await useTestDatabase();
  pool = db.appPool(1, (query) => sent.push(query));
  tenant = await createTestTenant(db.owner, 'lifetime');
});

const selection = (): ConstructorParameters<typeof TenantTransaction>[1] => ({
  credentials: { kind: 'user', userId: tenant.members.MEMBER.userId, roleCap: undefined },
  tenant: tenant.id,
  allowedSlugs: undefined,
});

it('a query through a transaction that has ended throws, and never reaches the connection the next request holds', async () => {
  const first = new TenantTransaction(pool, selection());
  let kept: Tx | undefined;
  await first.run(async (tx) => {
    kept = tx;
    return tx`select 1`;
  });
  await first.end(true);

  const next = new TenantTransaction(pool, selection()); // the pool's only connection is now this one's
  const [row] = await next.run((tx) => tx<{ tenant: string }[]>`select current_setting('app.tenant_id') as tenant`);
  expect(row!.tenant).toBe(tenant.id);

  const before = sent.length;
  expect(() => kept!`select 'late' as stray`).toThrow(/already ended/);
  expect(() => kept!.unsafe('select 1')).toThrow(/already ended/);
  await next.end(true);
  expect(sent.slice(before).some((query) => query.includes('stray'))).toBe(false);
});

it('the wait for a connection ends at the deadline: UNAVAILABLE timeout, counted, and the connection is not lost', async () => {
  const holder = new TenantTransaction(pool, selection());
  await holder.principal(); // holds the pool's only connection
  const started = Date.now();
  const waiting = new TenantTransaction(pool, selection(), { deadline: Date.now() + 300 });
  await expect(waiting.principal()).rejects.toMatchObject({ extensions: { code: 'UNAVAILABLE', reason: 'timeout' } });
  expect(Date.now() - started).toBeLessThan(2_500); // by the deadline, not whenever the holder lets go (never); loose for a loaded machine
  expect(poolState(pool).acquireTimeouts).toBe(1);
  await waiting.end(false);
  await holder.end(false);

  const after = new TenantTransaction(pool, selection(), { deadline: Date.now() + 2_000 });
  await expect(after.run((tx) => tx`select 1 as one`)).resolves.toEqual([{ one: 1 }]);
  await after.end(true);
});

it('a statement running into the deadline is cancelled by the server (statement_timeout from the deadline) and the connection is kept', async () => {
  const started = Date.now();
  const slow = new TenantTransaction(pool, selection(), { deadline: Date.now() + 1_500 });
  const [{ pid }] = (await slow.run((tx) => tx<{ pid: number }[]>`select pg_backend_pid() as pid`)) as unknown as [{ pid: number }];
  const error = await slow.run((tx) => tx`select pg_sleep(5)`).catch((caught: unknown) => caught);
  expect(Date.now() - started).toBeLessThan(3_500); // cut near the deadline, far before the sleep's 5 s; loose for a loaded machine
  // The server's statement_timeout (57014), a little before the deadline: not the deadline's abort, which drops the connection.
  expect((error as { code?: string }).code).toBe('57014');
  expect(errorForSqlState(error)?.extensions).toMatchObject({ code: 'UNAVAILABLE', reason: 'timeout' });
  await slow.end(false);

  const next = new TenantTransaction(pool, selection());
  const [row] = await next.run((tx) => tx<{ timeout: string; pid: number }[]>`select current_setting('statement_timeout') as timeout, pg_backend_pid() as pid`);
  expect(row!.pid).toBe(pid); // the pool's one connection was kept
  expect(Number.parseInt(row!.timeout)).toBeGreaterThan(5_000); // its own deadline's (~9.75 s), nothing carried over from the slow one's ~1.25 s
  await next.end(true);
});

it('past the deadline with no statement running, every later use answers UNAVAILABLE timeout and nothing commits', async () => {
  // The check must finish before the deadline (2 s of room on a loaded machine); then the deadline passes with nothing running.
  const deadline = Date.now() + 2_000;
  const late = new TenantTransaction(pool, selection(), { deadline });
  await late.principal();
  while (Date.now() <= deadline + 100) await new Promise((resolve) => setTimeout(resolve, 50));
  await expect(late.run((tx) => tx`select 1`)).rejects.toMatchObject({ extensions: { code: 'UNAVAILABLE', reason: 'timeout' } });
  await expect(late.end(true)).rejects.toMatchObject({ extensions: { code: 'UNAVAILABLE', reason: 'timeout' } });

  const next = new TenantTransaction(pool, selection());
  await expect(next.run((tx) => tx`select 1 as one`)).resolves.toEqual([{ one: 1 }]);
  await next.end(true);
});

it('one sweep a pool holds the deadlines: it runs while a transaction is open and stops once none is', async () => {
  const open = new TenantTransaction(pool, selection());
  await open.principal();
  expect(poolState(pool).sweep).toBeDefined();
  await open.end(true);
  expect(poolState(pool).open.size).toBe(0);
  await new Promise((resolve) => setTimeout(resolve, 3 * DEADLINE_SWEEP_MS + 50));
  expect(poolState(pool).sweep).toBeUndefined(); // no timer left behind an idle pool
});

it('the read budget charges the bytes the rows took on the wire, call by call: past it the call that crossed it answers the response limit; rows read only to compute an answer are not charged', async () => {
  const rows = (tx: Tx) => tx<{ text: string }[]>`select repeat('x', 1000) as text from generate_series(1, 5)`; // > 5,000 bytes on the wire
  const small = new TenantTransaction(pool, selection(), { readBytes: 4_000 });
  await expect(small.run(rows)).rejects.toMatchObject({ extensions: { code: 'BAD_USER_INPUT', limit: 'responseBytes' } });
  expect(small.overReadBudget).toBe(true);
  await small.end(false);

  const roomy = new TenantTransaction(pool, selection(), { readBytes: 8_000 });
  expect(await roomy.run(rows)).toHaveLength(5); // ~5,100 bytes of 8,000
  await expect(roomy.run(rows)).rejects.toMatchObject({ extensions: { limit: 'responseBytes' } }); // ~10,200: the second call crossed it
  await roomy.end(false);

  const unlimited = new TenantTransaction(pool, selection());
  expect(await unlimited.run(rows)).toHaveLength(5);
  await unlimited.end(true);

  // Rows read only to compute a small answer (a chain verified): not charged, then or by the next call.
  const verifying = new TenantTransaction(pool, selection(), { readBytes: 8_000 });
  const count = (tx: Tx) => tx`select repeat('x', 1000) as text from generate_series(1, 20)`.then((read) => read.length); // ~20,000 bytes read
  expect(await verifying.run(count, { charged: false })).toBe(20);
  expect(await verifying.run(rows)).toHaveLength(5); // ~5,100 of 8,000: the uncharged rows left nothing behind
  await verifying.end(false);
});

it('calls that overlap an uncharged one are charged for their own rows only, whichever lands first', async () => {
  // A small charged read queued behind a large uncharged one (a chain read in batches): not charged for the chain.
  const behind = new TenantTransaction(pool, selection(), { readBytes: 50_000 });
  await behind.principal();
  const chain = behind.run(async (tx) => {
    let n = 0;
    for await (const rows of tx`select repeat('x', 1000) as s from generate_series(1, 500)`.cursor(100)) n += rows.length; // ~500 KB
    await new Promise((resolve) => setTimeout(resolve, 200));
    return n;
  }, { charged: false });
  const small = behind.run((tx) => tx`select 1 as one`);
  const [chainRead, smallRead] = await Promise.allSettled([chain, small]);
  expect(chainRead).toEqual({ status: 'fulfilled', value: 500 });
  expect(smallRead.status).toBe('fulfilled');
  await behind.end(false);

  // A large charged read landing while an uncharged call works: charged, whoever returns first.
  const beside = new TenantTransaction(pool, selection(), { readBytes: 5_000 });
  await beside.principal();
  const quick = beside.run(async (tx) => {
    const rows = await tx`select 1 as one`;
    await new Promise((resolve) => setTimeout(resolve, 100));
    return rows.length;
  }, { charged: false });
  const large = beside.run(async (tx) => {
    const rows = await tx`select repeat('x', 20000) as s`;
    await new Promise((resolve) => setTimeout(resolve, 200));
    return rows;
  });
  const [quickRead, largeRead] = await Promise.allSettled([quick, large]);
  expect(quickRead.status).toBe('fulfilled');
  expect(largeRead).toMatchObject({ status: 'rejected', reason: { extensions: { limit: 'responseBytes' } } });
  await beside.end(false);
});

it('a query handed back unawaited still runs in the transaction that commits early (sent in its tick, not after the check)', async () => {
  const early = new TenantTransaction(pool, selection(), { commitEarly: true });
  // postgres.js sends a query once something awaits it: run() awaits the check first, and the COMMIT queued behind the
  // tick would then come before it, leaving it outside the transaction (no tenant setting, no timeouts).
  const [row] = await early.run((tx) => tx<{ tenant: string }[]>`select current_setting('app.tenant_id', true) as tenant`);
  expect(row!.tenant).toBe(tenant.id);
  await early.end(true);
});
