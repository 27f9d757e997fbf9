// The database fails under load and the service rides through (DESIGN.md
// invariant 12): a backend terminated, pg_ctl restart -m fast, a stop, kill -9
// of the postmaster, a frozen server (SIGSTOP), a row lock held past the
// deadline, connection slots exhausted. The process never exits, requests in
// flight answer 503 UNAVAILABLE with Retry-After and none hangs, /ready turns
// 503 within a second and 200 within two of the database accepting again, and
// the pool keeps every connection. The real service (its event hub, fair-share
// guard and sweeps around the pool) rides through the same faults, its live
// streams told RESYNC; the audit and idle-session sweeps fail quietly while
// the database is away and work again once it is back. One PostgreSQL of this
// file's own.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import postgres from 'postgres';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { createPool, poolState, type Sql } from '../src/db/pool.ts';
import { auditKeyFromPem, generateAuditKeyPem } from '../src/modules/audit-chain/keys.ts';
import { startAuditSweep } from '../src/modules/audit-chain/signing.ts';
import { startIdleSessionSweep } from '../src/modules/sessions/idle-sweep.ts';
import { createTestApp, createTestTenant, insertAgents, TEST_TOKENS, type TestApp, type TestTenant } from './helpers/app.ts';
import { setRequestRates } from './helpers/fair-share.ts';
import { startFaultServer, type FaultServer } from './helpers/fault-postgres.ts';
import { sse, type LiveResult } from './helpers/live.ts';
import { pollReadiness, startLoad, tally, timed, type Answer } from './helpers/load.ts';
import { startServer, type ServerProcess } from './helpers/process.ts';

const TIMEOUT_MS = 2_000;
const POOL_MAX = 4;

// The service runs in this process: on a machine busy with the rest of the suite its timers fire
// late by as much as the event loop lags, so every bound below allows for the lag measured meanwhile.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
const lag = () => loopDelay.max / 1e6;
beforeEach(() => loopDelay.reset());

let server: FaultServer;
let owner: Sql;
let pool: Sql;
let api: TestApp;
let origin: string;
let tenant: TestTenant;
let agentId: string;
let agentNodeId: string;

beforeAll(async () => {
  server = await startFaultServer({ settings: { log_connections: 'on' } });
  owner = postgres(server.ownerUrl, { max: 2, onnotice: () => {} });
  pool = createPool(server.appUrl, { max: POOL_MAX, prepare: true, requestTimeoutMs: TIMEOUT_MS });
  api = createTestApp(pool);
  origin = await api.origin();
  tenant = await createTestTenant(owner, 'faults');
  await insertAgents(owner, tenant.id, tenant.members.ADMIN.userId, ['steady', 'second']);
  agentId = (await owner<{ id: string }[]>`select id from app.agents where name = 'steady'`)[0]!.id;
  const { body } = await api.request('{ agents(first: 5) { edges { node { id name } } } }', { token: tenant.members.VIEWER.token });
  agentNodeId = (body.data!.agents as { edges: { node: { id: string; name: string } }[] }).edges.find((edge) => edge.node.name === 'steady')!.node.id;
}, 60_000);

afterAll(async () => {
  await pool?.end({ timeout: 1 });
  await owner?.end({ timeout: 1 });
  await server?.destroy();
});

const read = () =>
  fetch(`${origin}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${tenant.members.VIEWER.token}` },
    body: JSON.stringify({ query: '{ agents(first: 5) { edges { node { id name } } } }' }),
    signal: AbortSignal.timeout(TIMEOUT_MS + 30_000), // a request that hangs is recorded as failed, not waited for
  });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every answer is a success or UNAVAILABLE with Retry-After, and none outlived the deadline. */
function expectOnlyUnavailable(answers: readonly Answer[]) {
  for (const answer of answers) {
    expect(answer.failed, JSON.stringify(answer)).toBeUndefined();
    if (answer.status !== 200) {
      expect(answer, JSON.stringify(tally(answers))).toMatchObject({ status: 503, code: 'UNAVAILABLE' });
      expect(answer.retryAfter).toMatch(/^\d+$/);
    }
    expect(answer.ms).toBeLessThan(TIMEOUT_MS + 500 + lag());
  }
}

/** All POOL_MAX connections can be held at once again: none was lost to the fault. */
async function expectPoolWhole() {
  const held = await Promise.all(
    Array.from({ length: POOL_MAX }, () =>
      Promise.race([pool.reserve(), sleep(3_000).then(() => Promise.reject(new Error('a pool connection was lost')))]),
    ),
  );
  try {
    const pids = await Promise.all(held.map(async (connection) => (await connection<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid));
    expect(new Set(pids).size).toBe(POOL_MAX);
  } finally {
    for (const connection of held) connection.release();
  }
}

const report = (name: string, figures: Record<string, unknown>) => {
  if (process.env.FAULT_REPORT) process.stdout.write(`[fault] ${name}: ${JSON.stringify(figures)}\n`);
};

it('survives backends terminated under load: the requests on them answer 503, the others succeed', async () => {
  const load = startLoad(read, 4);
  await sleep(300);
  for (let i = 0; i < 5; i++) {
    await owner`with pooled as materialized (select pid from pg_stat_activity where datname = current_database() and application_name = 'tenancy')
      select pg_terminate_backend(pid) from pooled`;
    await sleep(150);
  }
  await sleep(300);
  const answers = await load.stop();
  expectOnlyUnavailable(answers);
  expect(answers.some((answer) => answer.status === 200)).toBe(true);
  expect((await timed(read)).status).toBe(200);
  report('pg_terminate_backend x5', tally(answers));
  await expectPoolWhole();
}, 30_000);

it('rides through pg_ctl restart -m fast under load; the first request after it succeeds', async () => {
  const load = startLoad(read, 4);
  await sleep(300);
  const started = Date.now();
  await server.restart();
  const up = Date.now();
  const first = await timed(read);
  await sleep(300);
  const answers = await load.stop();
  expect(first.status, JSON.stringify(first)).toBe(200);
  expectOnlyUnavailable(answers);
  report('pg_ctl restart -m fast', { restartMs: up - started, firstAfterMs: first.ms, answers: tally(answers) });
  await expectPoolWhole();
}, 30_000);

/** Stops the database with `fault`, keeps it down for a while, starts it, and measures /ready and the clients. */
async function outage(name: string, fault: () => Promise<void>) {
  const readiness = pollReadiness(origin);
  const load = startLoad(read, 4);
  await sleep(300);
  const faultAt = Date.now();
  await fault();
  await sleep(1_500);
  await server.start();
  const upAt = Date.now();
  await expect.poll(() => readiness.firstAt(200, upAt), { timeout: 5_000, interval: 20 }).toBeDefined();
  const readyAt = readiness.firstAt(200, upAt)!;
  const first = await timed(read);
  const answers = await load.stop();
  await readiness.stop();

  const unreadyAt = readiness.firstAt(503, faultAt);
  expect(unreadyAt, JSON.stringify(readiness.changes())).toBeDefined();
  const seen = JSON.stringify({ upAt: upAt - faultAt, changes: readiness.changes().map(([at, status]) => [at - faultAt, status]) });
  expect(unreadyAt! - faultAt, seen).toBeLessThan(1_000 + lag());
  expect(readyAt - upAt, seen).toBeLessThan(2_000 + lag());
  expect(readiness.slowest()).toBeLessThan(1_000 + lag());
  expect(first.status).toBe(200);
  expectOnlyUnavailable(answers);
  // While it was down a request was refused, or waited (within its deadline) for the database to come back.
  expect(answers.some((answer) => answer.status === 503 && answer.at > faultAt)).toBe(true);
  report(name, { lagMs: Math.round(lag()), readyDownAfterMs: unreadyAt! - faultAt, readyUpAfterMs: readyAt - upAt, slowestReadyMs: readiness.slowest(), answers: tally(answers) });
  await expectPoolWhole();
}

it('a stopped database: /ready 503 within 1 s, 200 within 2 s of the start, requests meanwhile 503 or served once it is back', async () => {
  await outage('pg_ctl stop -m fast, 1.5 s down, start', () => server.stop());
}, 30_000);

it('kill -9 of the postmaster: the same', async () => {
  await outage('kill -9 postmaster, 1.5 s down, start', () => server.kill());
}, 30_000);

it('a frozen database (SIGSTOP): every request ends by its deadline with 503, /ready answers within 1 s', async () => {
  const readiness = pollReadiness(origin);
  const load = startLoad(read, 4);
  await sleep(300);
  const frozenAt = Date.now();
  try {
    await server.freeze();
    await sleep(TIMEOUT_MS + 1_500);
  } finally {
    await server.thaw(); // never leave it frozen for the tests after this one
  }
  const thawedAt = Date.now();
  await expect.poll(() => readiness.firstAt(200, thawedAt), { timeout: 5_000, interval: 20 }).toBeDefined();
  const answers = await load.stop();
  await readiness.stop();

  expectOnlyUnavailable(answers);
  expect(answers.some((answer) => answer.reason === 'timeout')).toBe(true);
  expect(readiness.firstAt(503, frozenAt)! - frozenAt, JSON.stringify(readiness.changes().map(([at, status]) => [at - frozenAt, status]))).toBeLessThan(1_000 + lag());
  expect(readiness.slowest()).toBeLessThan(1_000 + lag());
  expect((await timed(read)).status).toBe(200);
  report('SIGSTOP for 3.5 s', { readyDownAfterMs: readiness.firstAt(503, frozenAt)! - frozenAt, readyUpAfterMs: readiness.firstAt(200, thawedAt)! - thawedAt, slowestReadyMs: readiness.slowest(), answers: tally(answers) });
  await expectPoolWhole();
}, 30_000);

it('a row lock held past the deadline: the write waiting on it answers 503 timeout by the deadline, reads go on', async () => {
  const holder = await owner.reserve();
  try {
    await holder`begin`;
    await holder`select 1 from app.agents where id = ${agentId} for update`;
    const write = timed(() =>
      fetch(`${origin}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${tenant.members.ADMIN.token}` },
        body: JSON.stringify({ query: 'mutation($id: ID!) { updateAgent(input: { id: $id, name: "renamed" }) { agent { name } } }', variables: { id: agentNodeId } }),
      }),
    );
    const reads = await Promise.all([sleep(200).then(() => timed(read)), sleep(600).then(() => timed(read))]);
    const answer = await write;
    expect(answer).toMatchObject({ status: 503, code: 'UNAVAILABLE', reason: 'timeout' });
    expect(answer.ms).toBeLessThan(TIMEOUT_MS + 200 + lag());
    expect(answer.ms).toBeGreaterThan(TIMEOUT_MS - 500);
    for (const other of reads) expect(other.status).toBe(200);
    report('row lock held', { writeMs: answer.ms });
  } finally {
    await holder`rollback`;
    holder.release();
  }
  const [row] = await owner<{ name: string }[]>`select name from app.agents where id = ${agentId}`;
  expect(row!.name).toBe('steady'); // rolled back, not written after its answer
  await expectPoolWhole();
}, 30_000);

it('connection slots exhausted: UNAVAILABLE, not INTERNAL, and the pool does not spin', async () => {
  const fresh = createPool(server.appUrl, { max: 2, prepare: true, requestTimeoutMs: TIMEOUT_MS });
  const freshApi = createTestApp(fresh);
  // Another client takes every slot left (superuser_reserved_connections keep the owner's way in).
  const hog = postgres(server.appUrl, { max: 60, onnotice: () => {}, connect_timeout: 5 });
  await Promise.allSettled(Array.from({ length: 60 }, () => hog`select pg_sleep(0.3)`));
  try {
    const attempts = async () => ((await server.log()).match(/connection received/g) ?? []).length;
    const before = await attempts();
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => freshApi.request('{ agents(first: 1) { edges { node { id } } } }', { token: tenant.members.VIEWER.token })),
    );
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'UNAVAILABLE', reason: 'connections' });
    }
    await sleep(300); // the server writes its log lines a little later
    const afterRequests = await attempts();
    expect(afterRequests - before).toBeLessThanOrEqual(10); // one or two attempts per request
    await sleep(1_000);
    expect(await attempts()).toBe(afterRequests); // nothing retries behind the clients' backs
    report('max_connections reached', { attemptsFor5Requests: afterRequests - before });
  } finally {
    await hog.end({ timeout: 1 });
  }
  const after = await freshApi.request('{ agents(first: 1) { edges { node { id } } } }', { token: tenant.members.VIEWER.token });
  expect(after.status).toBe(200);
  expect(poolState(fresh).acquireTimeouts).toBe(0);
  await fresh.end({ timeout: 1 });
}, 30_000);

it('/health and /ready answer small JSON bodies that name no address, also while the database is down', async () => {
  const health = await fetch(`${origin}/health`);
  expect([health.status, await health.json()]).toEqual([200, { status: 'ok' }]);
  await expect.poll(async () => (await fetch(`${origin}/ready`)).status, { timeout: 3_000 }).toBe(200);
  expect(await (await fetch(`${origin}/ready`)).json()).toEqual({ status: 'ready' });
  await server.stop();
  try {
    await expect.poll(async () => (await fetch(`${origin}/ready`)).status, { timeout: 3_000 }).toBe(503);
    const ready = await fetch(`${origin}/ready`);
    expect(ready.headers.get('retry-after')).toBe('1');
    expect(await ready.text()).toBe('{"status":"unavailable"}');
    const stillHealthy = await fetch(`${origin}/health`);
    expect([stillHealthy.status, await stillHealthy.text()]).toEqual([200, '{"status":"ok"}']);
  } finally {
    await server.start();
  }
}, 30_000);

it('the audit and idle-session sweeps fail quietly while the database is down (nothing unhandled) and work again once it is back', async () => {
  const key = await auditKeyFromPem(generateAuditKeyPem());
  // The sweep's timer rounds say what they signed in the log (a round asked for directly may join one that already did).
  const lines: { msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) });
  const audit = startAuditSweep(pool, key, { intervalSeconds: 0.1, purgeBatch: 100 }, log); // below the setting's minimum: many rounds within the outage
  const idle = startIdleSessionSweep(pool, 3600, log, 100);
  const write = (name: string) => api.request('mutation($name: String!) { createAgent(input: { name: $name, kind: "assistant" }) { agent { id } } }', { token: tenant.members.MEMBER.token, variables: { name } });
  const signed = () => lines.filter((line) => line.msg === 'audit checkpoint signed').length;
  try {
    expect((await write('audited before')).status).toBe(200);
    await expect.poll(signed, { timeout: 5_000, interval: 50 }).toBeGreaterThan(0);
    await server.kill();
    await sleep(1_000); // rounds of both sweeps fail meanwhile; an unhandled rejection would fail this file
    await expect(audit.sweep()).rejects.toBeDefined();
    await expect(idle.sweep()).rejects.toBeDefined();
    expect(lines.filter((line) => /sweep failed/.test(line.msg)).length).toBeLessThanOrEqual(2); // one warning each, not one a round
    await server.start();
    const before = signed();
    await expect.poll(async () => (await write('audited after')).status, { timeout: 5_000, interval: 100 }).toBe(200);
    await expect.poll(signed, { timeout: 5_000, interval: 50 }).toBeGreaterThan(before);
    expect(await idle.sweep()).toBe(0);
  } finally {
    audit.stop();
    idle.stop();
  }
  await expectPoolWhole();
}, 30_000);

it('the real service (event hub, fair-share guard, sweeps) never exits through backends terminated and kill -9: /ready comes back, an SSE stream gets RESYNC and goes on, SIGTERM exits 0', async () => {
  let service: ServerProcess | undefined;
  // The load below answers 503s as fast as it can send: past the free plan's 10 a second, which the guard would refuse (429) by design.
  await setRequestRates(owner, tenant.id, { perMinute: 60_000 });
  try {
    service = await startServer({
      DATABASE_URL: server.ownerUrl,
      DATABASE_APP_URL: server.appUrl,
      JWT_SECRET: TEST_TOKENS.secret!,
      TENANCY_DATA_DIR: '/nonexistent-unused',
      AUDIT_SIGNING_KEY: generateAuditKeyPem(),
      DEMO_DATA: 'false',
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      DB_POOL_MAX: String(POOL_MAX),
      REQUEST_TIMEOUT_MS: String(TIMEOUT_MS),
      SHUTDOWN_TIMEOUT_MS: '2000',
    });
    const { url } = service;
    const viewer = { authorization: `Bearer ${tenant.members.VIEWER.token}` };
    const readThere = () =>
      fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...viewer },
        body: JSON.stringify({ query: '{ agents(first: 5) { edges { node { id name } } } }' }),
        signal: AbortSignal.timeout(TIMEOUT_MS + 30_000),
      });
    const stream = await sse(url, 'subscription { members { kind id } }', { headers: viewer });
    expect(stream.status).toBe(200);
    const kinds = (results: LiveResult[]) => results.map((result) => (result.data?.members as { kind?: string } | undefined)?.kind);
    let joined = 0;
    const join = async () => {
      const [user] = await owner<{ id: string }[]>`insert into app.users (email) values (${`joiner-${joined++}-${Date.now()}@faults.test`}) returning id`;
      await owner`insert into app.memberships (tenant_id, user_id, role) values (${tenant.id}, ${user!.id}, 'VIEWER')`;
    };
    const hears = async () => {
      const before = kinds(stream.results).filter((kind) => kind === 'CREATED').length;
      for (let attempt = 0; attempt < 20; attempt++) {
        await join();
        if (await stream.until((results) => kinds(results).filter((kind) => kind === 'CREATED').length > before, 500).then(() => true, () => false)) return;
      }
      throw new Error(`the stream heard no member join: ${JSON.stringify(stream.results)}`);
    };
    await hears();

    const readiness = pollReadiness(url);
    const load = startLoad(readThere, 2);
    await sleep(300);
    // Every connection of the service: its pool, the fair-share guard's, the hub's listening one (all on this database).
    const terminated = await owner`with theirs as materialized (select pid from pg_stat_activity
        where datname = current_database() and usename <> 'postgres' and pid <> pg_backend_pid())
      select pid from theirs where pg_terminate_backend(pid)`;
    expect(terminated.length).toBeGreaterThanOrEqual(2); // the pool's (under load) and the hub's at least
    await sleep(500);
    const faultAt = Date.now();
    await server.kill();
    await sleep(1_500);
    await server.start();
    const upAt = Date.now();
    await expect.poll(() => readiness.firstAt(200, upAt), { timeout: 5_000, interval: 20 }).toBeDefined();
    const readyAfter = readiness.firstAt(200, upAt)! - upAt;
    const answers = await load.stop();
    await readiness.stop();
    expect(service.child.exitCode, service.output().slice(-2_000)).toBeNull();
    expect(readiness.firstAt(503, faultAt)! - faultAt).toBeLessThan(1_000 + lag());
    expect(readyAfter).toBeLessThan(2_000 + lag());
    for (const answer of answers) {
      expect(answer.failed, JSON.stringify(tally(answers))).toBeUndefined();
      if (answer.status !== 200) expect(answer, JSON.stringify(tally(answers))).toMatchObject({ status: 503, code: 'UNAVAILABLE' });
    }
    expect((await timed(readThere)).status).toBe(200);
    // The stream: still open, told RESYNC once the hub listened again, then live.
    await stream.until((results) => kinds(results).includes('RESYNC'), 15_000);
    expect(stream.endedAt).toBeUndefined();
    await hears();
    report('real service: terminate + kill -9', { readyAfterMs: readyAfter, answers: tally(answers) });
    stream.close();
    expect(await service.stop()).toBe(0);
    expect(service.output()).not.toMatch(/"level":60|Unhandled|uncaught/i);
  } finally {
    if (service && service.child.exitCode === null) service.child.kill('SIGKILL');
  }
  await expectPoolWhole();
}, 60_000);
