// A mutation whose answer is larger than MAX_RESPONSE_BYTES writes nothing:
// its answer is built before COMMIT, so the response-limit refusal comes with
// a rollback, never after a commit (a client told "failed" retries, and a
// committed write would be made twice). The row read budget alone cannot
// promise it: the answer repeats a row's field under aliases, escapes it, adds
// names and global ids. A write that commits with its statement (2 round trips,
// src/graphql/operation.ts commitsWithStatement) reads no aliases, so its answer
// is the written row once, below WRITE_ROW_BOUND_BYTES.
import { parse, type OperationDefinitionNode } from 'graphql';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from '../src/db/pool.ts';
import { commitsWithStatement, WRITE_ROW_BOUND_BYTES } from '../src/graphql/operation.ts';
import { schema } from '../src/graphql/schema.ts';
import { createTestApp, createTestTenant, insertWorkSession, TEST_HTTP, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let sql: Sql;
let tenant: TestTenant;
let sessionId: string;

const ALIASES = 20;
/** Twenty aliases of a ~60 KB input: an answer of ~1.2 MB from a row of ~60 KB. */
const ALIASED = `mutation($s: ID!, $t: String!, $i: JSONObject) {
  createTask(input: { sessionId: $s, title: $t, input: $i }) { task { id title ${Array.from({ length: ALIASES }, (_, n) => `i${n}: input`).join(' ')} } }
}`;
const INPUT = { blob: 'x'.repeat(60_000) };

beforeAll(async () => {
  db = await useTestDatabase();
  sql = db.appPool(2);
  tenant = await createTestTenant(db.owner, 'mut-limit');
  ({ sessionId } = await insertWorkSession(db.owner, tenant, 'limit'));
});

/** A service with this response limit; its answers as sent (the body's bytes) and parsed. */
function service(maxResponseBytes: number) {
  const api = createTestApp(sql, { http: { ...TEST_HTTP, maxResponseBytes } });
  return async (query: string, variables: Record<string, unknown>) => {
    const response = await fetch(`${await api.origin()}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tenant.members.MEMBER.token}` },
      body: JSON.stringify({ query, variables }),
    });
    const text = await response.text();
    return { status: response.status, bytes: Buffer.byteLength(text), body: JSON.parse(text) as { data?: unknown; errors?: { extensions?: { code?: string; limit?: string } }[] } };
  };
}

const tasksTitled = async (title: string) => Number((await db.owner<{ n: number }[]>`select count(*)::int as n from app.tasks where title = ${title}`)[0]!.n);
/** Titles of one length: the answers of the same document then have the same size. */
const title = (name: string) => name.padEnd(24, '.');

describe('a mutation whose answer is over the response limit', () => {
  let size: number;

  beforeAll(async () => {
    // The answer's size, measured on a service whose limit it is under.
    const probe = await service(10 * 1024 * 1024)(ALIASED, { s: sessionId, t: title('probe'), i: INPUT });
    expect(probe.status).toBe(200);
    size = probe.bytes;
    expect(size).toBeGreaterThan(ALIASES * 60_000);
    expect(size).toBeGreaterThan(WRITE_ROW_BOUND_BYTES); // a limit of size - 1 still lets a plain createTask commit with its statement
  });

  it('is refused with the response limit and its row is not in the database, run after run (the shape learned)', async () => {
    const send = service(size - 1);
    // The same document with a small input first: answered and committed, the document cached and its shape learned
    // (one write tick: without the alias rule it would commit with its statement, before its answer is measured).
    for (const name of ['small-1', 'small-2']) {
      const answer = await send(ALIASED, { s: sessionId, t: title(name), i: { blob: 'x' } });
      expect(answer.status).toBe(200);
      expect(await tasksTitled(title(name))).toBe(1);
    }
    for (const name of ['over-1', 'over-2', 'over-3']) {
      const answer = await send(ALIASED, { s: sessionId, t: title(name), i: INPUT });
      expect(answer.status).toBe(400);
      expect(answer.body.errors?.map((error) => [error.extensions?.code, error.extensions?.limit])).toEqual([['BAD_USER_INPUT', 'responseBytes']]);
      expect(answer.body.data).toBeUndefined();
      expect(await tasksTitled(title(name))).toBe(0);
    }
  });

  it('one byte under is answered, and its row is committed', async () => {
    const send = service(size);
    for (const name of ['under-1', 'under-2']) {
      const answer = await send(ALIASED, { s: sessionId, t: title(name), i: INPUT });
      expect(answer.status).toBe(200);
      expect(answer.bytes).toBe(size);
      expect(answer.body.errors).toBeUndefined();
      expect(await tasksTitled(title(name))).toBe(1);
    }
  });
});

describe('a write that commits with its statement', () => {
  const definition = (query: string) => parse(query).definitions[0] as OperationDefinitionNode;

  it('reads no aliases: an aliased answer keeps its COMMIT until the answer is measured', () => {
    const plain = 'mutation($s: ID!) { createTask(input: { sessionId: $s, title: "t" }) { task { id title status input } } }';
    expect(commitsWithStatement(schema, definition(plain), WRITE_ROW_BOUND_BYTES)).toBe(true);
    expect(commitsWithStatement(schema, definition(plain.replace('input }', 'again: input }')), WRITE_ROW_BOUND_BYTES)).toBe(false);
    expect(commitsWithStatement(schema, definition(plain.replace('{ task {', '{ t: task {')), WRITE_ROW_BOUND_BYTES)).toBe(false);
    expect(commitsWithStatement(schema, definition(plain.replace('createTask(', 'made: createTask(')), WRITE_ROW_BOUND_BYTES)).toBe(false);
    expect(commitsWithStatement(schema, definition(plain.replace('status', 'kind: __typename')), WRITE_ROW_BOUND_BYTES)).toBe(false);
  });

  it('answers its largest row (every field, every input at its limit, escaped) below WRITE_ROW_BOUND_BYTES, under the smallest limit that allows it', async () => {
    const send = service(WRITE_ROW_BOUND_BYTES);
    // Control characters are escaped as \\u0001 (6 bytes each): the title at 300 of them, the input at its 64 KiB of JSON.
    const worstTitle = (n: number) => `${n}`.padEnd(300, '\u0001');
    const input = { blob: '\u0001'.repeat(Math.floor((65_536 - 12) / 6)) };
    expect(Buffer.byteLength(JSON.stringify(input))).toBeLessThanOrEqual(65_536);
    const query = `mutation($s: ID!, $t: String!, $i: JSONObject) {
      __typename createTask(input: { sessionId: $s, title: $t, input: $i }) { __typename task { __typename id title status input output tokens createdAt updatedAt } }
    }`;
    for (const n of [1, 2, 3]) {
      const answer = await send(query, { s: sessionId, t: worstTitle(n), i: input });
      expect(answer.status).toBe(200);
      expect(answer.body.errors).toBeUndefined();
      expect(answer.bytes).toBeLessThan(WRITE_ROW_BOUND_BYTES / 8);
      expect(await tasksTitled(worstTitle(n))).toBe(1);
    }
  });
});
