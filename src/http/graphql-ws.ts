// GraphQL over WebSocket (the graphql-transport-ws protocol of graphql-ws, on
// ws) at /graphql. Refused before the upgrade where the request already says
// enough: another path or subprotocol, too many sockets in this process,
// credentials in the upgrade's headers that do not verify. Credentials come in
// connection_init's payload (Authorization, X-Api-Key, X-Tenant-ID, as
// headers would carry them; browsers cannot set headers on a WebSocket) and
// are checked by the database before connection_ack. Every subscribe message
// then goes through the one request pipeline (http/pipeline.ts), like a request.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { parse, type ExecutionArgs } from 'graphql';
import { CloseCode, GRAPHQL_TRANSPORT_WS_PROTOCOL } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer, type WebSocket } from 'ws';
import type { TokenVerifier } from '../auth/tokens.ts';
import { isApiError } from '../errors.ts';
import type { SubscriptionSettings } from '../subscriptions/engine.ts';
import { resolveTenant, type HeaderSource, type TenancySettings } from '../tenancy/resolve.ts';
import { nodeHeaders } from './graphql-post.ts';
import { jsonShapeRefusal } from './json-shape.ts';
import type { Pipeline, PipelineResponse } from './pipeline.ts';

export type WebSocketOptions = {
  readonly pipeline: Pipeline;
  readonly verifyToken: TokenVerifier;
  readonly tenancy: TenancySettings;
  readonly settings: SubscriptionSettings;
  /** The largest message a client may send (a subscribe's query and variables): MAX_BODY_BYTES. */
  readonly maxMessageBytes: number;
  /** ws pings this often; a socket that does not answer by the next ping is dropped. */
  readonly keepAliveMs?: number;
};

export type WebSocketTransport = {
  /** node:http's 'upgrade' event. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Open sockets of this process. */
  count(): number;
  /** Closes every socket (1001) and stops accepting. */
  close(): Promise<void>;
};

/** Headers connection_init may carry, and how long each may be. */
const CREDENTIAL_HEADERS = ['authorization', 'x-api-key', 'x-tenant-id'] as const;
const MAX_PARAM_KEYS = 20;
const MAX_HEADER_CHARS = 8_192;
/** Operations one socket may have open at once. */
const MAX_OPERATIONS_PER_SOCKET = 100;
/**
 * The largest message before connection_ack (connection_init: three credentials
 * of at most 8 KiB and what else a client sends along). Larger ones are refused
 * unparsed: JSON.parse of a MAX_BODY_BYTES message holds the event loop for
 * seconds, and before the ack anyone may send one.
 */
const MAX_INIT_BYTES = 64 * 1024;
/**
 * What the service may have written to a socket and its client not yet read
 * (ws buffers it without bound). A client that sends while more than this
 * waits for it sends but does not read (every message it sends is answered:
 * a pong, a refusal): the socket is cut, as a close frame would wait behind
 * the unread data. Stream events are sent one at a time per operation, each
 * after the previous was written.
 */
const MAX_UNREAD_BYTES = 1024 * 1024;
/**
 * Pings are answered here, with a pong without payload (the protocol makes it
 * optional). graphql-ws echoes the ping's payload: a client that never read had
 * every ping kept for it (200 MiB of pings grew the process by 1.2 GiB), and a
 * payload nested a few thousand deep overflowed JSON.stringify (closed 4500
 * with "Maximum call stack size exceeded", a stack trace in the log each time).
 */
const PONG = JSON.stringify({ type: 'pong' });
const PING = Buffer.from('"ping"');

/** What a subscribe message is answered with: a stream, or one result. */
type Reply = { readonly response: PipelineResponse };
/** Our results travel as their JSON text (masked by the pipeline) through graphql-ws, which parses nothing. */
type Encoded = { readonly json: string };

const STREAM_DOCUMENT = parse('subscription { __typename }');
const SINGLE_DOCUMENT = parse('query { __typename }');

export function createWebSocketTransport(options: WebSocketOptions): WebSocketTransport {
  const { pipeline, settings } = options;
  const server = new WebSocketServer({ noServer: true, maxPayload: options.maxMessageBytes, perMessageDeflate: false });
  const headersOf = new WeakMap<object, HeaderSource>();
  const replies = new WeakMap<object, Reply>();
  let upgrading = 0;
  const acknowledged = new WeakSet<WebSocket>();
  // Sockets that came without credentials and have not sent connection_init yet, oldest first; those evicted but not yet gone.
  const silent = new Set<WebSocket>();
  let evicting = 0;
  server.on('connection', (socket: WebSocket, req: IncomingMessage) => {
    if (req.headers.authorization === undefined && req.headers['x-api-key'] === undefined) {
      silent.add(socket);
      socket.once('close', () => silent.delete(socket));
    }
    guardMessages(socket, acknowledged);
  });
  /** Acknowledged sockets per tenant: one tenant's member cannot hold every socket of the process (WS_MAX_CONNECTIONS_PER_TENANT). */
  const perTenant = new Map<string, number>();
  const holdSocket = (tenantId: string, socket: WebSocket): boolean => {
    const held = perTenant.get(tenantId) ?? 0;
    if (held >= settings.wsConnectionsPerTenant) return false;
    perTenant.set(tenantId, held + 1);
    socket.once('close', () => {
      const left = (perTenant.get(tenantId) ?? 1) - 1;
      if (left > 0) perTenant.set(tenantId, left);
      else perTenant.delete(tenantId);
    });
    return true;
  };
  /**
   * Whether one more socket fits under WS_MAX_CONNECTIONS. At the cap the oldest
   * socket that came without credentials and has not sent connection_init is cut
   * to make room: a stranger re-opening such sockets held every place (each
   * closed 4408 only after WS_INIT_TIMEOUT_MS) and 8 of 10 upgrades of a
   * tenant's member were answered 503. Sockets whose upgrade carried verified
   * credentials are never cut for another.
   */
  const room = (): boolean => {
    if (server.clients.size - evicting + upgrading < settings.wsConnections) return true;
    const oldest = silent.values().next().value;
    if (!oldest) return false;
    silent.delete(oldest);
    evicting++;
    oldest.once('close', () => evicting--);
    oldest.terminate();
    return true;
  };

  const disposable = useServer<Record<string, unknown> | undefined, Record<PropertyKey, never>>(
    {
      connectionInitWaitTimeout: settings.wsInitTimeoutMs,
      onConnect: async (ctx) => {
        silent.delete(ctx.extra.socket); // it spoke: no longer the first to make room while its credentials are checked
        const headers = connectionHeaders(ctx.extra.request, ctx.connectionParams);
        if (typeof headers === 'string') {
          ctx.extra.socket.close(CloseCode.BadRequest, headers);
          return false;
        }
        let tenantId: string | undefined;
        try {
          tenantId = (await pipeline.authenticate(headers, randomUUID())).tenant?.id;
        } catch (error) {
          ctx.extra.socket.close(...closeFor(error));
          return false;
        }
        if (tenantId !== undefined && !holdSocket(tenantId, ctx.extra.socket)) {
          ctx.extra.socket.close(1013, `At most ${settings.wsConnectionsPerTenant} WebSockets of one tenant may be open on this server: try again later`);
          return false;
        }
        headersOf.set(ctx, headers);
        acknowledged.add(ctx.extra.socket);
        return true;
      },
      onSubscribe: async (ctx, id, payload) => {
        const headers = headersOf.get(ctx)!;
        let response: PipelineResponse;
        if (Object.keys(ctx.subscriptions).length > MAX_OPERATIONS_PER_SOCKET) {
          response = single({ errors: [{ message: `At most ${MAX_OPERATIONS_PER_SOCKET} operations may be open on one socket`, extensions: { code: 'BAD_USER_INPUT', limit: 'operations', max: MAX_OPERATIONS_PER_SOCKET } }] });
        } else {
          response = await pipeline.execute({ params: payload, headers, readOnly: false, requestId: `${randomUUID()}`, state: {}, streams: true });
        }
        const contextValue = { id };
        replies.set(contextValue, { response });
        return { schema: undefined as never, document: response.stream ? STREAM_DOCUMENT : SINGLE_DOCUMENT, contextValue } satisfies Partial<ExecutionArgs>;
      },
      // The pipeline has answered already: hand its reply over (graphql-ws sends it, and returns the stream when the client completes or leaves).
      subscribe: (args) => encodedStream(replies.get(args.contextValue as object)!.response) as never,
      execute: (args) => ({ json: replies.get(args.contextValue as object)!.response.json }) as never,
      onNext: (_ctx, _id, _payload, _args, result) => JSON.parse((result as unknown as Encoded).json) as never,
    },
    server,
    options.keepAliveMs ?? 12_000,
  );

  return {
    upgrade(req, socket, head) {
      // Upgrades still being checked count as open: concurrent ones cannot all pass the cap while credentials verify.
      const refused = refuseUpgrade(req, room, options);
      upgrading++;
      let settled = false;
      const settle = () => {
        if (!settled) upgrading--;
        settled = true;
      };
      socket.once('close', settle); // a handshake ws refuses calls back nothing
      void refused.then((answer) => {
        if (answer) {
          settle();
          socket.end(answer);
          return;
        }
        server.handleUpgrade(req, socket, head, (ws) => {
          settle();
          server.emit('connection', ws, req);
        });
      }, () => {
        settle();
        socket.destroy();
      });
    },
    count: () => server.clients.size,
    close: async () => {
      // The streams were just ended with their coded error (a shutdown): let graphql-ws send those before 1001.
      await new Promise((resolve) => setImmediate(resolve));
      await disposable.dispose();
    },
  };
}

/**
 * Every message, before graphql-ws parses it: before connection_ack one larger
 * than MAX_INIT_BYTES, and at any time one too costly to parse (json-shape.ts),
 * closes the socket (4400) unparsed; a client that sends while it leaves more
 * than MAX_UNREAD_BYTES unread is cut; a ping is answered (PONG) and goes no further.
 */
function guardMessages(socket: WebSocket, acknowledged: WeakSet<WebSocket>): void {
  const emit = socket.emit.bind(socket);
  // graphql-ws parses every message it hears: the only way in front of it is the socket's own emit.
  socket.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (event !== 'message') return emit(event, ...args);
    if (socket.bufferedAmount > MAX_UNREAD_BYTES) {
      socket.terminate();
      return false;
    }
    const data = messageBuffer(args[0]);
    const refused = !acknowledged.has(socket) && data.length > MAX_INIT_BYTES
      ? `a message before connection_ack is at most ${MAX_INIT_BYTES} bytes`
      : jsonShapeRefusal(data)?.message;
    if (refused !== undefined) {
      socket.close(CloseCode.BadRequest, `BAD_USER_INPUT: ${refused}`);
      return false;
    }
    if (data.includes(PING) && isPing(data)) {
      socket.send(PONG);
      return true;
    }
    return emit(event, data, ...args.slice(1));
  }) as typeof socket.emit;
}

/** Whether a message is a graphql-ws ping (its value count already bounded, so parsing it is cheap). */
function isPing(data: Buffer): boolean {
  try {
    const message = JSON.parse(data.toString('utf8')) as unknown;
    return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'ping';
  } catch {
    return false; // graphql-ws answers a malformed message
  }
}

/** A message as one Buffer (ws hands over a Buffer, fragments or an ArrayBuffer). */
function messageBuffer(data: unknown): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]);
  return data instanceof ArrayBuffer ? Buffer.from(data) : Buffer.isBuffer(data) ? data : Buffer.alloc(0);
}

/** The HTTP answer refusing an upgrade, or undefined to accept it. */
async function refuseUpgrade(req: IncomingMessage, room: () => boolean, options: WebSocketOptions): Promise<string | undefined> {
  if (req.url?.split('?')[0] !== '/graphql') return httpAnswer(404, 'NOT_FOUND', 'No WebSocket endpoint here: use /graphql');
  const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((protocol) => protocol.trim());
  if (!protocols.includes(GRAPHQL_TRANSPORT_WS_PROTOCOL)) return httpAnswer(400, 'BAD_USER_INPUT', `Use the ${GRAPHQL_TRANSPORT_WS_PROTOCOL} subprotocol (graphql-ws)`);
  if (!room()) return httpAnswer(503, 'UNAVAILABLE', 'This server has as many WebSockets open as it takes: try again shortly', { 'retry-after': '1' });
  const headers = nodeHeaders(req);
  if (headers.get('authorization') === null && headers.get('x-api-key') === null) return undefined; // they come in connection_init
  try {
    await resolveTenant(headers, options.verifyToken, options.tenancy);
  } catch (error) {
    const code = isApiError(error) ? String(error.extensions.code) : 'INTERNAL';
    const status = (isApiError(error) ? error.extensions.http?.status : 500) ?? 400;
    return httpAnswer(status, code, isApiError(error) ? error.message : 'Internal server error');
  }
  return undefined;
}

function httpAnswer(status: number, code: string, message: string, headers: Record<string, string> = {}): string {
  const body = JSON.stringify({ errors: [{ message, extensions: { code } }] });
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'content-type: application/json; charset=utf-8',
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable' };

/**
 * The credentials of a socket: connection_init's payload (keys as header
 * names, any case), else the upgrade request's headers. A string: why the payload is refused.
 */
function connectionHeaders(request: IncomingMessage, params: Readonly<Record<string, unknown>> | undefined): HeaderSource | string {
  const upgrade = nodeHeaders(request);
  const given = new Map<string, string>();
  if (params !== undefined) {
    const entries = Object.entries(params);
    if (entries.length > MAX_PARAM_KEYS) return `BAD_USER_INPUT: connection_init payload has more than ${MAX_PARAM_KEYS} keys`;
    for (const [key, value] of entries) {
      const name = key.toLowerCase();
      if (!(CREDENTIAL_HEADERS as readonly string[]).includes(name)) continue; // other keys are ignored
      if (typeof value !== 'string' || value.length > MAX_HEADER_CHARS) return `BAD_USER_INPUT: ${key} must be a string of at most ${MAX_HEADER_CHARS} characters`;
      given.set(name, value);
    }
  }
  const fromInit = given.has('authorization') || given.has('x-api-key');
  return {
    get: (name) => {
      if (name === 'host') return upgrade.get('host');
      if (fromInit) return given.get(name) ?? null;
      return given.get(name) ?? upgrade.get(name);
    },
  };
}

/** A refused connection_init: the close code and a reason that names the error code. */
function closeFor(error: unknown): [number, string] {
  const code = isApiError(error) ? String(error.extensions.code) : 'INTERNAL';
  const message = isApiError(error) ? error.message : 'Internal server error';
  const close = code === 'UNAUTHENTICATED' ? CloseCode.Unauthorized : code === 'UNAVAILABLE' || code === 'RATE_LIMITED' ? 1013 : code === 'INTERNAL' ? CloseCode.InternalServerError : CloseCode.Forbidden;
  return [close, limit(`${code}: ${message}`)];
}

/** A close reason is at most 123 bytes. */
function limit(reason: string): string {
  return Buffer.byteLength(reason) <= 123 ? reason : `${Buffer.from(reason).subarray(0, 120).toString('utf8').replace(/\uFFFD+$/, '')}...`;
}

function single(body: object): PipelineResponse {
  return { status: 200, headers: {}, json: JSON.stringify(body), errors: undefined, data: undefined };
}

/**
 * The stream's JSON texts as graphql-ws results. Not an async generator: its
 * `return` (the client's complete, a closed socket) must end the stream at
 * once, not after the next event.
 */
function encodedStream(response: PipelineResponse): AsyncIterableIterator<Encoded> {
  const stream = response.stream!;
  return {
    next: async () => {
      const result = await stream.next();
      return result.done ? { done: true, value: undefined } : { done: false, value: { json: result.value } };
    },
    return: async () => {
      await stream.return?.();
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
