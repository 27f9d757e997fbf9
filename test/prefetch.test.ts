// A row by id is read together with the children that need only its id
// (src/nodes/prefetch.ts): `session(id) { agent tasks }` answers exactly
// what the same selection answers through `node(id)` (which reads level by
// level), through arguments, aliases, fragments, variables and cursors, on the
// fast path and through Yoga; each child is read once; another tenant's id
// reads as null.
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createTestApp, createTestTenant, insertAgents, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;
let other: TestTenant;
let sessionId: string;
let agentId: string;
let foreignSessionId: string;
const statements: string[] = [];

async function insertSession(owner: TestDatabase['owner'], of: TestTenant, name: string): Promise<{ session: string; agent: string }> {
  const { userId } = of.members.MEMBER;
  const [agentId] = await insertAgents(owner, of.id, userId, [name]);
  const [session] = await owner<{ id: string }[]>`
    insert into app.sessions (tenant_id, agent_id, started_by) values (${of.id}, ${agentId!}, ${userId}) returning id`;
  await owner`
    insert into app.tasks (tenant_id, session_id, title, created_by, created_at)
    select ${of.id}, ${session!.id}, 'task ' || g, ${userId}, '2026-01-01'::timestamptz + g * interval '1 second' from generate_series(1, 5) g`;
  await owner`update app.tasks set status = 'running' where session_id = ${session!.id} and title in ('task 2', 'task 4')`;
  // Two more sessions of the same agent, one of them ended.
  const [, ended] = await owner<{ id: string }[]>`
    insert into app.sessions (tenant_id, agent_id, started_by, started_at)
    values (${of.id}, ${agentId!}, ${userId}, now() + interval '1 minute'), (${of.id}, ${agentId!}, ${userId}, now() + interval '2 minutes')
    returning id`;
  await owner`update app.sessions set status = 'completed', ended_at = now() where id = ${ended!.id}`;
  return { session: encodeGlobalId('Session', session!.id), agent: encodeGlobalId('Agent', agentId!) };
}

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(2, (query) => statements.push(query)));
  tenant = await createTestTenant(db.owner, 'prefetch-a');
  other = await createTestTenant(db.owner, 'prefetch-b');
  ({ session: sessionId, agent: agentId } = await insertSession(db.owner, tenant, 'runner'));
  ({ session: foreignSessionId } = await insertSession(db.owner, other, 'foreign runner'));
});

beforeEach(() => {
  statements.length = 0;
});

const SELECTIONS = {
  'agent and tasks': '{ id status agent { id name kind } tasks(first: 10) { edges { cursor node { id title status } } pageInfo { hasNextPage endCursor } } }',
  'arguments and aliases': `{
    agent { name }
    running: tasks(status: RUNNING) { edges { node { title } } }
    firstTwo: tasks(first: 2) { edges { node { title } } pageInfo { hasNextPage } }
    lastOne: tasks(last: 1) { edges { node { title } } pageInfo { hasPreviousPage } }
  }`,
  'fragments and merged fields': `{
    ...withAgent
    ... on Session { tasks(first: 3) { edges { node { id } } } }
    tasks(first: 3) { edges { node { title } } }
  }`,
  'every agent field': '{ agent { id name kind status description model config createdBy { email } createdAt updatedAt } }',
  'a skipped child': '{ id tasks(first: 2) @skip(if: true) { edges { node { id } } } agent @include(if: false) { id } }',
};
const FRAGMENTS = 'fragment withAgent on Session { agent { id name } }';

/** The same selection on `session(id)` (prefetched) and on `node(id)` (level by level). */
async function bothWays(selection: string, variables: Record<string, unknown>, viaYoga = false) {
  const token = tenant.members.VIEWER.token;
  const fragments = selection.includes('...withAgent') ? FRAGMENTS : '';
  const byField = await api.request(`query($id: ID!) { row: session(id: $id) ${selection} } ${fragments}`, { token, variables, viaYoga });
  const byNode = await api.request(`query($id: ID!) { row: node(id: $id) { ... on Session ${selection} } } ${fragments}`, {
    token,
    variables,
    viaYoga,
  });
  return { byField, byNode };
}

describe.each([false, true])('through Yoga: %s', (viaYoga) => {
  it.each(Object.entries(SELECTIONS))('%s: the same answer as level by level', async (_name, selection) => {
    const { byField, byNode } = await bothWays(selection, { id: sessionId }, viaYoga);
    expect(byField.body.errors).toBeUndefined();
    expect(byField.body.data?.row).toBeTruthy();
    expect(byField.body).toEqual(byNode.body);
  });
});

it('arguments from variables and a cursor page read the same rows', async () => {
  const selection = '{ tasks(first: $first, after: $after) { edges { node { title } } } }';
  const query = (field: string) => `query($id: ID!, $first: Int, $after: String) { ${field} }`;
  const token = tenant.members.VIEWER.token;
  const first = await api.request(`query($id: ID!) { session(id: $id) { tasks(first: 2) { edges { cursor } } } }`, { token, variables: { id: sessionId } });
  const edges = (first.body.data!.session as { tasks: { edges: { cursor: string }[] } }).tasks.edges;
  const variables = { id: sessionId, first: 2, after: edges[1]!.cursor };
  const byField = await api.request(query(`row: session(id: $id) ${selection}`), { token, variables });
  const byNode = await api.request(query(`row: node(id: $id) { ... on Session ${selection} }`), { token, variables });
  expect(byField.body).toEqual({ data: { row: { tasks: { edges: [{ node: { title: 'task 3' } }, { node: { title: 'task 4' } }] } } } });
  expect(byField.body).toEqual(byNode.body);
});

it('a child\'s arguments are read again on every run: the same document with other variables reads other pages', async () => {
  // A child whose arguments are literals is planned once per document; one whose arguments name variables never is.
  const query = 'query($id: ID!, $first: Int) { session(id: $id) { tasks(first: $first) { edges { node { title } } } literal: tasks(first: 1) { edges { node { title } } } } }';
  const token = tenant.members.VIEWER.token;
  for (const first of [1, 3, 2]) {
    const response = await api.request(query, { token, variables: { id: sessionId, first } });
    const session = response.body.data!.session as Record<'tasks' | 'literal', { edges: unknown[] }>;
    expect(session.tasks.edges, `first: ${first}`).toHaveLength(first);
    expect(session.literal.edges).toHaveLength(1);
    expect(statements.filter((text) => /from app\.tasks\b/.test(text))).toHaveLength(2); // both prefetched with the row
    statements.length = 0;
  }
});

it.each([
  ['agent and tasks', 1],
  ['arguments and aliases', 3],
  ['every agent field', 0],
] as const)('%s: each child is read once, with the row', async (name, taskLists) => {
  const response = await api.request(`query($id: ID!) { session(id: $id) ${SELECTIONS[name]} }`, {
    token: tenant.members.VIEWER.token,
    variables: { id: sessionId },
  });
  expect(response.body.errors).toBeUndefined();
  expect(statements.filter((text) => /from app\.tasks\b/.test(text))).toHaveLength(taskLists);
  expect(statements.filter((text) => /from app\.agents\b/.test(text))).toHaveLength(1);
  expect(statements.filter((text) => /from app\.sessions\b/.test(text))).toHaveLength(2); // the row, and the agent's subquery
});

it("the agent is read with the columns its fields need", async () => {
  const agentStatement = async (selection: string) => {
    statements.length = 0;
    await api.request(`query($id: ID!) { session(id: $id) { agent ${selection} } }`, { token: tenant.members.VIEWER.token, variables: { id: sessionId } });
    return statements.find((text) => /from app\.agents\b/.test(text))!;
  };
  expect(await agentStatement('{ name }')).not.toMatch(/config|created_by|created_at/);
  expect(await agentStatement('{ ... on Agent { config } }')).toMatch(/config/);
});

it("another tenant's session reads as null, as one that does not exist", async () => {
  const token = tenant.members.VIEWER.token;
  const query = `query($id: ID!) { session(id: $id) ${SELECTIONS['agent and tasks']} }`;
  const foreign = await api.request(query, { token, variables: { id: foreignSessionId } });
  const missing = await api.request(query, { token, variables: { id: encodeGlobalId('Session', '00000000-0000-4000-8000-000000000000') } });
  expect(foreign.body).toEqual({ data: { session: null } });
  expect(missing.body).toEqual(foreign.body);
});

it('a bad argument of a prefetched child is the same error as level by level', async () => {
  const { byField, byNode } = await bothWays('{ tasks(first: 2, after: "not-a-cursor") { edges { node { id } } } }', { id: sessionId });
  expect(byField.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  expect(byField.body.errors?.[0]?.message).toBe(byNode.body.errors?.[0]?.message);
  expect(byField.body.data).toEqual({ row: null });
});

describe('agent(id) { sessions }', () => {
  it("another tenant's agent reads as null, as one that does not exist", async () => {
    const { agent: foreignAgentId } = await insertSession(db.owner, other, 'another foreign runner');
    const query = 'query($id: ID!) { agent(id: $id) { name sessions { edges { node { id tasks { edges { node { title } } } } } } } }';
    const token = tenant.members.VIEWER.token;
    const foreign = await api.request(query, { token, variables: { id: foreignAgentId } });
    const missing = await api.request(query, { token, variables: { id: encodeGlobalId('Agent', '00000000-0000-4000-8000-000000000000') } });
    expect(foreign.body).toEqual({ data: { agent: null } });
    expect(missing.body).toEqual(foreign.body);
  });

  const AGENT_SELECTIONS = {
    'sessions with their tasks': '{ name sessions(first: 5) { edges { cursor node { id status tasks(first: 2) { edges { node { title } } } } } } }',
    'arguments and aliases': `{
      newest: sessions(first: 1, orderBy: NEWEST_FIRST) { edges { node { status } } pageInfo { hasNextPage } }
      ended: sessions(status: COMPLETED) { edges { node { status } } }
      lastOne: sessions(last: 1) { edges { node { id } } }
    }`,
  };

  it.each(Object.entries(AGENT_SELECTIONS))('%s: the same answer as level by level, each list read once', async (_name, selection) => {
    const token = tenant.members.VIEWER.token;
    const variables = { id: agentId };
    const byField = await api.request(`query($id: ID!) { row: agent(id: $id) ${selection} }`, { token, variables });
    const sent = [...statements];
    const byNode = await api.request(`query($id: ID!) { row: node(id: $id) { ... on Agent ${selection} } }`, { token, variables });
    expect(byField.body.errors).toBeUndefined();
    expect(byField.body.data?.row).toBeTruthy();
    expect(byField.body).toEqual(byNode.body);
    const sessionLists = sent.filter((text) => /from app\.sessions\b/.test(text) && !/where "?id"? =/.test(text));
    expect(sessionLists).toHaveLength(Object.keys(selection.match(/sessions\(/g) ?? []).length);
  });
});
