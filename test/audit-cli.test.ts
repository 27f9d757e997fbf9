// The audit commands of the CLI (verify exits 1 on a tampered chain, export is
// NDJSON that verifies again from outside, checkpoint signs now, retention has
// a floor and is audited) and where the signing key comes from.
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';
import { auditKeyFromPem, generateAuditKeyPem, loadAuditKey } from '../src/modules/audit-chain/keys.ts';
import { createTestTenant, TEST_TOKENS, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { runCli } from './helpers/process.ts';

let db: TestDatabase;
let env: Record<string, string>;
let tenant: TestTenant;
let dir: string;

beforeAll(async () => {
  db = await useTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'tenancy-audit-'));
  const keyFile = path.join(dir, 'audit.pem');
  await writeFile(keyFile, generateAuditKeyPem(), { mode: 0o600 });
  env = { DATABASE_URL: db.ownerUrl, DATABASE_APP_URL: db.appUrl, JWT_SECRET: TEST_TOKENS.secret!, AUDIT_SIGNING_KEY_FILE: keyFile, TENANCY_DATA_DIR: dir };
  tenant = await createTestTenant(db.owner, 'cli-audit');
});

type Line = { type: string; seq?: number; jws?: string; publicKey?: { kty: string; crv: string; x: string; d?: string } };

describe('tenancy audit', () => {
  it('checkpoint signs, verify answers ok, export holds the events and the checkpoint; a deletion exits 1', async () => {
    const signed = await runCli(['audit', 'checkpoint'], env);
    expect(signed.code, signed.stderr).toBe(0);
    expect((signed.json as { signed: { chain: string }[] }).signed.map((s) => s.chain)).toContain(`tenant:${tenant.id}`);

    const [{ n }] = await db.owner<[{ n: number }]>`select count(*)::int as n from app.audit_events where tenant_id = ${tenant.id}`;
    expect(n).toBeGreaterThan(0);
    const verified = await runCli(['audit', 'verify', '--tenant', 'cli-audit'], env);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.json).toMatchObject({ ok: true, chain: `tenant:${tenant.id}`, tenant: 'cli-audit', signed: true, events: n, checkpoint: { seq: n } });

    const exported = await runCli(['audit', 'export', '--tenant', tenant.id], env);
    expect(exported.code, exported.stderr).toBe(0);
    const lines = exported.stdout.trim().split('\n').map((line) => JSON.parse(line) as Line);
    expect(lines.map((line) => line.type)).toEqual(['chain', ...Array<string>(n).fill('event'), 'checkpoint']);
    expect(lines[0]!.publicKey).toMatchObject({ kty: 'OKP', crv: 'Ed25519' });
    expect(lines[0]!.publicKey!.d).toBeUndefined(); // never the private key
    const exportFile = path.join(dir, 'export.ndjson');
    await writeFile(exportFile, exported.stdout);

    // A DBA removes the whole chain, its checkpoints and its head: only the export still knows.
    await db.owner.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`delete from app.audit_events where tenant_id = ${tenant.id}`;
      await tx`delete from app.audit_checkpoints where tenant_id = ${tenant.id}`;
      await tx`delete from app.audit_chain_heads where tenant_id = ${tenant.id}`;
    });
    expect((await runCli(['audit', 'verify', '--tenant', 'cli-audit'], env)).code).toBe(0);
    const caught = await runCli(['audit', 'verify', '--tenant', 'cli-audit', '--checkpoints', exportFile], env);
    expect(caught.code).toBe(1);
    expect(JSON.parse(caught.stdout)).toMatchObject({ ok: false, tamper: 'CHAIN_DELETED', firstBadSeq: 1 });
  });

  it('retention: the floor, keep, and both logs record the change', async () => {
    const low = await runCli(['audit', 'retention', '--tenant', 'cli-audit', '--days', '30'], env);
    expect(low.code).toBe(1);
    expect(low.json).toEqual({ error: '--days must be from 90 to 36600, or keep' });
    const bad = await runCli(['audit', 'retention', '--tenant', 'cli-audit', '--days', 'soon'], env);
    expect(bad.code).toBe(2);
    expect(await runCli(['audit', 'retention', '--tenant', 'cli-audit', '--days', '365'], env)).toMatchObject({ code: 0, json: { tenant: 'cli-audit', auditRetentionDays: 365 } });
    expect(await runCli(['audit', 'retention', '--tenant', 'cli-audit', '--days', 'keep'], env)).toMatchObject({ code: 0, json: { auditRetentionDays: null } });
    const platform = await db.owner`select action, details from app_private.operator_audit_events where target_tenant_id = ${tenant.id} and action = 'tenant.set_audit_retention' order by seq`;
    expect(platform).toEqual([
      { action: 'tenant.set_audit_retention', details: { auditRetentionDays: 365 } },
      { action: 'tenant.set_audit_retention', details: { auditRetentionDays: null } },
    ]);
    const own = await db.owner`select count(*)::int as n from app.audit_events where tenant_id = ${tenant.id} and action = 'tenant.set_audit_retention'`;
    expect(own).toEqual([{ n: 2 }]);
  });

  it('the platform chain verifies, and an edit to it exits 1', async () => {
    expect((await runCli(['audit', 'checkpoint'], env)).code).toBe(0);
    const verified = await runCli(['platform-audit', 'verify'], env);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.json).toMatchObject({ ok: true, chain: 'platform', tenant: null });
    const exported = await runCli(['platform-audit', 'export'], env);
    expect(exported.stdout.split('\n')[0]).toContain('"chain":"platform"');
    await db.owner.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`update app_private.operator_audit_events set reason = 'nothing happened' where seq = 1`;
    });
    const caught = await runCli(['platform-audit', 'verify'], env);
    expect(caught.code).toBe(1);
    expect(JSON.parse(caught.stdout)).toMatchObject({ ok: false, tamper: 'EDITED', firstBadSeq: 1 });
  });

  it('usage errors exit 2; a checkpoints file that is not one exits 1', async () => {
    expect((await runCli(['audit', 'verify'], env)).code).toBe(2);
    expect((await runCli(['audit', 'export', '--tenant', 'cli-audit', '--days', '90'], env)).code).toBe(2);
    const junk = path.join(dir, 'junk.txt');
    await writeFile(junk, 'not a checkpoint\n');
    expect(await runCli(['audit', 'verify', '--tenant', 'cli-audit', '--checkpoints', junk], env)).toMatchObject({
      code: 1,
      json: { error: `--checkpoints ${junk} has a line that is neither JSON nor a compact JWS` },
    });
  });
});

describe('the signing key', () => {
  it('outside production one is generated once into the data folder, readable by its owner only', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'tenancy-audit-key-'));
    const config = loadConfig({ TENANCY_DATA_DIR: dataDir });
    const first = await loadAuditKey(config);
    const again = await loadAuditKey(config);
    expect(first!.keyId).toBe(again!.keyId);
    expect((await stat(path.join(dataDir, 'audit-signing-key.pem'))).mode & 0o777).toBe(0o600);
    expect(await loadAuditKey(loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40), TENANCY_DATA_DIR: dataDir }))).toBeUndefined();
  });

  it('AUDIT_SIGNING_KEY must be an Ed25519 PEM, exclusive with the file; the interval and batch have limits', async () => {
    const pem = generateAuditKeyPem();
    const key = await loadAuditKey(loadConfig({ AUDIT_SIGNING_KEY: pem.replaceAll('\n', '\\n') }));
    expect(key!.keyId).toBe((await auditKeyFromPem(pem)).keyId);
    expect(() => loadConfig({ AUDIT_SIGNING_KEY: 'not a key' })).toThrow(ConfigError);
    expect(() => loadConfig({ AUDIT_SIGNING_KEY: pem, AUDIT_SIGNING_KEY_FILE: '/x' })).toThrow(/exclusive/);
    expect(() => loadConfig({ AUDIT_CHECKPOINT_INTERVAL: '5s' })).toThrow(/AUDIT_CHECKPOINT_INTERVAL/);
    expect(() => loadConfig({ AUDIT_PURGE_BATCH: '20000' })).toThrow(/AUDIT_PURGE_BATCH/);
    expect(loadConfig({}).audit).toEqual({ signingKey: undefined, signingKeyFile: undefined, checkpointIntervalSeconds: 60, purgeBatch: 1000 });
  });

  it('a statement signed by the key verifies; changed by one character it does not', async () => {
    const key = await auditKeyFromPem(generateAuditKeyPem());
    const jws = await key.sign({ typ: 'checkpoint', chain: 'platform', seq: 3, hash: 'ab'.repeat(32), at: new Date(0).toISOString() });
    expect(await key.verify(jws)).toMatchObject({ seq: 3 });
    const [header, payload, signature] = jws.split('.');
    const tampered = Buffer.from(payload!, 'base64url').toString().replace('"seq":3', '"seq":4');
    await expect(key.verify(`${header}.${Buffer.from(tampered).toString('base64url')}.${signature}`)).rejects.toThrow(/not signed by the audit signing key/);
    expect(await readFile(path.join(dir, 'audit.pem'), 'utf8')).toContain('BEGIN PRIVATE KEY');
  });
});
