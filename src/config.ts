// Every environment variable the service reads, parsed and validated once.
import { createPrivateKey } from 'node:crypto';
import path from 'node:path';
import type { SubscriptionSettings } from './subscriptions/engine.ts';
import { isSlug } from './tenancy/identifiers.ts';

export type Config = {
  readonly nodeEnv: 'development' | 'production' | 'test';
  readonly production: boolean;
  readonly host: string;
  readonly port: number;
  readonly logLevel: string;
  /** Owner connection (migrations, CLI). Absent: embedded PostgreSQL in dataDir. */
  readonly databaseUrl: string | undefined;
  /** Request-role connection. Absent: derived from databaseUrl with the app role. */
  readonly databaseAppUrl: string | undefined;
  /** Live events' LISTEN connection: direct to PostgreSQL, never through PgBouncer in transaction mode. Absent: the request role's URL. */
  readonly databaseListenUrl: string | undefined;
  /** The request role the service creates and keeps for this database (without databaseAppUrl). Absent: `<database>_app`. */
  readonly databaseAppRole: string | undefined;
  readonly dataDir: string;
  readonly embeddedPgPort: number;
  readonly dbPoolMax: number;
  /** HTTP worker processes (node:cluster) sharing the port; 1: the server runs in the main process. */
  readonly workers: number;
  /** false behind PgBouncer in transaction mode. */
  readonly dbPrepare: boolean;
  readonly jwtSecret: string | undefined;
  readonly jwksUrl: string | undefined;
  readonly jwtIssuer: string | undefined;
  readonly jwtAudience: string | undefined;
  /** Longest lifetime (exp - iat) a token may have, in seconds; tokens without iat are refused. */
  readonly jwtMaxTtlSeconds: number;
  readonly multiTenancy: boolean;
  readonly defaultTenant: string | undefined;
  readonly allowedTenants: readonly string[] | undefined;
  readonly demoData: boolean;
  readonly graphiql: boolean;
  readonly shutdownTimeoutMs: number;
  /** One deadline per request: the wait for a connection, every statement and the commit (README: Failure behaviour). */
  readonly requestTimeoutMs: number;
  /** How long start-up keeps trying to reach the database before it exits. */
  readonly dbConnectTimeoutMs: number;
  /** An active session with no activity for this long is ended (status failed), its quota released. */
  readonly sessionIdleTimeoutSeconds: number;
  /** What one request may cost, on every transport (README: Limits). */
  readonly http: HttpSettings;
  /** `.example.com`: the host `acme.example.com` selects the tenant `acme` (like X-Tenant-ID). */
  readonly tenantHostSuffix: string | undefined;
  /** Each tenant's share of the pool and of the request rate (README: Fair share and rate limits). */
  readonly fairShare: FairShareSettings;
  /** The audit log's signing key, checkpoints and retention (README: Audit log). */
  readonly audit: AuditSettings;
};

export type AuditSettings = {
  /** An Ed25519 private key in PEM (PKCS#8), or a file holding one; neither: generated in dataDir outside production. */
  readonly signingKey: string | undefined;
  readonly signingKeyFile: string | undefined;
  /** How often each worker signs the chain heads that moved: the tamper window of the newest events. */
  readonly checkpointIntervalSeconds: number;
  /** Events one retention purge deletes under one anchor. */
  readonly purgeBatch: number;
};

export type HttpSettings = {
  readonly maxBodyBytes: number;
  readonly maxResponseBytes: number;
  readonly limits: {
    readonly documentBytes: number;
    readonly tokens: number;
    readonly depth: number;
    readonly aliases: number;
    readonly directives: number;
    readonly fields: number;
    readonly cost: number;
  };
  readonly documentCacheBytes: number;
  readonly documentCacheEntries: number;
  readonly introspection: boolean;
  readonly suggestions: boolean;
  /** Origins browsers may call from; `*` any. */
  readonly corsOrigins: readonly string[];
  /** Live events, per process (README: Live events). */
  readonly subscriptions: SubscriptionSettings;
};

export type FairShareSettings = {
  /** Pool connections (request lanes) a tenant may hold at once, per process. */
  readonly maxConcurrency: number;
  /** A tenant's requests waiting for a lane; past it RATE_LIMITED. */
  readonly queueMax: number;
  /** How long a request waits for a lane before RATE_LIMITED. */
  readonly queueTimeoutMs: number;
  /** Request rates per tenant and per API key, from the plan (operators override them). */
  readonly rateLimits: boolean;
  /** DB_POOL_MAX: the slots all tenants share in this process. */
  readonly poolSize: number;
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

function text(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
  }
  return value;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = text(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['true', '1', 'yes', 'on'].includes(raw)) return true;
  if (['false', '0', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false (got "${raw}")`);
}

function url(env: Env, name: string, protocols: readonly string[]): string | undefined {
  const raw = text(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a URL`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must use ${protocols.join(' or ')} (got "${parsed.protocol}")`);
  }
  return raw;
}


const MiB = 1 << 20;

/** Example secrets published in this repository and its docs: never a production key. */
const KNOWN_SECRETS = /change-this|changeme|test-secret-that-is|development-secret/i;

/** A time span: seconds, or a number with s, m, h or d. */
function duration(env: Env, name: string, fallbackSeconds: number): number {
  const raw = text(env, name);
  if (raw === undefined) return fallbackSeconds;
  const match = /^(\d+)\s*(s|m|h|d)?$/.exec(raw);
  const seconds = match ? Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? 's') as 's' | 'm' | 'h' | 'd'] : NaN;
  if (!(seconds >= 60 && seconds <= 366 * 86400)) {
    throw new ConfigError(`${name} must be a time span from 1m to 366d, such as 3600, 90m, 24h or 30d (got "${raw}")`);
  }
  return seconds;
}

/** Demo data signs tokens into GraphiQL's tabs: never in production. */
function demoData(env: Env, production: boolean): boolean {
  const on = boolean(env, 'DEMO_DATA', !production);
  if (on && production) throw new ConfigError('DEMO_DATA cannot be on when NODE_ENV=production (it embeds signed tokens in GraphiQL)');
  return on;
}

function httpSettings(env: Env, production: boolean): HttpSettings {
  const corsRaw = text(env, 'CORS_ORIGINS');
  const wsConnections = integer(env, 'WS_MAX_CONNECTIONS', 2_000, 0, 1_000_000);
  const corsOrigins = corsRaw === undefined ? (production ? [] : ['*']) : corsRaw.split(',').map((origin) => origin.trim()).filter((origin) => origin !== '');
  for (const origin of corsOrigins) {
    if (origin !== '*' && !/^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$/i.test(origin)) {
      throw new ConfigError(`CORS_ORIGINS must list origins such as https://app.example.com, or * (got "${origin}")`);
    }
  }
  return {
    // Above the largest input the schema accepts (1 MiB of context content, up to 4 bytes a character, JSON-escaped).
    maxBodyBytes: integer(env, 'MAX_BODY_BYTES', 5 * MiB, 1024, 64 * MiB),
    maxResponseBytes: integer(env, 'MAX_RESPONSE_BYTES', 10 * MiB, 1024, 256 * MiB),
    limits: {
      documentBytes: integer(env, 'MAX_DOCUMENT_BYTES', 64 * 1024, 256, 4 * MiB),
      tokens: integer(env, 'MAX_TOKENS', 5_000, 100, 1_000_000),
      depth: integer(env, 'MAX_DEPTH', 20, 2, 1_000),
      aliases: integer(env, 'MAX_ALIASES', 30, 0, 100_000),
      directives: integer(env, 'MAX_DIRECTIVES', 50, 0, 100_000),
      fields: integer(env, 'MAX_FIELDS', 1_000, 10, 1_000_000),
      cost: integer(env, 'MAX_COST', 25_000, 10, 100_000_000),
    },
    documentCacheBytes: integer(env, 'DOCUMENT_CACHE_BYTES', 32 * MiB, 0, 4096 * MiB),
    documentCacheEntries: integer(env, 'DOCUMENT_CACHE_ENTRIES', 1_000, 1, 1_000_000),
    introspection: boolean(env, 'INTROSPECTION', !production),
    suggestions: boolean(env, 'SUGGESTIONS', !production),
    corsOrigins,
    subscriptions: {
      perTenant: integer(env, 'SUBSCRIPTIONS_PER_TENANT', 200, 1, 1_000_000),
      perPrincipal: integer(env, 'SUBSCRIPTIONS_PER_PRINCIPAL', 100, 1, 1_000_000),
      total: integer(env, 'SUBSCRIPTIONS_MAX', 10_000, 1, 1_000_000),
      buffer: integer(env, 'SUBSCRIPTION_BUFFER', 100, 1, 100_000),
      wsConnections,
      wsConnectionsPerTenant: integer(env, 'WS_MAX_CONNECTIONS_PER_TENANT', Math.max(1, Math.ceil(wsConnections / 10)), 1, 1_000_000),
      wsInitTimeoutMs: integer(env, 'WS_INIT_TIMEOUT_MS', 3_000, 100, 60_000),
    },
  };
}

function hostSuffix(env: Env): string | undefined {
  const suffix = text(env, 'TENANT_HOST_SUFFIX')?.toLowerCase();
  if (suffix !== undefined && !/^\.[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(suffix)) {
    throw new ConfigError(`TENANT_HOST_SUFFIX must be a domain suffix starting with a dot, such as .example.com (got "${suffix}")`);
  }
  return suffix;
}

function fairShareSettings(env: Env, dbPoolMax: number): FairShareSettings {
  return {
    maxConcurrency: integer(env, 'TENANT_MAX_CONCURRENCY', Math.max(1, Math.floor(dbPoolMax / 2)), 1, dbPoolMax),
    queueMax: integer(env, 'TENANT_QUEUE_MAX', 100, 0, 100_000),
    // By default a request may wait as long as its deadline lets it.
    queueTimeoutMs: integer(env, 'TENANT_QUEUE_TIMEOUT_MS', integer(env, 'REQUEST_TIMEOUT_MS', 10_000, 100, 600_000), 1, 600_000),
    rateLimits: boolean(env, 'RATE_LIMITS', true),
    poolSize: dbPoolMax,
  };
}

function auditSettings(env: Env): AuditSettings {
  const signingKey = text(env, 'AUDIT_SIGNING_KEY')?.replaceAll('\\n', '\n');
  const signingKeyFile = text(env, 'AUDIT_SIGNING_KEY_FILE');
  if (signingKey !== undefined && signingKeyFile !== undefined) {
    throw new ConfigError('AUDIT_SIGNING_KEY and AUDIT_SIGNING_KEY_FILE are exclusive: set one');
  }
  if (signingKey !== undefined) {
    let type: string | undefined;
    try {
      type = createPrivateKey(signingKey).asymmetricKeyType;
    } catch {
      type = undefined;
    }
    if (type !== 'ed25519') {
      throw new ConfigError('AUDIT_SIGNING_KEY must be an Ed25519 private key in PEM (openssl genpkey -algorithm ed25519)');
    }
  }
  return {
    signingKey,
    signingKeyFile: signingKeyFile === undefined ? undefined : path.resolve(signingKeyFile),
    checkpointIntervalSeconds: duration(env, 'AUDIT_CHECKPOINT_INTERVAL', 60),
    purgeBatch: integer(env, 'AUDIT_PURGE_BATCH', 1_000, 1, 10_000),
  };
}

export function loadConfig(env: Env = process.env): Config {
  const nodeEnvRaw = text(env, 'NODE_ENV') ?? 'development';
  if (nodeEnvRaw !== 'development' && nodeEnvRaw !== 'production' && nodeEnvRaw !== 'test') {
    throw new ConfigError(`NODE_ENV must be development, production or test (got "${nodeEnvRaw}")`);
  }
  const production = nodeEnvRaw === 'production';

  const jwtSecret = text(env, 'JWT_SECRET');
  if (jwtSecret !== undefined && Buffer.byteLength(jwtSecret) < 32) {
    throw new ConfigError('JWT_SECRET must be at least 32 bytes (HS256 needs a 256-bit key)');
  }
  const jwksUrl = url(env, 'JWKS_URL', nodeEnvRaw === 'development' ? ['https:', 'http:'] : ['https:']);
  if (jwtSecret !== undefined && jwksUrl !== undefined) {
    throw new ConfigError('JWT_SECRET and JWKS_URL are exclusive: set one');
  }
  if (production && jwtSecret === undefined && jwksUrl === undefined) {
    throw new ConfigError('JWT_SECRET or JWKS_URL is required when NODE_ENV=production');
  }
  if (production && jwtSecret !== undefined && KNOWN_SECRETS.test(jwtSecret)) {
    throw new ConfigError('JWT_SECRET is a published example value: generate one (openssl rand -base64 48)');
  }
  if (production && jwksUrl !== undefined && (text(env, 'JWT_ISSUER') === undefined || text(env, 'JWT_AUDIENCE') === undefined)) {
    throw new ConfigError('JWT_ISSUER and JWT_AUDIENCE are required with JWKS_URL when NODE_ENV=production (an identity provider signs tokens for other audiences too)');
  }

  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  const databaseAppUrl = url(env, 'DATABASE_APP_URL', ['postgres:', 'postgresql:']);
  if (databaseAppUrl !== undefined && databaseUrl === undefined) {
    throw new ConfigError('DATABASE_APP_URL needs DATABASE_URL (the owner connection for migrations)');
  }
  const databaseAppRole = text(env, 'DATABASE_APP_ROLE');
  if (databaseAppRole !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(databaseAppRole)) {
    throw new ConfigError(`DATABASE_APP_ROLE must be a role name of lowercase letters, digits and _, at most 63 characters (got "${databaseAppRole}")`);
  }
  const databaseListenUrl = url(env, 'DATABASE_LISTEN_URL', ['postgres:', 'postgresql:']);
  if (databaseListenUrl !== undefined && databaseUrl === undefined) {
    throw new ConfigError('DATABASE_LISTEN_URL needs DATABASE_URL (the embedded database is listened to directly)');
  }
  if (databaseAppRole !== undefined && databaseAppUrl !== undefined) {
    throw new ConfigError('DATABASE_APP_ROLE and DATABASE_APP_URL are exclusive: the role is the one DATABASE_APP_URL connects as');
  }

  const multiTenancy = boolean(env, 'MULTI_TENANCY_ENABLED', true);
  const defaultTenant = text(env, 'DEFAULT_TENANT');
  if (defaultTenant !== undefined && !isSlug(defaultTenant)) {
    throw new ConfigError(`DEFAULT_TENANT must be a tenant slug (got "${defaultTenant}")`);
  }
  if (!multiTenancy && defaultTenant === undefined) {
    throw new ConfigError('DEFAULT_TENANT is required when MULTI_TENANCY_ENABLED=false');
  }
  const allowedRaw = text(env, 'ALLOWED_TENANTS');
  const allowedTenants = allowedRaw?.split(',').map((slug) => slug.trim()).filter((slug) => slug !== '');
  for (const slug of allowedTenants ?? []) {
    if (!isSlug(slug)) throw new ConfigError(`ALLOWED_TENANTS has an invalid slug "${slug}"`);
  }

  const dbPoolMax = integer(env, 'DB_POOL_MAX', 10, 1, 1000);
  const logLevel = text(env, 'LOG_LEVEL') ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "${logLevel}")`);
  }

  return {
    nodeEnv: nodeEnvRaw,
    production,
    host: text(env, 'HOST') ?? '0.0.0.0',
    port: integer(env, 'PORT', 4000, 0, 65535),
    logLevel,
    databaseUrl,
    databaseAppUrl,
    databaseListenUrl,
    databaseAppRole,
    dataDir: path.resolve(text(env, 'TENANCY_DATA_DIR') ?? '.tenancy-data'),
    embeddedPgPort: integer(env, 'EMBEDDED_PG_PORT', 54329, 1, 65535),
    dbPoolMax,
    workers: integer(env, 'WORKERS', 1, 1, 64),
    dbPrepare: boolean(env, 'DB_PREPARE', true),
    jwtSecret,
    jwksUrl,
    jwtIssuer: text(env, 'JWT_ISSUER'),
    jwtAudience: text(env, 'JWT_AUDIENCE'),
    jwtMaxTtlSeconds: duration(env, 'JWT_MAX_TTL', production ? 24 * 3600 : 31 * 24 * 3600),
    multiTenancy,
    defaultTenant,
    allowedTenants: allowedTenants && allowedTenants.length > 0 ? allowedTenants : undefined,
    demoData: demoData(env, production),
    graphiql: boolean(env, 'GRAPHIQL', !production),
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    requestTimeoutMs: integer(env, 'REQUEST_TIMEOUT_MS', 10_000, 100, 600_000),
    dbConnectTimeoutMs: integer(env, 'DB_CONNECT_TIMEOUT', 10, 1, 3600) * 1000,
    sessionIdleTimeoutSeconds: duration(env, 'SESSION_IDLE_TIMEOUT', 3600),
    http: httpSettings(env, production),
    tenantHostSuffix: hostSuffix(env),
    fairShare: fairShareSettings(env, dbPoolMax),
    audit: auditSettings(env),
  };
}
