// The request log line names a context switch: a token whose tid names one
// tenant, used in another (X-Tenant-ID), is logged with both ids. The
// request's id is the one the response carries and the one its audit event names.
// A response never sent (its client gone first) is logged aborted, with no status.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { beforeAll, expect, it } from 'vitest';
import { createTokenVerifier } from '../src/auth/tokens.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { addMember } from '../src/operator/repo.ts';
import { createApp, type App } from '../src/server.ts';
import { createTestTenant, insertAgents, TEST_HTTP, TEST_TOKENS, tokenFor, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let app: App;
let a: TestTenant;
let b: TestTenant;
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  db = await useTestDatabase();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  app = createApp({
    config: { multiTenancy: true, defaultTenant: undefined, allowedTenants: undefined, graphiql: false, tenantHostSuffix: undefined, http: TEST_HTTP },
    sql: db.appPool(2),
    verifyToken: createTokenVerifier(TEST_TOKENS),
    log: pino({ level: 'info' }, sink),
  });
  a = await createTestTenant(db.owner, 'log-a');
  b = await createTestTenant(db.owner, 'log-b');
  await addMember(db.owner, b.id, a.members.ADMIN.userId, 'ADMIN'); // A's ADMIN is in B too
});

/** Sends through the yoga path of the app and waits for its log line. */
async function send(query: string, token: string, headers: Record<string, string> = {}) {
  const server = createServer((req, res) => void app.handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers },
      body: JSON.stringify({ query }),
    });
    const body = (await response.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
    const requestId = response.headers.get('x-request-id')!;
    await expect.poll(() => lines.some((line) => line.requestId === requestId), { timeout: 5_000 }).toBe(true);
    return { body, requestId, line: lines.find((line) => line.requestId === requestId)! };
  } finally {
    server.close();
  }
}

it('a request in another tenant than its token names is logged with both ids', async () => {
  const token = await tokenFor(a.members.ADMIN.userId, a.id);
  const switched = await send('{ tenant { slug } }', token, { 'x-tenant-id': 'log-b' });
  expect(switched.body.data).toEqual({ tenant: { slug: 'log-b' } });
  expect(switched.line).toMatchObject({ tenantId: b.id, tenantSwitch: true, tokenTenantId: a.id });

  const home = await send('{ tenant { slug } }', token);
  expect(home.line).toMatchObject({ tenantId: a.id });
  expect(home.line).not.toHaveProperty('tenantSwitch');
  const named = await send('{ tenant { slug } }', token, { 'x-tenant-id': a.id });
  expect(named.line).not.toHaveProperty('tenantSwitch');
  // A token without tid that picks a tenant is no switch: it had none to switch from.
  const untied = await send('{ tenant { slug } }', await tokenFor(a.members.ADMIN.userId), { 'x-tenant-id': 'log-b' });
  expect(untied.line).toMatchObject({ tenantId: b.id });
  expect(untied.line).not.toHaveProperty('tenantSwitch');
});

it('the audit event of a change names the request id of the response and of the log line', async () => {
  const token = await tokenFor(a.members.ADMIN.userId, a.id);
  const made = await send('mutation { createAgent(input: { name: "logged", kind: "assistant" }) { agent { id } } }', token, { 'x-tenant-id': 'log-b' });
  expect(made.body.errors).toBeUndefined();
  const events = await db.owner<{ tenant_id: string; action: string }[]>`select tenant_id, action from app.audit_events where request_id = ${made.requestId}`;
  expect(events).toEqual([{ tenant_id: b.id, action: 'agent.create' }]);
  // A client's own X-Request-Id (within its limits) is kept; anything else is replaced by a fresh uuid.
  const own = await send('mutation { createAgent(input: { name: "logged-2", kind: "assistant" }) { agent { id } } }', token, { 'x-request-id': 'client-req.42' });
  expect(own.requestId).toBe('client-req.42');
  expect(await db.owner`select action from app.audit_events where request_id = 'client-req.42'`).toEqual([{ action: 'agent.create' }]);
  const hostile = await send('mutation { createAgent(input: { name: "logged-3", kind: "assistant" }) { agent { id } } }', token, { 'x-request-id': "x'); drop table app.audit_events; --" });
  expect(hostile.requestId).toMatch(/^[0-9a-f-]{36}$/);
  expect(await db.owner`select action from app.audit_events where request_id = ${hostile.requestId}`).toEqual([{ action: 'agent.create' }]);
});

it('a request whose client went away before its answer is logged aborted, with no status', async () => {
  const [agent] = await insertAgents(db.owner, a.id, a.members.ADMIN.userId, ['locked for the log']);
  const server = createServer((req, res) => void app.handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const holder = await db.owner.reserve();
  try {
    await holder`begin`;
    await holder`select 1 from app.agents where id = ${agent!} for update`;
    const { port } = server.address() as AddressInfo;
    const abort = new AbortController();
    const sent = fetch(`http://127.0.0.1:${port}/graphql`, {
      method: 'POST',
      signal: abort.signal,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${a.members.ADMIN.token}`, 'x-request-id': 'gone-before-answer' },
      body: JSON.stringify({ query: 'mutation($id: ID!) { updateAgent(input: { id: $id, name: "renamed" }) { agent { name } } }', variables: { id: encodeGlobalId('Agent', agent!) } }),
    });
    // Until the update waits for the row lock (a fixed 300 ms could end before the request even arrived on a loaded machine).
    const waiting = async () => (await db.owner<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)[0]!.n;
    await expect.poll(waiting, { timeout: 10_000, interval: 20 }).toBe(1);
    abort.abort();
    await sent.catch(() => {});
    await expect.poll(() => lines.some((line) => line.requestId === 'gone-before-answer'), { timeout: 5_000 }).toBe(true);
    const line = lines.find((entry) => entry.requestId === 'gone-before-answer')!;
    expect(line).toMatchObject({ aborted: true, path: '/graphql' });
    expect(line).not.toHaveProperty('status');
  } finally {
    await holder`rollback`;
    holder.release();
    server.close();
  }
});

it('every answer carries its request id (x-request-id): a success, the refusals of the POST path, a GET, /health; a valid id sent is echoed', async () => {
  const server = createServer((req, res) => void app.handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const url = `http://127.0.0.1:${port}`;
    const token = await tokenFor(a.members.ADMIN.userId, a.id);
    const json = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
    const answers = [
      await fetch(`${url}/graphql`, { method: 'POST', headers: json, body: '{"query":"{ tenant { slug } }"}' }),
      await fetch(`${url}/graphql`, { method: 'POST', headers: { ...json, 'content-type': 'text/plain' }, body: '{}' }), // 415, body unread
      await fetch(`${url}/graphql`, { method: 'POST', headers: json, body: '{"query":' }), // malformed JSON
      await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ tenant { slug } }"}' }), // no credentials
      await fetch(`${url}/graphql?query=${encodeURIComponent('{ tenant { slug } }')}`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } }),
      await fetch(`${url}/health`),
    ];
    expect(answers.map((answer) => answer.status)).toEqual([200, 415, 400, 401, 200, 200]);
    for (const answer of answers) expect(answer.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const echoed = await fetch(`${url}/graphql`, { method: 'POST', headers: { ...json, 'x-request-id': 'client-id-42' }, body: '{"query":"{ tenant { slug } }"}' });
    expect(echoed.headers.get('x-request-id')).toBe('client-id-42');
  } finally {
    server.close();
  }
});
