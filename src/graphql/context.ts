import { contextCacheSymbol } from '@pothos/core';
import type { TenantTransaction } from '../db/tenant-transaction.ts';
import type { AuditKey } from '../modules/audit-chain/keys.ts';

/**
 * Who is asking, as the database accepted it: the principal, its tenant and
 * role, whether it is a platform operator. Answered by the request
 * transaction's first statement (app_private.begin_request), never by a claim alone.
 */
export type RequestIdentity = Pick<TenantTransaction, 'principal' | 'confirmed' | 'tenant' | 'isOperator' | 'inTenant' | 'byPerson' | 'known'>;

/** The request's transaction: the repositories' only way to the database; the pipeline starts and ends it. */
export type RequestDatabase = Pick<TenantTransaction, 'run' | 'start' | 'end' | 'deadline'>;

/** Built per request from verified credentials; the only carrier of tenant state. */
export type GraphQLContext = {
  readonly requestId: string;
  readonly identity: RequestIdentity;
  readonly db: RequestDatabase;
  /** The audit log's signing key, held by the service (never the database); undefined: nothing is signed. */
  readonly audit: AuditServices;
  /**
   * Where Pothos's per-request caches (scope-auth's, each plugin's request data, the
   * dataloaders) keep their entries: on the request's own object, so they die young with it
   * (patches/@pothos+core: in a WeakMap keyed by the context, the scavenges kept each
   * request's graph and promoted it, ~7 KB a Q2 request, for the full GCs to free).
   */
  readonly [contextCacheSymbol]: object;
};

export type AuditServices = { readonly key: AuditKey | undefined };

const NO_AUDIT_KEY: AuditServices = { key: undefined };

/** The context of one operation: identity and database are two faces of its one tenant transaction. */
export function requestContext(requestId: string, transaction: TenantTransaction, audit: AuditServices = NO_AUDIT_KEY): GraphQLContext {
  return { requestId, identity: transaction, db: transaction, audit, [contextCacheSymbol]: {} };
}
