// A plain server: the same work as the service without GraphQL, written the
// straightforward way (the benchmark's "limit" until issue 18). node:http, jose
// verification on every request, postgres.js `sql.begin` with set_config and
// the same SQL pipelined: 3 round trips a request (BEGIN; the settings and the
// statements; COMMIT), JSON out. POST /Q1, /Q2, /M1 take the service's request
// bodies (GraphQL variables are read, the query ignored). The true limit is
// bench/limit-server.ts.
import { createServer } from 'node:http';
import { jwtVerify } from 'jose';
import postgres from 'postgres';
import { answer, bearer, kindOf, readBody, settings, statements, type Body, type Claims } from './reference.ts';

const secret = new TextEncoder().encode(process.env.JWT_SECRET);
const sql = postgres(process.env.DATABASE_APP_URL!, { max: Number(process.env.DB_POOL_MAX ?? 10), prepare: true, onnotice: () => {} });

const server = createServer((req, res) => {
  void (async () => {
    try {
      const { payload } = await jwtVerify(bearer(req), secret, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] });
      const body = JSON.parse(await readBody(req)) as Body;
      const kind = kindOf(req.url);
      const results = await sql.begin((tx) => [settings(tx, payload as unknown as Claims), ...statements(kind, tx, body)]);
      const json = JSON.stringify(answer(kind, results.slice(1) as postgres.Row[][]));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
      res.end(json);
    } catch (error) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ message: (error as Error).message }] }));
    }
  })();
});
server.keepAliveTimeout = 5_000;
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => server.close(() => void sql.end().then(() => process.exit(0))));
