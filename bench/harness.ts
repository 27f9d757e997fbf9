// What every benchmark needs: a migrated PostgreSQL (embedded in a temporary
// folder unless DATABASE_URL is set), the service in production mode as a
// child process, tokens, and a clean stop.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { signToken } from '../src/auth/tokens.ts';
import { openEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.ts';
import { ensureAppRole, runMigrations } from '../src/db/setup.ts';
import type { Role } from '../src/tenancy/roles.ts';
import { freePort } from '../test/helpers/local.ts';
import { postmasterPid } from './cpu.ts';

export const ROOT = path.resolve(import.meta.dirname, '..');
const SECRET = 'bench-secret-that-is-at-least-32-bytes-long';
/** The token settings the benchmark's servers verify with (the service's JWT_SECRET). */
export const BENCH_TOKEN_SETTINGS = { secret: SECRET, jwksUrl: undefined, issuer: undefined, audience: undefined };

/** `postgresPid`: the embedded server's postmaster (its CPU and its backends' are measured); undefined with DATABASE_URL. */
export type BenchDatabase = { ownerUrl: string; appUrl: string; dataDir: string; embedded: EmbeddedServer | undefined; postgresPid: number | undefined };

export async function startDatabase(): Promise<BenchDatabase> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'tenancy-bench-'));
  await chmod(dataDir, 0o755);
  const embedded = process.env.DATABASE_URL ? undefined : await openEmbeddedPostgres({ dataDir, port: await freePort() });
  const ownerUrl = process.env.DATABASE_URL ?? embedded!.ownerUrl;
  const appUrl = process.env.DATABASE_APP_URL ?? (await ensureAppRole(ownerUrl, dataDir));
  await runMigrations(ownerUrl, appUrl, () => {});
  return { ownerUrl, appUrl, dataDir, embedded, postgresPid: embedded ? postmasterPid(path.join(dataDir, 'pg')) : undefined };
}

/** Seeds with the owner connection; returns what `seed` returns. */
export async function withOwner<T>(db: BenchDatabase, seed: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(db.ownerUrl, { max: 1, onnotice: () => {} });
  try {
    return await seed(sql);
  } finally {
    await sql.end();
  }
}

/** Tokens with a tenant and, when given, a role claim (the limit server takes the role from it). */
export function tokens(principals: readonly { userId: string; tenantId: string; role?: Role }[]): Promise<string[]> {
  return Promise.all(principals.map((p) => signToken(BENCH_TOKEN_SETTINGS, { userId: p.userId, tenantId: p.tenantId, role: p.role, ttl: '2h' })));
}

export type Service = { origin: string; url: string; child: ChildProcess };

/**
 * The service in production mode (its production logging included: one JSON
 * line per request, written to bench/results/service.log). `env` adds settings.
 */
export async function startService(db: BenchDatabase, env: Record<string, string> = {}, nodeOptions: string[] = [], root = ROOT): Promise<Service> {
  const port = await freePort();
  await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
  const log = await open(path.join(ROOT, 'bench/results/service.log'), 'a');
  // `root`: another checkout's service (a baseline to measure a change against, in the same run).
  const child = spawn(process.execPath, [...nodeOptions, path.join(root, 'src/main.ts')], {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      DATABASE_URL: db.ownerUrl,
      DATABASE_APP_URL: db.appUrl,
      JWT_SECRET: SECRET,
      PORT: String(port),
      HOST: '127.0.0.1',
      TENANCY_DATA_DIR: db.dataDir,
      ...env,
    },
    stdio: ['ignore', log.fd, 'inherit'],
  });
  child.once('exit', () => void log.close());
  const origin = `http://127.0.0.1:${port}`;
  await waitFor(`${origin}/ready`, child);
  return { origin, url: `${origin}/graphql`, child };
}

/**
 * A reference server (bench/limit-server.ts, bench/plain-server.ts, the
 * PostGraphile peer): a Node process that prints a line once it listens.
 * `env` adds settings (DATABASE_APP_URL among them, to route it elsewhere).
 */
export async function startReference(db: BenchDatabase, file: string, env: Record<string, string> = {}, nodeOptions: string[] = []): Promise<Service> {
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeOptions, path.join(ROOT, file)], {
    env: { PATH: process.env.PATH, NODE_ENV: 'production', DATABASE_APP_URL: db.appUrl, JWT_SECRET: SECRET, PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)));
  });
  const origin = `http://127.0.0.1:${port}`;
  return { origin, url: origin, child };
}

export const PEER_DIR = 'bench/peers/postgraphile';

/** `npm run bench:peers`: PostGraphile 5 into its own folder (bench/peers/postgraphile), never the service's dependencies. */
export function ensurePeer(): void {
  if (existsSync(path.join(ROOT, PEER_DIR, 'node_modules/postgraphile/package.json'))) return;
  process.stdout.write(`installing the peer into ${PEER_DIR} (npm install --prefix)\n`);
  execFileSync('npm', ['install', '--prefix', path.join(ROOT, PEER_DIR), '--no-audit', '--no-fund', '--loglevel=error'], { stdio: 'inherit' });
}

async function waitFor(url: string, child: ChildProcess): Promise<void> {
  for (let attempt = 0; attempt < 600; attempt++) {
    if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}`);
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the service did not become ready');
}

export async function stop(service: Service | undefined): Promise<void> {
  if (!service || service.child.exitCode !== null) return;
  const exited = new Promise((resolve) => service.child.once('exit', resolve));
  service.child.kill('SIGTERM');
  await exited;
}

export async function stopAll(db: BenchDatabase, ...services: (Service | undefined)[]): Promise<void> {
  await Promise.all(services.map(stop));
  await db.embedded?.stop();
  await rm(db.dataDir, { recursive: true, force: true });
}

export async function graphql<T>(url: string, token: string, query: string, variables?: Record<string, unknown>): Promise<T> {
  return post<T>(url, token, JSON.stringify({ query, variables }));
}

/** POSTs a JSON body; the data of a response without errors, else throws. */
export async function post<T>(url: string, token: string, body: string): Promise<T> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body });
  const answer = (await response.json()) as { data?: T; errors?: unknown };
  if (!response.ok || answer.errors || !answer.data) throw new Error(`request failed: ${JSON.stringify(answer).slice(0, 300)}`);
  return answer.data;
}

/** A tenant of the cost benchmarks (pg-cost, node-cost): its ADMIN, the session Q2 reads and the one M1 writes to. */
export type CostPrincipal = { tenantId: string; userId: string; readSession: string; writeSession: string };

/**
 * `tenants` tenants of 50 agents, 2 sessions an agent and 10 tasks a session (the benchmark's shape, few tenants),
 * each with an ADMIN; vacuumed and analysed.
 */
export async function seedCostTenants(db: BenchDatabase, tenants: number): Promise<CostPrincipal[]> {
  return withOwner(db, async (sql) => {
    await sql.begin(async (tx) => {
      await tx`insert into app.tenants (slug, name, plan) select 'cost-' || lpad(i::text, 4, '0'), 'Cost ' || i, 'enterprise' from generate_series(1, ${tenants}) i`;
      await tx`insert into app.users (email) select 'admin@' || slug || '.test' from app.tenants`;
      await tx`insert into app.memberships (tenant_id, user_id, role)
               select t.id, u.id, 'ADMIN' from app.tenants t join app.users u on u.email = 'admin@' || t.slug || '.test'`;
      await tx`set local session_replication_role = replica`;
      await tx`insert into app.agents (tenant_id, name, kind, created_by, created_at)
               select m.tenant_id, 'agent ' || lpad(g::text, 2, '0'), 'assistant', m.user_id, '2026-01-01'::timestamptz + g * interval '1 second'
               from app.memberships m, generate_series(1, 50) g`;
      await tx`insert into app.sessions (tenant_id, agent_id, started_by, started_at)
               select a.tenant_id, a.id, a.created_by, a.created_at + g * interval '1 millisecond' from app.agents a, generate_series(1, 2) g`;
      await tx`insert into app.tasks (tenant_id, session_id, title, created_by, created_at)
               select s.tenant_id, s.id, 'task ' || lpad(g::text, 2, '0'), s.started_by, s.started_at + g * interval '1 microsecond'
               from app.sessions s, generate_series(1, 10) g`;
    });
    await sql`vacuum analyze`;
    return sql<CostPrincipal[]>`
      select t.id as "tenantId", m.user_id as "userId",
             (select s.id from app.sessions s where s.tenant_id = t.id order by s.started_at, s.id limit 1) as "readSession",
             (select s.id from app.sessions s where s.tenant_id = t.id order by s.started_at desc, s.id limit 1) as "writeSession"
      from app.tenants t join app.memberships m on m.tenant_id = t.id order by t.slug`;
  });
}
