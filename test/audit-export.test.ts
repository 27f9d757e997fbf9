// tenancy audit export writes a chain as it reads it: a batch at a time
// through the chain's one statement (one snapshot), each batch written before
// the next is fetched, waiting while the output is full. Its lines are the
// ones the whole chain read at once gives (a purged start, tampered events,
// a broken link's target left out), whatever the batch; the memory it holds
// grows by a few batches, not by the chain. A reader that stalls past the
// deadline ends it, the snapshot released.
import v8 from 'node:v8';
import vm from 'node:vm';
import { Writable } from 'node:stream';
import postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { OperatorError, findTenant, type TenantRecord } from '../src/operator/repo.ts';
import { eventLine, exportAudit, verifyAudit } from '../src/modules/audit-chain/cli.ts';
import { auditKeyFromPem, generateAuditKeyPem, type AuditKey } from '../src/modules/audit-chain/keys.ts';
import { READ_BATCH, readTenantChain } from '../src/modules/audit-chain/repo.ts';
import { purgeExpired } from '../src/modules/audit-chain/signing.ts';
import { rehashChain, tamper, tenantWithLongChain } from './helpers/audit.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { freePort } from './helpers/local.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

const PEM = generateAuditKeyPem();
/** The key the export names in its header, as AUDIT_SIGNING_KEY gives it. */
const CONFIG = loadConfig({ NODE_ENV: 'test', AUDIT_SIGNING_KEY: PEM });
let db: TestDatabase;
let key: AuditKey;

beforeAll(async () => {
  db = await useTestDatabase();
  key = await auditKeyFromPem(PEM);
});

const B = READ_BATCH;

/** A sink keeping what is written, each write taking `delayMs` (a slow reader of the export). */
function sink(delayMs = 0): { out: Writable; text: () => string; queuedAtWrite: number[]; chunks: number[] } {
  const parts: string[] = [];
  const queuedAtWrite: number[] = [];
  const chunks: number[] = [];
  const out = new Writable({
    highWaterMark: 1024,
    write(chunk: Buffer, _encoding, done) {
      parts.push(chunk.toString());
      chunks.push(chunk.length);
      queuedAtWrite.push(out.writableLength);
      if (delayMs > 0) setTimeout(done, delayMs);
      else done();
    },
  });
  return { out, text: () => parts.join(''), queuedAtWrite, chunks };
}

async function exported(tenant: TenantRecord, batch?: number): Promise<string> {
  const { out, text } = sink();
  await exportAudit(db.owner, CONFIG, tenant, out, { batch });
  return text();
}

/** The export's lines with the header's time of export taken out (the rest must match byte for byte). */
const timeless = (text: string) => text.replace(/"exportedAt":"[^"]+"/, '"exportedAt":"-"');

describe('tenancy audit export', () => {
  it('a chain purged at its start and tampered in later batches: the lines of the whole chain read at once, in any batch size, and no column of the verifier', async () => {
    const length = 3 * B + 500;
    const seeded = await tenantWithLongChain(db.owner, key, 'export-long', length);
    // Every event 200 days old (hashed again: the purge hashes its last event again), kept 90 days: a purge of 700 signs an anchor.
    await tamper(db.owner, seeded.id, ["update app.audit_events set occurred_at = occurred_at - interval '200 days' where tenant_id = $1"]);
    await rehashChain(db.owner, seeded.id);
    await db.owner`update app.tenants set audit_retention_days = 90 where id = ${seeded.id}`;
    expect((await purgeExpired(db.owner, key, 700)).map((purged) => purged.throughSeq)).toEqual([700]);
    await tamper(db.owner, seeded.id, [
      `update app.audit_events set details = '{"n": 0}' where tenant_id = $1 and seq = ${2 * B + 10}`,
      // A link back: the statement computes where it points (linkedTo), which only the verifier reads.
      `update app.audit_events e set prev_hash = p.hash from app.audit_events p where e.tenant_id = $1 and e.seq = ${B + 5} and p.tenant_id = $1 and p.seq = ${B - 3}`,
    ]);
    const tenant = await findTenant(db.owner, seeded.id);

    const text = await exported(tenant);
    const lines = text.split('\n');
    expect(lines.pop()).toBe(''); // every line ends in a newline, the last too
    const parsed = lines.map((line) => JSON.parse(line) as { type: string; seq?: number });
    expect(parsed[0]).toEqual({ type: 'chain', chain: `tenant:${tenant.id}`, tenant: 'export-long', encoding: 'tenancy-audit-v2', exportedAt: expect.any(String) as string, publicKey: key.publicJwk });
    expect(parsed.slice(1, -2).map((line) => line.seq)).toEqual(Array.from({ length: length - 700 }, (_, i) => 701 + i));
    expect(parsed.slice(-2).map((line) => [line.type, line.seq])).toEqual([
      ['anchor', 700],
      ['checkpoint', length],
    ]);
    expect(text).not.toMatch(/linkedTo|"meta"/);

    // The events as the whole chain read at once holds them (what the export printed before it streamed).
    const whole = await readTenantChain(db.owner, tenant.id);
    expect(lines.slice(1, -2)).toEqual(whole.rows.map(eventLine));
    for (const batch of [1, 7, B - 1, 10 * B]) expect(timeless(await exported(tenant, batch)), `batches of ${batch}`).toBe(timeless(text));
  });

  it('waits for a slow reader: one batch written at a time, never the chain queued behind it', async () => {
    const seeded = await tenantWithLongChain(db.owner, key, 'export-slow', 2_000);
    const { out, text, queuedAtWrite, chunks } = sink(1);
    await exportAudit(db.owner, CONFIG, await findTenant(db.owner, seeded.id), out, { batch: 100 });
    expect(timeless(text())).toBe(timeless(await exported(await findTenant(db.owner, seeded.id))));
    expect(chunks.length).toBeGreaterThanOrEqual(20); // a header, 20 batches, the checkpoint
    // Written without waiting, every batch would be queued at once (the first write saw the whole export queued).
    expect(Math.max(...queuedAtWrite)).toBeLessThanOrEqual(Math.max(...chunks));
  });

  it('a reader that stalls past the deadline ends the export: an error saying so, the statement and its snapshot released', async () => {
    const seeded = await tenantWithLongChain(db.owner, key, 'export-stalled', 1_000);
    const tenant = await findTenant(db.owner, seeded.id);
    // A reader that takes the first chunk and never asks for more.
    let took = 0;
    const out = new Writable({
      highWaterMark: 1024,
      write(_chunk: Buffer, _encoding, _done) {
        took++;
      },
    });
    /** Client backends of this database (besides this one; autovacuum's workers hold snapshots too) holding a snapshot: what holds vacuum's horizon back. */
    const holding = async () =>
      (await db.owner<{ n: number }[]>`select count(*)::int as n from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
        and backend_xmin is not null`)[0]!.n;
    const started = Date.now();
    const exported = exportAudit(db.owner, CONFIG, tenant, out, { batch: 100 }, 1_000);
    const settled = exported.then(
      () => undefined,
      (error: unknown) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await holding(), 'the stalled export holds its snapshot').toBe(1);
    const error = await settled;
    expect(Date.now() - started).toBeLessThan(3_000);
    // OperatorError: the CLI prints its message as {"error": ...} on stderr and exits 1.
    expect(error).toBeInstanceOf(OperatorError);
    expect((error as Error).message).toBe('the audit chain could not be exported within 1 s: its reader was too slow, or the chain too long');
    expect(took).toBe(1);
    expect(await holding(), 'the snapshot is released').toBe(0);
    // The connection it used serves again (its statement closed, no transaction left open).
    await Promise.all(Array.from({ length: 8 }, () => db.owner`select 1`));
    expect(await holding()).toBe(0);
  }, 10_000);

  /** Client backends of this database (besides this one and `except`) holding a snapshot, or waiting for a lock. */
  const backends = async (except: number) =>
    (await db.owner<{ snapshot: number; waiting: number }[]>`select count(*) filter (where backend_xmin is not null)::int as snapshot,
        count(*) filter (where wait_event_type = 'Lock')::int as waiting
      from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and pid <> ${except} and backend_type = 'client backend'`)[0]!;

  it('a statement waiting for a lock past the deadline ends the export (and the verify): the deadline\'s error, the statement cancelled, nothing left waiting', async () => {
    const seeded = await tenantWithLongChain(db.owner, key, 'export-locked', 300);
    const tenant = await findTenant(db.owner, seeded.id);
    const holder = await db.owner.reserve();
    try {
      // A migration's lock on the events: the chain's statement waits for it in its first fetch.
      await holder`begin`;
      await holder`lock table app.audit_events in access exclusive mode`;
      const pid = (await holder<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
      const { out, text } = sink();
      const started = Date.now();
      const exported = exportAudit(db.owner, CONFIG, tenant, out, { batch: 100 }, 1_000).then(() => undefined, (error: unknown) => error);
      await expect.poll(async () => (await backends(pid)).waiting, { timeout: 900, interval: 20 }).toBe(1);
      const error = await exported;
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(error).toBeInstanceOf(OperatorError);
      expect((error as Error).message).toBe('the audit chain could not be exported within 1 s: its reader was too slow, or the chain too long');
      expect(text()).toBe(''); // not even the header: it comes with the statement's first rows
      expect(await backends(pid), 'cancelled: nothing waits, nothing holds a snapshot').toEqual({ snapshot: 0, waiting: 0 });

      const verified = verifyAudit(db.owner, CONFIG, tenant, undefined, 1_000).then(() => undefined, (error: unknown) => error);
      const verifyError = await verified;
      expect(verifyError).toBeInstanceOf(OperatorError);
      expect((verifyError as Error).message).toBe('the audit chain could not be verified within 1 s');
      expect(await backends(pid)).toEqual({ snapshot: 0, waiting: 0 });
    } finally {
      await holder`rollback`;
      holder.release();
    }
    // The connections serve again, and the export once the lock is gone.
    await Promise.all(Array.from({ length: 8 }, () => db.owner`select 1`));
    const { out, text } = sink();
    await exportAudit(db.owner, CONFIG, tenant, out, { batch: 100 }, 10_000);
    expect(text().split('\n')).toHaveLength(1 + 300 + 1 + 1); // the header, the events, the checkpoint, the final newline
  }, 10_000);

  it('a cancel that cannot be sent (its own connection refused) is no unhandled rejection: the export still ends with the deadline\'s error', async () => {
    const seeded = await tenantWithLongChain(db.owner, key, 'export-cancel-refused', 50);
    const tenant = await findTenant(db.owner, seeded.id);
    // A multi-host URL whose first host refuses (nothing listens there): the pool's connection goes on to the second,
    // postgres.js opens the CancelRequest's connection to the first (a standby down, a failed-over primary).
    const { host } = new URL(db.ownerUrl);
    const sql = postgres(db.ownerUrl.replace(`@${host}/`, `@127.0.0.1:${await freePort()},${host}/`), { max: 1, onnotice: () => {} });
    const unhandled: unknown[] = [];
    const note = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', note);
    const holder = await db.owner.reserve();
    try {
      await holder`begin`;
      await holder`lock table app.audit_events in access exclusive mode`;
      const pid = (await holder<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
      const started = Date.now();
      const exported = exportAudit(sql, CONFIG, tenant, sink().out, { batch: 10 }, 1_000).then(() => undefined, (error: unknown) => error);
      await expect.poll(async () => (await backends(pid)).waiting, { timeout: 900, interval: 20 }).toBe(1);
      // The lock held until the export has ended: the statement, never cancelled, waits on, and its close is not waited for past a second.
      const error = await exported;
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(error).toBeInstanceOf(OperatorError);
      expect((error as Error).message).toBe('the audit chain could not be exported within 1 s: its reader was too slow, or the chain too long');
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(unhandled, 'the refused cancel, rejected with no one to handle it').toEqual([]);
    } finally {
      process.off('unhandledRejection', note);
      await holder`rollback`.catch(() => {});
      holder.release();
      await sql.end({ timeout: 1 });
    }
    // Its backend, its client gone, ends and lets the snapshot go.
    await expect.poll(async () => (await backends(0)).snapshot, { timeout: 3_000, interval: 50 }).toBe(0);
  }, 10_000);

  it('a connection gone silent under the export (no answer, no reset) holds it no longer than its deadline and a second: the statement\'s close is not waited for past that', async () => {
    const seeded = await tenantWithLongChain(db.owner, key, 'export-silent', 1_000);
    const tenant = await findTenant(db.owner, seeded.id);
    const proxy = await startTcpProxy(Number(new URL(db.ownerUrl).port));
    const sql = postgres(proxy.url(db.ownerUrl), { max: 1, onnotice: () => {} });
    try {
      // A reader that takes the first chunk (the header, after the first batch arrived) and stalls; the path to the database goes silent then.
      const out = new Writable({
        highWaterMark: 1024,
        write(_chunk: Buffer, _encoding, _done) {
          proxy.silence();
        },
      });
      const started = Date.now();
      const error = await Promise.race([
        exportAudit(sql, CONFIG, tenant, out, { batch: 100 }, 1_000).then(() => undefined, (error: unknown) => error),
        new Promise((resolve) => setTimeout(resolve, 6_000, 'still waiting for the close')),
      ]);
      expect(error).toBeInstanceOf(OperatorError);
      expect((error as Error).message).toBe('the audit chain could not be exported within 1 s: its reader was too slow, or the chain too long');
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await sql.end({ timeout: 1 });
      await proxy.close();
    }
    // Its backend, its client gone, ends and lets the snapshot go.
    await expect.poll(async () => (await backends(0)).snapshot, { timeout: 3_000, interval: 50 }).toBe(0);
  }, 15_000);

  it('an output destroyed without an error ends the export at once (not at its deadline): an error saying so, the snapshot released', async () => {
    const seeded = await tenantWithLongChain(db.owner, key, 'export-destroyed', 1_000);
    const tenant = await findTenant(db.owner, seeded.id);
    // A reader that takes the first chunk and then goes away (a pipe's reader closed): destroyed, no 'error' event.
    let took = 0;
    const out = new Writable({
      highWaterMark: 1024,
      write(_chunk: Buffer, _encoding, _done) {
        if (++took === 1) setTimeout(() => out.destroy(), 200);
      },
    });
    out.on('error', () => {});
    const started = Date.now();
    const error = await exportAudit(db.owner, CONFIG, tenant, out, { batch: 100 }, 60_000).then(() => undefined, (error: unknown) => error);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(error).toBeInstanceOf(OperatorError);
    expect((error as Error).message).toBe('the audit export\'s output was closed before the export ended');
    expect(await backends(0), 'the snapshot is released').toEqual({ snapshot: 0, waiting: 0 });
    // An output already destroyed: the same, at once.
    const gone = new Writable({ write: (_chunk, _encoding, done) => done() });
    gone.destroy();
    const at = Date.now();
    const again = await exportAudit(db.owner, CONFIG, tenant, gone, { batch: 100 }, 60_000).then(() => undefined, (error: unknown) => error);
    expect(Date.now() - at).toBeLessThan(1_000);
    expect((again as Error).message).toBe('the audit export\'s output was closed before the export ended');
    expect(await backends(0)).toEqual({ snapshot: 0, waiting: 0 });
  }, 10_000);

  describe('memory of one batch', () => {
    // A full collection on demand (node --expose-gc, turned on from here), so what is measured is what is held.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // Outside the heap too: a string of a MiB or more made from a Buffer, and a Buffer, are external memory.
    const held = () => process.memoryUsage().heapUsed + process.memoryUsage().external;

    it('an export far larger than a batch holds a few batches: the memory it holds grows by a fraction of what it writes', async () => {
      const events = 16 * B;
      const seeded = await tenantWithLongChain(db.owner, key, 'export-large', events, 2048);
      const tenant = await findTenant(db.owner, seeded.id);
      const [row] = await db.owner<{ bytes: number }[]>`select sum(octet_length(details::text))::int as bytes from app.audit_events where tenant_id = ${tenant.id}`;
      const bytes = row!.bytes;
      expect(bytes).toBeGreaterThan(32e6);
      let written = 0;
      const out = new Writable({
        write(chunk: Buffer, _encoding, done) {
          written += chunk.length;
          done();
        },
      });
      gc();
      const baseline = held();
      let peak = 0;
      const sampler = setInterval(() => {
        gc();
        peak = Math.max(peak, held() - baseline);
      }, 250);
      try {
        await exportAudit(db.owner, CONFIG, tenant, out);
      } finally {
        clearInterval(sampler);
      }
      expect(written).toBeGreaterThan(2 * bytes); // each event's details twice: parsed and as the text its hash covers
      // A few batches' worth (a batch's rows, its text and that text as a Buffer, the next rows arriving), ~4.6 MB of
      // text each: 10-21 MB measured here alone, up to 41 MB in the whole suite on 2 busy cores (collections are late
      // there); the whole chain held (the export before it streamed), 115 MB: 0.8 of the 73 MB written tells them apart.
      // (Without the wait for 'drain', 52 MB: the test above, a slow reader, is the one that catches that.)
      expect(peak, `the memory held grew by up to ${Math.round(peak / 1e6)} MB while exporting ${Math.round(written / 1e6)} MB`).toBeLessThan(written * 0.8);
    }, 60_000);
  });
});
