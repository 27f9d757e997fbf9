// What Node's HTTP parser refuses before any handler runs (server.ts
// refuseUnreadable: malformed HTTP, a header that never finishes arriving)
// is answered like every other refusal: the status, an x-request-id, a body
// in the closed error list, and a request log line naming that id.
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTokenVerifier } from '../src/auth/tokens.ts';
import { createApp, listen, type RunningServer } from '../src/server.ts';
import { TEST_HTTP, TEST_TOKENS } from './helpers/app.ts';
import { useTestDatabase } from './helpers/db.ts';

const lines: Record<string, unknown>[] = [];
let running: RunningServer;
let port: number;

/** A request must arrive within this (the listener's arrival bound; headers within the same here). */
const ARRIVAL_MS = 1_000;

beforeAll(async () => {
  const db = await useTestDatabase();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const app = createApp({
    config: { multiTenancy: true, defaultTenant: undefined, allowedTenants: undefined, graphiql: false, tenantHostSuffix: undefined, http: TEST_HTTP },
    sql: db.appPool(1),
    verifyToken: createTokenVerifier(TEST_TOKENS),
    log: pino({ level: 'info' }, sink),
  });
  running = await listen(app, '127.0.0.1', 0, 1_000, ARRIVAL_MS);
  port = Number(new URL(running.url).port);
});

afterAll(async () => {
  await running.close();
});

type RawAnswer = { status: number; headers: Map<string, string>; body: unknown; tookMs: number };

/** Writes `bytes` on a fresh socket and reads the answer until the server closes it. */
function sendRaw(bytes: string): Promise<RawAnswer> {
  const sent = performance.now();
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let raw = '';
    socket.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => {
      const end = raw.indexOf('\r\n\r\n');
      const [statusLine, ...headerLines] = raw.slice(0, end).split('\r\n');
      const headers = new Map(headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine ?? '')?.[1]), headers, body: JSON.parse(raw.slice(end + 4)) as unknown, tookMs: performance.now() - sent });
    });
  });
}

async function expectContractAnswer(answer: RawAnswer, status: number): Promise<void> {
  expect(answer.status).toBe(status);
  expect(answer.headers.get('content-type')).toBe('application/json; charset=utf-8');
  const requestId = answer.headers.get('x-request-id');
  expect(requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  expect(answer.body).toEqual({ errors: [{ message: expect.any(String) as string, extensions: { code: 'BAD_USER_INPUT' } }] });
  // Logged as the handler logs a refusal: the id the answer carries, the status and the code.
  await expect.poll(() => lines.find((line) => line.requestId === requestId), { timeout: 2_000 }).toMatchObject({ msg: 'request', status, refused: 'BAD_USER_INPUT' });
}

it('a malformed request line is answered 400 with an x-request-id and a body in the closed list, and logged with that id', async () => {
  const answer = await sendRaw('NOT HTTP AT ALL\r\n\r\n');
  await expectContractAnswer(answer, 400);
});

it('headers that never finish arriving are answered 408 by the header bound, with an x-request-id and a body in the closed list', async () => {
  const answer = await sendRaw('POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n');
  await expectContractAnswer(answer, 408);
  expect(answer.tookMs).toBeGreaterThan(ARRIVAL_MS - 100);
  expect(answer.tookMs).toBeLessThan(ARRIVAL_MS + 4_000);
});

it('each refusal gets an id of its own', async () => {
  const [first, second] = await Promise.all([sendRaw('GET / HTTP/9.9 nonsense\r\n\r\n'), sendRaw('\u0001\u0002\r\n\r\n')]);
  expect(first.status).toBe(400);
  expect(second.status).toBe(400);
  expect(first.headers.get('x-request-id')).toBeTruthy();
  expect(first.headers.get('x-request-id')).not.toBe(second.headers.get('x-request-id'));
});
