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
import { createTestTenant, TEST_HTTP, TEST_TOKENS, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

const lines: Record<string, unknown>[] = [];
let db: TestDatabase;
let tenant: TestTenant;
let running: RunningServer;
let port: number;

/** A request must arrive within this (the listener's arrival bound; headers within the same here). */
const ARRIVAL_MS = 1_000;

beforeAll(async () => {
  db = await useTestDatabase();
  tenant = await createTestTenant(db.owner, 'pipelining');
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

/** Writes `bytes` on a fresh socket in one write and reads every byte the server sends until it closes. */
function sendRawBytes(bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let raw = '';
    socket.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve(raw));
  });
}

/** Writes `bytes` on a fresh socket and reads the answer until the server closes it. */
async function sendRaw(bytes: string): Promise<RawAnswer> {
  const sent = performance.now();
  const raw = await sendRawBytes(bytes);
  const end = raw.indexOf('\r\n\r\n');
  const [statusLine, ...headerLines] = raw.slice(0, end).split('\r\n');
  const headers = new Map(headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  return { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine ?? '')?.[1]), headers, body: JSON.parse(raw.slice(end + 4)) as unknown, tookMs: performance.now() - sent };
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

function createAgentRequest(name: string): string {
  const body = JSON.stringify({ query: `mutation { createAgent(input: { name: "${name}", kind: "assistant" }) { agent { name } } }` });
  return (
    `POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer ${tenant.members.MEMBER.token}\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

/** The whole answers at the start of `raw` (each its status and JSON body, read by its content-length), and what follows them. */
function parseAnswers(raw: string): { answers: { status: number; body: unknown }[]; rest: string } {
  const answers: { status: number; body: unknown }[] = [];
  let rest = Buffer.from(raw);
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    const status = /^HTTP\/1\.1 (\d{3}) /.exec(rest.toString('latin1', 0, 16))?.[1];
    const length = /\r\ncontent-length: (\d+)\r\n/i.exec(rest.toString('latin1', 0, end + 2))?.[1];
    if (end < 0 || !status || !length || rest.length < end + 4 + Number(length)) return { answers, rest: rest.toString() };
    answers.push({ status: Number(status), body: JSON.parse(rest.toString('utf8', end + 4, end + 4 + Number(length))) as unknown });
    rest = rest.subarray(end + 4 + Number(length));
  }
}

async function agentsNamed(name: string): Promise<number> {
  const [row] = await db.owner<{ n: number }[]>`select count(*)::int as n from app.agents where name = ${name}`;
  return row!.n;
}

it('malformed bytes pipelined after a mutation: the mutation gets its own answer whole, no 400 is spliced in, and the connection closes', async () => {
  const raw = await sendRawBytes(`${createAgentRequest('pipelined-one')}NOT HTTP AT ALL\r\n\r\n`);
  // Before: the mutation committed, but the raw 400 went out first and its answer was lost.
  expect(await agentsNamed('pipelined-one')).toBe(1);
  expect(parseAnswers(raw)).toEqual({ answers: [{ status: 200, body: { data: { createAgent: { agent: { name: 'pipelined-one' } } } } }], rest: '' });
  expect(lines.some((line) => line.clientError === 'HPE_INVALID_METHOD' && String(line.msg).startsWith('unreadable bytes after a pipelined request'))).toBe(true);
});

it('two mutations pipelined before malformed bytes are both answered, in order, and nothing else', async () => {
  const raw = await sendRawBytes(`${createAgentRequest('pipelined-first')}${createAgentRequest('pipelined-second')}GET / HTTP/9.9 nonsense\r\n\r\n`);
  expect(parseAnswers(raw)).toEqual({
    answers: [
      { status: 200, body: { data: { createAgent: { agent: { name: 'pipelined-first' } } } } },
      { status: 200, body: { data: { createAgent: { agent: { name: 'pipelined-second' } } } } },
    ],
    rest: '',
  });
  expect([await agentsNamed('pipelined-first'), await agentsNamed('pipelined-second')]).toEqual([1, 1]);
});

it('malformed bytes after an answer already sent on a kept-alive connection are still refused 400 in the closed list', async () => {
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(createAgentRequest('kept-alive')));
    let received = '';
    let garbageSent = false;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      if (!garbageSent && parseAnswers(received).answers.length === 1) {
        garbageSent = true;
        socket.write('NOT HTTP AT ALL\r\n\r\n');
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
  });
  const { answers, rest } = parseAnswers(raw);
  expect(rest).toBe('');
  expect(answers.map((answer) => answer.status)).toEqual([200, 400]);
  expect(answers[1]!.body).toEqual({ errors: [{ message: expect.any(String) as string, extensions: { code: 'BAD_USER_INPUT' } }] });
});
