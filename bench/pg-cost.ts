// `npm run bench:pg-cost`: where a request's PostgreSQL CPU goes, per backend
// and per statement shape, read from /proc/<pid>/schedstat (nanoseconds on a
// CPU, per process), so other load on the machine barely moves the figures.
//
// Part 1, shapes: on ONE connection of the request role, N transactions of
// each shape, written by hand (the true limit's, with and without the request
// check, and the service's as src/db/tenant-transaction.ts sends it), and the
// backend's CPU per transaction. The shapes' transactions interleaved one by one; the median of the rounds is printed.
//
// Part 2, systems: the service (src/main.ts, production mode, as `npm run
// bench` starts it) and the true limit with the check (bench/limit-server.ts,
// LIMIT_CHECK=1) driven in turn by bench/load.ts; every PostgreSQL process's
// CPU over the window, by what it is: request backends, the fair-share guard's
// connection (rate token leases, tenant lookups), the event hub's (outbox
// publishing), PostgreSQL's own processes (WAL writer, checkpointer,
// autovacuum...), exited backends; and function calls per request
// (pg_stat_user_functions). The service runs throughout (as in the benchmark),
// so its background work is seen in both windows.
//
// Part 0, statements: what the service sends for each case (in process,
// through the pool's onQuery), its third run (statements prepared, the
// operation's shape learned).
//
// Settings: PG_COST_TENANTS (20), PG_COST_N (1500) transactions a shape and
// round, PG_COST_ROUNDS (3), PG_COST_SECONDS (6) a load window,
// PG_COST_CONNECTIONS (32), PG_COST_CASES (Q1,Q2,M1), PG_COST_PARTS (statements,shapes,systems).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createPool } from '../src/db/pool.ts';
import { createTestApp, tokenFor } from '../test/helpers/app.ts';
import { ROOT, seedCostTenants, startDatabase, startReference, startService, stop, stopAll, tokens as sign, type CostPrincipal as Principal, type Service } from './harness.ts';
import type { LoadRequest, LoadResult } from './load.ts';
import { median, QUERIES, requestCheck, settings, statements, type Claims, type Kind } from './reference.ts';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const TENANTS = env('PG_COST_TENANTS', 20);
const N = env('PG_COST_N', 1500);
const ROUNDS = env('PG_COST_ROUNDS', 3);
const SECONDS = env('PG_COST_SECONDS', 6);
const CONNECTIONS = env('PG_COST_CONNECTIONS', 32);
const CASES = (process.env.PG_COST_CASES ?? 'Q1,Q2,M1').split(',') as Kind[];
const PARTS = (process.env.PG_COST_PARTS ?? 'statements,shapes,systems').split(',');

/** Nanoseconds on a CPU of one process so far (undefined once it has exited). */
function cpuNs(pid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return undefined;
  }
}

/** The postmaster's children and itself, with their CPU; `reaped`: what its exited children used (cutime + cstime), ns. */
function snapshot(postmaster: number): { cpu: Map<number, number>; reaped: number } {
  const cpu = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const fields = readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(name) !== postmaster && Number(fields[1]) !== postmaster) continue;
      const ns = cpuNs(Number(name));
      if (ns !== undefined) cpu.set(Number(name), ns);
    } catch {
      // gone meanwhile
    }
  }
  const fields = readFileSync(`/proc/${postmaster}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { cpu, reaped: (Number(fields[13]) + Number(fields[14])) * 10_000_000 };
}

function variables(kind: Kind, principal: Principal): Record<string, string> | undefined {
  if (kind === 'Q2') return { id: encodeGlobalId('Session', principal.readSession) };
  if (kind === 'M1') return { sessionId: encodeGlobalId('Session', principal.writeSession), title: 'cost task' };
  return undefined;
}

type Tx = postgres.ReservedSql;
/** A shape's statements for one transaction; undefined: the shape is not one of this case's. */
type Shape = (tx: Tx, claims: Claims, kind: Kind, principal: Principal, i: number) => Promise<unknown>[] | undefined;

/** BEGIN and the request check as the service sends them (src/db/tenant-transaction.ts). */
const serviceCheck = (tx: Tx, claims: Claims, i: number) => [
  tx`begin`,
  tx`select b.*, set_config('app.request_id', ${`req-${i}`}, true), set_config('statement_timeout', ${'9750'}, true),
            set_config('lock_timeout', ${'9750'}, true), set_config('client_connection_check_interval', '1000', true)
     from app_private.begin_request(${claims.tid}::uuid, ${null}, ${claims.sub}, ${claims.role}, ${null}) b`,
];
/** Q2's statements as the service sends them (Part 0), with the session's columns and the agent's read as given. */
const q2 = (tx: Tx, p: Principal, session: 'whole' | 'first group', agent: 'subquery' | 'join') => {
  const id = p.readSession;
  const sessionColumns = session === 'whole'
    ? 'id, agent_id as "agentId", status, tokens_used::float8 as "tokensUsed", started_at as "startedAt", ended_at as "endedAt", started_by as "startedBy", metadata'
    : 'id, agent_id as "agentId", status, tokens_used::float8 as "tokensUsed"';
  const agentText = agent === 'subquery'
    ? 'select id, name, kind, status from app.agents where id = (select agent_id from app.sessions where id = $1::uuid)'
    : 'select a.id, a.name, a.kind, a.status from app.agents a join app.sessions s on s.agent_id = a.id where s.id = $1::uuid';
  return [
    tx.unsafe(agentText, [id], { prepare: true }),
    tx.unsafe('select id, session_id as "sessionId", title, status, tokens::float8 as "tokens" from app.tasks where session_id = $1::uuid order by created_at asc, id asc limit $2', [id, 11], { prepare: true }),
    tx.unsafe(`select ${sessionColumns} from app.sessions where id = $1::uuid`, [id], { prepare: true }),
  ];
};

/** What each shape queues in one tick (one write); the service's as src/db/tenant-transaction.ts sends a read at once. */
const SHAPES: Record<string, Shape> = {
  'limit (set_config)': (tx, claims, kind, p) => [tx`begin`, settings(tx, claims), ...statements(kind, tx, body(kind, p)), tx`commit`],
  'limit+check': (tx, claims, kind, p) => [tx`begin`, requestCheck(tx, claims), ...statements(kind, tx, body(kind, p)), tx`commit`],
  service: (tx, claims, kind, p, i) => [
    tx`begin`,
    tx`select b.*, set_config('app.request_id', ${`req-${i}`}, true), set_config('statement_timeout', ${'9750'}, true),
              set_config('lock_timeout', ${'9750'}, true), set_config('client_connection_check_interval', '1000', true)
       from app_private.begin_request(${claims.tid}::uuid, ${null}, ${claims.sub}, ${claims.role}, ${null}) b`,
    ...statements(kind, tx, body(kind, p)),
    tx`commit`,
  ],
  'the service until 2026-12-02 (begin; 3 set local; check joined with set_config of request_id)': (tx, claims, kind, p, i) => [
    tx.unsafe('begin; set local statement_timeout = 9750; set local lock_timeout = 9750; set local client_connection_check_interval = 1000'),
    tx`select b.* from app_private.begin_request(${claims.tid}::uuid, ${null}, ${claims.sub}, ${claims.role}, ${null}) b, set_config('app.request_id', ${`req-${i}`}, true)`,
    ...statements(kind, tx, body(kind, p)),
    tx`commit`,
  ],
  'variant: no timeouts (check, request_id in its select list)': (tx, claims, kind, p, i) => [
    tx`begin`,
    tx`select b.*, set_config('app.request_id', ${`req-${i}`}, true) from app_private.begin_request(${claims.tid}::uuid, ${null}, ${claims.sub}, ${claims.role}, ${null}) b`,
    ...statements(kind, tx, body(kind, p)),
    tx`commit`,
  ],
  'Q2 until 2026-12-02: the session whole, its agent through a subquery': (tx, claims, kind, p, i) =>
    kind === 'Q2' ? [...serviceCheck(tx, claims, i), ...q2(tx, p, 'whole', 'subquery'), tx`commit`] : undefined,
  'Q2 as sent: the session by its first column group, its agent through a subquery': (tx, claims, kind, p, i) =>
    kind === 'Q2' ? [...serviceCheck(tx, claims, i), ...q2(tx, p, 'first group', 'subquery'), tx`commit`] : undefined,
  'Q2 variant: the session by its first column group, its agent through a join': (tx, claims, kind, p, i) =>
    kind === 'Q2' ? [...serviceCheck(tx, claims, i), ...q2(tx, p, 'first group', 'join'), tx`commit`] : undefined,
  'M1 as sent: the insert with every column, returning the whole row': (tx, claims, kind, p, i) =>
    kind === 'M1' ? [...serviceCheck(tx, claims, i), m1(tx, p, 'whole'), tx`commit`] : undefined,
  'M1 variant: the insert with every column, returning the first column group': (tx, claims, kind, p, i) =>
    kind === 'M1' ? [...serviceCheck(tx, claims, i), m1(tx, p, 'first group'), tx`commit`] : undefined,
};

/** M1's insert as the service sends it (Part 0; src/modules/tasks/repo.ts), returning the columns given. */
function m1(tx: Tx, p: Principal, returning: 'whole' | 'first group') {
  const columns = returning === 'whole'
    ? 'id, session_id as "sessionId", title, status, tokens::float8 as "tokens", created_at as "createdAt", updated_at as "updatedAt", assignee_id as "assigneeId", created_by as "createdBy", input, output'
    : 'id, session_id as "sessionId", title, status, tokens::float8 as "tokens"';
  return tx.unsafe(
    `insert into app.tasks (tenant_id, session_id, title, input, assignee_id, created_by) values (app.current_tenant_id(), $1, $2, $3::jsonb, $4, app.current_user_id()) returning ${columns}`,
    [p.writeSession, 'cost task', '{}', null],
    { prepare: true },
  );
}

function body(kind: Kind, principal: Principal) {
  return { variables: variables(kind, principal) };
}

/** Part 1: each shape's backend CPU per transaction, on one connection, interleaved rounds. */
async function shapes(principals: Principal[]): Promise<void> {
  const sql = postgres(db.appUrl, { max: 1, prepare: true, onnotice: () => {} });
  const releases: (() => void)[] = [];
  try {
    const tx = await sql.reserve();
    const [{ pid }] = (await tx<{ pid: number }[]>`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
    const claims = principals.map((p) => ({ sub: p.userId, tid: p.tenantId, role: 'ADMIN' }));
    const results: Record<string, number[]> = {};
    releases.push(() => tx.release());
    // One transaction of each shape in turn, each timed alone: the machine's speed drifts by tens of percent from
    // second to second here, and so it drifts under every shape alike. A round's figure is the shape's total over its
    // transactions; the order of the shapes rotates from transaction to transaction.
    const names = Object.keys(SHAPES);
    const run = async (kind: Kind, n: number) => {
      const spent = new Map<string, number>(names.map((name) => [name, 0]));
      for (let i = 0; i < n; i++) {
        const p = i % principals.length;
        for (let k = 0; k < names.length; k++) {
          const name = names[(i + k) % names.length]!;
          const queued = SHAPES[name]!(tx, claims[p]!, kind, principals[p]!, i);
          if (!queued) continue;
          const before = cpuNs(pid)!;
          const settled = await Promise.allSettled(queued);
          spent.set(name, spent.get(name)! + cpuNs(pid)! - before);
          const failed = settled.find((s) => s.status === 'rejected');
          if (failed) throw failed.reason;
        }
      }
      return new Map([...spent].filter(([, ns]) => ns > 0).map(([name, ns]) => [name, ns / n / 1000]));
    };
    for (const kind of CASES) await run(kind, 50); // prepared, cached
    for (let round = 0; round < ROUNDS; round++) {
      process.stderr.write(`shapes: round ${round + 1}\n`);
      for (const kind of CASES) {
        for (const [name, us] of await run(kind, N)) (results[`${kind} ${name}`] ??= []).push(us);
      }
    }
    process.stdout.write(`\nPart 1: PostgreSQL CPU per transaction, one connection, ${N} transactions x ${ROUNDS} rounds (median; the rounds in brackets)\n\n`);
    process.stdout.write('| case | shape | µs |\n| --- | --- | --- |\n');
    for (const [key, values] of Object.entries(results)) {
      const [kind, ...name] = key.split(' ');
      process.stdout.write(`| ${kind} | ${name.join(' ')} | ${median(values).toFixed(0)} (${values.map((v) => v.toFixed(0)).join(', ')}) |\n`);
    }
  } finally {
    for (const release of releases) release(); // a reserved connection would keep sql.end() waiting
    await sql.end();
  }
}

/** Part 0: the statements the service sends for each case, as its pool writes them. */
async function sent(principals: Principal[]): Promise<void> {
  const seen: string[] = [];
  const pool = createPool(db.appUrl, { max: 1, prepare: true, onQuery: (query) => seen.push(query.replace(/\s+/g, ' ').trim()) });
  try {
    const app = createTestApp(pool);
    const p = principals[0]!;
    const token = await tokenFor(p.userId, p.tenantId, { role: 'ADMIN' });
    process.stdout.write('\nPart 0: what the service sends (third run of each case; one line a statement)\n');
    for (const kind of CASES) {
      for (let run = 0; run < 3; run++) {
        seen.length = 0;
        const response = await app.request(QUERIES[kind], { token, variables: variables(kind, p) });
        if (response.body.errors) throw new Error(`${kind}: ${JSON.stringify(response.body.errors)}`);
      }
      process.stdout.write(`\n${kind}:\n${seen.map((query) => `  ${query}`).join('\n')}\n`);
    }
  } finally {
    await pool.end();
  }
}

/** What a PostgreSQL process is, from pg_stat_activity: the benchmark's request backends, the service's side connections, PostgreSQL's own. */
async function classify(): Promise<Map<number, string>> {
  const rows = await owner<{ pid: number; backend_type: string; application_name: string; query: string; own: boolean }[]>`
    select pid, backend_type, application_name, query, pid = pg_backend_pid() as own from pg_stat_activity`;
  const kinds = new Map<number, string>();
  for (const row of rows) {
    if (row.own) kinds.set(row.pid, 'this tool');
    else if (row.backend_type !== 'client backend') kinds.set(row.pid, `postgres: ${row.backend_type}`);
    else if (row.application_name === 'tenancy-events') kinds.set(row.pid, 'service: event hub (outbox publish)');
    else if (/take_request_tokens|resolve_request_tenants/.test(row.query)) kinds.set(row.pid, 'service: fair-share guard (leases, lookups)');
    else kinds.set(row.pid, `requests (${row.application_name || 'no name'})`);
  }
  return kinds;
}

type FunctionCalls = Map<string, { calls: number; selfMs: number }>;

async function functionCalls(): Promise<FunctionCalls> {
  const rows = await owner<{ name: string; calls: number; self: number }[]>`
    select schemaname || '.' || funcname as name, calls::int, self_time as self from pg_stat_user_functions`;
  return new Map(rows.map((row) => [row.name, { calls: row.calls, selfMs: row.self }]));
}

/** Part 2: each system under load; every PostgreSQL process's CPU per request, by what it is. */
async function systems(target: Service, principals: Principal[], tokens: string[]): Promise<void> {
  const limit = await startReference(db, 'bench/limit-server.ts', { LIMIT_CHECK: '1' });
  const postmaster = db.postgresPid!;
  try {
    const table: string[] = [];
    for (const kind of CASES) {
      for (const [name, system] of [['service', target], ['limit+check', limit]] as const) {
        const requests: LoadRequest[] = principals.map((p, i) => ({
          path: name === 'service' ? '/graphql' : `/${kind}`,
          body: JSON.stringify({ query: QUERIES[kind], variables: variables(kind, p) }),
          token: tokens[i]!,
        }));
        load(system.origin, requests, 2); // warm: statements prepared, leases and lookups made
        const perRound: Map<string, number>[] = [];
        let calls: Map<string, number> | undefined;
        for (let round = 0; round < ROUNDS; round++) {
          const before = snapshot(postmaster);
          const callsBefore = await functionCalls();
          const result = load(system.origin, requests, SECONDS);
          const after = snapshot(postmaster);
          const callsAfter = await functionCalls();
          if (result.errors + result.non2xx + result.bodyErrors > 0) throw new Error(`${name} ${kind}: errors under load: ${result.firstError}`);
          const kinds = await classify();
          const shares = new Map<string, number>();
          for (const [pid, ns] of after.cpu) {
            const spent = ns - (before.cpu.get(pid) ?? 0);
            const what = pid === postmaster ? 'postgres: postmaster' : (kinds.get(pid) ?? 'postgres: other');
            shares.set(what, (shares.get(what) ?? 0) + spent / result.total / 1000);
          }
          shares.set('exited backends', Math.max(0, after.reaped - before.reaped) / result.total / 1000);
          shares.set('TOTAL', ([...shares.values()].reduce((a, b) => a + b, 0)));
          perRound.push(shares);
          calls = new Map();
          for (const [fn, { calls: n }] of callsAfter) {
            const delta = n - (callsBefore.get(fn)?.calls ?? 0);
            if (delta > 0) calls.set(fn, delta / result.total);
          }
        }
        const keys = [...new Set(perRound.flatMap((m) => [...m.keys()]))].sort();
        for (const key of keys) {
          const values = perRound.map((m) => m.get(key) ?? 0);
          if (median(values) < 0.5 && key !== 'TOTAL') continue;
          table.push(`| ${kind} | ${name} | ${key} | ${median(values).toFixed(0)} (${values.map((v) => v.toFixed(0)).join(', ')}) |`);
        }
        const called = [...(calls ?? new Map<string, number>())].filter(([, n]) => n >= 0.001).map(([fn, n]) => `${fn.replace(/^app(_private)?\./, '')} ${n.toFixed(3)}`);
        table.push(`| ${kind} | ${name} | function calls per request | ${called.join(', ')} |`);
      }
    }
    process.stdout.write(`\nPart 2: PostgreSQL CPU per request under load (${CONNECTIONS} connections, ${SECONDS} s x ${ROUNDS} rounds; µs, median (rounds))\n\n`);
    process.stdout.write(`| case | system | process | µs/request |\n| --- | --- | --- | --- |\n${table.join('\n')}\n`);
  } finally {
    await stop(limit);
  }
}

function load(origin: string, requests: LoadRequest[], seconds: number): LoadResult {
  const spec = JSON.stringify({ origin, requests, connections: CONNECTIONS, seconds });
  return JSON.parse(execFileSync(process.execPath, [path.join(ROOT, 'bench/load.ts')], { input: spec, encoding: 'utf8', maxBuffer: 1 << 20 })) as LoadResult;
}

const db = await startDatabase();
const owner = postgres(db.ownerUrl, { max: 1, onnotice: () => {} });
let service: Service | undefined;
try {
  await owner`alter system set track_functions = 'pl'`;
  await owner`select pg_reload_conf()`;
  const principals = await seedCostTenants(db, TENANTS);
  const tokens = await sign(principals.map((p) => ({ ...p, role: 'ADMIN' as const })));
  process.stderr.write(`seeded ${principals.length} tenants\n`);
  if (PARTS.includes('statements')) await sent(principals);
  if (PARTS.includes('shapes')) await shapes(principals);
  if (PARTS.includes('systems')) {
    service = await startService(db);
    await systems(service, principals, tokens);
  }
} finally {
  await owner.end();
  await stopAll(db, service);
}
process.exit(process.exitCode ?? 0);
