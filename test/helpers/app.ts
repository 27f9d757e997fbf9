// The service as tests see it: createApp over a test database, listening on a
// loopback port and driven over HTTP (the path real clients take), with
// tokens signed by a test secret. `viaYoga` sends the same request through
// Yoga's own path (yoga.fetch), which serves what the fast path leaves to it.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { createTokenVerifier, signToken, type TokenSettings } from '../../src/auth/tokens.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import type { Sql } from '../../src/db/pool.ts';
import type { AuditServices } from '../../src/graphql/context.ts';
import type { RequestGuard } from '../../src/http/guard.ts';
import { encodeGlobalId } from '../../src/nodes/global-id.ts';
import { addMember, createTenant, createUser, type Plan } from '../../src/operator/repo.ts';
import { createApp, type App } from '../../src/server.ts';
import { ROLES, type Role } from '../../src/tenancy/roles.ts';

export const TEST_TOKENS: TokenSettings = {
  secret: 'test-secret-that-is-at-least-32-bytes-long',
  jwksUrl: undefined,
  issuer: undefined,
  audience: undefined,
};

export type TenancyOptions = Partial<Pick<Config, 'multiTenancy' | 'defaultTenant' | 'allowedTenants' | 'tenantHostSuffix' | 'http'>> & {
  /** Request guards; none unless given (fair share with test limits: test/helpers/fair-share.ts). */
  readonly guards?: readonly RequestGuard[];
  /** The audit signing key verifyAuditChain checks against; none unless given. */
  readonly audit?: AuditServices;
  /** How many callers' last principals the pipeline keeps (its default, 10,000, unless given). */
  readonly lastPrincipals?: number;
};

/** The settings a service started with NODE_ENV=test and nothing else would have. */
export const TEST_HTTP = loadConfig({ NODE_ENV: 'test' }).http;

export type GraphQLResponse = {
  status: number;
  body: {
    data?: Record<string, unknown> | null;
    errors?: { message: string; path?: string[]; extensions?: { code?: string; field?: string; reason?: string } }[];
  };
};

type RequestOptions = { token?: string; variables?: Record<string, unknown>; headers?: Record<string, string>; viaYoga?: boolean };

export type TestApp = {
  readonly app: App;
  /** Where the app listens (started on first use). */
  origin(): Promise<string>;
  request(query: string, options?: RequestOptions): Promise<GraphQLResponse>;
};

export function createTestApp(sql: Sql, tenancy: TenancyOptions = {}): TestApp {
  const { guards, audit, lastPrincipals, ...settings } = tenancy;
  const app = createApp({
    config: { multiTenancy: true, defaultTenant: undefined, allowedTenants: undefined, graphiql: false, tenantHostSuffix: undefined, http: TEST_HTTP, ...settings },
    sql,
    verifyToken: createTokenVerifier(TEST_TOKENS),
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    guards,
    audit,
    lastPrincipals,
  });
  let origin: Promise<string> | undefined;
  const listening = () =>
    (origin ??= new Promise<string>((resolve) => {
      const server = createServer((req, res) => void app.handle(req, res));
      server.unref(); // it ends with the test worker
      server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
    }));
  return {
    app,
    origin: listening,
    async request(query, options = {}) {
      const send = options.viaYoga ? (url: string, init: RequestInit) => app.yoga.fetch(url, init) : fetch;
      const response = await send(`${options.viaYoga ? 'http://tenancy.test' : await listening()}/graphql`, {
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

/** One agent named `agentName` of the tenant's MEMBER and an active session of it (owner connection): their global ids, what a task's write names. */
export async function insertWorkSession(owner: Sql, tenant: TestTenant, agentName: string): Promise<{ agentId: string; sessionId: string }> {
  const [agent] = await insertAgents(owner, tenant.id, tenant.members.MEMBER.userId, [agentName]);
  const session = await insertSession(owner, tenant.id, agent!, tenant.members.MEMBER.userId);
  return { agentId: encodeGlobalId('Agent', agent!), sessionId: encodeGlobalId('Session', session) };
}

/** Inserts an active session of `agentId` behind the API (owner connection), started by `startedBy`; its row id. */
export async function insertSession(owner: Sql, tenantId: string, agentId: string, startedBy: string): Promise<string> {
  const [row] = await owner<{ id: string }[]>`
    insert into app.sessions (tenant_id, agent_id, started_by) values (${tenantId}, ${agentId}, ${startedBy}) returning id`;
  return row!.id;
}
