// Round trips to PostgreSQL per request, counted on the wire: every write the
// pool makes to a database socket is followed by waiting for its answer, so
// writes per request = round trips. A simple read takes 1: BEGIN, the request
// check, the query and COMMIT in one write (once the operation is known to
// send all its statements as it starts; its first run takes 2). A write waits
// for the role first (FORBIDDEN before any of its SQL runs), then for its
// outcome before COMMIT: 3. A nested list adds one per level; a row by id is
// read together with its children (src/nodes/prefetch.ts).
import net from 'node:net';
import { afterEach, beforeAll, expect, it } from 'vitest';
import type { GraphQLError } from 'graphql';
import { TenantTransaction } from '../src/db/tenant-transaction.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createTestApp, createTestTenant, insertAgents, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;
let sessionId: string;
let agentId: string;
const databasePort = () => Number(new URL(db.appUrl).port);

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(1));
  tenant = await createTestTenant(db.owner, 'rt-co');
  const [agent] = await insertAgents(db.owner, tenant.id, tenant.members.MEMBER.userId, ['counted']);
  const [session] = await db.owner<{ id: string }[]>`
    insert into app.sessions (tenant_id, agent_id, started_by) values (${tenant.id}, ${agent!}, ${tenant.members.MEMBER.userId}) returning id`;
  sessionId = encodeGlobalId('Session', session!.id);
  agentId = encodeGlobalId('Agent', agent!);
});

// eslint-disable-next-line @typescript-eslint/unbound-method -- restored as the prototype's method, called with its own `this`
const original = net.Socket.prototype.write;
afterEach(() => {
  net.Socket.prototype.write = original;
});

/** Database writes made while `run` runs `times` times, per run. */
async function writesOf(run: () => Promise<unknown>, times: number): Promise<number> {
  let writes = 0;
  const port = databasePort();
  net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
    if (this.remotePort === port) writes++;
    return (original as (...values: unknown[]) => boolean).apply(this, args);
  };
  try {
    for (let i = 0; i < times; i++) await run();
  } finally {
    net.Socket.prototype.write = original;
  }
  return writes / times;
}

/** Per run, over 20 runs after one warm-up run (statements get prepared, the operation's shape is learned). */
async function writesPerRequest(run: () => Promise<unknown>): Promise<number> {
  await run();
  return writesOf(run, 20);
}

it('a simple read takes 1 round trip: BEGIN, the request check, the query and COMMIT in one write', async () => {
  const read = () => api.request('{ agents(first: 20) { edges { node { id name kind } } } }', { token: tenant.members.VIEWER.token });
  expect(await writesPerRequest(read)).toBe(1);
});

it('a read that turns out to need another level begins a new transaction for it, with its own request check: the right rows, no round trip more', async () => {
  const other = await createTestTenant(db.owner, 'rt-late');
  const query = '{ sessions(first: 5) { edges { node { id tasks(first: 5) { edges { node { title } } } } } } }';
  const read = () => api.request(query, { token: other.members.VIEWER.token });
  // The same statements prepared on the connection first (a tenant with a session, another text of the same shape).
  await api.request(query.replace('{ sessions', '{ __typename sessions'), { token: tenant.members.VIEWER.token });
  // No sessions yet: every statement leaves as the transaction begins; the operation is learned as one to read at once.
  expect(await writesPerRequest(read)).toBe(1);
  const [agent] = await insertAgents(db.owner, other.id, other.members.MEMBER.userId, ['late']);
  await db.owner`
    with s as (insert into app.sessions (tenant_id, agent_id, started_by) values (${other.id}, ${agent!}, ${other.members.MEMBER.userId}) returning id)
    insert into app.tasks (tenant_id, session_id, title, created_by) select ${other.id}, s.id, 'late task', ${other.members.MEMBER.userId} from s`;
  let response: Awaited<ReturnType<typeof read>> | undefined;
  // The tasks' statement comes after COMMIT was queued: BEGIN, the check and the statement, then COMMIT, in a second write.
  expect(await writesOf(async () => (response = await read()), 1)).toBe(2);
  const { sessions } = response!.body.data as { sessions: { edges: { node: { tasks: { edges: { node: { title: string } }[] } } }[] } };
  expect(sessions.edges.map((edge) => edge.node.tasks.edges.map((task) => task.node.title))).toEqual([['late task']]);
  // Learned for good: one transaction again, a round trip per level and one for COMMIT.
  expect(await writesOf(read, 3)).toBe(3);
});

it('a statement after an early COMMIT runs in a transaction of the same tenant, and is refused when the membership went meanwhile', async () => {
  const other = await createTestTenant(db.owner, 'rt-revoke');
  await insertAgents(db.owner, other.id, other.members.MEMBER.userId, ['seen']);
  const { userId } = other.members.VIEWER;
  const transaction = new TenantTransaction(db.appPool(1), { credentials: { kind: 'user', userId, roleCap: undefined }, tenant: other.id, allowedSlugs: undefined }, { commitEarly: true });
  type Seen = { tenant: string; agents: string[] };
  const probe = () =>
    transaction.run(async (tx) => {
      const [row] = await tx<Seen[]>`
        select current_setting('app.tenant_id', true) as tenant, array(select name from app.agents) as agents`;
      return row!;
    });
  try {
    expect(await probe()).toMatchObject({ tenant: other.id, agents: ['seen'] });
    expect(transaction.sentLate).toBe(false);
    expect(await probe()).toMatchObject({ tenant: other.id, agents: ['seen'] }); // a new transaction, checked again
    expect(transaction.sentLate).toBe(true);
    await db.owner`delete from app.memberships where tenant_id = ${other.id} and user_id = ${userId}`;
    const refused = await probe().then(() => undefined, (error: GraphQLError) => error);
    expect(refused?.extensions?.code).toBe('TENANT_NOT_FOUND');
  } finally {
    await transaction.end(false);
  }
});

it('a write takes 3: the role is known before its SQL is sent, its outcome before COMMIT', async () => {
  const write = () =>
    api.request('mutation($s: ID!) { createTask(input: { sessionId: $s, title: "counted" }) { task { id } } }', {
      token: tenant.members.MEMBER.token,
      variables: { s: sessionId },
    });
  expect(await writesPerRequest(write)).toBe(3);
});

it('a nested list adds one per level of nesting, never one per row', async () => {
  const nested = () =>
    api.request('{ sessions(first: 10) { edges { node { id agent { name } tasks(first: 10) { edges { node { title } } } } } } }', {
      token: tenant.members.VIEWER.token,
    });
  expect(await writesPerRequest(nested)).toBe(3);
});

it.each([
  ['a session with its agent and tasks', 'query($id: ID!) { session(id: $id) { id agent { name } tasks(first: 10) { edges { node { title } } } } }', () => sessionId],
  ['an agent with its sessions', 'query($id: ID!) { agent(id: $id) { name sessions(first: 10) { edges { node { status } } } } }', () => agentId],
])('a row by id is read with its children: %s, 1 like a simple read', async (_name, query, id) => {
  const byId = () => api.request(query, { token: tenant.members.VIEWER.token, variables: { id: id() } });
  expect(await writesPerRequest(byId)).toBe(1);
});
