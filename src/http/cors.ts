// CORS, the same on both transports: only origins in CORS_ORIGINS (or `*`) get
// CORS headers; credentials are headers, never cookies.
export const CORS_REQUEST_HEADERS = ['authorization', 'content-type', 'x-api-key', 'x-tenant-id', 'x-request-id'];
export const EXPOSED_HEADERS = ['x-request-id', 'retry-after', 'ratelimit', 'ratelimit-policy'];

/** The origin to allow in the answer, or undefined when this origin may not call. */
export function allowedOrigin(origin: string | null | undefined, allowed: readonly string[]): string | undefined {
  return origin && (allowed.includes(origin) || allowed.includes('*')) ? origin : undefined;
}
