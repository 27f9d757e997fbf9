// `npm run bench:events`: live events on a real database. 100 tenants, 1,000
// subscribers (10 per tenant) on an event hub (src/events/hub.ts).
//
// 0. Why an outbox: commits per second of 32 writers with no events, through the
//    outbox, and with NOTIFY in the writing transaction (database level).
// 1. Latency: tasks inserted at a steady rate across the tenants; for every
//    delivery to every subscriber, the time from the writer's commit
//    returning to the subscriber's callback (p50, p99, max).
// 2. Throughput: writers as fast as they can; events published per second
//    and deliveries per second (an event reaches the tenant's 10 subscribers).
// 3. Writes with notifications on and off: the service's M1 (createTask, as in
//    `npm run bench`, autocannon from its own process) with the notify triggers
//    enabled and the 1,000 subscribers listening, against the same with the
//    triggers disabled and no subscribers; interleaved rounds. Two ratios per
//    round: writes per second (on/off), and CPU per write (off/on: the
//    service's, PostgreSQL's and this process's hub delivering the events),
//    which a shared, noisy machine disturbs far less than throughput.
//
// 4. End to end: the same 1,000 subscribers over SSE on the service (each event
//    re-read in every subscriber's tenant transaction), at EVENTS_E2E_RATE
//    writes/s (20): commit to the event at the client.
//
// Figures 1 and 2 are at the hub (subscribers in this process).
// Settings (environment): EVENTS_ROUNDS (3), EVENTS_SECONDS (10), EVENTS_RATE
// (writes/s for the latency run, 200), EVENTS_WRITERS (16), BENCH_CONNECTIONS (32).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { pino } from 'pino';
import { createEventHub, type EventHub } from '../src/events/hub.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { cpuNow } from './cpu.ts';
import { ROOT, startDatabase, startService, stopAll, tokens as sign, withOwner, type Service } from './harness.ts';
import type { LoadRequest, LoadResult } from './load.ts';
import { sseMessages } from '../test/helpers/sse.ts';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const TENANTS = 100;
const SUBSCRIBERS_PER_TENANT = 10;
const ROUNDS = env('EVENTS_ROUNDS', 3);
const SECONDS = env('EVENTS_SECONDS', 10);
const RATE = env('EVENTS_RATE', 200);
const WRITERS = env('EVENTS_WRITERS', 16);
const CONNECTIONS = env('BENCH_CONNECTIONS', 32);
/** The triggers that turn writes into events (migration 000017). */
const NOTIFY_TRIGGERS: Record<string, string> = {
  sessions: 'sessions_notify',
  tasks: 'tasks_notify',
  agents: 'agents_notify',
  fine_tuning_jobs: 'fine_tuning_jobs_notify',
  memberships: 'memberships_notify',
};

type Tenant = { id: string; userId: string; session: string };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
const round1 = (n: number) => Math.round(n * 10) / 10;
const median = (values: number[]) => quantile([...values].sort((x, y) => x - y), 0.5);

/** Delivery latencies (ms, sorted) of `writes` commits over the measured seconds, each expected at every subscriber of its tenant. */
function latencyOf(sorted: number[], writes: number) {
  return {
    writesPerSecond: round1(writes / SECONDS),
    deliveries: sorted.length,
    expectedDeliveries: writes * SUBSCRIBERS_PER_TENANT,
    p50Ms: round1(quantile(sorted, 0.5)),
    p99Ms: round1(quantile(sorted, 0.99)),
    maxMs: round1(sorted.at(-1) ?? NaN),
  };
}

const db = await startDatabase();
let service: Service | undefined;
let hub: EventHub | undefined;
const owner = postgres(db.ownerUrl, { max: WRITERS, onnotice: () => {} });
try {
  const tenants = await withOwner(db, async (sql) => {
    await sql`insert into app.tenants (slug, name, plan) select 'events-' || lpad(i::text, 3, '0'), 'Events ' || i, 'enterprise' from generate_series(1, ${TENANTS}) i`;
    await sql`insert into app.users (email) select 'admin@' || slug || '.test' from app.tenants`;
    await sql`insert into app.memberships (tenant_id, user_id, role)
              select t.id, u.id, 'ADMIN' from app.tenants t join app.users u on u.email = 'admin@' || t.slug || '.test'`;
    await sql`insert into app.agents (tenant_id, name, kind, created_by) select tenant_id, 'writer', 'assistant', user_id from app.memberships`;
    await sql`insert into app.sessions (tenant_id, agent_id, started_by) select tenant_id, id, created_by from app.agents`;
    await sql`vacuum analyze`;
    return sql<Tenant[]>`
      select t.id, m.user_id as "userId", s.id as session
      from app.tenants t join app.memberships m on m.tenant_id = t.id join app.sessions s on s.tenant_id = t.id
      order by t.slug`;
  });

  /** Commit times of the tasks written, by id, and the times of their deliveries: matched after the run. */
  const committedAt = new Map<string, number>();
  const deliveredAt: Array<[string, number]> = [];
  let deliveries = 0;
  let resyncs = 0;

  const openHub = async () => {
    const opened = createEventHub({ url: db.appUrl, logger: pino({ level: 'warn' }) });
    for (const tenant of tenants) {
      for (let i = 0; i < SUBSCRIBERS_PER_TENANT; i++) {
        opened.subscribe(tenant.id, (event) => {
          if (event.type === 'resync') return void resyncs++;
          if (event.type !== 'row') return;
          deliveries++;
          if (measuring) deliveredAt.push([event.change.id, performance.now()]);
        });
      }
    }
    for (let waited = 0; !opened.connected; waited += 10) {
      if (waited > 10_000) throw new Error('the hub did not connect');
      await sleep(10);
    }
    return opened;
  };

  let measuring = false;
  const insertTask = async (tenant: Tenant) => {
    const id = randomUUID();
    await owner`insert into app.tasks (tenant_id, id, session_id, title, created_by) values (${tenant.id}, ${id}, ${tenant.session}, 'event', ${tenant.userId})`;
    if (measuring) committedAt.set(id, performance.now()); // the insert is its own transaction: it has committed now
  };

  const drain = async () => {
    // Everything written has been published and delivered once the outbox is empty and the hub caught up.
    for (let i = 0; i < 500; i++) {
      const [left] = await owner<{ n: number }[]>`select count(*)::int as n from app_private.event_outbox`;
      if (left!.n === 0) break;
      await sleep(20);
    }
    await sleep(200);
  };

  hub = await openHub();
  await drain(); // the seed's events

  // 1. Latency at a steady rate.
  measuring = true;
  const interval = 1000 / RATE;
  const started = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; performance.now() - started < SECONDS * 1000; i++) {
    pending.push(insertTask(tenants[i % tenants.length]!));
    const next = started + (i + 1) * interval;
    const wait = next - performance.now();
    if (wait > 0) await sleep(wait);
  }
  await Promise.all(pending);
  await drain();
  measuring = false;
  // A delivery read in the same turn as its commit's answer can be handled first: it counts as 0 ms.
  const sorted = deliveredAt.map(([id, at]) => Math.max(0, at - (committedAt.get(id) ?? at))).sort((x, y) => x - y);
  const latency = latencyOf(sorted, pending.length);
  process.stdout.write(`latency: ${JSON.stringify(latency)}\n`);

  // 2. Throughput: as fast as the writers go.
  const deliveredBefore = deliveries;
  let written = 0;
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: WRITERS }, async (_, w) => {
      for (let i = w; performance.now() < until; i += WRITERS) {
        await insertTask(tenants[i % tenants.length]!);
        written++;
      }
    }),
  );
  const throughputWindow = performance.now() - (until - SECONDS * 1000);
  await drain();
  const throughput = {
    writesPerSecond: Math.round((written * 1000) / throughputWindow),
    eventsPerSecond: Math.round(((deliveries - deliveredBefore) / SUBSCRIBERS_PER_TENANT) * 1000 / throughputWindow),
    deliveriesPerSecond: Math.round(((deliveries - deliveredBefore) * 1000) / throughputWindow),
    delivered: deliveries - deliveredBefore,
    expected: written * SUBSCRIBERS_PER_TENANT,
  };
  process.stdout.write(`throughput: ${JSON.stringify(throughput)}\n`);

  // 0. Why an outbox: 32 writers committing task inserts, with no events, through the outbox (published by the
  //    hub), and with NOTIFY in the writing transaction (a trigger of this benchmark's own), interleaved.
  const writers = postgres(db.ownerUrl, { max: 32, onnotice: () => {} });
  await writers.unsafe(`
    create function app_private.bench_notify_direct() returns trigger language plpgsql as $$
    begin
      perform pg_notify('tenancy_events', format('{"event":"row","tenant":"%s","type":"Task","id":"%s","kind":"created"}', new.tenant_id, new.id));
      return null;
    end $$;
    create trigger tasks_bench_notify_direct after insert on app.tasks for each row execute function app_private.bench_notify_direct();
    alter table app.tasks disable trigger tasks_bench_notify_direct;`);
  const commitRates: Record<'none' | 'outbox' | 'direct', number[]> = { none: [], outbox: [], direct: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const modes = (['none', 'outbox', 'direct'] as const).slice(round % 3).concat((['none', 'outbox', 'direct'] as const).slice(0, round % 3));
    for (const mode of modes) {
      await writers.unsafe(`alter table app.tasks ${mode === 'outbox' ? 'enable' : 'disable'} trigger tasks_notify, ${mode === 'direct' ? 'enable' : 'disable'} trigger tasks_bench_notify_direct`);
      let commits = 0;
      const end = performance.now() + (SECONDS * 1000) / 2;
      await Promise.all(
        Array.from({ length: 32 }, async (_, w) => {
          for (let i = w; performance.now() < end; i += 32) {
            const tenant = tenants[i % tenants.length]!;
            await writers`insert into app.tasks (tenant_id, session_id, title, created_by) values (${tenant.id}, ${tenant.session}, 'commit', ${tenant.userId})`;
            commits++;
          }
        }),
      );
      commitRates[mode].push(Math.round(commits / (SECONDS / 2)));
      await drain();
    }
  }
  await writers.unsafe('alter table app.tasks enable trigger tasks_notify; drop trigger tasks_bench_notify_direct on app.tasks; drop function app_private.bench_notify_direct()');
  await writers.end();
  const commitsPerSecond = {
    none: median(commitRates.none),
    outbox: median(commitRates.outbox),
    direct: median(commitRates.direct),
    rounds: commitRates,
  };
  process.stdout.write(`commits/s, 32 writers: ${JSON.stringify(commitsPerSecond)}\n`);

  // 3. The service's M1 with notifications on and off, interleaved.
  service = await startService(db, { LOG_LEVEL: 'warn', RATE_LIMITS: 'false' });
  const principals = tenants.slice(0, 64);
  const tokens = await sign(principals.map((tenant) => ({ userId: tenant.userId, tenantId: tenant.id, role: 'ADMIN' as const })));
  const requests: LoadRequest[] = principals.map((tenant, i) => ({
    path: '/graphql',
    token: tokens[i]!,
    body: JSON.stringify({
      query: 'mutation($sessionId: ID!, $title: String!) { createTask(input: { sessionId: $sessionId, title: $title }) { task { id title status } } }',
      variables: { sessionId: encodeGlobalId('Session', tenant.session), title: 'bench task' },
    }),
  }));
  const setNotifications = async (on: boolean) => {
    for (const [table, trigger] of Object.entries(NOTIFY_TRIGGERS)) await owner.unsafe(`alter table app.${table} ${on ? 'enable' : 'disable'} trigger ${trigger}`);
  };
  type Measured = { rps: number; p99: number; cpuUs: { service: number; postgres: number; hub: number; total: number } };
  const rounds: Array<{ round: number; on: Measured; off: Measured; throughputRatio: number; cpuRatio: number }> = [];
  await load(service.origin, requests, 3); // warm-up
  for (let round = 1; round <= ROUNDS; round++) {
    const result: Partial<Record<'on' | 'off', Measured>> = {};
    for (const mode of round % 2 === 1 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
      await setNotifications(mode === 'on');
      if (mode === 'on' && !hub) hub = await openHub();
      if (mode === 'off' && hub) {
        await hub.close();
        hub = undefined;
      }
      await drain();
      const before = { ...cpuNow(service.child.pid!, db.postgresPid), hub: process.cpuUsage() };
      const run = await load(service.origin, requests, SECONDS);
      await drain(); // the publishing and delivering of this run's events is part of its cost
      const after = cpuNow(service.child.pid!, db.postgresPid);
      const hubUs = process.cpuUsage(before.hub);
      if (run.non2xx + run.bodyErrors + run.errors > 0) throw new Error(`M1 ${mode} failed: ${run.firstError}`);
      const per = (ms: number) => Math.round((ms * 1000) / Math.max(1, run.total));
      const cpuUs = { service: per(after.server - before.server), postgres: per(after.postgres - before.postgres), hub: per((hubUs.user + hubUs.system) / 1000) };
      result[mode] = { rps: Math.round(run.requestsPerSecond), p99: run.p99, cpuUs: { ...cpuUs, total: cpuUs.service + cpuUs.postgres + cpuUs.hub } };
    }
    const on = result.on!;
    const off = result.off!;
    rounds.push({ round, on, off, throughputRatio: Math.round((on.rps / off.rps) * 1000) / 1000, cpuRatio: Math.round((off.cpuUs.total / on.cpuUs.total) * 1000) / 1000 });
    process.stdout.write(`M1 round ${round}: ${JSON.stringify(rounds.at(-1))}\n`);
  }
  await setNotifications(true);
  if (hub) {
    await hub.close();
    hub = undefined;
  }

  // 4. End to end: 1,000 subscribers over SSE (sessionActivity of their tenant's session) on the service, whose own
  //    hub re-reads every event in each subscriber's tenant transaction; a steady, lower write rate (each write is
  //    10 re-reads on this 2-core machine). Latency from the insert's commit to the event at the client.
  const allTokens = await sign(tenants.map((tenant) => ({ userId: tenant.userId, tenantId: tenant.id, role: 'ADMIN' as const })));
  const streamAbort = new AbortController();
  const heardAt: Array<[string, number]> = [];
  const heardBy = tenants.map(() => new Set<number>());
  const subscription = 'subscription ($id: ID!) { sessionActivity(sessionId: $id) { kind id node { __typename ... on Task { title status } } } }';
  const open = async (tenantIndex: number, subscriber: number) => {
    const tenant = tenants[tenantIndex]!;
    const response = await fetch(`${service!.origin}/graphql`, {
      method: 'POST',
      signal: streamAbort.signal,
      headers: { accept: 'text/event-stream', 'content-type': 'application/json', authorization: `Bearer ${allTokens[tenantIndex]!}` },
      body: JSON.stringify({ query: subscription, variables: { id: encodeGlobalId('Session', tenant.session) } }),
    });
    if (!response.headers.get('content-type')?.includes('text/event-stream')) throw new Error(`no stream: ${response.status} ${await response.text()}`);
    void (async () => {
      try {
        for await (const { event, data } of sseMessages(response.body as unknown as AsyncIterable<Uint8Array>)) {
          if (event !== 'next') continue;
          const id = (JSON.parse(data) as { data?: { sessionActivity?: { id?: string } } }).data?.sessionActivity?.id;
          if (id) {
            heardAt.push([id, performance.now()]);
            heardBy[tenantIndex]!.add(subscriber);
          }
        }
      } catch {
        // closed at the end
      }
    })();
  };
  await Promise.all(tenants.flatMap((_, t) => Array.from({ length: SUBSCRIBERS_PER_TENANT }, (_, i) => open(t, i))));
  // A subscription has no acknowledgement: markers until every subscriber has heard one.
  for (let attempt = 0; heardBy.some((set) => set.size < SUBSCRIBERS_PER_TENANT); attempt++) {
    if (attempt > 60) throw new Error('not every subscription started');
    await Promise.all(tenants.filter((_, t) => heardBy[t]!.size < SUBSCRIBERS_PER_TENANT).map((tenant) => insertTask(tenant)));
    await sleep(500);
  }
  await sleep(1_000);
  heardAt.length = 0;
  committedAt.clear();
  measuring = true;
  const e2eRate = env('EVENTS_E2E_RATE', 20);
  const e2eStarted = performance.now();
  const e2eWrites: Promise<void>[] = [];
  for (let i = 0; performance.now() - e2eStarted < SECONDS * 1000; i++) {
    e2eWrites.push(insertTask(tenants[i % tenants.length]!));
    const wait = e2eStarted + ((i + 1) * 1000) / e2eRate - performance.now();
    if (wait > 0) await sleep(wait);
  }
  await Promise.all(e2eWrites);
  await sleep(3_000);
  measuring = false;
  streamAbort.abort();
  const byGlobalId = new Map([...committedAt].map(([id, at]) => [encodeGlobalId('Task', id), at]));
  const e2eSorted = heardAt.filter(([id]) => byGlobalId.has(id)).map(([id, at]) => Math.max(0, at - byGlobalId.get(id)!)).sort((x, y) => x - y);
  const endToEnd = { transport: 'SSE', ...latencyOf(e2eSorted, e2eWrites.length) };
  process.stdout.write(`end to end: ${JSON.stringify(endToEnd)}\n`);

  const summary = {
    machine: `${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown'}; shared and noisy`,
    tenants: TENANTS,
    subscribers: TENANTS * SUBSCRIBERS_PER_TENANT,
    latency,
    throughput,
    commitsPerSecond,
    endToEnd,
    m1: {
      rounds,
      // on/off writes per second, and off/on CPU per write (service + PostgreSQL + the hub delivering): 1 = no cost.
      medianThroughputRatio: median(rounds.map((r) => r.throughputRatio)),
      medianCpuRatio: median(rounds.map((r) => r.cpuRatio)),
      connections: CONNECTIONS,
      seconds: SECONDS,
    },
    resyncs,
  };
  await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(path.join(ROOT, 'bench/results/events.json'), `${JSON.stringify(summary, null, 2)}\n`);
  process.stdout.write(`\n${JSON.stringify(summary, null, 2)}\n`);
} finally {
  await hub?.close();
  await owner.end({ timeout: 1 });
  await stopAll(db, service);
}

/** autocannon from its own process (bench/load.ts), without blocking this one: the hub here keeps delivering. */
function load(origin: string, requests: LoadRequest[], seconds: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bench/load.ts')], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`bench/load.ts exited ${code}`))));
    child.stdin.end(JSON.stringify({ origin, requests, connections: CONNECTIONS, seconds }));
  });
}
