// Tenant B, through every query and mutation, over tenant A's ids: sees
// nothing, changes nothing, learns nothing.
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { codes, createTestApp, createTestTenant, insertAgents, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let b: TestTenant;
let aAgentIds: string[];

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool());
  a = await createTestTenant(db.owner, 'tenant-a');
  b = await createTestTenant(db.owner, 'tenant-b');
  aAgentIds = await insertAgents(db.owner, a.id, a.members.MEMBER.userId, ['a-one', 'a-two', 'a-three']);
  await insertAgents(db.owner, b.id, b.members.MEMBER.userId, ['b-one']);
});

const agentGid = (id: string) => encodeGlobalId('Agent', id);

describe('tenant B over tenant A', () => {
  it('lists only its own agents', async () => {
    const { body } = await api.request('{ agents(first: 100) { edges { node { name } } } }', { token: b.members.ADMIN.token });
    expect(body.errors).toBeUndefined();
    const names = (body.data!.agents as { edges: { node: { name: string } }[] }).edges.map((edge) => edge.node.name);
    expect(names).toEqual(['b-one']);
  });

  it('reads null for agent(id) and node(id) of an A agent', async () => {
    for (const id of aAgentIds) {
      const { body } = await api.request('query($id: ID!) { agent(id: $id) { id name } node(id: $id) { id } }', {
        token: b.members.ADMIN.token,
        variables: { id: agentGid(id) },
      });
      expect(body).toEqual({ data: { agent: null, node: null } });
    }
  });

  it('gets NOT_FOUND updating or deleting an A agent, and A is unchanged', async () => {
    const id = agentGid(aAgentIds[0]!);
    const update = await api.request('mutation($id: ID!) { updateAgent(input: { id: $id, name: "pwned" }) { agent { id } } }', {
      token: b.members.ADMIN.token,
      variables: { id },
    });
    expect(codes(update)).toEqual(['NOT_FOUND']);
    expect(update.body.data).toBeNull();
    const remove = await api.request('mutation($id: ID!) { deleteAgent(input: { id: $id }) { deletedAgentId } }', {
      token: b.members.ADMIN.token,
      variables: { id },
    });
    expect(codes(remove)).toEqual(['NOT_FOUND']);
    const rows = await db.owner<{ name: string }[]>`select name from app.agents where tenant_id = ${a.id} order by name`;
    expect(rows.map((row) => row.name)).toEqual(['a-one', 'a-three', 'a-two']);
  });

  it('answers the same for a foreign id as for an id that never existed', async () => {
    const foreign = await api.request('mutation($id: ID!) { deleteAgent(input: { id: $id }) { deletedAgentId } }', {
      token: b.members.ADMIN.token,
      variables: { id: agentGid(aAgentIds[1]!) },
    });
    const missing = await api.request('mutation($id: ID!) { deleteAgent(input: { id: $id }) { deletedAgentId } }', {
      token: b.members.ADMIN.token,
      variables: { id: agentGid('00000000-0000-4000-8000-000000000000') },
    });
    expect(foreign).toEqual(missing);
  });

  it('cannot create an agent named like an A agent to probe its existence', async () => {
    const { body } = await api.request('mutation { createAgent(input: { name: "a-one", kind: "assistant" }) { agent { name } } }', {
      token: b.members.ADMIN.token,
    });
    expect(body.errors).toBeUndefined();
    expect(body.data).toEqual({ createAgent: { agent: { name: 'a-one' } } });
  });

  it('cannot select tenant A with X-Tenant-ID, by id or slug', async () => {
    for (const header of [a.id, a.slug]) {
      const response = await api.request('{ tenant { id } }', { token: b.members.ADMIN.token, headers: { 'x-tenant-id': header } });
      expect(response.status).toBe(403);
      expect(codes(response)).toEqual(['TENANT_NOT_FOUND']);
      expect(response.body.data).toBeUndefined();
    }
  });

  it("does not see A's members, and sees only its own memberships", async () => {
    const { body } = await api.request('{ viewer { memberships { tenant { slug } } } }', { token: b.members.ADMIN.token });
    expect(body.data).toEqual({ viewer: { memberships: [{ tenant: { slug: 'tenant-b' } }] } });
    const creator = await api.request('query($id: ID!) { agent(id: $id) { createdBy { email } } }', {
      token: a.members.ADMIN.token,
      variables: { id: agentGid(aAgentIds[0]!) },
    });
    expect(creator.body.data).toEqual({ agent: { createdBy: { email: 'member@tenant-a.test' } } });
  });
});
