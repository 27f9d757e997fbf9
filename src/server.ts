// node:http: every POST /graphql takes the JSON transport (http/graphql-post.ts);
// GET /graphql, CORS preflights, GraphiQL, /health and /ready go to Yoga.
// Both transports hand GraphQL requests to the one request pipeline
// (http/pipeline.ts). Request ids, the request log line, a draining shutdown.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { GraphQLError } from 'graphql';
import { createYoga, useReadinessCheck, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import type { TokenVerifier } from './auth/tokens.ts';
import type { Config } from './config.ts';
import type { AuditServices } from './graphql/context.ts';
import { poolState, type Sql } from './db/pool.ts';
import { databaseReady, healthBody, readinessBody } from './db/readiness.ts';
import { schema } from './graphql/schema.ts';
import { graphiqlOptions, renderGraphiQL, type GraphiQLTab } from './http/graphiql.ts';
import { allowedOrigin, CORS_REQUEST_HEADERS, EXPOSED_HEADERS } from './http/cors.ts';
import { createPostHandler } from './http/graphql-post.ts';
import { createSseHandler, eventStreamRank } from './http/graphql-sse.ts';
import { createWebSocketTransport } from './http/graphql-ws.ts';
import type { RequestGuard } from './http/guard.ts';
import { createPipeline, type Pipeline, type RequestState } from './http/pipeline.ts';
import { ERROR_CODES } from './errors.ts';
import type { EventHub } from './events/hub.ts';
import type { Logger } from './logger.ts';
import { createSubscriptionEngine, type SubscriptionEngine } from './subscriptions/engine.ts';
import type { TenantLanes } from './tenancy/fair-share.ts';

/** Per HTTP request, shared by the transports and the request log line. */
export type ServerContext = {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  state: RequestState;
};

export type AppOptions = {
  readonly config: Pick<Config, 'multiTenancy' | 'defaultTenant' | 'allowedTenants' | 'graphiql' | 'http' | 'tenantHostSuffix'>;
  readonly sql: Sql;
  readonly verifyToken: TokenVerifier;
  readonly log: Logger;
  readonly graphiqlTabs?: readonly GraphiQLTab[];
  /** Rate limits and fair share, in order (http/guard.ts). */
  readonly guards?: readonly RequestGuard[];
  /** The events of subscriptions (src/events/hub.ts); without it subscriptions answer UNAVAILABLE. */
  readonly events?: EventHub | undefined;
  /** The fair-share guard's lanes: subscriptions' re-reads take slots of their tenant's lane. */
  readonly fairShareLanes?: TenantLanes | undefined;
  /** The audit signing key (src/modules/audit-chain/keys.ts); none: verifyAuditChain checks hashes and links only. */
  readonly audit?: AuditServices;
  /** How many callers' last principals the pipeline keeps (http/pipeline.ts LAST_PRINCIPALS unless given: tests make it small). */
  readonly lastPrincipals?: number;
};

export type App = {
  readonly yoga: YogaServerInstance<ServerContext, Record<string, never>>;
  readonly handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  readonly pipeline: Pipeline;
  /** node:http's 'upgrade' event: GraphQL over WebSocket at /graphql. */
  readonly upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  readonly subscriptions: SubscriptionEngine;
  /** Ends every subscription and WebSocket (a shutdown: streams would hold the drain up). */
  readonly closeStreams: () => Promise<void>;
  /** The request log: the listener logs what Node's parser refused (refuseUnreadable) as the handler logs a request. */
  readonly log: Logger;
};

const REQUEST_ID = /^[\w.:-]{1,100}$/;

export function createApp(options: AppOptions): App {
  const { config, sql, verifyToken, log } = options;
  const { http } = config;
  const subscriptions = createSubscriptionEngine({
    sql,
    schema,
    hub: options.events,
    log,
    settings: http.subscriptions,
    lanes: options.fairShareLanes,
    readTimeoutMs: poolState(sql).requestTimeoutMs,
    maxResponseBytes: http.maxResponseBytes,
  });
  const pipeline = createPipeline({
    schema,
    sql,
    verifyToken,
    tenancy: config,
    log,
    documents: {
      limits: http.limits,
      introspection: http.introspection,
      suggestions: http.suggestions,
      cacheBytes: http.documentCacheBytes,
      cacheEntries: http.documentCacheEntries,
    },
    maxCost: http.limits.cost,
    maxResponseBytes: http.maxResponseBytes,
    guards: options.guards ?? [],
    subscriptions,
    audit: options.audit,
    lastPrincipals: options.lastPrincipals,
  });
  const graphqlPost = createPostHandler({ pipeline, maxBodyBytes: http.maxBodyBytes, corsOrigins: http.corsOrigins });
  const graphqlSse = createSseHandler({ pipeline, maxBodyBytes: http.maxBodyBytes, corsOrigins: http.corsOrigins });
  const websockets = createWebSocketTransport({ pipeline, verifyToken, tenancy: config, settings: http.subscriptions, maxMessageBytes: http.maxBodyBytes });
  const yoga = createYoga<ServerContext, Record<string, never>>({
    schema,
    graphqlEndpoint: '/graphql',
    healthCheckEndpoint: '/health',
    landingPage: false,
    graphiql: config.graphiql ? graphiqlOptions(options.graphiqlTabs ?? []) : false,
    renderGraphiQL, // the whole page from the service, no CDN
    // Only allowed origins get CORS headers (on preflights too); no cookies are ever involved.
    cors: (request) => {
      const origin = allowedOrigin(request.headers.get('origin'), http.corsOrigins);
      return origin ? { origin, credentials: false, allowedHeaders: CORS_REQUEST_HEADERS, exposedHeaders: EXPOSED_HEADERS } : false;
    },
    // The pipeline parses, validates and caches documents; Yoga's cache would hold texts before authentication.
    parserAndValidationCache: false,
    maskedErrors: { maskError: (error) => closedListError(error) },
    logging: {
      debug: (...args) => log.debug(args.map(String).join(' ')),
      info: (...args) => log.info(args.map(String).join(' ')),
      warn: (...args) => log.warn(args.map(String).join(' ')),
      error: (...args) => log.error(args.map(String).join(' ')),
    },
    plugins: [
      usePipeline(pipeline),
      useReadinessCheck({
        endpoint: '/ready',
        // A small JSON body naming no address, within a second even when the database is frozen.
        check: async ({ fetchAPI }) => {
          const { status, body, headers } = readinessBody(await databaseReady(sql));
          return new fetchAPI.Response(body, { status, headers });
        },
      }),
    ],
  });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    const header = req.headers['x-request-id'];
    const requestId = typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
    const path = pathOf(req.url);
    const graphql = path === '/graphql';
    const eventStream = graphql && (req.method === 'GET' || req.method === 'POST') ? eventStreamRank(req.headers.accept) : undefined;
    const before = streamedOn.get(req.socket);
    if (before === true) return leaveUnanswered(req, requestId, path, log);
    let negotiated: ((streams: boolean) => void) | undefined;
    if (eventStream === 'prefers') {
      // An event stream is its connection's last answer: a request pipelined behind it would wait for the stream's end.
      // Its answer says `Connection: close` at once; the connection closes once it ends (Node, for that header).
      streamedOn.set(req.socket, true);
      res.setHeader('connection', 'close');
    } else if (eventStream === 'accepts') negotiated = negotiation(req.socket, before);
    // Behind a request that may yet turn into a stream: run once it is known not to, else left unanswered.
    if (before && (await before)) {
      negotiated?.(true);
      return leaveUnanswered(req, requestId, path, log);
    }
    const post = !eventStream && graphql && req.method === 'POST';
    // The JSON POST path sends it with its other headers in one writeHead (Node's fast case); every other path here.
    if (!post) res.setHeader('x-request-id', requestId);
    const state: RequestState = {};
    // A response closes once: `on`, not `once` (no wrapper per request).
    res.on('close', () => {
      const known = state.transaction?.known;
      const finished = res.writableFinished;
      // A context switch (seed 003): the token names one tenant (`tid`) and the request works in another, chosen
      // by X-Tenant-ID or the host name. The line then carries both ids and says so.
      const switched = state.tokenTenant !== undefined && known?.tenant !== undefined && known.tenant.id !== state.tokenTenant;
      // One line a request; a key whose value is undefined is left out of the line.
      log.info(
        {
          requestId,
          method: req.method,
          path,
          // A response cut off before it was written is not a 200.
          status: finished ? res.statusCode : undefined,
          aborted: finished ? undefined : true,
          refused: state.refused,
          ms: performance.now() - started,
          tenantId: known?.tenant?.id,
          tenantRequested: state.tenant,
          tenantSwitch: switched ? true : undefined,
          tokenTenantId: switched ? state.tokenTenant : undefined,
          userId: known?.userId ?? state.userId,
          apiKeyId: known?.apiKeyId ?? undefined,
        },
        'request',
      );
    });
    if (eventStream) {
      try {
        await graphqlSse(req, res, requestId, state, negotiated);
      } finally {
        negotiated?.(false); // answered JSON (a no-op once it streamed)
      }
    } else if (post) await graphqlPost(req, res, requestId, state);
    else if (path === '/health') sendHealth(res); // a small JSON body (Yoga's own answers empty)
    else await yoga(req, res, { req, res, requestId, state });
  };

  const closeStreams = async () => {
    subscriptions.close();
    await websockets.close();
  };
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // An upgrade pipelined behind an event stream is handed the very socket the stream answers on: its 101 went out
    // ahead of the stream and a WebSocket's requests ran there. Left unanswered like any request behind a stream. Node
    // took its error listener off the socket for the upgrade: one again, so a reset connection is no uncaught error.
    const before = streamedOn.get(socket);
    if (before === undefined) return websockets.upgrade(req, socket, head);
    socket.on('error', () => socket.destroy());
    // Behind a request that may yet turn into a stream: upgraded once it is known not to.
    void Promise.resolve(before).then((streamed) => (streamed ? leaveUnanswered(req, randomUUID(), pathOf(req.url), log) : websockets.upgrade(req, socket, head)));
  };
  return { yoga, handle, pipeline, upgrade, subscriptions, closeStreams, log };
}


/** A request's path, without its query string. */
function pathOf(url = ''): string {
  const query = url.indexOf('?');
  return query < 0 ? url : url.slice(0, query);
}

/**
 * Connections whose answer to an event-stream request is (or will be) their last (true), or whose request's answer may
 * yet be a stream (its Accept lists text/event-stream without preferring it): whether it, or one before it, streamed.
 */
const streamedOn = new WeakMap<Duplex, true | Promise<boolean>>();

/**
 * A request answered as a stream only if its operation streams (eventStreamRank `accepts`): the requests pipelined behind
 * it wait until that is known (`decide`), behind `before` too. Forgotten once known not to stream.
 */
function negotiation(socket: Duplex, before: Promise<boolean> | undefined): (streams: boolean) => void {
  let decide!: (streams: boolean) => void;
  const decided = new Promise<boolean>((resolve) => (decide = resolve));
  const known = before ? before.then((streamed) => streamed || decided) : decided;
  streamedOn.set(socket, known);
  void known.then((streamed) => {
    if (streamedOn.get(socket) !== known) return; // a later request's entry
    if (streamed) streamedOn.set(socket, true);
    else streamedOn.delete(socket);
  });
  return decide;
}

/**
 * A request pipelined behind an event stream on its connection: neither run nor answered (the stream's answer said
 * `Connection: close`, so its client knows it was not, and may send it again on another connection). Nothing more is
 * read from the connection: a client pipelining behind a stream holds no more than what it already sent.
 */
function leaveUnanswered(req: IncomingMessage, requestId: string, path: string, log: Logger): void {
  req.socket.pause();
  log.info({ requestId, method: req.method, path, unanswered: true }, 'a request pipelined behind an event stream: not run, not answered; the connection closes once the stream ends');
}

/**
 * Yoga's GraphQL requests (GET, and POSTs under yoga.fetch) go through the
 * pipeline: Yoga decodes the HTTP request and encodes the answer, nothing more.
 */
function usePipeline(pipeline: Pipeline): Plugin<Record<string, never>, ServerContext> {
  return {
    // Yoga answers some refusals itself with an empty body (415, 405): give them the contract's body.
    onResponse(payload) {
      const { response, fetchAPI } = payload;
      if (response.status < 400 || response.headers.get('content-type')?.includes('json')) return;
      const error = { message: response.status === 415 ? 'Send the request as application/json' : response.statusText || 'Bad request', extensions: { code: response.status >= 500 ? 'INTERNAL' : response.status === 404 ? 'NOT_FOUND' : 'BAD_USER_INPUT' } };
      const headers = new fetchAPI.Headers(response.headers);
      headers.set('content-type', 'application/json; charset=utf-8');
      headers.delete('content-length');
      payload.setResponse(new fetchAPI.Response(JSON.stringify({ errors: [error] }), { status: response.status, headers }));
    },
    onParams({ setParamsHandler }) {
      setParamsHandler(async ({ request, params, context }) => {
        const state = context.state ?? {};
        const response = await pipeline.execute({
          params,
          headers: request.headers,
          readOnly: request.method === 'GET',
          requestId: context.requestId ?? randomUUID(),
          state,
        });
        // Yoga sets the status and headers from the errors' `http` extension; headers of a success are set here.
        for (const [name, value] of Object.entries(response.headers)) context.res?.setHeader(name, value);
        return response.errors ? { errors: response.errors, data: response.data } : { data: response.data };
      });
    },
  };
}

/** Yoga's own refusals (a wrong method, an unreadable request) in the closed list: BAD_USER_INPUT with their status. */
function closedListError(error: unknown): Error {
  const original = error instanceof GraphQLError ? error : undefined;
  const code = original?.extensions.code;
  if (typeof code === 'string' && CLOSED_CODES.has(code)) return error as Error;
  const status = (original?.extensions.http)?.status;
  if (status && status >= 400 && status < 500) {
    return new GraphQLError(original?.message ?? 'Bad request', { extensions: { code: 'BAD_USER_INPUT', http: { status } } });
  }
  return new GraphQLError('Internal server error', { extensions: { code: 'INTERNAL', http: { status: 500 } } });
}

const CLOSED_CODES = new Set<string>(ERROR_CODES);

function sendHealth(res: ServerResponse): void {
  const { status, body, headers } = healthBody();
  res.writeHead(status, headers).end(body);
}

/**
 * A request Node's HTTP parser could not read (a URL or headers past its
 * 16 KiB limit, malformed HTTP, a header timeout) never reaches a handler:
 * it is refused here in the closed error list too, with Node's own status
 * (431, 408, 400), instead of Node's empty-bodied answer. Like every answer it
 * carries a fresh request id (the request's own was never read), which its log
 * line names.
 *
 * Only when nothing is owed on the connection before it. Node's own handler
 * (socketOnError) writes only while no answer has begun and then destroys the
 * socket, which loses a pipelined answer not yet begun too. Bytes that follow
 * a request read whole leave that request's answer, and those queued behind
 * it, to be sent first, and a refusal written now would be read as theirs (a
 * client told 400 while its mutation commits). They are left unanswered:
 * nothing more is read, and the connection closes once the answers owed are sent.
 */
function refuseUnreadable(error: NodeJS.ErrnoException, socket: Duplex, log: Logger): void {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  if (closingAfterAnswers.has(socket)) return; // the parser reports again as more bytes arrive
  const owed = responseOwed(socket);
  if (owed?.req.complete) {
    closingAfterAnswers.add(socket);
    socket.pause();
    closeOnceAnswered(socket);
    log.info({ clientError: error.code }, 'unreadable bytes after a pipelined request: unanswered, the connection closes after the answers it is owed');
    return;
  }
  if (owed?.headersSent) {
    socket.destroy(); // the bad bytes are this answer's own request, which is answering already: nothing can follow it
    return;
  }
  const requestId = randomUUID();
  const [status, text, message] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'The URL or headers are larger than allowed: send large documents in a POST body']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'The request did not arrive in time']
        : [400, 'Bad Request', 'The request is not valid HTTP'];
  const body = JSON.stringify({ errors: [{ message, extensions: { code: 'BAD_USER_INPUT' } }] });
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
  );
  // The request log's line for it (createApp's handler logs the rest): no method or path, the parser never read them.
  log.info({ requestId, status, refused: 'BAD_USER_INPUT', clientError: error.code }, 'request');
}

/** The answer Node is writing or will write next on `socket`: its own field (the oldest answer a pipelined connection owes), which its default handler reads too. */
function responseOwed(socket: Duplex): ServerResponse | undefined {
  return (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
}

const closingAfterAnswers = new WeakSet<Duplex>();

/** Waits out each answer owed on `socket` for a request read whole, then closes it (ending a request whose body will never arrive). */
function closeOnceAnswered(socket: Duplex): void {
  const owed = responseOwed(socket);
  if (!owed) socket.end(() => socket.destroy());
  else if (owed.req.complete) owed.once('close', () => closeOnceAnswered(socket)); // Node hands the socket to the next answer on 'finish', before
  else socket.destroy();
}

export type RunningServer = {
  readonly server: Server;
  readonly url: string;
  /** Stops accepting, lets in-flight requests finish (up to the timeout), then closes. */
  close(): Promise<void>;
};

/**
 * How long a request may take to arrive, headers and body (a stream's or upgrade's answer is not counted): past
 * it Node answers 408, in the closed list (refuseUnreadable). Node's own bounds were 60 s for headers and
 * 300 s for the whole request, so a member could drip a body for five minutes a connection.
 */
export const REQUEST_ARRIVAL_MS = 30_000;
const HEADERS_ARRIVAL_MS = 10_000;

export async function listen(app: App, host: string, port: number, shutdownTimeoutMs: number, arrivalMs = REQUEST_ARRIVAL_MS): Promise<RunningServer> {
  const server = createServer(
    // Node checks these every connectionsCheckingInterval (30 s by default): a second keeps them near their value.
    { requestTimeout: arrivalMs, headersTimeout: Math.min(HEADERS_ARRIVAL_MS, arrivalMs), connectionsCheckingInterval: Math.min(1_000, arrivalMs) },
    (req, res) => void app.handle(req, res),
  );
  server.on('upgrade', app.upgrade);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => refuseUnreadable(error, socket, app.log));
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  const shownHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host;
  return {
    server,
    url: `http://${shownHost}:${boundPort}`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await app.closeStreams(); // subscriptions end (UNAVAILABLE, shutdown) rather than hold the drain up
      // Keep-alive connections go idle as their last response is sent: close them then.
      const sweeper = setInterval(() => server.closeIdleConnections(), 50);
      const deadline = setTimeout(() => server.closeAllConnections(), shutdownTimeoutMs);
      await closed;
      clearInterval(sweeper);
      clearTimeout(deadline);
      await app.yoga.dispose();
    },
  };
}
