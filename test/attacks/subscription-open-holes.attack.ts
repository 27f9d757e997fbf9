// Live-event attacks that still succeed (red team of issue 15), each written as
// the test that passes once the hole is closed. Not part of `npm test`:
//   npx vitest run -c test/attacks/vitest.config.ts
import { afterAll, beforeAll, expect, it } from 'vitest';
import { newApiKey } from '../../src/auth/secrets.ts';
import type { Sql } from '../../src/db/pool.ts';
import { encodeGlobalId } from '../../src/nodes/global-id.ts';
import { createTestTenant, insertAgents } from '../helpers/app.ts';
import { useTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { errorCodes, sleep, sse, startLiveServer, type LiveServer } from '../helpers/live.ts';

let db: TestDatabase;
let sql: Sql;
let live: LiveServer;

beforeAll(async () => {
  db = await useTestDatabase();
  sql = db.appPool(4);
  live = await startLiveServer(sql, db.appUrl);
});

afterAll(async () => {
  await live?.close();
});

// An API key's expires_at is checked only by begin_api_key_request, i.e. at the
// next re-read or access change: a stream of a tenant where nothing changes
// outlives its key indefinitely (a token's exp has a timer; a key's has none).
it("an API key's expiry ends its stream (UNAUTHENTICATED) within 1 s, and the expired key cannot subscribe again", async () => {
  const tenant = await createTestTenant(db.owner, 'hole-key-expiry');
  const [agent] = (await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, ['runner'])) as [string];
  const [session] = await db.owner<{ id: string }[]>`insert into app.sessions (tenant_id, agent_id) values (${tenant.id}, ${agent}) returning id`;
  const key = newApiKey();
  const [row] = await db.owner<{ expires: Date }[]>`
    insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by, expires_at)
    values (${tenant.id}, 'short', ${key.prefix}, ${key.hash}, 'VIEWER', ${tenant.members.LEAD.userId}, now() + interval '2 seconds')
    returning expires_at as expires`;
  const stream = await sse(live.origin, 'subscription ($id: ID!) { sessionActivity(sessionId: $id) { kind id } }', {
    headers: { 'x-api-key': key.secret },
    variables: { id: encodeGlobalId('Session', session!.id) },
  });
  expect(stream.status).toBe(200);
  await sleep(Math.max(0, row!.expires.getTime() - Date.now()) + 1_000);
  expect(stream.endedAt, 'the stream outlived its key').toBeDefined();
  expect(errorCodes(stream.results.at(-1))).toEqual(['UNAUTHENTICATED']);
  const again = await sse(live.origin, 'subscription { members { kind } }', { headers: { 'x-api-key': key.secret } });
  expect(again.status).toBe(401);
  stream.close();
});
