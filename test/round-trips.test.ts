// Round trips to PostgreSQL per request, counted on the wire: every write the
// pool makes to a database socket is followed by waiting for its answer, so
// writes per request = round trips. A simple read takes 1: BEGIN, the request
// check, the query and COMMIT in one write (once the operation is known to
// send all its statements as it starts; its first run takes 2). A simple
// write (one root field whose statement is its last act that can fail, an
// answer that reads only the written row: src/graphql/operation.ts
// commitsWithStatement) runs as the principal its caller's last request check
// answered, its statement and COMMIT behind BEGIN and the check, which aborts
// it unless it found that principal (test/assumed-principal.test.ts): 1 (its
// caller's first write takes 2: the role first, FORBIDDEN before any of its
// SQL runs, then its statement and COMMIT; the operation's first run 3). Any
// other write waits for its outcome before COMMIT: 3. A nested list adds one per level; a row by
// id is read together with its children (src/nodes/prefetch.ts).
import { beforeAll, expect, it } from 'vitest';
import type { GraphQLError } from 'graphql';
import { CommittedBeforeFailure, TenantTransaction } from '../src/db/tenant-transaction.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createTestApp, createTestTenant, insertAgents, insertSession, insertWorkSession, TEST_HTTP, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { writesTo } from './helpers/wire.ts';

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
  ({ agentId, sessionId } = await insertWorkSession(db.owner, tenant, 'counted'));
});

/** Database writes made while `run` runs `times` times, per run. */
async function writesOf(run: () => Promise<unknown>, times: number): Promise<number> {
  const { writes } = await writesTo(databasePort(), async () => {
    for (let i = 0; i < times; i++) await run();
  });
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

const CREATE_TASK = 'mutation($s: ID!, $t: String!) { createTask(input: { sessionId: $s, title: $t }) { task { id title status } } }';
const tasksTitled = async (title: string) => (await db.owner<{ n: number }[]>`select count(*)::int as n from app.tasks where title = ${title}`)[0]!.n;

it('a simple write takes 1: it runs as the principal its caller\'s last check answered, its statement and COMMIT leave with BEGIN and the check', async () => {
  const write = () => api.request(CREATE_TASK, { token: tenant.members.MEMBER.token, variables: { s: sessionId, t: 'counted' } });
  const before = await tasksTitled('counted');
  await write(); // the operation's shape learned; the next run prepares the check that confirms an assumed principal
  expect(await writesPerRequest(write)).toBe(1);
  expect(await tasksTitled('counted')).toBe(before + 22); // each committed
});

it('a write whose statement fails commits nothing with it: the coded error, no row, and the connection serves the next write', async () => {
  const write = (s: string, t: string) => api.request(CREATE_TASK, { token: tenant.members.MEMBER.token, variables: { s, t } });
  await write(sessionId, 'learned'); // the operation is learned as one that commits with its statement
  await write(sessionId, 'learned'); // the caller's principal is assumed (the check that confirms it prepared)
  const [agent] = await insertAgents(db.owner, tenant.id, tenant.members.MEMBER.userId, ['ended']);
  const ended = await insertSession(db.owner, tenant.id, agent!, tenant.members.MEMBER.userId);
  await db.owner`update app.sessions set status = 'completed', ended_at = now() where id = ${ended}`;
  let refused: Awaited<ReturnType<typeof write>> | undefined;
  expect(await writesOf(async () => (refused = await write(encodeGlobalId('Session', ended), 'refused')), 1)).toBe(1);
  expect(refused!.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT'); // tasks_session_active, as with 3 round trips
  expect(refused!.body.data).toBeNull();
  expect(await tasksTitled('refused')).toBe(0);
  expect((await write(sessionId, 'after')).body.errors).toBeUndefined();
  expect(await tasksTitled('after')).toBe(1);
});

it.each([
  ['its answer reads more than the row (a relation)', 'mutation($s: ID!) { createTask(input: { sessionId: $s, title: "related" }) { task { id session { status } } } }'],
  ['it has two root fields', 'mutation($s: ID!) { a: createTask(input: { sessionId: $s, title: "two" }) { task { id } } b: createTask(input: { sessionId: $s, title: "two" }) { task { id } } }'],
])('a write waits for its outcome before COMMIT when %s: 3 round trips or more', async (_name, query) => {
  const write = () => api.request(query, { token: tenant.members.MEMBER.token, variables: { s: sessionId } });
  expect(await writesPerRequest(write)).toBeGreaterThanOrEqual(3);
});

it('a write refused after its statement succeeded (its row past the response budget) writes nothing: under a small budget it never commits with its statement', async () => {
  const small = createTestApp(db.appPool(1), { http: { ...TEST_HTTP, maxResponseBytes: 4096 } });
  const write = (input: string) =>
    small.request('mutation($s: ID!, $i: JSONObject) { createTask(input: { sessionId: $s, title: "budget", input: $i }) { task { id input } } }', {
      token: tenant.members.MEMBER.token,
      variables: { s: sessionId, i: { text: input } },
    });
  expect((await write('small')).body.errors).toBeUndefined(); // learned: one statement in one tick after the check
  const before = await tasksTitled('budget');
  const refused = await write('x'.repeat(8000)); // its row, returned with the input the answer shows, is past the budget
  expect(refused.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT'); // the response limit
  expect(await tasksTitled('budget')).toBe(before);
});

it('the mechanism: a write committed with its statement is never silent about a failure after it, refuses a statement after its COMMIT, and a rolled-back one cannot succeed', async () => {
  const other = await createTestTenant(db.owner, 'rt-write');
  const { userId } = other.members.MEMBER;
  const selection = { credentials: { kind: 'user' as const, userId, roleCap: undefined }, tenant: other.id, allowedSlugs: undefined };
  const insert = (tx: Parameters<Parameters<TenantTransaction['run']>[0]>[0], name: string) =>
    tx`insert into app.agents (tenant_id, name, kind, created_by) values (app.current_tenant_id(), ${name}, 'assistant', app.current_user_id())`;
  // What commitsWithStatement rules out: the operation fails after its statement. The write is committed: end says so.
  const broken = new TenantTransaction(db.appPool(1), selection, { commitWithWrite: true });
  await broken.principal();
  await broken.run((tx) => insert(tx, 'committed early'));
  expect(broken.writeTicks).toBe(1);
  await expect(broken.end(false)).rejects.toBeInstanceOf(CommittedBeforeFailure);
  // A statement after the write's COMMIT would run outside its transaction: refused.
  const late = new TenantTransaction(db.appPool(1), selection, { commitWithWrite: true });
  await late.principal();
  await late.run((tx) => insert(tx, 'first'));
  await expect(late.run((tx) => insert(tx, 'second'))).rejects.toThrow(/after the write committed/);
  await late.end(false).catch(() => {});
  // A failed statement whose error the caller swallowed: the queued COMMIT rolled back, so the operation cannot succeed.
  const swallowed = new TenantTransaction(db.appPool(1), selection, { commitWithWrite: true });
  await swallowed.principal();
  await swallowed.run((tx) => insert(tx, 'first')).catch(() => {}); // unique (tenant_id, name): fails
  await expect(swallowed.end(true)).rejects.toThrow(/rolled back/);
  const names = await db.owner<{ name: string }[]>`select name from app.agents where tenant_id = ${other.id} order by name`;
  expect(names.map((row) => row.name)).toEqual(['committed early', 'first']);
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
