// Property: for random documents built from the schema (lists with random
// page sizes, nested objects and lists, fragments), the operation cost the
// pipeline refuses by bounds what the request really caused: the rows the
// database returned and the statements sent, counted on the connection.
import fc from 'fast-check';
import {
  getNamedType,
  isLeafType,
  isNonNullType,
  isObjectType,
  parse,
  type GraphQLField,
  type GraphQLObjectType,
} from 'graphql';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { operationCost, operationDocument } from '../src/graphql/limits.ts';
import { schema } from '../src/graphql/schema.ts';
import { createTestApp, createTestTenant, insertAgents, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;
let pool: postgres.Sql;
const counted = { rows: 0, statements: 0 };

beforeAll(async () => {
  db = await useTestDatabase();
  // The request role's pool, counting every row it receives and every statement it sends.
  pool = postgres(db.appUrl, {
    max: 2,
    onnotice: () => {},
    // A connection made again (a request cut at its deadline on a loaded machine drops its connection) reads the
    // catalog's array types first: ~330 rows that no request caused (seen failing a full run at load 15-20).
    transform: { row: { from: (row: Record<string, unknown>) => (isCatalogRow(row) || counted.rows++, row) } },
    debug: (_connection, query) => {
      if (!/^\s*(begin|commit|rollback)\b/i.test(query) && !query.includes('app_private.begin_') && !query.includes('pg_catalog.pg_type')) counted.statements++;
    },
  });
  api = createTestApp(pool);
  tenant = await createTestTenant(db.owner, 'cost-co');
  const agents = await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, Array.from({ length: 12 }, (_, i) => `agent-${i}`));
  for (const [i, agentId] of agents.entries()) {
    const sessions = await db.owner<{ id: string }[]>`
      insert into app.sessions (tenant_id, agent_id, started_by)
      select ${tenant.id}, ${agentId}, ${tenant.members.ADMIN.userId} from generate_series(1, ${i % 4}) returning id`;
    for (const session of sessions) {
      await db.owner`
        insert into app.tasks (tenant_id, session_id, title)
        select ${tenant.id}, ${session.id}, 'task ' || n from generate_series(1, 3) as n`;
    }
  }
  await db.owner`
    insert into app.contexts (tenant_id, created_by, kind, title, content)
    select ${tenant.id}, ${tenant.members.ADMIN.userId}, 'note', 'note ' || n, 'text ' || n from generate_series(1, 15) as n`;
  // Both connections open (postgres.js reads the catalog's array types once per connection) before anything is counted.
  await Promise.all([1, 2].map(() => api.request('{ tenant { slug } }', { token: tenant.members.ADMIN.token })));
});

afterAll(() => pool.end({ timeout: 5 }));

/** A row of postgres.js's array-type query (oid, typarray), read once per new connection. */
const isCatalogRow = (row: Record<string, unknown>) => 'typarray' in row && 'oid' in row && Object.keys(row).length === 2;

/** Builds a selection of `type` from a stream of choices (deterministic, so fast-check can shrink it). */
function selection(type: GraphQLObjectType, choices: () => number, depth: number): string {
  const fields = Object.values(type.getFields()).filter(selectable);
  const picked = new Set<string>();
  const count = 1 + (choices() % 4);
  for (let i = 0; i < count; i++) picked.add(fields[choices() % fields.length]!.name);
  const parts: string[] = [];
  for (const name of picked) {
    const field = type.getFields()[name]!;
    const named = getNamedType(field.type);
    const args = 'first' in Object.fromEntries(field.args.map((arg) => [arg.name, arg])) ? `(first: ${choices() % 12})` : '';
    if (isLeafType(named)) parts.push(name);
    else if (isObjectType(named) && depth > 0) parts.push(`${name}${args} { ${selection(named, choices, depth - 1)} }`);
    else parts.push('__typename');
  }
  // Now and then the same selection again through a fragment spread (merged by the executor).
  return choices() % 5 === 0 ? `${parts.join(' ')} ... on ${type.name} { ${parts.join(' ')} }` : parts.join(' ');
}

/** Fields a random document can select: no required arguments, nothing platform-only. */
function selectable(field: GraphQLField<unknown, unknown>): boolean {
  return !field.args.some((arg) => isNonNullType(arg.type) && arg.defaultValue === undefined) && field.extensions.platform !== true;
}

const ROOTS = ['agents', 'sessions', 'tasks', 'contexts', 'viewer', 'tenant', 'members'];

it('the cost bounds the rows and statements a request causes', async () => {
  const query = schema.getQueryType()!;
  let largest = { cost: 0, rows: 0, statements: 0 };
  await fc.assert(
    fc.asyncProperty(fc.array(fc.nat({ max: 1_000 }), { minLength: 60, maxLength: 60 }), fc.nat({ max: ROOTS.length - 1 }), async (stream, rootIndex) => {
      let at = 0;
      const choices = () => stream[at++ % stream.length]!;
      const root = query.getFields()[ROOTS[rootIndex]!];
      if (!root) return;
      const named = getNamedType(root.type) as GraphQLObjectType;
      const args = root.args.some((arg) => arg.name === 'first') ? `(first: ${choices() % 30})` : '';
      const text = `query { ${root.name}${args} { ${selection(named, choices, 4)} } }`;
      const document = parse(text);
      const cost = operationCost(schema, operationDocument(document, document.definitions[0] as never), {}) ?? 0;
      counted.rows = 0;
      counted.statements = 0;
      const response = await api.request(text, { token: tenant.members.ADMIN.token });
      if (response.body.errors?.some((error) => error.extensions?.code === 'BAD_USER_INPUT')) return; // refused: caused nothing
      expect(response.body.errors, text).toBeUndefined();
      expect(counted.rows, text).toBeLessThanOrEqual(cost + 1); // + the request check's row
      expect(counted.statements, text).toBeLessThanOrEqual(cost);
      if (counted.rows > largest.rows) largest = { cost, rows: counted.rows, statements: counted.statements };
    }),
    { numRuns: 120 },
  );
  // The generator must reach documents that read many rows, or the property says little.
  expect(largest.rows).toBeGreaterThan(20);
});
