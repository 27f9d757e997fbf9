// The fair-share guard as tests use it: production defaults (a pool of 10),
// its own connection to the file's database, limits set behind the API.
import { loadConfig, type FairShareSettings } from '../../src/config.ts';
import type { Sql } from '../../src/db/pool.ts';
import { createFairShareGuard, type FairShareGuard, type FairShareOptions } from '../../src/tenancy/fair-share.ts';
import { atFileEnd, type TestDatabase } from './db.ts';

/** What a service with DB_POOL_MAX=10 and nothing else set would use. */
export const TEST_FAIR_SHARE: FairShareSettings = loadConfig({ NODE_ENV: 'test' }).fairShare;

export function createTestFairShare(db: TestDatabase, settings: Partial<FairShareSettings> = {}, options: FairShareOptions = {}): FairShareGuard {
  const guard = createFairShareGuard(db.appPool(1), { ...TEST_FAIR_SHARE, ...settings }, options);
  atFileEnd(() => guard.close());
  return guard;
}

/** Operator overrides of a tenant's request rates (a minute; null: the plan's). */
export async function setRequestRates(owner: Sql, tenantId: string, rates: { perMinute?: number | null; apiKeyPerMinute?: number | null }): Promise<void> {
  for (const [quota, value] of [['requests_per_minute', rates.perMinute], ['api_key_requests_per_minute', rates.apiKeyPerMinute]] as const) {
    if (value === undefined) continue;
    await owner`update app.quotas set limit_override = ${value} where tenant_id = ${tenantId} and quota = ${quota}`;
  }
}
