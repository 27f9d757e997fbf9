// How an operation ends (the request pipeline, src/http/pipeline.ts, calls
// it whichever transport carried the request): commit when it succeeded, roll back otherwise. A
// refused request (credentials, tenant) replaces the whole result, and a
// mutation with any error writes nothing and says so (data: null).
import {
  getNamedType,
  isObjectType,
  Kind,
  OperationTypeNode,
  type ExecutionResult,
  type GraphQLObjectType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { errorForSqlState } from '../db/errors.ts';
import { CommittedBeforeFailure, type TransactionMode } from '../db/tenant-transaction.ts';
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

/**
 * The most a write's own row may take of the response budget for it to commit with its statement: a marked
 * field returns one row of a table whose columns are bounded (a task: a 300-character title, input and output
 * of at most 64 KiB each), so under a budget of this much no run past the statement can be refused for size.
 */
export const WRITE_ROW_BOUND_BYTES = 1024 * 1024;

/**
 * Whether a mutation may commit with its statement (TenantTransaction's
 * `commitWithWrite`): nothing that runs after its statement can fail or read
 * more, so committing before its answer is seen changes nothing. It has one
 * root field, marked `extensions: { commitsWithStatement: true }` by a
 * resolver whose statement is its last act that can fail (it returns the row
 * as the statement gave it), and its answer reads only that row: exposed
 * fields without scopes of their own, node ids and __typename, no
 * aliases, no fragments, no directives: its answer is the row once, so it is
 * below WRITE_ROW_BOUND_BYTES and cannot be refused for size after the
 * COMMIT already left (test/mutation-response-limit.test.ts). Anything else
 * (a relation, a second root field) keeps the COMMIT until the answer is known.
 */
export function commitsWithStatement(schema: GraphQLSchema, operation: OperationDefinitionNode, maxResponseBytes: number): boolean {
  if (operation.operation !== OperationTypeNode.MUTATION || maxResponseBytes < WRITE_ROW_BOUND_BYTES || operation.directives?.length) return false;
  const fields = operation.selectionSet.selections.filter((selection) => !(selection.kind === Kind.FIELD && selection.name.value === '__typename'));
  const [root] = fields;
  if (fields.length !== 1 || root?.kind !== Kind.FIELD || root.alias || root.directives?.length) return false;
  const field = schema.getMutationType()?.getFields()[root.name.value];
  if (field?.extensions.commitsWithStatement !== true) return false;
  const type = getNamedType(field.type);
  return isObjectType(type) && readsOnlyTheRow(type, root.selectionSet);
}

/** Every selected field returns what the row already holds: an exposed field (nested: its own such fields), a node's id, __typename. */
function readsOnlyTheRow(type: GraphQLObjectType, selectionSet: SelectionSetNode | undefined): boolean {
  if (!selectionSet) return true;
  if (hasScopes(type.extensions)) return false; // a role check after the write could refuse it
  const isNode = type.getInterfaces().some((face) => face.name === 'Node');
  return selectionSet.selections.every((selection) => {
    // An alias repeats a field in the answer (30 of a 64 KiB input pass 1 MiB): the row's bound holds without them.
    if (selection.kind !== Kind.FIELD || selection.alias || selection.directives?.length) return false;
    const name = selection.name.value;
    if (name === '__typename' || (name === 'id' && isNode)) return true;
    const field = type.getFields()[name];
    if (field?.extensions.pothosExposedField === undefined || hasScopes(field.extensions)) return false;
    const named = getNamedType(field.type);
    return isObjectType(named) ? readsOnlyTheRow(named, selection.selectionSet) : true;
  });
}

/**
 * Per cached mutation, whether it commits with its statement: learned from a
 * run, like a read's shape. It may when `commitsWithStatement` says so and its
 * last run sent its statements in one tick after the request check; one run
 * that sent them in more (it read before it wrote) and it never does again.
 */
export function createWriteShapes(schema: GraphQLSchema, maxResponseBytes: number) {
  const atOnce = new WeakMap<{ readonly definition: OperationDefinitionNode }, boolean>();
  return {
    atOnce: (operation: { readonly definition: OperationDefinitionNode }) => atOnce.get(operation) === true,
    /** `writeTicks`: TenantTransaction's, after the run (0: nothing was sent, nothing learned). */
    learn(operation: { readonly definition: OperationDefinitionNode }, writeTicks: number): void {
      const known = atOnce.get(operation);
      if (known === false || writeTicks === 0) return;
      if (writeTicks !== 1) atOnce.set(operation, false);
      // What the document allows is asked once (a walk of its selection: ~20 us a write when it ran on every run).
      else if (known === undefined) atOnce.set(operation, commitsWithStatement(schema, operation.definition, maxResponseBytes));
    },
  };
}

/** Whether a type or field has scope-auth rules of its own (Pothos keeps its options in the extensions). */
function hasScopes(extensions: Readonly<Record<string, unknown>>): boolean {
  const options = extensions.pothosOptions as { authScopes?: unknown; grantScopes?: unknown } | undefined;
  return options?.authScopes !== undefined || options?.grantScopes !== undefined;
}

/** Ends the operation's transaction and returns the result to send. */
export async function finishOperation(context: GraphQLContext, result: ExecutionResult, isMutation: boolean, log: Logger): Promise<ExecutionResult> {
  const refused = await context.identity.confirmed().then(
    () => undefined,
    (error: unknown) => error,
  );
  if (refused !== undefined) {
    await context.db.end(false).catch((error: unknown) => {
      // A write sent as an assumed principal, its COMMIT already queued, that committed though its check failed here: never silent.
      if (error instanceof CommittedBeforeFailure) log.error({ err: error }, 'a write committed although its request check failed');
    });
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
