// Property: random interleavings of tenant life-cycle operations (suspend,
// reactivate, invite, accept, role change, API key create/revoke/use) by
// random principals across three tenants. A model of who may do what predicts
// every answer, and what each credential can do always equals the model.
import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import { createUser, setOperator } from '../src/operator/repo.ts';
import { ROLES, roleAtLeast, type Role } from '../src/tenancy/roles.ts';
import { codes, createTestApp, createTestTenant, tokenFor, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenants: TestTenant[];
/** Every user: the members of each tenant first, then three newcomers. */
let users: { id: string; email: string }[];
let original: Map<string, Role>;
let operatorToken: string;
const tokens = new Map<string, string>();

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(3));
  tenants = [];
  users = [];
  original = new Map();
  for (const slug of ['plc-a', 'plc-b', 'plc-c']) {
    const tenant = await createTestTenant(db.owner, slug);
    tenants.push(tenant);
    for (const role of ROLES) {
      users.push({ id: tenant.members[role].userId, email: `${role.toLowerCase()}@${slug}.test` });
      original.set(`${tenant.id}:${tenant.members[role].userId}`, role);
    }
  }
  for (const n of [0, 1, 2]) {
    const user = await createUser(db.owner, `new${n}@plc.test`, `Newcomer ${n}`);
    users.push({ id: user.id, email: user.email });
  }
  const operator = await createUser(db.owner, 'ops@plc.test', 'Operator');
  await setOperator(db.owner, operator, true, 'cli:test', undefined);
  operatorToken = await tokenFor(operator.id);
});

async function tokenOf(userId: string, tenantId?: string): Promise<string> {
  const key = `${userId}:${tenantId ?? ''}`;
  let token = tokens.get(key);
  if (!token) tokens.set(key, (token = await tokenFor(userId, tenantId)));
  return token;
}

type Op =
  | { kind: 'suspend' | 'reactivate'; tenant: number }
  | { kind: 'invite'; actor: number; tenant: number; email: number; role: number }
  | { kind: 'accept'; user: number; invitation: number }
  | { kind: 'setRole'; actor: number; tenant: number; target: number; role: number }
  | { kind: 'createKey'; actor: number; tenant: number; role: number }
  | { kind: 'revokeKey'; actor: number; tenant: number; key: number }
  | { kind: 'useKey'; key: number }
  | { kind: 'check'; user: number; tenant: number };

const tenant = fc.nat({ max: 2 });
const user = fc.nat({ max: 14 });
const role = fc.nat({ max: 3 });
const index = fc.nat({ max: 20 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom('suspend' as const, 'reactivate' as const), tenant }),
  fc.record({ kind: fc.constant('invite' as const), actor: user, tenant, email: user, role }),
  fc.record({ kind: fc.constant('accept' as const), user, invitation: index }),
  fc.record({ kind: fc.constant('setRole' as const), actor: user, tenant, target: user, role }),
  fc.record({ kind: fc.constant('createKey' as const), actor: user, tenant, role }),
  fc.record({ kind: fc.constant('revokeKey' as const), actor: user, tenant, key: index }),
  fc.record({ kind: fc.constant('useKey' as const), key: index }),
  fc.record({ kind: fc.constant('check' as const), user, tenant }),
);

type Invitation = { token: string; tenantId: string; email: string; role: Role; state: 'pending' | 'accepted' };
type Key = { secret: string; id: string; tenantId: string; creator: string; role: Role; revoked: boolean };

async function reset(): Promise<void> {
  await db.owner`delete from app.invitations`;
  await db.owner`delete from app.api_keys`;
  await db.owner`update app.tenants set status = 'active', suspended_at = null`;
  await db.owner`delete from app.memberships where tenant_id || ':' || user_id <> all(${[...original.keys()]})`;
  await db.owner`update app.memberships set role = 'ADMIN' where user_id = any(${tenants.map((t) => t.members.ADMIN.userId)})`;
  for (const [key, value] of original) {
    const [tenantId, userId] = key.split(':');
    await db.owner`update app.memberships set role = ${value} where tenant_id = ${tenantId!} and user_id = ${userId!} and role <> ${value}`;
  }
}

const first = (response: GraphQLResponse) => codes(response)[0] ?? 'ok';

/** Mostly one of the tenant's own base members (by role), sometimes a newcomer. */
const actorIn = (tenantIndex: number, index: number) => users[index < 12 ? tenantIndex * 4 + (index % 4) : index]!;

async function run(ops: Op[]): Promise<void> {
  await reset();
  const suspended = new Set<string>();
  const roles = new Map(original);
  const invitations: Invitation[] = [];
  const keys: Key[] = [];
  const roleOf = (tenantId: string, userId: string) => roles.get(`${tenantId}:${userId}`);
  /** What refuses a request of `userId` in `tenantId` before any field runs. */
  const refusal = (tenantId: string, userId: string) =>
    !roleOf(tenantId, userId) ? 'TENANT_NOT_FOUND' : suspended.has(tenantId) ? 'TENANT_SUSPENDED' : undefined;

  for (const step of ops) {
    if (step.kind === 'suspend' || step.kind === 'reactivate') {
      const t = tenants[step.tenant]!;
      const mutation = step.kind === 'suspend'
        ? 'mutation($id: ID!) { suspendTenant(input: { id: $id, reason: "property" }) { tenant { status } } }'
        : 'mutation($id: ID!) { reactivateTenant(input: { id: $id }) { tenant { status } } }';
      const already = suspended.has(t.id) === (step.kind === 'suspend');
      expect(first(await api.request(mutation, { token: operatorToken, variables: { id: t.id } })), JSON.stringify(step)).toBe(already ? 'CONFLICT' : 'ok');
      if (step.kind === 'suspend') suspended.add(t.id);
      else suspended.delete(t.id);
    } else if (step.kind === 'invite') {
      const t = tenants[step.tenant]!;
      const actor = actorIn(step.tenant, step.actor);
      const invitee = users[step.email]!;
      const wanted = ROLES[step.role]!;
      const actorRole = roleOf(t.id, actor.id);
      const expected =
        refusal(t.id, actor.id) ??
        (!roleAtLeast(actorRole!, 'LEAD') || (actorRole !== 'ADMIN' && roleAtLeast(wanted, 'LEAD'))
          ? 'FORBIDDEN'
          : roleOf(t.id, invitee.id)
            ? 'CONFLICT'
            : 'ok');
      const response = await api.request('mutation($email: String!, $role: Role!) { inviteMember(input: { email: $email, role: $role }) { token } }', {
        token: await tokenOf(actor.id, t.id),
        variables: { email: invitee.email, role: wanted },
      });
      expect(first(response), JSON.stringify(step)).toBe(expected);
      if (expected === 'ok') {
        const token = (response.body.data as { inviteMember: { token: string } }).inviteMember.token;
        invitations.push({ token, tenantId: t.id, email: invitee.email, role: wanted, state: 'pending' });
      }
    } else if (step.kind === 'accept') {
      const invitation = invitations[step.invitation % Math.max(1, invitations.length)];
      if (!invitation) continue;
      const accepting = users[step.user]!;
      const expected =
        invitation.email !== accepting.email
          ? 'NOT_FOUND'
          : invitation.state === 'accepted'
            ? 'BAD_USER_INPUT'
            : suspended.has(invitation.tenantId)
              ? 'TENANT_SUSPENDED'
              : roleOf(invitation.tenantId, accepting.id)
                ? 'CONFLICT'
                : 'ok';
      const response = await api.request('mutation($token: String!) { acceptInvitation(input: { token: $token }) { role } }', {
        token: await tokenOf(accepting.id),
        variables: { token: invitation.token },
      });
      expect(first(response), JSON.stringify(step)).toBe(expected);
      if (expected === 'ok') {
        invitation.state = 'accepted';
        roles.set(`${invitation.tenantId}:${accepting.id}`, invitation.role);
      }
    } else if (step.kind === 'setRole') {
      const t = tenants[step.tenant]!;
      const actor = actorIn(step.tenant, step.actor);
      const target = users[step.target]!;
      const wanted = ROLES[step.role]!;
      const admins = [...roles].filter(([key, value]) => key.startsWith(`${t.id}:`) && value === 'ADMIN').length;
      const targetRole = roleOf(t.id, target.id);
      const expected =
        refusal(t.id, actor.id) ??
        (roleOf(t.id, actor.id) !== 'ADMIN'
          ? 'FORBIDDEN'
          : !targetRole
            ? 'NOT_FOUND'
            : targetRole === 'ADMIN' && wanted !== 'ADMIN' && admins === 1
              ? 'CONFLICT'
              : 'ok');
      const response = await api.request('mutation($user: ID!, $role: Role!) { updateMemberRole(input: { userId: $user, role: $role }) { member { role } } }', {
        token: await tokenOf(actor.id, t.id),
        variables: { user: target.id, role: wanted },
      });
      expect(first(response), JSON.stringify(step)).toBe(expected);
      if (expected === 'ok') roles.set(`${t.id}:${target.id}`, wanted);
    } else if (step.kind === 'createKey') {
      const t = tenants[step.tenant]!;
      const actor = actorIn(step.tenant, step.actor);
      const wanted = ROLES[step.role]!;
      const actorRole = roleOf(t.id, actor.id);
      const expected = refusal(t.id, actor.id) ?? (!roleAtLeast(actorRole!, 'MEMBER') || !roleAtLeast(actorRole!, wanted) ? 'FORBIDDEN' : 'ok');
      const response = await api.request('mutation($role: Role!) { createApiKey(input: { name: "property", role: $role }) { secret apiKey { id } } }', {
        token: await tokenOf(actor.id, t.id),
        variables: { role: wanted },
      });
      expect(first(response), JSON.stringify(step)).toBe(expected);
      if (expected === 'ok') {
        const created = (response.body.data as { createApiKey: { secret: string; apiKey: { id: string } } }).createApiKey;
        keys.push({ secret: created.secret, id: created.apiKey.id, tenantId: t.id, creator: actor.id, role: wanted, revoked: false });
      }
    } else if (step.kind === 'revokeKey') {
      const key = keys[step.key % Math.max(1, keys.length)];
      if (!key) continue;
      const t = tenants[step.tenant]!;
      const actor = actorIn(step.tenant, step.actor);
      const actorRole = roleOf(t.id, actor.id);
      const expected =
        refusal(t.id, actor.id) ??
        (!roleAtLeast(actorRole!, 'MEMBER')
          ? 'FORBIDDEN'
          : key.tenantId !== t.id || (actorRole !== 'ADMIN' && key.creator !== actor.id)
            ? 'NOT_FOUND'
            : 'ok');
      const response = await api.request('mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { id } } }', {
        token: await tokenOf(actor.id, t.id),
        variables: { id: key.id },
      });
      expect(first(response), JSON.stringify(step)).toBe(expected);
      if (expected === 'ok') key.revoked = true;
    } else if (step.kind === 'useKey') {
      const key = keys[step.key % Math.max(1, keys.length)];
      if (!key) continue;
      const creatorRole = roleOf(key.tenantId, key.creator);
      const response = await api.request('{ viewer { role } }', { headers: { 'x-api-key': key.secret } });
      if (key.revoked || !creatorRole) expect(first(response), JSON.stringify(step)).toBe('UNAUTHENTICATED');
      else if (suspended.has(key.tenantId)) expect(first(response), JSON.stringify(step)).toBe('TENANT_SUSPENDED');
      else {
        const effective = roleAtLeast(creatorRole, key.role) ? key.role : creatorRole;
        expect(response.body.data, JSON.stringify(step)).toEqual({ viewer: { role: effective } });
      }
    } else if (step.kind === 'check') {
      const t = tenants[step.tenant]!;
      const u = users[step.user]!;
      const response = await api.request('{ viewer { role } }', { token: await tokenOf(u.id, t.id) });
      const refused = refusal(t.id, u.id);
      if (refused) expect(first(response), JSON.stringify(step)).toBe(refused);
      else expect(response.body.data, JSON.stringify(step)).toEqual({ viewer: { role: roleOf(t.id, u.id) } });
    }
  }
  // The database agrees with the model.
  const rows = await db.owner<{ tenant_id: string; user_id: string; role: Role }[]>`select tenant_id, user_id, role from app.memberships`;
  expect(new Map(rows.map((row) => [`${row.tenant_id}:${row.user_id}`, row.role]))).toEqual(roles);
}

it('what every credential may do always matches the life-cycle model', async () => {
  await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 10, maxLength: 40 }), run), { numRuns: 100 });
}, 180_000); // 100 fixed runs: 15-28 s on the loaded 2-core machine, nearer the 60 s default in a heavier full run; room, not a bound
