import { rethrowConstraint } from '../../db/errors.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput } from '../../errors.ts';
import { conditions } from '../../nodes/keyset.ts';
import { table } from '../../nodes/table.ts';
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
};

/** Never the secret's hash: the app role may not read it. */
export const apiKeys = table<ApiKeyRow>({
  name: 'app.api_keys',
  columns: [{ id: true, name: true, prefix: true, role: true, createdBy: true, createdAt: true, expiresAt: true, lastUsedAt: true, revokedAt: true }],
  orderBy: 'created_at',
});

const constraints = {
  api_keys_expiry: () => badUserInput('input.expiresAt', 'must be in the future'),
  api_keys_name_length: () => badUserInput('input.name', 'must be 1 to 100 characters'),
};

/** The conditions of an API keys list; ADMIN sees every key of the tenant, anyone else their own (RLS). */
export function apiKeyConditions(tx: Tx, activeOnly: boolean) {
  return conditions(tx, activeOnly && tx`and revoked_at is null and (expires_at is null or expires_at > now())`);
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
      returning ${apiKeys.columns(tx)}`;
    return row!;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Undefined when no key is visible and revocable to this request. Revoking twice keeps the first time. */
export async function revokeApiKey(tx: Tx, id: string): Promise<ApiKeyRow | undefined> {
  const [row] = await tx<ApiKeyRow[]>`
    update app.api_keys set revoked_at = coalesce(revoked_at, now()) where id = ${id} returning ${apiKeys.columns(tx)}`;
  return row;
}
