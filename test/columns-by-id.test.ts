// A row read by id (a by-id root field, a relation, prefetched or loaded)
// reads only the columns the request's fields need, as lists do
// (test/columns.test.ts): every field of every such type, asked for alone,
// answers exactly what it answers when every field is asked for, with one
// read of the row; a row wanted whole and in part in one tick is read once.
import { getNamedType, isListType, isNonNullType, isObjectType, type GraphQLField } from 'graphql';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { schema } from '../src/graphql/schema.ts';
import { createTestApp, createTestTenant, insertAgents, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;
const ids: Record<'agent' | 'session' | 'task' | 'context', string> = { agent: '', session: '', task: '', context: '' };
const statements: string[] = [];

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(2, (query) => statements.push(query)));
  tenant = await createTestTenant(db.owner, 'columns-by-id');
  const { userId } = tenant.members.MEMBER;
  const agentIds = await insertAgents(db.owner, tenant.id, userId, ['first', 'second']);
  await db.owner`update app.agents set description = 'does things', model = 'm-1', config = '{"temperature": 0.2}' where tenant_id = ${tenant.id}`;
  for (const agentId of agentIds) {
    const [session] = await db.owner<{ id: string }[]>`
      insert into app.sessions (tenant_id, agent_id, started_by, metadata) values (${tenant.id}, ${agentId}, ${userId}, '{"run": 1}') returning id`;
    const [task] = await db.owner<{ id: string }[]>`
      insert into app.tasks (tenant_id, session_id, title, input, assignee_id, created_by)
      select ${tenant.id}, ${session!.id}, 'task ' || g, jsonb_build_object('n', g), ${userId}, ${userId} from generate_series(1, 3) g returning id`;
    await db.owner`update app.tasks set status = 'running' where session_id = ${session!.id}`;
    await db.owner`update app.tasks set status = 'succeeded', output = '{"ok": true}', tokens = 7 where session_id = ${session!.id}`;
    const [context] = await db.owner<{ id: string }[]>`
      insert into app.contexts (tenant_id, kind, title, content, tags, agent_id, session_id, created_by)
      values (${tenant.id}, 'document', 'doc', 'the content', '{a,b}', ${agentId}, ${session!.id}, ${userId}) returning id`;
    ids.agent ||= encodeGlobalId('Agent', agentId);
    ids.session ||= encodeGlobalId('Session', session!.id);
    ids.task ||= encodeGlobalId('Task', task!.id);
    ids.context ||= encodeGlobalId('Context', context!.id);
  }
});

/** The selection that asks for one field: scalars as they are, objects by id, connections by their first node's id. */
function selectionOf(field: GraphQLField<unknown, unknown>): string {
  const type = getNamedType(field.type);
  if (!isObjectType(type)) return field.name;
  if (type.name.endsWith('Connection')) return `${field.name}(first: 1) { edges { node { id } } }`;
  return `${field.name} { id }`;
}

/** The fields of a node type, from the schema (so a field added later is tested too). */
function fieldsOf(typeName: string): GraphQLField<unknown, unknown>[] {
  const type = schema.getType(typeName);
  if (!isObjectType(type)) throw new Error(`${typeName} is not an object type`);
  return Object.values(type.getFields()).filter((field) => field.name !== 'id');
}

const READS = [
  { type: 'Agent', table: 'agents', via: 'agent(id:)', query: (s: string) => `{ one: agent(id: $agent) { id ${s} } }`, path: ['one'] },
  { type: 'Session', table: 'sessions', via: 'session(id:)', query: (s: string) => `{ one: session(id: $session) { id ${s} } }`, path: ['one'] },
  { type: 'Task', table: 'tasks', via: 'task(id:)', query: (s: string) => `{ one: task(id: $task) { id ${s} } }`, path: ['one'] },
  { type: 'Context', table: 'contexts', via: 'context(id:)', query: (s: string) => `{ one: context(id: $context) { id ${s} } }`, path: ['one'] },
  // Prefetched with the row read by id (a statement through the parent's key).
  { type: 'Agent', table: 'agents', via: 'session(id:).agent', query: (s: string) => `{ session(id: $session) { one: agent { id ${s} } } }`, path: ['session', 'one'] },
  { type: 'Session', table: 'sessions', via: 'task(id:).session', query: (s: string) => `{ task(id: $task) { one: session { id ${s} } } }`, path: ['task', 'one'] },
  // Loaded by id, batched over a list's rows.
  { type: 'Session', table: 'sessions', via: 'tasks.session', query: (s: string) => `{ tasks { edges { node { one: session { id ${s} } } } } }`, path: ['tasks', 'edges', 0, 'node', 'one'] },
  { type: 'Agent', table: 'agents', via: 'contexts.agent', query: (s: string) => `{ contexts { edges { node { one: agent { id ${s} } } } } }`, path: ['contexts', 'edges', 0, 'node', 'one'] },
] as const;

/** Statements that read rows of `table` by id (a loader's, or through another row's key): the row's reads. */
const readsOf = (sent: readonly string[], table: string) => sent.filter((statement) => new RegExp(`^select [^()]* from app\\.${table} where "?id"? =`).test(statement.trim()));

async function request(query: string, viaYoga = false): Promise<{ data: Record<string, unknown>; sent: string[] }> {
  statements.length = 0;
  const used = (Object.keys(ids) as (keyof typeof ids)[]).filter((name) => query.includes(`$${name}`));
  const declared = used.length === 0 ? '' : `(${used.map((name) => `$${name}: ID!`).join(', ')})`;
  const variables = Object.fromEntries(used.map((name) => [name, ids[name]]));
  const response = await api.request(`query${declared} ${query}`, { token: tenant.members.VIEWER.token, variables, viaYoga });
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return { data: response.body.data as Record<string, unknown>, sent: [...statements] };
}

const at = (data: unknown, path: readonly (string | number)[]) =>
  path.reduce<unknown>((value, key) => (value as Record<string | number, unknown>)[key], data) as Record<string, unknown>;

describe.each([false, true])('through Yoga: %s', (viaYoga) => {
  it.each(READS.map((entry) => [`${entry.type} via ${entry.via}`, entry] as const))('%s: each field alone answers as with all fields, in one read', async (_name, entry) => {
    const fields = fieldsOf(entry.type);
    const all = await request(entry.query(fields.map(selectionOf).join(' ')), viaYoga);
    const row = at(all.data, entry.path);
    expect(row).toBeTruthy();
    for (const field of fields) {
      const alone = await request(entry.query(selectionOf(field)), viaYoga);
      expect(at(alone.data, entry.path), field.name).toEqual({ id: row['id'], [field.name]: row[field.name] });
      expect(readsOf(alone.sent, entry.table), field.name).toHaveLength(1);
      if (isNonNullType(field.type) && !isListType(field.type)) expect(at(alone.data, entry.path)[field.name], field.name).not.toBeNull();
    }
  });
});

describe('what a row read by id reads', () => {
  it('leaves out the columns no field asked for', async () => {
    const [session] = readsOf((await request('{ session(id: $session) { id status } }')).sent, 'sessions');
    expect(session).not.toMatch(/metadata|started_at|started_by/);
    const [agent] = readsOf((await request('{ session(id: $session) { agent { name } } }')).sent, 'agents');
    expect(agent).not.toMatch(/config|description|created_by|created_at/);
    const [related] = readsOf((await request('{ tasks { edges { node { session { status } } } } }')).sent, 'sessions');
    expect(related).not.toMatch(/metadata|started_at/);
    const [asked] = readsOf((await request('{ session(id: $session) { metadata } }')).sent, 'sessions');
    expect(asked).toMatch(/metadata/);
    expect(asked).not.toMatch(/started_at/);
  });

  it('reads a row wanted whole and in part in one tick once, and answers both', async () => {
    const { data, sent } = await request('{ a: session(id: $session) { status } b: node(id: $session) { ... on Session { metadata startedAt } } c: session(id: $session) { tokensUsed } }');
    expect(data).toMatchObject({ a: { status: 'ACTIVE' }, b: { metadata: { run: 1 } }, c: { tokensUsed: expect.any(Number) as unknown } });
    expect((data['b'] as { startedAt: unknown }).startedAt).toBeTypeOf('string');
    const reads = readsOf(sent, 'sessions');
    expect(reads).toHaveLength(1);
    expect(reads[0]).toMatch(/metadata/);
  });
});
