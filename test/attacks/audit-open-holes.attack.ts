// Audit log attacks that still succeed (red team of issue 14), each written as
// the test that passes once the hole is closed. Not part of `npm test`:
//   npx vitest run -c test/attacks/vitest.config.ts
import { beforeAll, expect, it } from 'vitest';
import type { AuditKey } from '../../src/modules/audit-chain/keys.ts';
import { readTenantChain } from '../../src/modules/audit-chain/repo.ts';
import { signCheckpoints } from '../../src/modules/audit-chain/signing.ts';
import { verifyChain } from '../../src/modules/audit-chain/verify.ts';
import type { Sql } from '../../src/db/pool.ts';
import { chainedTenant, recordAuditEvent, rehashChain, useAuditTestService } from '../helpers/audit.ts';
import type { TestDatabase } from '../helpers/db.ts';

let db: TestDatabase;
let key: AuditKey;
let service: Sql;
let tenants = 0;

beforeAll(async () => {
  ({ db, key } = await useAuditTestService(2));
  service = db.appPool(2); // the sweep runs on the request role
});

const record = (tenantId: string, n: number) => recordAuditEvent(db.owner, tenantId, n);
const verify = async (tenantId: string) => verifyChain((await readTenantChain(db.owner, tenantId)).input, key);

async function rewriteAndRehash(tenantId: string): Promise<void> {
  await db.owner.begin(async (tx) => {
    await tx`set local session_replication_role = replica`;
    await tx`update app.audit_events set details = '{"n": "rewritten"}' where tenant_id = ${tenantId} and seq = 3`;
  });
  await rehashChain(db.owner, tenantId);
}

it('HOLE 1 (residual, inherent): the service checks a chain holds its newest checkpoint by asking the database; a superuser who makes the database lie has the rewrite signed, and 16 sweeps later the contradicting checkpoints are out of the read', async () => {
  const tenant = await chainedTenant(db.owner, key, `open-${++tenants}`, { signer: service });
  await rewriteAndRehash(tenant.id);
  // The check of migration 000018, lied to: the "hash the event has now" answered from the checkpoint itself.
  await db.owner.unsafe(`create or replace function app_private.audit_checkpoints_due(max_chains integer default 1000)
    returns table (tenant_id uuid, seq bigint, hash bytea, first_seq bigint, first_hash bytea, purged_through bigint, signed_jws text, signed_event_hash bytea)
    language sql stable security definer set search_path = '' as $$
      select h.tenant_id, h.seq, h.hash, h.purged_through + 1,
             (select e.hash from app.audit_events e where e.tenant_id = h.tenant_id and e.seq = h.purged_through + 1),
             h.purged_through, c.jws, c.hash
      from app.audit_chain_heads h
      left join lateral (select c.seq, c.jws, c.hash from app.audit_checkpoints c
                         where c.tenant_id = h.tenant_id and c.kind = 'checkpoint' order by c.seq desc limit 1) c on true
      where h.seq > coalesce(c.seq, 0) and h.seq > h.purged_through order by h.tenant_id limit max_chains $$`);
  expect(await verify(tenant.id)).toMatchObject({ ok: false }); // caught now: checkpoints 5 and 10 disagree (commit ad07cd2) ...
  for (let n = 11; n <= 27; n++) {
    await record(tenant.id, n);
    await signCheckpoints(service, key); // ... but the sweep signs every rewritten head
  }
  const result = await verify(tenant.id);
  expect(result, result.message).toMatchObject({ ok: false }); // fails: ok, "signed through 27" (a copy kept outside still catches it)
});
