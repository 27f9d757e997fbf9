// The agent permission table, for each role, through GraphQL:
//   VIEWER reads only; MEMBER creates, and changes/deletes own agents;
//   LEAD and ADMIN change/delete any agent in the tenant.
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { ROLES, type Role } from '../src/tenancy/roles.ts';
import { codes, createTestApp, createTestTenant, insertAgents, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool());
  tenant = await createTestTenant(db.owner, 'roles');
});

const CAN_CREATE: Record<Role, boolean> = { ADMIN: true, LEAD: true, MEMBER: true, VIEWER: false };
const CAN_CHANGE_ANY: Record<Role, boolean> = { ADMIN: true, LEAD: true, MEMBER: false, VIEWER: false };

const create = (token: string, name: string) =>
  api.request('mutation($name: String!) { createAgent(input: { name: $name, kind: "assistant" }) { agent { id name createdBy { id } } } }', {
    token,
    variables: { name },
  });
const update = (token: string, id: string, name: string) =>
  api.request('mutation($id: ID!, $name: String) { updateAgent(input: { id: $id, name: $name }) { agent { name } } }', {
    token,
    variables: { id: encodeGlobalId('Agent', id), name },
  });
const remove = (token: string, id: string) =>
  api.request('mutation($id: ID!) { deleteAgent(input: { id: $id }) { deletedAgentId } }', {
    token,
    variables: { id: encodeGlobalId('Agent', id) },
  });
const agentName = async (id: string) => (await db.owner`select name from app.agents where id = ${id}`)[0]?.name as string | undefined;

describe.each(ROLES)('%s', (role) => {
  it('reads the tenant, the viewer and the agents', async () => {
    await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, [`readable by ${role}`]);
    const { body } = await api.request('{ viewer { role user { email } } tenant { slug } agents { edges { node { name } } } }', {
      token: tenant.members[role].token,
    });
    expect(body.errors).toBeUndefined();
    expect(body.data!.viewer).toEqual({ role, user: { email: `${role.toLowerCase()}@roles.test` } });
    const names = (body.data!.agents as { edges: { node: { name: string } }[] }).edges.map((edge) => edge.node.name);
    expect(names).toContain(`readable by ${role}`);
  });

  it(CAN_CREATE[role] ? 'creates an agent as itself' : 'cannot create an agent', async () => {
    const response = await create(tenant.members[role].token, `created by ${role}`);
    if (CAN_CREATE[role]) {
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data).toMatchObject({ createAgent: { agent: { name: `created by ${role}`, createdBy: { id: tenant.members[role].userId } } } });
    } else {
      expect(codes(response)).toEqual(['FORBIDDEN']);
      expect(response.body.data).toBeNull();
      const [row] = await db.owner`select count(*)::int as n from app.agents where name = ${`created by ${role}`}`;
      expect(row!.n).toBe(0);
    }
  });

  it(CAN_CREATE[role] ? 'changes and deletes its own agent' : 'cannot change or delete even an agent it is recorded as creating', async () => {
    const [id] = await insertAgents(db.owner, tenant.id, tenant.members[role].userId, [`own of ${role}`]);
    const renamed = await update(tenant.members[role].token, id!, `renamed own of ${role}`);
    const deleted = await remove(tenant.members[role].token, id!);
    if (CAN_CREATE[role]) {
      expect(renamed.body.data).toEqual({ updateAgent: { agent: { name: `renamed own of ${role}` } } });
      expect(deleted.body.errors).toBeUndefined();
      expect(await agentName(id!)).toBeUndefined();
    } else {
      expect(codes(renamed)).toEqual(['FORBIDDEN']);
      expect(codes(deleted)).toEqual(['FORBIDDEN']);
      expect(await agentName(id!)).toBe(`own of ${role}`);
    }
  });

  it(CAN_CHANGE_ANY[role] ? "changes and deletes another member's agent" : "cannot change or delete another member's agent", async () => {
    const other = role === 'MEMBER' ? tenant.members.ADMIN : tenant.members.MEMBER;
    const [id] = await insertAgents(db.owner, tenant.id, other.userId, [`of another, for ${role}`]);
    const renamed = await update(tenant.members[role].token, id!, `changed by ${role}`);
    if (CAN_CHANGE_ANY[role]) {
      expect(renamed.body.data).toEqual({ updateAgent: { agent: { name: `changed by ${role}` } } });
      expect((await remove(tenant.members[role].token, id!)).body.errors).toBeUndefined();
      expect(await agentName(id!)).toBeUndefined();
    } else {
      expect(codes(renamed)).toEqual(['FORBIDDEN']);
      expect(codes(await remove(tenant.members[role].token, id!))).toEqual(['FORBIDDEN']);
      expect(await agentName(id!)).toBe(`of another, for ${role}`);
    }
  });
});

describe('input', () => {
  it('names the bad field, and writes nothing', async () => {
    const token = tenant.members.MEMBER.token;
    const cases: [string, string, string][] = [
      ['', 'assistant', 'input.name'],
      ['x'.repeat(101), 'assistant', 'input.name'],
      ['bad kind', 'Not A Kind', 'input.kind'],
    ];
    for (const [name, kind, field] of cases) {
      const response = await api.request('mutation($name: String!, $kind: String!) { createAgent(input: { name: $name, kind: $kind }) { agent { id } } }', {
        token,
        variables: { name, kind },
      });
      expect(codes(response)).toEqual(['BAD_USER_INPUT']);
      expect(response.body.errors![0]!.extensions!.field).toBe(field);
    }
  });

  it('answers a duplicate name with CONFLICT', async () => {
    const token = tenant.members.MEMBER.token;
    expect((await create(token, 'unique name')).body.errors).toBeUndefined();
    expect(codes(await create(token, 'unique name'))).toEqual(['CONFLICT']);
  });

  it('rolls back every write of a mutation operation when any part fails', async () => {
    const token = tenant.members.MEMBER.token;
    const response = await api.request(
      'mutation { first: createAgent(input: { name: "atomic one", kind: "assistant" }) { agent { id } } second: createAgent(input: { name: "atomic one", kind: "assistant" }) { agent { id } } }',
      { token },
    );
    expect(codes(response)).toEqual(['CONFLICT']);
    expect(response.body.data).toBeNull();
    const [row] = await db.owner`select count(*)::int as n from app.agents where name = 'atomic one'`;
    expect(row!.n).toBe(0);
  });

  it('rejects a foreign, malformed or wrong-type id as not found, and a malformed cursor as bad input', async () => {
    const token = tenant.members.ADMIN.token;
    for (const id of ['garbage', encodeGlobalId('User', tenant.members.ADMIN.userId), encodeGlobalId('Agent', 'not-a-uuid')]) {
      const response = await api.request('mutation($id: ID!) { deleteAgent(input: { id: $id }) { deletedAgentId } }', { token, variables: { id } });
      expect(codes(response)).toEqual(['NOT_FOUND']);
      const read = await api.request('query($id: ID!) { agent(id: $id) { id } node(id: $id) { id } }', { token, variables: { id } });
      expect(read.body).toEqual({ data: { agent: null, node: null } });
    }
    const page = await api.request('{ agents(after: "nonsense") { edges { cursor } } }', { token });
    expect(codes(page)).toEqual(['BAD_USER_INPUT']);
  });
});
