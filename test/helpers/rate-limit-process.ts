// One process of the cross-process rate limit test (test/rate-limit-accuracy.test.ts):
// its own pool and RateLimiter on the shared database, asking for tokens of
// one bucket at `perSecond` for `durationMs` (each 10 ms tick asks, at once,
// for what is due, as concurrent requests would), then printing what it was
// granted. Every process starts when the test releases the advisory lock `barrier`.
// Usage: node rate-limit-process.ts <appUrl> <tenantId> <apiKeyId|-> <barrier> <durationMs> <perSecond>
import { createPool } from '../../src/db/pool.ts';
import { RateLimiter } from '../../src/tenancy/rate-limit.ts';

const [appUrl, tenantId, apiKey, barrier, durationMs, perSecond] = process.argv.slice(2) as [string, string, string, string, string, string];
const sql = createPool(appUrl, { max: 1, prepare: true });
const errors: string[] = [];
const limiter = new RateLimiter(sql, { onError: (error) => errors.push(String(error)) });
const apiKeyId = apiKey === '-' ? null : apiKey;

await sql`select pg_advisory_lock_shared(${Number(barrier)})`; // waits for the test's go
const startedAt = Date.now();
const end = startedAt + Number(durationMs);
let asked = 0;
let admitted = 0;
let refused = 0;
while (Date.now() < end) {
  const due = Math.floor(((Date.now() - startedAt) * Number(perSecond)) / 1000) - asked;
  asked += due;
  const decisions = await Promise.all(Array.from({ length: due }, () => Promise.resolve(limiter.take(tenantId, apiKeyId))));
  for (const decision of decisions) {
    if (decision.ok) admitted += 1;
    else refused += 1;
  }
  await new Promise((resolve) => setTimeout(resolve, 10));
}
await limiter.close();
await sql.end({ timeout: 5 });
process.stdout.write(`${JSON.stringify({ asked, admitted, refused, startedAt, errors })}\n`);
