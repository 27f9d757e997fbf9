// An event stream (GraphQL over SSE, POST or GET) answers for as long as its
// subscription lives, and HTTP/1.1 answers a connection's requests in order:
// a request pipelined behind a stream would wait for the stream's end. The
// stream is its connection's last answer instead: it says `Connection: close`
// as it begins, a request pipelined behind it is neither run nor answered
// (its client may send it again elsewhere), and the connection closes once
// the stream ends. Requests before the stream are answered as ever.
import { connect } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestTenant, tokenFor, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { startLiveServer, type LiveServer } from './helpers/live.ts';

let db: TestDatabase;
let tenant: TestTenant;
let live: LiveServer;

beforeAll(async () => {
  db = await useTestDatabase();
  tenant = await createTestTenant(db.owner, 'pipelined-streams');
  live = await startLiveServer(db.appPool(4), db.appUrl);
});

afterAll(async () => {
  await live.close();
});

const MEMBERS = 'subscription { members { kind id } }';

/** A stream that ends by itself: its token expires in 3 s (the engine ends the stream then, UNAUTHENTICATED). */
const shortLived = () => tokenFor(tenant.members.VIEWER.userId, tenant.id, { ttl: '3s' });

function post(body: unknown, headers: Record<string, string>): string {
  const text = JSON.stringify(body);
  const lines = Object.entries({ host: 'x', 'content-type': 'application/json', ...headers, 'content-length': String(Buffer.byteLength(text)) });
  return `POST /graphql HTTP/1.1\r\n${lines.map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n${text}`;
}

const sseRequest = (token: string) => post({ query: MEMBERS }, { accept: 'text/event-stream', authorization: `Bearer ${token}` });
const sseGet = (token: string) =>
  `GET /graphql?${new URLSearchParams({ query: MEMBERS })} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nauthorization: Bearer ${token}\r\n\r\n`;
const createAgent = (name: string) =>
  post({ query: `mutation { createAgent(input: { name: "${name}", kind: "assistant" }) { agent { name } } }` }, { authorization: `Bearer ${tenant.members.MEMBER.token}` });

/** `bytes` in one write on a fresh socket; what the server sends, once its first answer of an event stream has begun and once it closes. */
function exchange(bytes: string): { streamBegun: Promise<string>; closed: Promise<{ raw: string; afterMs: number }> } {
  const socket = connect(Number(new URL(live.origin).port), '127.0.0.1', () => socket.write(bytes));
  const sent = performance.now();
  let raw = '';
  let begun: (head: string) => void = () => {};
  const streamBegun = new Promise<string>((resolve) => (begun = resolve));
  socket.on('data', (chunk: Buffer) => {
    raw += chunk.toString();
    const start = raw.indexOf('content-type: text/event-stream');
    if (start >= 0 && raw.indexOf('\r\n\r\n', start) >= 0) begun(raw.slice(raw.lastIndexOf('HTTP/1.1 ', start), raw.indexOf('\r\n\r\n', start)));
  });
  const closed = new Promise<{ raw: string; afterMs: number }>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('close', () => resolve({ raw, afterMs: performance.now() - sent }));
  });
  return { streamBegun, closed };
}

async function agentsNamed(name: string): Promise<number> {
  const [row] = await db.owner<{ n: number }[]>`select count(*)::int as n from app.agents where name = ${name}`;
  return row!.n;
}

const answerHeads = (raw: string) => raw.match(/HTTP\/1\.1 \d{3} [^\r]*/g) ?? [];

it('a mutation pipelined behind an SSE subscription (POST): the stream says Connection: close, the mutation never runs nor is answered, the connection closes with the stream', async () => {
  const { streamBegun, closed } = exchange(`${sseRequest(await shortLived())}${createAgent('behind-a-stream')}`);
  const head = await streamBegun;
  expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(head.toLowerCase()).toContain('\r\nconnection: close');
  const { raw, afterMs } = await closed; // the token's expiry ends the stream, and the server closes the connection
  expect(afterMs).toBeLessThan(10_000);
  expect(raw).toContain('event: complete');
  expect(answerHeads(raw)).toHaveLength(1); // the stream's only
  expect(await agentsNamed('behind-a-stream')).toBe(0); // neither run while the stream lived, nor after
});

it('a request before a stream (GET) is answered, the stream after it says Connection: close, and the mutation behind the stream never runs', async () => {
  const { streamBegun, closed } = exchange(`${createAgent('before-a-stream')}${sseGet(await shortLived())}${createAgent('after-a-stream')}`);
  const head = await streamBegun;
  expect(head.toLowerCase()).toContain('\r\nconnection: close');
  const { raw } = await closed;
  const heads = answerHeads(raw);
  expect(heads).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']); // the mutation before, then the stream
  expect(raw.indexOf('"name":"before-a-stream"')).toBeLessThan(raw.indexOf('text/event-stream'));
  expect(raw).not.toContain('after-a-stream');
  expect([await agentsNamed('before-a-stream'), await agentsNamed('after-a-stream')]).toEqual([1, 0]);
});

it('an SSE request answered at once (a query over SSE) also ends its connection: what was pipelined behind it is not run', async () => {
  const query = post({ query: '{ viewer { __typename } }' }, { accept: 'text/event-stream', authorization: `Bearer ${tenant.members.VIEWER.token}` });
  const { streamBegun, closed } = exchange(`${query}${createAgent('behind-a-query-over-sse')}`);
  expect((await streamBegun).toLowerCase()).toContain('\r\nconnection: close');
  const { raw, afterMs } = await closed;
  expect(afterMs).toBeLessThan(3_000);
  expect(raw).toContain('event: next');
  expect(answerHeads(raw)).toHaveLength(1);
  expect(await agentsNamed('behind-a-query-over-sse')).toBe(0);
});

/** A client's WebSocket text frame (masked with a zero key: the bytes as they are). */
function wsFrame(message: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(message));
  const head = payload.length < 126 ? [0x81, 0x80 | payload.length] : [0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff];
  return Buffer.concat([Buffer.from(head), Buffer.alloc(4), payload]);
}

it('a WebSocket upgrade pipelined behind a stream is not answered either: no 101 ahead of the stream, no mutation run as a WebSocket there', async () => {
  // Node hands an upgrade the socket itself ('upgrade' event), outside the request handler: it was answered 101 ahead
  // of the stream's own head, and a graphql-ws client on it ran a mutation while the stream still answered there.
  const upgrade =
    'GET /graphql HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
    `sec-websocket-version: 13\r\nsec-websocket-protocol: graphql-transport-ws\r\nauthorization: Bearer ${tenant.members.MEMBER.token}\r\n\r\n`;
  const bytes = Buffer.concat([Buffer.from(`${sseRequest(await shortLived())}${upgrade}`), wsFrame({ type: 'connection_init', payload: {} })]);
  const socket = connect(Number(new URL(live.origin).port), '127.0.0.1', () => socket.write(bytes));
  let raw = '';
  let subscribed = false;
  socket.on('data', (chunk: Buffer) => {
    raw += chunk.toString('latin1');
    if (!subscribed && raw.includes('connection_ack')) {
      subscribed = true; // the mutation, as soon as the socket is a WebSocket's
      const query = 'mutation { createAgent(input: { name: "behind-a-stream-ws", kind: "assistant" }) { agent { name } } }';
      socket.write(wsFrame({ id: '1', type: 'subscribe', payload: { query } }));
    }
  });
  const closed = await new Promise<boolean>((resolve) => {
    socket.on('close', () => resolve(true));
    setTimeout(() => resolve(false), 10_000);
  });
  expect(await agentsNamed('behind-a-stream-ws')).toBe(0);
  expect(raw).not.toContain('101 Switching Protocols');
  expect(answerHeads(raw)).toEqual(['HTTP/1.1 200 OK']); // the stream's only
  expect(raw).toContain('event: complete');
  expect(closed).toBe(true); // by the server, once the stream ended
});
