// A write that commits with its statement (src/graphql/operation.ts
// commitsWithStatement) must not be refused after its COMMIT left: a client
// told "failed" retries, and the write is made twice. Its row is bounded by
// its inputs' limits as the client wrote them (64 KiB of JSON), but the read
// budget counts the row as PostgreSQL sends it: jsonb writes a number in full
// (1e308 is 309 digits), so 64 KiB of input can come back as ~3 MB on the wire.
// Such a write, repeated (its document then cached, src/http/pipeline.ts, and
// its shape learned), is refused with nothing written, or answered: never
// refused with its row committed.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from '../src/db/pool.ts';
import { WRITE_ROW_BOUND_BYTES } from '../src/graphql/operation.ts';
import { jsonBytes } from '../src/graphql/scalars.ts';
import { createTestApp, createTestTenant, insertWorkSession, TEST_HTTP, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let sql: Sql;
let tenant: TestTenant;
let sessionId: string;
let api: TestApp;

beforeAll(async () => {
  db = await useTestDatabase();
  sql = db.appPool(2);
  tenant = await createTestTenant(db.owner, 'write-row-bound');
  ({ sessionId } = await insertWorkSession(db.owner, tenant, 'bound'));
  // The smallest limit under which a write may commit with its statement.
  api = createTestApp(sql, { http: { ...TEST_HTTP, maxResponseBytes: WRITE_ROW_BOUND_BYTES } });
});

/** A shape that commits with its statement: one marked root field, no aliases, the row's own fields. */
const CREATE = 'mutation($s: ID!, $t: String!, $i: JSONObject) { createTask(input: { sessionId: $s, title: $t, input: $i }) { task { id title } } }';
/** 28 KB of JSON, 64,022 bytes stored (pg_column_size, at most 65,536), 1.3 MB as jsonb sends it back (0.000…5, 328 characters a number). */
const WIDE_NUMBERS = { n: Array.from({ length: 4_000 }, () => 5e-324) };

async function create(query: string, title: string, input: Record<string, unknown>) {
  const response = await fetch(`${await api.origin()}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${tenant.members.MEMBER.token}` },
    body: JSON.stringify({ query, variables: { s: sessionId, t: title, i: input } }),
  });
  return { status: response.status, body: (await response.json()) as { data?: unknown; errors?: { extensions?: { code?: string } }[] } };
}

const written = async (title: string) => Number((await db.owner<{ n: number }[]>`select count(*)::int as n from app.tasks where title = ${title}`)[0]!.n);

describe('a JSONObject input is measured as PostgreSQL sends it back', () => {
  it.each([5e-324, 1e308, -1.5e-7, 2.5e-7, 1.2345e25, 1e21, -9.87654321e-100, 123.456, 1e-6, 0, -0, 42])('%s', async (number) => {
    const value = { n: number };
    const [row] = await db.owner<{ bytes: number }[]>`select octet_length(${db.owner.json(value)}::jsonb::text)::int as bytes`;
    expect(jsonBytes(value)).toBe(row!.bytes - 1); // jsonb writes {"n": x}, one space more
  });
});

describe('a write whose row is larger on the wire than its input', () => {
  it('as JSON.stringify writes it, the input is within its limit', () => {
    expect(Buffer.byteLength(JSON.stringify(WIDE_NUMBERS))).toBeLessThanOrEqual(65_536);
  });

  it.each([
    // Texts of the same shape, each uncached when its test starts.
    ['after the document answered once (cached, its shape learned)', CREATE, true],
    ['sent for the first time, then again (cached after its first refusal)', CREATE.replace('{ id title }', '{ id title __typename }'), false],
  ])('%s: never refused once it committed', async (_name, query, answeredFirst) => {
    const prefix = answeredFirst ? 'bound-after' : 'bound-first';
    if (answeredFirst) expect((await create(query, 'bound-small', { a: 1 })).body.errors).toBeUndefined();
    for (let n = 1; n <= 3; n++) {
      const title = `${prefix}-${n}`;
      const answer = await create(query, title, WIDE_NUMBERS);
      const rows = await written(title);
      // Refused: nothing written. Answered: written once.
      if (answer.body.errors?.length) expect({ n, rows, errors: answer.body.errors }).toMatchObject({ rows: 0 });
      else expect({ n, rows }).toEqual({ n, rows: 1 });
    }
  });
});
