// List filters and ordering: creation-time ranges (from inclusive, to
// exclusive), tasks by agent, newest-first walks with cursors, and filters
// that name another tenant's rows matching nothing.
import { beforeAll, describe, expect, it } from 'vitest';
import { isInputObjectType } from 'graphql';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { schema } from '../src/graphql/schema.ts';
import { createTestApp, createTestTenant, insertAgents, insertSession, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let b: TestTenant;
let agents: string[]; // tenant a's agents, created on days 1..6 of January
let agentOfB: string;

const day = (n: number) => `2026-01-0${n}T00:00:00.000Z`;
type Connection = { edges: { cursor: string; node: { title?: string; name?: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string } };

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool());
  a = await createTestTenant(db.owner, 'filters-a');
  b = await createTestTenant(db.owner, 'filters-b');
  const author = a.members.MEMBER.userId;
  const ids = await insertAgents(db.owner, a.id, author, ['agent 1', 'agent 2', 'agent 3', 'agent 4', 'agent 5', 'agent 6']);
  for (const [i, id] of ids.entries()) await db.owner`update app.agents set created_at = ${day(i + 1)} where id = ${id}`;
  agents = ids.map((id) => encodeGlobalId('Agent', id));
  agentOfB = encodeGlobalId('Agent', (await insertAgents(db.owner, b.id, b.members.MEMBER.userId, ['agent of b']))[0]!);

  // Agents 1 and 2 each run one session with three tasks, created on days 1..3 (and a context for each day).
  for (const [n, agentId] of ids.slice(0, 2).entries()) {
    const session = await insertSession(db.owner, a.id, agentId, author);
    for (const d of [1, 2, 3]) {
      await db.owner`
        insert into app.tasks (tenant_id, session_id, title, created_by, created_at)
        values (${a.id}, ${session}, ${`task ${n + 1}.${d}`}, ${author}, ${day(d)})`;
    }
  }
  for (const d of [1, 2, 3]) {
    await db.owner`
      insert into app.contexts (tenant_id, kind, title, content, created_by, created_at)
      values (${a.id}, 'note', ${`note ${d}`}, 'text', ${author}, ${day(d)})`;
  }
});

async function list(field: string, args: string, token = a.members.VIEWER.token): Promise<Connection> {
  const node = field === 'agents' ? 'name' : 'title';
  const response: GraphQLResponse = await api.request(`{ ${field}(${args}) { edges { cursor node { ${node} } } pageInfo { hasNextPage endCursor } } }`, { token });
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return response.body.data![field] as Connection;
}

const names = (connection: Connection) => connection.edges.map((edge) => edge.node.name ?? edge.node.title);

describe('creation-time ranges', () => {
  it('agents: createdAfter is inclusive, createdBefore exclusive', async () => {
    expect(names(await list('agents', `filter: { createdAfter: "${day(2)}", createdBefore: "${day(5)}" }`))).toEqual(['agent 2', 'agent 3', 'agent 4']);
    expect(names(await list('agents', `filter: { createdAfter: "${day(6)}" }`))).toEqual(['agent 6']);
    expect(names(await list('agents', `filter: { createdBefore: "${day(1)}" }`))).toEqual([]);
  });

  it('tasks and contexts take the same range', async () => {
    // Equal creation times: ordered by id, so compare as sets.
    expect(names(await list('tasks', `filter: { createdAfter: "${day(2)}", createdBefore: "${day(3)}" }`)).sort()).toEqual(['task 1.2', 'task 2.2']);
    expect(names(await list('contexts', `filter: { createdAfter: "${day(3)}" }`))).toEqual(['note 3']);
  });

  it('a malformed date is BAD_USER_INPUT', async () => {
    const response = await api.request('{ tasks(filter: { createdAfter: "yesterday" }) { edges { cursor } } }', { token: a.members.VIEWER.token });
    expect(response.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.body.data ?? null).toBeNull();
  });
});

it('only filter inputs take a creation range (no create or update input does)', () => {
  const withRange = Object.values(schema.getTypeMap())
    .filter((type) => isInputObjectType(type) && 'createdAfter' in type.getFields())
    .map((type) => type.name)
    .sort();
  expect(withRange).toEqual(['AgentFilter', 'ContextFilter', 'TaskFilter']);
});

describe('tasks by agent', () => {
  it("lists only the tasks of that agent's sessions", async () => {
    expect(names(await list('tasks', `filter: { agentId: "${agents[1]}" }`))).toEqual(['task 2.1', 'task 2.2', 'task 2.3']);
    expect(names(await list('tasks', `filter: { agentId: "${agents[1]}", createdAfter: "${day(3)}" }`))).toEqual(['task 2.3']);
    expect(names(await list('tasks', `filter: { agentId: "${agents[2]}" }`))).toEqual([]);
  });

  it("another tenant's agent, or an id of another type, matches nothing", async () => {
    expect(names(await list('tasks', `filter: { agentId: "${agents[0]}" }`, b.members.ADMIN.token))).toEqual([]);
    expect(names(await list('tasks', `filter: { agentId: "${agentOfB}" }`))).toEqual([]);
    expect(names(await list('tasks', `filter: { agentId: "${encodeGlobalId('Session', '00000000-0000-0000-0000-000000000000')}" }`))).toEqual([]);
  });
});

describe('newest first', () => {
  it('agents walk newest first, every one exactly once, across pages', async () => {
    const seen: string[] = [];
    let after = '';
    for (;;) {
      const page = await list('agents', `first: 4, orderBy: NEWEST_FIRST${after ? `, after: "${after}"` : ''}`);
      seen.push(...names(page).map(String));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(seen).toEqual(['agent 6', 'agent 5', 'agent 4', 'agent 3', 'agent 2', 'agent 1']);
  });

  it('tasks newest first, within a range', async () => {
    expect(names(await list('tasks', `orderBy: NEWEST_FIRST, filter: { agentId: "${agents[0]}", createdBefore: "${day(3)}" }`))).toEqual(['task 1.2', 'task 1.1']);
  });
});
