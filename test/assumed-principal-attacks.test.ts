// Attacks on a write that runs as an assumed principal (src/db/tenant-transaction.ts `assume`), at the level of the
// request transaction: what it counts and what it refuses when a resolver breaks commitsWithStatement's promise.
import { Kind, parse, type OperationDefinitionNode } from 'graphql';
import { beforeAll, expect, it } from 'vitest';
import { CommittedBeforeFailure, TenantTransaction, type Principal, type TenantSelection } from '../src/db/tenant-transaction.ts';
import { createWriteShapes } from '../src/graphql/operation.ts';
import { schema } from '../src/graphql/schema.ts';
import { createTestTenant, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

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
