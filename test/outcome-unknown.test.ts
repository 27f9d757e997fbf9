// A write cut short (its deadline, a shutdown) after its COMMIT reached the
// database and before the database answered it may have committed: the
// connection is dropped, but the server already holds the COMMIT and runs it
// once what it waits for lets go. Its answer says so: UNAVAILABLE (503) with
// `extensions.reason` outcome-unknown, not `timeout` or `shutdown`, which say
// nothing was written. A COMMIT held up at will: a deferred trigger of this
// file's own database takes an advisory lock the test holds.
import { beforeAll, expect, it } from 'vitest';
import { abortTransactions, poolState, type Sql } from '../src/db/pool.ts';
import { unavailable } from '../src/errors.ts';
import { createTestApp, createTestTenant, insertWorkSession, type GraphQLResponse, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { writesTo } from './helpers/wire.ts';

let db: TestDatabase;
let tenant: TestTenant;
let sessionId: string;

const LOCK = 4242;
const CREATE_TASK = 'mutation($s: ID!, $t: String!) { createTask(input: { sessionId: $s, title: $t }) { task { id title } } }';

beforeAll(async () => {
  db = await useTestDatabase();
  tenant = await createTestTenant(db.owner, 'outcome');
  ({ sessionId } = await insertWorkSession(db.owner, tenant, 'writer'));
  // 'held at commit …': the COMMIT waits for the lock (a deferred trigger runs in it). 'held at insert …': the insert does.
  // While it waits the backend does not check its client (client_connection_check_interval 0 in the function), so what
  // happens to the write once the lock is let go is what would happen to one whose client went away a moment ago.
  await db.owner.unsafe(`
    create function public.test_wait_for_lock() returns trigger language plpgsql security definer set client_connection_check_interval = 0 as $$
    begin perform pg_advisory_xact_lock(${LOCK}); return null; end $$;
    create constraint trigger test_held_at_commit after insert on app.tasks deferrable initially deferred
      for each row when (new.title like 'held at commit%') execute function public.test_wait_for_lock();
    create trigger test_held_at_insert after insert on app.tasks
      for each row when (new.title like 'held at insert%') execute function public.test_wait_for_lock();`);
});

const tasksTitled = async (title: string) => (await db.owner<{ n: number }[]>`select count(*)::int as n from app.tasks where title = ${title}`)[0]!.n;

/** A backend of this database waiting for the test's advisory lock. */
const waitingForLock = async () =>
  (await db.owner<{ n: number }[]>`select count(*)::int as n from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock' and wait_event = 'advisory'`)[0]!.n;

/**
 * `title` written through `pool` while the test holds the lock; once the write waits for it, `cut` ends the request
 * as the deadline's sweep or a shutdown does. The answer, and the lock let go after it.
 */
async function cutShort(pool: Sql, write: (title: string) => Promise<GraphQLResponse>, title: string, cut: () => unknown): Promise<GraphQLResponse> {
  const holder = await db.owner.reserve();
  try {
    await holder`select pg_advisory_lock(${LOCK})`;
    const answer = write(title);
    await expect.poll(waitingForLock, { timeout: 5_000, interval: 20 }).toBe(1);
    expect(poolState(pool).open.size).toBe(1);
    await cut();
    return await answer;
  } finally {
    await holder`select pg_advisory_unlock(${LOCK})`;
    holder.release();
  }
}

/** Past its deadline, as the pool's sweep ends it (src/db/pool.ts). */
const expireAll = (pool: Sql) => () => {
  for (const transaction of poolState(pool).open) transaction.expire();
};

/** The backend waiting for the test's lock, terminated as an operator (or a restart) ends it: its client loses the connection. */
const terminateWaiting = async () => {
  // Materialized: the terminate runs on the waiting backend's row only, never on a row the filter has yet to drop.
  const [row] = await db.owner<{ n: number }[]>`with waiting as materialized (select pid from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock' and wait_event = 'advisory')
    select count(*) filter (where pg_terminate_backend(pid))::int as n from waiting`;
  expect(row!.n).toBe(1);
};

/** A fresh service on a pool of one connection, and its MEMBER's createTask. */
function memberWriter() {
  const pool = db.appPool(1);
  const api = createTestApp(pool);
  const write = (title: string) => api.request(CREATE_TASK, { token: tenant.members.MEMBER.token, variables: { s: sessionId, t: title } });
  return { pool, write };
}

const reasonOf = (response: GraphQLResponse) => [response.status, response.body.errors?.map((error) => error.extensions?.code), response.body.errors?.[0]?.extensions?.reason];

it('a write past its deadline while its COMMIT runs (2 round trips then the COMMIT): 503 outcome-unknown, its message says it may have been applied', async () => {
  const { pool, write } = memberWriter();
  // A fresh service's first run of the mutation: the check, the write, then COMMIT on its own.
  const answer = await cutShort(pool, write, 'held at commit 1', expireAll(pool));
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'outcome-unknown']);
  expect(answer.body.errors![0]!.message).toBe('The request was cut short after its write was sent to be committed: the write may have been applied. Read it again before retrying');
  expect(answer.body.data ?? null).toBeNull();
  // And it was: the database held the COMMIT, and ran it once the lock let go (the answer 'timeout' said otherwise).
  await expect.poll(() => tasksTitled('held at commit 1'), { timeout: 5_000, interval: 50 }).toBe(1);
});

it('a write cut short before its COMMIT was sent (waiting in its insert, a COMMIT sent only after it): 503 timeout, as before, and nothing is written', async () => {
  const { pool, write } = memberWriter();
  const answer = await cutShort(pool, write, 'held at insert 1', expireAll(pool));
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'timeout']);
  await new Promise((resolve) => setTimeout(resolve, 300)); // the lock let go: a write that survived its client would commit now
  expect(await tasksTitled('held at insert 1')).toBe(0);
});

it('a shutdown while a write sent in one round trip (BEGIN, the check, the insert and COMMIT) waits in its COMMIT: 503 outcome-unknown', async () => {
  const { pool, write } = memberWriter();
  for (let i = 0; i < 3; i++) expect((await write('learning')).body.errors).toBeUndefined();
  expect((await writesTo(Number(new URL(db.appUrl).port), () => write('learning'))).writes).toBe(1);
  // What main.ts does shortly before the shutdown deadline: every request still running is ended now.
  const answer = await cutShort(pool, write, 'held at commit 2', () => abortTransactions(pool, unavailable('shutdown')));
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'outcome-unknown']);
  await expect.poll(() => tasksTitled('held at commit 2'), { timeout: 5_000, interval: 50 }).toBe(1);
});

it('a write whose COMMIT is queued behind its insert (2 round trips), cut short while the insert waits: outcome-unknown, the database holds its COMMIT', async () => {
  const pool = db.appPool(1);
  const api = createTestApp(pool);
  const writeAs = (token: string) => (title: string) => api.request(CREATE_TASK, { token, variables: { s: sessionId, t: title } });
  for (let i = 0; i < 3; i++) expect((await writeAs(tenant.members.MEMBER.token)('learning')).body.errors).toBeUndefined();
  // Another caller, not known yet: the check first, then the insert with its COMMIT behind it in one write.
  const answer = await cutShort(pool, writeAs(tenant.members.LEAD.token), 'held at insert 2', expireAll(pool));
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'outcome-unknown']);
  await expect.poll(() => tasksTitled('held at insert 2'), { timeout: 5_000, interval: 50 }).toBe(1);
});

// The connection lost (the backend terminated, the database restarted) while the COMMIT is sent and unanswered: the
// client cannot tell whether the database committed before it went, so the answer is the deadline's, outcome-unknown.
// Here the backend dies in the COMMIT's trigger and the database rolls the write back; one terminated a moment after
// its commit record was written would have committed, and its answer would be the same.

it('a backend terminated while its write\'s COMMIT waits (2 round trips then the COMMIT): 503 outcome-unknown, not database', async () => {
  const { pool, write } = memberWriter();
  const answer = await cutShort(pool, write, 'held at commit 3', terminateWaiting);
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'outcome-unknown']);
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(await tasksTitled('held at commit 3')).toBe(0); // terminated in the COMMIT's trigger: rolled back
  // The pool serves the very next request on a connection made anew (DESIGN.md invariant 12: it recovers by itself).
  expect((await write('after a terminated backend')).body.errors).toBeUndefined();
});

it('a backend terminated while a write sent in one round trip waits in its COMMIT: 503 outcome-unknown', async () => {
  const { pool, write } = memberWriter();
  for (let i = 0; i < 3; i++) expect((await write('learning')).body.errors).toBeUndefined();
  expect((await writesTo(Number(new URL(db.appUrl).port), () => write('learning'))).writes).toBe(1);
  const answer = await cutShort(pool, write, 'held at commit 4', terminateWaiting);
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'outcome-unknown']);
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(await tasksTitled('held at commit 4')).toBe(0);
});

it('a backend terminated while the insert a COMMIT is queued behind waits: 503 outcome-unknown (the COMMIT was sent)', async () => {
  const pool = db.appPool(1);
  const api = createTestApp(pool);
  const writeAs = (token: string) => (title: string) => api.request(CREATE_TASK, { token, variables: { s: sessionId, t: title } });
  for (let i = 0; i < 3; i++) expect((await writeAs(tenant.members.MEMBER.token)('learning')).body.errors).toBeUndefined();
  const answer = await cutShort(pool, writeAs(tenant.members.LEAD.token), 'held at insert 3', terminateWaiting);
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'outcome-unknown']);
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(await tasksTitled('held at insert 3')).toBe(0);
});

it('a backend terminated before any COMMIT was sent (its insert waits, the COMMIT only after it): 503 database, as before, nothing written', async () => {
  const { pool, write } = memberWriter();
  const answer = await cutShort(pool, write, 'held at insert 4', terminateWaiting);
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'database']);
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(await tasksTitled('held at insert 4')).toBe(0);
});
