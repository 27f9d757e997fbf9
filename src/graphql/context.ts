import type { TenantTransaction } from '../db/tenant-transaction.ts';

/** Built per request from verified credentials; the only carrier of tenant state. */
export type GraphQLContext = {
  readonly requestId: string;
  readonly userId: string;
  /** The request's tenant transaction: the repositories' only way to the database. */
  readonly db: TenantTransaction;
};
