// Pool leakage: hundreds of concurrent requests over several tenants on a pool
// of two connections; nothing of one request's tenant reaches the next.
import { beforeAll, expect, it } from 'vitest';
import type { Sql } from '../src/db/pool.ts';
import { createTestApp, createTestTenant, insertAgents, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let pool: Sql;
let api: TestApp;
let tenants: TestTenant[];

beforeAll(async () => {
  db = await useTestDatabase();
  pool = db.appPool(2);
  api = createTestApp(pool);
  tenants = [];
  for (const slug of ['pool-a', 'pool-b', 'pool-c', 'pool-d']) {
    const tenant = await createTestTenant(db.owner, slug);
    await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, [`${slug} 1`, `${slug} 2`, `${slug} 3`]);
    tenants.push(tenant);
  }
});

it('keeps every response to its own tenant under concurrency, with writes and refusals interleaved', async () => {
  const requests = Array.from({ length: 400 }, async (_, i) => {
    const tenant = tenants[i % tenants.length]!;
    if (i % 10 === 7) {
      // A refused request (foreign tenant) in the mix must not disturb the others.
      const other = tenants[(i + 1) % tenants.length]!;
      const refused = await api.request('{ agents { edges { node { name } } } }', {
        token: tenant.members.VIEWER.token,
        headers: { 'x-tenant-id': other.slug },
      });
      expect(refused.status).toBe(403);
      return;
    }
    if (i % 10 === 3) {
      const created = await api.request('mutation($name: String!) { createAgent(input: { name: $name, kind: "assistant" }) { agent { name } } }', {
        token: tenant.members.MEMBER.token,
        variables: { name: `${tenant.slug} extra ${i}` },
      });
      expect(created.body.errors).toBeUndefined();
      return;
    }
    const { body } = await api.request('{ tenant { slug } agents(first: 100) { edges { node { name } } } }', { token: tenant.members.VIEWER.token });
    expect(body.errors).toBeUndefined();
    expect((body.data!.tenant as { slug: string }).slug).toBe(tenant.slug);
    const names = (body.data!.agents as { edges: { node: { name: string } }[] }).edges.map((edge) => edge.node.name);
    expect(names.length).toBeGreaterThanOrEqual(3);
    for (const name of names) expect(name.startsWith(`${tenant.slug} `)).toBe(true);
  });
  await Promise.all(requests);

  // Every write landed in its own tenant.
  const misplaced = await db.owner`
    select a.name from app.agents a join app.tenants t on t.id = a.tenant_id where a.name not like t.slug || ' %'`;
  expect(misplaced).toEqual([]);
});

it('leaves no tenant on any pooled connection', async () => {
  // Hold both connections at once, so each of them is checked.
  const [first, second] = await Promise.all([pool.reserve(), pool.reserve()]);
  const pids: number[] = [];
  try {
    for (const connection of [first, second]) {
      const [row] = await connection`
        select current_setting('app.tenant_id', true) as tenant, current_setting('app.role', true) as role,
               app.current_tenant_id() as helper, (select count(*)::int from app.agents) as agents,
               pg_backend_pid() as pid`;
      expect(row).toMatchObject({ helper: null, agents: 0 });
      expect(row!.tenant ?? '').toBe('');
      expect(row!.role ?? '').toBe('');
      pids.push(row!.pid as number);
    }
    expect(new Set(pids).size).toBe(2); // both pooled connections, not one twice
  } finally {
    first?.release();
    second?.release();
  }
});
