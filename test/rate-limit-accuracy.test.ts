// The rate limit holds across processes sharing the database (WORKERS, or
// replicas): two or three processes, each with its own pool and limiter, ask
// for tokens of one tenant's bucket at twice what it allows. Together they
// must not be admitted more than one token bucket allows (its size plus its
// refill over the window), nor much less. The figures are printed.
import postgres from 'postgres';
import { beforeAll, expect, it } from 'vitest';
import { createTestTenant, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { setRequestRates } from './helpers/fair-share.ts';
import { runScript } from './helpers/process.ts';

let db: TestDatabase;
let tenant: TestTenant;

beforeAll(async () => {
  db = await useTestDatabase();
  tenant = await createTestTenant(db.owner, 'accuracy', 'free');
});

type Outcome = { asked: number; admitted: number; refused: number; startedAt: number; errors: string[] };

const BARRIER = 7_201_012; // an advisory lock key: the processes start when the test lets go of it

async function race(processes: number, perMinute: number, durationMs: number, full: boolean): Promise<{ outcomes: Outcome[]; ideal: number; admitted: number }> {
  await db.owner`delete from app.request_buckets where tenant_id = ${tenant.id}`; // no bucket: the first lease finds it full
  await setRequestRates(db.owner, tenant.id, { perMinute });
  const burst = full ? Math.ceil(perMinute / 6) : 0;
  const perSecond = Math.ceil((2 * (burst + (perMinute / 60) * (durationMs / 1000))) / (durationMs / 1000) / processes);
  const gate = postgres(db.ownerUrl, { max: 1, onnotice: () => {} });
  await gate`select pg_advisory_lock(${BARRIER})`;
  const running = Promise.all(
    Array.from({ length: processes }, () =>
      runScript('test/helpers/rate-limit-process.ts', [db.appUrl, tenant.id, '-', String(BARRIER), String(durationMs), String(perSecond)], {}),
    ),
  );
  // Once every process waits at the barrier (connected, ready), all go at once.
  while ((await gate<{ n: number }[]>`select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = ${BARRIER} and not granted`)[0]!.n < processes) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (!full) await gate`insert into app.request_buckets (tenant_id, tokens, refilled_at) values (${tenant.id}, 0, now())`;
  await gate`select pg_advisory_unlock(${BARRIER})`;
  await gate.end();
  const runs = await running;
  const outcomes = runs.map((run) => {
    expect(run.code, run.stderr).toBe(0);
    return run.json as Outcome;
  });
  // The bucket refills from the first start to the last end.
  const first = Math.min(...outcomes.map((outcome) => outcome.startedAt));
  const last = Math.max(...outcomes.map((outcome) => outcome.startedAt)) + durationMs;
  const ideal = Math.round(burst + (perMinute / 60) * ((last - first) / 1000));
  return { outcomes, ideal, admitted: outcomes.reduce((sum, outcome) => sum + outcome.admitted, 0) };
}

it.each([
  [2, 1200, 4000, 'full'],
  [3, 1200, 4000, 'full'],
  [2, 60_000, 4000, 'empty'],
])('%i processes on one bucket of %i a minute for %i ms, starting %s, admit about what one bucket allows', async (processes, perMinute, durationMs, start) => {
  const { outcomes, ideal, admitted } = await race(processes, perMinute, durationMs, start === 'full');
  const error = (admitted - ideal) / ideal;
  console.log(`rate limit across ${processes} processes, ${perMinute}/min for ${durationMs} ms from ${start}: admitted ${admitted} (${outcomes.map((o) => o.admitted).join(' + ')}), ideal ${ideal}, error ${(error * 100).toFixed(1)}%`);
  expect(outcomes.flatMap((outcome) => outcome.errors)).toEqual([]);
  expect(outcomes.reduce((sum, outcome) => sum + outcome.refused, 0)).toBeGreaterThan(0); // they asked for more than the bucket had
  // The database never grants more than the bucket holds: more than ideal is only the clocks' skew
  // (leases held while the bucket refills to full could add a tenth of it per process; not here).
  expect(admitted).toBeLessThanOrEqual(ideal * 1.05 + 5);
  // Less is refill lost while the bucket sat full (the processes' own pace) or tokens leased and not yet spent.
  expect(admitted).toBeGreaterThanOrEqual(ideal * 0.9);
}, 60_000);
