// A pooled connection that turns out dead only when a request uses it: its
// backend was terminated (pg_terminate_backend, a restart) and the news of it
// had not reached the pool yet, so the request's BEGIN went to a closed
// connection. Nothing of the request reached the database, so it runs once
// more on another connection instead of answering 503 `database`; a write
// whose COMMIT already left with BEGIN (one round trip) answers
// outcome-unknown as before (through a proxy such a write may have reached
// the database), never runs twice. The news is held by a TCP proxy between
// the pool and this file's database until the pool next writes.
import { beforeAll, expect, it } from 'vitest';
import { createPool, type Sql } from '../src/db/pool.ts';
import { createTestApp, createTestTenant, insertWorkSession, type GraphQLResponse, type TestTenant } from './helpers/app.ts';
import { atFileEnd, useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { sse, startLiveServer } from './helpers/live.ts';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';
import { writesTo } from './helpers/wire.ts';

const CREATE_TASK = 'mutation($s: ID!, $t: String!) { createTask(input: { sessionId: $s, title: $t }) { task { id title } } }';
const READ = '{ agents(first: 5) { edges { node { name } } } }';

let db: TestDatabase;
let tenant: TestTenant;
let sessionId: string;
let proxy: TcpProxy;

beforeAll(async () => {
  db = await useTestDatabase();
  tenant = await createTestTenant(db.owner, 'lost');
  ({ sessionId } = await insertWorkSession(db.owner, tenant, 'writer'));
  proxy = await startTcpProxy(Number(new URL(db.appUrl).port));
  atFileEnd(() => proxy.close());
});

/** A fresh service on a pool of `max` connections through the proxy; its VIEWER's read and its MEMBER's createTask. */
function service(max = 1) {
  const pool = createPool(proxy.url(db.appUrl), { max, prepare: true, requestTimeoutMs: 5_000 });
  atFileEnd(() => pool.end({ timeout: 1 }));
  const api = createTestApp(pool);
  const read = () => api.request(READ, { token: tenant.members.VIEWER.token });
  const write = (title: string) => api.request(CREATE_TASK, { token: tenant.members.MEMBER.token, variables: { s: sessionId, t: title } });
  return { pool, read, write };
}

/** The backends of the pool's `count` connections (all held at once, so each is its own). */
async function backendsOf(pool: Sql, count: number): Promise<number[]> {
  const held = await Promise.all(Array.from({ length: count }, () => pool.reserve()));
  try {
    return await Promise.all(held.map(async (connection) => (await connection<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid));
  } finally {
    for (const connection of held) connection.release();
  }
}

/** `pids` terminated as an operator (or a restart) ends them, the news held until the pool next writes to each. */
async function terminateUnheard(pids: number[]): Promise<void> {
  proxy.holdNews();
  const [row] = await db.owner<{ n: number }[]>`select count(*) filter (where pg_terminate_backend(pid))::int as n from unnest(${pids}::int[]) pid`;
  expect(row!.n).toBe(pids.length);
  await expect.poll(async () => (await db.owner`select 1 from pg_stat_activity where pid = any(${pids}::int[])`).length, { timeout: 5_000, interval: 20 }).toBe(0);
}

const tasksTitled = async (title: string) => (await db.owner<{ n: number }[]>`select count(*)::int as n from app.tasks where title = ${title}`)[0]!.n;
const reasonOf = (response: GraphQLResponse) => [response.status, response.body.errors?.map((error) => error.extensions?.code), response.body.errors?.[0]?.extensions?.reason];

it('the request after one whose backend was terminated mid-statement is served on the connection made again: 200, not the old connection\'s error', async () => {
  const { pool, read } = service();
  expect((await read()).body.errors).toBeUndefined();
  const [pid] = await backendsOf(pool, 1);
  const holder = await db.owner.reserve();
  try {
    await holder`begin`;
    await holder`lock table app.agents in access exclusive mode`;
    const waiting = read();
    await expect.poll(async () => (await db.owner`select 1 from pg_stat_activity where pid = ${pid!} and wait_event_type = 'Lock'`).length, { timeout: 5_000, interval: 20 }).toBe(1);
    await db.owner`select pg_terminate_backend(${pid!})`;
    // BEGIN was answered, the read ran: the request answers `database`, as before.
    expect(reasonOf(await waiting)).toEqual([503, ['UNAVAILABLE'], 'database']);
  } finally {
    await holder`rollback`;
    holder.release();
  }
  // The first request after it: the driver made the connection again, and met the old socket's 57P01 at its first ReadyForQuery.
  const after = await read();
  expect(after.body.errors).toBeUndefined();
  expect(after.status).toBe(200);
});

it('a read whose connection was terminated unheard (BEGIN, the check, the read and COMMIT sent at once) runs again on a new connection: 200, not 503 database', async () => {
  const { pool, read } = service();
  for (let i = 0; i < 2; i++) expect((await read()).body.errors).toBeUndefined(); // learned: sent at once, with its COMMIT
  const connected = proxy.accepted;
  await terminateUnheard(await backendsOf(pool, 1));
  const answer = await read();
  expect(answer.body.errors).toBeUndefined();
  expect(answer.status).toBe(200);
  expect((answer.body.data!.agents as { edges: { node: { name: string } }[] }).edges.map((edge) => edge.node.name)).toEqual(['writer']);
  expect(proxy.accepted).toBe(connected + 1); // one new connection
});

it('a write on such a connection (its first run: BEGIN and the check sent, the insert waiting for the check to answer) runs again and is written once', async () => {
  const { pool, read, write } = service();
  expect((await read()).body.errors).toBeUndefined(); // the connection, before the write's first run
  await terminateUnheard(await backendsOf(pool, 1));
  const answer = await write('written once');
  expect(answer.body.errors).toBeUndefined();
  expect((answer.body.data!.createTask as { task: { title: string } }).task.title).toBe('written once');
  expect(await tasksTitled('written once')).toBe(1);
});

it('a write whose COMMIT left with BEGIN (one round trip) on such a connection is not run again: 503 outcome-unknown, and nothing was written', async () => {
  const { pool, write } = service();
  for (let i = 0; i < 3; i++) expect((await write('learning')).body.errors).toBeUndefined();
  expect((await writesTo(proxy.port, () => write('learning'))).writes).toBe(1);
  await terminateUnheard(await backendsOf(pool, 1));
  const answer = await write('sent with its commit');
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'outcome-unknown']);
  expect(await tasksTitled('sent with its commit')).toBe(0); // here nothing reached the database; through a proxy it might have
  expect((await write('after it')).body.errors).toBeUndefined();
  expect(await tasksTitled('after it')).toBe(1);
});

it('a subscription started on such a connection (SSE) starts on a new one: a stream, not 503 database', async () => {
  // After a restart every subscriber comes back at once, onto the pool's connections that died with the database.
  const pool = createPool(proxy.url(db.appUrl), { max: 1, prepare: true, requestTimeoutMs: 5_000 });
  atFileEnd(() => pool.end({ timeout: 1 }));
  const live = await startLiveServer(pool, db.appUrl);
  atFileEnd(() => live.close());
  const headers = { authorization: `Bearer ${tenant.members.VIEWER.token}` };
  const first = await sse(live.origin, 'subscription { members { kind } }', { headers });
  expect(first.status).toBe(200); // the pool's one connection, made
  first.close();
  const connected = proxy.accepted;
  await terminateUnheard(await backendsOf(pool, 1));
  const stream = await sse(live.origin, 'subscription { members { kind } }', { headers });
  expect([stream.status, 'body' in stream ? stream.body : undefined]).toEqual([200, undefined]);
  expect(proxy.accepted).toBe(connected + 1); // one new connection
  stream.close();
});

it('runs again once only: when the next connection is dead too, 503 database; the request after it is served', async () => {
  const { pool, read } = service(2);
  expect((await read()).body.errors).toBeUndefined();
  await terminateUnheard(await backendsOf(pool, 2));
  const answer = await read();
  expect(reasonOf(answer)).toEqual([503, ['UNAVAILABLE'], 'database']);
  expect((await read()).body.errors).toBeUndefined();
});
