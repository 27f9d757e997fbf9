// The audit chain as its tests handle it: a service with a signing key, events
// written as the service writes them, a tenant whose chain is signed at 5 and
// at 10, and what an attacker with write access to the database does next
// (every hash recomputed, the head set to match: they cannot sign).
import { auditKeyFromPem, generateAuditKeyPem, type AuditKey } from '../../src/modules/audit-chain/keys.ts';
import { signCheckpoints } from '../../src/modules/audit-chain/signing.ts';
import type { Sql } from '../../src/db/pool.ts';
import { createTestApp, createTestTenant, type TestApp, type TestTenant } from './app.ts';
import { useTestDatabase, type TestDatabase } from './db.ts';

export type AuditTestService = { readonly db: TestDatabase; readonly key: AuditKey; readonly api: TestApp };

/** The file's database, a fresh audit signing key and the service holding it (`poolSize` connections). */
export async function useAuditTestService(poolSize: number): Promise<AuditTestService> {
  const db = await useTestDatabase();
  const key = await auditKeyFromPem(generateAuditKeyPem());
  return { db, key, api: createTestApp(db.appPool(poolSize), { audit: { key } }) };
}

/** An audit event as the service writes one (`test.event` on `thing` n), in its own transaction; with a request id when given. */
export async function recordAuditEvent(sql: Sql, tenantId: string, n: number, requestId?: string): Promise<void> {
  const write = (tx: Sql) => tx`select app_private.record_audit(${tenantId}, 'test.event', 'thing', ${String(n)}, ${JSON.stringify({ n })}::jsonb)`;
  if (requestId === undefined) {
    await write(sql);
    return;
  }
  await sql.begin(async (tx) => {
    await tx`select set_config('app.request_id', ${requestId}, true)`;
    await write(tx as unknown as Sql);
  });
}

export async function auditHeadSeq(owner: Sql, tenantId: string): Promise<number> {
  const [head] = await owner<{ seq: string }[]>`select seq from app.audit_chain_heads where tenant_id = ${tenantId}`;
  return Number(head?.seq ?? 0);
}

export type ChainedTenantOptions = {
  /** Who signs the checkpoints (the owner, or the service's request role); the owner unless given. */
  readonly signer?: Sql;
  /** Each event n written with request id `req-<n>`. */
  readonly requestIds?: boolean;
};

/** A tenant whose chain holds seq 1..10 (its set-up's own events first), signed at 5 and at 10. */
export async function chainedTenant(owner: Sql, key: AuditKey, slug: string, options: ChainedTenantOptions = {}): Promise<TestTenant> {
  const tenant = await createTestTenant(owner, slug);
  const signer = options.signer ?? owner;
  const write = (n: number) => recordAuditEvent(owner, tenant.id, n, options.requestIds ? `req-${n}` : undefined);
  for (let n = (await auditHeadSeq(owner, tenant.id)) + 1; n <= 5; n++) await write(n);
  await signCheckpoints(signer, key);
  for (let n = 6; n <= 10; n++) await write(n);
  await signCheckpoints(signer, key);
  return tenant;
}

/**
 * A tenant whose chain runs from seq 1 to `length`: its set-up's events, then bulk ones of about `padBytes` of
 * details each, signed at its head.
 */
export async function tenantWithLongChain(owner: Sql, key: AuditKey, slug: string, length: number, padBytes = 0): Promise<TestTenant> {
  const tenant = await createTestTenant(owner, slug);
  // Chained in one loop with triggers off (through the trigger, one statement of thousands takes minutes).
  await owner.begin(async (tx) => {
    await tx`set local session_replication_role = replica`;
    await tx`select set_config('seed.tenant', ${tenant.id}, true), set_config('seed.length', ${String(length)}, true), set_config('seed.pad', ${String(Math.ceil(padBytes / 32))}, true)`;
    await tx.unsafe(`do $$
      declare t uuid := current_setting('seed.tenant')::uuid; last bigint := current_setting('seed.length')::bigint;
              pad int := current_setting('seed.pad')::int; h record; prev bytea; at timestamptz := clock_timestamp(); d jsonb;
      begin
        select * into h from app.audit_chain_heads where tenant_id = t;
        prev := h.hash;
        for n in h.seq + 1 .. last loop
          d := jsonb_build_object('n', n, 'pad', repeat(md5(n::text), pad));
          insert into app.audit_events (tenant_id, occurred_at, actor_kind, action, target_type, target_id, details, seq, prev_hash, hash)
          values (t, at, 'system', 'test.bulk', 'thing', n::text, d, n, prev,
                  app_private.audit_event_hash(t, n, at, 'system', null, null, 'test.bulk', 'thing', n::text, null, d, null, prev))
          returning hash into prev;
        end loop;
        update app.audit_chain_heads set seq = last, hash = prev where tenant_id = t;
      end $$`);
  });
  await signCheckpoints(owner, key);
  return tenant;
}

/** Statements run as a superuser behind the service, triggers off; $1 is the tenant. */
export async function tamper(owner: Sql, tenantId: string, statements: readonly string[]): Promise<void> {
  await owner.begin(async (tx) => {
    await tx`set local session_replication_role = replica`;
    for (const statement of statements) await tx.unsafe(statement, [tenantId]);
  });
}

/** What an attacker with write access does next: every hash of the tenant's chain recomputed from the start, the head set to match. */
export async function rehashChain(owner: Sql, tenantId: string): Promise<void> {
  await owner.begin(async (tx) => {
    await tx`set local session_replication_role = replica`;
    await tx`select set_config('tamper.tenant', ${tenantId}, true)`;
    await tx.unsafe(`do $$
      declare
        t uuid := current_setting('tamper.tenant')::uuid;
        e record;
        prev bytea := '\\x${'00'.repeat(32)}';
        last_seq bigint := 0;
      begin
        for e in select * from app.audit_events where tenant_id = t order by seq loop
          update app.audit_events x set prev_hash = prev,
            hash = app_private.audit_event_hash(t, e.seq, e.occurred_at, e.actor_kind, e.actor_user_id, e.actor_api_key_id, e.action,
                                                e.target_type, e.target_id, e.reason, e.details, e.request_id, prev)
          where x.tenant_id = t and x.seq = e.seq returning x.hash into prev;
          last_seq := e.seq;
        end loop;
        update app.audit_chain_heads set seq = last_seq, hash = prev where tenant_id = t;
      end $$`);
  });
}

/** Runs `attack` as the owner, triggers off, in a transaction rolled back afterwards, so one chain serves many attacks. */
export async function rolledBack(owner: Sql, attack: (tx: Sql) => Promise<void>): Promise<void> {
  const undo = new Error('undo');
  await owner
    .begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await attack(tx as unknown as Sql);
      throw undo;
    })
    .catch((error: unknown) => {
      if (error !== undo) throw error;
    });
}
