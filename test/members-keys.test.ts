// Members, invitations and API keys through GraphQL: who may do what, one-time
// tokens, keys as credentials, and isolation between tenants.
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeGlobalId, encodeGlobalId } from '../src/nodes/global-id.ts';
import { createUser } from '../src/operator/repo.ts';
import { codes, createTestApp, createTestTenant, tokenFor, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let b: TestTenant;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(4));
  a = await createTestTenant(db.owner, 'mk-a');
  b = await createTestTenant(db.owner, 'mk-b');
});

/** The row id inside a global id (invitations and API keys answer global ids; the database holds uuids). */
const rowId = (globalId: string): string => decodeGlobalId(globalId)!.id;

const data = <T>(response: GraphQLResponse, field: string): T => {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return response.body.data![field] as T;
};

const INVITE = 'mutation($email: String!, $role: Role!, $hours: Int) { inviteMember(input: { email: $email, role: $role, expiresInHours: $hours }) { token invitation { id email role status } } }';
const ACCEPT = 'mutation($token: String!) { acceptInvitation(input: { token: $token }) { tenant { slug } role } }';

async function invite(token: string, email: string, role: string, hours?: number) {
  return data<{ token: string; invitation: { id: string; status: string } }>(await api.request(INVITE, { token, variables: { email, role, hours } }), 'inviteMember');
}

describe('invitations', () => {
  it('ADMIN invites any role; LEAD only MEMBER and VIEWER; MEMBER and VIEWER none', async () => {
    expect((await invite(a.members.ADMIN.token, 'lead1@x.test', 'LEAD')).invitation.status).toBe('PENDING');
    expect((await invite(a.members.LEAD.token, 'member1@x.test', 'MEMBER')).invitation.status).toBe('PENDING');
    const leadAsAdmin = await api.request(INVITE, { token: a.members.LEAD.token, variables: { email: 'x@x.test', role: 'ADMIN' } });
    expect(codes(leadAsAdmin)).toEqual(['FORBIDDEN']);
    expect(codes(await api.request(INVITE, { token: a.members.LEAD.token, variables: { email: 'x@x.test', role: 'LEAD' } }))).toEqual(['FORBIDDEN']);
    for (const role of ['MEMBER', 'VIEWER'] as const) {
      expect(codes(await api.request(INVITE, { token: a.members[role].token, variables: { email: 'x@x.test', role: 'VIEWER' } }))).toEqual(['FORBIDDEN']);
    }
    const member = await api.request(INVITE, { token: a.members.ADMIN.token, variables: { email: 'MEMBER@mk-a.test', role: 'VIEWER' } });
    expect(codes(member)).toEqual(['CONFLICT']);
    const bad = await api.request(INVITE, { token: a.members.ADMIN.token, variables: { email: 'not-an-email', role: 'VIEWER' } });
    expect(bad.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.email' });
  });

  it('is accepted once, by the user with that email only; the token is stored only as a hash', async () => {
    const { token, invitation } = await invite(a.members.ADMIN.token, 'Newcomer@X.test', 'MEMBER');
    const [stored] = await db.owner`select encode(token_hash, 'hex') as hash from app.invitations where id = ${rowId(invitation.id)}`;
    expect(stored!.hash).not.toContain(token);
    const stranger = await createUser(db.owner, 'stranger@x.test', 'Stranger');
    expect(codes(await api.request(ACCEPT, { token: await tokenFor(stranger.id), variables: { token } }))).toEqual(['NOT_FOUND']);
    expect(codes(await api.request(ACCEPT, { token: await tokenFor(stranger.id), variables: { token: 'tni_nope' } }))).toEqual(['NOT_FOUND']);

    const newcomer = await createUser(db.owner, 'newcomer@x.test', 'Newcomer');
    const accepted = await api.request(ACCEPT, { token: await tokenFor(newcomer.id), variables: { token } });
    expect(data(accepted, 'acceptInvitation')).toEqual({ tenant: { slug: 'mk-a' }, role: 'MEMBER' });
    const again = await api.request(ACCEPT, { token: await tokenFor(newcomer.id), variables: { token } });
    expect(again.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.token' });
    expect(again.body.errors?.[0]?.message).toMatch(/already been used/);
    const me = await api.request('{ viewer { role } }', { token: await tokenFor(newcomer.id, a.id) });
    expect(me.body.data).toEqual({ viewer: { role: 'MEMBER' } });
    const [audit] = await db.owner`select count(*)::int as n from app.audit_events where tenant_id = ${a.id} and target_id = ${rowId(invitation.id)} and action = 'invitation.accept'`;
    expect(audit!.n).toBe(1);
  });

  it('expired and revoked invitations are refused; a LEAD revokes only their own', async () => {
    const user = await createUser(db.owner, 'late@x.test', 'Late');
    const expired = await invite(a.members.ADMIN.token, 'late@x.test', 'VIEWER', 1);
    await db.owner`update app.invitations set created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour' where id = ${rowId(expired.invitation.id)}`;
    const late = await api.request(ACCEPT, { token: await tokenFor(user.id), variables: { token: expired.token } });
    expect(late.body.errors?.[0]?.message).toMatch(/expired/);

    const byAdmin = await invite(a.members.ADMIN.token, 'late@x.test', 'VIEWER');
    const REVOKE = 'mutation($id: ID!) { revokeInvitation(input: { id: $id }) { invitation { status } } }';
    expect(codes(await api.request(REVOKE, { token: a.members.LEAD.token, variables: { id: byAdmin.invitation.id } }))).toEqual(['FORBIDDEN']);
    expect(data(await api.request(REVOKE, { token: a.members.ADMIN.token, variables: { id: byAdmin.invitation.id } }), 'revokeInvitation')).toEqual({
      invitation: { status: 'REVOKED' },
    });
    const revoked = await api.request(ACCEPT, { token: await tokenFor(user.id), variables: { token: byAdmin.token } });
    expect(revoked.body.errors?.[0]?.message).toMatch(/revoked/);
    expect(codes(await api.request(REVOKE, { token: a.members.ADMIN.token, variables: { id: byAdmin.invitation.id } }))).toEqual(['BAD_USER_INPUT']);

    const byLead = await invite(a.members.LEAD.token, 'late@x.test', 'VIEWER');
    expect(codes(await api.request(REVOKE, { token: a.members.LEAD.token, variables: { id: byLead.invitation.id } }))).toEqual([]);
    const pending = data<{ edges: { node: { email: string } }[] }>(
      await api.request('{ invitations { edges { node { email } } } }', { token: a.members.LEAD.token }),
      'invitations',
    );
    expect(pending.edges.map((edge) => edge.node.email)).not.toContain('late@x.test');
  });

  it('cannot be accepted with an API key, nor into a suspended tenant', async () => {
    const { token } = await invite(b.members.ADMIN.token, 'viewer@mk-a.test', 'VIEWER');
    const key = data<{ secret: string }>(await api.request('mutation { createApiKey(input: { name: "k", role: VIEWER }) { secret } }', { token: a.members.MEMBER.token }), 'createApiKey');
    expect(codes(await api.request(ACCEPT, { headers: { 'x-api-key': key.secret }, variables: { token } }))).toEqual(['FORBIDDEN']);
    await db.owner`update app.tenants set status = 'suspended', suspended_at = now() where id = ${b.id}`;
    const refused = await api.request(ACCEPT, { token: await tokenFor(a.members.VIEWER.userId), variables: { token } });
    expect(codes(refused)).toEqual(['TENANT_SUSPENDED']);
    await db.owner`update app.tenants set status = 'active', suspended_at = null where id = ${b.id}`;
    expect(codes(await api.request(ACCEPT, { token: await tokenFor(a.members.VIEWER.userId), variables: { token } }))).toEqual([]);
  });
});

describe('members', () => {
  it('lists members to everyone; only ADMIN changes roles or removes, and not with an API key', async () => {
    const members = data<{ edges: { node: { user: { email: string }; role: string } }[] }>(
      await api.request('{ members(role: LEAD) { edges { node { user { email } role } } } }', { token: a.members.VIEWER.token }),
      'members',
    );
    expect(members.edges).toEqual([{ node: { user: { email: 'lead@mk-a.test' }, role: 'LEAD' } }]);
    const ROLE = 'mutation($user: ID!, $role: Role!) { updateMemberRole(input: { userId: $user, role: $role }) { member { role } } }';
    expect(codes(await api.request(ROLE, { token: a.members.LEAD.token, variables: { user: a.members.VIEWER.userId, role: 'MEMBER' } }))).toEqual(['FORBIDDEN']);
    expect(data(await api.request(ROLE, { token: a.members.ADMIN.token, variables: { user: a.members.VIEWER.userId, role: 'MEMBER' } }), 'updateMemberRole')).toEqual({
      member: { role: 'MEMBER' },
    });
    await api.request(ROLE, { token: a.members.ADMIN.token, variables: { user: a.members.VIEWER.userId, role: 'VIEWER' } });
    const key = data<{ secret: string }>(await api.request('mutation { createApiKey(input: { name: "admin key", role: ADMIN }) { secret } }', { token: a.members.ADMIN.token }), 'createApiKey');
    expect(codes(await api.request(ROLE, { headers: { 'x-api-key': key.secret }, variables: { user: a.members.VIEWER.userId, role: 'LEAD' } }))).toEqual(['FORBIDDEN']);
    const log = await db.owner`select action, details from app.audit_events where tenant_id = ${a.id} and action = 'member.role_change' order by id`;
    expect(log).toEqual([
      { action: 'member.role_change', details: { from: 'VIEWER', to: 'MEMBER' } },
      { action: 'member.role_change', details: { from: 'MEMBER', to: 'VIEWER' } },
    ]);
  });

  it("tenant B cannot list, change or remove tenant A's members", async () => {
    const list = data<{ edges: { node: { user: { email: string } } }[] }>(await api.request('{ members { edges { node { user { email } } } } }', { token: b.members.ADMIN.token }), 'members');
    expect(list.edges.every((edge) => edge.node.user.email.endsWith('@mk-b.test') || edge.node.user.email === 'viewer@mk-a.test')).toBe(true);
    const change = await api.request('mutation($user: ID!) { updateMemberRole(input: { userId: $user, role: VIEWER }) { member { role } } }', {
      token: b.members.ADMIN.token,
      variables: { user: a.members.LEAD.userId },
    });
    expect(codes(change)).toEqual(['NOT_FOUND']);
    const remove = await api.request('mutation($user: ID!) { removeMember(input: { userId: $user }) { removedUserId } }', {
      token: b.members.ADMIN.token,
      variables: { user: a.members.LEAD.userId },
    });
    expect(codes(remove)).toEqual(['NOT_FOUND']);
    const [lead] = await db.owner`select role from app.memberships where tenant_id = ${a.id} and user_id = ${a.members.LEAD.userId}`;
    expect(lead!.role).toBe('LEAD');
    const invitations = data<{ edges: unknown[] }>(await api.request('{ invitations(pendingOnly: false) { edges { node { id } } } }', { token: b.members.ADMIN.token }), 'invitations');
    const [bInvitations] = await db.owner<{ n: number }[]>`select count(*)::int as n from app.invitations where tenant_id = ${b.id}`;
    expect(invitations.edges).toHaveLength(bInvitations!.n);
  });
});

describe('API keys', () => {
  const CREATE = 'mutation($name: String!, $role: Role!, $expiresAt: DateTime) { createApiKey(input: { name: $name, role: $role, expiresAt: $expiresAt }) { secret apiKey { id prefix role lastUsedAt } } }';
  const QUERY = '{ tenant { slug } viewer { role user { email } } }';
  type Created = { secret: string; apiKey: { id: string; prefix: string; role: string; lastUsedAt: string | null } };

  it('authenticates into its tenant with its role, capped by the creator; the secret is stored only as a hash', async () => {
    const created = data<Created>(await api.request(CREATE, { token: a.members.LEAD.token, variables: { name: 'deploy', role: 'MEMBER' } }), 'createApiKey');
    expect(created.secret.startsWith(`${created.apiKey.prefix}_`)).toBe(true);
    const [row] = await db.owner`select encode(secret_hash, 'hex') as hash, prefix from app.api_keys where id = ${rowId(created.apiKey.id)}`;
    expect(row!.prefix).toBe(created.apiKey.prefix);
    expect(row!.hash).toHaveLength(64);
    const response = await api.request(QUERY, { headers: { 'x-api-key': created.secret } });
    expect(response.body.data).toEqual({ tenant: { slug: 'mk-a' }, viewer: { role: 'MEMBER', user: { email: 'lead@mk-a.test' } } });
    const tooHigh = await api.request(CREATE, { token: a.members.LEAD.token, variables: { name: 'x', role: 'ADMIN' } });
    expect(codes(tooHigh)).toEqual(['FORBIDDEN']);
    expect(codes(await api.request(CREATE, { token: a.members.VIEWER.token, variables: { name: 'x', role: 'VIEWER' } }))).toEqual(['FORBIDDEN']);
    // A key cannot mint keys.
    expect(codes(await api.request(CREATE, { headers: { 'x-api-key': created.secret }, variables: { name: 'child', role: 'VIEWER' } }))).toEqual(['FORBIDDEN']);
    // Demoting the creator lowers the key at once.
    await db.owner`update app.memberships set role = 'VIEWER' where tenant_id = ${a.id} and user_id = ${a.members.LEAD.userId}`;
    expect((await api.request(QUERY, { headers: { 'x-api-key': created.secret } })).body.data).toMatchObject({ viewer: { role: 'VIEWER' } });
    await db.owner`update app.memberships set role = 'LEAD' where tenant_id = ${a.id} and user_id = ${a.members.LEAD.userId}`;
  });

  it('unknown, malformed, revoked and expired keys, and keys whose creator left, are UNAUTHENTICATED (401)', async () => {
    const expect401 = async (headers: Record<string, string>) => {
      const response = await api.request(QUERY, { headers });
      expect([response.status, codes(response)]).toEqual([401, ['UNAUTHENTICATED']]);
    };
    await expect401({ 'x-api-key': 'nonsense' });
    await expect401({ 'x-api-key': `tnk_AAAAAAAA_${'A'.repeat(43)}` });

    const revoked = data<Created>(await api.request(CREATE, { token: a.members.MEMBER.token, variables: { name: 'old', role: 'VIEWER' } }), 'createApiKey');
    expect((await api.request(QUERY, { headers: { 'x-api-key': revoked.secret } })).status).toBe(200);
    const revoke = await api.request('mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { revokedAt } } }', {
      token: a.members.MEMBER.token,
      variables: { id: revoked.apiKey.id },
    });
    expect(codes(revoke)).toEqual([]);
    await expect401({ 'x-api-key': revoked.secret });

    const expiring = data<Created>(
      await api.request(CREATE, { token: a.members.MEMBER.token, variables: { name: 'short', role: 'VIEWER', expiresAt: new Date(Date.now() + 60_000).toISOString() } }),
      'createApiKey',
    );
    await db.owner`update app.api_keys set created_at = now() - interval '2 minutes', expires_at = now() - interval '1 second' where id = ${rowId(expiring.apiKey.id)}`;
    await expect401({ 'x-api-key': expiring.secret });

    const leaver = await createUser(db.owner, 'leaver@mk-a.test', 'Leaver');
    await db.owner`insert into app.memberships (tenant_id, user_id, role) values (${a.id}, ${leaver.id}, 'MEMBER')`;
    const orphan = data<Created>(await api.request(CREATE, { token: await tokenFor(leaver.id, a.id), variables: { name: 'orphan', role: 'MEMBER' } }), 'createApiKey');
    await db.owner`delete from app.memberships where tenant_id = ${a.id} and user_id = ${leaver.id}`;
    await expect401({ 'x-api-key': orphan.secret });

    const both = await api.request(QUERY, { token: a.members.ADMIN.token, headers: { 'x-api-key': revoked.secret } });
    expect([both.status, codes(both)]).toEqual([401, ['UNAUTHENTICATED']]);
  });

  it("X-Tenant-ID must name the key's own tenant", async () => {
    const key = data<Created>(await api.request(CREATE, { token: a.members.MEMBER.token, variables: { name: 'pinned', role: 'VIEWER' } }), 'createApiKey');
    expect((await api.request(QUERY, { headers: { 'x-api-key': key.secret, 'x-tenant-id': 'mk-a' } })).status).toBe(200);
    const other = await api.request(QUERY, { headers: { 'x-api-key': key.secret, 'x-tenant-id': 'mk-b' } });
    expect([other.status, codes(other)]).toEqual([403, ['TENANT_NOT_FOUND']]);
  });

  it('records lastUsedAt without a write on every request (at most once a minute)', async () => {
    const key = data<Created>(await api.request(CREATE, { token: a.members.MEMBER.token, variables: { name: 'busy', role: 'VIEWER' } }), 'createApiKey');
    expect(key.apiKey.lastUsedAt).toBeNull();
    await api.request(QUERY, { headers: { 'x-api-key': key.secret } });
    const [first] = await db.owner<{ at: Date; xmin: string }[]>`select last_used_at as at, xmin::text from app.api_keys where id = ${rowId(key.apiKey.id)}`;
    expect(first!.at).toBeInstanceOf(Date);
    for (let i = 0; i < 5; i++) await api.request(QUERY, { headers: { 'x-api-key': key.secret } });
    const [later] = await db.owner<{ at: Date; xmin: string }[]>`select last_used_at as at, xmin::text from app.api_keys where id = ${rowId(key.apiKey.id)}`;
    expect(later).toEqual(first); // the row was not written again
    await db.owner`update app.api_keys set last_used_at = now() - interval '2 minutes' where id = ${rowId(key.apiKey.id)}`;
    await api.request(QUERY, { headers: { 'x-api-key': key.secret } });
    const [refreshed] = await db.owner<{ fresh: boolean }[]>`select last_used_at > now() - interval '30 seconds' as fresh from app.api_keys where id = ${rowId(key.apiKey.id)}`;
    expect(refreshed!.fresh).toBe(true);
  });

  it("lists: ADMIN every key of the tenant, others their own; tenant B sees and revokes none of A's", async () => {
    const names = async (token: string) =>
      data<{ edges: { node: { name: string; createdBy: { email: string } | null } }[] }>(await api.request('{ apiKeys { edges { node { name createdBy { email } } } } }', { token }), 'apiKeys').edges;
    const mine = await names(a.members.MEMBER.token);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((edge) => edge.node.createdBy?.email === 'member@mk-a.test')).toBe(true);
    const all = await names(a.members.ADMIN.token);
    expect(all.length).toBeGreaterThan(mine.length);
    expect(await names(b.members.ADMIN.token)).toEqual([]);
    const [aKey] = await db.owner<{ id: string }[]>`
      select id from app.api_keys where tenant_id = ${a.id} and created_by = ${a.members.MEMBER.userId} and revoked_at is null limit 1`;
    const revoke = await api.request('mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { id } } }', { token: b.members.ADMIN.token, variables: { id: encodeGlobalId('ApiKey', aKey!.id) } });
    expect(codes(revoke)).toEqual(['NOT_FOUND']);
    const lead = await api.request('mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { id } } }', { token: a.members.LEAD.token, variables: { id: encodeGlobalId('ApiKey', aKey!.id) } });
    expect(codes(lead)).toEqual(['NOT_FOUND']); // a LEAD sees only their own keys
    const [still] = await db.owner`select revoked_at from app.api_keys where id = ${aKey!.id}`;
    expect(still!.revoked_at).toBeNull();
  });
});
