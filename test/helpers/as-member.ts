// SQL as the request role in one call, for tests that check the database
// itself (graphile/starter's withRootDb / withUserDb / becomeUser): a
// transaction that is always rolled back, in which a test becomes the request
// role in a tenant as one of its members, the request started exactly as the
// server starts one (app_private.begin_request, called as the request role).
import type postgres from 'postgres';
import { APP_ROLE } from '../../src/db/setup.ts';
import type { Role } from '../../src/tenancy/roles.ts';

/** Who to be: a tenant (by slug) and one of its members; TestTenant.members[role] is one. */
export type Member = { readonly tenantSlug: string; readonly userId: string };

class RolledBack {
  readonly result: unknown;
  constructor(result: unknown) {
    this.result = result;
  }
}

/** Runs `body` in a transaction of `sql` that is rolled back, whatever happens; returns what `body` returned. */
export async function withRollback<T>(sql: postgres.Sql, body: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
  try {
    await sql.begin(async (tx) => {
      throw new RolledBack(await body(tx));
    });
  } catch (error) {
    if (error instanceof RolledBack) return error.result as T;
    throw error;
  }
  throw new Error('unreachable: the transaction always ends in a rollback');
}

/**
 * Turns `tx` into a request of `member` (with an optional role claim): the
 * request role, transaction-local settings from begin_request. Returns the
 * role the request holds. Call again to switch member or tenant.
 */
export async function becomeMember(tx: postgres.TransactionSql, member: Member, roleCap?: Role): Promise<Role> {
  await tx`set local role ${tx(APP_ROLE)}`;
  const [started] = await tx<{ role: Role }[]>`
    select role from app_private.begin_request(null, ${member.tenantSlug}, ${member.userId}, ${roleCap ?? null})`;
  return started!.role;
}

/** `body` as a request of `member`, in a transaction that is rolled back. */
export function asMember<T>(sql: postgres.Sql, member: Member, body: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
  return withRollback(sql, async (tx) => {
    await becomeMember(tx, member);
    return body(tx);
  });
}
