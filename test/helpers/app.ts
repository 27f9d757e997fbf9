// The service as tests see it: createApp over a test database, driven through
// yoga.fetch, with tokens signed by a test secret.
import { pino } from 'pino';
import { createTokenVerifier, signToken, type TokenSettings } from '../../src/auth/tokens.ts';
import type { Config } from '../../src/config.ts';
import type { Sql } from '../../src/db/pool.ts';
import { addMember, createTenant, createUser, type Plan } from '../../src/operator/repo.ts';
import { createApp, type App } from '../../src/server.ts';
import { ROLES, type Role } from '../../src/tenancy/roles.ts';

export const TEST_TOKENS: TokenSettings = {
  secret: 'test-secret-that-is-at-least-32-bytes-long',
  jwksUrl: undefined,
  issuer: undefined,
  audience: undefined,
};

export type TenancyOptions = Partial<Pick<Config, 'multiTenancy' | 'defaultTenant' | 'allowedTenants'>>;

export type GraphQLResponse = {
  status: number;
  body: {
    data?: Record<string, unknown> | null;
    errors?: { message: string; path?: string[]; extensions?: { code?: string; field?: string } }[];
  };
};

export type TestApp = {
  readonly app: App;
  request(query: string, options?: { token?: string; variables?: Record<string, unknown>; headers?: Record<string, string> }): Promise<GraphQLResponse>;
};

export function createTestApp(sql: Sql, tenancy: TenancyOptions = {}): TestApp {
  const app = createApp({
    config: { multiTenancy: true, defaultTenant: undefined, allowedTenants: undefined, graphiql: false, ...tenancy },
    sql,
    verifyToken: createTokenVerifier(TEST_TOKENS),
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  });
  return {
    app,
    async request(query, options = {}) {
      const response = await app.yoga.fetch('http://tenancy.test/graphql', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...options.headers,
        },
        body: JSON.stringify({ query, variables: options.variables }),
      });
      return { status: response.status, body: (await response.json()) as GraphQLResponse['body'] };
    },
  };
}

export type Principal = { readonly tenantId: string; readonly tenantSlug: string; readonly userId: string; readonly role: Role; readonly token: string };
export type TestTenant = { readonly id: string; readonly slug: string; readonly members: Record<Role, Principal> };

/** A tenant with one member per role, each with a token for it. */
export async function createTestTenant(owner: Sql, slug: string, plan: Plan = 'enterprise'): Promise<TestTenant> {
  const tenant = await createTenant(owner, slug, `Tenant ${slug}`, plan);
  const members = {} as Record<Role, Principal>;
  for (const role of ROLES) {
    const user = await createUser(owner, `${role.toLowerCase()}@${slug}.test`, `${slug} ${role}`);
    await addMember(owner, tenant.id, user.id, role);
    members[role] = { tenantId: tenant.id, tenantSlug: slug, userId: user.id, role, token: await tokenFor(user.id, tenant.id) };
  }
  return { id: tenant.id, slug, members };
}

export function tokenFor(userId: string, tenantId?: string, extra: { role?: Role; ttl?: string } = {}): Promise<string> {
  return signToken(TEST_TOKENS, { userId, tenantId, role: extra.role, ttl: extra.ttl ?? '1h' });
}

export function codes(response: GraphQLResponse): (string | undefined)[] {
  return (response.body.errors ?? []).map((error) => error.extensions?.code);
}

/** Inserts agents behind the API (owner connection), created by `createdBy`. */
export async function insertAgents(owner: Sql, tenantId: string, createdBy: string, names: readonly string[]): Promise<string[]> {
  const rows = await owner<{ id: string }[]>`
    insert into app.agents ${owner(names.map((name) => ({ tenant_id: tenantId, created_by: createdBy, name, kind: 'assistant' })))}
    returning id`;
  return rows.map((row) => row.id);
}
