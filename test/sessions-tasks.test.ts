// Sessions and tasks through GraphQL: their life cycles, the permission table,
// isolation between tenants, and batching of nested lists.
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { codes, createTestApp, createTestTenant, insertAgents, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let b: TestTenant;
let agentA: string;
let agentB: string;
const statements: string[] = [];

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(4, (query) => statements.push(query)));
  a = await createTestTenant(db.owner, 'runs-a');
  b = await createTestTenant(db.owner, 'runs-b');
  agentA = encodeGlobalId('Agent', (await insertAgents(db.owner, a.id, a.members.MEMBER.userId, ['runner a']))[0]!);
  agentB = encodeGlobalId('Agent', (await insertAgents(db.owner, b.id, b.members.MEMBER.userId, ['runner b']))[0]!);
});

const data = <T>(response: GraphQLResponse, field: string): T => {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return response.body.data![field] as T;
};

async function startSession(token: string, agentId: string): Promise<string> {
  const response = await api.request('mutation($agentId: ID!) { startSession(input: { agentId: $agentId, metadata: { purpose: "test" } }) { session { id status } } }', {
    token,
    variables: { agentId },
  });
  return data<{ session: { id: string } }>(response, 'startSession').session.id;
}

async function createTask(token: string, sessionId: string, title = 'a task'): Promise<GraphQLResponse> {
  return api.request('mutation($sessionId: ID!, $title: String!) { createTask(input: { sessionId: $sessionId, title: $title }) { task { id status } } }', {
    token,
    variables: { sessionId, title },
  });
}

const setStatus = (token: string, id: string, status: string, tokens?: number) =>
  api.request('mutation($id: ID!, $status: TaskStatus!, $tokens: Int) { updateTaskStatus(input: { id: $id, status: $status, tokens: $tokens }) { task { status tokens } } }', {
    token,
    variables: { id, status, tokens },
  });

const endSession = (token: string, id: string, status = 'COMPLETED') =>
  api.request('mutation($id: ID!, $status: EndedSessionStatus!) { endSession(input: { id: $id, status: $status }) { session { status endedAt tokensUsed } } }', {
    token,
    variables: { id, status },
  });

describe('life cycle', () => {
  it('runs a session: tasks move through their states, tokens add up, the session ends once', async () => {
    const token = a.members.MEMBER.token;
    const session = await startSession(token, agentA);
    const task = data<{ task: { id: string; status: string } }>(await createTask(token, session), 'createTask').task;
    expect(task.status).toBe('PENDING');

    expect(codes(await setStatus(token, task.id, 'SUCCEEDED'))).toEqual(['BAD_USER_INPUT']); // pending -> succeeded is not a move
    expect(data(await setStatus(token, task.id, 'RUNNING', 120), 'updateTaskStatus')).toEqual({ task: { status: 'RUNNING', tokens: 120 } });
    expect(data(await setStatus(token, task.id, 'SUCCEEDED', 300), 'updateTaskStatus')).toEqual({ task: { status: 'SUCCEEDED', tokens: 300 } });
    expect(codes(await setStatus(token, task.id, 'RUNNING'))).toEqual(['BAD_USER_INPUT']); // terminal

    const ended = data<{ session: { status: string; endedAt: string | null; tokensUsed: number } }>(await endSession(token, session), 'endSession');
    expect(ended.session).toMatchObject({ status: 'COMPLETED', tokensUsed: 300 });
    expect(ended.session.endedAt).not.toBeNull();

    expect(codes(await endSession(token, session, 'FAILED'))).toEqual(['BAD_USER_INPUT']);
    const late = await createTask(token, session, 'too late');
    expect(codes(late)).toEqual(['BAD_USER_INPUT']);
    expect(late.body.errors![0]!.extensions!.field).toBe('input.sessionId');
  });

  it('starts no session on an archived agent; only LEAD and above archive', async () => {
    const [id] = await insertAgents(db.owner, a.id, a.members.MEMBER.userId, ['to archive']);
    const agent = encodeGlobalId('Agent', id!);
    const archive = (token: string) => api.request('mutation($id: ID!) { archiveAgent(input: { id: $id }) { agent { status } } }', { token, variables: { id: agent } });
    expect(codes(await archive(a.members.MEMBER.token))).toEqual(['FORBIDDEN']);
    expect(data(await archive(a.members.LEAD.token), 'archiveAgent')).toEqual({ agent: { status: 'ARCHIVED' } });
    const refused = await api.request('mutation($agentId: ID!) { startSession(input: { agentId: $agentId }) { session { id } } }', {
      token: a.members.MEMBER.token,
      variables: { agentId: agent },
    });
    expect(codes(refused)).toEqual(['BAD_USER_INPUT']);
  });

  it('validates input and names the field', async () => {
    const session = await startSession(a.members.MEMBER.token, agentA);
    const response = await createTask(a.members.MEMBER.token, session, '');
    expect(codes(response)).toEqual(['BAD_USER_INPUT']);
    expect(response.body.errors![0]!.extensions!.field).toBe('input.title');
    const negative = await setStatus(a.members.MEMBER.token, encodeGlobalId('Task', '00000000-0000-4000-8000-000000000000'), 'RUNNING', -5);
    expect(negative.body.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.tokens' });
  });
});

describe('permissions', () => {
  it('VIEWER reads but starts nothing; MEMBER changes only its own; LEAD changes anyone\'s', async () => {
    const viewerStart = await api.request('mutation($agentId: ID!) { startSession(input: { agentId: $agentId }) { session { id } } }', {
      token: a.members.VIEWER.token,
      variables: { agentId: agentA },
    });
    expect(codes(viewerStart)).toEqual(['FORBIDDEN']);

    const session = await startSession(a.members.ADMIN.token, agentA);
    const task = data<{ task: { id: string } }>(await createTask(a.members.ADMIN.token, session), 'createTask').task.id;
    expect(codes(await setStatus(a.members.MEMBER.token, task, 'RUNNING'))).toEqual(['FORBIDDEN']);
    expect(codes(await endSession(a.members.MEMBER.token, session))).toEqual(['FORBIDDEN']);
    expect(codes(await createTask(a.members.MEMBER.token, session))).toEqual([]); // any member adds work to an active session
    expect(data(await setStatus(a.members.LEAD.token, task, 'RUNNING'), 'updateTaskStatus')).toMatchObject({ task: { status: 'RUNNING' } });
    expect(data(await endSession(a.members.LEAD.token, session, 'CANCELLED'), 'endSession')).toMatchObject({ session: { status: 'CANCELLED' } });
  });

  it('assigns only members of the tenant', async () => {
    const session = await startSession(a.members.MEMBER.token, agentA);
    const task = data<{ task: { id: string } }>(await createTask(a.members.MEMBER.token, session), 'createTask').task.id;
    const assign = (assigneeId: string) =>
      api.request('mutation($id: ID!, $assigneeId: ID) { assignTask(input: { id: $id, assigneeId: $assigneeId }) { task { assignee { email } } } }', {
        token: a.members.MEMBER.token,
        variables: { id: task, assigneeId },
      });
    expect(data(await assign(a.members.VIEWER.userId), 'assignTask')).toEqual({ task: { assignee: { email: 'viewer@runs-a.test' } } });
    const foreign = await assign(b.members.ADMIN.userId);
    expect(codes(foreign)).toEqual(['BAD_USER_INPUT']);
    expect(foreign.body.errors![0]!.extensions!.field).toBe('input.assigneeId');
  });
});

describe('isolation', () => {
  it('tenant B sees none of A\'s sessions or tasks, and cannot act on them', async () => {
    const session = await startSession(a.members.MEMBER.token, agentA);
    const task = data<{ task: { id: string } }>(await createTask(a.members.MEMBER.token, session), 'createTask').task.id;
    const token = b.members.ADMIN.token;

    const lists = await api.request('{ sessions(first: 100) { edges { node { id } } } tasks(first: 100) { edges { node { id } } } }', { token });
    expect(data<{ edges: unknown[] }>(lists, 'sessions').edges).toEqual([]);
    expect(data<{ edges: unknown[] }>(lists, 'tasks').edges).toEqual([]);
    const byId = await api.request('query($s: ID!, $t: ID!) { session(id: $s) { id } task(id: $t) { id } a: node(id: $s) { id } b: node(id: $t) { id } }', {
      token,
      variables: { s: session, t: task },
    });
    expect(byId.body).toEqual({ data: { session: null, task: null, a: null, b: null } });

    expect(codes(await createTask(token, session))).toEqual(['NOT_FOUND']); // composite key: no session (B, A's id)
    expect(codes(await setStatus(token, task, 'RUNNING'))).toEqual(['NOT_FOUND']);
    expect(codes(await endSession(token, session))).toEqual(['NOT_FOUND']);
    const foreignAgent = await api.request('mutation($agentId: ID!) { startSession(input: { agentId: $agentId }) { session { id } } }', {
      token,
      variables: { agentId: agentA },
    });
    expect(codes(foreignAgent)).toEqual(['NOT_FOUND']);
    const filtered = await api.request('query($s: ID!) { tasks(filter: { sessionId: $s }) { edges { node { id } } } }', { token, variables: { s: session } });
    expect(data<{ edges: unknown[] }>(filtered, 'tasks').edges).toEqual([]);

    const [row] = await db.owner`select status from app.sessions where id = ${Buffer.from(session, 'base64url').toString().split(':')[1]!}`;
    expect(row!.status).toBe('active');
  });

  it('B\'s own work is untouched by A and visible to B', async () => {
    const session = await startSession(b.members.MEMBER.token, agentB);
    const { body } = await api.request('{ sessions(first: 100) { edges { node { id agent { name } } } } }', { token: b.members.VIEWER.token });
    expect((body.data!.sessions as { edges: { node: { id: string; agent: { name: string } } }[] }).edges).toEqual([{ node: { id: session, agent: { name: 'runner b' } } }]);
  });
});

describe('batching', () => {
  it('loads 20 sessions with their agents, starters and tasks in a constant number of statements', async () => {
    const tenant = await createTestTenant(db.owner, 'runs-batch');
    const agentIds = await insertAgents(db.owner, tenant.id, tenant.members.MEMBER.userId, Array.from({ length: 5 }, (_, i) => `batch agent ${i}`));
    await db.owner`
      insert into app.sessions (tenant_id, agent_id, started_by, started_at)
      select ${tenant.id}, (${db.owner.array(agentIds)}::uuid[])[1 + g % 5], ${tenant.members.MEMBER.userId}, now() - g * interval '1 minute'
      from generate_series(1, 25) g`;
    await db.owner`
      insert into app.tasks (tenant_id, session_id, title, created_by)
      select s.tenant_id, s.id, 'task ' || g, ${tenant.members.MEMBER.userId}
      from app.sessions s, generate_series(1, 20) g where s.tenant_id = ${tenant.id}`;

    const query = `{ sessions(first: 20) { edges { node { id agent { name sessions(first: 3) { edges { node { id } } } } startedBy { email }
                      tasks(first: 20) { edges { node { title assignee { email } createdBy { email } } } } } } } }`;
    const count = async () => {
      statements.length = 0;
      const response = await api.request(query, { token: tenant.members.VIEWER.token });
      const edges = data<{ edges: { node: { tasks: { edges: unknown[] } } }[] }>(response, 'sessions').edges;
      expect(edges).toHaveLength(20);
      for (const edge of edges) expect(edge.node.tasks.edges).toHaveLength(20);
      return statements.filter((statement) => !/^\s*(begin|commit|rollback)/i.test(statement)).length;
    };
    // begin_request, sessions, their agents, users (starters and task creators), tasks, the agents' sessions.
    expect(await count()).toBe(6);
    expect(await count()).toBe(6);
  });
});
