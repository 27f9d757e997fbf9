// The limits' cost per request, in microseconds: what the pipeline adds to a
// request whose document is cached (hash lookup, operation, cost with its
// variables), and what a first sight of a document costs (size, nesting,
// parse, shape, validation). `npm run bench:limits`.
import { schema } from '../src/graphql/schema.ts';
import { createDocumentCache } from '../src/graphql/documents.ts';
import { QUERIES } from './reference.ts';
import { loadConfig } from '../src/config.ts';

const http = loadConfig({ NODE_ENV: 'test' }).http;
const documents = createDocumentCache(schema, { limits: http.limits, introspection: true, suggestions: true, cacheBytes: http.documentCacheBytes, cacheEntries: http.documentCacheEntries });

const CASES: Record<string, { query: string; variables?: Record<string, unknown> }> = {
  Q1: { query: QUERIES.Q1 },
  Q2: { query: QUERIES.Q2, variables: { id: 'U2Vzc2lvbjox' } },
  M1: { query: QUERIES.M1, variables: { sessionId: 'x', title: 't' } },
};

function time(iterations: number, run: () => void): number {
  for (let i = 0; i < Math.min(iterations, 2_000); i++) run(); // warm up
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) run();
  return Number(process.hrtime.bigint() - started) / 1e3 / iterations;
}

for (const [name, { query, variables }] of Object.entries(CASES)) {
  const found = documents.check(query);
  if ('errors' in found) throw new Error(`${name}: ${found.errors[0]!.message}`);
  documents.remember(found.key, found.checked, query);
  const cached = time(50_000, () => {
    const hit = documents.check(query);
    if ('errors' in hit) throw new Error('refused');
    documents.cost(documents.operation(hit.checked, undefined)!, variables);
  });
  let n = 0;
  const first = time(2_000, () => {
    // A new text each time (a trailing comment), as a first sight would be.
    if ('errors' in documents.check(`${query} #${n++}`)) throw new Error('refused');
  });
  console.log(`${name}: cached ${cached.toFixed(2)} us a request (hash, operation, cost); first sight ${first.toFixed(1)} us (check, parse, shape, validate)`);
}
