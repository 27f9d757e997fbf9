// The key that signs audit checkpoints and retention anchors: Ed25519, held
// beside the service and never by the database (AUDIT_SIGNING_KEY, or the PEM
// file AUDIT_SIGNING_KEY_FILE; outside production, a key generated once in the
// data folder). Signed statements are compact JWS (jose, EdDSA) whose payload
// names the chain, the seq and hash they vouch for, and when.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, CompactSign, compactVerify, exportJWK, type JWK } from 'jose';
import type { Config } from '../../config.ts';

/** A checkpoint: the chain's head (and the first event it still keeps). An anchor: the events up to seq were purged. */
export type SignedStatement = {
  readonly typ: 'checkpoint' | 'anchor';
  /** `tenant:<uuid>` or `platform`. */
  readonly chain: string;
  readonly seq: number;
  /** Hex SHA-256 of the event at seq. */
  readonly hash: string;
  /** Checkpoints: the oldest event kept when it was signed (its hash null when none was). */
  readonly first?: { readonly seq: number; readonly hash: string | null };
  /** ISO time of signing. */
  readonly at: string;
};

export class AuditSignatureError extends Error {
  override name = 'AuditSignatureError';
}

const JWS_TYPE = 'tenancy-audit+jws';

export type AuditKey = {
  /** The public key's JWK thumbprint (RFC 7638): the `kid` of every JWS it signs. */
  readonly keyId: string;
  readonly publicJwk: JWK;
  sign(statement: SignedStatement): Promise<string>;
  /** The statement a JWS carries, when this key signed it; AuditSignatureError otherwise. */
  verify(jws: string): Promise<SignedStatement>;
};

export async function auditKeyFromPem(pem: string): Promise<AuditKey> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new AuditSignatureError('the audit signing key is not a PEM private key');
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new AuditSignatureError('the audit signing key must be an Ed25519 key');
  const publicKey = createPublicKey(privateKey);
  const publicJwk = await exportJWK(publicKey);
  const keyId = await calculateJwkThumbprint(publicJwk);
  return {
    keyId,
    publicJwk: { ...publicJwk, kid: keyId, alg: 'EdDSA', use: 'sig' },
    sign: (statement) =>
      new CompactSign(Buffer.from(JSON.stringify(statement))).setProtectedHeader({ alg: 'EdDSA', kid: keyId, typ: JWS_TYPE }).sign(privateKey),
    async verify(jws) {
      let verified: Awaited<ReturnType<typeof compactVerify>>;
      try {
        verified = await compactVerify(jws, publicKey, { algorithms: ['EdDSA'] });
      } catch {
        throw new AuditSignatureError('not signed by the audit signing key');
      }
      if (verified.protectedHeader.typ !== JWS_TYPE) throw new AuditSignatureError(`a JWS of another type (${String(verified.protectedHeader.typ)})`);
      return parseStatement(Buffer.from(verified.payload).toString('utf8'));
    },
  };
}

function parseStatement(text: string): SignedStatement {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AuditSignatureError('a signed audit statement that is not JSON');
  }
  const statement = value as Partial<SignedStatement>;
  const hex = (hash: unknown) => typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash);
  const ok =
    (statement.typ === 'checkpoint' || statement.typ === 'anchor') &&
    typeof statement.chain === 'string' &&
    Number.isSafeInteger(statement.seq) && statement.seq! > 0 &&
    hex(statement.hash) &&
    typeof statement.at === 'string' &&
    (statement.first === undefined || (Number.isSafeInteger(statement.first.seq) && (statement.first.hash === null || hex(statement.first.hash))));
  if (!ok) throw new AuditSignatureError('a signed audit statement of an unknown shape');
  return statement as SignedStatement;
}

export function generateAuditKeyPem(): string {
  return generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/**
 * The configured key: AUDIT_SIGNING_KEY, AUDIT_SIGNING_KEY_FILE, or outside
 * production one generated once into the data folder. Undefined in production
 * without either: the log is still chained, but nothing is signed.
 */
export async function loadAuditKey(config: Pick<Config, 'audit' | 'production' | 'dataDir'>): Promise<AuditKey | undefined> {
  const { signingKey, signingKeyFile } = config.audit;
  if (signingKey !== undefined) return auditKeyFromPem(signingKey);
  if (signingKeyFile !== undefined) return auditKeyFromPem(await readFile(signingKeyFile, 'utf8'));
  if (config.production) return undefined;
  return auditKeyFromPem(await readOrCreateKeyFile(path.join(config.dataDir, 'audit-signing-key.pem')));
}

async function readOrCreateKeyFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  // 'wx': if another process wrote it first, keep theirs.
  await writeFile(file, generateAuditKeyPem(), { mode: 0o600, flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  return readFile(file, 'utf8');
}
