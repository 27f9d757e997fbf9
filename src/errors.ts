// The closed list of error codes a client can see (DESIGN.md section 5).
import { GraphQLError } from 'graphql';

export const ERROR_CODES = [
  'UNAUTHENTICATED',
  'TENANT_REQUIRED',
  'TENANT_NOT_FOUND',
  'TENANT_SUSPENDED',
  'FORBIDDEN',
  'QUOTA_EXCEEDED',
  'BAD_USER_INPUT',
  'NOT_FOUND',
  'CONFLICT',
  'RATE_LIMITED',
  'UNAVAILABLE',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Codes that refuse the whole request, with their HTTP status. */
const REQUEST_STATUS: Partial<Record<ErrorCode, number>> = {
  UNAUTHENTICATED: 401,
  TENANT_REQUIRED: 400,
  TENANT_NOT_FOUND: 403,
  TENANT_SUSPENDED: 403,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

export function apiError(code: ErrorCode, message: string, extensions: Record<string, unknown> = {}): GraphQLError {
  const status = REQUEST_STATUS[code];
  return new GraphQLError(message, {
    extensions: { code, ...extensions, ...(status ? { http: { status } } : {}) },
  });
}

export const unauthenticated = (message = 'Missing, invalid or expired credentials') =>
  apiError('UNAUTHENTICATED', message);
export const tenantRequired = () =>
  apiError('TENANT_REQUIRED', 'No tenant in the credentials: add a tid claim or an X-Tenant-ID header');
export const tenantNotFound = () => apiError('TENANT_NOT_FOUND', 'Tenant not found');
export const tenantSuspended = () => apiError('TENANT_SUSPENDED', 'Tenant is suspended');
export const forbidden = (message = 'Your role does not allow this') => apiError('FORBIDDEN', message);
export const notFound = (what: string) => apiError('NOT_FOUND', `${what} not found`);
export const badUserInput = (field: string, message: string) =>
  apiError('BAD_USER_INPUT', `${field}: ${message}`, { field });
export const conflict = (message: string) => apiError('CONFLICT', message);
export const internal = () => apiError('INTERNAL', 'Internal server error');
/** A request whose answer would pass MAX_RESPONSE_BYTES. */
export const responseTooLarge = (max: number) =>
  apiError('BAD_USER_INPUT', `The response would be larger than ${max} bytes: ask for fewer rows or fields`, {
    limit: 'responseBytes',
    max,
    http: { status: 400 },
  });
/** The database is down, out of connections, or the request ran past its deadline; the client may retry. */
export const unavailable = (reason: string, message = 'The service is temporarily unavailable: try again shortly') =>
  apiError('UNAVAILABLE', message, { reason });
/**
 * A write cut short (its deadline, a shutdown) after its COMMIT was sent and before the database answered it: it may
 * have committed, so the client reads before it retries (a retry could make the write twice).
 */
export const outcomeUnknown = () =>
  unavailable('outcome-unknown', 'The request was cut short after its write was sent to be committed: the write may have been applied. Read it again before retrying');

/**
 * By shape, not instanceof: graphql can be loaded twice (its ESM and CJS
 * builds, as under vitest), and an error from one copy fails the other's instanceof.
 */
export function isGraphQLError(error: unknown): error is GraphQLError {
  return error instanceof Error && error.name === 'GraphQLError';
}

export function isApiError(error: unknown): error is GraphQLError {
  return isGraphQLError(error) && typeof error.extensions?.code === 'string';
}
