// PostgreSQL restarted under live subscriptions, end to end: the service on a
// PostgreSQL of this file's own (test/helpers/fault-postgres.ts), requests on
// the request pool, the event hub on its own direct connection, subscribers
// over SSE and graphql-ws. A fast restart and a crash (kill -9, then a start):
// every open stream gets a RESYNC (never silence), stays open, and then carries
// live events again; a subscription asked for while the database is down is
// refused with UNAVAILABLE at once, and one asked for afterwards starts. A
// frozen database (SIGSTOP) with streams open: /ready answers within a second,
// a new subscription ends by its deadline (REQUEST_TIMEOUT_MS) with
// UNAVAILABLE, and after the thaw the streams carry live events again.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createPool, type Sql } from '../src/db/pool.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createTestTenant, insertAgents, insertSession, type TestTenant } from './helpers/app.ts';
import { startFaultServer, type FaultServer } from './helpers/fault-postgres.ts';
import { errorCodes, sleep, sse, startLiveServer, wsConnect, type LiveResult, type LiveServer, type Received } from './helpers/live.ts';
import { pollReadiness } from './helpers/load.ts';
import postgres from 'postgres';

let server: FaultServer;
let owner: postgres.Sql;
let pool: Sql;
let live: LiveServer;
let a: TestTenant;
let b: TestTenant;
let session: { a: string; b: string };

const ACTIVITY = 'subscription ($id: ID!) { sessionActivity(sessionId: $id) { kind id node { __typename ... on Task { title } } } }';
const MEMBERS = 'subscription { members { kind id } }';
type Event = { kind: string; id: string | null };
const kinds = (results: LiveResult[], field: string) => results.map((result) => (result.data?.[field] as Event | undefined)?.kind);
const ids = (results: LiveResult[], field: string) => results.map((result) => (result.data?.[field] as Event | undefined)?.id);

/** A write as the owner, retried while the database comes back. */
async function retrying<T>(write: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await write();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(100);
    }
  }
}

const REQUEST_TIMEOUT_MS = 3_000;

// The service runs in this process: on a machine busy with the rest of the suite its timers (the /ready probe's
// 700 ms) fire late by as much as the event loop lags, so the one-second bounds allow for the lag measured meanwhile.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
const lag = () => loopDelay.max / 1e6;
beforeEach(() => loopDelay.reset());
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** A subscription that must be refused now: over SSE (the JSON answer) and over a socket already acknowledged. */
async function refusedNow(ws: Awaited<ReturnType<typeof wsConnect>>) {
  const started = performance.now();
  const variables = { id: encodeGlobalId('Session', session.a) };
  const [overSse, overWs] = await Promise.all([
    sse(live.origin, ACTIVITY, { headers: bearer(a.members.VIEWER.token), variables }),
    (async () => {
      const operation = ws.subscribe(ACTIVITY, variables);
      await operation.ended(REQUEST_TIMEOUT_MS + 10_000);
      return operation;
    })(),
  ]);
  const ms = performance.now() - started;
  const sseError = (overSse.body as { errors: NonNullable<LiveResult['errors']> } | undefined)?.errors[0];
  expect([overSse.status, sseError?.extensions?.code], JSON.stringify(overSse.body)).toEqual([503, 'UNAVAILABLE']);
  expect(overWs.results.map(errorCodes)).toEqual([['UNAVAILABLE']]);
  return { ms, sseReason: sseError?.extensions?.reason, wsReason: overWs.results[0]!.errors![0]!.extensions?.reason };
}

const newTask = (tenant: TestTenant, sessionId: string) =>
  retrying(async () => {
    const [row] = await owner<{ id: string }[]>`
      insert into app.tasks (tenant_id, session_id, title, created_by) values (${tenant.id}, ${sessionId}, 'live', ${tenant.members.MEMBER.userId}) returning id`;
    return encodeGlobalId('Task', row!.id);
  });

/** Until the stream hears a task written after it opened (a subscription has no acknowledgement). */
async function started(stream: Received, tenant: TestTenant, sessionId: string) {
  for (let attempt = 0; attempt < 30; attempt++) {
    const id = await newTask(tenant, sessionId);
    if (await stream.until((results) => ids(results, 'sessionActivity').includes(id), 500).then(() => true, () => false)) return;
  }
  throw new Error('the subscription never started');
}

type Subscriber = { name: string; field: string; stream: Received; live: () => Promise<string> };

async function openSubscribers(): Promise<Subscriber[]> {
  const subscribers: Subscriber[] = [];
  for (const [tenant, sessionId] of [[a, session.a], [b, session.b]] as const) {
    const stream = await sse(live.origin, ACTIVITY, { headers: { authorization: `Bearer ${tenant.members.VIEWER.token}` }, variables: { id: encodeGlobalId('Session', sessionId) } });
    expect(stream.status).toBe(200);
    await started(stream, tenant, sessionId);
    subscribers.push({ name: `sse ${tenant.slug}`, field: 'sessionActivity', stream, live: () => newTask(tenant, sessionId) });
  }
  const ws = await wsConnect(live.origin);
  await ws.init({ authorization: `Bearer ${a.members.ADMIN.token}` });
  const members = ws.subscribe(MEMBERS);
  const wsActivity = ws.subscribe(ACTIVITY, { id: encodeGlobalId('Session', session.a) });
  await started(wsActivity, a, session.a);
  subscribers.push({ name: 'ws activity', field: 'sessionActivity', stream: wsActivity, live: () => newTask(a, session.a) });
  subscribers.push({
    name: 'ws members',
    field: 'members',
    stream: members,
    live: () =>
      retrying(async () => {
        const [user] = await owner<{ id: string }[]>`insert into app.users (email) values (${`joiner-${Date.now()}-${Math.random()}@live.test`}) returning id`;
        await owner`insert into app.memberships (tenant_id, user_id, role) values (${a.id}, ${user!.id}, 'VIEWER')`;
        return encodeGlobalId('Member', user!.id);
      }),
  });
  return subscribers;
}

/** After the fault: every stream has a RESYNC, is still open, and hears a change made after it. */
async function expectResyncThenLive(subscribers: Subscriber[], before: Map<Subscriber, number>) {
  for (const subscriber of subscribers) {
    const results = await subscriber.stream.until((all) => kinds(all.slice(before.get(subscriber)), subscriber.field).includes('RESYNC'), 30_000);
    expect(subscriber.stream.endedAt, subscriber.name).toBeUndefined();
    const resyncAt = before.get(subscriber)! + kinds(results.slice(before.get(subscriber)), subscriber.field).indexOf('RESYNC');
    const id = await subscriber.live();
    const after = await subscriber.stream.until((all) => ids(all.slice(resyncAt), subscriber.field).includes(id), 15_000);
    expect(after.length, subscriber.name).toBeGreaterThan(resyncAt);
  }
}

beforeAll(async () => {
  server = await startFaultServer();
  owner = postgres(server.ownerUrl, { max: 2, onnotice: () => {} });
  pool = createPool(server.appUrl, { max: 6, prepare: true, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  a = await createTestTenant(owner, 'live-restart-a');
  b = await createTestTenant(owner, 'live-restart-b');
  const [agentA] = await insertAgents(owner, a.id, a.members.ADMIN.userId, ['runner']);
  const [agentB] = await insertAgents(owner, b.id, b.members.ADMIN.userId, ['runner']);
  session = { a: await insertSession(owner, a.id, agentA!, a.members.MEMBER.userId), b: await insertSession(owner, b.id, agentB!, b.members.MEMBER.userId) };
  live = await startLiveServer(pool, server.appUrl);
}, 60_000);

afterAll(async () => {
  await live?.close();
  await pool?.end({ timeout: 1 });
  await owner?.end({ timeout: 1 });
  await server?.destroy();
});

describe('PostgreSQL restarted under live subscriptions', () => {
  it('a fast restart: every stream gets RESYNC, stays open, then live events', async () => {
    const subscribers = await openSubscribers();
    const before = new Map(subscribers.map((subscriber) => [subscriber, subscriber.stream.results.length]));
    await server.restart();
    await expectResyncThenLive(subscribers, before);
    for (const subscriber of subscribers) subscriber.stream.close();
  }, 120_000);

  it('a crash (kill -9) and a start a second later: the same; meanwhile a new subscription is refused UNAVAILABLE at once, afterwards one starts', async () => {
    const subscribers = await openSubscribers();
    const socket = await wsConnect(live.origin);
    await socket.init(bearer(a.members.VIEWER.token));
    const before = new Map(subscribers.map((subscriber) => [subscriber, subscriber.stream.results.length]));
    await server.kill();
    await sleep(1_000);
    expect(live.hub.connected).toBe(false);
    const down = await refusedNow(socket);
    expect(down.ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1_000);
    expect([down.sseReason, down.wsReason]).toEqual(['database', 'database']);
    // A new socket's connection_init is checked by the database too: closed 1013 (try again later).
    const late = await wsConnect(live.origin);
    await late.init(bearer(a.members.VIEWER.token)).catch(() => {});
    expect((await late.waitClosed()).code).toBe(1013);
    await server.start();
    await expectResyncThenLive(subscribers, before);
    // Subscribing again works: over SSE and on the socket that was refused.
    const again = await sse(live.origin, ACTIVITY, { headers: bearer(a.members.VIEWER.token), variables: { id: encodeGlobalId('Session', session.a) } });
    expect(again.status).toBe(200);
    await started(again, a, session.a);
    const onSocket = socket.subscribe(ACTIVITY, { id: encodeGlobalId('Session', session.a) });
    await started(onSocket, a, session.a);
    for (const stream of [again, socket, ...subscribers.map((subscriber) => subscriber.stream)]) stream.close();
  }, 120_000);

  it('a frozen database (SIGSTOP) with streams open: /ready answers within 1 s, a new subscription and a new connection_init end UNAVAILABLE by their deadline; after the thaw the streams carry live events', async () => {
    const subscribers = await openSubscribers();
    const socket = await wsConnect(live.origin);
    await socket.init(bearer(a.members.VIEWER.token));
    const readiness = pollReadiness(live.origin);
    await sleep(300);
    const frozenAt = Date.now();
    let frozen: Awaited<ReturnType<typeof refusedNow>>;
    let initClose: { code: number; ms: number };
    try {
      await server.freeze();
      // A new socket's connection_init is checked by the database within the deadline too.
      const initStarted = performance.now();
      const fresh = await wsConnect(live.origin);
      [frozen, initClose] = await Promise.all([
        refusedNow(socket),
        fresh.init(bearer(a.members.VIEWER.token)).catch(() => {}).then(async () => ({ code: (await fresh.waitClosed(REQUEST_TIMEOUT_MS + 10_000)).code, ms: performance.now() - initStarted })),
      ]);
    } finally {
      await server.thaw(); // never leave it frozen for what follows
    }
    const thawedAt = Date.now();
    await expect.poll(() => readiness.firstAt(200, thawedAt), { timeout: 10_000, interval: 50 }).toBeDefined();
    await readiness.stop();
    const seen = JSON.stringify(readiness.changes().map(([at, status]) => [at - frozenAt, status]));
    expect(readiness.firstAt(503, frozenAt)! - frozenAt, seen).toBeLessThan(1_000 + lag());
    expect(readiness.slowest(), seen).toBeLessThan(1_000 + lag());
    expect([frozen.sseReason, frozen.wsReason]).toEqual(['timeout', 'timeout']);
    expect(frozen.ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1_500); // loose: the machine is shared
    expect(initClose.code).toBe(1013);
    expect(initClose.ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1_500);
    // Still open, and live (a RESYNC first when the hub gave its silent connection up meanwhile). A write that lands
    // before the hub listens again is covered by that RESYNC, not delivered (seen failing a CI run): write again until one is heard.
    for (const subscriber of subscribers) {
      expect(subscriber.stream.endedAt, subscriber.name).toBeUndefined();
      let heard = false;
      for (let attempt = 0; attempt < 3 && !heard; attempt++) {
        const id = await subscriber.live();
        heard = await subscriber.stream.until((all) => ids(all, subscriber.field).includes(id), 8_000).then(() => true, () => false);
      }
      expect(heard, subscriber.name).toBe(true);
    }
    const onSocket = socket.subscribe(ACTIVITY, { id: encodeGlobalId('Session', session.a) });
    await started(onSocket, a, session.a);
    for (const stream of [socket, ...subscribers.map((subscriber) => subscriber.stream)]) stream.close();
  }, 120_000);
});
