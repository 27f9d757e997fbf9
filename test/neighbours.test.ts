// The neighbour test (issue 12, DESIGN.md invariant 13): one tenant sending
// ten times its request rate and another whose mutations wait on a row lock
// held by a session outside the service do not raise a third tenant's p99 by
// more than a small bound. The same load without the fair-share guard shows
// what it prevents: the locked tenant's requests take every pool connection
// and the third tenant's requests wait with them.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RequestGuard } from '../src/http/guard.ts';
import { createTestApp, createTestTenant, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { createTestFairShare, setRequestRates, TEST_FAIR_SHARE } from './helpers/fair-share.ts';

const POOL = 10; // DB_POOL_MAX's default; TENANT_MAX_CONCURRENCY defaults to half of it
const NOISY_PER_MINUTE = 300; // 5 a second, a bucket of 50
const PHASE_MS = 6000;
const VICTIM_WORKERS = 4;
const LOCKED_WORKERS = 20;
const CLIENT_TIMEOUT_MS = 8000;
/**
 * The bound asserted on the victim's p99 in the service (from the pipeline's
 * admission to its transaction's end), loosely, and beyond the longest this
 * process was kept from running: the test shares its process with the load
 * and the machine with other suites. Its clients' p99 is printed too.
 */
const P99_BOUND_MS = 2000;

let db: TestDatabase;
let noisy: TestTenant;
let locked: TestTenant;
let victim: TestTenant;

beforeAll(async () => {
  db = await useTestDatabase();
  noisy = await createTestTenant(db.owner, 'nb-noisy', 'free');
  locked = await createTestTenant(db.owner, 'nb-locked', 'free');
  victim = await createTestTenant(db.owner, 'nb-victim', 'free');
  await setRequestRates(db.owner, noisy.id, { perMinute: NOISY_PER_MINUTE });
  await setRequestRates(db.owner, victim.id, { perMinute: 60_000 });
  await setRequestRates(db.owner, locked.id, { perMinute: 60_000 });
});

type Service = { origin: () => Promise<string>; spans: number[] };

/** The app, its guards behind a stopwatch: the victim's requests timed from the pipeline's admission to their end. */
function service(guards: readonly RequestGuard[]): Service {
  const spans: number[] = [];
  const stopwatch: RequestGuard = {
    admit: ({ selection }) => {
      const started = performance.now();
      return { release: () => void (selection.tenant === victim.id && spans.push(performance.now() - started)) };
    },
  };
  const api = createTestApp(db.appPool(POOL), { guards: [stopwatch, ...guards] });
  return { origin: () => api.origin(), spans };
}

function percentiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN);
  return { p50: at(0.5), p99: at(0.99), max: round(sorted.at(-1) ?? NaN) };
}

async function post(app: Service, token: string, query: string, timeoutMs = CLIENT_TIMEOUT_MS): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  try {
    const response = await fetch(`${await app.origin()}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await response.json()) as { errors?: unknown[] };
    // A GraphQL error answered with 200 is a failure too.
    return { status: response.status === 200 && body.errors ? 299 : response.status, ms: performance.now() - started };
  } catch {
    return { status: 0, ms: performance.now() - started }; // no answer within the client's timeout
  }
}

const round = (ms: number) => Math.round(ms * 10) / 10;

const VICTIM_QUERY = '{ agents(first: 10) { edges { node { id name } } } }';
const NOISY_QUERY = '{ viewer { role } }';
let created = 0;
const lockedMutation = () => `mutation { createAgent(input: { name: "blocked ${++created}", kind: "assistant" }) { agent { id } } }`;

/**
 * The victim's closed loop: VICTIM_WORKERS clients, each sending as soon as it
 * has its answer. `stall` is the longest this process could not run (its event
 * loop's worst delay): on a shared machine that, not a neighbour, can hold a
 * request up, and the bound allows for it.
 */
async function victimLoad(app: Service, ms: number) {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  app.spans.length = 0;
  const until = performance.now() + ms;
  const latencies: number[] = [];
  const statuses: number[] = [];
  await Promise.all(
    Array.from({ length: VICTIM_WORKERS }, async () => {
      while (performance.now() < until) {
        const { status, ms: took } = await post(app, victim.members.VIEWER.token, VICTIM_QUERY);
        latencies.push(took);
        statuses.push(status);
      }
    }),
  );
  loop.disable();
  return {
    count: latencies.length,
    failed: statuses.filter((status) => status !== 200).length,
    /** In the service: from the pipeline's admission to the transaction's end. */
    service: percentiles(app.spans),
    /** At the clients, in this process. */
    client: percentiles(latencies),
    stall: round(loop.max / 1e6),
  };
}

/** The noisy tenant: an open loop at ten times its rate (ticks the timer misses are caught up). */
function noisyLoad(app: Service, ms: number) {
  const sent: Promise<{ status: number }>[] = [];
  const perMs = (NOISY_PER_MINUTE * 10) / 60_000;
  const started = performance.now();
  const timer = setInterval(() => {
    while (sent.length < (performance.now() - started) * perMs) sent.push(post(app, noisy.members.VIEWER.token, NOISY_QUERY));
  }, 10);
  return new Promise((resolve) => setTimeout(resolve, ms)).then(async () => {
    clearInterval(timer);
    const answers = await Promise.all(sent);
    // Requests sent near the end are decided when the service gets to them: the bucket refills until the last answer.
    const decidedWithinMs = performance.now() - started;
    return { admitted: answers.filter((a) => a.status === 200).length, refused: answers.filter((a) => a.status === 429).length, decidedWithinMs: Math.round(decidedWithinMs) };
  });
}

/** The locked tenant: LOCKED_WORKERS clients whose createAgent waits on the row a session outside the service holds. */
async function lockedLoad(app: Service, ms: number) {
  const holder = postgres(db.ownerUrl, { max: 1, onnotice: () => {} });
  let release!: () => void;
  let acquired!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const taken = new Promise<void>((resolve) => (acquired = resolve));
  const lock = holder.begin(async (tx) => {
    await tx`select 1 from app.quotas where tenant_id = ${locked.id} and quota = 'agents' for update`;
    acquired();
    await held;
  });
  await taken;
  const until = performance.now() + ms;
  const statuses: number[] = [];
  const clients = Promise.all(
    Array.from({ length: LOCKED_WORKERS }, async () => {
      // Patient clients: they wait for the lock (or the guard's refusal) rather than give up.
      while (performance.now() < until) statuses.push((await post(app, locked.members.ADMIN.token, lockedMutation(), 30_000)).status);
    }),
  );
  return {
    stop: async () => {
      release();
      await lock;
      await holder.end();
      await clients;
      return statuses;
    },
  };
}


describe('a third tenant beside a noisy one and a locked one', () => {
  it(`keeps its p99 in the service within ${P99_BOUND_MS} ms (and this process's stalls) of its p99 alone (fair-share guard on)`, async () => {
    const guard = createTestFairShare(db, { queueTimeoutMs: 3000 }); // the locked tenant's queue overflows within the phase
    expect(TEST_FAIR_SHARE.maxConcurrency).toBe(POOL / 2);
    const app = service([guard]);
    // Everyone's credentials placed in their tenant before measuring.
    for (const token of [victim.members.VIEWER.token, noisy.members.VIEWER.token, locked.members.ADMIN.token]) await post(app, token, NOISY_QUERY);
    await guard.settled();
    await victimLoad(app, 1000); // warm-up

    const alone = await victimLoad(app, PHASE_MS / 2);
    const lockedClients = await lockedLoad(app, PHASE_MS);
    const noise = noisyLoad(app, PHASE_MS);
    const beside = await victimLoad(app, PHASE_MS);
    const noisyAnswers = await noise;
    const lockedStatuses = await lockedClients.stop();

    const figures = {
      alone,
      beside,
      noisy: noisyAnswers,
      locked: { ok: lockedStatuses.filter((s) => s === 200).length, refused: lockedStatuses.filter((s) => s === 429).length, other: lockedStatuses.filter((s) => s !== 200 && s !== 429).length },
    };
    console.log(`neighbours, guard on: ${JSON.stringify(figures)}`);

    expect(beside.failed).toBe(0); // every request answered within the clients' 8 s
    expect(beside.service.p99).toBeLessThan(alone.service.p99 + P99_BOUND_MS + beside.stall);
    // The noisy tenant got about its rate: its bucket and its refill while its requests were decided (the phase, and
    // on a loaded machine the backlog answered after it), not the ten times it asked.
    const allowed = NOISY_PER_MINUTE / 6 + (noisyAnswers.decidedWithinMs / 1000) * (NOISY_PER_MINUTE / 60);
    expect(noisyAnswers.admitted).toBeLessThanOrEqual(allowed * 1.2);
    expect(noisyAnswers.refused).toBeGreaterThan(noisyAnswers.admitted);
    // The locked tenant was held to its lanes: the overflow of its queue was refused, not left to take the pool.
    expect(figures.locked.refused).toBeGreaterThan(0);
  }, 60_000);

  it('without the guard, the locked tenant takes the whole pool and the third tenant waits (what the guard prevents)', async () => {
    const app = service([]);
    await victimLoad(app, 500);
    const lockedClients = await lockedLoad(app, PHASE_MS / 2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const beside = await victimLoad(app, PHASE_MS / 2);
    await lockedClients.stop();
    console.log(`neighbours, no guard: ${JSON.stringify(beside)}`);
    expect(beside.failed > 0 || beside.service.p99 > 1000).toBe(true);
  }, 60_000);
});
