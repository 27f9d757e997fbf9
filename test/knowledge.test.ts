// Contexts (knowledge, full-text search) and fine-tuning jobs through GraphQL:
// behaviour, permissions, and isolation between tenants.
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { codes, createTestApp, createTestTenant, insertAgents, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let b: TestTenant;
let agentA: string;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool());
  a = await createTestTenant(db.owner, 'know-a');
  b = await createTestTenant(db.owner, 'know-b');
  agentA = encodeGlobalId('Agent', (await insertAgents(db.owner, a.id, a.members.MEMBER.userId, ['librarian']))[0]!);
});

const data = <T>(response: GraphQLResponse, field: string): T => {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return response.body.data![field] as T;
};

async function createContext(token: string, input: Record<string, unknown>): Promise<GraphQLResponse> {
  return api.request('mutation($input: CreateContextInput!) { createContext(input: $input) { context { id title tags agent { name } contentBytes } } }', {
    token,
    variables: { input },
  });
}

const search = (token: string, text: string) =>
  api.request('query($q: String) { contexts(search: $q, first: 50) { edges { node { title } } } }', { token, variables: { q: text } });
const titles = (response: GraphQLResponse) => data<{ edges: { node: { title: string } }[] }>(response, 'contexts').edges.map((edge) => edge.node.title).sort();

describe('contexts', () => {
  it('stores knowledge and finds it by full-text search, tag and agent', async () => {
    const token = a.members.MEMBER.token;
    const created = data<{ context: { id: string; tags: string[]; agent: { name: string }; contentBytes: number } }>(
      await createContext(token, { kind: 'DOCUMENT', title: 'Refund policy', content: 'Customers may request refunds within 30 days.', tags: ['billing', 'policy'], agentId: agentA }),
      'createContext',
    );
    expect(created.context).toMatchObject({ tags: ['billing', 'policy'], agent: { name: 'librarian' }, contentBytes: 45 });
    data(await createContext(token, { kind: 'NOTE', title: 'Onboarding checklist', content: 'Create accounts, assign mentors.', tags: ['hr'] }), 'createContext');
    data(await createContext(token, { kind: 'MEMORY', title: 'User prefers short answers', content: 'Keep replies brief.' }), 'createContext');

    expect(titles(await search(token, 'refunds'))).toEqual(['Refund policy']); // stemmed: refunds ~ refund
    expect(titles(await search(token, 'mentor OR brief'))).toEqual(['Onboarding checklist', 'User prefers short answers']);
    expect(titles(await search(token, 'refund -customers'))).toEqual([]);
    const byTag = await api.request('{ contexts(filter: { tag: "billing" }) { edges { node { title } } } }', { token });
    expect(titles(byTag)).toEqual(['Refund policy']);
    const byAgent = await api.request('query($agent: ID!) { contexts(filter: { agentId: $agent }) { edges { node { title } } } }', { token, variables: { agent: agentA } });
    expect(titles(byAgent)).toEqual(['Refund policy']);
  });

  it('never finds another tenant\'s knowledge, by search or by id', async () => {
    const secret = data<{ context: { id: string } }>(
      await createContext(a.members.MEMBER.token, { kind: 'DOCUMENT', title: 'Acquisition plan', content: 'Project Bluebird: confidential.' }),
      'createContext',
    );
    expect(titles(await search(b.members.ADMIN.token, 'Bluebird'))).toEqual([]);
    expect(titles(await search(b.members.ADMIN.token, ''))).toEqual([]);
    const byId = await api.request('query($id: ID!) { context(id: $id) { id } node(id: $id) { id } }', { token: b.members.ADMIN.token, variables: { id: secret.context.id } });
    expect(byId.body).toEqual({ data: { context: null, node: null } });
    const edit = await api.request('mutation($id: ID!) { updateContext(input: { id: $id, title: "mine now" }) { context { id } } }', {
      token: b.members.ADMIN.token,
      variables: { id: secret.context.id },
    });
    expect(codes(edit)).toEqual(['NOT_FOUND']);
    // Linking B's context to A's agent: the composite key finds no such agent.
    expect(codes(await createContext(b.members.ADMIN.token, { kind: 'NOTE', title: 'cross link', agentId: agentA }))).toEqual(['NOT_FOUND']);
  });

  it('follows the permission table', async () => {
    expect(codes(await createContext(a.members.VIEWER.token, { kind: 'NOTE', title: 'by viewer' }))).toEqual(['FORBIDDEN']);
    const mine = data<{ context: { id: string } }>(await createContext(a.members.ADMIN.token, { kind: 'NOTE', title: 'by admin' }), 'createContext').context.id;
    const update = (token: string) =>
      api.request('mutation($id: ID!) { updateContext(input: { id: $id, tags: ["edited"] }) { context { tags } } }', { token, variables: { id: mine } });
    expect(codes(await update(a.members.MEMBER.token))).toEqual(['FORBIDDEN']);
    expect(data(await update(a.members.LEAD.token), 'updateContext')).toEqual({ context: { tags: ['edited'] } });
  });

  it('validates sizes and tags, naming the field', async () => {
    const big = await createContext(a.members.MEMBER.token, { kind: 'DOCUMENT', title: 'big', content: 'x'.repeat(1_048_577) });
    expect(big.body.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.content' });
    const badTag = await createContext(a.members.MEMBER.token, { kind: 'NOTE', title: 'tagged', tags: ['ok', 'not ok!'] });
    expect(badTag.body.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
    expect(String(badTag.body.errors![0]!.extensions!.field)).toMatch(/^input\.tags/);
  });
});

describe('fine-tuning jobs', () => {
  const create = (token: string, contextIds: string[]) =>
    api.request(
      'mutation($ids: [ID!]!) { createFineTuningJob(input: { baseModel: "base-7b", datasetContextIds: $ids, hyperparameters: { epochs: 3 } }) { job { id status datasetContexts { title } hyperparameters } } }',
      { token, variables: { ids: contextIds } },
    );

  it('LEAD creates and cancels; the dataset is the tenant\'s own contexts', async () => {
    const context = data<{ context: { id: string } }>(await createContext(a.members.MEMBER.token, { kind: 'DOCUMENT', title: 'training doc' }), 'createContext').context.id;
    expect(codes(await create(a.members.MEMBER.token, [context]))).toEqual(['FORBIDDEN']);
    const job = data<{ job: { id: string; status: string; datasetContexts: { title: string }[]; hyperparameters: unknown } }>(
      await create(a.members.LEAD.token, [context, context]),
      'createFineTuningJob',
    ).job;
    expect(job).toMatchObject({ status: 'QUEUED', datasetContexts: [{ title: 'training doc' }], hyperparameters: { epochs: 3 } });

    // A context in use cannot be deleted.
    const remove = await api.request('mutation($id: ID!) { deleteContext(input: { id: $id }) { deletedContextId } }', { token: a.members.ADMIN.token, variables: { id: context } });
    expect(codes(remove)).toEqual(['CONFLICT']);

    const cancel = (token: string) => api.request('mutation($id: ID!) { cancelFineTuningJob(input: { id: $id }) { job { status finishedAt } } }', { token, variables: { id: job.id } });
    expect(codes(await cancel(b.members.ADMIN.token))).toEqual(['NOT_FOUND']);
    const cancelled = data<{ job: { status: string; finishedAt: string | null } }>(await cancel(a.members.LEAD.token), 'cancelFineTuningJob');
    expect(cancelled.job.status).toBe('CANCELLED');
    expect(cancelled.job.finishedAt).not.toBeNull();
    expect(codes(await cancel(a.members.ADMIN.token))).toEqual(['BAD_USER_INPUT']);
  });

  it('refuses another tenant\'s contexts in a dataset, and writes no job', async () => {
    const foreign = data<{ context: { id: string } }>(await createContext(a.members.MEMBER.token, { kind: 'DOCUMENT', title: 'A only' }), 'createContext').context.id;
    const response = await create(b.members.ADMIN.token, [foreign]);
    expect(response.body.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.datasetContextIds' });
    const [row] = await db.owner`select count(*)::int as n from app.fine_tuning_jobs where tenant_id = ${b.id}`;
    expect(row!.n).toBe(0);
    const list = await api.request('{ fineTuningJobs { edges { node { id } } } }', { token: b.members.ADMIN.token });
    expect(data<{ edges: unknown[] }>(list, 'fineTuningJobs').edges).toEqual([]);
  });
});
