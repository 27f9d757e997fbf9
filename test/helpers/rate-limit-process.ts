// One process of the cross-process rate limit test (test/rate-limit-accuracy.test.ts):
// its own pool and RateLimiter on the shared database, taking tokens for one
// bucket as fast as it can for `durationMs`, then printing what it was granted.
// Every process starts when the test releases the advisory lock `barrier`.
// Usage: node rate-limit-process.ts <appUrl> <tenantId> <apiKeyId|-> <barrier> <durationMs>
import { createPool } from '../../src/db/pool.ts';
import { RateLimiter } from '../../src/tenancy/rate-limit.ts';

const [appUrl, tenantId, apiKey, barrier, durationMs] = process.argv.slice(2) as [string, string, string, string, string];
const sql = createPool(appUrl, { max: 1, prepare: true });
const errors: string[] = [];
const limiter = new RateLimiter(sql, { onError: (error) => errors.push(String(error)) });
const apiKeyId = apiKey === '-' ? null : apiKey;

await sql`select pg_advisory_lock_shared(${Number(barrier)})`; // waits for the test's go
const startedAt = Date.now();
const end = startedAt + Number(durationMs);
let admitted = 0;
let refused = 0;
let lastAdmittedAt = 0;
while (Date.now() < end) {
  for (let i = 0; i < 20; i++) {
    const taken = limiter.take(tenantId, apiKeyId);
    const decision = taken instanceof Promise ? await taken : taken;
    if (decision.ok) {
      admitted += 1;
      lastAdmittedAt = Date.now();
    } else {
      refused += 1;
    }
  }
  await new Promise((resolve) => setImmediate(resolve)); // let leases land, like a server between requests
}
await limiter.close();
await sql.end({ timeout: 5 });
process.stdout.write(`${JSON.stringify({ admitted, refused, startedAt, lastAdmittedAt, errors })}\n`);
