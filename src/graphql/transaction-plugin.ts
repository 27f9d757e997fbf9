// The request transaction on Yoga's path (GET, CORS and other requests the
// JSON fast path leaves to Yoga): start it for the operation, end it with the
// result. The rules are in operation.ts, shared with the fast path.
import { getOperationAST, OperationTypeNode, type DocumentNode, type GraphQLSchema } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from '../logger.ts';
import type { GraphQLContext } from './context.ts';
import { finishOperation, transactionMode } from './operation.ts';

export function useTenantTransaction(log: Logger): Plugin<GraphQLContext> {
  return {
    onExecute({ args }) {
      const context = args.contextValue;
      const operation = getOperationAST(args.document as DocumentNode, args.operationName as string | undefined);
      // Every operation checks its credentials and tenant, even one that reads no table.
      context.db.start(transactionMode(args.schema as GraphQLSchema, operation));
      return {
        async onExecuteDone({ result, setResult }) {
          if (Symbol.asyncIterator in result) throw new Error('streamed results are not supported');
          setResult(await finishOperation(context, result, operation?.operation === OperationTypeNode.MUTATION, log));
        },
      };
    },
  };
}
