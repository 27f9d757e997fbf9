// patches/graphql-jit+0.8.9.patch: compiled queries no longer build an
// error's locations and path for every leaf value, only for a null or an
// Error. What a client sees must not change: for values, nulls and Errors in
// non-null and nullable leaves, at the root and inside nested lists, the
// compiled query answers exactly what graphql-js answers (data, error
// messages, paths, locations).
import { execute, GraphQLInt, GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLSchema, GraphQLString, parse, type ExecutionResult, type GraphQLError } from 'graphql';
import { compileQuery, isCompiledQuery } from 'graphql-jit';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { expect, it } from 'vitest';
import { refuseWrappedInlineResolvers, schema as serviceSchema } from '../src/graphql/schema.ts';

// Leaves read plain properties (default resolvers: graphql-jit inlines them); lists nest two deep.
const inline = { jitInlineResolve: true };
const leaves = {
  name: { type: new GraphQLNonNull(GraphQLString) },
  count: { type: GraphQLInt },
  missing: { type: new GraphQLNonNull(GraphQLString) },
  missingOrNull: { type: GraphQLString },
  failing: { type: new GraphQLNonNull(GraphQLString) },
  failingOrNull: { type: GraphQLString },
  tags: { type: new GraphQLList(new GraphQLNonNull(GraphQLString)) },
  labels: { type: new GraphQLList(GraphQLString) },
  // Resolvers compiled queries call in place (extensions.jitInlineResolve, as a node's id is).
  inlineName: { type: new GraphQLNonNull(GraphQLString), extensions: inline, resolve: (parent: { name: string }) => `inline ${parent.name}` },
  inlineThrows: { type: new GraphQLNonNull(GraphQLString), extensions: inline, resolve: (parent: { name: string }) => { throw new Error(`${parent.name} threw`); } },
  inlineNullable: { type: GraphQLString, extensions: inline, resolve: () => { throw new Error('threw, nullable'); } },
  inlinePromise: { type: new GraphQLNonNull(GraphQLString), extensions: inline, resolve: (parent: { name: string }) => Promise.resolve(`later ${parent.name}`) },
};
const Cell = new GraphQLObjectType({ name: 'Cell', fields: leaves });
const Row = new GraphQLObjectType({ name: 'Row', fields: { ...leaves, cells: { type: new GraphQLNonNull(new GraphQLList(new GraphQLNonNull(Cell))) } } });
const Query = new GraphQLObjectType({ name: 'Query', fields: { ...leaves, rows: { type: new GraphQLNonNull(new GraphQLList(new GraphQLNonNull(Row))) } } });
const schema = new GraphQLSchema({ query: Query });

const node = (name: string, i: number) => ({ name, count: i, missing: null, missingOrNull: null, failing: new Error(`${name} failed`), failingOrNull: new Error(`${name} failed too`), tags: ['a', null, 'c'], labels: ['x', null, new Error('no label')] });
const root = {
  ...node('root', 0),
  rows: [0, 1].map((r) => ({ ...node(`row ${r}`, r), cells: [0, 1].map((c) => node(`cell ${r}.${c}`, c)) })),
};

/** A result as plain JSON: the data, and the errors by message, path and locations (in one order: the two executors order them differently). */
function plain(result: ExecutionResult): unknown {
  const errors = result.errors?.map((error: GraphQLError) => JSON.stringify({ message: error.message, path: error.path, locations: error.locations })).sort();
  return JSON.parse(JSON.stringify({ data: result.data, errors: errors?.map((error) => JSON.parse(error) as unknown) }));
}

async function both(query: string): Promise<[unknown, unknown]> {
  const document = parse(query);
  const compiled = compileQuery(schema, document, undefined, { disablingCapturingStackErrors: true });
  if (!isCompiledQuery(compiled)) throw new Error('did not compile');
  return [plain(await compiled.query(root, {}, {})), plain(await execute({ schema, document, rootValue: root, contextValue: {} }))];
}

it('is the patched graphql-jit that runs (the runtime has the patched leaf functions)', () => {
  // Its ES module entry imports the CommonJS build, so that is what runs; both builds carry the patch.
  const dist = createRequire(import.meta.url).resolve('graphql-jit').replace(/index\.js$/, '');
  for (const file of ['runtime.js', 'runtime.mjs', 'execution.js', 'execution.mjs']) expect(readFileSync(dist + file, 'utf8'), file).toContain('tenancy patch');
});

it('answers values in leaves at every depth as graphql-js does', async () => {
  const [jit, js] = await both('{ name count rows { name count cells { name count } } }');
  expect(jit).toEqual(js);
  expect(jit).toMatchObject({ data: { name: 'root', rows: [{ name: 'row 0', cells: [{ name: 'cell 0.0' }, { name: 'cell 0.1' }] }, { name: 'row 1' }] } });
});

it('answers a null in a non-null leaf as graphql-js does: the error names the path, with list indexes, and the location', async () => {
  const [jit, js] = await both('{ rows { cells { name missing } } }');
  expect(jit).toEqual(js);
  expect((jit as { errors: { path: unknown[] }[] }).errors[0]!.path).toEqual(['rows', 0, 'cells', 0, 'missing']);
});

it('answers an Error in a leaf, non-null and nullable, as graphql-js does', async () => {
  for (const query of ['{ rows { cells { failing } } }', '{ rows { cells { failingOrNull } } }', '{ failing }', '{ rows { failingOrNull name } }']) {
    const [jit, js] = await both(query);
    expect(jit, query).toEqual(js);
    expect((jit as { errors?: unknown[] }).errors?.length, query).toBeGreaterThan(0);
  }
});

it('answers lists of leaves with nulls and Errors as graphql-js does (the leaf path names the item)', async () => {
  for (const query of ['{ tags }', '{ rows { labels cells { tags } } }']) {
    const [jit, js] = await both(query);
    expect(jit, query).toEqual(js);
    expect((jit as { errors?: unknown[] }).errors?.length, query).toBeGreaterThan(0);
  }
});

it('calls a jitInlineResolve resolver in place with the answers of graphql-js: a value, a throw (the field\'s error), a promise', async () => {
  const source = (compileQuery(schema, parse('{ rows { cells { inlineName name } } }'), undefined, { debug: true } as never) as { __DO_NOT_USE_THIS_OR_YOU_WILL_BE_FIRED_compilation: string }).__DO_NOT_USE_THIS_OR_YOU_WILL_BE_FIRED_compilation;
  expect(source).toContain('inlined = __context.resolvers.CellinlineNameResolver('); // in place: no resolve info built
  expect(source).not.toContain('inlineName_cells'); // the resolve info of the inlined field is never made
  const [values, valuesJs] = await both('{ inlineName rows { inlineName cells { inlineName inlinePromise } } }');
  expect(values).toEqual(valuesJs);
  expect(values).toMatchObject({ data: { inlineName: 'inline root', rows: [{ cells: [{ inlineName: 'inline cell 0.0', inlinePromise: 'later cell 0.0' }, {}] }, {}] } });
  for (const query of ['{ rows { cells { inlineThrows } } }', '{ rows { name inlineNullable } }', '{ inlineThrows }']) {
    const [jit, js] = await both(query);
    expect(jit, query).toEqual(js);
    expect((jit as { errors?: unknown[] }).errors?.length, query).toBeGreaterThan(0);
  }
});

it('answers a null in a nullable leaf as graphql-js does: null, no error', async () => {
  const [jit, js] = await both('{ rows { cells { missingOrNull name } } }');
  expect(jit).toEqual(js);
  expect(jit).not.toHaveProperty('errors');
});

it('refuses at start-up a jitInlineResolve mark on a resolver a plugin wrapped (the in-place call passes no info); the service schema passes', () => {
  expect(() => refuseWrappedInlineResolvers(serviceSchema)).not.toThrow();
  const marked = (wrapped: boolean) =>
    new GraphQLSchema({
      query: new GraphQLObjectType({
        name: 'Query',
        fields: { id: { type: GraphQLString, resolve: () => 'x', extensions: { jitInlineResolve: true, pothosResolveWrapped: wrapped } } },
      }),
    });
  expect(() => refuseWrappedInlineResolvers(marked(false))).not.toThrow();
  expect(() => refuseWrappedInlineResolvers(marked(true))).toThrow(/Query\.id is marked jitInlineResolve but its resolver is wrapped/);
});
