// The hot list queries, exactly as the API sends them, EXPLAINed as the
// request role: each reaches its rows through an index whose condition starts
// with tenant_id, and the tenant helper runs once per statement (an InitPlan),
// not once per row.
import type postgres from 'postgres';
import { beforeAll, expect, it } from 'vitest';
import { createTestApp, createTestTenant, type TestApp, type TestTenant } from './helpers/app.ts';
import { asMember } from './helpers/as-member.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;
const sent: { query: string; parameters: readonly unknown[] }[] = [];

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(2, (query, parameters) => sent.push({ query, parameters })));
  tenant = await createTestTenant(db.owner, 'explain');
  // 200 tenants of data, so the planner has a real choice to make. Seeded with the triggers off
  // (replica mode): 126,000 rows are planner statistics here, not audited, counted or published changes.
  await db.owner.begin(async (tx) => {
    await tx`set local session_replication_role = replica`;
    await tx`
      insert into app.tenants (slug, name, plan) select 'explain-' || i, 'Explain ' || i, 'enterprise' from generate_series(1, 199) i`;
    await tx`
      insert into app.agents (tenant_id, name, kind)
      select t.id, 'agent ' || g, 'assistant' from app.tenants t, generate_series(1, 30) g`;
    await tx`
      insert into app.sessions (tenant_id, agent_id, started_at)
      select a.tenant_id, a.id, now() - g * interval '1 hour' from app.agents a, generate_series(1, 5) g`;
    await tx`
      insert into app.tasks (tenant_id, session_id, title)
      select s.tenant_id, s.id, 'task ' || g from app.sessions s, generate_series(1, 3) g`;
    await tx`
      insert into app.contexts (tenant_id, kind, title, content)
      select t.id, 'note', 'note ' || g, 'refund policy and onboarding ' || g from app.tenants t, generate_series(1, 20) g`;
  });
  await db.owner`analyze`;
});

async function plansOf(query: string, match: RegExp): Promise<string[]> {
  sent.length = 0;
  const response = await api.request(query, { token: tenant.members.VIEWER.token });
  expect(response.body.errors).toBeUndefined();
  const statements = sent.filter((statement) => match.test(statement.query));
  expect(statements.length).toBeGreaterThan(0);
  const plans: string[] = [];
  for (const statement of statements) {
    const rows = await asMember(db.owner, tenant.members.VIEWER, (tx) =>
      tx.unsafe(`explain ${statement.query}`, statement.parameters as postgres.ParameterOrJSON<never>[]));
    plans.push(rows.map((row) => String(row['QUERY PLAN'])).join('\n'));
  }
  return plans;
}

function expectTenantIndexed(plan: string, index: RegExp) {
  expect(plan, plan).toMatch(index);
  expect(plan, plan).toMatch(/Index Cond: \(+tenant_id = \(InitPlan/);
  expect(plan, plan).toMatch(/InitPlan \d+/);
  expect(plan, plan).not.toMatch(/Seq Scan/);
  expect(plan, plan).not.toMatch(/Filter: .*current_tenant_id\(\)/); // never evaluated per row
}

it('agents(first: 20)', async () => {
  const [plan] = await plansOf('{ agents(first: 20) { edges { node { name } } } }', /from app\.agents\s+where true/);
  expectTenantIndexed(plan!, /agents_tenant_(status_)?created_idx/);
});

it('sessions(first: 20) and their tasks (one lateral statement)', async () => {
  const plans = await plansOf('{ sessions(first: 20) { edges { node { tasks(first: 20) { edges { node { title } } } } } } }', /from app\.(sessions|tasks)\s+where/);
  expect(plans).toHaveLength(2);
  expectTenantIndexed(plans[0]!, /sessions_tenant_started_idx/);
  expectTenantIndexed(plans[1]!, /tasks_tenant_session_created_idx/);
});

it('contexts(search: …)', async () => {
  const [plan] = await plansOf('{ contexts(search: "refund", first: 20) { edges { node { title } } } }', /from app\.contexts\s+where/);
  expect(plan, plan).toMatch(/InitPlan \d+/);
  expect(plan, plan).toMatch(/Index Cond: .*tenant_id = \(InitPlan/);
  expect(plan, plan).not.toMatch(/Seq Scan/);
});

it('the write policies shared by agents, sessions, tasks and contexts are inlined: no per-row function call', async () => {
  const plan = await asMember(db.owner, tenant.members.MEMBER, async (tx) => {
    const rows = await tx.unsafe(`explain (verbose) update app.agents set description = 'x' where name = 'agent 1'`);
    return rows.map((row) => String(row['QUERY PLAN'])).join('\n');
  });
  expect(plan, plan).toMatch(/Index Cond: \(+agents\.tenant_id = \(InitPlan/);
  expect(plan, plan).toMatch(/current_setting\('app\.role'/); // app.has_role, inlined
  expect(plan, plan).not.toMatch(/lead_or_creator|member_and_creator|has_role/);
});
