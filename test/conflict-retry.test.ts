// A deadlock or serialization failure rolls the whole transaction back; the
// pipeline runs it once more (nothing was sent yet), so a caller sees CONFLICT
// only when the second run fails too, and never a partial or double write.
// The failures are injected as a concurrent writer would cause them: a trigger
// the test installs as the owner fails the next N agent inserts (a sequence
// counts the attempts, since whatever a failed transaction writes rolls back).
import { beforeAll, expect, it } from 'vitest';
import { codes, createTestApp, createTestTenant, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let app: TestApp;
let tenant: TestTenant;

beforeAll(async () => {
  db = await useTestDatabase();
  app = createTestApp(db.appPool(2));
  tenant = await createTestTenant(db.owner, 'conflict-retry', 'team');
  await db.owner.unsafe(`
    create sequence public.conflict_attempts;
    create table public.conflict_plan (failures int not null, code text not null);
    insert into public.conflict_plan values (0, '40001');
    create function public.conflict_injection() returns trigger language plpgsql security definer set search_path = pg_catalog as $$
    declare plan record;
    begin
      select * into plan from public.conflict_plan;
      if nextval('public.conflict_attempts') <= plan.failures then
        raise exception 'injected concurrent failure' using errcode = plan.code;
      end if;
      return new;
    end $$;
    create trigger conflict_injection before insert on app.agents for each row execute function public.conflict_injection();
  `);
});

/** The next `failures` agent inserts fail with `code`; returns how many inserts were attempted since. */
async function plan(failures: number, code: '40001' | '40P01'): Promise<() => Promise<number>> {
  await db.owner`update public.conflict_plan set failures = ${failures}, code = ${code}`;
  await db.owner`select setval('public.conflict_attempts', 1, false)`;
  return async () => {
    const [row] = await db.owner<{ n: string }[]>`select last_value - case when is_called then 0 else 1 end as n from public.conflict_attempts`;
    return Number(row!.n);
  };
}

const CREATE = 'mutation($name: String!) { createAgent(input: { name: $name, kind: "assistant" }) { agent { name } } }';

async function agentsNamed(name: string): Promise<number> {
  const [row] = await db.owner<{ n: number }[]>`select count(*)::int as n from app.agents where tenant_id = ${tenant.id} and name = ${name}`;
  return row!.n;
}

async function agentsCounted(): Promise<{ used: number; rows: number }> {
  const [row] = await db.owner<{ used: number; rows: number }[]>`
    select (select used::int from app.quotas where tenant_id = ${tenant.id} and quota = 'agents') as used,
           (select count(*)::int from app.agents where tenant_id = ${tenant.id}) as rows`;
  return row!;
}

for (const code of ['40001', '40P01'] as const) {
  it(`one ${code} is retried: the mutation succeeds once, written once, counted once`, async () => {
    const attempts = await plan(1, code);
    const name = `retried-${code}`;
    const response = await app.request(CREATE, { token: tenant.members.MEMBER.token, variables: { name } });
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data).toEqual({ createAgent: { agent: { name } } });
    expect(await attempts()).toBe(2);
    expect(await agentsNamed(name)).toBe(1);
    const counted = await agentsCounted();
    expect(counted.used).toBe(counted.rows);
  });
}

it('a conflict that happens again is CONFLICT (concurrent), after exactly two runs, and writes nothing', async () => {
  const attempts = await plan(5, '40001');
  const name = 'refused-twice';
  const response = await app.request(CREATE, { token: tenant.members.MEMBER.token, variables: { name } });
  expect(codes(response)).toEqual(['CONFLICT']);
  expect(response.body.errors?.[0]?.extensions?.reason).toBe('concurrent');
  expect(response.body.data).toBeNull();
  expect(await attempts()).toBe(2);
  expect(await agentsNamed(name)).toBe(0);
  const counted = await agentsCounted();
  expect(counted.used).toBe(counted.rows);
});

it('other database errors are not retried (a duplicate name: one run)', async () => {
  await plan(0, '40001');
  const first = await app.request(CREATE, { token: tenant.members.MEMBER.token, variables: { name: 'taken' } });
  expect(first.body.errors).toBeUndefined();
  const attempts = await plan(0, '40001');
  const response = await app.request(CREATE, { token: tenant.members.MEMBER.token, variables: { name: 'taken' } });
  expect(codes(response)).toEqual(['CONFLICT']);
  expect(response.body.errors?.[0]?.extensions?.reason).not.toBe('concurrent');
  expect(await attempts()).toBe(1);
  expect(await agentsNamed('taken')).toBe(1);
});
