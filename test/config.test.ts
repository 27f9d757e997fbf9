// Configuration: defaults, and a clear message naming each bad variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

describe('loadConfig', () => {
  it('has working defaults for development', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ port: 4000, multiTenancy: true, demoData: true, graphiql: true, production: false, databaseUrl: undefined });
    expect(config.dataDir.endsWith('.tenancy-data')).toBe(true);
  });

  it('turns GraphiQL and the demo off in production', () => {
    const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) });
    expect(config).toMatchObject({ graphiql: false, demoData: false, production: true });
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ NODE_ENV: 'staging' }, 'NODE_ENV'],
    [{ NODE_ENV: 'production' }, 'JWT_SECRET or JWKS_URL'],
    [{ JWT_SECRET: 'short' }, 'JWT_SECRET'],
    [{ JWT_SECRET: 'x'.repeat(32), JWKS_URL: 'https://idp.example/jwks' }, 'JWT_SECRET and JWKS_URL'],
    [{ JWKS_URL: 'not a url' }, 'JWKS_URL'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ DATABASE_APP_URL: 'postgres://app@db/x' }, 'DATABASE_APP_URL'],
    [{ MULTI_TENANCY_ENABLED: 'maybe' }, 'MULTI_TENANCY_ENABLED'],
    [{ MULTI_TENANCY_ENABLED: 'false' }, 'DEFAULT_TENANT'],
    [{ DEFAULT_TENANT: 'Bad Slug' }, 'DEFAULT_TENANT'],
    [{ ALLOWED_TENANTS: 'acme,Not Ok' }, 'ALLOWED_TENANTS'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ DB_POOL_MAX: '0' }, 'DB_POOL_MAX'],
  ])('refuses %o naming %s', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(name);
  });

  it('gives each tenant half the pool by default, at most the pool', () => {
    expect(loadConfig({}).fairShare).toEqual({ maxConcurrency: 5, queueMax: 100, queueTimeoutMs: 10_000, rateLimits: true, poolSize: 10 });
    expect(loadConfig({ REQUEST_TIMEOUT_MS: '3000' }).fairShare.queueTimeoutMs).toBe(3000);
    expect(loadConfig({ DB_POOL_MAX: '1' }).fairShare.maxConcurrency).toBe(1);
    expect(loadConfig({ DB_POOL_MAX: '40', TENANT_MAX_CONCURRENCY: '8', RATE_LIMITS: 'false' }).fairShare).toMatchObject({ maxConcurrency: 8, rateLimits: false, poolSize: 40 });
    expect(() => loadConfig({ TENANT_MAX_CONCURRENCY: '11' })).toThrow(/TENANT_MAX_CONCURRENCY must be a whole number from 1 to 10/);
    expect(() => loadConfig({ TENANT_QUEUE_TIMEOUT_MS: '0' })).toThrow(/TENANT_QUEUE_TIMEOUT_MS/);
  });

  it('bounds live events: subscriptions per principal, per tenant, per process, the buffer and the sockets, each validated', () => {
    expect(loadConfig({}).http.subscriptions).toEqual({ perPrincipal: 100, perTenant: 200, total: 10_000, buffer: 100, wsConnections: 2_000, wsConnectionsPerTenant: 200, wsInitTimeoutMs: 3_000 });
    expect(loadConfig({ WS_MAX_CONNECTIONS: '50' }).http.subscriptions.wsConnectionsPerTenant).toBe(5); // a tenth of the process's sockets unless set
    expect(() => loadConfig({ WS_MAX_CONNECTIONS_PER_TENANT: '0' })).toThrow(/WS_MAX_CONNECTIONS_PER_TENANT/);
    expect(loadConfig({ SUBSCRIPTIONS_PER_PRINCIPAL: '5', SUBSCRIPTIONS_PER_TENANT: '50', SUBSCRIPTIONS_MAX: '500' }).http.subscriptions).toMatchObject({ perPrincipal: 5, perTenant: 50, total: 500 });
    for (const name of ['SUBSCRIPTIONS_PER_PRINCIPAL', 'SUBSCRIPTIONS_PER_TENANT', 'SUBSCRIPTIONS_MAX', 'SUBSCRIPTION_BUFFER']) {
      expect(() => loadConfig({ [name]: '0' }), name).toThrow(new RegExp(`${name} must be a whole number from 1 to`));
      expect(() => loadConfig({ [name]: '1e9' }), name).toThrow(ConfigError);
    }
  });

  it('parses the tenancy settings', () => {
    const config = loadConfig({ MULTI_TENANCY_ENABLED: 'false', DEFAULT_TENANT: 'acme', ALLOWED_TENANTS: ' acme , globex ,' });
    expect(config).toMatchObject({ multiTenancy: false, defaultTenant: 'acme', allowedTenants: ['acme', 'globex'] });
  });
});
