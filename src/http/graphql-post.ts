// The hot path: POST /graphql with a JSON body, straight from node:http to
// the executor. Documents are parsed, validated and compiled (graphql-jit)
// once per query text and operation (LRU); the context, the transaction rules
// (graphql/operation.ts) and the error masking are the same as on Yoga's
// path, which keeps everything else (GET, GraphiQL, CORS, other media types).
// One write for the response.
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  execute,
  getOperationAST,
  GraphQLError,
  OperationTypeNode,
  parse,
  validate,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
} from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import { LRUCache } from 'lru-cache';
import type { TokenVerifier } from '../auth/tokens.ts';
import type { Sql } from '../db/pool.ts';
import { TenantTransaction } from '../db/tenant-transaction.ts';
import { apiError, isGraphQLError } from '../errors.ts';
import type { GraphQLContext } from '../graphql/context.ts';
import { finishOperation, transactionMode } from '../graphql/operation.ts';
import type { Logger } from '../logger.ts';
import { resolveTenant, type HeaderSource, type TenancySettings } from '../tenancy/resolve.ts';

/** What the request log line reports, filled in as the request goes. */
export type RequestState = { userId?: string; tenant?: string; transaction?: TenantTransaction };

export type PostHandler = (req: IncomingMessage, res: ServerResponse, requestId: string, state: RequestState) => Promise<void>;

// Above the largest input the schema accepts (1 MiB of context content, up to 4 bytes a character).
const MAX_BODY_BYTES = 5 << 20;
const MAX_TOKENS = 10_000; // a bound on parsing work per query text
const DOCUMENTS = 1_000;

/** True for the requests this path serves: a JSON POST, no browser CORS, a JSON answer acceptable. */
export function isJsonPost(req: IncomingMessage, path: string): boolean {
  if (req.method !== 'POST' || path !== '/graphql' || req.headers.origin !== undefined) return false;
  if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) return false;
  const accept = req.headers.accept;
  return accept === undefined || accept === '*/*' || /application\/json|\*\/\*/i.test(accept);
}

export function createPostHandler(options: {
  schema: GraphQLSchema;
  sql: Sql;
  verifyToken: TokenVerifier;
  tenancy: TenancySettings;
  log: Logger;
  maskError: (error: unknown) => Error;
}): PostHandler {
  const { schema, sql, verifyToken, tenancy, log, maskError } = options;
  const documents = new LRUCache<string, Prepared | readonly GraphQLError[]>({ max: DOCUMENTS });

  function prepare(query: string): Prepared | readonly GraphQLError[] {
    let cached = documents.get(query);
    if (!cached) {
      try {
        const document = parse(query, { maxTokens: MAX_TOKENS });
        const errors = validate(schema, document);
        cached = errors.length > 0 ? errors : { document, compiled: new Map() };
      } catch (error) {
        cached = [isGraphQLError(error) ? error : new GraphQLError(String(error))];
      }
      documents.set(query, cached);
    }
    return cached;
  }

  /** The operation compiled to a function, or null where graphql-jit declines (graphql-js runs it then). */
  function compiled(prepared: Prepared, operationName: string | undefined): CompiledQuery | null {
    let query = prepared.compiled.get(operationName ?? '');
    if (query === undefined) {
      const result = compileQuery(schema, prepared.document, operationName, { disablingCapturingStackErrors: true });
      query = isCompiledQuery(result) ? result : null;
      prepared.compiled.set(operationName ?? '', query);
    }
    return query;
  }

  async function run(req: IncomingMessage, requestId: string, state: RequestState): Promise<ExecutionResult> {
    const params = parseParams(await readBody(req));
    const prepared = prepare(params.query);
    if (!('document' in prepared)) return { errors: prepared.map(asBadInput) };
    const doc = prepared.document;
    const operation = getOperationAST(doc, params.operationName);
    if (!operation) return { errors: [apiError('BAD_USER_INPUT', 'Name one operation of the document in operationName')] };
    if (operation.operation === OperationTypeNode.SUBSCRIPTION) return { errors: [apiError('BAD_USER_INPUT', 'Subscriptions are not served here')] };

    const selection = await resolveTenant(nodeHeaders(req), verifyToken, tenancy);
    const db = new TenantTransaction(sql, selection);
    Object.assign(state, { userId: selection.credentials.kind === 'user' ? selection.credentials.userId : undefined, tenant: selection.tenant, transaction: db });
    const context: GraphQLContext = { requestId, db };
    db.start(transactionMode(schema, operation));
    const jit = compiled(prepared, params.operationName);
    const result = jit
      ? await jit.query(undefined, context, params.variables)
      : await execute({ schema, document: doc, variableValues: params.variables, operationName: params.operationName, contextValue: context });
    return finishOperation(context, result, operation.operation === OperationTypeNode.MUTATION, log);
  }

  return async (req, res, requestId, state) => {
    let result: ExecutionResult;
    try {
      result = await run(req, requestId, state);
    } catch (error) {
      result = { errors: [error as GraphQLError] }; // masked below: coded errors pass, anything else is INTERNAL
    }
    const errors = result.errors?.map((error) => maskError(error) as GraphQLError);
    send(res, statusOf(errors), { ...(errors ? { errors: errors.map(format) } : {}), ...('data' in result ? { data: result.data } : {}) });
  };
}

type Prepared = { readonly document: DocumentNode; readonly compiled: Map<string, CompiledQuery | null> };

type Params = { query: string; variables: Record<string, unknown> | undefined; operationName: string | undefined };

function parseParams(body: string): Params {
  let params: unknown;
  try {
    params = JSON.parse(body);
  } catch {
    throw apiError('BAD_USER_INPUT', 'The body is not valid JSON', { http: { status: 400 } });
  }
  const { query, variables, operationName } = (params ?? {}) as Record<string, unknown>;
  if (typeof query !== 'string') throw apiError('BAD_USER_INPUT', 'The body needs a "query" string', { http: { status: 400 } });
  if (variables != null && (typeof variables !== 'object' || Array.isArray(variables))) {
    throw apiError('BAD_USER_INPUT', '"variables" must be an object', { http: { status: 400 } });
  }
  if (operationName != null && typeof operationName !== 'string') throw apiError('BAD_USER_INPUT', '"operationName" must be a string', { http: { status: 400 } });
  return { query, variables: (variables ?? undefined) as Record<string, unknown> | undefined, operationName: operationName ?? undefined };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else if (chunks.length > 0) {
        chunks.length = 0; // the rest is read and dropped; the answer closes the connection
        reject(apiError('BAD_USER_INPUT', 'The body is larger than 5 MiB', { http: { status: 413 } }));
      }
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** A syntax or validation error: the request as a whole is bad input. */
function asBadInput(error: GraphQLError): GraphQLError {
  return new GraphQLError(error.message, {
    source: error.source,
    positions: error.positions,
    extensions: { code: 'BAD_USER_INPUT', http: { status: 400 } },
  });
}

export function nodeHeaders(req: IncomingMessage): HeaderSource {
  return {
    get: (name) => {
      const value = req.headers[name];
      return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
    },
  };
}

/** The highest status any error asks for (a refused request), else 200. */
function statusOf(errors: readonly GraphQLError[] | undefined): number {
  let status = 200;
  for (const error of errors ?? []) {
    const asked = (error.extensions.http)?.status;
    if (asked && (status === 200 || asked > status)) status = asked;
  }
  return status;
}

/** The error as clients see it: no `http` extension, nothing else internal. */
function format(error: GraphQLError) {
  const { http: _http, ...extensions } = error.extensions;
  return {
    message: error.message,
    ...(error.locations ? { locations: error.locations } : {}),
    ...(error.path ? { path: error.path } : {}),
    ...(Object.keys(extensions).length > 0 ? { extensions } : {}),
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(json),
    ...(status === 413 ? { connection: 'close' } : {}),
  });
  res.end(json);
}
