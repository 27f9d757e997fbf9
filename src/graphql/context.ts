import type { TenantTransaction } from '../db/tenant-transaction.ts';

/** Built per request from verified credentials; the only carrier of tenant state. */
export type GraphQLContext = {
  readonly requestId: string;
  /** The request's transaction: the repositories' only way to the database, and who the database accepted. */
  readonly db: TenantTransaction;
};
