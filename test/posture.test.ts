// Production posture: the request role is checked at start, introspection and
// suggestions are settings, CORS answers only allowed origins, credentials
// are hardened in production, and the host name can select the tenant.
import { request } from 'node:http';
import { SignJWT } from 'jose';
import postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTokenVerifier, InvalidTokenError } from '../src/auth/tokens.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { assertSafeRequestRole, UnsafeRequestRoleError } from '../src/db/request-role.ts';
import { codes, createTestApp, createTestTenant, TEST_HTTP, TEST_TOKENS, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let acme: TestTenant;

beforeAll(async () => {
  db = await useTestDatabase();
  acme = await createTestTenant(db.owner, 'posture-acme');
  await createTestTenant(db.owner, 'posture-globex');
});

describe('the request role at start-up', () => {
  it('accepts the app role', async () => {
    await expect(assertSafeRequestRole(db.appPool(1))).resolves.toBeUndefined();
  });

  it('refuses a superuser, a BYPASSRLS role and a member of the owner role', async () => {
    await expect(assertSafeRequestRole(db.owner)).rejects.toThrow(/superuser/);
    const suffix = Math.random().toString(36).slice(2, 8);
    const [owner] = await db.owner<{ name: string }[]>`select tableowner as name from pg_tables where schemaname = 'app' and tablename = 'agents'`;
    for (const [role, attributes, expected] of [
      [`bypass_${suffix}`, 'login bypassrls', /BYPASSRLS/],
      [`member_${suffix}`, `login in role ${owner!.name}`, /owns/],
    ] as const) {
      await db.owner.unsafe(`create role ${role} ${attributes} password 'pw-${suffix}'`);
      const url = new URL(db.ownerUrl);
      url.username = role;
      url.password = `pw-${suffix}`;
      const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
      try {
        await expect(assertSafeRequestRole(sql)).rejects.toThrow(UnsafeRequestRoleError);
        await expect(assertSafeRequestRole(sql)).rejects.toThrow(expected);
      } finally {
        await sql.end();
        await db.owner.unsafe(`drop role ${role}`);
      }
    }
  });
});

describe('production settings', () => {
  const production = { NODE_ENV: 'production', JWT_SECRET: 'k'.repeat(40) };

  it('turns introspection, suggestions, CORS and the demo off by default', () => {
    expect(loadConfig(production).http).toMatchObject({ introspection: false, suggestions: false, corsOrigins: [] });
    expect(loadConfig(production).jwtMaxTtlSeconds).toBe(86_400);
    expect(() => loadConfig({ ...production, DEMO_DATA: 'true' })).toThrow(/DEMO_DATA/);
  });

  it.each([
    [{ NODE_ENV: 'production', JWT_SECRET: 'change-this-development-secret-of-32-bytes+' }, 'published example'],
    [{ NODE_ENV: 'production', JWKS_URL: 'https://idp.example/jwks' }, 'JWT_ISSUER and JWT_AUDIENCE'],
    [{ NODE_ENV: 'production', JWKS_URL: 'http://idp.example/jwks', JWT_ISSUER: 'i', JWT_AUDIENCE: 'a' }, 'JWKS_URL must use https:'],
    [{ NODE_ENV: 'test', JWKS_URL: 'http://idp.example/jwks' }, 'JWKS_URL must use https:'],
    [{ JWT_MAX_TTL: 'forever' }, 'JWT_MAX_TTL'],
    [{ CORS_ORIGINS: 'not an origin' }, 'CORS_ORIGINS'],
    [{ TENANT_HOST_SUFFIX: 'example.com' }, 'TENANT_HOST_SUFFIX'],
    [{ MAX_DEPTH: '1' }, 'MAX_DEPTH'],
  ])('refuses %o naming %s', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('accepts an identity provider with issuer and audience, and reads every limit', () => {
    const config = loadConfig({ NODE_ENV: 'production', JWKS_URL: 'https://idp.example/jwks', JWT_ISSUER: 'https://idp.example/', JWT_AUDIENCE: 'tenancy', MAX_COST: '500', JWT_MAX_TTL: '2h' });
    expect(config.http.limits.cost).toBe(500);
    expect(config.jwtMaxTtlSeconds).toBe(7200);
  });
});

describe('token lifetime', () => {
  const key = new TextEncoder().encode(TEST_TOKENS.secret);
  const verify = createTokenVerifier({ ...TEST_TOKENS, maxTtlSeconds: 3600 });
  const sign = (claims: { iat?: number; exp: number }) => {
    let jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(acme.members.VIEWER.userId).setExpirationTime(claims.exp);
    if (claims.iat !== undefined) jwt = jwt.setIssuedAt(claims.iat);
    return jwt.sign(key);
  };
  const now = Math.floor(Date.now() / 1000);

  it('accepts a token within JWT_MAX_TTL', async () => {
    await expect(verify(await sign({ iat: now, exp: now + 3600 }))).resolves.toMatchObject({ userId: acme.members.VIEWER.userId });
  });

  it.each([
    ['without iat', { exp: now + 600 }],
    ['living longer than allowed', { iat: now, exp: now + 3601 }],
    ['issued in the future', { iat: now + 600, exp: now + 1200 }],
  ])('refuses a token %s', async (_name, claims) => {
    await expect(verify(await sign(claims))).rejects.toThrow(InvalidTokenError);
  });
});

describe('HTTP posture', () => {
  it('refuses introspection and hides suggestions when they are off', async () => {
    const closed = createTestApp(db.appPool(1), { http: { ...TEST_HTTP, introspection: false, suggestions: false } });
    const token = acme.members.VIEWER.token;
    const introspection = codes(await closed.request('{ __schema { types { name } } }', { token }));
    expect(introspection.length).toBeGreaterThan(0);
    expect(introspection.every((code) => code === 'BAD_USER_INPUT')).toBe(true);
    const typo = await closed.request('{ agnets(first: 1) { edges { node { id } } } }', { token });
    expect(typo.body.errors?.[0]?.message).toBe('Cannot query field "agnets" on type "Query".');
    const open = createTestApp(db.appPool(1));
    expect((await open.request('{ agnets(first: 1) { edges { node { id } } } }', { token })).body.errors?.[0]?.message).toMatch(/Did you mean "agents"/);
    expect((await open.request('{ __schema { queryType { name } } }', { token })).body.errors).toBeUndefined();
  });

  it('answers CORS only for allowed origins, on POST and on the preflight', async () => {
    const api = createTestApp(db.appPool(1), { http: { ...TEST_HTTP, corsOrigins: ['https://app.example'] } });
    const base = await api.origin();
    const post = (origin: string) =>
      fetch(`${base}/graphql`, {
        method: 'POST',
        headers: { origin, 'content-type': 'application/json', authorization: `Bearer ${acme.members.VIEWER.token}` },
        body: '{"query":"{ tenant { slug } }"}',
      });
    expect((await post('https://app.example')).headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect((await post('https://evil.example')).headers.get('access-control-allow-origin')).toBeNull();
    const preflight = (origin: string) =>
      fetch(`${base}/graphql`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
    expect((await preflight('https://app.example')).headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect((await preflight('https://evil.example')).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('a simple (CSRF-able) request carries no credentials and does nothing', async () => {
    const api = createTestApp(db.appPool(1));
    const response = await fetch(`${await api.origin()}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', origin: 'https://evil.example' },
      body: '{"query":"mutation { createAgent(input: { name: \\"csrf\\", kind: \\"k\\" }) { agent { id } } }"}',
    });
    expect(response.status).toBe(415);
    const [count] = await db.owner`select count(*)::int as n from app.agents where name = 'csrf'`;
    expect(count!.n).toBe(0);
  });
});

describe('TENANT_HOST_SUFFIX', () => {
  it('selects the tenant from the host name among those the credentials grant', async () => {
    const api = createTestApp(db.appPool(1), { tenantHostSuffix: '.tenancy.test' });
    const token = acme.members.VIEWER.token;
    const { port } = new URL(await api.origin());
    // fetch() may not set Host: a plain node:http request does.
    const ask = (host: string, headers: Record<string, string> = {}) =>
      new Promise<unknown>((resolve, reject) => {
        const body = '{"query":"{ tenant { slug } }"}';
        const req = request({ host: '127.0.0.1', port, path: '/graphql', method: 'POST', headers: { host, 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers } }, (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve(JSON.parse(text)));
        });
        req.on('error', reject);
        req.end(body);
      });
    expect(await ask('posture-acme.tenancy.test')).toEqual({ data: { tenant: { slug: 'posture-acme' } } });
    // A tenant the user is not in reads as not found, like X-Tenant-ID; so does a host that names no tenant.
    expect(await ask('posture-globex.tenancy.test:4000')).toMatchObject({ errors: [{ extensions: { code: 'TENANT_NOT_FOUND' } }] });
    expect(await ask('Not_A_Slug.tenancy.test')).toMatchObject({ errors: [{ extensions: { code: 'TENANT_NOT_FOUND' } }] });
    // X-Tenant-ID wins over the host; another host falls back to the token's tid.
    expect(await ask('posture-globex.tenancy.test', { 'x-tenant-id': 'posture-acme' })).toEqual({ data: { tenant: { slug: 'posture-acme' } } });
    expect(await ask('api.elsewhere.test')).toEqual({ data: { tenant: { slug: 'posture-acme' } } });
  });
});
