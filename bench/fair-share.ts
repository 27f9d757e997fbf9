// What fair share costs a request: (1) the guard alone, in this process, on a
// real database (its lookups and leases run; a request placed in its tenant
// with tokens in hand costs no round trip), in microseconds per admission and
// release, with the lease statements it sent per 1,000 requests; (2) the
// service with rate limits on and off (RATE_LIMITS), interleaved rounds of
// autocannon from its own process: req/s and the service's CPU per request.
// `npm run bench:fair-share`; BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_TENANTS (64).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { loadConfig } from '../src/config.ts';
import { createPool } from '../src/db/pool.ts';
import type { TenantSelection } from '../src/tenancy/principal.ts';
import { createFairShareGuard } from '../src/tenancy/fair-share.ts';
import { cpuNow } from './cpu.ts';
import { ROOT, startDatabase, startService, stop, stopAll, tokens, withOwner, type Service } from './harness.ts';
import type { LoadRequest, LoadResult } from './load.ts';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const ROUNDS = env('BENCH_ROUNDS', 3);
const SECONDS = env('BENCH_SECONDS', 8);
const TENANTS = env('BENCH_TENANTS', 64);

const db = await startDatabase();
const principals = await withOwner(db, async (sql) => {
  await sql`insert into app.tenants (slug, name, plan) select 'fair-' || i, 'Fair ' || i, 'enterprise' from generate_series(1, ${TENANTS}) i`;
  await sql`insert into app.users (email) select 'admin@' || slug || '.test' from app.tenants`;
  await sql`insert into app.memberships (tenant_id, user_id, role)
            select t.id, u.id, 'ADMIN' from app.tenants t join app.users u on u.email = 'admin@' || t.slug || '.test'`;
  await sql`insert into app.agents (tenant_id, name, kind, created_by)
            select m.tenant_id, 'agent ' || g, 'assistant', m.user_id from app.memberships m, generate_series(1, 20) g`;
  return sql<{ userId: string; tenantId: string }[]>`select user_id as "userId", tenant_id as "tenantId" from app.memberships order by tenant_id`;
});

// (1) The guard alone.
let statements = 0;
const guardSql = createPool(db.appUrl, { max: 1, prepare: true, onQuery: () => void statements++ });
const guard = createFairShareGuard(guardSql, loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) }).fairShare);
const selections: TenantSelection[] = principals.map(({ userId, tenantId }) => ({
  credentials: { kind: 'user', userId, roleCap: undefined },
  tenant: tenantId,
  allowedSlugs: undefined,
}));
async function admitAll(count: number): Promise<{ spentMs: number; waited: number }> {
  let spentMs = 0;
  let waited = 0;
  for (let i = 0; i < count; i += 32) {
    const started = performance.now();
    for (let j = 0; j < 32; j++) {
      const admission = guard.admit({ selection: selections[(i + j) % selections.length]!, requestId: 'bench' });
      if (admission instanceof Promise) {
        waited++;
        void admission.then((admitted) => admitted.release?.());
      } else {
        admission.release?.();
      }
    }
    spentMs += performance.now() - started;
    await new Promise((resolve) => setImmediate(resolve)); // a server's turn of the event loop between batches
  }
  return { spentMs, waited };
}
await admitAll(selections.length); // first use: lookups
await guard.settled();
await admitAll(20_000); // leases warm
await guard.settled();
statements = 0;
const N = 200_000;
const { spentMs, waited } = await admitAll(N);
await guard.settled();
console.log(
  `guard alone: ${((spentMs * 1000) / N).toFixed(2)} us per admission and release over ${TENANTS} tenants; ` +
    `${waited} of ${N} waited for a lease; ${((statements * 1000) / N).toFixed(2)} lease statements per 1,000 requests`,
);
await guard.close();
await guardSql.end();

// (2) The service, rate limits on and off.
const signed = await tokens(principals);
const requests: LoadRequest[] = signed.map((token) => ({ path: '/graphql', body: JSON.stringify({ query: '{ agents(first: 20) { edges { node { id name kind } } } }' }), token }));
function load(origin: string): LoadResult {
  const spec = JSON.stringify({ origin, requests, connections: 32, seconds: SECONDS });
  return JSON.parse(execFileSync(process.execPath, [path.join(ROOT, 'bench/load.ts')], { input: spec, encoding: 'utf8', maxBuffer: 1 << 20 })) as LoadResult;
}
const services: Record<string, Service> = {
  on: await startService(db, { RATE_LIMITS: 'true' }),
  off: await startService(db, { RATE_LIMITS: 'false' }),
};
for (const service of Object.values(services)) load(service.origin); // warm-up
for (let round = 1; round <= ROUNDS; round++) {
  const line: string[] = [];
  for (const [name, service] of Object.entries(services)) {
    const before = cpuNow(service.child.pid!, db.postgresPid);
    const result = load(service.origin);
    const after = cpuNow(service.child.pid!, db.postgresPid);
    const perRequest = ((after.server - before.server) * 1000) / result.total;
    line.push(`rate limits ${name}: ${Math.round(result.requestsPerSecond)} req/s, p99 ${result.p99} ms, ${Math.round(perRequest)} us CPU a request, ${result.non2xx + result.errors + result.bodyErrors} not 2xx or with errors`);
  }
  console.log(`round ${round}: ${line.join('; ')}`);
}
await Promise.all(Object.values(services).map(stop));
await stopAll(db);
