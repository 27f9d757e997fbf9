// node:http: JSON POSTs to /graphql take the fast path (http/graphql-post.ts),
// everything else goes to Yoga (GraphiQL, GET, CORS, /health, /ready); request
// logging and a draining shutdown.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createYoga, useReadinessCheck, type YogaServerInstance } from 'graphql-yoga';
import type { TokenVerifier } from './auth/tokens.ts';
import type { Config } from './config.ts';
import type { Sql } from './db/pool.ts';
import { TenantTransaction } from './db/tenant-transaction.ts';
import type { GraphQLContext } from './graphql/context.ts';
import { createMaskError } from './graphql/masking.ts';
import { graphiqlOptions, type GraphiQLTab } from './http/graphiql.ts';
import { createPostHandler, isJsonPost, type RequestState } from './http/graphql-post.ts';
import { schema } from './graphql/schema.ts';
import { useTenantTransaction } from './graphql/transaction-plugin.ts';
import type { Logger } from './logger.ts';
import { resolveTenant } from './tenancy/resolve.ts';

/** Per HTTP request, shared by the context factory and the request log line. */
export type ServerContext = {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  /** Filled in by the context factory (Yoga copies the server context, not this object); absent under yoga.fetch. */
  state?: RequestState;
};

export type AppOptions = {
  readonly config: Pick<Config, 'multiTenancy' | 'defaultTenant' | 'allowedTenants' | 'graphiql'>;
  readonly sql: Sql;
  readonly verifyToken: TokenVerifier;
  readonly log: Logger;
  readonly graphiqlTabs?: readonly GraphiQLTab[];
};

export type App = {
  readonly yoga: YogaServerInstance<ServerContext, GraphQLContext>;
  readonly handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
};

const REQUEST_ID = /^[\w.:-]{1,100}$/;

export function createApp(options: AppOptions): App {
  const { config, sql, verifyToken, log } = options;
  const maskError = createMaskError(log);
  const graphqlPost = createPostHandler({ schema, sql, verifyToken, tenancy: config, log, maskError });
  const yoga = createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    healthCheckEndpoint: '/health',
    landingPage: false,
    graphiql: config.graphiql ? graphiqlOptions(options.graphiqlTabs ?? []) : false,
    maskedErrors: { maskError },
    // Documents parsed and validated once per query text (Yoga's default is 1000 entries, stated here as a decision).
    parserAndValidationCache: true,
    logging: {
      debug: (...args) => log.debug(args.map(String).join(' ')),
      info: (...args) => log.info(args.map(String).join(' ')),
      warn: (...args) => log.warn(args.map(String).join(' ')),
      error: (...args) => log.error(args.map(String).join(' ')),
    },
    context: async ({ request, requestId, state }) => {
      const selection = await resolveTenant(request.headers, verifyToken, config);
      const db = new TenantTransaction(sql, selection);
      const userId = selection.credentials.kind === 'user' ? selection.credentials.userId : undefined;
      if (state) Object.assign(state, { userId, tenant: selection.tenant, transaction: db });
      return { requestId, db };
    },
    plugins: [
      useTenantTransaction(log),
      useReadinessCheck({
        endpoint: '/ready',
        check: async () => {
          await sql`select 1`;
          return true;
        },
      }),
    ],
  });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    const header = req.headers['x-request-id'];
    const requestId = typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
    res.setHeader('x-request-id', requestId);
    const state: RequestState = {};
    const serverContext: ServerContext = { req, res, requestId, state };
    res.once('close', () => {
      log.info(
        {
          requestId,
          method: req.method,
          path: req.url?.split('?')[0],
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
          tenantId: state.transaction?.known?.tenant?.id,
          tenantRequested: state.tenant,
          userId: state.transaction?.known?.userId ?? state.userId,
          apiKeyId: state.transaction?.known?.apiKeyId ?? undefined,
        },
        'request',
      );
    });
    try {
      if (isJsonPost(req, req.url?.split('?')[0] ?? '')) await graphqlPost(req, res, requestId, state);
      else await yoga(req, res, serverContext);
    } finally {
      // Normally ended by the plugin; this is the guarantee for any other exit path.
      await state.transaction?.end(false).catch(() => {});
    }
  };

  return { yoga, handle };
}

export type RunningServer = {
  readonly server: Server;
  readonly url: string;
  /** Stops accepting, lets in-flight requests finish (up to the timeout), then closes. */
  close(): Promise<void>;
};

export async function listen(app: App, host: string, port: number, shutdownTimeoutMs: number): Promise<RunningServer> {
  const server = createServer((req, res) => void app.handle(req, res));
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
