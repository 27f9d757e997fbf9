// A simple write runs as the principal its caller's last request check
// answered, so its statement leaves with BEGIN, the check and COMMIT in one
// write (src/db/tenant-transaction.ts `assume`). The database decides all the
// same: the check's statement raises TN409 unless it found exactly the
// principal assumed (app_private.expect_principal, migration 000022), the
// transaction is aborted before the write runs, and the service runs the
// request again waiting for the check. Every change of who the caller is
// between two writes: the second is answered as the database says now, and
// nothing is written on the role, membership, key or tenant of before.
import { beforeAll, expect, it } from 'vitest';
import { newApiKey } from '../src/auth/secrets.ts';
import { PrincipalChanged, TenantTransaction } from '../src/db/tenant-transaction.ts';
import type { Role } from '../src/tenancy/roles.ts';
import { codes, createTestApp, createTestTenant, insertWorkSession, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { writesTo } from './helpers/wire.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;
let sessionId: string;

const CREATE_TASK = 'mutation($s: ID!, $t: String!) { createTask(input: { sessionId: $s, title: $t }) { task { id title status } } }';

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(1));
  tenant = await createTestTenant(db.owner, 'assumed');
  ({ sessionId } = await insertWorkSession(db.owner, tenant, 'writer'));
});

const tasksTitled = async (title: string) => (await db.owner<{ n: number }[]>`select count(*)::int as n from app.tasks where title = ${title}`)[0]!.n;
const write = (title: string, auth: { token?: string; headers?: Record<string, string> }) => api.request(CREATE_TASK, { ...auth, variables: { s: sessionId, t: title } });

/** Round trips to the database while `run` runs (test/helpers/wire.ts). */
async function roundTrips<T>(run: () => Promise<T>): Promise<{ value: T; trips: number }> {
  const { value, writes } = await writesTo(Number(new URL(db.appUrl).port), run);
  return { value, trips: writes };
}

/** The caller's writes learned (the operation's shape, its principal, the statements prepared): the next one assumes. */
async function learned(auth: { token?: string; headers?: Record<string, string> }, expected: 'written' | 'FORBIDDEN'): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const response = await write('learning', auth);
    if (expected === 'written') expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    else expect(codes(response)).toEqual(['FORBIDDEN']);
  }
  if (expected === 'written') expect((await roundTrips(() => write('learning', auth))).trips).toBe(1);
}

async function setRole(userId: string, role: Role): Promise<void> {
  await db.owner`update app.memberships set role = ${role} where tenant_id = ${tenant.id} and user_id = ${userId}`;
}

const written = (response: GraphQLResponse) => {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return (response.body.data as { createTask: { task: { title: string } } }).createTask.task.title;
};

it('a simple write takes 1 round trip once its caller is known, and writes once', async () => {
  const { token } = tenant.members.MEMBER;
  await learned({ token }, 'written');
  const before = await tasksTitled('once');
  const { value, trips } = await roundTrips(() => write('once', { token }));
  expect(written(value)).toBe('once');
  expect(trips).toBe(1);
  expect(await tasksTitled('once')).toBe(before + 1);
});

it('a member demoted to viewer: the write sent as a member never runs, the request is refused FORBIDDEN and writes nothing', async () => {
  const member = tenant.members.MEMBER;
  await learned({ token: member.token }, 'written');
  await setRole(member.userId, 'VIEWER');
  try {
    const { value, trips } = await roundTrips(() => write('demoted', { token: member.token }));
    expect(codes(value)).toEqual(['FORBIDDEN']);
    expect(value.body.data).toBeNull();
    expect(trips).toBe(3); // the write as assumed (aborted by the check); then the check (FORBIDDEN before any SQL) and its rollback
    expect(await tasksTitled('demoted')).toBe(0);
    expect(codes(await write('demoted', { token: member.token }))).toEqual(['FORBIDDEN']); // and from now on, at once
    expect(await tasksTitled('demoted')).toBe(0);
  } finally {
    await setRole(member.userId, 'MEMBER');
  }
});

it('a viewer promoted to member: its first write after the promotion is made, once', async () => {
  const viewer = tenant.members.VIEWER;
  await learned({ token: viewer.token }, 'FORBIDDEN');
  await setRole(viewer.userId, 'MEMBER');
  try {
    expect(written(await write('promoted', { token: viewer.token }))).toBe('promoted');
    expect(await tasksTitled('promoted')).toBe(1);
  } finally {
    await setRole(viewer.userId, 'VIEWER');
  }
  expect(codes(await write('promoted', { token: viewer.token }))).toEqual(['FORBIDDEN']);
  expect(await tasksTitled('promoted')).toBe(1);
});

it('a membership removed, a tenant suspended: the check refuses as it always does, nothing is written', async () => {
  const lead = tenant.members.LEAD;
  await learned({ token: lead.token }, 'written');
  await db.owner`update app.tenants set status = 'suspended', suspended_at = now() where id = ${tenant.id}`;
  try {
    expect(codes(await write('suspended', { token: lead.token }))).toEqual(['TENANT_SUSPENDED']);
  } finally {
    await db.owner`update app.tenants set status = 'active', suspended_at = null where id = ${tenant.id}`;
  }
  expect(await tasksTitled('suspended')).toBe(0);
  await learned({ token: lead.token }, 'written');
  const [membership] = await db.owner`delete from app.memberships where tenant_id = ${tenant.id} and user_id = ${lead.userId} returning *`;
  try {
    expect(codes(await write('removed', { token: lead.token }))).toEqual(['TENANT_NOT_FOUND']);
    expect(await tasksTitled('removed')).toBe(0);
  } finally {
    await db.owner`insert into app.memberships ${db.owner(membership!)}`;
  }
});

it('a tenant renamed between two writes: the write is run again as the principal the check found, and made once', async () => {
  const admin = tenant.members.ADMIN;
  await learned({ token: admin.token }, 'written');
  await db.owner`update app.tenants set name = 'Renamed meanwhile' where id = ${tenant.id}`;
  const { value, trips } = await roundTrips(() => write('renamed', { token: admin.token }));
  expect(written(value)).toBe('renamed');
  expect(trips).toBe(3); // aborted once; then the check, and the write with its COMMIT
  expect(await tasksTitled('renamed')).toBe(1);
});

it('a read keeps what its check found: after a rename seen by a read, the next write assumes the new name and takes 1 round trip', async () => {
  const admin = tenant.members.ADMIN;
  await learned({ token: admin.token }, 'written');
  await db.owner`update app.tenants set name = 'Renamed before a read' where id = ${tenant.id}`;
  expect((await api.request('{ viewer { tenant { name } } }', { token: admin.token })).body.errors).toBeUndefined();
  const { value, trips } = await roundTrips(() => write('after a read', { token: admin.token }));
  expect(written(value)).toBe('after a read');
  expect(trips).toBe(1); // kept unchanged by the read, it would be aborted once and run again: 3
});

it('an API key: lowered to VIEWER, its write is refused and writes nothing; revoked, it is UNAUTHENTICATED', async () => {
  const key = newApiKey();
  await db.owner`
    insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by)
    values (${tenant.id}, 'robot', ${key.prefix}, ${key.hash}, 'MEMBER', ${tenant.members.ADMIN.userId})`;
  const auth = { headers: { 'x-api-key': key.secret } };
  await learned(auth, 'written');
  await db.owner`update app.api_keys set role = 'VIEWER' where secret_hash = ${key.hash}`;
  expect(codes(await write('key lowered', auth))).toEqual(['FORBIDDEN']);
  expect(await tasksTitled('key lowered')).toBe(0);
  await db.owner`update app.api_keys set role = 'MEMBER' where secret_hash = ${key.hash}`;
  await learned(auth, 'written');
  await db.owner`update app.api_keys set revoked_at = now() where secret_hash = ${key.hash}`;
  expect(codes(await write('key revoked', auth))).toEqual(['UNAUTHENTICATED']);
  expect(await tasksTitled('key revoked')).toBe(0);
});

it('callers are never assumed for one another: a viewer and a member of one tenant writing in turn get their own answers', async () => {
  const viewer = tenant.members.VIEWER.token;
  const member = tenant.members.MEMBER.token;
  const before = await tasksTitled('in turn');
  for (let i = 0; i < 4; i++) {
    expect(codes(await write('in turn', { token: viewer }))).toEqual(['FORBIDDEN']);
    expect(written(await write('in turn', { token: member }))).toBe('in turn');
  }
  expect(await tasksTitled('in turn')).toBe(before + 4);
});

it('in SQL: app_private.expect_principal raises TN409 unless its argument is true, as the request role', async () => {
  const app = db.appPool(1);
  expect((await app`select app_private.expect_principal(true) as ok`)[0]!.ok).toBe(true);
  for (const value of [false, null]) {
    const error = await app`select app_private.expect_principal(${value}::boolean)`.then(() => undefined, (failure: { code?: string }) => failure);
    expect(error?.code).toBe('TN409');
  }
});

it('a platform transaction never runs as an assumed principal: only a tenant\'s check can confirm one', async () => {
  const { userId } = tenant.members.MEMBER;
  const selection = { credentials: { kind: 'user' as const, userId, roleCap: undefined }, tenant: tenant.id, allowedSlugs: undefined };
  const assume = { userId, apiKeyId: null, tenant: { id: tenant.id, slug: tenant.slug, name: 'assumed', status: 'active' as const, role: 'ADMIN' as const } };
  const platform = new TenantTransaction(db.appPool(1), selection, { commitWithWrite: true, assume });
  platform.start('platform');
  try {
    expect((await platform.principal()).tenant).toBeUndefined(); // the database's answer, not the assumption
  } finally {
    await platform.end(false);
  }
  const inTenant = new TenantTransaction(db.appPool(1), selection, { commitWithWrite: true, assume });
  inTenant.start();
  try {
    expect((await inTenant.principal()).tenant?.role).toBe('ADMIN'); // assumed until the check answers
    await expect(inTenant.confirmed()).rejects.toBeInstanceOf(PrincipalChanged); // and the check says otherwise
  } finally {
    await inTenant.end(false);
  }
});

it('the last principals kept are bounded (an LRU): a caller pushed out by as many others as the bound writes in 2 round trips again, and is learned again', async () => {
  // The pipeline's bound (10,000 unless given) made 3: four callers are one more than it keeps.
  const small = createTestApp(db.appPool(1), { lastPrincipals: 3 });
  const writeAs = (title: string, role: Role) => small.request(CREATE_TASK, { token: tenant.members[role].token, variables: { s: sessionId, t: title } });
  for (let i = 0; i < 3; i++) written(await writeAs('bounded', 'MEMBER')); // the write's shape learned; the member's principal kept
  expect((await roundTrips(() => writeAs('bounded', 'MEMBER'))).trips).toBe(1);
  // Two others: three kept, the member among them.
  written(await writeAs('bounded', 'ADMIN'));
  written(await writeAs('bounded', 'LEAD'));
  expect((await roundTrips(() => writeAs('bounded', 'MEMBER'))).trips).toBe(1);
  // A third (its write refused, its principal kept all the same): the member, least recently seen, is pushed out.
  written(await writeAs('bounded', 'ADMIN'));
  written(await writeAs('bounded', 'LEAD'));
  expect(codes(await writeAs('bounded', 'VIEWER'))).toEqual(['FORBIDDEN']);
  const before = await tasksTitled('pushed out');
  const again = await roundTrips(() => writeAs('pushed out', 'MEMBER'));
  expect(written(again.value)).toBe('pushed out');
  expect(again.trips).toBe(2); // BEGIN and the check; then the write with its COMMIT
  expect(await tasksTitled('pushed out')).toBe(before + 1);
  expect((await roundTrips(() => writeAs('pushed out', 'MEMBER'))).trips).toBe(1); // kept again
});
