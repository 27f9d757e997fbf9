// A subscription's start and its first events, with nothing lost between them:
// the start reads what the subscriber can see (its seen rows) in a transaction
// of its own, and a change committed after that read must still reach the
// stream. Each case holds the start at one point (the next call of a
// TenantTransaction method waits while the test changes rows and the hub
// delivers their events), so the window is as wide as the test wants, with no
// timing left to chance: after the read (before its transaction ends, where
// the stream used to be attached to the hub only later), and before the read.
// SSE and graphql-ws start through the same code (http/pipeline.ts
// startSubscription); both are driven here.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from '../src/db/pool.ts';
import { TenantTransaction } from '../src/db/tenant-transaction.ts';
import type { HubEvent } from '../src/events/hub.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createTestTenant, insertAgents, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { sse, startLiveServer, wsConnect, type LiveResult, type LiveServer } from './helpers/live.ts';

let db: TestDatabase;
let sql: Sql;
let live: LiveServer;

const ACTIVITY = `subscription ($id: ID!) {
  sessionActivity(sessionId: $id) { kind id node { __typename ... on Task { title } } }
}`;
type Event = { kind: string; id: string | null; node: Record<string, unknown> | null };
const events = (results: LiveResult[]) => results.map((result) => result.data?.sessionActivity as Event | undefined);
const taskId = (id: string) => encodeGlobalId('Task', id);

type Place = { tenant: TestTenant; session: string; other: string };

/** A tenant of its own per case (no other subscriber's events), with a session and a second one. */
async function place(slug: string): Promise<Place> {
  const tenant = await createTestTenant(db.owner, slug);
  const [agent] = await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, ['runner']);
  const sessions = await db.owner<{ id: string }[]>`
    insert into app.sessions (tenant_id, agent_id, started_by) values (${tenant.id}, ${agent!}, ${tenant.members.MEMBER.userId}), (${tenant.id}, ${agent!}, ${tenant.members.MEMBER.userId}) returning id`;
  return { tenant, session: sessions[0]!.id, other: sessions[1]!.id };
}

async function newTask(at: Place, title: string, session = at.session): Promise<string> {
  const [row] = await db.owner<{ id: string }[]>`
    insert into app.tasks (tenant_id, session_id, title, created_by) values (${at.tenant.id}, ${session}, ${title}, ${at.tenant.members.MEMBER.userId}) returning id`;
  return row!.id;
}

/**
 * A task made before a stream starts, returned once the hub has delivered its creation: the hub publishes from
 * the outbox a moment after the commit, so without the wait the CREATED could reach a stream that attaches
 * meanwhile (a re-read of the task as it is now: right, but not the event a test expects).
 */
async function settledTask(at: Place, title: string, session = at.session): Promise<string> {
  const hub = hubEvents(at.tenant.id);
  try {
    const id = await newTask(at, title, session);
    await hub.row('Task', id, 'created');
    return id;
  } finally {
    hub.stop();
  }
}

/** What the hub delivers to the tenant's listeners, as the test's own listener hears it. */
function hubEvents(tenantId: string, server = live) {
  const heard: HubEvent[] = [];
  const stop = server.hub.subscribe(tenantId, (event) => heard.push(event));
  return {
    stop,
    /** Resolves once the hub has delivered a row event (type, id, kind), or throws. */
    async row(type: string, id: string, kind: string, ms = 10_000) {
      const deadline = Date.now() + ms;
      const has = () => heard.some((event) => event.type === 'row' && event.change.type === type && event.change.id === id && event.change.kind === kind);
      while (!has()) {
        if (Date.now() > deadline) throw new Error(`the hub never delivered ${type}:${id}:${kind}; heard ${JSON.stringify(heard)}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    async access(kind: string, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!heard.some((event) => event.type === 'access' && event.change.kind === kind)) {
        if (Date.now() > deadline) throw new Error(`the hub never delivered the access change ${kind}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
  };
}

const prototype = TenantTransaction.prototype as unknown as Record<'run' | 'end', (...args: unknown[]) => Promise<unknown>>;
const originals = { run: prototype.run, end: prototype.end };
afterEach(() => {
  prototype.run = originals.run;
  prototype.end = originals.end;
});

/**
 * The next call of TenantTransaction's `method` (any transaction's) waits until `during` is done, then runs; the
 * method is itself again from that call on. Resolves once `during` is done.
 *   'end': the subscription start's end, after its read (nothing else ends a transaction meanwhile in these cases).
 *   'run': its first repository call, the first statement after the request check (the start's read).
 */
function holdNext(method: 'run' | 'end', during: () => Promise<void>): Promise<void> {
  const original = originals[method];
  let done!: () => void;
  let failed!: (error: unknown) => void;
  const held = new Promise<void>((resolve, reject) => ((done = resolve), (failed = reject)));
  prototype[method] = async function (this: TenantTransaction, ...args: unknown[]) {
    prototype[method] = original;
    try {
      await during();
      done();
    } catch (error) {
      failed(error);
    }
    return original.apply(this, args);
  };
  return held;
}

/** A new task of the session heard by the stream: every event before it was sent before it. */
async function untilMarker(at: Place, stream: { until(predicate: (results: LiveResult[]) => boolean, ms?: number): Promise<LiveResult[]> }) {
  const marker = taskId(await newTask(at, 'marker'));
  const results = await stream.until((r) => events(r).some((event) => event?.id === marker));
  return events(results).filter((event) => event?.id !== marker && event?.id !== encodeGlobalId('Session', at.session));
}

beforeAll(async () => {
  db = await useTestDatabase();
  sql = db.appPool(6);
  live = await startLiveServer(sql, db.appUrl, { subscriptions: { perTenant: 10 } });
});

afterAll(async () => {
  await live?.close();
});

describe('a change committed after the start read what the subscriber can see', () => {
  it('SSE: a task the start saw, updated before the stream began, is sent UPDATED as it is now', async () => {
    const at = await place('start-upd');
    const task = await settledTask(at, 'before');
    const hub = hubEvents(at.tenant.id);
    const window = holdNext('end', async () => {
      await db.owner`update app.tasks set title = 'changed in the window' where tenant_id = ${at.tenant.id} and id = ${task}`;
      await hub.row('Task', task, 'updated');
    });
    const stream = await sse(live.origin, ACTIVITY, { headers: { authorization: `Bearer ${at.tenant.members.VIEWER.token}` }, variables: { id: encodeGlobalId('Session', at.session) } });
    expect(stream.status).toBe(200);
    await window;
    expect(await untilMarker(at, stream)).toEqual([{ kind: 'UPDATED', id: taskId(task), node: { __typename: 'Task', title: 'changed in the window' } }]);
    stream.close();
    hub.stop();
  });

  it('graphql-ws: a task the start saw, deleted before the stream began, is sent DELETED', async () => {
    const at = await place('start-del');
    const task = await settledTask(at, 'doomed');
    const hub = hubEvents(at.tenant.id);
    const client = await wsConnect(live.origin);
    await client.init({ authorization: `Bearer ${at.tenant.members.VIEWER.token}` }); // its own transaction ends before the hold is set
    const window = holdNext('end', async () => {
      await db.owner`delete from app.tasks where tenant_id = ${at.tenant.id} and id = ${task}`;
      await hub.row('Task', task, 'deleted');
    });
    const op = client.subscribe(ACTIVITY, { id: encodeGlobalId('Session', at.session) });
    await window;
    expect(await untilMarker(at, op)).toEqual([{ kind: 'DELETED', id: taskId(task), node: null }]);
    client.close();
    hub.stop();
  });

  it('SSE: a task created in the window is sent CREATED; a deleted one the subscriber never saw (another session\'s) is not sent', async () => {
    const at = await place('start-new');
    const elsewhere = await settledTask(at, 'not followed', at.other);
    const hub = hubEvents(at.tenant.id);
    let created = '';
    const window = holdNext('end', async () => {
      created = await newTask(at, 'born in the window');
      await db.owner`delete from app.tasks where tenant_id = ${at.tenant.id} and id = ${elsewhere}`;
      await hub.row('Task', created, 'created');
      await hub.row('Task', elsewhere, 'deleted');
    });
    const stream = await sse(live.origin, ACTIVITY, { headers: { authorization: `Bearer ${at.tenant.members.VIEWER.token}` }, variables: { id: encodeGlobalId('Session', at.session) } });
    await window;
    expect(await untilMarker(at, stream)).toEqual([{ kind: 'CREATED', id: taskId(created), node: { __typename: 'Task', title: 'born in the window' } }]);
    stream.close();
    hub.stop();
  });

  it('SSE: the subscriber removed from the tenant in the window: the stream ends FORBIDDEN without another event', async () => {
    const at = await place('start-gone');
    const hub = hubEvents(at.tenant.id);
    const window = holdNext('end', async () => {
      await db.owner`delete from app.memberships where tenant_id = ${at.tenant.id} and user_id = ${at.tenant.members.VIEWER.userId}`;
      await hub.access('member_removed');
    });
    const stream = await sse(live.origin, ACTIVITY, { headers: { authorization: `Bearer ${at.tenant.members.VIEWER.token}` }, variables: { id: encodeGlobalId('Session', at.session) } });
    await window;
    await stream.ended(5_000); // its re-check is asked for by the held access change: no row event is needed for it
    expect(stream.results.map((result) => result.errors?.[0]?.extensions?.code)).toEqual(['FORBIDDEN']);
    hub.stop();
  });
});

describe('a change heard after the stream attached but committed before the start read', () => {
  it('an update is sent once, as the row is now (an event is a re-read, never a diff: harmless); a task deleted before the read, never seen, is not sent', async () => {
    const at = await place('start-early');
    const task = await settledTask(at, 'before');
    const gone = await settledTask(at, 'gone before the read');
    const hub = hubEvents(at.tenant.id);
    const window = holdNext('run', async () => {
      await db.owner`update app.tasks set title = 'changed before the read' where tenant_id = ${at.tenant.id} and id = ${task}`;
      await db.owner`delete from app.tasks where tenant_id = ${at.tenant.id} and id = ${gone}`;
      await hub.row('Task', task, 'updated');
      await hub.row('Task', gone, 'deleted');
    });
    const stream = await sse(live.origin, ACTIVITY, { headers: { authorization: `Bearer ${at.tenant.members.VIEWER.token}` }, variables: { id: encodeGlobalId('Session', at.session) } });
    await window;
    expect(await untilMarker(at, stream)).toEqual([{ kind: 'UPDATED', id: taskId(task), node: { __typename: 'Task', title: 'changed before the read' } }]);
    stream.close();
    hub.stop();
  });
});

describe('the events held while a subscription starts are bounded', () => {
  let small: LiveServer;
  beforeAll(async () => {
    small = await startLiveServer(sql, db.appUrl, { subscriptions: { buffer: 4 } });
  });
  afterAll(async () => {
    await small?.close();
  });

  it('past SUBSCRIPTION_BUFFER of them, the stream begins with RESYNC (query again) instead of holding them all', async () => {
    const at = await place('start-many');
    const hub = hubEvents(at.tenant.id, small); // that server's own hub: what it heard, its subscription would have
    let last = '';
    const window = holdNext('end', async () => {
      for (let n = 0; n < 6; n++) last = await newTask(at, `burst ${n}`);
      await hub.row('Task', last, 'created');
    });
    const stream = await sse(small.origin, ACTIVITY, { headers: { authorization: `Bearer ${at.tenant.members.VIEWER.token}` }, variables: { id: encodeGlobalId('Session', at.session) } });
    await window;
    expect(await untilMarker(at, stream)).toEqual([{ kind: 'RESYNC', id: null, node: null }]);
    stream.close();
    hub.stop();
  });
});
