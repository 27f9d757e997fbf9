// Property: random sequences of create/rename/delete/read by random principals
// across three tenants. A model of who owns what predicts every answer, and
// what each principal can see always equals the model.
import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import { ROLES, roleAtLeast } from '../src/tenancy/roles.ts';
import { codes, createTestApp, createTestTenant, type Principal, type TestApp } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let principals: Principal[];

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(3));
  principals = [];
  for (const slug of ['prop-a', 'prop-b', 'prop-c']) {
    const tenant = await createTestTenant(db.owner, slug);
    principals.push(...ROLES.map((role) => tenant.members[role]));
  }
});

type ModelAgent = { globalId: string; tenantId: string; createdBy: string; name: string };
type Op =
  | { kind: 'create'; who: number; name: number }
  | { kind: 'rename'; who: number; agent: number; name: number }
  | { kind: 'delete'; who: number; agent: number }
  | { kind: 'read'; who: number; agent: number };

const who = fc.nat({ max: 11 });
const name = fc.nat({ max: 4 }); // few names: conflicts happen
const agent = fc.nat({ max: 50 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('create' as const), who, name }),
  fc.record({ kind: fc.constant('rename' as const), who, agent, name }),
  fc.record({ kind: fc.constant('delete' as const), who, agent }),
  fc.record({ kind: fc.constant('read' as const), who, agent }),
);

/** What the API must answer for a change of `target` by `principal`. */
function expectedChange(principal: Principal, target: ModelAgent | undefined): 'ok' | 'FORBIDDEN' | 'NOT_FOUND' {
  if (!roleAtLeast(principal.role, 'MEMBER')) return 'FORBIDDEN'; // scope-auth, before any lookup
  if (!target || target.tenantId !== principal.tenantId) return 'NOT_FOUND';
  if (!roleAtLeast(principal.role, 'LEAD') && target.createdBy !== principal.userId) return 'FORBIDDEN';
  return 'ok';
}

async function run(ops: Op[]): Promise<void> {
  await db.owner`delete from app.agents`;
  const model: ModelAgent[] = [];
  const deleted: ModelAgent[] = [];
  // Picks among live and deleted agents of every tenant, so foreign and stale ids are tried too.
  const pick = (index: number) => [...model, ...deleted][index % Math.max(1, model.length + deleted.length)];

  for (const step of ops) {
    const principal = principals[step.who]!;
    const token = principal.token;
    const taken = (tenantId: string, value: string, except?: ModelAgent) =>
      model.some((a) => a.tenantId === tenantId && a.name === value && a !== except);

    if (step.kind === 'create') {
      const value = `name ${step.name}`;
      const response = await api.request('mutation($name: String!) { createAgent(input: { name: $name, kind: "assistant" }) { agent { id } } }', {
        token,
        variables: { name: value },
      });
      const expected = !roleAtLeast(principal.role, 'MEMBER') ? 'FORBIDDEN' : taken(principal.tenantId, value) ? 'CONFLICT' : 'ok';
      if (expected === 'ok') {
        expect(response.body.errors).toBeUndefined();
        const globalId = (response.body.data!.createAgent as { agent: { id: string } }).agent.id;
        model.push({ globalId, tenantId: principal.tenantId, createdBy: principal.userId, name: value });
      } else {
        expect(codes(response)).toEqual([expected]);
      }
    } else if (step.kind === 'rename' || step.kind === 'delete') {
      const target = pick(step.agent);
      if (!target) continue;
      const live = model.includes(target) ? target : undefined;
      let expected: string = expectedChange(principal, live);
      const value = step.kind === 'rename' ? `name ${step.name}` : '';
      if (expected === 'ok' && step.kind === 'rename' && taken(principal.tenantId, value, live)) expected = 'CONFLICT';
      const response =
        step.kind === 'rename'
          ? await api.request('mutation($id: ID!, $name: String!) { updateAgent(input: { id: $id, name: $name }) { agent { name } } }', {
              token,
              variables: { id: target.globalId, name: value },
            })
          : await api.request('mutation($id: ID!) { deleteAgent(input: { id: $id }) { deletedAgentId } }', {
              token,
              variables: { id: target.globalId },
            });
      if (expected !== 'ok') {
        expect(codes(response)).toEqual([expected]);
      } else {
        expect(response.body.errors).toBeUndefined();
        if (step.kind === 'rename') live!.name = value;
        else deleted.push(...model.splice(model.indexOf(live!), 1));
      }
    } else {
      const target = pick(step.agent);
      const { body } = await api.request('query($id: ID!) { agents(first: 100) { edges { node { id name } } } agent(id: $id) { id } }', {
        token,
        variables: { id: target?.globalId ?? 'none' },
      });
      expect(body.errors).toBeUndefined();
      const seen = (body.data!.agents as { edges: { node: { id: string; name: string } }[] }).edges.map((edge) => edge.node);
      const own = model.filter((a) => a.tenantId === principal.tenantId);
      expect(seen.map((a) => `${a.id}=${a.name}`).sort()).toEqual(own.map((a) => `${a.globalId}=${a.name}`).sort());
      const visible = target && model.includes(target) && target.tenantId === principal.tenantId;
      expect(body.data!.agent).toEqual(visible ? { id: target.globalId } : null);
    }
  }

  // Behind the API's back: the database holds exactly the model.
  const rows = await db.owner`select tenant_id, created_by, name from app.agents order by tenant_id, name`;
  expect(rows.map((r) => `${r.tenant_id}/${r.created_by}/${r.name}`).sort()).toEqual(model.map((a) => `${a.tenantId}/${a.createdBy}/${a.name}`).sort());
}

it('what every principal can see and change always matches the ownership model', async () => {
  await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 30 }), run), { numRuns: 40 });
});
