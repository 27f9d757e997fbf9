// PostgreSQL errors -> the error contract. Repositories name the constraints
// they expect; everything else falls back to the SQLSTATE class. A database
// that is down, out of connections or past a deadline is UNAVAILABLE (503).
import type { GraphQLError } from 'graphql';
import { apiError, badUserInput, conflict, forbidden, isApiError, unavailable } from '../errors.ts';

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

/** A generic, tenant-safe error for a database error nobody mapped (an API error as it is); undefined when unexpected. */
export function errorForSqlState(error: unknown): GraphQLError | undefined {
  if (isApiError(error)) return error;
  const down = unavailableFor(error);
  if (down) return down;
  if (!isPgError(error)) return undefined;
  const code = error.code!;
  if (code === 'TQ001') return quotaExceeded(error.detail);
  if (code === '23505') return conflict('That value is already in use');
  if (code === '23001') return conflict('Something else still uses it');
  if (code === '23503' || code === '23514' || code === '23502' || code.startsWith('22')) {
    return badUserInput('input', 'violates a constraint of the data');
  }
  if (code === '42501') return forbidden();
  if (code === '40001' || code === '40P01') return apiError('CONFLICT', 'Concurrent update: try again', { reason: 'concurrent' });
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

/** The driver's and the socket's own codes for a connection that failed or went away. */
const CONNECTION_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * UNAVAILABLE for a database fault, with `extensions.reason`: `timeout`
 * (statement or lock timeout, both derived from the request deadline),
 * `connections` (max_connections reached), `database` (down, restarting,
 * unreachable, the connection lost); undefined for anything else.
 */
export function unavailableFor(error: unknown): GraphQLError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  if (code === '57014' || code === '55P03' || code === '25P03') return unavailable('timeout');
  if (code === '53300') return unavailable('connections');
  if (/^(08|57P|28)/.test(code) && code.length === 5) return unavailable('database');
  if (CONNECTION_CODES.has(code)) return unavailable('database');
  return undefined;
}

/**
 * A deadlock or serialization failure (raw, as a resolver's GraphQLError's
 * originalError, or already mapped to CONFLICT): the whole transaction was
 * rolled back, and may be run once more if nothing of it was sent.
 */
export function isRetryableConflict(error: unknown): boolean {
  if (isApiError(error)) return error.extensions.code === 'CONFLICT' && error.extensions.reason === 'concurrent';
  const code = (error as { code?: unknown } | null)?.code;
  if (code === '40001' || code === '40P01') return true;
  const original = (error as { originalError?: unknown } | null)?.originalError;
  return original !== undefined && original !== error && isRetryableConflict(original);
}
