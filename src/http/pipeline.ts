// What happens to a GraphQL request, whichever transport carried it (the JSON
// POST path in http/graphql-post.ts, Yoga's GET path in server.ts): the
// credentials and tenant selection, the request guards (rate limits, fair
// share), the document and its limits, the transaction, execution, masking
// and the response ceiling. A limit, a guard or a metric is added here, once.
import { createSourceEventStream, execute, GraphQLError, OperationTypeNode, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { LRUCache } from 'lru-cache';
import type { TokenVerifier } from '../auth/tokens.ts';
import { isRetryableConflict } from '../db/errors.ts';
import { poolState, type Sql } from '../db/pool.ts';
import { PrincipalChanged, TenantTransaction, type Principal } from '../db/tenant-transaction.ts';
import { apiError, forbidden, responseTooLarge, unavailable } from '../errors.ts';
import { requestContext, type AuditServices } from '../graphql/context.ts';
import { createDocumentCache, type CheckedOperation, type DocumentOptions } from '../graphql/documents.ts';
import { refuseCost } from '../graphql/limits.ts';
import { subscriptionRole } from '../graphql/permissions-doc.ts';
import { createMaskError } from '../graphql/masking.ts';
import { createWriteShapes, finishOperation, transactionMode } from '../graphql/operation.ts';
import type { Logger } from '../logger.ts';
import type { LiveStream, SubscriptionEngine } from '../subscriptions/engine.ts';
import { isLiveSource } from '../subscriptions/live.ts';
import { roleAtLeast } from '../tenancy/roles.ts';
import type { TenantSelection } from '../tenancy/principal.ts';
import { resolveTenant, type HeaderSource, type TenancySettings } from '../tenancy/resolve.ts';
import type { Admission, RequestGuard } from './guard.ts';

/** What the request log line reports, filled in as the request goes. */
export type RequestState = {
  userId?: string;
  tenant?: string;
  /** The token's `tid` claim: when the request works in another tenant (X-Tenant-ID, host name), the log line names both. */
  tokenTenant?: string;
  transaction?: TenantTransaction;
  refused?: string;
};

export type PipelineRequest = {
  /** The request's GraphQL parameters as the transport decoded them (unchecked). */
  readonly params: unknown;
  readonly headers: HeaderSource;
  /** A GET may only read (GraphQL over HTTP): a mutation is refused with 405. */
  readonly readOnly: boolean;
  readonly requestId: string;
  readonly state: RequestState;
  /** When the request must be over (ms since the epoch), set by the pipeline as it starts. */
  deadline?: number;
  /** The transport carries a stream of results (SSE, WebSocket): a subscription is answered with one. */
  readonly streams?: boolean;
  /** The credentials, when the transport checked them before reading the body (Pipeline.credentials); else checked here. */
  readonly credentials?: Credentialed;
};

/** Credentials checked from the headers alone: the selection, and a token's expiry (it ends a subscription's stream). */
export type Credentialed = { readonly selection: TenantSelection; readonly expiresAt: number | undefined };

export type PipelineResponse = {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** The body as sent: the result with masked errors and no internal extensions. */
  readonly json: string;
  /** The same errors, masked, with their `http` extension (for Yoga, which sets the status from them). */
  readonly errors: readonly GraphQLError[] | undefined;
  readonly data: ExecutionResult['data'];
  /** A subscription's events (each a JSON text like `json`), when the request started one. */
  readonly stream?: LiveStream;
};

export type PipelineOptions = {
  readonly schema: GraphQLSchema;
  readonly sql: Sql;
  readonly verifyToken: TokenVerifier;
  readonly tenancy: TenancySettings;
  readonly log: Logger;
  readonly documents: DocumentOptions;
  /** Largest operation cost (graphql/limits.ts). */
  readonly maxCost: number;
  /** Largest response body in bytes; past it the request answers BAD_USER_INPUT instead. */
  readonly maxResponseBytes: number;
  readonly guards?: readonly RequestGuard[];
  /** Where subscriptions live (src/subscriptions/engine.ts); without it they answer UNAVAILABLE. */
  readonly subscriptions?: SubscriptionEngine | undefined;
  /** The audit signing key, for verifyAuditChain (src/modules/audit-chain). */
  readonly audit?: AuditServices;
  /** Credentials and tenant pairs whose last principal is kept for writes to assume: LAST_PRINCIPALS unless given (tests make it small). */
  readonly lastPrincipals?: number;
};

export type Pipeline = {
  execute(request: PipelineRequest): Promise<PipelineResponse>;
  /**
   * The credentials, the guards and the database's check of them, nothing
   * else (a WebSocket's connection_init): who the database accepted; throws the coded refusal.
   */
  authenticate(headers: HeaderSource, requestId: string): Promise<Principal>;
  /**
   * The credentials from the headers, without the database (presence, form, a
   * token's signature and expiry): what a transport checks before it reads a
   * body; throws the coded refusal.
   */
  credentials(headers: HeaderSource, streams?: boolean): Promise<Credentialed>;
  /** The guards and the database's check of credentials the headers cannot prove (an API key), nothing else; throws the coded refusal. */
  confirm(selection: TenantSelection, requestId?: string): Promise<void>;
  /** The response to a request refused before it reached `execute` (a coded error, masked like any other). */
  refuse(error: unknown, state: RequestState): PipelineResponse;
  /** The document cache's size (tests, metrics). */
  documents(): { readonly entries: number; readonly bytes: number };
};

/** A transaction rolled back by a deadlock or serialization failure is run at most this many times in all. */
const CONFLICT_ATTEMPTS = 2;

/** Credentials and tenant pairs whose last principal is kept for writes to assume (a few hundred bytes each). */
const LAST_PRINCIPALS = 10_000;

/** Who asks for which tenant, as the request check sees it (ALLOWED_TENANTS is the process's, the same for all). */
function principalKeyOf({ credentials, tenant }: TenantSelection): string {
  return credentials.kind === 'user'
    ? `user ${credentials.userId} ${credentials.roleCap ?? ''} ${tenant ?? ''}`
    : `key ${credentials.secretHash.toString('base64')} ${tenant ?? ''}`;
}

/** Whether two principals are the same in every field the request check answers (`assume` is confirmed on all of them). */
function samePrincipal(kept: Principal | undefined, found: Principal): boolean {
  if (kept === undefined || kept.userId !== found.userId || kept.apiKeyId !== found.apiKeyId || kept.operator !== found.operator) return false;
  const [a, b] = [kept.tenant, found.tenant];
  return a === b || (a !== undefined && b !== undefined && a.id === b.id && a.slug === b.slug && a.name === b.name && a.status === b.status && a.role === b.role);
}

type Params = { query: string; variables: Record<string, unknown> | undefined; operationName: string | undefined };

/** What `run` answers: a result, and for a subscription its stream; for a committed mutation, its body (built before the COMMIT). */
type RunResult = ExecutionResult & { stream?: LiveStream; json?: string };

export function createPipeline(options: PipelineOptions): Pipeline {
  const { schema, sql, verifyToken, tenancy, log, maxCost, maxResponseBytes, subscriptions } = options;
  const guards = options.guards ?? [];
  const documents = createDocumentCache(schema, options.documents);
  const maskError = createMaskError(log);
  /** Per cached operation: whether its runs send every statement in the tick the transaction begins (true), or not (false). */
  const readsAtOnce = new WeakMap<CheckedOperation, boolean>();
  /** Per cached mutation: whether it commits with its statement (graphql/operation.ts): 1 round trip (`assume`) or 2, instead of 3. */
  const writes = createWriteShapes(schema, maxResponseBytes);
  /** Per credentials and tenant asked for: the principal their last request check answered (a write assumes it, `assume`). */
  const lastPrincipals = new LRUCache<string, Principal>({ max: options.lastPrincipals ?? LAST_PRINCIPALS });

  async function run(request: PipelineRequest, admissions: Admission[]): Promise<RunResult> {
    const params = checkParams(request.params);
    // Credentials first: a caller without them gets no parsing, no cache entry, no guard state.
    const { selection, expiresAt } = request.credentials ?? (await credentials(request.headers, request.streams));
    const { state } = request;
    state.userId = selection.credentials.kind === 'user' ? selection.credentials.userId : undefined;
    state.tenant = selection.tenant;
    state.tokenTenant = selection.tokenTenant;
    const guarded = { selection, requestId: request.requestId, deadline: request.deadline };
    for (const guard of guards) admissions.push(await guard.admit(guarded));

    const found = documents.check(params.query);
    if ('errors' in found) return { errors: [...found.errors] };
    const { key, checked } = found;
    const operation = documents.operation(checked, params.operationName);
    if (!operation) throw badRequest('Name one operation of the document in operationName');
    const kind = operation.definition.operation;
    if (kind === OperationTypeNode.SUBSCRIPTION && !request.streams) {
      throw badRequest('A subscription needs a stream: send it with Accept: text/event-stream (SSE) or over a WebSocket (graphql-ws)', 406);
    }
    if (kind === OperationTypeNode.MUTATION && request.readOnly) {
      throw apiError('BAD_USER_INPUT', 'Mutations need a POST request', { http: { status: 405, headers: { allow: 'POST' } } });
    }
    refuseCost(documents.cost(operation, params.variables), maxCost);
    if (kind === OperationTypeNode.SUBSCRIPTION) {
      const started = await startSubscription(request, selection, expiresAt, checked.document, params);
      if (started.stream) documents.remember(key, checked, params.query);
      return started;
    }

    const jit = documents.compiled(operation, checked, params.operationName);
    const mode = transactionMode(schema, operation.definition);
    const principalKey = mode === 'tenant' ? principalKeyOf(selection) : undefined;
    // A write that commits with its statement runs as the principal its caller's last check answered: one round trip.
    let assume = principalKey === undefined || kind !== OperationTypeNode.MUTATION ? undefined : lastPrincipals.get(principalKey);
    // Runs counted against CONFLICT_ATTEMPTS: the run again after PrincipalChanged is not one (the first ran nothing).
    let attempt = 1;
    // Run again on another connection once its connection turned out lost before BEGIN was answered (nothing ran): once.
    let reconnected = false;
    for (;;) {
      // A read that sent all its statements as it started last time: BEGIN, the check, the statements and COMMIT in one write.
      const commitEarly = kind === OperationTypeNode.QUERY && readsAtOnce.get(operation) === true;
      const commitWithWrite = kind === OperationTypeNode.MUTATION && writes.atOnce(operation);
      const db = new TenantTransaction(sql, selection, {
        deadline: request.deadline,
        readBytes: maxResponseBytes,
        requestId: request.requestId,
        commitEarly,
        commitWithWrite,
        assume: commitWithWrite ? assume : undefined,
        writes: kind === OperationTypeNode.MUTATION,
      });
      request.state.transaction = db;
      const context = requestContext(request.requestId, db, options.audit);
      db.start(mode);
      const result = jit
        ? await jit.query(undefined, context, params.variables)
        : await execute({ schema, document: checked.document, variableValues: params.variables, operationName: params.operationName, contextValue: context });
      if (!reconnected && mayBeginAgain(db, request)) {
        // Its connection was dead before the database began the transaction (a backend terminated, a restart the pool had
        // not noticed yet): nothing of it ran, so it runs once more, on another connection, instead of answering `database`.
        log.debug({ requestId: request.requestId }, 'the connection was lost before the transaction began: running it again on another');
        await db.end(false);
        reconnected = true;
        continue;
      }
      if (assume && commitWithWrite && (await db.confirmed().then(() => false, (error: unknown) => error instanceof PrincipalChanged))) {
        // The check found another principal (a role or membership changed): nothing ran past it, the COMMIT rolled back.
        // Once more, waiting for the check: at most once, since nothing is assumed from here on.
        log.debug({ requestId: request.requestId }, 'the request check found another principal than the one assumed: running the write again');
        await db.end(false);
        lastPrincipals.delete(principalKey!);
        assume = undefined;
        continue;
      }
      // Stored only when it changed: the check answers a new object every time, and storing each one kept it (young) in
      // the cache's old arrays until the next request of the same caller, for the scavenger to copy and promote.
      if (principalKey !== undefined && db.known && !samePrincipal(lastPrincipals.peek(principalKey), db.known)) lastPrincipals.set(principalKey, db.known);
      // Learned for good: one statement sent after the first tick (a nested level) and the operation is never read at once again.
      if (kind === OperationTypeNode.QUERY && readsAtOnce.get(operation) !== false) readsAtOnce.set(operation, !db.sentLate);
      if (kind === OperationTypeNode.MUTATION) writes.learn(operation, db.writeTicks);
      // Rows past the response limit: the whole request is refused (and rolled back), not answered in part. The document
      // is kept all the same once the database accepted the caller: what it read is a limit of the data, checked again
      // on every run, so a repeated refusal is the same refusal, not parsed and validated again.
      if (db.overReadBudget) {
        if (db.known) documents.remember(key, checked, params.query);
        return { errors: [responseTooLarge(maxResponseBytes)] };
      }
      // A mutation's answer is built and measured before its COMMIT: one past the response limit is refused and rolled
      // back, never refused after it committed (a client told "failed" retries, and the write would be made twice).
      // One that committed with its statement is the written row once, below the limit (operation.ts commitsWithStatement).
      const json = kind === OperationTypeNode.MUTATION && !result.errors?.length ? dataBody(result.data) : undefined;
      if (json !== undefined && overLimit(json, maxResponseBytes)) {
        if (!commitWithWrite) {
          // Kept as above: its next run is measured again (commitsWithStatement admits no shape whose answer passes the
          // limit: only answers below WRITE_ROW_BOUND_BYTES commit with their statement, and this one did not).
          if (db.known) documents.remember(key, checked, params.query);
          return { errors: [responseTooLarge(maxResponseBytes)] }; // rolled back by handle()
        }
        log.error({ requestId: request.requestId, bytes: Buffer.byteLength(json) }, 'a write that committed with its statement answered past the response limit: commitsWithStatement admits a shape it cannot bound');
      }
      const finished = await finishOperation(context, result, kind === OperationTypeNode.MUTATION, log);
      // A deadlock or serialization failure rolled the whole transaction back and nothing was sent:
      // run it once more while the deadline allows (DESIGN.md section 5, CONFLICT).
      if (attempt < CONFLICT_ATTEMPTS && finished.errors?.some(isRetryableConflict) && Date.now() < (request.deadline ?? Infinity)) {
        log.debug({ requestId: request.requestId, attempt }, 'concurrent update: running the transaction again');
        attempt++;
        continue;
      }
      if (db.known) documents.remember(key, checked, params.query); // the database accepted the caller
      return json !== undefined && finished === result ? { data: result.data, json } : finished; // finished is result when it committed
    }
  }

  /**
   * A subscription starts in a transaction of its own: the principal's check,
   * the field's role, its attachment to the tenant's events, then its
   * `subscribe` (what it follows must be visible; the rows it can see are
   * named). Its events are re-read later, each in a transaction of the
   * subscriber's (src/subscriptions/engine.ts), those held while it started first.
   */
  async function startSubscription(
    request: PipelineRequest,
    selection: Parameters<SubscriptionEngine['open']>[0]['selection'],
    expiresAt: number | undefined,
    document: Parameters<SubscriptionEngine['open']>[0]['document'],
    params: Params,
  ): Promise<RunResult> {
    if (!subscriptions) throw unavailable('events', 'Live events are not available on this server');
    const begin = () => {
      const opened = new TenantTransaction(sql, selection, { deadline: request.deadline, readBytes: maxResponseBytes });
      request.state.transaction = opened;
      opened.start('tenant');
      return opened;
    };
    let db = begin();
    let principal: Awaited<ReturnType<TenantTransaction['principal']>>;
    try {
      principal = await db.principal();
    } catch (error) {
      // As run() does: a connection dead before BEGIN was answered ran nothing, so the start runs once more on another
      // (after a restart every subscriber reconnects at once, onto the pool's connections that died with it).
      if (!mayBeginAgain(db, request)) throw error;
      log.debug({ requestId: request.requestId }, 'the connection was lost before the transaction began: starting the subscription on another');
      await db.end(false);
      db = begin();
      principal = await db.principal();
    }
    const context = requestContext(request.requestId, db);
    const requiredRole = subscriptionRole(schema, document, params.operationName);
    if (!roleAtLeast(principal.tenant!.role, requiredRole)) return finishOperation(context, { errors: [forbidden()] }, false, log);
    // Attached to the tenant's events before the start reads what the subscriber can see (each statement of this
    // READ COMMITTED transaction reads a snapshot taken after this): a change committed after that read is held and
    // sent first, not lost between the read and the stream (subscriptions/engine.ts).
    const listening = subscriptions.listen(principal.tenant!.id);
    try {
      const { variables, operationName } = params;
      const source = await createSourceEventStream({ schema, document, variableValues: variables, operationName, contextValue: context });
      if (!isLiveSource(source)) return await finishOperation(context, source as ExecutionResult, false, log);
      await db.end(false); // it only read
      const stream = subscriptions.open({
        requestId: request.requestId,
        selection,
        principal,
        expiresAt,
        requiredRole,
        document,
        operationName,
        variables,
        source,
        encode: (result) => respond(result, {}).json,
        listening,
      });
      return { stream };
    } finally {
      listening.close(); // taken over by open, or dropped with a start that failed
    }
  }

  async function handle(request: PipelineRequest): Promise<PipelineResponse> {
    // One deadline from the moment the request is taken: the guards' queues and the transaction live within it.
    request.deadline ??= Date.now() + poolState(sql).requestTimeoutMs;
    const admissions: Admission[] = [];
    let result: RunResult;
    try {
      result = await run(request, admissions);
    } catch (error) {
      result = { errors: [error as GraphQLError] }; // masked below: coded errors pass, anything else is INTERNAL
    } finally {
      await request.state.transaction?.end(false).catch(() => {}); // normally ended by finishOperation
      for (const admission of admissions) admission.release?.();
    }
    const headers: Record<string, string> = {};
    for (const admission of admissions) Object.assign(headers, admission.headers);
    if (result.stream) return { status: 200, headers, json: '', errors: undefined, data: undefined, stream: result.stream };
    if (result.json !== undefined) return { status: 200, headers, json: result.json, errors: undefined, data: result.data }; // a committed mutation, measured
    let response = respond(result, headers);
    if (overLimit(response.json, maxResponseBytes)) {
      response = respond({ errors: [responseTooLarge(maxResponseBytes)] }, headers);
    }
    if (response.status !== 200 && response.errors) request.state.refused = String(response.errors[0]?.extensions.code);
    return response;
  }

  async function authenticate(headers: HeaderSource, requestId: string): Promise<Principal> {
    return admitted(await resolveTenant(headers, verifyToken, tenancy), requestId);
  }

  /**
   * The guards, then the database's check of the principal, in a transaction of
   * its own: a check is a request like any other (a made-up API key's takes a
   * place in the shared lane of unplaced requests, so a flood of them cannot hold
   * the pool), and a refusal of the guards is the answer.
   */
  async function admitted(selection: TenantSelection, requestId: string): Promise<Principal> {
    const deadline = Date.now() + poolState(sql).requestTimeoutMs;
    const admissions: Admission[] = [];
    const db = new TenantTransaction(sql, selection, { deadline });
    try {
      for (const guard of guards) admissions.push(await guard.admit({ selection, requestId, deadline }));
      db.start('tenant');
      return await db.principal();
    } finally {
      await db.end(false);
      for (const admission of admissions) admission.release?.();
    }
  }

  async function credentials(headers: HeaderSource, streams = false): Promise<Credentialed> {
    let expiresAt: number | undefined; // a token's exp ends the stream of a subscription
    const verify: TokenVerifier = (token) => verifyToken(token).then((claims) => ((expiresAt = claims.expiresAt * 1000), claims));
    const selection = await resolveTenant(headers, streams ? verify : verifyToken, tenancy);
    return { selection, expiresAt };
  }

  async function confirm(selection: TenantSelection, requestId = ''): Promise<void> {
    await admitted(selection, requestId); // through the guards (a rate token is spent for it, and again by the request)
  }

  function refuse(error: unknown, state: RequestState): PipelineResponse {
    const response = respond({ errors: [error as GraphQLError] }, {});
    state.refused = String(response.errors?.[0]?.extensions.code);
    return response;
  }

  return { execute: handle, authenticate, credentials, confirm, refuse, documents: () => documents.stats() };

  function respond(result: ExecutionResult, headers: Record<string, string>): PipelineResponse {
    const errors = result.errors?.map((error) => maskError(error) as GraphQLError);
    const status = statusOf(errors);
    for (const error of errors ?? []) Object.assign(headers, httpOf(error).headers);
    if (status === 429 || status === 503) headers['retry-after'] ??= String(retryAfter(errors));
    // The body built directly (no spread objects): `errors` first when there are any, then `data` when the result has it.
    const json = errors
      ? JSON.stringify('data' in result ? { errors: errors.map(format), data: result.data } : { errors: errors.map(format) })
      : dataBody(result.data);
    return { status, headers, json, errors, data: result.data };
  }
}

/** Whether `json` is over `max` bytes in UTF-8; counted only when it could be (a UTF-16 unit takes at most 3 bytes). */
function overLimit(json: string, max: number): boolean {
  return json.length * 3 > max && Buffer.byteLength(json) > max;
}

function checkParams(params: unknown): Params {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw badRequest(Array.isArray(params) ? 'Batched requests are not supported: send one operation a request' : 'The body must be a JSON object');
  }
  const { query, variables, operationName } = params as Record<string, unknown>;
  if (typeof query !== 'string') throw badRequest('The request needs a "query" string');
  if (variables != null && (typeof variables !== 'object' || Array.isArray(variables))) throw badRequest('"variables" must be an object');
  if (operationName != null && typeof operationName !== 'string') throw badRequest('"operationName" must be a string');
  return { query, variables: (variables ?? undefined) as Record<string, unknown> | undefined, operationName: operationName ?? undefined };
}

/** Its connection was dead before the database began the transaction (nothing of it ran) and its deadline allows one more. */
function mayBeginAgain(db: TenantTransaction, request: PipelineRequest): boolean {
  return db.lostBeforeBegin && Date.now() < (request.deadline ?? Infinity);
}

/** A result's body without errors, as `respond` writes it. */
const dataBody = (data: ExecutionResult['data']) => (data === undefined ? '{}' : `{"data":${JSON.stringify(data)}}`);

export const badRequest = (message: string, status = 400) => apiError('BAD_USER_INPUT', message, { http: { status } });


type HttpExtension = { status?: number; headers?: Record<string, string> };

function httpOf(error: GraphQLError): HttpExtension {
  return (error.extensions.http) ?? {};
}

/** The highest status any error asks for (a refused request), else 200. */
function statusOf(errors: readonly GraphQLError[] | undefined): number {
  let status = 200;
  for (const error of errors ?? []) {
    const asked = httpOf(error).status;
    if (asked && (status === 200 || asked > status)) status = asked;
  }
  return status;
}

function retryAfter(errors: readonly GraphQLError[] | undefined): number {
  const asked = errors?.map((error) => Number(error.extensions.retryAfter)).find((seconds) => Number.isFinite(seconds) && seconds > 0);
  return Math.ceil(asked ?? 1);
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
