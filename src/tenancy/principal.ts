// Who is asking and what for (credentials -> tenant selection, decided in
// src/tenancy/resolve.ts), and who the database accepted (the principal and
// its tenant context, answered by app_private.begin_request in
// src/db/tenant-transaction.ts). Types only: the rules live where they are applied.
import type { Role } from './roles.ts';

/** Who is asking: a signed-in user (JWT), or an API key (by its SHA-256). */
export type Credentials =
  | { readonly kind: 'user'; readonly userId: string; /** A role claim: can only lower the membership's role. */ readonly roleCap: Role | undefined }
  | { readonly kind: 'apiKey'; readonly secretHash: Buffer };

/** What the credentials ask for; the database decides what they get. */
export type TenantSelection = {
  readonly credentials: Credentials;
  /** Tenant uuid or slug; undefined when the credentials name none. */
  readonly tenant: string | undefined;
  /** The token's `tid` claim, whether or not it decided `tenant` (undefined for an API key). */
  readonly tokenTenant?: string | undefined;
  /** ALLOWED_TENANTS: every other tenant reads as not found. */
  readonly allowedSlugs: readonly string[] | undefined;
};

export type TenantContext = {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly status: 'active' | 'suspended';
  /** The membership role, lowered to the role claim or the API key's role. */
  readonly role: Role;
};

/** The request as the database accepted it. */
export type Principal = {
  /** The signed-in user, or the user an API key acts for. */
  readonly userId: string;
  readonly apiKeyId: string | null;
  /** Known from the start of platform and API-key transactions; otherwise see TenantTransaction.isOperator. */
  readonly operator?: boolean;
  /** Undefined in a platform transaction. */
  readonly tenant: TenantContext | undefined;
};
