// Subscriptions as clients see them: the service over a real port with an
// event hub on the test database, an SSE client (fetch, the text/event-stream
// body parsed as GraphQL over SSE) and a WebSocket client speaking
// graphql-transport-ws by hand (so tests see close codes and every message).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import WebSocket from 'ws';
import { newApiKey } from '../../src/auth/secrets.ts';
import { createTokenVerifier } from '../../src/auth/tokens.ts';
import type { HttpSettings } from '../../src/config.ts';
import type { Sql } from '../../src/db/pool.ts';
import { createEventHub, type EventHub } from '../../src/events/hub.ts';
import type { RequestGuard } from '../../src/http/guard.ts';
import { createApp, type App } from '../../src/server.ts';
import type { TenantLanes } from '../../src/tenancy/fair-share.ts';
import { TEST_HTTP, TEST_TOKENS } from './app.ts';
import { sseMessages } from './sse.ts';

export type LiveServer = { readonly app: App; readonly origin: string; readonly hub: EventHub; close(): Promise<void> };

export type LiveOptions = {
  readonly subscriptions?: Partial<HttpSettings['subscriptions']>;
  readonly http?: Partial<HttpSettings>;
  readonly guards?: readonly RequestGuard[];
  readonly lanes?: TenantLanes;
  /** A hub of the caller's (shared by two servers); else one of the server's own on `listenUrl`. */
  readonly hub?: EventHub;
};

/** The service on a loopback port, following the database at `listenUrl` (a direct connection). */
export async function startLiveServer(sql: Sql, listenUrl: string, options: LiveOptions = {}): Promise<LiveServer> {
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const hub = options.hub ?? createEventHub({ url: listenUrl, logger: log, minBackoffMs: 50, maxBackoffMs: 500 });
  const http: HttpSettings = { ...TEST_HTTP, ...options.http, subscriptions: { ...TEST_HTTP.subscriptions, ...options.subscriptions } };
  const app = createApp({
    config: { multiTenancy: true, defaultTenant: undefined, allowedTenants: undefined, graphiql: false, tenantHostSuffix: undefined, http },
    sql,
    verifyToken: createTokenVerifier(TEST_TOKENS),
    log,
    guards: options.guards,
    events: hub,
    fairShareLanes: options.lanes,
  });
  const server = createServer((req, res) => void app.handle(req, res));
  server.on('upgrade', app.upgrade);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const deadline = Date.now() + 10_000;
  while (!hub.connected && Date.now() < deadline) await sleep(10);
  return {
    app,
    hub,
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await app.closeStreams();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (!options.hub) await hub.close();
    },
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A GraphQL result as a stream event carries it. */
export type LiveResult = { data?: Record<string, unknown> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };

/** What a client has received on one subscription, and when it ended. */
export type Received = {
  readonly results: LiveResult[];
  /** Set once the stream has ended (complete, close), with the time it did (performance.now()). */
  endedAt: number | undefined;
  /** Waits until `predicate` holds for the results (or throws after `ms`). */
  until(predicate: (results: LiveResult[]) => boolean, ms?: number): Promise<LiveResult[]>;
  /** Waits for the end of the stream. */
  ended(ms?: number): Promise<void>;
  close(): void;
};

function received(close: () => void): Received & { push(result: LiveResult): void; end(): void } {
  const state = {
    results: [] as LiveResult[],
    endedAt: undefined as number | undefined,
    push(result: LiveResult) {
      state.results.push(result);
    },
    end() {
      state.endedAt ??= performance.now();
    },
    async until(predicate: (results: LiveResult[]) => boolean, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!predicate(state.results)) {
        if (Date.now() > deadline) throw new Error(`timed out; received ${JSON.stringify(state.results)}`);
        await sleep(5);
      }
      return state.results;
    },
    async ended(ms = 10_000) {
      const deadline = Date.now() + ms;
      while (state.endedAt === undefined) {
        if (Date.now() > deadline) throw new Error(`the stream did not end; received ${JSON.stringify(state.results)}`);
        await sleep(5);
      }
    },
    close,
  };
  return state;
}

export type SseOptions = { headers?: Record<string, string>; variables?: Record<string, unknown>; method?: 'GET' | 'POST' };
export type SseStream = Received & { readonly status: number; readonly contentType: string | null; readonly body?: unknown };

/** Subscribes over SSE; resolves once the response has begun (status known). */
export async function sse(origin: string, query: string, options: SseOptions = {}): Promise<SseStream> {
  const abort = new AbortController();
  const method = options.method ?? 'POST';
  const url = method === 'GET' ? `${origin}/graphql?${new URLSearchParams({ query, ...(options.variables ? { variables: JSON.stringify(options.variables) } : {}) })}` : `${origin}/graphql`;
  const response = await fetch(url, {
    method,
    signal: abort.signal,
    headers: { accept: 'text/event-stream', ...(method === 'POST' ? { 'content-type': 'application/json' } : {}), ...options.headers },
    ...(method === 'POST' ? { body: JSON.stringify({ query, variables: options.variables }) } : {}),
  });
  const state = received(() => abort.abort());
  const contentType = response.headers.get('content-type');
  if (!contentType?.includes('text/event-stream')) {
    const body = (await response.json()) as unknown;
    state.end();
    return Object.assign(state, { status: response.status, contentType, body });
  }
  void (async () => {
    try {
      for await (const { event, data } of sseMessages(response.body as unknown as AsyncIterable<Uint8Array>)) {
        if (event === 'next') state.push(JSON.parse(data) as LiveResult);
        if (event === 'complete') state.end();
      }
    } catch {
      // aborted by close(), or the server cut the connection
    }
    state.end();
  })();
  return Object.assign(state, { status: response.status, contentType });
}

export type WsClient = {
  readonly socket: WebSocket;
  /** Every message received, parsed. */
  readonly messages: { type: string; id?: string; payload?: unknown }[];
  /** The close code and reason, once closed. */
  closed: { code: number; reason: string } | undefined;
  /** Sends connection_init and waits for connection_ack (throws with the close code when refused). */
  init(payload?: unknown): Promise<void>;
  /** Starts an operation; its results arrive in the Received. */
  subscribe(query: string, variables?: Record<string, unknown>): Received & { readonly id: string };
  send(message: unknown): void;
  waitClosed(ms?: number): Promise<{ code: number; reason: string }>;
  close(): void;
};

let nextId = 0;

/** A graphql-transport-ws connection to the service (open once this resolves, or refused with the HTTP answer). */
export async function wsConnect(origin: string, options: { headers?: Record<string, string>; protocol?: string } = {}): Promise<WsClient> {
  const socket = new WebSocket(`${origin.replace(/^http/, 'ws')}/graphql`, options.protocol ?? 'graphql-transport-ws', { headers: options.headers });
  const messages: WsClient['messages'] = [];
  const operations = new Map<string, ReturnType<typeof received>>();
  const client: WsClient = {
    socket,
    messages,
    closed: undefined,
    async init(payload) {
      socket.send(JSON.stringify({ type: 'connection_init', ...(payload === undefined ? {} : { payload }) }));
      const deadline = Date.now() + 10_000;
      while (!messages.some((message) => message.type === 'connection_ack')) {
        if (client.closed) throw Object.assign(new Error(`closed ${client.closed.code} ${client.closed.reason}`), client.closed);
        if (Date.now() > deadline) throw new Error('no connection_ack');
        await sleep(5);
      }
    },
    subscribe(query, variables) {
      const id = String(++nextId);
      const state = received(() => client.send({ id, type: 'complete' }));
      operations.set(id, state);
      client.send({ id, type: 'subscribe', payload: { query, variables } });
      return Object.assign(state, { id });
    },
    send: (message) => socket.send(JSON.stringify(message)),
    async waitClosed(ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!client.closed) {
        if (Date.now() > deadline) throw new Error('the socket did not close');
        await sleep(5);
      }
      return client.closed;
    },
    close: () => socket.close(),
  };
  socket.on('message', (data) => {
    const message = JSON.parse((data as Buffer).toString()) as WsClient['messages'][number];
    messages.push(message);
    const operation = message.id === undefined ? undefined : operations.get(message.id);
    if (!operation) return;
    if (message.type === 'next') operation.push(message.payload as LiveResult);
    if (message.type === 'error') operation.push({ errors: message.payload as LiveResult['errors'] });
    if (message.type === 'complete' || message.type === 'error') operation.end();
  });
  socket.on('close', (code, reason) => {
    client.closed = { code, reason: String(reason) };
    for (const operation of operations.values()) operation.end();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${response.statusCode}`), { status: response.statusCode, body: body ? (JSON.parse(body) as unknown) : undefined })));
    });
    socket.once('error', reject);
  });
  return client;
}

/** The codes of a result's errors. */
export const errorCodes = (result: LiveResult | undefined) => (result?.errors ?? []).map((error) => error.extensions?.code);

/** An API key inserted behind the API (owner connection): its secret and id. */
export async function insertApiKey(owner: Sql, tenantId: string, createdBy: string, role: string): Promise<{ secret: string; id: string }> {
  const key = newApiKey();
  const [row] = await owner<{ id: string }[]>`
    insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by) values (${tenantId}, 'live', ${key.prefix}, ${key.hash}, ${role}, ${createdBy}) returning id`;
  return { secret: key.secret, id: row!.id };
}
