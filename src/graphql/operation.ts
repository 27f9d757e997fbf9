// How an operation ends (the request pipeline, src/http/pipeline.ts, calls
// it whichever transport carried the request): commit when it succeeded, roll back otherwise. A
// refused request (credentials, tenant) replaces the whole result, and a
// mutation with any error writes nothing and says so (data: null).
import { Kind, OperationTypeNode, type ExecutionResult, type GraphQLSchema, type OperationDefinitionNode } from 'graphql';
import { errorForSqlState } from '../db/errors.ts';
import type { TransactionMode } from '../db/tenant-transaction.ts';
import { internal, isApiError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GraphQLContext } from './context.ts';

/**
 * `platform` when every root field of the operation is marked `platform`
 * (works outside any tenant): such an operation needs no tenant in the credentials.
 */
export function transactionMode(schema: GraphQLSchema, operation: OperationDefinitionNode | null | undefined): TransactionMode {
  if (!operation) return 'tenant';
  const root = operation.operation === OperationTypeNode.MUTATION ? schema.getMutationType() : schema.getQueryType();
  const fields = root?.getFields() ?? {};
  let platform = false;
  for (const selection of operation.selectionSet.selections) {
    if (selection.kind !== Kind.FIELD) return 'tenant';
    if (selection.name.value === '__typename') continue;
    if (fields[selection.name.value]?.extensions.platform !== true) return 'tenant';
    platform = true;
  }
  return platform ? 'platform' : 'tenant';
}

/** Ends the operation's transaction and returns the result to send. */
export async function finishOperation(context: GraphQLContext, result: ExecutionResult, isMutation: boolean, log: Logger): Promise<ExecutionResult> {
  const refused = await context.identity.principal().then(
    () => undefined,
    (error: unknown) => error,
  );
  if (refused !== undefined) {
    await context.db.end(false).catch(() => {});
    if (!isApiError(refused)) log.error({ err: refused }, 'request transaction failed to start');
    return { errors: [isApiError(refused) ? refused : internal()] };
  }
  const failed = (result.errors?.length ?? 0) > 0;
  try {
    await context.db.end(!failed);
  } catch (error) {
    const coded = errorForSqlState(error);
    // A database fault (UNAVAILABLE) or a conflict is the caller's to retry and already counted; anything else is a bug.
    if (coded) log.warn({ err: error, code: coded.extensions.code }, 'commit failed');
    else log.error({ err: error }, 'commit failed');
    return { errors: [coded ?? internal()] };
  }
  return failed && isMutation ? { data: null, errors: result.errors } : result;
}
