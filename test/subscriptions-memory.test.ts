// What a subscription holds, as an attacker would grow it: many subscriptions
// on a session with 10,000 tasks, each with its own seen set (the rows it
// could see, so it hears of their deletion); then subscriptions sent more rows
// than their seen set keeps. The heap each one adds is measured (after a full
// GC, in this process, which is the server's) and must stay under a stated
// bound; the start reads one page of rows, priced in the document's cost like
// a `first: 100` connection.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Sql } from '../src/db/pool.ts';
import { SEEN_MAX } from '../src/subscriptions/engine.ts';
import { SEED_ROWS } from '../src/subscriptions/schema.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createTestTenant, insertAgents, TEST_HTTP, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { errorCodes, sleep, sse, startLiveServer, wsConnect, type LiveResult, type LiveServer, type WsClient } from './helpers/live.ts';

let db: TestDatabase;
let sql: Sql;
let live: LiveServer;
let tenant: TestTenant;
let session: string;

const TASKS = 10_000;
const SUBSCRIBERS = 100;
/** The heap one subscription may add on a session of TASKS tasks (README: Live events). */
const BYTES_PER_SUBSCRIPTION = 64 * 1024;
/** ... and once it was sent more rows than its seen set keeps (SEEN_MAX, the oldest forgotten). */
const BYTES_PER_FULL_SUBSCRIPTION = 256 * 1024;
const ACTIVITY = 'subscription ($id: ID!) { sessionActivity(sessionId: $id) { kind id } }';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** The heap and RSS after a full collection (twice: weak references and finalizers run in between). */
async function settled(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(20);
  }
  return process.memoryUsage();
}

beforeAll(async () => {
  db = await useTestDatabase();
  sql = db.appPool(4);
  tenant = await createTestTenant(db.owner, 'memory-a');
  const [agent] = await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, ['runner']);
  session = (await db.owner<{ id: string }[]>`insert into app.sessions (tenant_id, agent_id) values (${tenant.id}, ${agent!}) returning id`)[0]!.id;
  // Loaded without their audit and outbox rows (seconds of chain hashing, a flood of events): only the rows matter here.
  await db.owner.begin(async (tx) => {
    await tx`alter table app.tasks disable trigger tasks_z_audit, disable trigger tasks_notify`;
    await tx`insert into app.tasks (tenant_id, session_id, title) select ${tenant.id}, ${session}, 'task ' || n from generate_series(1, ${TASKS}) n`;
    await tx`alter table app.tasks enable trigger tasks_z_audit, enable trigger tasks_notify`;
  });
  live = await startLiveServer(sql, db.appUrl, { subscriptions: { perTenant: SUBSCRIBERS + 10 } });
}, 180_000);

afterAll(async () => {
  await live?.close();
});

it(`${SUBSCRIBERS} subscriptions on a session with ${TASKS} tasks: each adds less than ${BYTES_PER_SUBSCRIPTION / 1024} KiB of heap`, async () => {
  const variables = { id: encodeGlobalId('Session', session) };
  const client = await wsConnect(live.origin);
  await client.init({ authorization: `Bearer ${tenant.members.VIEWER.token}` });
  // Warm: the document cached, the code paths compiled, the pools' connections open.
  const warm = client.subscribe(ACTIVITY, variables);
  while (live.app.subscriptions.count(tenant.id) < 1) await sleep(10);
  warm.close();
  while (live.app.subscriptions.count(tenant.id) > 0) await sleep(10);

  const before = await settled();
  const streams = Array.from({ length: SUBSCRIBERS }, () => client.subscribe(ACTIVITY, variables));
  const deadline = Date.now() + 60_000;
  while (live.app.subscriptions.count(tenant.id) < SUBSCRIBERS && Date.now() < deadline) await sleep(20);
  expect(live.app.subscriptions.count(tenant.id)).toBe(SUBSCRIBERS);
  const after = await settled();
  const heap = (after.heapUsed - before.heapUsed) / SUBSCRIBERS;
  const rss = (after.rss - before.rss) / SUBSCRIBERS;
  console.info(`per subscription on a session of ${TASKS} tasks: heap ${(heap / 1024).toFixed(1)} KiB, RSS ${(rss / 1024).toFixed(1)} KiB (${SUBSCRIBERS} subscriptions)`);
  expect(heap).toBeLessThan(BYTES_PER_SUBSCRIPTION);
  // Still live: a new task reaches every one of them.
  const [task] = await db.owner<{ id: string }[]>`insert into app.tasks (tenant_id, session_id, title) values (${tenant.id}, ${session}, 'new') returning id`;
  const id = encodeGlobalId('Task', task!.id);
  const heard = (results: LiveResult[]) => results.some((result) => (result.data?.sessionActivity as { id?: string } | undefined)?.id === id);
  await Promise.all(streams.map((stream) => stream.until(heard)));
  client.close();
}, 120_000);

it(`subscriptions sent ${SEEN_MAX + 200} rows each: each holds less than ${BYTES_PER_FULL_SUBSCRIPTION / 1024} KiB of heap (its seen set forgets the oldest)`, async () => {
  const subscribers = 10;
  const variables = { id: encodeGlobalId('Session', session) };
  const client = await wsConnect(live.origin);
  await client.init({ authorization: `Bearer ${tenant.members.VIEWER.token}` });
  const before = await settled();
  const streams = Array.from({ length: subscribers }, () => client.subscribe(ACTIVITY, variables));
  while (live.app.subscriptions.count(tenant.id) < subscribers) await sleep(10);
  const tasks = await db.owner<{ id: string }[]>`select id from app.tasks where tenant_id = ${tenant.id} order by created_at, id limit ${SEEN_MAX + 200}`;
  // Updated 90 at a time (a published batch of more than 100 of a tenant's events is folded into one resync).
  for (let i = 0; i < tasks.length; i += 90) {
    const ids = tasks.slice(i, i + 90).map((task) => task.id);
    await db.owner`update app.tasks set title = 'seen' where tenant_id = ${tenant.id} and id = any(${ids}::uuid[])`;
    const wanted = new Set(ids.map((id) => encodeGlobalId('Task', id)));
    const heardAll = (results: LiveResult[]) => results.filter((result) => wanted.has((result.data?.sessionActivity as { id?: string } | undefined)?.id ?? '')).length >= wanted.size;
    await Promise.all(streams.map((stream) => stream.until(heardAll, 20_000)));
    forgetReceived(client, streams);
  }
  const after = await settled();
  client.close();
  while (live.app.subscriptions.count(tenant.id) > 0) await sleep(10);
  // What the subscriptions held is what their end gives back (caches the process filled meanwhile stay).
  const released = await settled();
  const held = (after.heapUsed - released.heapUsed) / subscribers;
  console.info(
    `per subscription sent ${tasks.length} rows (${subscribers} subscriptions): heap ${kib(after.heapUsed - before.heapUsed, subscribers)} KiB more than before they opened,`,
    `${kib(held * subscribers, subscribers)} KiB given back when they ended; RSS ${kib(after.rss - before.rss, subscribers)} KiB more`,
  );
  expect(held).toBeLessThan(BYTES_PER_FULL_SUBSCRIPTION);
}, 120_000);

it(`the start reads the newest ${SEED_ROWS} rows, priced like a page of ${SEED_ROWS} in the document's cost; only those (and rows sent since) hear of their deletion`, async () => {
  const priced = await startLiveServer(sql, db.appUrl, { http: { limits: { ...TEST_HTTP.limits, cost: SEED_ROWS + 1 } } });
  try {
    const headers = { authorization: `Bearer ${tenant.members.VIEWER.token}` };
    const over = await sse(priced.origin, 'subscription { members { kind } }', { headers });
    expect(over.status).toBe(400);
    expect((over.body as { errors: { extensions: Record<string, unknown> }[] }).errors[0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', limit: 'cost', cost: SEED_ROWS + 2, max: SEED_ROWS + 1 });
  } finally {
    await priced.close();
  }
  const [newest] = await db.owner<{ id: string }[]>`select id from app.tasks where tenant_id = ${tenant.id} order by created_at desc, id desc limit 1`;
  const [older] = await db.owner<{ id: string }[]>`select id from app.tasks where tenant_id = ${tenant.id} and title like 'task %' order by created_at, id limit 1`;
  const stream = await sse(live.origin, ACTIVITY, { headers: { authorization: `Bearer ${tenant.members.VIEWER.token}` }, variables: { id: encodeGlobalId('Session', session) } });
  expect(stream.status).toBe(200);
  while (live.app.subscriptions.count(tenant.id) < 1) await sleep(10);
  await db.owner`delete from app.tasks where tenant_id = ${tenant.id} and id = ${older!.id}`;
  await db.owner`delete from app.tasks where tenant_id = ${tenant.id} and id = ${newest!.id}`;
  await stream.until((results) => results.length > 0);
  await sleep(300);
  expect(stream.results.map((result) => result.data?.sessionActivity)).toEqual([{ kind: 'DELETED', id: encodeGlobalId('Task', newest!.id) }]);
  expect(stream.results.flatMap(errorCodes)).toEqual([]);
  stream.close();
});

it('a re-read holds at most MAX_RESPONSE_BYTES of rows: changes whose rows pass it together are read again in parts and all arrive; one row past it alone is the response-limit error', async () => {
  const capped = await startLiveServer(sql, db.appUrl, { http: { maxResponseBytes: 16 * 1024 } });
  const [other] = await db.owner<{ id: string }[]>`insert into app.sessions (tenant_id, agent_id) select tenant_id, agent_id from app.sessions where id = ${session} returning id`;
  try {
    const stream = await sse(capped.origin, 'subscription ($id: ID!) { sessionActivity(sessionId: $id) { kind id node { ... on Task { title } } } }', {
      headers: { authorization: `Bearer ${tenant.members.VIEWER.token}` },
      variables: { id: encodeGlobalId('Session', other!.id) },
    });
    expect(stream.status).toBe(200);
    while (capped.app.subscriptions.count(tenant.id) < 1) await sleep(10);
    // Ten rows of ~3 KB in one statement (one published batch, one re-read: 30 KB together), then one of 40 KB.
    await db.owner`insert into app.tasks (tenant_id, session_id, title, output)
                   select ${tenant.id}, ${other!.id}, 'part ' || n, jsonb_build_object('text', repeat('x', 3000)) from generate_series(1, 10) n`;
    await db.owner`insert into app.tasks (tenant_id, session_id, title, output) values (${tenant.id}, ${other!.id}, 'huge', jsonb_build_object('text', repeat('x', 40000)))`;
    await db.owner`insert into app.tasks (tenant_id, session_id, title) values (${tenant.id}, ${other!.id}, 'after')`;
    const titles = () => stream.results.map((result) => (result.data?.sessionActivity as { node?: { title?: string } } | undefined)?.node?.title);
    await stream.until(() => titles().includes('after'));
    expect(titles().filter((title) => title?.startsWith('part ')).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `part ${i + 1}`).sort());
    expect(stream.results.filter((result) => result.errors).map((result) => result.errors![0]!.extensions)).toEqual([{ code: 'BAD_USER_INPUT', limit: 'responseBytes', max: 16 * 1024 }]);
    expect(stream.results.map((result) => (result.data?.sessionActivity as { kind?: string } | undefined)?.kind)).not.toContain('RESYNC');
    stream.close();
  } finally {
    await capped.close();
  }
});

const kib = (bytes: number, count: number) => (bytes / count / 1024).toFixed(1);

/** The client's copies of what it received (in this same heap) are dropped, so only the server's part is measured. */
function forgetReceived(client: WsClient, streams: readonly { results: LiveResult[] }[]): void {
  client.messages.length = 0;
  for (const stream of streams) stream.results.length = 0;
}
