// createTask's insert returns the columns its answer shows (the payload's
// `task { … }`, through fragments and aliases), as a row read by id chooses
// them: `{ id title status }` parses no jsonb or timestamp, and an answer that
// shows every field gets every value right.
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, createTestTenant, insertWorkSession, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { writesTo } from './helpers/wire.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let sessionId: string;
const statements: string[] = [];

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(4, (query) => statements.push(query)));
  a = await createTestTenant(db.owner, 'task-columns');
  ({ sessionId } = await insertWorkSession(db.owner, a, 'columns'));
});

const data = <T>(response: GraphQLResponse): T => {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return (response.body.data!.createTask as { task: T }).task;
};

/** The text of the insert the last request sent. */
const lastInsert = () => statements.findLast((text) => text.includes('insert into app.tasks'))!;

describe('createTask returns what its answer shows', () => {
  it('{ id title status }: the first column group only, no jsonb, no timestamps', async () => {
    const task = data<{ id: string; title: string; status: string }>(
      await api.request('mutation($s: ID!) { createTask(input: { sessionId: $s, title: "few" }) { task { id title status } } }', {
        token: a.members.MEMBER.token,
        variables: { s: sessionId },
      }),
    );
    expect(task).toMatchObject({ title: 'few', status: 'PENDING' });
    const returning = lastInsert().split('returning')[1]!;
    expect(returning).toContain('title');
    for (const column of ['created_at', 'updated_at', 'input', 'output', 'assignee_id', 'created_by']) expect(returning).not.toContain(column);
  });

  it('a write that commits with its insert (learned, 1 round trip) and shows columns of every group answers them all, written once each time', async () => {
    const shown = 'id title tokens createdAt updatedAt input output __typename';
    for (let run = 1; run <= 4; run++) {
      const send = () =>
        api.request(`mutation($s: ID!, $i: JSONObject) { createTask(input: { sessionId: $s, title: "groups", input: $i }) { task { ${shown} } } }`, {
          token: a.members.MEMBER.token,
          variables: { s: sessionId, i: { run } },
        });
      const { value, writes } = await writesTo(Number(new URL(db.appUrl).port), send);
      if (run === 4) expect(writes).toBe(1); // BEGIN, the check, the insert and COMMIT in one write
      const task = data<Record<string, unknown>>(value);
      const read = await api.request(`query($id: ID!) { node(id: $id) { ... on Task { ${shown} } } }`, { token: a.members.MEMBER.token, variables: { id: task.id } });
      expect(task).toEqual(read.body.data!.node);
      expect(task).toMatchObject({ input: { run }, output: null });
    }
    expect((await db.owner<{ n: number }[]>`select count(*)::int as n from app.tasks where title = 'groups'`)[0]!.n).toBe(4);
  });

  it('every field, through a fragment, an inline fragment and an alias: the same values a read of the row gives', async () => {
    const fields = 'id title status tokens createdAt updatedAt input output session { id } createdBy { id } assignee { id }';
    const written = data<Record<string, unknown>>(
      await api.request(
        `mutation($s: ID!) { createTask(input: { sessionId: $s, title: "all", input: { step: 1 } }) { task { ...Shown } } }
         fragment Shown on Task { id title ... on Task { status tokens when: createdAt updatedAt } input output session { id } createdBy { id } assignee { id } }`,
        { token: a.members.MEMBER.token, variables: { s: sessionId } },
      ),
    );
    const returning = lastInsert().split('returning')[1]!;
    for (const column of ['created_at', 'input', 'created_by']) expect(returning).toContain(column);
    const read = await api.request(`query($id: ID!) { node(id: $id) { ... on Task { ${fields} } } }`, { token: a.members.MEMBER.token, variables: { id: written.id } });
    expect(read.body.errors).toBeUndefined();
    const row = read.body.data!.node as Record<string, unknown>;
    const { when, ...rest } = written;
    expect({ ...rest, createdAt: when }).toEqual(row);
    expect(row).toMatchObject({ title: 'all', status: 'PENDING', input: { step: 1 }, output: null, assignee: null });
    expect(row.createdBy).not.toBeNull();
  });
});
