// A plain server: the same work as the service without GraphQL, written the
// straightforward way (the benchmark's "limit" until issue 18). node:http, jose
// verification on every request, postgres.js `sql.begin` with set_config and
// the same SQL pipelined: 3 round trips a request (BEGIN; the settings and the
// statements; COMMIT), JSON out. POST /Q1, /Q2, /M1 take the service's request
// bodies (GraphQL variables are read, the query ignored). The true limit is
// bench/limit-server.ts.
import { jwtVerify } from 'jose';
import postgres from 'postgres';
import { answer, bearer, kindOf, readBody, serve, settings, statements, type Body, type Claims } from './reference.ts';

const secret = new TextEncoder().encode(process.env.JWT_SECRET);
const sql = postgres(process.env.DATABASE_APP_URL!, { max: Number(process.env.DB_POOL_MAX ?? 10), prepare: true, onnotice: () => {} });

serve(sql, async (req) => {
  const { payload } = await jwtVerify(bearer(req), secret, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] });
  const body = JSON.parse(await readBody(req)) as Body;
  const kind = kindOf(req.url);
  const results = await sql.begin((tx) => [settings(tx, payload as unknown as Claims), ...statements(kind, tx, body)]);
  return answer(kind, results.slice(1) as postgres.Row[][]);
});
