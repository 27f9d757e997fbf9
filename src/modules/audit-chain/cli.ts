// The CLI's audit commands (src/cli/main.ts): verify a chain (exit 1 when it
// does not verify), export it as NDJSON with its signed checkpoints and
// anchors, sign checkpoints now, set a tenant's audit retention. They run on
// the owner connection with the key beside the service (AUDIT_SIGNING_KEY…).
import { once } from 'node:events';
import { readFile, stat } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { Config } from '../../config.ts';
import type { Queryable } from '../../db/pool.ts';
import { OperatorError, type TenantRecord } from '../../operator/repo.ts';
import { loadAuditKey, type AuditKey } from './keys.ts';
import { readPlatformChainBatches, readPlatformChainRows, readTenantChainBatches, readTenantChainRows, type ChainRows, type ReadOptions } from './repo.ts';
import { signCheckpoints, type RefusedCheckpoint } from './signing.ts';
import { VerificationDeadlineError, verifyChainBatches, type ChainBatches, type Verification } from './verify.ts';

/**
 * How long `audit verify` and `audit export` may take, reading and hashing or writing (a chain of tens of millions of
 * events), the export's waits for a slow reader included; past it, exit 1 (the chain's statement, and the snapshot it
 * holds back vacuum with, released).
 */
export const AUDIT_COMMAND_TIMEOUT_MS = 30 * 60_000;

/** The largest file of checkpoints `--checkpoints` reads. */
const STATEMENTS_FILE_BYTES = 64 << 20;
const COMPACT_JWS = /^[\w-]+\.[\w-]+\.[\w-]+$/;

type KeyConfig = Pick<Config, 'audit' | 'production' | 'dataDir'>;

/** Signed statements kept outside the database: an export (lines with a `jws`) or one compact JWS a line. */
export async function readStatementsFile(file: string): Promise<string[]> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch {
    throw new OperatorError(`cannot read --checkpoints ${file}`);
  }
  if (size > STATEMENTS_FILE_BYTES) throw new OperatorError(`--checkpoints ${file} is larger than ${STATEMENTS_FILE_BYTES >> 20} MiB`);
  const statements: string[] = [];
  for (const line of (await readFile(file, 'utf8')).split('\n').map((text) => text.trim())) {
    if (COMPACT_JWS.test(line)) statements.push(line);
    else if (line.startsWith('{')) {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        throw new OperatorError(`--checkpoints ${file} has a line that is neither JSON nor a compact JWS`);
      }
      const jws = (value as { jws?: unknown }).jws;
      if (typeof jws === 'string' && COMPACT_JWS.test(jws)) statements.push(jws);
    } else if (line !== '') {
      throw new OperatorError(`--checkpoints ${file} has a line that is neither JSON nor a compact JWS`);
    }
  }
  return statements;
}

export type ChainVerification = Verification & { readonly chain: string; readonly tenant: string | null; readonly signed: boolean };

/** `tenancy audit verify`: a tenant's chain (or the platform's, without a tenant). */
export async function verifyAudit(
  sql: Queryable,
  config: KeyConfig,
  tenant: TenantRecord | undefined,
  checkpointsFile: string | undefined,
  timeoutMs = AUDIT_COMMAND_TIMEOUT_MS,
): Promise<ChainVerification> {
  const key = await loadAuditKey(config);
  const extra = checkpointsFile ? await readStatementsFile(checkpointsFile) : [];
  const deadline = Date.now() + timeoutMs;
  try {
    // A batch at a time: a chain of tens of millions of events in the memory of one batch.
    const verify = async (input: ChainBatches) => ({ chain: input.chain, tenant: tenant?.slug ?? null, signed: key !== undefined, ...(await verifyChainBatches(input, key, { deadline })) });
    return await (tenant ? readTenantChainBatches(sql, tenant.id, extra, { deadline }, verify) : readPlatformChainBatches(sql, extra, { deadline }, verify));
  } catch (error) {
    if (error instanceof VerificationDeadlineError) throw new OperatorError(`the audit chain could not be verified within ${timeoutMs / 1000} s`);
    throw error;
  }
}

type ExportedRow = Record<string, unknown> & { seq: string; prevHash: Buffer; hash: Buffer; details: string };

/** An event's export line: its fields, the details parsed and as the text its hash covers, the links in hex. */
export function eventLine(row: ExportedRow): string {
  const { seq, prevHash, hash, details, ...fields } = row;
  return JSON.stringify({ type: 'event', seq: Number(seq), ...fields, details: JSON.parse(details) as unknown, detailsText: details, prevHash: prevHash.toString('hex'), hash: hash.toString('hex') });
}

/**
 * Writes `text`, and waits while `out` holds more than its buffer (a slow reader of the export holds the cursor, not
 * memory), until the deadline at most: a reader that stalls must not hold the chain's snapshot open for ever. An
 * output destroyed (before or while it waits) ends the export at once: OperatorError.
 */
async function write(out: Writable, text: string, deadline: number): Promise<void> {
  if (out.destroyed) throw outputClosed();
  if (out.write(text)) return;
  const stop = new AbortController();
  let late = false;
  const timer = setTimeout(() => ((late = true), stop.abort()), Math.max(0, deadline - Date.now()));
  try {
    // 'close' too: an output destroyed without an 'error' (its reader gone) never drains, and would hold until the deadline.
    await Promise.race([once(out, 'drain', { signal: stop.signal }), once(out, 'close', { signal: stop.signal })]);
  } catch (error) {
    if (late) throw new VerificationDeadlineError();
    throw error;
  } finally {
    clearTimeout(timer);
    stop.abort(); // the other wait's listeners
  }
  if (out.destroyed) throw outputClosed();
}

const outputClosed = () => new OperatorError("the audit export's output was closed before the export ended");

/**
 * `tenancy audit export`: NDJSON lines to `out`, each ending in a newline: a header, every event with the text its
 * hash covers, then the signed statements. Read a batch at a time through the chain's one statement (one snapshot)
 * and written as each batch arrives: memory of a batch, whatever the chain's length.
 */
export async function exportAudit(
  sql: Queryable,
  config: KeyConfig,
  tenant: TenantRecord | undefined,
  out: Writable,
  options: Pick<ReadOptions, 'batch'> = {},
  timeoutMs = AUDIT_COMMAND_TIMEOUT_MS,
): Promise<void> {
  const key: AuditKey | undefined = await loadAuditKey(config);
  const deadline = Date.now() + timeoutMs;
  const exportRows = async ({ chain, meta, batches }: ChainRows<ExportedRow>) => {
    const header = {
      type: 'chain',
      chain,
      tenant: tenant?.slug ?? null,
      encoding: tenant ? 'tenancy-audit-v2' : 'tenancy-platform-audit-v2',
      exportedAt: new Date().toISOString(),
      publicKey: key?.publicJwk ?? null,
    };
    await write(out, `${JSON.stringify(header)}\n`, deadline);
    for await (const rows of batches) if (rows.length > 0) await write(out, `${rows.map(eventLine).join('\n')}\n`, deadline);
    const statements = meta.statements.map((statement) => JSON.stringify({ type: statement.kind, seq: statement.seq, signedAt: statement.signedAt, keyId: statement.keyId, jws: statement.jws }));
    if (statements.length > 0) await write(out, `${statements.join('\n')}\n`, deadline);
  };
  try {
    await (tenant ? readTenantChainRows(sql, tenant.id, { ...options, deadline }, exportRows) : readPlatformChainRows(sql, { ...options, deadline }, exportRows));
  } catch (error) {
    if (error instanceof VerificationDeadlineError) throw new OperatorError(`the audit chain could not be exported within ${timeoutMs / 1000} s: its reader was too slow, or the chain too long`);
    throw error;
  }
}

/** `tenancy audit checkpoint`: signs every chain head newer than its newest checkpoint, now. */
export async function checkpointNow(sql: Queryable, config: KeyConfig) {
  const key = await loadAuditKey(config);
  if (!key) throw new OperatorError('no audit signing key: set AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE (production generates none)');
  const refused: RefusedCheckpoint[] = [];
  const signed = await signCheckpoints(sql, key, 100_000, refused);
  return { keyId: key.keyId, signed: signed.map(({ chain, seq, hash, stored }) => ({ chain, seq, hash, stored })), refused };
}

/** `tenancy audit retention`: days (at least 90) or null to keep every event; recorded in both logs. */
export async function setAuditRetention(sql: Queryable, tenant: TenantRecord, days: number | null, actor: string) {
  try {
    await sql`update app.tenants set audit_retention_days = ${days} where id = ${tenant.id}`;
  } catch (error) {
    if ((error as { constraint_name?: string }).constraint_name === 'tenants_audit_retention_floor') {
      throw new OperatorError('--days must be from 90 to 36600, or keep');
    }
    throw error;
  }
  const details = sql.json({ auditRetentionDays: days });
  await sql`insert into app_private.operator_audit_events (actor, action, target_tenant_id, details)
            values (${actor}, 'tenant.set_audit_retention', ${tenant.id}, ${details})`;
  await sql`select app_private.record_audit(${tenant.id}, 'tenant.set_audit_retention', 'tenant', ${tenant.id}, ${details}, null, 'operator')`;
  return { tenant: tenant.slug, auditRetentionDays: days };
}
