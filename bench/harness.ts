// What every benchmark needs: a migrated PostgreSQL (embedded in a temporary
// folder unless DATABASE_URL is set), the service in production mode as a
// child process, tokens, and a clean stop.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { signToken } from '../src/auth/tokens.ts';
import { openEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.ts';
import { ensureAppRole, runMigrations } from '../src/db/setup.ts';
import { freePort } from '../test/helpers/local.ts';

export const ROOT = path.resolve(import.meta.dirname, '..');
const SECRET = 'bench-secret-that-is-at-least-32-bytes-long';

export type BenchDatabase = { ownerUrl: string; appUrl: string; dataDir: string; embedded: EmbeddedServer | undefined };

export async function startDatabase(): Promise<BenchDatabase> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'tenancy-bench-'));
  await chmod(dataDir, 0o755);
  const embedded = process.env.DATABASE_URL ? undefined : await openEmbeddedPostgres({ dataDir, port: await freePort() });
  const ownerUrl = process.env.DATABASE_URL ?? embedded!.ownerUrl;
  const appUrl = process.env.DATABASE_APP_URL ?? (await ensureAppRole(ownerUrl, dataDir));
  await runMigrations(ownerUrl, appUrl, () => {});
  return { ownerUrl, appUrl, dataDir, embedded };
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

export function tokens(principals: readonly { userId: string; tenantId: string }[]): Promise<string[]> {
  const settings = { secret: SECRET, jwksUrl: undefined, issuer: undefined, audience: undefined };
  return Promise.all(principals.map((p) => signToken(settings, { userId: p.userId, tenantId: p.tenantId, ttl: '2h' })));
}

export type Service = { url: string; child: ChildProcess };

export async function startService(db: BenchDatabase): Promise<Service> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'src/main.ts')], {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      DATABASE_URL: db.ownerUrl,
      DATABASE_APP_URL: db.appUrl,
      JWT_SECRET: SECRET,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      TENANCY_DATA_DIR: db.dataDir,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 300; attempt++) {
    if (await fetch(`${base}/ready`).then((r) => r.ok, () => false)) return { url: `${base}/graphql`, child };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the service did not become ready');
}

export async function stopAll(db: BenchDatabase, service: Service | undefined): Promise<void> {
  if (service) {
    service.child.kill('SIGTERM');
    await new Promise((resolve) => service.child.once('exit', resolve));
  }
  await db.embedded?.stop();
  await rm(db.dataDir, { recursive: true, force: true });
}

export async function graphql<T>(url: string, token: string, query: string): Promise<T> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query }) });
  const body = (await response.json()) as { data?: T; errors?: unknown };
  if (!response.ok || body.errors || !body.data) throw new Error(`request failed: ${JSON.stringify(body).slice(0, 300)}`);
  return body.data;
}
