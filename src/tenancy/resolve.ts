// The only place a request's tenant is decided: credentials -> TenantSelection.
// Whether the credentials may be in that tenant, and with which role, is the
// database's answer (app_private.begin_request), in the request transaction.
import { apiKeyHash } from '../auth/secrets.ts';
import { InvalidTokenError, type TokenVerifier } from '../auth/tokens.ts';
import type { Config } from '../config.ts';
import { tenantNotFound, unauthenticated } from '../errors.ts';
import { isSlug, isUuid } from './identifiers.ts';
import type { Credentials, TenantSelection } from './principal.ts';

export type TenancySettings = Pick<Config, 'multiTenancy' | 'defaultTenant' | 'allowedTenants' | 'tenantHostSuffix'>;

/** Request headers by (lowercase) name: a Fetch `Headers`, or a node request's through `nodeHeaders`. */
export type HeaderSource = { get(name: string): string | null };

/**
 * A selection without a tenant is refused with TENANT_REQUIRED when the
 * operation needs one (see TenantTransaction.start).
 */
export async function resolveTenant(
  headers: HeaderSource,
  verifyToken: TokenVerifier,
  settings: TenancySettings,
): Promise<TenantSelection> {
  const authorization = headers.get('authorization');
  const apiKey = headers.get('x-api-key');
  if (authorization && apiKey !== null) throw unauthenticated('Send either Authorization or X-Api-Key, not both');

  let credentials: Credentials;
  let claimedTenant: string | undefined;
  if (apiKey !== null) {
    const secretHash = apiKeyHash(apiKey.trim());
    if (!secretHash) throw unauthenticated('Unknown, revoked or expired API key');
    credentials = { kind: 'apiKey', secretHash };
  } else {
    if (!authorization) throw unauthenticated('Missing credentials: send Authorization: Bearer <token> or X-Api-Key');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match?.[1]) throw unauthenticated('Authorization must be "Bearer <token>"');
    let claims;
    try {
      claims = await verifyToken(match[1]);
    } catch (error) {
      if (error instanceof InvalidTokenError) throw unauthenticated();
      throw error;
    }
    credentials = { kind: 'user', userId: claims.userId, roleCap: claims.roleCap };
    claimedTenant = claims.tenantId;
  }

  return {
    credentials,
    tenant: settings.multiTenancy ? requestedTenant(headers, claimedTenant, settings.tenantHostSuffix) : settings.defaultTenant,
    tokenTenant: claimedTenant,
    allowedSlugs: settings.allowedTenants,
  };
}

/**
 * X-Tenant-ID (uuid or slug) selects among the credentials' tenants; else the
 * host name under TENANT_HOST_SUFFIX (`acme.example.com` -> `acme`); else the tid claim.
 */
function requestedTenant(headers: HeaderSource, claimedTenantId: string | undefined, hostSuffix: string | undefined): string | undefined {
  const header = headers.get('x-tenant-id')?.trim();
  if (header) {
    if (isUuid(header)) return header.toLowerCase();
    if (isSlug(header)) return header;
    throw tenantNotFound(); // no tenant can have that id
  }
  if (hostSuffix) {
    const host = headers.get('host')?.toLowerCase().replace(/:\d+$/, '');
    if (host?.endsWith(hostSuffix)) {
      const slug = host.slice(0, -hostSuffix.length);
      if (!isSlug(slug)) throw tenantNotFound();
      return slug;
    }
  }
  return claimedTenantId;
}
