// Platform operators and the tenant life cycle through GraphQL: the
// capability comes from the database, every use is audited, suspension and
// reactivation apply to JWT and API-key callers on their very next request.
import { beforeAll, describe, expect, it } from 'vitest';
import { setOperator } from '../src/operator/repo.ts';
import { codes, createTestApp, createTestTenant, tokenFor, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let acme: TestTenant;
let globex: TestTenant;
let operatorId: string;
let operatorToken: string;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(4));
  acme = await createTestTenant(db.owner, 'life-acme');
  globex = await createTestTenant(db.owner, 'life-globex');
  const [user] = await db.owner<{ id: string; email: string; displayName: string }[]>`
    insert into app.users (email) values ('ops@platform.test') returning id, email, display_name as "displayName"`;
  operatorId = user!.id;
  await setOperator(db.owner, user!, true, 'cli:test', 'on call');
  operatorToken = await tokenFor(operatorId); // no tid: platform work needs none
});

const data = <T>(response: GraphQLResponse, field: string): T => {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return response.body.data![field] as T;
};

const SUSPEND = 'mutation($id: ID!, $reason: String!) { suspendTenant(input: { id: $id, reason: $reason }) { tenant { id status suspendedReason } } }';
const REACTIVATE = 'mutation($id: ID!) { reactivateTenant(input: { id: $id }) { tenant { id status suspendedAt } } }';

describe('the operator capability', () => {
  it('is read from the database: an ADMIN of every tenant without it is FORBIDDEN, and a revoked operator at once', async () => {
    const refused = await api.request(SUSPEND, { token: await tokenFor(acme.members.ADMIN.userId), variables: { id: globex.id, reason: 'no' } });
    expect(codes(refused)).toEqual(['FORBIDDEN']);
    const withTenant = await api.request(SUSPEND, { token: acme.members.ADMIN.token, variables: { id: globex.id, reason: 'no' } });
    expect(codes(withTenant)).toEqual(['FORBIDDEN']);

    const [user] = await db.owner<{ id: string; email: string; displayName: string }[]>`
      insert into app.users (email) values ('temp-ops@platform.test') returning id, email, display_name as "displayName"`;
    await setOperator(db.owner, user!, true, 'cli:test', undefined);
    const token = await tokenFor(user!.id);
    expect(codes(await api.request('{ platformTenants(first: 1) { edges { node { id } } } }', { token }))).toEqual([]);
    await setOperator(db.owner, user!, false, 'cli:test', 'rotation ended');
    expect(codes(await api.request('{ platformTenants(first: 1) { edges { node { id } } } }', { token }))).toEqual(['FORBIDDEN']);
    const log = await db.owner`select action, actor from app_private.operator_audit_events where details->>'userId' = ${user!.id} order by id`;
    expect(log).toEqual([
      { action: 'operator.grant', actor: 'cli:test' },
      { action: 'operator.revoke', actor: 'cli:test' },
    ]);
  });

  it('an API key is never an operator, whatever its creator is', async () => {
    await db.owner`insert into app.memberships (tenant_id, user_id, role) values (${acme.id}, ${operatorId}, 'ADMIN')`;
    const opsInAcme = await tokenFor(operatorId, acme.id);
    const key = data<{ secret: string }>(
      await api.request('mutation { createApiKey(input: { name: "ops key", role: ADMIN }) { secret } }', { token: opsInAcme }),
      'createApiKey',
    );
    const viaKey = await api.request(SUSPEND, { headers: { 'x-api-key': key.secret }, variables: { id: globex.id, reason: 'no' } });
    expect(codes(viaKey)).toEqual(['FORBIDDEN']);
    await db.owner`delete from app.memberships where tenant_id = ${acme.id} and user_id = ${operatorId}`;
  });

  it('inside a tenant, is asked of the database only when a field needs it', async () => {
    await db.owner`insert into app.memberships (tenant_id, user_id, role) values (${acme.id}, ${operatorId}, 'VIEWER')`;
    const MIXED = '{ viewer { role } platformTenants(first: 1) { edges { node { slug } } } }';
    const asOperator = await api.request(MIXED, { token: await tokenFor(operatorId, acme.id) });
    expect(asOperator.body.errors).toBeUndefined();
    expect(asOperator.body.data).toEqual({ viewer: { role: 'VIEWER' }, platformTenants: { edges: [{ node: { slug: 'life-acme' } }] } });
    const asAdmin = await api.request(MIXED, { token: acme.members.ADMIN.token });
    await db.owner`delete from app.memberships where tenant_id = ${acme.id} and user_id = ${operatorId}`;
    expect(codes(asAdmin)).toEqual(['FORBIDDEN']);
  });

  it('creates a tenant with a plan and invites its first ADMIN; the invited user joins and works in it', async () => {
    const created = data<{ tenant: { id: string; slug: string; plan: string; status: string; usage: { quota: string; used: number; limit: number | null }[] }; adminInvitationToken: string }>(
      await api.request(
        'mutation { createTenant(input: { slug: "life-new", name: "New Co", plan: TEAM, adminEmail: "founder@new.test", reason: "signed up" }) { tenant { id slug plan status usage { quota used limit } } adminInvitationToken } }',
        { token: operatorToken },
      ),
      'createTenant',
    );
    expect(created.tenant).toMatchObject({ slug: 'life-new', plan: 'TEAM', status: 'ACTIVE' });
    expect(created.tenant.usage).toContainEqual({ quota: 'ACTIVE_SESSIONS', used: 0, limit: 50 });
    expect(created.adminInvitationToken).toMatch(/^tni_/);

    const [founder] = await db.owner<{ id: string }[]>`insert into app.users (email) values ('Founder@new.test') returning id`;
    const joined = data<{ tenant: { slug: string }; role: string }>(
      await api.request('mutation($token: String!) { acceptInvitation(input: { token: $token }) { tenant { slug } role } }', {
        token: await tokenFor(founder!.id),
        variables: { token: created.adminInvitationToken },
      }),
      'acceptInvitation',
    );
    expect(joined).toEqual({ tenant: { slug: 'life-new' }, role: 'ADMIN' });
    const viewer = await api.request('{ viewer { role } tenant { slug } }', { token: await tokenFor(founder!.id, created.tenant.id) });
    expect(viewer.body.data).toEqual({ viewer: { role: 'ADMIN' }, tenant: { slug: 'life-new' } });

    const duplicate = await api.request('mutation { createTenant(input: { slug: "life-new", name: "Again", plan: FREE }) { tenant { id } } }', { token: operatorToken });
    expect(codes(duplicate)).toEqual(['CONFLICT']);
    const badSlug = await api.request('mutation { createTenant(input: { slug: "Bad Slug", name: "x", plan: FREE }) { tenant { id } } }', { token: operatorToken });
    expect(badSlug.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.slug' });
  });

  it('lists tenants with usage, pages through them, and audits the listing', async () => {
    const page = data<{ edges: { node: { slug: string; usage: { quota: string; used: number }[] } }[]; pageInfo: { hasNextPage: boolean; endCursor: string } }>(
      await api.request('{ platformTenants(first: 1) { edges { node { slug usage { quota used } } } pageInfo { hasNextPage endCursor } } }', { token: operatorToken }),
      'platformTenants',
    );
    expect(page.edges.map((edge) => edge.node.slug)).toEqual(['life-acme']);
    expect(page.edges[0]!.node.usage).toContainEqual({ quota: 'MEMBERS', used: 4 });
    expect(page.pageInfo.hasNextPage).toBe(true);
    const next = data<{ edges: { node: { slug: string } }[] }>(
      await api.request('query($after: String) { platformTenants(first: 1, after: $after) { edges { node { slug } } } }', {
        token: operatorToken,
        variables: { after: page.pageInfo.endCursor },
      }),
      'platformTenants',
    );
    expect(next.edges.map((edge) => edge.node.slug)).toEqual(['life-globex']);
    const [audit] = await db.owner`select count(*)::int as n from app_private.operator_audit_events where action = 'tenant.list' and actor_user_id = ${operatorId}`;
    expect(audit!.n).toBeGreaterThanOrEqual(2);
  });

  it('operator queries show no tenant data, and a tenant field next to them still needs a tenant', async () => {
    const mixed = await api.request('{ platformTenants(first: 1) { edges { node { id } } } agents { edges { node { id } } } }', { token: operatorToken });
    expect(mixed.status).toBe(400);
    expect(codes(mixed)).toEqual(['TENANT_REQUIRED']);
  });
});

describe('suspension', () => {
  it('refuses the next request of every member and API key, keeps the data, and reactivation restores access at once', async () => {
    const key = data<{ secret: string }>(
      await api.request('mutation { createApiKey(input: { name: "ci", role: MEMBER }) { secret } }', { token: globex.members.LEAD.token }),
      'createApiKey',
    );
    const QUERY = '{ tenant { slug status } agents { edges { node { id } } } }';
    await api.request('mutation { createAgent(input: { name: "kept", kind: "assistant" }) { agent { id } } }', { token: globex.members.MEMBER.token });
    expect((await api.request(QUERY, { headers: { 'x-api-key': key.secret } })).status).toBe(200);

    const suspended = data<{ tenant: { status: string; suspendedReason: string } }>(
      await api.request(SUSPEND, { token: operatorToken, variables: { id: globex.id, reason: 'unpaid invoice' } }),
      'suspendTenant',
    );
    expect(suspended.tenant).toMatchObject({ status: 'SUSPENDED', suspendedReason: 'unpaid invoice' });
    for (const role of ['ADMIN', 'LEAD', 'MEMBER', 'VIEWER'] as const) {
      const refused = await api.request(QUERY, { token: globex.members[role].token });
      expect([refused.status, codes(refused)]).toEqual([403, ['TENANT_SUSPENDED']]);
    }
    const byKey = await api.request(QUERY, { headers: { 'x-api-key': key.secret } });
    expect([byKey.status, codes(byKey)]).toEqual([403, ['TENANT_SUSPENDED']]);
    // Another tenant is untouched.
    expect((await api.request(QUERY, { token: acme.members.VIEWER.token })).status).toBe(200);
    expect(codes(await api.request(SUSPEND, { token: operatorToken, variables: { id: globex.id, reason: 'again' } }))).toEqual(['CONFLICT']);

    const reactivated = data<{ tenant: { status: string; suspendedAt: string | null } }>(
      await api.request(REACTIVATE, { token: operatorToken, variables: { id: globex.id } }),
      'reactivateTenant',
    );
    expect(reactivated.tenant).toEqual({ id: globex.id, status: 'ACTIVE', suspendedAt: null });
    const back = await api.request(QUERY, { headers: { 'x-api-key': key.secret } });
    expect(back.status).toBe(200);
    expect((back.body.data as { agents: { edges: unknown[] } }).agents.edges).toHaveLength(1);
    expect((await api.request(QUERY, { token: globex.members.VIEWER.token })).status).toBe(200);

    const events = await db.owner<{ action: string; actor_kind: string; reason: string | null }[]>`
      select action, actor_kind, reason from app.audit_events
      where tenant_id = ${globex.id} and action like 'tenant.%' order by id`;
    expect(events).toEqual([
      { action: 'tenant.suspend', actor_kind: 'operator', reason: 'unpaid invoice' },
      { action: 'tenant.reactivate', actor_kind: 'operator', reason: null },
    ]);
    const platform = await db.owner`
      select action, reason from app_private.operator_audit_events where target_tenant_id = ${globex.id} order by id`;
    expect(platform).toEqual([
      { action: 'tenant.suspend', reason: 'unpaid invoice' },
      { action: 'tenant.reactivate', reason: null },
    ]);
  });

  it('an unknown tenant id is NOT_FOUND; a malformed one BAD_USER_INPUT', async () => {
    expect(codes(await api.request(REACTIVATE, { token: operatorToken, variables: { id: '00000000-0000-4000-8000-000000000000' } }))).toEqual(['NOT_FOUND']);
    const bad = await api.request(REACTIVATE, { token: operatorToken, variables: { id: 'acme' } });
    expect(bad.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.id' });
  });
});

describe('limits', () => {
  it('overrides one quota, keeps the rest on the plan, and null returns it to the plan', async () => {
    const SET = 'mutation($id: ID!, $limits: TenantLimitsInput, $plan: Plan) { setTenantLimits(input: { id: $id, plan: $plan, limits: $limits, reason: "deal" }) { tenant { plan usage { quota limit overridden } } } }';
    const set = data<{ tenant: { plan: string; usage: { quota: string; limit: number | null; overridden: boolean }[] } }>(
      await api.request(SET, { token: operatorToken, variables: { id: acme.id, plan: 'FREE', limits: { agents: 3 } } }),
      'setTenantLimits',
    );
    expect(set.tenant.plan).toBe('FREE');
    expect(set.tenant.usage).toContainEqual({ quota: 'AGENTS', limit: 3, overridden: true });
    expect(set.tenant.usage).toContainEqual({ quota: 'ACTIVE_SESSIONS', limit: 5, overridden: false });

    const usage = await api.request('{ usage { quota used limit } }', { token: acme.members.VIEWER.token });
    expect((usage.body.data as { usage: unknown[] }).usage).toContainEqual({ quota: 'AGENTS', used: 0, limit: 3 });

    const cleared = data<{ tenant: { usage: { quota: string; limit: number | null; overridden: boolean }[] } }>(
      await api.request(SET, { token: operatorToken, variables: { id: acme.id, limits: { agents: null } } }),
      'setTenantLimits',
    );
    expect(cleared.tenant.usage).toContainEqual({ quota: 'AGENTS', limit: 100, overridden: false });
    const negative = await api.request(SET, { token: operatorToken, variables: { id: acme.id, limits: { agents: -1 } } });
    expect(negative.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.limits.agents' });
    await api.request(SET, { token: operatorToken, variables: { id: acme.id, plan: 'ENTERPRISE' } });
  });
});
