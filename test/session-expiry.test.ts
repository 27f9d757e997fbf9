// Sessions whose client vanished stop holding the active-session quota: the
// idle-session sweep ends those with no write to them or their tasks for
// SESSION_IDLE_TIMEOUT (status FAILED), audited in the tenant's log (the
// sessions' audit trigger: session.update by the system, with the reason), and the quota is free again. A context of about 1 MiB
// with many distinct words is stored and searchable, never INTERNAL.
import { pino } from 'pino';
import { beforeAll, expect, it } from 'vitest';
import type { Sql } from '../src/db/pool.ts';
import { startIdleSessionSweep } from '../src/modules/sessions/idle-sweep.ts';
import { codes, createTestApp, createTestTenant, insertAgents, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let pool: Sql;
let api: TestApp;
let tenant: TestTenant;
let agentId: string;

beforeAll(async () => {
  db = await useTestDatabase();
  pool = db.appPool(2);
  api = createTestApp(pool);
  tenant = await createTestTenant(db.owner, 'idle-co', 'free'); // 5 active sessions at most
  await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, ['runner']);
  const { body } = await api.request('{ agents(first: 1) { edges { node { id } } } }', { token: tenant.members.VIEWER.token });
  agentId = (body.data!.agents as { edges: { node: { id: string } }[] }).edges[0]!.node.id;
});

const startSession = () =>
  api.request('mutation($a: ID!) { startSession(input: { agentId: $a }) { session { id status } } }', { token: tenant.members.MEMBER.token, variables: { a: agentId } });

/** Makes sessions look idle since `ago` (the updated_at trigger would stamp now()). */
async function idleSince(ids: readonly string[], ago: string) {
  await db.owner.begin(async (tx) => {
    await tx`alter table app.sessions disable trigger sessions_updated_at`;
    await tx`update app.sessions set updated_at = now() - ${ago}::interval where id = any(${tx.array([...ids])}::uuid[])`;
    await tx`alter table app.sessions enable trigger sessions_updated_at`;
  });
}

it('ends sessions idle past the timeout, audits it, releases their quota; a session with recent task activity stays', async () => {
  const started = await Promise.all(Array.from({ length: 5 }, startSession));
  for (const response of started) expect(response.body.errors).toBeUndefined();
  expect(codes(await startSession())).toEqual(['QUOTA_EXCEEDED']);

  const rows = await db.owner<{ id: string }[]>`select id from app.sessions where tenant_id = ${tenant.id} order by started_at, id`;
  const ids = rows.map((row) => row.id);
  await idleSince(ids.slice(0, 3), '2 hours');
  // The third idle session still has a task written recently: its client is alive.
  await db.owner`insert into app.tasks (tenant_id, session_id, title, created_by) values (${tenant.id}, ${ids[2]!}, 'still working', ${tenant.members.MEMBER.userId})`;

  const sweep = startIdleSessionSweep(pool, 3600, pino({ level: 'silent' }));
  try {
    expect(await sweep.sweep()).toBe(2);
    expect(await sweep.sweep()).toBe(0); // nothing twice
  } finally {
    sweep.stop();
  }

  const statuses = await db.owner<{ id: string; status: string }[]>`select id, status from app.sessions where tenant_id = ${tenant.id}`;
  const statusOf = Object.fromEntries(statuses.map((row) => [row.id, row.status]));
  expect([statusOf[ids[0]!], statusOf[ids[1]!], statusOf[ids[2]!], statusOf[ids[3]!]]).toEqual(['failed', 'failed', 'active', 'active']);
  const audits = await db.owner<{ target_id: string; actor_kind: string; status: string }[]>`
    select target_id, actor_kind, details->>'status' as status from app.audit_events
    where tenant_id = ${tenant.id} and action = 'session.update' and reason = 'idle for longer than 01:00:00' order by target_id`;
  expect(audits).toEqual([ids[0]!, ids[1]!].sort().map((id) => ({ target_id: id, actor_kind: 'system', status: 'failed' })));
  const [quota] = await db.owner<{ used: string }[]>`select used from app.quotas where tenant_id = ${tenant.id} and quota = 'active_sessions'`;
  expect(Number(quota!.used)).toBe(3);
  expect(codes(await startSession())).toEqual([]); // a slot is free again
});

it('sweeps by itself on a timer', async () => {
  const rows = await db.owner<{ id: string }[]>`select id from app.sessions where tenant_id = ${tenant.id} and status = 'active'`;
  await db.owner`delete from app.tasks where tenant_id = ${tenant.id}`;
  await idleSince(rows.map((row) => row.id), '3 hours');
  const sweep = startIdleSessionSweep(pool, 3600, pino({ level: 'silent' }), 50);
  try {
    await expect.poll(async () => (await db.owner`select 1 from app.sessions where tenant_id = ${tenant.id} and status = 'active'`).length, { timeout: 5_000 }).toBe(0);
  } finally {
    sweep.stop();
  }
});

it('stores a valid ~1 MiB context of many distinct words and finds it by a word, never INTERNAL', async () => {
  const words: string[] = [];
  for (let i = 0, size = 0; size < 1_040_000; i++) {
    const word = `w${i.toString(36)}q`;
    words.push(word);
    size += word.length + 1;
  }
  const content = words.join(' ');
  const created = await api.request('mutation($c: String!) { createContext(input: { kind: DOCUMENT, title: "many words", content: $c }) { context { id } } }', {
    token: tenant.members.MEMBER.token,
    variables: { c: content },
  });
  expect(created.body.errors).toBeUndefined();
  const found = await api.request('{ contexts(first: 5, search: "w1q") { edges { node { title } } } }', { token: tenant.members.VIEWER.token });
  expect(found.body.errors).toBeUndefined();
  expect((found.body.data!.contexts as { edges: { node: { title: string } }[] }).edges.map((edge) => edge.node.title)).toEqual(['many words']);
}, 30_000);

// A sweep takes each tenant's oldest idle session first, the tenants in turn (migration 000021): one tenant with
// more idle sessions than a sweep takes (500) cannot keep another's abandoned session, and its quota, for sweep after
// sweep (availability red team: before, the 500 oldest across all tenants were taken, all the hog's).
it("another tenant's idle session is ended by the next sweep even when one tenant has more idle sessions than a sweep takes", async () => {
  const hog = await createTestTenant(db.owner, 'idle-hog');
  const victim = await createTestTenant(db.owner, 'idle-victim', 'free');
  const [hogAgent] = await insertAgents(db.owner, hog.id, hog.members.ADMIN.userId, ['a']);
  const [victimAgent] = await insertAgents(db.owner, victim.id, victim.members.ADMIN.userId, ['a']);
  // The hog's 600 sessions went idle two hours ago, the victim's one an hour and a half ago (both past a 1 h timeout).
  await db.owner`insert into app.sessions (tenant_id, agent_id, updated_at) select ${hog.id}, ${hogAgent!}, now() - interval '2 hours' from generate_series(1, 600)`;
  const [session] = await db.owner<{ id: string }[]>`
    insert into app.sessions (tenant_id, agent_id, updated_at) values (${victim.id}, ${victimAgent!}, now() - interval '90 minutes') returning id`;
  const [swept] = await pool<{ ended: number }[]>`select app_private.expire_idle_sessions(interval '1 hour') as ended`;
  expect(swept!.ended).toBe(500);
  const [row] = await db.owner<{ status: string }[]>`select status from app.sessions where tenant_id = ${victim.id} and id = ${session!.id}`;
  expect(row!.status).toBe('failed');
  const [left] = await db.owner<{ n: number }[]>`select count(*)::int as n from app.sessions where tenant_id = ${hog.id} and status = 'active'`;
  expect(left!.n).toBe(101); // the hog's oldest 499 went, the rest wait for the next sweep
});
