// PostgreSQL errors -> the error contract. Repositories name the constraints
// they expect; everything else falls back to the SQLSTATE class.
import type { GraphQLError } from 'graphql';
import { apiError, badUserInput, conflict, forbidden } from '../errors.ts';

type PgError = { code?: string; constraint_name?: string; detail?: string };

export function isPgError(error: unknown): error is PgError & Error {
  return error instanceof Error && typeof (error as PgError).code === 'string' && (error as PgError).code!.length === 5;
}

/** Rethrows a known constraint violation as its API error; anything else as it was. */
export function rethrowConstraint(error: unknown, known: Readonly<Record<string, () => GraphQLError>>): never {
  if (isPgError(error) && error.constraint_name) {
    const mapped = known[error.constraint_name];
    if (mapped) throw mapped();
  }
  throw error;
}

/** A generic, tenant-safe error for a database error nobody mapped; undefined when unexpected. */
export function errorForSqlState(error: unknown): GraphQLError | undefined {
  if (!isPgError(error)) return undefined;
  const code = error.code!;
  if (code === 'TQ001') return quotaExceeded(error.detail);
  if (code === '23505') return conflict('That value is already in use');
  if (code === '23001') return conflict('Something else still uses it');
  if (code === '23503' || code === '23514' || code === '23502' || code.startsWith('22')) {
    return badUserInput('input', 'violates a constraint of the data');
  }
  if (code === '42501') return forbidden();
  if (code === '40001' || code === '40P01') return apiError('CONFLICT', 'Concurrent update: try again');
  return undefined;
}

const QUOTA_NAMES: Readonly<Record<string, string>> = {
  active_sessions: 'activeSessions',
  monthly_tokens: 'monthlyTokens',
  agents: 'agents',
  members: 'members',
  context_bytes: 'contextBytes',
};

/** app_private.consume_quota's refusal: DETAIL is {"quota", "limit", "used", "requested"}. */
function quotaExceeded(detail: string | undefined): GraphQLError {
  const { quota, limit, used } = JSON.parse(detail ?? '{}') as { quota?: string; limit?: number; used?: number };
  const name = QUOTA_NAMES[quota ?? ''] ?? 'unknown';
  return apiError('QUOTA_EXCEEDED', `The tenant's ${name} quota is used up (${used} of ${limit})`, { quota: name, limit, used });
}
