// Bearer JWTs: verification (HS256 secret or an identity provider's JWKS) and,
// for development and the CLI, signing.
import { createRemoteJWKSet, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';
import { LRUCache } from 'lru-cache';
import { isUuid } from '../tenancy/identifiers.ts';
import { isRole, type Role } from '../tenancy/roles.ts';

export type TokenClaims = {
  readonly userId: string;
  readonly tenantId: string | undefined;
  readonly roleCap: Role | undefined;
  readonly expiresAt: number;
};

export type TokenSettings = {
  readonly secret: string | undefined;
  readonly jwksUrl: string | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
  /** Refuse tokens living longer than this (exp - iat, seconds), and tokens without iat. */
  readonly maxTtlSeconds?: number | undefined;
};

export type TokenVerifier = (token: string) => Promise<TokenClaims>;

/** Thrown for any token that does not verify; the caller answers UNAUTHENTICATED. */
export class InvalidTokenError extends Error {
  override name = 'InvalidTokenError';
}

export function createTokenVerifier(settings: TokenSettings): TokenVerifier {
  const key: Uint8Array | JWTVerifyGetKey = settings.secret
    ? new TextEncoder().encode(settings.secret)
    : createRemoteJWKSet(new URL(requireValue(settings.jwksUrl, 'JWT_SECRET or JWKS_URL')));
  // An allowlist: never `none`, never HS256 against a public key set.
  const algorithms = settings.secret ? ['HS256'] : ['RS256', 'ES256'];
  const options = {
    algorithms,
    requiredClaims: ['exp', 'sub'],
    ...(settings.issuer ? { issuer: settings.issuer } : {}),
    ...(settings.audience ? { audience: settings.audience } : {}),
  };

  const verify: TokenVerifier = async (token) => {
    let payload;
    try {
      ({ payload } = key instanceof Uint8Array ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options));
    } catch (error) {
      throw new InvalidTokenError((error as Error).message);
    }
    const { sub, tid, role, exp, iat } = payload as Record<string, unknown>;
    if (settings.maxTtlSeconds !== undefined) {
      if (typeof iat !== 'number') throw new InvalidTokenError('iat is required');
      if ((exp as number) - iat > settings.maxTtlSeconds) throw new InvalidTokenError('the token lives longer than JWT_MAX_TTL allows');
      if (iat > Date.now() / 1000 + CLOCK_SKEW_SECONDS) throw new InvalidTokenError('iat is in the future');
    }
    if (!isUuid(sub)) throw new InvalidTokenError('sub must be a user id (uuid)');
    if (tid !== undefined && !isUuid(tid)) throw new InvalidTokenError('tid must be a tenant id (uuid)');
    const roleCap = typeof role === 'string' ? role.toUpperCase() : role;
    if (roleCap !== undefined && !isRole(roleCap)) throw new InvalidTokenError('role must be ADMIN, LEAD, MEMBER or VIEWER');
    return { userId: sub.toLowerCase(), tenantId: tid?.toLowerCase(), roleCap, expiresAt: exp as number };
  };
  return cached(verify);
}

const CLOCK_SKEW_SECONDS = 60;

/** How many verified tokens are remembered, and for how long at most (a rotated-out key stops working within it). */
const CACHE_SIZE = 10_000;
const CACHE_TTL_MS = 5 * 60_000;

/**
 * Remembers verified tokens (a bounded LRU keyed by the token itself), never
 * past their `exp`: a signature is checked once per token, not per request.
 * Whether the user may act in a tenant is still the database's answer on
 * every request. Failures are not remembered.
 */
function cached(verify: TokenVerifier): TokenVerifier {
  const cache = new LRUCache<string, TokenClaims>({ max: CACHE_SIZE });
  return async (token) => {
    const now = Date.now();
    const hit = cache.get(token);
    if (hit && hit.expiresAt * 1000 > now) return hit;
    const claims = await verify(token);
    cache.set(token, claims, { ttl: Math.min(claims.expiresAt * 1000 - now, CACHE_TTL_MS) });
    return claims;
  };
}

export type TokenRequest = {
  readonly userId: string;
  readonly tenantId?: string | undefined;
  readonly role?: Role | undefined;
  /** A jose time span such as "1h" or "30m". */
  readonly ttl: string;
};

export async function signToken(settings: TokenSettings, request: TokenRequest): Promise<string> {
  const secret = requireValue(settings.secret, 'JWT_SECRET (tokens can only be signed with a shared secret)');
  let jwt = new SignJWT({
    ...(request.tenantId ? { tid: request.tenantId } : {}),
    ...(request.role ? { role: request.role } : {}),
  })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(request.userId)
    .setIssuedAt()
    .setExpirationTime(request.ttl);
  if (settings.issuer) jwt = jwt.setIssuer(settings.issuer);
  if (settings.audience) jwt = jwt.setAudience(settings.audience);
  return jwt.sign(new TextEncoder().encode(secret));
}

function requireValue(value: string | undefined, what: string): string {
  if (!value) throw new Error(`${what} is not configured`);
  return value;
}
