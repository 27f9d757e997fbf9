// Cursor pagination over agents: every agent exactly once, in creation order,
// forwards and backwards, stable while rows are added.
import { beforeAll, expect, it } from 'vitest';
import { codes, createTestApp, createTestTenant, insertAgents, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;
const NAMES = Array.from({ length: 45 }, (_, i) => `agent ${String(i).padStart(2, '0')}`);

type Page = { edges: { cursor: string; node: { name: string } }[]; pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string; endCursor: string } };

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool());
  tenant = await createTestTenant(db.owner, 'pages');
  // One statement: equal created_at for all, so order falls back to the id.
  await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, NAMES.slice(0, 20));
  for (const name of NAMES.slice(20)) await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, [name]);
});

async function page(args: string): Promise<Page> {
  const { body } = await api.request(
    `{ agents${args ? `(${args})` : ''} { edges { cursor node { name } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`,
    { token: tenant.members.VIEWER.token },
  );
  expect(body.errors).toBeUndefined();
  return body.data!.agents as Page;
}

async function expectedOrder(): Promise<string[]> {
  const rows = await db.owner`select name from app.agents where tenant_id = ${tenant.id} order by created_at, id`;
  return rows.map((row) => row.name as string);
}

it('walks forwards through every agent exactly once', async () => {
  const seen: string[] = [];
  let after = '';
  for (;;) {
    const current = await page(`first: 7${after ? `, after: "${after}"` : ''}`);
    seen.push(...current.edges.map((edge) => edge.node.name));
    if (!current.pageInfo.hasNextPage) break;
    after = current.pageInfo.endCursor;
  }
  expect(seen).toEqual(await expectedOrder());
});

it('walks backwards with last/before', async () => {
  const seen: string[] = [];
  let before = '';
  for (;;) {
    const current = await page(`last: 10${before ? `, before: "${before}"` : ''}`);
    seen.unshift(...current.edges.map((edge) => edge.node.name));
    if (!current.pageInfo.hasPreviousPage) break;
    before = current.pageInfo.startCursor;
  }
  expect(seen).toEqual(await expectedOrder());
});

it('defaults to 20 and caps a page at 100', async () => {
  expect((await page('')).edges).toHaveLength(20);
  expect((await page('first: 1000')).edges).toHaveLength(45);
});

it('keeps a cursor valid while agents are added', async () => {
  const first = await page('first: 5');
  await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, ['late arrival']);
  const next = await page(`first: 5, after: "${first.pageInfo.endCursor}"`);
  const order = await expectedOrder();
  expect(next.edges.map((edge) => edge.node.name)).toEqual(order.slice(5, 10));
});

it('refuses a negative page size as bad input', async () => {
  const response = await api.request('{ agents(first: -1) { edges { cursor } } }', { token: tenant.members.VIEWER.token });
  expect(codes(response)).toEqual(['BAD_USER_INPUT']);
});
