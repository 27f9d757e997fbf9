// A document refused for what its run read or answered (a read over the read
// budget, a mutation whose answer is over the response limit) is a limit of the
// data, not of the document: once the database accepted the caller it is kept
// in the document cache (src/http/pipeline.ts), so a client repeating it is not
// parsed and validated again, and every repetition is refused the same way (the
// limit is checked on every run; nothing is written). Documents refused before
// the database saw the caller (syntax, validation, cost) still leave nothing.
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import type { Sql } from '../src/db/pool.ts';
import { createTestApp, createTestTenant, insertAgents, insertSession, TEST_HTTP, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

/** Small enough that 30 agents of 15 KB of config, or a task's answer of 20 aliases of a 20 KB input, pass it. */
const MAX_RESPONSE_BYTES = 200 * 1024;

let db: TestDatabase;
let sql: Sql;
let tenant: TestTenant;
let sessionId: string;
let api: TestApp;

beforeAll(async () => {
  db = await useTestDatabase();
  sql = db.appPool(2);
  tenant = await createTestTenant(db.owner, 'refusal-cache');
  const agents = await insertAgents(db.owner, tenant.id, tenant.members.MEMBER.userId, Array.from({ length: 30 }, (_, n) => `big-${n}`));
  await db.owner`update app.agents set config = ${db.owner.json({ blob: 'x'.repeat(15_000) })} where tenant_id = ${tenant.id}`;
  sessionId = encodeGlobalId('Session', await insertSession(db.owner, tenant.id, agents[0]!, tenant.members.MEMBER.userId));
  api = createTestApp(sql, { http: { ...TEST_HTTP, maxResponseBytes: MAX_RESPONSE_BYTES } });
});

const cachedDocuments = () => api.app.pipeline.documents().entries;

/** Sends `query` three times; each answer's status and body as sent, and the cache's entries after each. */
async function repeated(query: string, variables: (n: number) => Record<string, unknown> = () => ({})) {
  const answers: { status: number; body: string; entries: number }[] = [];
  for (let n = 1; n <= 3; n++) {
    const response = await fetch(`${await api.origin()}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tenant.members.MEMBER.token}` },
      body: JSON.stringify({ query, variables: variables(n) }),
    });
    answers.push({ status: response.status, body: await response.text(), entries: cachedDocuments() });
  }
  return answers;
}

const REFUSED_FOR_SIZE = { errors: [{ extensions: { code: 'BAD_USER_INPUT', limit: 'responseBytes' } }] };

describe('refused for what its run read or answered: cached once, refused the same way every time', () => {
  it('a read over the read budget', async () => {
    const before = cachedDocuments();
    const answers = await repeated('{ agents(first: 30) { edges { node { id name config } } } }');
    expect(answers[0]!.status).toBe(400);
    expect(JSON.parse(answers[0]!.body)).toMatchObject(REFUSED_FOR_SIZE);
    expect(answers.map((answer) => [answer.status, answer.body])).toEqual(Array.from({ length: 3 }, () => [answers[0]!.status, answers[0]!.body]));
    // Kept after the first refusal; the repetitions found it (no new entry: not parsed and validated again).
    expect(answers.map((answer) => answer.entries)).toEqual([before + 1, before + 1, before + 1]);
  });

  it('a mutation whose answer is over the response limit: refused, rolled back, every time', async () => {
    const title = (n: number) => `cache-refused-${n}`;
    const query = `mutation($s: ID!, $t: String!, $i: JSONObject) {
      createTask(input: { sessionId: $s, title: $t, input: $i }) { task { id title ${Array.from({ length: 20 }, (_, n) => `i${n}: input`).join(' ')} } }
    }`;
    const before = cachedDocuments();
    const answers = await repeated(query, (n) => ({ s: sessionId, t: title(n), i: { blob: 'y'.repeat(20_000) } }));
    expect(answers[0]!.status).toBe(400);
    expect(JSON.parse(answers[0]!.body)).toMatchObject(REFUSED_FOR_SIZE);
    expect(answers.map((answer) => [answer.status, answer.body])).toEqual(Array.from({ length: 3 }, () => [answers[0]!.status, answers[0]!.body]));
    expect(answers.map((answer) => answer.entries)).toEqual([before + 1, before + 1, before + 1]);
    const [written] = await db.owner<{ n: number }[]>`select count(*)::int as n from app.tasks where title like 'cache-refused-%'`;
    expect(written!.n).toBe(0);
  });
});

describe('refused before the database saw the caller: nothing kept', () => {
  it.each([
    ['a syntax error', '{ agents(first: 1) { edges { node { id } } '],
    ['a validation error', '{ agents(first: 1) { edges { node { nope } } } }'],
    ['a cost over the limit', `{ ${Array.from({ length: 25 }, (_, n) => `a${n}: agents(first: 100) { edges { node { sessions(first: 100) { edges { node { id } } } } } }`).join(' ')} }`],
  ])('%s', async (_name, query) => {
    const before = cachedDocuments();
    const answers = await repeated(query);
    expect(answers[0]!.status).toBe(400);
    expect(answers.map((answer) => answer.body)).toEqual([answers[0]!.body, answers[0]!.body, answers[0]!.body]);
    expect(answers.map((answer) => answer.entries)).toEqual([before, before, before]);
  });
});
