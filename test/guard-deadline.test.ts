// The pipeline hands every request guard the request's deadline
// (GuardRequest.deadline, http/guard.ts): a guard that queues a request stops
// waiting by it, so a request ends by REQUEST_TIMEOUT_MS even when the guard's
// own wait (the fair-share queue's timeout) is far longer.
import { beforeAll, expect, it } from 'vitest';
import { createPool, type Sql } from '../src/db/pool.ts';
import type { GuardRequest, RequestGuard } from '../src/http/guard.ts';
import { createTestApp, createTestTenant, type TestApp, type TestTenant } from './helpers/app.ts';
import { atFileEnd, useTestDatabase } from './helpers/db.ts';
import { createTestFairShare } from './helpers/fair-share.ts';

/** The requests' deadline: far shorter than the queue's timeout. */
const REQUEST_TIMEOUT_MS = 1_000;
const QUEUE_TIMEOUT_MS = 30_000;

let api: TestApp;
let guard: ReturnType<typeof createTestFairShare>;
let acme: TestTenant;
/** What the guards were handed, in order. */
const seen: GuardRequest[] = [];

beforeAll(async () => {
  const db = await useTestDatabase();
  const pool: Sql = createPool(db.appUrl, { max: 4, prepare: true, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  atFileEnd(() => pool.end({ timeout: 5 }));
  guard = createTestFairShare(db, { maxConcurrency: 1, queueMax: 4, queueTimeoutMs: QUEUE_TIMEOUT_MS });
  const recorder: RequestGuard = { admit: (request) => (seen.push(request), {}) };
  api = createTestApp(pool, { guards: [recorder, guard] });
  acme = await createTestTenant(db.owner, 'deadline-acme');
});

it("hands the guards the request's deadline: a request queued behind its tenant's share is answered by the deadline, not the queue's timeout", async () => {
  const token = acme.members.VIEWER.token;
  expect((await api.request('{ viewer { role } }', { token })).status).toBe(200); // the guard learns whose token it is
  await guard.settled();
  const release = guard.lanes.acquire(`tenant ${acme.id}`); // the tenant's one lane, held
  expect(typeof release).toBe('function');
  try {
    seen.length = 0;
    const sent = Date.now();
    const answer = await api.request('{ viewer { role } }', { token });
    const took = Date.now() - sent;
    expect(seen).toHaveLength(1);
    expect(seen[0]!.deadline, 'the guard got no deadline').toBeDefined();
    expect(seen[0]!.deadline!).toBeGreaterThanOrEqual(sent + REQUEST_TIMEOUT_MS - 50);
    expect(seen[0]!.deadline!).toBeLessThanOrEqual(sent + REQUEST_TIMEOUT_MS + 500);
    expect(answer.status).toBe(429);
    expect(answer.body.errors?.map((error) => error.extensions?.code)).toEqual(['RATE_LIMITED']);
    expect(took, `answered after ${took} ms`).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
    expect(took, `answered after ${took} ms`).toBeLessThan(REQUEST_TIMEOUT_MS + 2_000);
  } finally {
    (release as () => void)();
  }
}, 10_000);
