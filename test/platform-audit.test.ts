// platformAuditEvents: the platform log for platform operators, newest first,
// paged and filtered; every read is itself in the log (audit.read, with its
// filters); nobody else can read it, whatever their role in a tenant.
import { randomUUID } from 'node:crypto';
import { beforeAll, expect, it } from 'vitest';
import { createUser, setOperator } from '../src/operator/repo.ts';
import { codes, createTestApp, createTestTenant, tokenFor, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let operatorId: string;
let operatorToken: string;
const suspended: string[] = [];

type Event = { id: string; seq: number; actor: string; actorUserId: string | null; action: string; targetTenantId: string | null; reason: string | null; details: Record<string, unknown>; requestId: string | null };
type Page = { edges: { cursor: string; node: Event }[]; pageInfo: { hasNextPage: boolean; endCursor: string } };
const LOG = `query($first: Int, $after: String, $last: Int, $filter: PlatformAuditEventFilter) {
  platformAuditEvents(first: $first, after: $after, last: $last, filter: $filter) {
    edges { cursor node { id seq actor actorUserId action targetTenantId reason details requestId } } pageInfo { hasNextPage endCursor } } }`;
const read = (variables: Record<string, unknown> = {}, token = operatorToken, requestId = `pl-${randomUUID()}`) =>
  api.request(LOG, { token, variables, headers: { 'x-request-id': requestId } });
const page = (response: GraphQLResponse): Page => {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return response.body.data!.platformAuditEvents as Page;
};

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(4));
  a = await createTestTenant(db.owner, 'pl-a');
  const operator = await createUser(db.owner, 'ops@pl.test', 'Ops');
  await setOperator(db.owner, operator, true, 'cli:test', 'on call');
  operatorId = operator.id;
  operatorToken = await tokenFor(operator.id);
  for (const slug of ['pl-b', 'pl-c']) {
    const tenant = await createTestTenant(db.owner, slug);
    const response = await api.request('mutation($id: ID!) { suspendTenant(input: { id: $id, reason: "unpaid" }) { tenant { id } } }', {
      token: operatorToken,
      variables: { id: tenant.id },
      headers: { 'x-request-id': `suspend-${slug}` },
    });
    expect(response.body.errors).toBeUndefined();
    suspended.push(tenant.id);
  }
});

it('is the platform log newest first, and the read itself is its newest event', async () => {
  const events = page(await read({ first: 100 }, operatorToken, 'pl-read-1')).edges.map((edge) => edge.node);
  const seqs = events.map((event) => event.seq);
  expect(seqs).toEqual([...seqs].sort((x, y) => y - x));
  expect(events[0]).toMatchObject({ action: 'audit.read', actor: `user:${operatorId}`, actorUserId: operatorId, requestId: 'pl-read-1', details: {} });
  expect(events.slice(1, 3)).toMatchObject([
    { action: 'tenant.suspend', targetTenantId: suspended[1], reason: 'unpaid', requestId: 'suspend-pl-c' },
    { action: 'tenant.suspend', targetTenantId: suspended[0], reason: 'unpaid', requestId: 'suspend-pl-b' },
  ]);
  expect(events.at(-1)).toMatchObject({ action: 'operator.grant', actor: 'cli:test', actorUserId: null, reason: 'on call', requestId: null });
});

it('pages without gaps or repeats (each page a read of its own, recorded too)', async () => {
  const seen: number[] = [];
  let after: string | undefined;
  for (;;) {
    const current = page(await read({ first: 2, after }));
    seen.push(...current.edges.map((edge) => edge.node.seq));
    if (!current.pageInfo.hasNextPage) break;
    after = current.pageInfo.endCursor;
  }
  // Newest first from the first page's read down to seq 1, each seq once; the later pages' own reads are newer than the first page.
  expect(seen).toEqual(Array.from({ length: seen[0]! }, (_, index) => seen[0]! - index));
});

it('filters by action, tenant, operator and time; the read records its filters', async () => {
  const only = async (filter: Record<string, unknown>) => page(await read({ first: 100, filter })).edges.map((edge) => edge.node);
  expect((await only({ action: 'tenant.suspend' })).map((event) => event.targetTenantId)).toEqual([suspended[1], suspended[0]]);
  expect((await only({ tenantId: suspended[0]!.toUpperCase() })).map((event) => event.action)).toEqual(['audit.read', 'tenant.suspend']);
  expect((await only({ actorUserId: operatorId, action: 'operator.grant' }))).toEqual([]); // granted by the CLI, not by them
  expect(await only({ occurredBefore: '2000-01-01T00:00:00Z' })).toEqual([]);
  const [recorded] = await db.owner<{ details: Record<string, unknown>; target_tenant_id: string }[]>`
    select details, target_tenant_id from app_private.operator_audit_events where action = 'audit.read' and target_tenant_id is not null order by seq desc limit 1`;
  expect(recorded).toEqual({ details: {}, target_tenant_id: suspended[0] });
  const filtered = await db.owner<{ details: Record<string, unknown> }[]>`
    select details from app_private.operator_audit_events where action = 'audit.read' and details ? 'occurredBefore'`;
  expect(filtered).toEqual([{ details: { occurredBefore: '2000-01-01T00:00:00+00:00' } }]);
});

it('only platform operators: tenant ADMINs, API keys and former operators are FORBIDDEN, and their attempt reads nothing', async () => {
  const before = (await db.owner<{ n: number }[]>`select count(*)::int as n from app_private.operator_audit_events`)[0]!.n;
  expect(codes(await read({}, a.members.ADMIN.token))).toEqual(['FORBIDDEN']);
  expect(codes(await read({}, await tokenFor(a.members.ADMIN.userId)))).toEqual(['FORBIDDEN']);
  const former = await createUser(db.owner, 'former@pl.test', 'Former');
  await setOperator(db.owner, former, true, 'cli:test', undefined);
  await setOperator(db.owner, former, false, 'cli:test', undefined);
  expect(codes(await read({}, await tokenFor(former.id)))).toEqual(['FORBIDDEN']);
  const after = (await db.owner<{ n: number }[]>`select count(*)::int as n from app_private.operator_audit_events`)[0]!.n;
  expect(after).toBe(before + 2); // the grant and revoke; no audit.read by anyone refused
});

it('every input has a limit; each attack is BAD_USER_INPUT naming it', async () => {
  const refused = async (variables: Record<string, unknown>, field?: string) => {
    const response = await read(variables);
    expect(response.body.errors?.[0]?.extensions, JSON.stringify(variables)).toMatchObject({ code: 'BAD_USER_INPUT', ...(field ? { field } : {}) });
  };
  await refused({ filter: { action: 'x'.repeat(101) } }, 'filter.action');
  await refused({ filter: { action: "tenant.suspend' --" } }, 'filter.action');
  await refused({ filter: { tenantId: 'pl-a' } }, 'filter.tenantId');
  await refused({ filter: { actorUserId: 'x'.repeat(5000) } }, 'filter.actorUserId');
  await refused({ filter: { occurredAfter: 'soon' } });
  const forged = (text: string) => Buffer.from(text).toString('base64url');
  await refused({ after: forged(`2026-01-01 00:00:00|${randomUUID()}`) }, 'after');
  await refused({ after: forged('2026-01-01 00:00:00|1); drop table x; --') }, 'after');
  await refused({ after: 'B'.repeat(300) }, 'after');
});
