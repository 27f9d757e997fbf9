// A stranger's request body costs the service nothing: the credentials in the
// headers are checked before a POST body is read (a missing, malformed,
// expired or forged token is refused unread), and a body sent with an API key,
// which only the database can confirm, is read past UNCONFIRMED_BODY_BYTES
// only once the database has. Bodies of up to MAX_BODY_BYTES (5 MiB) were
// read, decoded and JSON-parsed for anyone: 50 at once held 250 MiB and more.
import { request } from 'node:http';
import { GraphQLError } from 'graphql';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RequestGuard } from '../src/http/guard.ts';
import { createTestApp, createTestTenant, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let origin: string;
let tenant: TestTenant;
let apiKey: string;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(4));
  origin = await api.origin();
  tenant = await createTestTenant(db.owner, 'bodies-co');
  const created = await api.request('mutation { createApiKey(input: { name: "ci", role: VIEWER }) { secret } }', { token: tenant.members.ADMIN.token });
  apiKey = (created.body.data as { createApiKey: { secret: string } }).createApiKey.secret;
});

type Answer = { status: number; connection: string | undefined; body: { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] } };

/** A POST /graphql of exactly these bytes, over node:http (the answer may come while the body is still being sent). */
function post(headers: Record<string, string>, body: Buffer, to = origin): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(`${to}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(body.length), ...headers } }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Answer['body'] }));
      res.on('error', reject);
    });
    req.on('error', (error) => {
      if (!answered) reject(error); // else: the service closed while the rest was still being sent
    });
    req.end(body);
  });
}

/** A 5 MiB body that is valid JSON (one long string: cheap to scan, 10 MiB to hold as bytes and text, more once parsed). */
const FIVE_MIB = Buffer.from(JSON.stringify({ query: '{ viewer { role } }', variables: { pad: 'x'.repeat((5 << 20) - 64) } }));
const PAYLOADS = 50;

/** The burst's highest heap and array-buffer use over what it was before, and /health's slowest answer meanwhile. */
async function underBurst(burst: () => Promise<Answer[]>): Promise<{ answers: Answer[]; grewMiB: number; slowestHealthMs: number; tookMs: number }> {
  const used = () => {
    const { heapUsed, arrayBuffers } = process.memoryUsage();
    return heapUsed + arrayBuffers;
  };
  const before = used();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, used())), 5);
  let done = false;
  let slowestHealthMs = 0;
  const health = (async () => {
    while (!done) {
      const sent = performance.now();
      const response = await fetch(`${origin}/health`);
      expect(response.status).toBe(200);
      slowestHealthMs = Math.max(slowestHealthMs, performance.now() - sent);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const started = performance.now();
  try {
    const answers = await burst();
    return { answers, grewMiB: (peak - before) / (1 << 20), slowestHealthMs, tookMs: performance.now() - started };
  } finally {
    done = true;
    clearInterval(sampler);
    await health;
  }
}

describe('before the credentials are known', () => {
  it('50 concurrent 5 MiB bodies without credentials, with a forged token or another scheme, as JSON and as SSE: UNAUTHENTICATED, unread; the heap does not hold them, /health answers', async () => {
    const forged = `${tenant.members.VIEWER.token.slice(0, -4)}AAAA`;
    const kinds: Record<string, string>[] = [{}, { authorization: `Bearer ${forged}` }, { authorization: 'Basic dXNlcjpwYXNz' }, { accept: 'text/event-stream' }];
    const { answers, grewMiB, slowestHealthMs, tookMs } = await underBurst(() =>
      Promise.all(Array.from({ length: PAYLOADS }, (_, i) => post(kinds[i % kinds.length]!, FIVE_MIB))),
    );
    for (const answer of answers) {
      expect(answer.status).toBe(401);
      expect(answer.body.errors?.map((error) => error.extensions?.code)).toEqual(['UNAUTHENTICATED']);
      expect(answer.connection).toBe('close');
    }
    console.log(JSON.stringify({ case: 'no or forged credentials', payloads: PAYLOADS, tookMs: Math.round(tookMs), grewMiB: Math.round(grewMiB), slowestHealthMs: Math.round(slowestHealthMs) }));
    expect(grewMiB, `${PAYLOADS} x 5 MiB: the heap and buffers grew by ${Math.round(grewMiB)} MiB`).toBeLessThan(64);
    expect(slowestHealthMs, 'the uploads are sent from this process too: its own work is in it').toBeLessThan(2_500); // read and parsed: 4.9 s
  });

  it('50 concurrent 5 MiB bodies with an API key the database does not know, as JSON and as SSE: UNAUTHENTICATED after at most 64 KiB read of each', async () => {
    const stranger = `tnk_AAAAAAAA_${'B'.repeat(43)}`; // the form of a key, no key's hash
    const { answers, grewMiB, slowestHealthMs, tookMs } = await underBurst(() =>
      Promise.all(Array.from({ length: PAYLOADS }, (_, i) => post({ 'x-api-key': stranger, ...(i % 2 ? { accept: 'text/event-stream' } : {}) }, FIVE_MIB))),
    );
    for (const answer of answers) {
      expect(answer.status).toBe(401);
      expect(answer.body.errors?.map((error) => error.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    }
    console.log(JSON.stringify({ case: 'unknown API key', payloads: PAYLOADS, tookMs: Math.round(tookMs), grewMiB: Math.round(grewMiB), slowestHealthMs: Math.round(slowestHealthMs) }));
    expect(grewMiB, `${PAYLOADS} x 5 MiB: the heap and buffers grew by ${Math.round(grewMiB)} MiB`).toBeLessThan(64);
    expect(slowestHealthMs, 'the uploads are sent from this process too: its own work is in it').toBeLessThan(2_500); // read and parsed: 4.9 s
  });

  it('a small body without credentials, even one that is not JSON, is answered UNAUTHENTICATED (not parsed)', async () => {
    for (const body of ['{"query":"{ viewer { role } }"}', '{not json', '[1,2,3]']) {
      const answer = await post({}, Buffer.from(body));
      expect(answer.status, body).toBe(401);
      expect(answer.body.errors?.map((error) => error.extensions?.code), body).toEqual(['UNAUTHENTICATED']);
    }
  });
});

describe('with credentials', () => {
  it('a signed-in user sends a 4 MiB body, an API key a 1 MiB one (read once the database knows the key): both answered', async () => {
    const big = (bytes: number) => Buffer.from(JSON.stringify({ query: '{ tenant { slug } }', variables: { pad: 'x'.repeat(bytes) } }));
    const user = await post({ authorization: `Bearer ${tenant.members.VIEWER.token}` }, big(4 << 20));
    expect(user.body).toEqual({ data: { tenant: { slug: 'bodies-co' } } });
    const key = await post({ 'x-api-key': apiKey }, big(1 << 20));
    expect(key.status).toBe(200);
    expect(key.body.errors).toBeUndefined();
    // Under the cap the key's body is read at once, as before.
    const small = await post({ 'x-api-key': apiKey }, big(1_000));
    expect(small.status).toBe(200);
    expect(small.body.errors).toBeUndefined();
  });

  it('a malformed body from a signed-in user is still BAD_USER_INPUT', async () => {
    const answer = await post({ authorization: `Bearer ${tenant.members.VIEWER.token}` }, Buffer.from('{not json'));
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.map((error) => error.extensions?.code)).toEqual(['BAD_USER_INPUT']);
  });
});

// The database's check of an API key before the rest of its body is read is a request like any other: it passes the
// guards first (rate limits, the fair-share lanes: a made-up key's check takes a place in the shared lane of unplaced
// requests). It bypassed them, so a flood of made-up keys with bodies past 64 KiB took pool connections outside every lane.
it("a made-up API key's large body meets the guards before the database checks the key: their refusal is the answer", async () => {
  const admitted: string[] = [];
  const refusing: RequestGuard = {
    admit: ({ selection }) => {
      admitted.push(selection.credentials.kind);
      throw new GraphQLError('Too many requests: try again later', { extensions: { code: 'RATE_LIMITED', retryAfter: 1, http: { status: 429 } } });
    },
  };
  const guarded = createTestApp(db.appPool(2), { guards: [refusing] });
  const stranger = `tnk_AAAAAAAA_${'C'.repeat(43)}`;
  const answer = await post({ 'x-api-key': stranger }, Buffer.from(JSON.stringify({ query: '{ viewer { role } }', variables: { pad: 'x'.repeat(200_000) } })), await guarded.origin());
  expect([answer.status, answer.body.errors?.map((error) => error.extensions?.code)]).toEqual([429, ['RATE_LIMITED']]);
  expect(admitted).toEqual(['apiKey']);
});
