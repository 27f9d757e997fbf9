// The only place a request's tenant is decided: credentials -> TenantSelection.
// Whether the user may be in that tenant, and with which role, is the
// database's answer (app_private.begin_request), in the request transaction.
import { InvalidTokenError, isUuid, type TokenVerifier } from '../auth/tokens.ts';
import type { Config } from '../config.ts';
import type { TenantSelection } from '../db/tenant-transaction.ts';
import { tenantNotFound, tenantRequired, unauthenticated } from '../errors.ts';

export type TenancySettings = Pick<Config, 'multiTenancy' | 'defaultTenant' | 'allowedTenants'>;

const SLUG = /^[a-z][a-z0-9-]{1,61}[a-z0-9]$/;

export async function resolveTenant(
  headers: Headers,
  verifyToken: TokenVerifier,
  settings: TenancySettings,
): Promise<TenantSelection> {
  const authorization = headers.get('authorization');
  if (!authorization) throw unauthenticated('Missing credentials: send Authorization: Bearer <token>');
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match?.[1]) throw unauthenticated('Authorization must be "Bearer <token>"');

  let claims;
  try {
    claims = await verifyToken(match[1]);
  } catch (error) {
    if (error instanceof InvalidTokenError) throw unauthenticated();
    throw error;
  }

  const tenant = settings.multiTenancy ? requestedTenant(headers, claims.tenantId) : settings.defaultTenant;
  if (!tenant) throw tenantRequired();
  return {
    tenant,
    userId: claims.userId,
    roleCap: claims.roleCap,
    allowedSlugs: settings.allowedTenants,
  };
}

/** X-Tenant-ID (uuid or slug) selects among the user's tenants; else the tid claim. */
function requestedTenant(headers: Headers, claimedTenantId: string | undefined): string | undefined {
  const header = headers.get('x-tenant-id')?.trim();
  if (!header) return claimedTenantId;
  if (isUuid(header)) return header.toLowerCase();
  if (SLUG.test(header)) return header;
  throw tenantNotFound(); // no tenant can have that id
}
