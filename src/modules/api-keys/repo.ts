import { rethrowConstraint } from '../../db/errors.ts';
import { keysetConditions, keysetOrder, positionColumn, type KeysetPage } from '../../db/keyset.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput } from '../../errors.ts';
import type { Role } from '../../tenancy/roles.ts';

export type ApiKeyRow = {
  id: string;
  name: string;
  prefix: string;
  role: Role;
  createdBy: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  position: string;
};

const columns = (tx: Tx) => tx`
  id, name, prefix, role, created_by as "createdBy", created_at as "createdAt", expires_at as "expiresAt",
  last_used_at as "lastUsedAt", revoked_at as "revokedAt", ${positionColumn(tx, 'created_at')}`;

const constraints = {
  api_keys_expiry: () => badUserInput('input.expiresAt', 'must be in the future'),
  api_keys_name_length: () => badUserInput('input.name', 'must be 1 to 100 characters'),
};

/** ADMIN sees every key of the tenant, anyone else their own (RLS). */
export async function listApiKeys(tx: Tx, activeOnly: boolean, page: KeysetPage): Promise<ApiKeyRow[]> {
  return tx<ApiKeyRow[]>`
    select ${columns(tx)} from app.api_keys
    where true
      ${activeOnly ? tx`and revoked_at is null and (expires_at is null or expires_at > now())` : tx``}
      ${keysetConditions(tx, 'created_at', page)}
    ${keysetOrder(tx, 'created_at', page)}
    limit ${page.limit}`;
}

export async function createApiKey(
  tx: Tx,
  input: { name: string; role: Role; prefix: string; secretHash: Buffer; expiresAt: Date | undefined },
): Promise<ApiKeyRow> {
  try {
    const [row] = await tx<ApiKeyRow[]>`
      insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by, expires_at)
      values (app.current_tenant_id(), ${input.name}, ${input.prefix}, ${input.secretHash}, ${input.role},
              app.current_user_id(), ${input.expiresAt ? input.expiresAt.toISOString() : null}::timestamptz)
      returning ${columns(tx)}`;
    return row!;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Undefined when no key is visible and revocable to this request. Revoking twice keeps the first time. */
export async function revokeApiKey(tx: Tx, id: string): Promise<ApiKeyRow | undefined> {
  const [row] = await tx<ApiKeyRow[]>`
    update app.api_keys set revoked_at = coalesce(revoked_at, now()) where id = ${id} returning ${columns(tx)}`;
  return row;
}
