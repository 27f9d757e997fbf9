// What a client sees of an error: our coded errors as they are, database
// errors as their contract code, anything else as INTERNAL (logged in full).
import { GraphQLError } from 'graphql';
import { errorForSqlState } from '../db/errors.ts';
import { apiError, badUserInput, internal, isApiError, isGraphQLError } from '../errors.ts';
import type { Logger } from '../logger.ts';

export function createMaskError(log: Logger) {
  return (error: unknown): Error => {
    const original = isGraphQLError(error) && error.originalError ? error.originalError : error;
    if (isApiError(original)) return withPath(original, error);
    // Pothos rejects invalid arguments (a negative page size, say) with this error.
    if (original instanceof Error && original.name === 'PothosValidationError') {
      return withPath(badUserInput('arguments', original.message), error);
    }
    // graphql-js's own request errors (a variable of the wrong type, say): bad input, not a fault.
    if (isGraphQLError(original) && !original.originalError) {
      return withPath(apiError('BAD_USER_INPUT', original.message), error);
    }
    const mapped = errorForSqlState(original);
    if (mapped) return withPath(mapped, error);
    log.error({ err: original }, 'unexpected error');
    return withPath(internal(), error);
  };
}

/** Keeps the field path of the error being replaced. */
function withPath(replacement: GraphQLError, replaced: unknown): GraphQLError {
  if (!isGraphQLError(replaced) || !replaced.path) return replacement;
  return new GraphQLError(replacement.message, {
    path: replaced.path,
    nodes: replaced.nodes,
    extensions: replacement.extensions,
  });
}
