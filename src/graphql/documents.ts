// Query text -> a checked document, once per text: size, nesting and token
// limits, parse, the document's shape (graphql/limits.ts), validation. The
// cache is keyed by the text itself (a Map lookup hashes it in a fraction of
// a SHA-256's time; the text's bytes are charged to the entry), a long text by
// its SHA-256 (V8 hashes a string of more than 16,383 characters by its length
// alone: 150 cached texts of 17 KB of one length made a lookup 0.7-1.9 ms), and bounded in
// bytes as well as in entries, and only the request pipeline fills it, for requests the database
// accepted: an anonymous or refused caller costs bounded work and leaves nothing behind.
import {
  getOperationAST,
  GraphQLError,
  NoSchemaIntrospectionCustomRule,
  parse,
  specifiedRules,
  validate,
  type DocumentNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import { LRUCache } from 'lru-cache';
import { createHash } from 'node:crypto';
import { apiError, isGraphQLError } from '../errors.ts';
import { costIgnoresVariables, measureDocument, operationCost, operationDocument, textNesting, type DocumentLimits } from './limits.ts';

/** A document that passed every check, with what each of its operations needs to run. */
export type CheckedDocument = {
  readonly document: DocumentNode;
  /** Per operation name ('' for the only one). */
  readonly operations: Map<string, CheckedOperation | null>;
};

export type CheckedOperation = {
  readonly definition: OperationDefinitionNode;
  /** The operation with the fragments it may use, for pricing. */
  readonly priced: DocumentNode;
  /** Its cost, when no variable changes it (most operations): computed once. */
  fixedCost: number | undefined;
  readonly costVaries: boolean;
  /** graphql-jit's function, compiled on the operation's second use (null: graphql-js runs it). */
  compiled: CompiledQuery | null | undefined;
  uses: number;
};

export type DocumentOptions = {
  readonly limits: DocumentLimits;
  /** false: introspection is refused (production). */
  readonly introspection: boolean;
  /** false: validation messages do not suggest field or type names ("Did you mean …?"), which would map the schema to a stranger. */
  readonly suggestions: boolean;
  /** Bytes of cached query text and documents, estimated (a parsed document takes about 12 times its text). */
  readonly cacheBytes: number;
  readonly cacheEntries: number;
};

/** Nesting of brackets allowed in the text: above any field depth, far below what recursion survives. */
const MAX_TEXT_NESTING = 64;
const AST_BYTES_PER_CHARACTER = 12;

export type DocumentCache = {
  /** The checked document for a query text, or the errors that refuse it (BAD_USER_INPUT, status 400). */
  check(query: string): { key: string; checked: CheckedDocument } | { errors: readonly GraphQLError[] };
  /** Keeps a document the database accepted a request for. */
  remember(key: string, checked: CheckedDocument, query: string): void;
  /** The operation to run, or undefined when operationName names none. */
  operation(checked: CheckedDocument, operationName: string | undefined): CheckedOperation | undefined;
  /** The operation's cost with these variables (graphql/limits.ts). */
  cost(operation: CheckedOperation, variables: Record<string, unknown> | undefined): number | undefined;
  /** The compiled function once the operation has been used twice (documents run once are not worth compiling). */
  compiled(operation: CheckedOperation, checked: CheckedDocument, operationName: string | undefined): CompiledQuery | null;
  /** What the cache holds now (tests, metrics). */
  stats(): { readonly entries: number; readonly bytes: number };
};

export function createDocumentCache(schema: GraphQLSchema, options: DocumentOptions): DocumentCache {
  const { limits } = options;
  const cache = new LRUCache<string, CheckedDocument>({
    max: options.cacheEntries,
    maxSize: options.cacheBytes,
  });
  const rules = options.introspection ? specifiedRules : [...specifiedRules, NoSchemaIntrospectionCustomRule];

  function fresh(query: string): CheckedDocument | readonly GraphQLError[] {
    const bytes = Buffer.byteLength(query);
    if (bytes > limits.documentBytes) return [tooLarge('documentBytes', limits.documentBytes, bytes, 'is larger than allowed (bytes)')];
    const nesting = textNesting(query);
    if (nesting > MAX_TEXT_NESTING) return [tooLarge('depth', MAX_TEXT_NESTING, nesting, 'nests brackets too deeply')];
    let document: DocumentNode;
    try {
      document = parse(query, { maxTokens: limits.tokens, noLocation: false });
      measureDocument(document, limits);
    } catch (error) {
      // graphql-js aborts parsing past maxTokens with a syntax error: named here like every other limit.
      if (isGraphQLError(error) && /contains more tha[nt] \d+ tokens/.test(error.message)) {
        return [apiError('BAD_USER_INPUT', `The document has more than ${limits.tokens} tokens`, { limit: 'tokens', max: limits.tokens, http: { status: 400 } })];
      }
      return [asBadInput(error)];
    }
    const errors = validate(schema, document, rules, { maxErrors: 10 });
    if (errors.length > 0) return errors.map((error) => asBadInput(options.suggestions ? error : withoutSuggestion(error)));
    return { document, operations: new Map() };
  }

  return {
    check(query) {
      const key = keyOf(query);
      const cached = cache.get(key);
      if (cached) return { key, checked: cached };
      const checked = fresh(query);
      return Array.isArray(checked) ? { errors: checked } : { key, checked: checked as CheckedDocument };
    },
    remember(key, checked, query) {
      if (cache.has(key)) return;
      // The document and, as the key, the text itself.
      cache.set(key, checked, { size: Math.max(1, Buffer.byteLength(query) * (AST_BYTES_PER_CHARACTER + 1)) });
    },
    operation(checked, operationName) {
      const name = operationName ?? '';
      let operation = checked.operations.get(name);
      if (operation === undefined) {
        const definition = getOperationAST(checked.document, operationName);
        const priced = definition && operationDocument(checked.document, definition);
        operation = definition && priced ? { definition, priced, fixedCost: undefined, costVaries: !costIgnoresVariables(priced), compiled: undefined, uses: 0 } : null;
        checked.operations.set(name, operation);
      }
      return operation ?? undefined;
    },
    stats: () => ({ entries: cache.size, bytes: cache.calculatedSize }),
    cost(operation, variables) {
      if (operation.costVaries) return operationCost(schema, operation.priced, variables);
      // Priced with the first variables that coerce (required ones must be present); the same for all others.
      return (operation.fixedCost ??= operationCost(schema, operation.priced, variables));
    },
    compiled(operation, checked, operationName) {
      if (operation.compiled !== undefined) return operation.compiled;
      if (++operation.uses < 2) return null;
      const result = compileQuery(schema, checked.document, operationName, { disablingCapturingStackErrors: true });
      operation.compiled = isCompiledQuery(result) ? result : null;
      return operation.compiled;
    },
  };
}

function withoutSuggestion(error: GraphQLError): GraphQLError {
  const message = error.message.replace(/ Did you mean .*\?$/s, '');
  return message === error.message ? error : new GraphQLError(message, { source: error.source, positions: error.positions });
}

function tooLarge(limit: keyof DocumentLimits, max: number, found: number, what: string): GraphQLError {
  return apiError('BAD_USER_INPUT', `The document ${what} (${found}, at most ${max})`, { limit, max, found, http: { status: 400 } });
}

/** A syntax, limit or validation error: the request as a whole is bad input. Parser text stays ours (graphql-js's messages). */
function asBadInput(error: unknown): GraphQLError {
  if (isGraphQLError(error) && error.extensions.code === 'BAD_USER_INPUT') return error;
  const message = isGraphQLError(error) ? error.message : 'The document could not be read';
  return new GraphQLError(message, {
    ...(isGraphQLError(error) ? { source: error.source, positions: error.positions } : {}),
    extensions: { code: 'BAD_USER_INPUT', http: { status: 400 } },
  });
}

/** Past this many characters V8 hashes a string by its length only (String::kMaxHashCalcLength). */
const LONGEST_HASHED_TEXT = 16_383;

/** A text's cache key: the text itself, or for a long one its SHA-256 (a key V8 hashes by content). */
export function keyOf(query: string): string {
  if (query.length > LONGEST_HASHED_TEXT) return `${LONG_TEXT}${createHash('sha256').update(query).digest('base64')}`;
  // A short text spelling a long one's key is not that document (it is not GraphQL either: a key of its own).
  return query.startsWith(LONG_TEXT) ? `${LONG_TEXT}${query}` : query;
}

const LONG_TEXT = 'sha256:';
