// Ends each operation's tenant transaction: commit when it succeeded, roll
// back otherwise. A refused tenant refuses the whole request, and a mutation
// with any error writes nothing and says so (data: null).
import {
  getOperationAST,
  Kind,
  OperationTypeNode,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { errorForSqlState } from '../db/errors.ts';
import { internal, isApiError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GraphQLContext } from './context.ts';

export function useTenantTransaction(log: Logger): Plugin<GraphQLContext> {
  return {
    onExecute({ args }) {
      const context = args.contextValue;
      const operation = getOperationAST(args.document as DocumentNode, args.operationName as string | undefined);
      const isMutation = operation?.operation === OperationTypeNode.MUTATION;
      // Every operation checks its credentials and tenant, even one that reads no table.
      context.db.start(operation && isPlatformOperation(args.schema as GraphQLSchema, operation) ? 'platform' : 'tenant');
      return {
        async onExecuteDone({ result, setResult }) {
          if (Symbol.asyncIterator in result) throw new Error('streamed results are not supported');
          const refused = await context.db.principal().then(
            () => undefined,
            (error: unknown) => error,
          );
          if (refused !== undefined) {
            await context.db.end(false).catch(() => {});
            if (!isApiError(refused)) log.error({ err: refused }, 'request transaction failed to start');
            setResult({ errors: [isApiError(refused) ? refused : internal()] });
            return;
          }
          const failed = (result.errors?.length ?? 0) > 0;
          try {
            await context.db.end(!failed);
          } catch (error) {
            log.error({ err: error }, 'commit failed');
            setResult({ errors: [errorForSqlState(error) ?? internal()] });
            return;
          }
          if (failed && isMutation) setResult({ data: null, errors: result.errors } satisfies ExecutionResult);
        },
      };
    },
  };
}

/**
 * True when every root field of the operation is marked `platform` (works
 * outside any tenant): such an operation needs no tenant in the credentials.
 */
function isPlatformOperation(schema: GraphQLSchema, operation: OperationDefinitionNode): boolean {
  const root = operation.operation === OperationTypeNode.MUTATION ? schema.getMutationType() : schema.getQueryType();
  const fields = root?.getFields() ?? {};
  let platform = false;
  for (const selection of operation.selectionSet.selections) {
    if (selection.kind !== Kind.FIELD) return false;
    if (selection.name.value === '__typename') continue;
    if (fields[selection.name.value]?.extensions.platform !== true) return false;
    platform = true;
  }
  return platform;
}
