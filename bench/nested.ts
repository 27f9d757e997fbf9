// `npm run bench:nested`: the nested read at scale. 100 tenants x 10,000
// sessions (1M sessions); the newest 100 sessions of each tenant have 20 tasks.
// Times `sessions(first: 20, orderBy: NEWEST_FIRST) { agent, tasks(first: 20) }`
// over HTTP, sequentially, rotating over the tenants.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { graphql, ROOT, startDatabase, startService, stopAll, tokens as sign, withOwner, type Service } from './harness.ts';

const TENANTS = Number(process.env.BENCH_TENANTS ?? 100);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 10_000);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 300);
const QUERY = `{ sessions(first: 20, orderBy: NEWEST_FIRST) { edges { node { id status agent { id name }
  tasks(first: 20) { edges { node { id title status tokens } } } } } } }`;

const db = await startDatabase();
let service: Service | undefined;
try {
  const seeded = performance.now();
  const base = new Date().toISOString();
  const principals = await withOwner(db, async (sql) => {
    await sql`insert into app.tenants (slug, name, plan) select 'nested-' || i, 'Nested ' || i, 'enterprise' from generate_series(1, ${TENANTS}) i`;
    await sql`insert into app.users (email) select 'admin@nested-' || i || '.test' from generate_series(1, ${TENANTS}) i`;
    await sql`insert into app.memberships (tenant_id, user_id, role)
              select t.id, u.id, 'ADMIN' from app.tenants t join app.users u on lower(u.email) = 'admin@' || t.slug || '.test'`;
    await sql`insert into app.agents (tenant_id, name, kind, created_by)
              select m.tenant_id, 'agent ' || g, 'assistant', m.user_id from app.memberships m, generate_series(1, 10) g`;
    // Sessions start active (the database insists); all but the newest 100 of each tenant then end.
    await sql`insert into app.sessions (tenant_id, agent_id, started_by, started_at)
              select a.tenant_id, a.id, a.created_by, ${base}::timestamptz - (g * 10 + a.rank) * interval '1 second'
              from (select *, row_number() over (partition by tenant_id order by id) as rank from app.agents) a,
                   generate_series(1, ${SESSIONS / 10}) g`;
    await sql`update app.sessions set status = 'completed', ended_at = now() where started_at < ${base}::timestamptz - interval '110 seconds'`;
    await sql`insert into app.tasks (tenant_id, session_id, title, created_by, tokens)
              select s.tenant_id, s.id, 'task ' || g, s.started_by, g * 10
              from (select *, row_number() over (partition by tenant_id order by started_at desc) as n from app.sessions) s,
                   generate_series(1, 20) g
              where s.n <= 100`;
    await sql`vacuum analyze`;
    return sql<{ tenantId: string; userId: string }[]>`select tenant_id as "tenantId", user_id as "userId" from app.memberships`;
  });
  const seedSeconds = (performance.now() - seeded) / 1000;
  const tokens = await sign(principals);
  service = await startService(db);

  type Result = { sessions: { edges: { node: { tasks: { edges: unknown[] } } }[] } };
  for (const token of tokens.slice(0, 5)) {
    const data = await graphql<Result>(service.url, token, QUERY);
    if (data.sessions.edges.length !== 20 || data.sessions.edges.some((edge) => edge.node.tasks.edges.length !== 20)) {
      throw new Error('expected 20 sessions with 20 tasks each');
    }
  }
  for (let i = 0; i < 50; i++) await graphql(service.url, tokens[i % tokens.length]!, QUERY); // warm-up
  const times: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const started = performance.now();
    await graphql(service.url, tokens[i % tokens.length]!, QUERY);
    times.push(performance.now() - started);
  }
  times.sort((x, y) => x - y);
  const at = (q: number) => Number(times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(2));
  const result = {
    date: new Date().toISOString(),
    data: { tenants: TENANTS, sessionsPerTenant: SESSIONS, seedSeconds: Number(seedSeconds.toFixed(1)) },
    nested: { requests: REQUESTS, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1) },
  };
  await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(path.join(ROOT, 'bench/results/nested.json'), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(
    `\nnested 20 sessions x 20 tasks, ${TENANTS} tenants x ${SESSIONS} sessions (seeded in ${seedSeconds.toFixed(1)} s)\n` +
      `p50 ${result.nested.p50} ms  p95 ${result.nested.p95} ms  p99 ${result.nested.p99} ms  max ${result.nested.max} ms over ${REQUESTS} sequential requests\n`,
  );
} finally {
  await stopAll(db, service);
}
process.exit(process.exitCode ?? 0);
