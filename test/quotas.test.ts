// Quotas hold under concurrency: the database moves each counter with one
// conditional UPDATE, so parallel requests can never overshoot a limit. And a
// tenant never loses its last ADMIN, however demotions interleave.
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { addMember, createUser } from '../src/operator/repo.ts';
import { codes, createTestApp, createTestTenant, insertAgents, tokenFor, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;
let agentId: string;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(12));
  tenant = await createTestTenant(db.owner, 'quota-co', 'free');
  agentId = encodeGlobalId('Agent', (await insertAgents(db.owner, tenant.id, tenant.members.MEMBER.userId, ['worker']))[0]!);
});

async function setLimit(quota: string, limit: number | null) {
  await db.owner`update app.quotas set limit_override = ${limit} where tenant_id = ${tenant.id} and quota = ${quota}`;
}

const START = 'mutation($agentId: ID!) { startSession(input: { agentId: $agentId }) { session { id } } }';
const sessionIdOf = (response: GraphQLResponse) => (response.body.data as { startSession: { session: { id: string } } } | null)?.startSession.session.id;

async function endActiveSessions() {
  await db.owner`update app.sessions set status = 'completed', ended_at = now() where tenant_id = ${tenant.id} and status = 'active'`;
}

describe('concurrent active sessions', () => {
  it('50 parallel startSession against a limit of 5: exactly 5 succeed, 45 get QUOTA_EXCEEDED, in every round', async () => {
    await setLimit('active_sessions', 5);
    for (let round = 0; round < 10; round++) {
      const responses = await Promise.all(
        Array.from({ length: 50 }, () => api.request(START, { token: tenant.members.MEMBER.token, variables: { agentId } })),
      );
      const succeeded = responses.filter((response) => sessionIdOf(response));
      const refused = responses.filter((response) => codes(response)[0] === 'QUOTA_EXCEEDED');
      expect([succeeded.length, refused.length], `round ${round}`).toEqual([5, 45]);
      expect(refused[0]!.body.errors![0]!.extensions).toMatchObject({ code: 'QUOTA_EXCEEDED', quota: 'activeSessions', limit: 5, used: 5 });
      const [active] = await db.owner`select count(*)::int as n from app.sessions where tenant_id = ${tenant.id} and status = 'active'`;
      expect(active!.n).toBe(5);
      await endActiveSessions();
    }
  });

  it('ending a session frees its place; the counter matches the rows', async () => {
    await setLimit('active_sessions', 1);
    const first = sessionIdOf(await api.request(START, { token: tenant.members.MEMBER.token, variables: { agentId } }));
    expect(first).toBeDefined();
    expect(codes(await api.request(START, { token: tenant.members.MEMBER.token, variables: { agentId } }))).toEqual(['QUOTA_EXCEEDED']);
    await api.request('mutation($id: ID!) { endSession(input: { id: $id, status: COMPLETED }) { session { id } } }', {
      token: tenant.members.MEMBER.token,
      variables: { id: first },
    });
    expect(sessionIdOf(await api.request(START, { token: tenant.members.MEMBER.token, variables: { agentId } }))).toBeDefined();
    const [counter] = await db.owner`
      select q.used::int as used, (select count(*)::int from app.sessions s where s.tenant_id = q.tenant_id and s.status = 'active') as rows
      from app.quotas q where q.tenant_id = ${tenant.id} and q.quota = 'active_sessions'`;
    expect(counter!.used).toBe(counter!.rows);
    await endActiveSessions();
    await setLimit('active_sessions', null);
  });
});

describe('monthly token budget', () => {
  const RECORD = 'mutation($id: ID!, $tokens: Int!) { recordUsage(input: { sessionId: $id, tokens: $tokens }) { session { tokensUsed } } }';

  it('parallel recordUsage never overshoots: exactly budget / amount calls succeed', async () => {
    await db.owner`update app.quotas set used = 0 where tenant_id = ${tenant.id} and quota = 'monthly_tokens'`;
    await setLimit('monthly_tokens', 1000);
    const sessionId = sessionIdOf(await api.request(START, { token: tenant.members.MEMBER.token, variables: { agentId } }))!;
    for (let round = 0; round < 5; round++) {
      const responses = await Promise.all(
        Array.from({ length: 40 }, () => api.request(RECORD, { token: tenant.members.MEMBER.token, variables: { id: sessionId, tokens: 30 } })),
      );
      const ok = responses.filter((response) => !response.body.errors).length;
      const [quota] = await db.owner`select used::int from app.quotas where tenant_id = ${tenant.id} and quota = 'monthly_tokens'`;
      expect(quota!.used).toBeLessThanOrEqual(1000);
      if (round === 0) expect(ok).toBe(33); // 33 x 30 = 990; the 34th would pass 1000
      else expect(ok).toBe(0);
      expect(responses.filter((response) => codes(response)[0] === 'QUOTA_EXCEEDED')).toHaveLength(40 - ok);
    }
    const [session] = await db.owner`select tokens_used::int from app.sessions where tenant_id = ${tenant.id} and status = 'active'`;
    expect(session!.tokens_used).toBe(990);
  });

  it('task tokens count too, and a refused update writes nothing', async () => {
    const [session] = await db.owner<{ id: string }[]>`select id from app.sessions where tenant_id = ${tenant.id} and status = 'active'`;
    const created = await api.request('mutation($s: ID!) { createTask(input: { sessionId: $s, title: "t" }) { task { id } } }', {
      token: tenant.members.MEMBER.token,
      variables: { s: encodeGlobalId('Session', session!.id) },
    });
    const taskId = (created.body.data as { createTask: { task: { id: string } } }).createTask.task.id;
    const UPDATE = 'mutation($id: ID!, $tokens: Int!) { updateTaskStatus(input: { id: $id, status: RUNNING, tokens: $tokens }) { task { tokens } } }';
    const over = await api.request(UPDATE, { token: tenant.members.MEMBER.token, variables: { id: taskId, tokens: 11 } });
    expect(codes(over)).toEqual(['QUOTA_EXCEEDED']);
    expect(over.body.data).toBeNull();
    const [task] = await db.owner`select status, tokens::int from app.tasks where tenant_id = ${tenant.id}`;
    expect(task).toEqual({ status: 'pending', tokens: 0 });
    const fits = await api.request(UPDATE, { token: tenant.members.MEMBER.token, variables: { id: taskId, tokens: 10 } });
    expect(codes(fits)).toEqual([]);
  });

  it("rolls over by calendar month (UTC): last month's usage does not count", async () => {
    await db.owner`update app.quotas set period = (period - interval '1 month')::date where tenant_id = ${tenant.id} and quota = 'monthly_tokens'`;
    const usage = await api.request('{ usage { quota used limit } }', { token: tenant.members.VIEWER.token });
    expect((usage.body.data as { usage: unknown[] }).usage).toContainEqual({ quota: 'MONTHLY_TOKENS', used: 0, limit: 1000 });
    const [session] = await db.owner<{ id: string }[]>`select id from app.sessions where tenant_id = ${tenant.id} and status = 'active'`;
    const recorded = await api.request('mutation($id: ID!) { recordUsage(input: { sessionId: $id, tokens: 1000 }) { session { id } } }', {
      token: tenant.members.MEMBER.token,
      variables: { id: encodeGlobalId('Session', session!.id) },
    });
    expect(codes(recorded)).toEqual([]);
    const [quota] = await db.owner`select used::int, period = date_trunc('month', now() at time zone 'UTC')::date as current from app.quotas where tenant_id = ${tenant.id} and quota = 'monthly_tokens'`;
    expect(quota).toEqual({ used: 1000, current: true });
    await endActiveSessions();
  });
});

describe('agents, members and context storage', () => {
  it('refuses the agent past the limit, with the figures', async () => {
    const [count] = await db.owner<{ n: number }[]>`select count(*)::int as n from app.agents where tenant_id = ${tenant.id}`;
    await setLimit('agents', count!.n + 2);
    const create = (name: string) =>
      api.request('mutation($name: String!) { createAgent(input: { name: $name, kind: "assistant" }) { agent { id } } }', {
        token: tenant.members.MEMBER.token,
        variables: { name },
      });
    const responses = await Promise.all(['a1', 'a2', 'a3', 'a4', 'a5'].map(create));
    expect(responses.filter((response) => !response.body.errors)).toHaveLength(2);
    expect(responses.find((response) => response.body.errors)!.body.errors![0]!.extensions).toMatchObject({
      code: 'QUOTA_EXCEEDED',
      quota: 'agents',
      limit: count!.n + 2,
      used: count!.n + 2,
    });
    await setLimit('agents', null);
  });

  it('counts content bytes of contexts, on create, update and delete', async () => {
    await setLimit('context_bytes', 100);
    const CREATE = 'mutation($content: String!) { createContext(input: { kind: NOTE, title: "n", content: $content }) { context { id } } }';
    const first = await api.request(CREATE, { token: tenant.members.MEMBER.token, variables: { content: 'x'.repeat(60) } });
    expect(codes(first)).toEqual([]);
    const second = await api.request(CREATE, { token: tenant.members.MEMBER.token, variables: { content: 'y'.repeat(60) } });
    expect(second.body.errors?.[0]?.extensions).toMatchObject({ code: 'QUOTA_EXCEEDED', quota: 'contextBytes', limit: 100, used: 60 });
    const id = (first.body.data as { createContext: { context: { id: string } } }).createContext.context.id;
    await api.request('mutation($id: ID!) { deleteContext(input: { id: $id }) { deletedContextId } }', { token: tenant.members.MEMBER.token, variables: { id } });
    expect(codes(await api.request(CREATE, { token: tenant.members.MEMBER.token, variables: { content: 'z'.repeat(90) } }))).toEqual([]);
    await setLimit('context_bytes', null);
  });

  it('counts members: an invitation cannot be accepted into a full tenant', async () => {
    await setLimit('members', 4);
    const invited = await api.request('mutation { inviteMember(input: { email: "fifth@quota.test", role: VIEWER }) { token } }', { token: tenant.members.ADMIN.token });
    const token = (invited.body.data as { inviteMember: { token: string } }).inviteMember.token;
    const user = await createUser(db.owner, 'fifth@quota.test', 'Fifth');
    const accepted = await api.request('mutation($token: String!) { acceptInvitation(input: { token: $token }) { role } }', {
      token: await tokenFor(user.id),
      variables: { token },
    });
    expect(accepted.body.errors?.[0]?.extensions).toMatchObject({ code: 'QUOTA_EXCEEDED', quota: 'members', limit: 4, used: 4 });
    const [member] = await db.owner`select count(*)::int as n from app.memberships where tenant_id = ${tenant.id}`;
    expect(member!.n).toBe(4);
    await setLimit('members', null);
  });
});

describe('the last ADMIN', () => {
  it('concurrent demotions never leave a tenant without an ADMIN', async () => {
    const DEMOTE = 'mutation($user: ID!) { updateMemberRole(input: { userId: $user, role: MEMBER }) { member { role } } }';
    await setLimit('members', 1000);
    for (let round = 0; round < 15; round++) {
      const admins = await Promise.all(
        [0, 1, 2].map(async (i) => {
          const user = await createUser(db.owner, `admin${i}-${round}@quota.test`, `Admin ${i}`);
          await addMember(db.owner, tenant.id, user.id, 'ADMIN');
          return { id: user.id, token: await tokenFor(user.id, tenant.id) };
        }),
      );
      await db.owner`update app.memberships set role = 'MEMBER' where tenant_id = ${tenant.id} and role = 'ADMIN'
                     and user_id <> all(${admins.map((admin) => admin.id)})`;
      // Each ADMIN demotes the next one and itself, all at once.
      const responses = await Promise.all(
        admins.flatMap((admin, i) => [
          api.request(DEMOTE, { token: admin.token, variables: { user: admins[(i + 1) % 3]!.id } }),
          api.request(DEMOTE, { token: admin.token, variables: { user: admin.id } }),
        ]),
      );
      const [left] = await db.owner`select count(*)::int as n from app.memberships where tenant_id = ${tenant.id} and role = 'ADMIN'`;
      expect(left!.n, `round ${round}`).toBe(1);
      for (const response of responses) expect(['CONFLICT', 'FORBIDDEN', undefined]).toContain(codes(response)[0]);
      expect(responses.some((response) => codes(response)[0] === 'CONFLICT')).toBe(true);
    }
  });

  it('the last ADMIN cannot remove themself either', async () => {
    const [admin] = await db.owner<{ user_id: string }[]>`select user_id from app.memberships where tenant_id = ${tenant.id} and role = 'ADMIN'`;
    const response = await api.request('mutation($user: ID!) { removeMember(input: { userId: $user }) { removedUserId } }', {
      token: await tokenFor(admin!.user_id, tenant.id),
      variables: { user: admin!.user_id },
    });
    expect(codes(response)).toEqual(['CONFLICT']);
    expect(response.body.errors![0]!.message).toMatch(/at least one ADMIN/);
  });
});
