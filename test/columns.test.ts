// Lists read only the columns the request's fields need (src/nodes/table.ts):
// every field of every listed type, asked for alone, answers exactly what it
// answers when every field is asked for, without a second read of the row;
// fragments and merged selections are seen; unasked columns are not read.
import { getNamedType, isListType, isNonNullType, isObjectType, type GraphQLField } from 'graphql';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { schema } from '../src/graphql/schema.ts';
import { column } from '../src/nodes/selection.ts';
import { createTestApp, createTestTenant, insertAgents, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;
let sessionId: string;
const statements: string[] = [];

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(2, (query) => statements.push(query)));
  tenant = await createTestTenant(db.owner, 'columns');
  const { userId } = tenant.members.MEMBER;
  const agentIds = await insertAgents(db.owner, tenant.id, userId, ['first', 'second']);
  await db.owner`update app.agents set description = 'does things', model = 'm-1', config = '{"temperature": 0.2}' where tenant_id = ${tenant.id}`;
  for (const agentId of agentIds) {
    const [session] = await db.owner<{ id: string }[]>`
      insert into app.sessions (tenant_id, agent_id, started_by, metadata) values (${tenant.id}, ${agentId}, ${userId}, '{"run": 1}') returning id`;
    sessionId ??= session!.id;
    await db.owner`
      insert into app.tasks (tenant_id, session_id, title, input, assignee_id, created_by)
      select ${tenant.id}, ${session!.id}, 'task ' || g, jsonb_build_object('n', g), ${userId}, ${userId} from generate_series(1, 3) g`;
    await db.owner`update app.tasks set status = 'running' where session_id = ${session!.id}`;
    await db.owner`update app.tasks set status = 'succeeded', output = '{"ok": true}', tokens = 7 where session_id = ${session!.id}`;
    await db.owner`
      insert into app.contexts (tenant_id, kind, title, content, tags, agent_id, session_id, created_by)
      values (${tenant.id}, 'document', 'doc', 'the content', '{a,b}', ${agentId}, ${session!.id}, ${userId})`;
  }
});

/** The selection that asks for one field: scalars as they are, objects by id, connections by their first node's id. */
function selectionOf(field: GraphQLField<unknown, unknown>): string {
  const type = getNamedType(field.type);
  if (!isObjectType(type)) return field.name;
  if (type.name.endsWith('Connection')) return `${field.name}(first: 1) { edges { node { id } } }`;
  return `${field.name} { id }`;
}

/** The node fields of a listed type, from the schema (so a field added later is tested too). */
function fieldsOf(typeName: string): GraphQLField<unknown, unknown>[] {
  const type = schema.getType(typeName);
  if (!isObjectType(type)) throw new Error(`${typeName} is not an object type`);
  return Object.values(type.getFields()).filter((field) => field.name !== 'id');
}

type Listed = { edges: { node: Record<string, unknown> }[] };

const LISTS = [
  { type: 'Agent', table: 'agents', query: (selection: string) => `{ list: agents { edges { node { id ${selection} } } } }`, path: ['list'] },
  { type: 'Session', table: 'sessions', query: (selection: string) => `{ list: sessions { edges { node { id ${selection} } } } }`, path: ['list'] },
  { type: 'Task', table: 'tasks', query: (selection: string) => `{ list: tasks { edges { node { id ${selection} } } } }`, path: ['list'] },
  { type: 'Context', table: 'contexts', query: (selection: string) => `{ list: contexts { edges { node { id ${selection} } } } }`, path: ['list'] },
  {
    type: 'Task',
    table: 'tasks',
    query: (selection: string) => `query($s: ID!) { session(id: $s) { list: tasks { edges { node { id ${selection} } } } } }`,
    path: ['session', 'list'],
  },
  {
    type: 'Session',
    table: 'sessions',
    query: (selection: string) => `{ agents(first: 1) { edges { node { list: sessions { edges { node { id ${selection} } } } } } } }`,
    path: ['agents', 'edges', 0, 'node', 'list'],
  },
] as const;

/** The statements a query sent. */
async function sentFor(query: string): Promise<string[]> {
  statements.length = 0;
  const response: GraphQLResponse = await api.request(query, { token: tenant.members.VIEWER.token });
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return [...statements];
}

function rowsAt(data: unknown, path: readonly (string | number)[]): Record<string, unknown>[] {
  const listed = path.reduce<unknown>((value, key) => (value as Record<string | number, unknown>)[key], data) as Listed;
  return listed.edges.map((edge) => edge.node);
}

/** A statement that reads a row of `table` by id: what a column left out of a list would cost. */
const rereads = (sent: string[], table: string) => sent.filter((statement) => new RegExp(`from app\\.${table} where "id"`).test(statement));

describe.each([false, true])('through %s', (viaYoga) => {
  it.each(LISTS.map((entry) => [`${entry.type} via ${entry.path.join('.')}`, entry] as const))('%s: each field alone answers as with all fields, without a re-read', async (_name, entry) => {
    const fields = fieldsOf(entry.type);
    const request = async (selection: string) => {
      statements.length = 0;
      const response = await api.request(entry.query(selection), { token: tenant.members.VIEWER.token, variables: { s: encodeGlobalId('Session', sessionId) }, viaYoga });
      expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
      return { rows: rowsAt(response.body.data, entry.path), sent: [...statements] };
    };
    const all = await request(fields.map(selectionOf).join(' '));
    expect(all.rows.length).toBeGreaterThan(0);
    for (const field of fields) {
      const alone = await request(selectionOf(field));
      expect(alone.rows, field.name).toEqual(all.rows.map((row) => ({ id: row['id'], [field.name]: row[field.name] })));
      expect(rereads(alone.sent, entry.table), field.name).toEqual([]);
      // A non-null field never came back empty-handed.
      if (isNonNullType(field.type) && !isListType(field.type)) for (const row of alone.rows) expect(row[field.name], field.name).not.toBeNull();
    }
  });
});

describe('what a list reads', () => {
  const listStatement = (sent: string[], table: string) => sent.find((statement) => statement.includes(`from app.${table}`))!;

  it('leaves out the columns no field asked for', async () => {
    expect(listStatement(await sentFor('{ contexts { edges { node { title } } } }'), 'contexts')).not.toMatch(/\bcontent\b/);
    expect(listStatement(await sentFor('{ agents { edges { node { name } } } }'), 'agents')).not.toMatch(/config|description|created_by/);
    expect(listStatement(await sentFor('{ contexts { edges { node { content } } } }'), 'contexts')).toMatch(/\bcontent\b/);
  });

  it('sees fields in named and inline fragments and in merged selections', async () => {
    const query = `
      fragment Authored on Agent { createdBy { email } }
      { agents { edges { node { name ...Authored } } }
        agents { edges { node { ... on Agent { description } createdAt } } } }`;
    for (const viaYoga of [false, true]) {
      statements.length = 0;
      const response = await api.request(query, { token: tenant.members.VIEWER.token, viaYoga });
      expect(response.body.errors).toBeUndefined();
      for (const node of rowsAt(response.body.data, ['agents'])) {
        expect(Object.keys(node).sort()).toEqual(['createdAt', 'createdBy', 'description', 'name']);
        expect(node).toMatchObject({ createdBy: { email: expect.stringContaining('@') as unknown }, description: 'does things' });
        expect(node['createdAt']).toBeTypeOf('string');
      }
      expect(rereads(statements, 'agents')).toEqual([]);
    }
  });

  it('a page with no filter and no cursor is one constant text; a filter or a cursor adds its condition', async () => {
    // conditions() of nothing is marked (src/nodes/keyset.ts), and table.ts then sends the constant `where true … limit $1`.
    const page = (args: string) => sentFor(`{ agents(${args}) { edges { cursor node { name } } } }`).then((sent) => listStatement(sent, 'agents'));
    expect(await page('first: 2')).toMatch(/ where true order by [^$]* limit \$1$/);
    expect(await page('first: 2, filter: { status: ACTIVE }')).toMatch(/and status = \$1/);
    const listed = await api.request('{ agents(first: 1) { edges { cursor } } }', { token: tenant.members.VIEWER.token });
    const { cursor } = (listed.body.data!.agents as { edges: { cursor: string }[] }).edges[0]!;
    expect(await page(`first: 2, after: "${cursor}"`)).not.toMatch(/ where true order by/);
  });

  it('reads positions only when a cursor is asked for', async () => {
    const reads = async (selection: string) => listStatement(await sentFor(`{ agents(first: 2) ${selection} }`), 'agents');
    expect(await reads('{ edges { node { name } } pageInfo { hasNextPage } }')).not.toMatch(/as position/);
    for (const asks of ['{ edges { cursor } }', '{ pageInfo { endCursor } }', '{ pageInfo { startCursor } }', '{ ...on AgentConnection { edges { cursor } } }']) {
      expect(await reads(asks), asks).toMatch(/as position/);
    }
  });

  it.each(LISTS.map((entry) => [`${entry.type} via ${entry.path.join('.')}`, entry] as const))(
    '%s: cursors alone are the cursors read with every field, and page on',
    async (_name, entry) => {
      const variables = { s: encodeGlobalId('Session', sessionId) };
      const request = async (query: string) => {
        const response = await api.request(query, { token: tenant.members.VIEWER.token, variables });
        expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
        return entry.path.reduce<unknown>((value, key) => (value as Record<string | number, unknown>)[key], response.body.data) as {
          edges: { cursor: string }[];
          pageInfo: { endCursor: string };
        };
      };
      const withCursors = (selection: string) => entry.query(selection).replace(/(list: [^{]+\{ )edges \{/, '$1pageInfo { endCursor } edges { cursor');
      const alone = await request(withCursors(''));
      const all = await request(withCursors(fieldsOf(entry.type).map(selectionOf).join(' ')));
      expect(alone.edges.length).toBeGreaterThan(0);
      expect(alone.edges.map((edge) => edge.cursor)).toEqual(all.edges.map((edge) => edge.cursor));
      expect(alone.pageInfo.endCursor).toBe(alone.edges.at(-1)!.cursor);
      const next = await request(entry.query('').replace(/list: (\w+)/, `list: $1(after: "${alone.edges[0]!.cursor}")`));
      expect(next.edges.length).toBe(alone.edges.length - 1);
    },
  );

  it('a column a row lacks is read from the whole row; one it has is not', async () => {
    type Row = { id: string; config: Record<string, unknown> };
    const whole = (): Promise<Row> => Promise.resolve({ id: 'x', config: { loaded: true } });
    expect(await column<Row, 'config'>({ id: 'x' }, 'config', whole)).toEqual({ loaded: true });
    expect(column<Row, 'config'>({ id: 'x', config: { own: true } }, 'config', () => Promise.reject(new Error('not needed')))).toEqual({ own: true });
  });
});
