// Credentials -> tenant: every way a request can be refused, and the few ways
// it is let in.
import { SignJWT, base64url } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { codes, createTestApp, createTestTenant, TEST_TOKENS, tokenFor, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let acme: TestTenant;
let globex: TestTenant;
let suspended: TestTenant;

const QUERY = '{ tenant { slug } viewer { role } }';
const secret = new TextEncoder().encode(TEST_TOKENS.secret);

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool());
  acme = await createTestTenant(db.owner, 'res-acme');
  globex = await createTestTenant(db.owner, 'res-globex');
  suspended = await createTestTenant(db.owner, 'res-suspended');
  await db.owner`update app.tenants set status = 'suspended', suspended_at = now() where id = ${suspended.id}`;
  // acme's ADMIN is also a VIEWER in globex.
  await db.owner`insert into app.memberships (tenant_id, user_id, role) values (${globex.id}, ${acme.members.ADMIN.userId}, 'VIEWER')`;
});

function expectRefused(response: Awaited<ReturnType<TestApp['request']>>, status: number, code: string) {
  expect(response.status).toBe(status);
  expect(codes(response)).toEqual([code]);
  expect(response.body.data ?? null).toBeNull();
  expect(JSON.stringify(response.body)).not.toMatch(/at \w+ \(|postgres|sql/i); // no stack, no SQL
}

describe('credentials', () => {
  it('lets a valid token in, with the membership role', async () => {
    const response = await api.request(QUERY, { token: acme.members.LEAD.token });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ data: { tenant: { slug: 'res-acme' }, viewer: { role: 'LEAD' } } });
  });

  it('refuses a missing token with 401', async () => {
    expectRefused(await api.request(QUERY), 401, 'UNAUTHENTICATED');
  });

  it('refuses a malformed Authorization header or token', async () => {
    for (const authorization of ['Basic abc', 'Bearer', 'Bearer not.a.jwt', 'Bearer a b', `Token ${acme.members.LEAD.token}`]) {
      expectRefused(await api.request(QUERY, { headers: { authorization } }), 401, 'UNAUTHENTICATED');
    }
  });

  it('refuses an expired token', async () => {
    const expired = await new SignJWT({ tid: acme.id })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(acme.members.ADMIN.userId)
      .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(secret);
    expectRefused(await api.request(QUERY, { token: expired }), 401, 'UNAUTHENTICATED');
  });

  it('refuses a token without exp', async () => {
    const forever = await new SignJWT({ tid: acme.id }).setProtectedHeader({ alg: 'HS256' }).setSubject(acme.members.ADMIN.userId).sign(secret);
    expectRefused(await api.request(QUERY, { token: forever }), 401, 'UNAUTHENTICATED');
  });

  it('refuses a token signed with another key', async () => {
    const forged = await new SignJWT({ tid: acme.id })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(acme.members.ADMIN.userId)
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode('another-secret-that-is-32-bytes-long!!'));
    expectRefused(await api.request(QUERY, { token: forged }), 401, 'UNAUTHENTICATED');
  });

  it('refuses alg: none', async () => {
    const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
    const payload = base64url.encode(JSON.stringify({ sub: acme.members.ADMIN.userId, tid: acme.id, exp: Math.floor(Date.now() / 1000) + 3600 }));
    expectRefused(await api.request(QUERY, { token: `${header}.${payload}.` }), 401, 'UNAUTHENTICATED');
  });

  it('refuses a token whose payload was edited after signing', async () => {
    const [header, , signature] = acme.members.VIEWER.token.split('.');
    const payload = base64url.encode(JSON.stringify({ sub: acme.members.ADMIN.userId, tid: acme.id, exp: Math.floor(Date.now() / 1000) + 3600 }));
    expectRefused(await api.request(QUERY, { token: `${header}.${payload}.${signature}` }), 401, 'UNAUTHENTICATED');
  });

  it('refuses a sub or tid that is not a uuid, and an unknown role claim', async () => {
    for (const claims of [{ sub: 'alice', tid: acme.id }, { sub: acme.members.ADMIN.userId, tid: 'res-acme' }, { sub: acme.members.ADMIN.userId, tid: acme.id, role: 'OWNER' }]) {
      const token = await new SignJWT({ tid: claims.tid, ...('role' in claims ? { role: claims.role } : {}) })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(claims.sub)
        .setExpirationTime('1h')
        .sign(secret);
      expectRefused(await api.request(QUERY, { token }), 401, 'UNAUTHENTICATED');
    }
  });

  it('refuses a valid token for a user that does not exist as TENANT_NOT_FOUND', async () => {
    const token = await tokenFor('00000000-0000-4000-8000-000000000999', acme.id);
    expectRefused(await api.request(QUERY, { token }), 403, 'TENANT_NOT_FOUND');
  });
});

describe('tenant selection', () => {
  it('needs a tenant: no tid and no header is TENANT_REQUIRED (400)', async () => {
    const token = await tokenFor(acme.members.ADMIN.userId);
    expectRefused(await api.request(QUERY, { token }), 400, 'TENANT_REQUIRED');
  });

  it('refuses an unknown tenant id, slug or malformed X-Tenant-ID as TENANT_NOT_FOUND (403)', async () => {
    const unknown = await tokenFor(acme.members.ADMIN.userId, '00000000-0000-4000-8000-000000000001');
    expectRefused(await api.request(QUERY, { token: unknown }), 403, 'TENANT_NOT_FOUND');
    for (const header of ['no-such-tenant', 'NOT A SLUG', "x' or 1=1 --"]) {
      expectRefused(await api.request(QUERY, { token: acme.members.ADMIN.token, headers: { 'x-tenant-id': header } }), 403, 'TENANT_NOT_FOUND');
    }
  });

  it('answers a tenant you are not in exactly like one that does not exist', async () => {
    const notMember = await api.request(QUERY, { token: globex.members.ADMIN.token, headers: { 'x-tenant-id': 'res-acme' } });
    const missing = await api.request(QUERY, { token: globex.members.ADMIN.token, headers: { 'x-tenant-id': 'res-nowhere' } });
    expect(notMember).toEqual(missing);
  });

  it('lets X-Tenant-ID select another tenant of the user, by slug or id, with that membership role', async () => {
    for (const header of ['res-globex', globex.id]) {
      const response = await api.request(QUERY, { token: acme.members.ADMIN.token, headers: { 'x-tenant-id': header } });
      expect(response.body).toEqual({ data: { tenant: { slug: 'res-globex' }, viewer: { role: 'VIEWER' } } });
    }
  });

  it('refuses a suspended tenant to its members (403), and a non-member still sees "not found"', async () => {
    expectRefused(await api.request(QUERY, { token: suspended.members.ADMIN.token }), 403, 'TENANT_SUSPENDED');
    expectRefused(
      await api.request(QUERY, { token: acme.members.ADMIN.token, headers: { 'x-tenant-id': 'res-suspended' } }),
      403,
      'TENANT_NOT_FOUND',
    );
  });

  it('applies suspension, reactivation and revocation on the very next request', async () => {
    const token = acme.members.MEMBER.token;
    expect((await api.request(QUERY, { token })).status).toBe(200);
    await db.owner`update app.tenants set status = 'suspended', suspended_at = now() where id = ${acme.id}`;
    expectRefused(await api.request(QUERY, { token }), 403, 'TENANT_SUSPENDED');
    await db.owner`update app.tenants set status = 'active', suspended_at = null where id = ${acme.id}`;
    expect((await api.request(QUERY, { token })).status).toBe(200);
    await db.owner`update app.memberships set role = 'VIEWER' where tenant_id = ${acme.id} and user_id = ${acme.members.MEMBER.userId}`;
    expect((await api.request(QUERY, { token })).body.data).toEqual({ tenant: { slug: 'res-acme' }, viewer: { role: 'VIEWER' } });
    await db.owner`delete from app.memberships where tenant_id = ${acme.id} and user_id = ${acme.members.MEMBER.userId}`;
    expectRefused(await api.request(QUERY, { token }), 403, 'TENANT_NOT_FOUND');
    await db.owner`insert into app.memberships (tenant_id, user_id, role) values (${acme.id}, ${acme.members.MEMBER.userId}, 'MEMBER')`;
  });

  it('refuses a suspended tenant even for an operation that reads no table', async () => {
    expectRefused(await api.request('{ __typename }', { token: suspended.members.ADMIN.token }), 403, 'TENANT_SUSPENDED');
  });
});

describe('role claim', () => {
  it('lowers the role', async () => {
    const token = await tokenFor(acme.members.ADMIN.userId, acme.id, { role: 'VIEWER' });
    expect((await api.request(QUERY, { token })).body.data).toEqual({ tenant: { slug: 'res-acme' }, viewer: { role: 'VIEWER' } });
    const write = await api.request('mutation { createAgent(input: { name: "capped", kind: "assistant" }) { agent { id } } }', { token });
    expect(codes(write)).toEqual(['FORBIDDEN']);
  });

  it('never raises it', async () => {
    const token = await tokenFor(acme.members.VIEWER.userId, acme.id, { role: 'ADMIN' });
    expect((await api.request(QUERY, { token })).body.data).toEqual({ tenant: { slug: 'res-acme' }, viewer: { role: 'VIEWER' } });
    const write = await api.request('mutation { createAgent(input: { name: "raised", kind: "assistant" }) { agent { id } } }', { token });
    expect(codes(write)).toEqual(['FORBIDDEN']);
    const [row] = await db.owner`select count(*)::int as n from app.agents where name = 'raised'`;
    expect(row!.n).toBe(0);
  });
});

describe('single-tenant mode and the allowlist', () => {
  it('MULTI_TENANCY_ENABLED=false puts every request in DEFAULT_TENANT, whatever the token or header say', async () => {
    const single = createTestApp(db.appPool(2), { multiTenancy: false, defaultTenant: 'res-globex' });
    const token = await tokenFor(acme.members.ADMIN.userId); // no tid
    const response = await single.request(QUERY, { token, headers: { 'x-tenant-id': 'res-acme' } });
    expect(response.body).toEqual({ data: { tenant: { slug: 'res-globex' }, viewer: { role: 'VIEWER' } } });
    const outsider = await single.request(QUERY, { token: acme.members.LEAD.token });
    expect(outsider.status).toBe(403);
    expect(codes(outsider)).toEqual(['TENANT_NOT_FOUND']);
  });

  it('ALLOWED_TENANTS refuses every other tenant as not found', async () => {
    const allowlisted = createTestApp(db.appPool(2), { allowedTenants: ['res-globex'] });
    expectRefused(await allowlisted.request(QUERY, { token: acme.members.ADMIN.token }), 403, 'TENANT_NOT_FOUND');
    const allowed = await allowlisted.request(QUERY, { token: globex.members.ADMIN.token });
    expect(allowed.body.data).toEqual({ tenant: { slug: 'res-globex' }, viewer: { role: 'ADMIN' } });
  });
});
