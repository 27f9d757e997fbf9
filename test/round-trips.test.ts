// Round trips to PostgreSQL per request, counted on the wire: every write the
// pool makes to a database socket is followed by waiting for its answer, so
// writes per request = round trips. A simple read takes 2: BEGIN, the request
// check and the query in one write; COMMIT in the second. A write waits for
// the role first (FORBIDDEN before any of its SQL runs): 3. A nested list adds
// one per level; a row by id is read together with its children
// (src/nodes/prefetch.ts).
import net from 'node:net';
import { afterEach, beforeAll, expect, it } from 'vitest';
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

/** Database writes made while `run` runs 20 times, per run (after one warm-up run: statements get prepared). */
async function writesPerRequest(run: () => Promise<unknown>): Promise<number> {
  await run();
  let writes = 0;
  const port = databasePort();
  net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
    if (this.remotePort === port) writes++;
    return (original as (...values: unknown[]) => boolean).apply(this, args);
  };
  for (let i = 0; i < 20; i++) await run();
  net.Socket.prototype.write = original;
  return writes / 20;
}

it('a simple read takes 2 round trips', async () => {
  const read = () => api.request('{ agents(first: 20) { edges { node { id name kind } } } }', { token: tenant.members.VIEWER.token });
  expect(await writesPerRequest(read)).toBe(2);
});

it('a write takes 3: the role is known before its SQL is sent', async () => {
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
])('a row by id is read with its children: %s, 2 like a simple read', async (_name, query, id) => {
  const byId = () => api.request(query, { token: tenant.members.VIEWER.token, variables: { id: id() } });
  expect(await writesPerRequest(byId)).toBe(2);
});
