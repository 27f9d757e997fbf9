// The event source (src/events/hub.ts + migration 000013) against a real
// PostgreSQL: what a tenant's listener receives (its own tenant's committed
// changes, in commit order, ids only), what it never receives (a rolled-back
// change, another tenant's), the access changes, the fold of a bulk statement
// into one resync, a forged payload dropped, and a killed listening backend
// answered with a resync and then live events again. Writes go through the
// service behind PgBouncer (transaction mode) while the hub listens directly.
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Sql } from '../src/db/pool.ts';
import { createEventHub, parsePayload, type EventHub, type HubEvent } from '../src/events/hub.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createTestApp, createTestTenant, insertAgents, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { startPgBouncer } from './helpers/pgbouncer.ts';

let db: TestDatabase;
let hub: EventHub;
let a: TestTenant;
let b: TestTenant;
let session: { a: string; b: string };
const logLines: Array<{ msg: string; level: number }> = [];

/** A pino logger whose lines the tests can read. */
function recordingLogger(lines = logLines) {
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { msg: string; level: number });
      done();
    },
  });
  return pino({ level: 'info' }, stream);
}

type Listener = { events: HubEvent[]; until(predicate: (events: HubEvent[]) => boolean, ms?: number): Promise<HubEvent[]>; stop(): void };

function listen(target: EventHub, tenantId: string): Listener {
  const events: HubEvent[] = [];
  const stop = target.subscribe(tenantId, (event) => events.push(event));
  return {
    events,
    stop,
    async until(predicate, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!predicate(events)) {
        if (Date.now() > deadline) throw new Error(`timed out; received ${JSON.stringify(events)}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return events;
    },
  };
}

const rows = (events: HubEvent[]) => events.flatMap((event) => (event.type === 'row' ? [`${event.change.type}:${event.change.id}:${event.change.kind}`] : []));
const accesses = (events: HubEvent[]) => events.flatMap((event) => (event.type === 'access' ? [event.change] : []));
const hasRow = (type: string, id: string, kind: string) => (events: HubEvent[]) => rows(events).includes(`${type}:${id}:${kind}`);

async function until(predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** An agent row written and committed as the owner; the marker a test waits for after what it must not see. */
async function marker(tenant: TestTenant): Promise<string> {
  const [id] = await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, [`marker ${randomUUID()}`]);
  return id!;
}

/** Waits until everything written for the tenant so far has been delivered (a marker after it has). */
async function settle(tenant: TestTenant): Promise<void> {
  const heard = listen(hub, tenant.id);
  // A marker in the same batch as a flood is folded into the flood's resync: then another marker.
  for (let attempt = 0; ; attempt++) {
    const id = await marker(tenant);
    const seen = heard.events.length;
    await heard.until((events) => hasRow('Agent', id, 'created')(events) || events.slice(seen).some((event) => event.type === 'resync'));
    if (hasRow('Agent', id, 'created')(heard.events)) break;
    if (attempt > 5) throw new Error('every marker was folded');
  }
  heard.stop();
}

beforeAll(async () => {
  db = await useTestDatabase();
  a = await createTestTenant(db.owner, 'events-a');
  b = await createTestTenant(db.owner, 'events-b');
  const [agentA] = await insertAgents(db.owner, a.id, a.members.ADMIN.userId, ['runner']);
  const [agentB] = await insertAgents(db.owner, b.id, b.members.ADMIN.userId, ['runner']);
  const [sa] = await db.owner<{ id: string }[]>`insert into app.sessions (tenant_id, agent_id) values (${a.id}, ${agentA!}) returning id`;
  const [sb] = await db.owner<{ id: string }[]>`insert into app.sessions (tenant_id, agent_id) values (${b.id}, ${agentB!}) returning id`;
  session = { a: sa!.id, b: sb!.id };
  // The request role, direct: what the service's DATABASE_LISTEN_URL defaults to.
  hub = createEventHub({ url: db.appUrl, logger: recordingLogger(), minBackoffMs: 50, maxBackoffMs: 500 });
  await until(() => hub.connected);
  // The fixtures' events wait in the outbox for a publisher: let them pass before the tests listen.
  for (const tenant of [a, b]) await settle(tenant);
});

afterAll(async () => {
  await hub?.close();
});

describe('what a tenant hears', () => {
  it('its own committed changes, in commit order, ids only', async () => {
    const heard = listen(hub, a.id);
    const [agent] = await insertAgents(db.owner, a.id, a.members.ADMIN.userId, ['follower']);
    await db.owner`update app.agents set description = 'busy' where tenant_id = ${a.id} and id = ${agent!}`;
    const [task] = await db.owner<{ id: string }[]>`
      insert into app.tasks (tenant_id, session_id, title) values (${a.id}, ${session.a}, 'work') returning id`;
    await db.owner`update app.tasks set status = 'running' where tenant_id = ${a.id} and id = ${task!.id}`;
    await db.owner`delete from app.tasks where tenant_id = ${a.id} and id = ${task!.id}`;
    await db.owner`delete from app.agents where tenant_id = ${a.id} and id = ${agent!}`;
    const events = await heard.until(hasRow('Agent', agent!, 'deleted'));
    heard.stop();
    expect(rows(events)).toEqual([
      `Agent:${agent}:created`,
      `Agent:${agent}:updated`,
      `Task:${task!.id}:created`,
      `Task:${task!.id}:updated`,
      `Task:${task!.id}:deleted`,
      `Agent:${agent}:deleted`,
    ]);
    for (const event of events) {
      if (event.type === 'row') expect(Object.keys(event.change).sort()).toEqual(['id', 'kind', 'tenantId', 'type']);
      if (event.type === 'row') expect(event.change.tenantId).toBe(a.id);
    }
  });

  it('the order of many concurrent writers is the order they committed in, per row', async () => {
    const heard = listen(hub, a.id);
    const [task] = await db.owner<{ id: string }[]>`
      insert into app.tasks (tenant_id, session_id, title) values (${a.id}, ${session.a}, 'contended') returning id`;
    // 20 transactions update the same row; each waits for the previous one's row lock, then deletes at the end.
    const writers = postgres(db.ownerUrl, { max: 10, onnotice: () => {} });
    try {
      await Promise.all(Array.from({ length: 20 }, (_, i) => writers`update app.tasks set tokens = ${i + 1} where tenant_id = ${a.id} and id = ${task!.id}`));
      await writers`delete from app.tasks where tenant_id = ${a.id} and id = ${task!.id}`;
    } finally {
      await writers.end();
    }
    const events = await heard.until(hasRow('Task', task!.id, 'deleted'));
    heard.stop();
    const forTask = rows(events).filter((row) => row.startsWith(`Task:${task!.id}`));
    // Updates of one row published in one batch may be merged by NOTIFY (same payload): at least one, never after the delete.
    expect(forTask[0]).toBe(`Task:${task!.id}:created`);
    expect(forTask.at(-1)).toBe(`Task:${task!.id}:deleted`);
    expect(forTask.slice(1, -1).every((row) => row.endsWith(':updated'))).toBe(true);
    expect(forTask.length).toBeGreaterThanOrEqual(3);
  });

  it('nothing of a change that was rolled back', async () => {
    const heard = listen(hub, a.id);
    const rolledBack = randomUUID();
    await db.owner
      .begin(async (tx) => {
        await tx`insert into app.agents (tenant_id, id, name, kind) values (${a.id}, ${rolledBack}, 'never', 'assistant')`;
        throw new Error('roll back');
      })
      .catch(() => {});
    const after = await marker(a);
    const events = await heard.until(hasRow('Agent', after, 'created'));
    heard.stop();
    expect(rows(events).filter((row) => row.includes(rolledBack))).toEqual([]);
    const [left] = await db.owner<{ n: number }[]>`select count(*)::int as n from app_private.event_outbox where payload like ${'%' + rolledBack + '%'}`;
    expect(left!.n).toBe(0);
  });

  it('nothing of another tenant', async () => {
    const heardA = listen(hub, a.id);
    const heardB = listen(hub, b.id);
    const ofA = await marker(a);
    await db.owner`insert into app.tasks (tenant_id, session_id, title) values (${a.id}, ${session.a}, 'of A')`;
    const ofB = await marker(b);
    await heardA.until(hasRow('Agent', ofA, 'created'));
    const eventsB = await heardB.until(hasRow('Agent', ofB, 'created'));
    heardA.stop();
    heardB.stop();
    expect(rows(eventsB)).toEqual([`Agent:${ofB}:created`]);
    expect(eventsB.every((event) => event.type !== 'row' || event.change.tenantId === b.id)).toBe(true);
  });

  it('a flood of one tenant (more than 100 row events in a published batch) is a resync, not an event per row', async () => {
    const heard = listen(hub, a.id);
    await db.owner`insert into app.tasks (tenant_id, session_id, title) select ${a.id}, ${session.a}, 'bulk ' || i from generate_series(1, 1001) i`;
    await db.owner`delete from app.tasks where tenant_id = ${a.id} and title like 'bulk %'`;
    const after = await marker(a);
    const events = await heard.until(hasRow('Agent', after, 'created'));
    heard.stop();
    expect(events.filter((event) => event.type === 'resync').length).toBeGreaterThanOrEqual(2); // the insert's and the delete's
    // What is left over from a batch's fold (at most 100 per batch) arrives one by one; nowhere near 2002.
    expect(rows(events).filter((row) => row.startsWith('Task:')).length).toBeLessThan(300);
    expect(rows(events).at(-1)).toBe(`Agent:${after}:created`);
  });

  it('the fold leaves the other tenants and every access change alone', async () => {
    const heardA = listen(hub, a.id);
    const heardB = listen(hub, b.id);
    // One transaction: a flood in A, one change in B and a role change in A, all in the same published batch.
    const [agentB] = await db.owner.begin(async (tx) => {
      await tx`insert into app.tasks (tenant_id, session_id, title) select ${a.id}, ${session.a}, 'flood ' || i from generate_series(1, 150) i`;
      await tx`update app.memberships set role = 'MEMBER' where tenant_id = ${a.id} and user_id = ${a.members.VIEWER.userId}`;
      return tx<{ id: string }[]>`insert into app.agents (tenant_id, name, kind) values (${b.id}, 'beside the flood', 'assistant') returning id`;
    });
    await heardB.until(hasRow('Agent', agentB!.id, 'created'));
    const eventsA = await heardA.until((events) => accesses(events).length > 0);
    heardA.stop();
    heardB.stop();
    expect(accesses(eventsA)).toEqual([{ tenantId: a.id, kind: 'role_changed', userId: a.members.VIEWER.userId }]);
    expect(eventsA.some((event) => event.type === 'resync')).toBe(true);
    await db.owner`update app.memberships set role = 'VIEWER' where tenant_id = ${a.id} and user_id = ${a.members.VIEWER.userId}`;
    await db.owner`delete from app.tasks where tenant_id = ${a.id} and title like 'flood %'`;
    await settle(a); // the clean-up's events are not the next test's
  });

  it('a payload that is not one of ours is dropped (anyone may NOTIFY the channel)', async () => {
    const heard = listen(hub, a.id);
    const forged = [
      'not json',
      JSON.stringify({ event: 'row', tenant: a.id, type: 'Secret', id: randomUUID(), kind: 'created' }),
      JSON.stringify({ event: 'row', tenant: a.id, type: 'Agent', id: 'x', kind: 'created' }),
      JSON.stringify({ event: 'row', tenant: a.id, type: 'Agent', id: randomUUID(), kind: 'exploded' }),
      JSON.stringify({ event: 'access', tenant: a.id, kind: 'everything' }),
      JSON.stringify({ event: 'row', tenant: 'acme', type: 'Agent', id: randomUUID(), kind: 'created' }),
    ];
    const app = postgres(db.appUrl, { max: 1, onnotice: () => {} });
    try {
      for (const payload of forged) await app`select pg_notify('tenancy_events', ${payload})`;
    } finally {
      await app.end();
    }
    const after = await marker(a);
    const events = await heard.until(hasRow('Agent', after, 'created'));
    heard.stop();
    expect(events).toEqual([{ type: 'row', change: { tenantId: a.id, type: 'Agent', id: after, kind: 'created' } }]);
  });

  it('a listener that throws does not keep the event from the others', async () => {
    const stop = hub.subscribe(a.id, () => {
      throw new Error('subscriber bug');
    });
    const heard = listen(hub, a.id);
    const after = await marker(a);
    await heard.until(hasRow('Agent', after, 'created'));
    stop();
    heard.stop();
  });
});

describe('access changes', () => {
  it('a role change, a removed member, a revoked key, a suspension and a reactivation, each named', async () => {
    const heard = listen(hub, b.id);
    const member = b.members.MEMBER.userId;
    await db.owner`update app.memberships set role = 'VIEWER' where tenant_id = ${b.id} and user_id = ${member}`;
    // Touching a membership without changing its role is a Member update, not an access change.
    await db.owner`update app.memberships set updated_at = now() where tenant_id = ${b.id} and user_id = ${b.members.LEAD.userId}`;
    const [key] = await db.owner<{ id: string }[]>`
      insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by)
      values (${b.id}, 'ci', ${'tnk_' + randomBytes(6).toString('base64url').slice(0, 8)}, ${randomBytes(32)}, 'MEMBER', ${b.members.ADMIN.userId})
      returning id`;
    await db.owner`update app.api_keys set revoked_at = now() where tenant_id = ${b.id} and id = ${key!.id}`;
    await db.owner`delete from app.memberships where tenant_id = ${b.id} and user_id = ${member}`;
    await db.owner`update app.tenants set status = 'suspended', suspended_at = now() where id = ${b.id}`;
    await db.owner`update app.tenants set status = 'active', suspended_at = null where id = ${b.id}`;
    const events = await heard.until((seen) => accesses(seen).some((change) => change.kind === 'tenant_reactivated'));
    heard.stop();
    expect(accesses(events)).toEqual([
      { tenantId: b.id, kind: 'role_changed', userId: member },
      { tenantId: b.id, kind: 'api_key_revoked', apiKeyId: key!.id },
      { tenantId: b.id, kind: 'member_removed', userId: member },
      { tenantId: b.id, kind: 'tenant_suspended' },
      { tenantId: b.id, kind: 'tenant_reactivated' },
    ]);
    expect(rows(events)).toEqual([
      `Member:${member}:updated`,
      `Member:${b.members.LEAD.userId}:updated`,
      `Member:${member}:deleted`,
    ]);
  });
});

describe('the listening connection', () => {
  it('is a connection of its own, named tenancy-events, and says so in the log', async () => {
    const [backend] = await db.owner<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name = 'tenancy-events'`;
    expect(backend!.n).toBe(1);
    expect(logLines.map((line) => line.msg)).toContain('events: listening');
  });

  it('killed: every subscriber gets a resync, the log says so, and live events follow', async () => {
    const heardA = listen(hub, a.id);
    const heardB = listen(hub, b.id);
    const [killed] = await db.owner<{ done: boolean }[]>`
      select bool_and(pg_terminate_backend(pid)) as done from pg_stat_activity
      where datname = current_database() and application_name = 'tenancy-events'`;
    expect(killed!.done).toBe(true);
    await heardA.until((events) => events.some((event) => event.type === 'resync'));
    await heardB.until((events) => events.some((event) => event.type === 'resync'));
    expect(hub.connected).toBe(true);
    const messages = logLines.map((line) => line.msg);
    expect(messages).toContain('events: lost the listening connection; reconnecting (subscribers get a resync when it is back)');
    expect(messages).toContain('events: listening again; subscribers get a resync');
    const after = await marker(a);
    await heardA.until(hasRow('Agent', after, 'created'));
    heardA.stop();
    heardB.stop();
  });

  it('a write committed while the listener was gone is published once it is back (the outbox keeps it)', async () => {
    const heard = listen(hub, a.id);
    const listeners = (await db.owner<{ pid: number }[]>`select pid from pg_stat_activity where datname = current_database() and application_name = 'tenancy-events'`).map((row) => row.pid);
    await db.owner`select pg_terminate_backend(pid) from unnest(${listeners}::int[]) pid`;
    // pg_terminate_backend only signals: the write comes once that backend is gone, so no publish of the old
    // connection can carry it (on a loaded machine the killed backend could still publish, with no resync before).
    await expect.poll(async () => (await db.owner`select 1 from pg_stat_activity where pid = any(${listeners}::int[])`).length, { timeout: 5_000, interval: 10 }).toBe(0);
    const during = await marker(a);
    const events = await heard.until(hasRow('Agent', during, 'created'));
    heard.stop();
    expect(events.some((event) => event.type === 'resync')).toBe(true);
  });

  it('two processes: one publishes, both hear everything, and the other takes over when the publisher goes', async () => {
    const second = createEventHub({ url: db.appUrl, logger: pino({ level: 'silent' }), minBackoffMs: 50, maxBackoffMs: 500 });
    try {
      await until(() => second.connected);
      const first = listen(hub, a.id);
      const other = listen(second, a.id);
      const before = await marker(a);
      await first.until(hasRow('Agent', before, 'created'));
      await other.until(hasRow('Agent', before, 'created'));
      const publishers = await db.owner<{ pid: number }[]>`
        select l.pid from pg_locks l join pg_stat_activity a using (pid)
        where l.locktype = 'advisory' and l.granted and a.application_name = 'tenancy-events' and a.datname = current_database()`;
      expect(publishers).toHaveLength(1);
      await db.owner`select pg_terminate_backend(${publishers[0]!.pid})`;
      const after = await marker(a);
      await other.until(hasRow('Agent', after, 'created'));
      await first.until(hasRow('Agent', after, 'created'));
      first.stop();
      other.stop();
    } finally {
      await second.close();
    }
  });

  it('close ends the connection and the subscriptions', async () => {
    const other = createEventHub({ url: db.appUrl, logger: pino({ level: 'silent' }) });
    await until(() => other.connected);
    const heard = listen(other, a.id);
    await other.close();
    expect(other.connected).toBe(false);
    await marker(a);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(heard.events.filter((event) => event.type === 'row')).toEqual([]);
    // The backend goes once it has read the close, a moment after close() resolved: polled (a loaded machine can take longer than the 200 ms above).
    const left = async () => (await db.owner<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name = 'tenancy-events'`)[0]!.n;
    await expect.poll(left, { timeout: 5_000, interval: 20 }).toBe(1); // the suite's hub only
  });
});

describe('behind PgBouncer', () => {
  let bouncer: Awaited<ReturnType<typeof startPgBouncer>>;
  let pool: Sql;
  beforeAll(async () => {
    bouncer = await startPgBouncer({ poolSize: 2 });
    pool = createPool(bouncer.url(db.appUrl), { max: 8, prepare: false });
    return async () => {
      await pool.end({ timeout: 5 });
      await bouncer.stop();
    };
  });

  it('mutations through PgBouncer (transaction mode) reach the hub listening directly, in order', async () => {
    const service = createTestApp(pool);
    const heard = listen(hub, a.id);
    const created: string[] = [];
    for (let i = 0; i < 5; i++) {
      const response = await service.request('mutation($input: CreateAgentInput!) { createAgent(input: $input) { agent { id } } }', {
        token: a.members.MEMBER.token,
        variables: { input: { name: `through bouncer ${i}`, kind: 'assistant' } },
      });
      expect(response.body.errors).toBeUndefined();
      created.push((response.body.data as { createAgent: { agent: { id: string } } }).createAgent.agent.id);
    }
    const agents = await db.owner<{ id: string }[]>`select id from app.agents where tenant_id = ${a.id} and name like 'through bouncer %'`;
    const ids = created.map((globalId) => agents.find((row) => encodeGlobalId('Agent', row.id) === globalId)!.id);
    const events = await heard.until(hasRow('Agent', ids.at(-1)!, 'created'));
    heard.stop();
    expect(rows(events)).toEqual(ids.map((id) => `Agent:${id}:created`));
  });
});

describe('a listening URL through PgBouncer', () => {
  it('is named in a warning: the server is on another port than the URL', async () => {
    const bouncer = await startPgBouncer({ poolSize: 2 });
    const lines: Array<{ msg: string; level: number }> = [];
    const proxied = createEventHub({ url: bouncer.url(db.appUrl), logger: recordingLogger(lines) });
    try {
      await until(() => proxied.connected);
      expect(lines.map((line) => line.msg)).toContainEqual(expect.stringContaining('LISTEN needs a direct connection (DATABASE_LISTEN_URL)'));
    } finally {
      await proxied.close();
      await bouncer.stop();
    }
    expect(logLines.map((line) => line.msg)).not.toContainEqual(expect.stringContaining('LISTEN needs a direct connection'));
  });
});

describe('parsePayload', () => {
  it('reads the triggers\' payloads and nothing else', () => {
    const tenant = randomUUID();
    const id = randomUUID();
    expect(parsePayload(JSON.stringify({ event: 'row', tenant, type: 'Task', id, kind: 'updated' }))).toEqual({
      tenantId: tenant,
      event: { type: 'row', change: { tenantId: tenant, type: 'Task', id, kind: 'updated' } },
    });
    expect(parsePayload(JSON.stringify({ event: 'access', tenant, kind: 'api_key_revoked', key: id }))).toEqual({
      tenantId: tenant,
      event: { type: 'access', change: { tenantId: tenant, kind: 'api_key_revoked', apiKeyId: id } },
    });
    expect(parsePayload(JSON.stringify({ event: 'resync', tenant }))).toEqual({ tenantId: tenant, event: { type: 'resync' } });
    for (const bad of ['', '[]', 'null', '{"event":"row"}', JSON.stringify({ event: 'access', tenant, kind: 'role_changed', user: 'admin' }), JSON.stringify({ event: 'other', tenant })]) {
      expect(parsePayload(bad), bad).toBeUndefined();
    }
  });
});
