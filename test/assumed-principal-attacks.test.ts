// Attacks on a write that runs as an assumed principal (src/db/tenant-transaction.ts `assume`), at the level of the
// request transaction: what it counts and what it refuses when a resolver breaks commitsWithStatement's promise.
import { Kind, parse, type OperationDefinitionNode } from 'graphql';
import { beforeAll, expect, it } from 'vitest';
import { CommittedBeforeFailure, TenantTransaction, type Principal, type TenantSelection } from '../src/db/tenant-transaction.ts';
import { createWriteShapes } from '../src/graphql/operation.ts';
import { schema } from '../src/graphql/schema.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { addMember } from '../src/operator/repo.ts';
import { codes, createTestApp, createTestTenant, insertAgents, insertSession, tokenFor, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { writesTo } from './helpers/wire.ts';

let db: TestDatabase;
let tenant: TestTenant;
let selection: TenantSelection;

const CREATE_TASK = 'mutation($s: ID!, $t: String!) { createTask(input: { sessionId: $s, title: $t }) { task { id title status } } }';

beforeAll(async () => {
  db = await useTestDatabase();
  tenant = await createTestTenant(db.owner, 'assumed-attacks');
  selection = { credentials: { kind: 'user', userId: tenant.members.MEMBER.userId, roleCap: undefined }, tenant: tenant.id, allowedSlugs: undefined };
});

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

it('a second statement sent a tick after the assumed write, before the check answered: two write ticks, so the shape is never assumed again', async () => {
  const sql = db.appPool(1);
  const checked = new TenantTransaction(sql, selection);
  checked.start('tenant');
  const known: Principal = await checked.principal();
  await checked.end(false);

  const operation = { definition: parse(CREATE_TASK).definitions.find((node) => node.kind === Kind.OPERATION_DEFINITION) as OperationDefinitionNode };
  const shapes = createWriteShapes(schema, 1024 * 1024);
  shapes.learn(operation, 1); // its unassumed runs: one write tick, it commits with its statement
  expect(shapes.atOnce(operation)).toBe(true);

  const tx = new TenantTransaction(sql, selection, { commitWithWrite: true, assume: known });
  tx.start('tenant');
  await tx.principal(); // the assumed one, at once
  const first = tx.run((q) => q`select 1 as one`); // in the tick the transaction began: COMMIT is queued behind it
  await nextTick(); // the next tick: the check has not answered yet (no I/O in between)
  expect(tx.known).toBeUndefined();
  const second = await tx.run((q) => q`select 2 as two`).then(() => undefined, (error: unknown) => error);
  expect(String(second)).toMatch(/a statement after the write committed with its statement/);
  expect(await first).toHaveLength(1);
  // Never silent: the first statement committed, the operation failed.
  expect(await tx.end(false).then(() => undefined, (error: unknown) => error)).toBeInstanceOf(CommittedBeforeFailure);
  // Learned as an unassumed run learns it (its second statement followed the check's answer there): never again at once.
  expect(tx.writeTicks).toBe(2);
  shapes.learn(operation, tx.writeTicks);
  expect(shapes.atOnce(operation)).toBe(false);
});

/** Round trips to the database while `run` runs (test/helpers/wire.ts). */
async function roundTrips<T>(run: () => Promise<T>): Promise<{ value: T; trips: number }> {
  const { value, writes } = await writesTo(Number(new URL(db.appUrl).port), run);
  return { value, trips: writes };
}

it('one user, two tenants (X-Tenant-ID by id and by slug) and a role-capped token, in turn: each assumes its own principal, never another\'s', async () => {
  const other = await createTestTenant(db.owner, 'assumed-attacks-b');
  const user = tenant.members.MEMBER.userId; // MEMBER here, VIEWER in the other tenant, VIEWER by a role claim here
  await addMember(db.owner, other.id, user, 'VIEWER');
  const [agent] = await insertAgents(db.owner, tenant.id, user, ['writer']);
  const session = encodeGlobalId('Session', await insertSession(db.owner, tenant.id, agent!, user));
  const token = await tokenFor(user, tenant.id);
  const capped = await tokenFor(user, tenant.id, { role: 'VIEWER' });
  const api = createTestApp(db.appPool(1));
  const callers = {
    member: { token },
    bySlug: { token, headers: { 'x-tenant-id': other.slug } },
    byId: { token, headers: { 'x-tenant-id': other.id } },
    capped: { token: capped },
  };
  const write = (auth: { token: string; headers?: Record<string, string> }, title: string) =>
    api.request(CREATE_TASK, { ...auth, variables: { s: session, t: title } });
  for (let i = 0; i < 3; i++) for (const auth of Object.values(callers)) await write(auth, 'learning');
  for (let i = 0; i < 3; i++) {
    // A key shared with another caller would assume its principal: the check's TN409 and a run again (3 round trips).
    const member = await roundTrips(() => write(callers.member, 'in turn'));
    expect(member.value.body.errors).toBeUndefined();
    expect(member.trips).toBe(1);
    for (const auth of [callers.bySlug, callers.byId, callers.capped]) {
      const refused = await roundTrips(() => write(auth, 'refused'));
      expect(codes(refused.value)).toEqual(['FORBIDDEN']);
      expect(refused.trips).toBe(2); // the check, then the rollback: no write sent as anyone else
    }
  }
  const rows = await db.owner<{ tenant_id: string; n: number }[]>`
    select tenant_id::text, count(*)::int as n from app.tasks where title in ('in turn', 'refused') group by 1`;
  expect(rows).toEqual([{ tenant_id: tenant.id, n: 3 }]);
});
