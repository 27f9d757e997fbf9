// The SQL of the request guards, run on their own connection outside any
// tenant transaction: two SECURITY DEFINER functions (migration 000006), each
// called for a batch of identities or buckets, never once per request.
import type { Sql } from '../db/pool.ts';

/**
 * An array as PostgreSQL's text form, sent as one parameter: postgres.js
 * infers array types only once its connection has fetched them (its first
 * query cannot), and not at all for an array of nulls.
 */
function arrayParameter(values: readonly (string | number | null)[]): string {
  return `{${values.map((value) => (value === null ? 'NULL' : typeof value === 'number' ? String(value) : `"${value.replace(/["\\]/g, '\\$&')}"`)).join(',')}}`;
}

/** A presented identity, as the request named it: a user and a tenant id or slug, or an API key (SHA-256, hex). */
export type IdentityQuery = {
  readonly userId: string | null;
  readonly tenantId: string | null;
  readonly tenantSlug: string | null;
  readonly keyHashHex: string | null;
};

/** The tenant (and API key) an identity belongs to; null: none (not a member, unknown key, suspended tenant). */
export type ResolvedIdentity = { readonly tenantId: string; readonly apiKeyId: string | null } | null;

export async function resolveRequestTenants(sql: Sql, queries: readonly IdentityQuery[]): Promise<ResolvedIdentity[]> {
  const rows = await sql<{ ord: number; tenant_id: string | null; api_key_id: string | null }[]>`
    select ord::int, tenant_id, api_key_id
    from app_private.resolve_request_tenants(
      ${arrayParameter(queries.map((query) => query.userId))}::uuid[],
      ${arrayParameter(queries.map((query) => query.tenantId))}::uuid[],
      ${arrayParameter(queries.map((query) => query.tenantSlug))}::text[],
      (select array_agg(decode(h.hex, 'hex') order by h.n)
       from unnest(${arrayParameter(queries.map((query) => query.keyHashHex))}::text[]) with ordinality as h (hex, n)))`;
  const resolved: ResolvedIdentity[] = queries.map(() => null);
  for (const row of rows) {
    if (row.tenant_id) resolved[row.ord - 1] = { tenantId: row.tenant_id, apiKeyId: row.api_key_id };
  }
  return resolved;
}

/** Tokens asked of one bucket (negative: unspent tokens given back). */
export type TokenLease = { readonly tenantId: string; readonly apiKeyId: string | null; readonly want: number };

/** What the bucket granted, what it holds after, and its limit a minute (null: unlimited). */
export type LeaseResult = { readonly granted: number; readonly remaining: number; readonly perMinute: number | null };

/**
 * A lease commits asynchronously (synchronous_commit off for its own implicit
 * transaction): it does not wait for its WAL to reach the disk, which halves
 * what a lease costs PostgreSQL (742 -> 325 us a call of one bucket, measured
 * on one connection). A PostgreSQL crash may lose the leases of its last
 * fraction of a second: those buckets read as fuller than they were, once.
 */
export async function takeRequestTokens(sql: Sql, leases: readonly TokenLease[]): Promise<LeaseResult[]> {
  const rows = await sql<{ ord: number; granted: number; remaining: number | null; per_minute: number | null }[]>`
    select ord::int, granted, remaining, per_minute::float8
    from set_config('synchronous_commit', 'off', true),
         app_private.take_request_tokens(
           ${arrayParameter(leases.map((lease) => lease.tenantId))}::uuid[],
           ${arrayParameter(leases.map((lease) => lease.apiKeyId))}::uuid[],
           ${arrayParameter(leases.map((lease) => lease.want))}::int[])`;
  const results: LeaseResult[] = leases.map(() => ({ granted: 0, remaining: 0, perMinute: 0 }));
  for (const row of rows) {
    results[row.ord - 1] = { granted: row.granted, remaining: row.remaining ?? Infinity, perMinute: row.per_minute };
  }
  return results;
}
