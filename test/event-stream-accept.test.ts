// Which answer an Accept header gets: content negotiation (RFC 9110 12.5.1, as
// the GraphQL-over-HTTP spec asks: the highest-q type the server offers). A
// query or mutation is answered as an event stream only when the client
// prefers text/event-stream to JSON, or names nothing else; a client whose
// default Accept merely lists it (`application/json, text/event-stream`) gets
// JSON and keeps its connection (an event stream is its connection's last
// answer). A subscription, which only a stream carries, streams whenever the
// client accepts text/event-stream at all. Hostile headers are read bounded.
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
  tenant = await createTestTenant(db.owner, 'accept-negotiation');
  live = await startLiveServer(db.appPool(4), db.appUrl);
});

afterAll(async () => {
  await live.close();
});

const VIEWER_QUERY = '{ viewer { __typename } }';

function post(body: unknown, headers: Record<string, string>): string {
  const text = JSON.stringify(body);
  const lines = Object.entries({ host: 'x', 'content-type': 'application/json', ...headers, 'content-length': String(Buffer.byteLength(text)) });
  return `POST /graphql HTTP/1.1\r\n${lines.map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n${text}`;
}

const get = (query: string, headers: Record<string, string>) =>
  `GET /graphql?${new URLSearchParams({ query })} HTTP/1.1\r\nhost: x\r\n${Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n`;

const createAgent = (name: string, accept: string) =>
  post({ query: `mutation { createAgent(input: { name: "${name}", kind: "assistant" }) { agent { name } } }` }, { accept, authorization: `Bearer ${tenant.members.MEMBER.token}` });

type Answer = { readonly head: string; readonly body: string };

/** A raw connection: what it sends, the answers it read (a JSON answer by its content-length), and whether it closed. */
function rawConnection() {
  const socket = connect(Number(new URL(live.origin).port), '127.0.0.1');
  let raw = '';
  let closed = false;
  const waiters: (() => void)[] = [];
  const changed = () => waiters.splice(0).forEach((wake) => wake());
  socket.on('data', (chunk: Buffer) => ((raw += chunk.toString()), changed()));
  socket.on('close', () => ((closed = true), changed()));
  socket.on('error', () => {});
  const answers = (): Answer[] => {
    const found: Answer[] = [];
    let at = 0;
    for (;;) {
      const start = raw.indexOf('HTTP/1.1 ', at);
      const end = start < 0 ? -1 : raw.indexOf('\r\n\r\n', start);
      if (end < 0) return found;
      const head = raw.slice(start, end);
      const length = /\r\ncontent-length: (\d+)/i.exec(head);
      const bodyEnd = length ? end + 4 + Number(length[1]) : raw.indexOf('HTTP/1.1 ', end) >= 0 ? raw.indexOf('HTTP/1.1 ', end) : raw.length;
      if (length && raw.length < bodyEnd) return found;
      found.push({ head, body: raw.slice(end + 4, bodyEnd) });
      at = bodyEnd;
    }
  };
  /** Until `done` holds, or `ms` have passed. */
  const until = async (done: () => boolean, ms = 5_000) => {
    const deadline = Date.now() + ms;
    while (!done() && Date.now() < deadline) await new Promise<void>((wake) => (waiters.push(wake), setTimeout(wake, 50)));
  };
  return {
    send: (bytes: string) => socket.write(bytes),
    answers,
    get closed() {
      return closed;
    },
    get raw() {
      return raw;
    },
    until,
    end: () => socket.destroy(),
  };
}

async function agentsNamed(name: string): Promise<number> {
  const [row] = await db.owner<{ n: number }[]>`select count(*)::int as n from app.agents where name = ${name}`;
  return row!.n;
}

const contentType = (answer: Answer) => /\r\ncontent-type: ([^\r;]*)/i.exec(answer.head)?.[1];
const closes = (answer: Answer) => /\r\nconnection: close/i.test(answer.head);

// What clients send by default that lists text/event-stream without preferring it.
const LISTING = [
  'application/json, text/event-stream',
  'application/graphql-response+json, text/event-stream;q=0.5',
  'text/event-stream;q=0.9, application/json',
  'text/event-stream, application/json', // equal weights: JSON, as Yoga answers anything but a stream
  'text/event-stream;q=0.5, */*',
];

it.each(LISTING)('Accept: %s: a query and a mutation pipelined on one connection are answered JSON, the connection kept for the next', async (accept) => {
  const name = `listing ${accept}`;
  const connection = rawConnection();
  try {
    connection.send(`${post({ query: VIEWER_QUERY }, { accept, authorization: `Bearer ${tenant.members.VIEWER.token}` })}${createAgent(name, accept)}`);
    await connection.until(() => connection.answers().length >= 2 || connection.closed);
    const [query, mutation] = connection.answers();
    expect([query?.head.slice(0, 15), contentType(query!), closes(query!)]).toEqual(['HTTP/1.1 200 OK', 'application/json', false]);
    expect(JSON.parse(query!.body)).toEqual({ data: { viewer: { __typename: 'Viewer' } } });
    expect([mutation?.head.slice(0, 15), contentType(mutation!), closes(mutation!)]).toEqual(['HTTP/1.1 200 OK', 'application/json', false]);
    expect(JSON.parse(mutation!.body)).toEqual({ data: { createAgent: { agent: { name } } } });
    expect(await agentsNamed(name)).toBe(1);
    // Kept alive: a third request on the same connection is answered too.
    connection.send(get(VIEWER_QUERY, { accept, authorization: `Bearer ${tenant.members.VIEWER.token}` }));
    await connection.until(() => connection.answers().length >= 3 || connection.closed);
    expect(connection.closed).toBe(false);
    expect(connection.answers().map(contentType)).toEqual(['application/json', 'application/json', 'application/json']);
  } finally {
    connection.end();
  }
});

it.each(['text/event-stream', 'text/event-stream, application/json;q=0.5', 'application/json;q=0, text/event-stream'])(
  'Accept: %s (an event stream preferred, or the only type): a query is answered as a stream, the connection\'s last',
  async (accept) => {
    const connection = rawConnection();
    try {
      connection.send(post({ query: VIEWER_QUERY }, { accept, authorization: `Bearer ${tenant.members.VIEWER.token}` }));
      await connection.until(() => connection.closed);
      const [answer] = connection.answers();
      expect([contentType(answer!), closes(answer!)]).toEqual(['text/event-stream', true]);
      expect(connection.raw).toContain('event: next\ndata: {"data":{"viewer":{"__typename":"Viewer"}}}');
      expect(connection.raw).toContain('event: complete');
      expect(connection.closed).toBe(true);
    } finally {
      connection.end();
    }
  },
);

it('a subscription with Accept: application/json, text/event-stream streams (only a stream carries it): the connection\'s last, a mutation behind it never run', async () => {
  const token = await tokenFor(tenant.members.VIEWER.userId, tenant.id, { ttl: '3s' }); // the stream ends with the token
  const accept = 'application/json, text/event-stream';
  const connection = rawConnection();
  try {
    connection.send(`${post({ query: 'subscription { members { kind id } }' }, { accept, authorization: `Bearer ${token}` })}${createAgent('behind-a-negotiated-stream', accept)}`);
    await connection.until(() => connection.closed, 10_000);
    const answers = connection.answers();
    expect(answers).toHaveLength(1); // the stream's only
    expect([contentType(answers[0]!), closes(answers[0]!)]).toEqual(['text/event-stream', true]);
    expect(connection.raw).toContain('event: complete');
    expect(await agentsNamed('behind-a-negotiated-stream')).toBe(0);
  } finally {
    connection.end();
  }
});

it('a subscription whose Accept lists no event stream, or refuses it (q=0), is refused as before: 406, JSON', async () => {
  for (const accept of ['application/json', 'text/event-stream;q=0, application/json']) {
    const connection = rawConnection();
    try {
      connection.send(post({ query: 'subscription { members { kind id } }' }, { accept, authorization: `Bearer ${tenant.members.VIEWER.token}` }));
      await connection.until(() => connection.answers().length >= 1 || connection.closed);
      const [answer] = connection.answers();
      expect([answer?.head.slice(0, 12), contentType(answer!)], accept).toEqual(['HTTP/1.1 406', 'application/json']);
    } finally {
      connection.end();
    }
  }
});

it('how an Accept header ranks an event stream: named and preferred, named and not preferred, or not acceptable', async () => {
  const { eventStreamRank } = (await import('../src/http/graphql-sse.ts')) as unknown as { eventStreamRank: (accept: string | undefined) => 'prefers' | 'accepts' | undefined };
  const cases: [string | undefined, 'prefers' | 'accepts' | undefined][] = [
    [undefined, undefined],
    ['', undefined],
    ['application/json', undefined],
    ['*/*', undefined],
    ['text/*', undefined], // only a client naming the stream gets one
    ['text/event-stream', 'prefers'],
    ['TEXT/Event-Stream ; charset=utf-8', 'prefers'],
    ['text/event-stream;q=0', undefined],
    ['text/event-stream;q=0.000', undefined],
    ['application/json, text/event-stream', 'accepts'],
    ['application/graphql-response+json, text/event-stream;q=0.5', 'accepts'],
    ['text/event-stream, application/json;q=0.5', 'prefers'],
    ['text/event-stream;q=0.5, application/json;q=0.4', 'prefers'],
    ['text/event-stream;q=0.5, application/*;q=0.6', 'accepts'],
    ['text/event-stream;q=0.5, */*;q=0.4', 'prefers'],
    // The most specific range decides a type's weight: application/json refused outright, */* does not bring it back.
    ['text/event-stream;q=0.5, application/json;q=0, application/graphql-response+json;q=0, */*', 'prefers'],
    ['application/json;q=0, text/event-stream', 'prefers'],
    // A weight that is no qvalue (RFC 9110: 0 to 1, three decimals at most): that range is not acceptable.
    ['text/event-stream;q=abc, application/json', undefined],
    ['text/event-stream;q=2', undefined],
    ['text/event-stream;q=1.5', undefined],
    ['text/event-stream;q=-1', undefined],
    ['text/event-stream;q=0.5.5', undefined],
    ['text/event-stream;q=1e400', undefined],
    ['text/event-stream;q=', undefined],
    ['text/event-stream;q=0.5, application/json;q=abc', 'prefers'],
    [';;;,,,;q=1,text/event-stream;;', 'prefers'],
    ['text/event-stream;q=0.5;q=0.9, application/json;q=0.7', 'accepts'], // the first weight counts; the rest are extensions
    // Bounded: only the first 32 ranges are read; a stream named after them is not seen.
    [`${'a/b;q=0.1, '.repeat(40)}text/event-stream`, undefined],
    [`${'a/b;q=0.1, '.repeat(20)}text/event-stream`, 'prefers'],
  ];
  for (const [accept, rank] of cases) expect(eventStreamRank(accept), String(accept)).toBe(rank);
});

it('hostile Accept headers (long, many ranges, malformed weights) are answered promptly, never a 500, and the server serves on', async () => {
  const hostile = [
    `${'a/b;q=0.1, '.repeat(1_200)}text/event-stream`, // ~13 KB, within Node's 16 KiB of headers
    `${'text/event-stream;q=0.1,'.repeat(500)}application/json`,
    `text/event-stream;${'x=y;'.repeat(2_000)}q=0.5, application/json`,
    `${','.repeat(10_000)}text/event-stream`,
    `${';'.repeat(10_000)}`,
    'text/event-stream;q=abc, application/json',
    'text/event-stream;q=2',
    'text/event-stream;q=0.5.5, application/json;q=',
    'text/event-stream;q=1e400',
    '\u00e9\u00e9/\u00e9\u00e9;q=\u00e9, text/event-stream',
  ];
  for (const accept of hostile) {
    const connection = rawConnection();
    const started = performance.now();
    try {
      connection.send(post({ query: VIEWER_QUERY }, { accept, authorization: `Bearer ${tenant.members.VIEWER.token}` }));
      // A JSON answer once read; an event stream once its connection closes.
      await connection.until(() => connection.closed || (connection.answers().length >= 1 && contentType(connection.answers()[0]!) !== 'text/event-stream'));
      const [answer] = connection.answers();
      expect(answer, accept.slice(0, 60)).toBeDefined();
      expect(Number(answer!.head.slice(9, 12)), accept.slice(0, 60)).toBeLessThan(500);
      expect(performance.now() - started).toBeLessThan(2_000);
    } finally {
      connection.end();
    }
  }
  const connection = rawConnection();
  try {
    connection.send(post({ query: VIEWER_QUERY }, { accept: 'application/json', authorization: `Bearer ${tenant.members.VIEWER.token}` }));
    await connection.until(() => connection.answers().length >= 1);
    expect(JSON.parse(connection.answers()[0]!.body)).toEqual({ data: { viewer: { __typename: 'Viewer' } } });
  } finally {
    connection.end();
  }
});
