// Node types are declared once (src/nodes/): the registry behind `node(id)`
// and every id argument is the set of declarations, so no type implements
// Node without being found by its id; every tenant object answers its own
// global id through `node(id)`, and another tenant's id, a malformed id and an
// id of a type that is not a node read alike: null.
import { isObjectType } from 'graphql';
import { beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/graphql/schema.ts';
import { encodeGlobalId, nodeTypeNamed } from '../src/nodes/global-id.ts';
import { table } from '../src/nodes/table.ts';
import { createTestApp, createTestTenant, insertAgents, insertSession, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let b: TestTenant;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(2));
  a = await createTestTenant(db.owner, 'nodes-a');
  b = await createTestTenant(db.owner, 'nodes-b');
  for (const tenant of [a, b]) {
    const [agentId] = await insertAgents(db.owner, tenant.id, tenant.members.MEMBER.userId, ['noded']);
    const session = await insertSession(db.owner, tenant.id, agentId!, tenant.members.MEMBER.userId);
    await db.owner`insert into app.tasks (tenant_id, session_id, title) values (${tenant.id}, ${session}, 'noded task')`;
    const [context] = await db.owner<{ id: string }[]>`
      insert into app.contexts (tenant_id, kind, title, content) values (${tenant.id}, 'note', 'noded', 'text') returning id`;
    await db.owner`
      with job as (insert into app.fine_tuning_jobs (tenant_id, base_model) values (${tenant.id}, 'base') returning id, tenant_id)
      insert into app.fine_tuning_job_contexts (tenant_id, job_id, context_id) select tenant_id, id, ${context!.id} from job`;
    await api.request('mutation { createApiKey(input: { name: "noded", role: VIEWER }) { secret } }', { token: tenant.members.ADMIN.token });
    await api.request('mutation { inviteMember(input: { email: "noded@example.test", role: VIEWER }) { token } }', { token: tenant.members.ADMIN.token });
  }
});

const data = (response: GraphQLResponse) => {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return response.body.data!;
};

// Each node type, by a list that shows it to an ADMIN.
const LISTS: Record<string, string> = {
  Agent: 'agents',
  Session: 'sessions',
  Task: 'tasks',
  Context: 'contexts',
  FineTuningJob: 'fineTuningJobs',
  ApiKey: 'apiKeys',
  Invitation: 'invitations',
  Member: 'members',
  AuditEvent: 'auditEvents',
};

it('every type that implements Node is a declared node type, and every declared one is listed here', () => {
  const implementing = Object.values(schema.getTypeMap())
    .filter((type) => isObjectType(type) && type.getInterfaces().some((face) => face.name === 'Node'))
    .map((type) => type.name)
    .sort();
  expect(implementing).toEqual(Object.keys(LISTS).sort());
  for (const name of implementing) expect(nodeTypeNamed(name)?.name, name).toBe(name);
});

describe.each(Object.entries(LISTS))('%s', (typename, list) => {
  it('node(id) answers what its list answers; an id of another tenant reads as null', async () => {
    const listed = async (tenant: TestTenant) => {
      const answer = data(await api.request(`{ ${list}(first: 1) { edges { node { __typename id } } } }`, { token: tenant.members.ADMIN.token }));
      const [edge] = (answer[list] as { edges: { node: { __typename: string; id: string } }[] }).edges;
      expect(edge, `${list} of ${tenant.slug}`).toBeDefined();
      return edge!.node;
    };
    const own = await listed(a);
    const foreign = await listed(b);
    expect(own.__typename).toBe(typename);
    const byId = (id: string) => api.request('query($id: ID!) { node(id: $id) { __typename id } }', { token: a.members.ADMIN.token, variables: { id } });
    expect(data(await byId(own.id))).toEqual({ node: own });
    expect(data(await byId(foreign.id))).toEqual({ node: null });
  });
});

it('a malformed id, an unknown type and a type that is not a node read as null', async () => {
  const token = a.members.ADMIN.token;
  for (const id of ['nope', encodeGlobalId('Unknown', a.members.ADMIN.userId), encodeGlobalId('User', a.members.ADMIN.userId), a.members.ADMIN.userId]) {
    expect(data(await api.request('query($id: ID!) { node(id: $id) { id } }', { token, variables: { id } })), id).toEqual({ node: null });
  }
});

describe('table declarations', () => {
  type Row = { id: string; name: string; createdAt: Date };
  it('refuse a row key in two groups, a first group without the id, and a choice of a key they lack', () => {
    expect(() => table<Row>({ name: 'app.x', columns: [{ id: true, name: true }, { name: true }], orderBy: 'created_at' })).toThrow(/two column groups/);
    expect(() => table<Row>({ name: 'app.x', columns: [{ name: true }, { id: true }], orderBy: 'created_at' })).toThrow(/must read the id/);
    const rows = table<Row>({ name: 'app.x', columns: [{ id: true, name: true }, { createdAt: true }], orderBy: 'created_at' });
    expect(rows.choiceOf(['name'])).toBe(1);
    expect(rows.choiceOf(['createdAt'])).toBe(0b11);
    expect(rows.WHOLE).toBe(0b11);
    expect(rows.POSITION).toBe(0b100);
    expect(() => rows.choiceOf(['title'])).toThrow(/no column for the row key title/);
    expect(rows.columnOf('createdAt')).toBe('created_at');
  });
});
