// The "physical limit": the same work as the service without GraphQL.
// node:http, jose verification on every request, postgres.js begin with
// set_config and the same SQL pipelined, JSON out. POST /Q1, /Q2, /M1 take the
// service's request bodies (GraphQL variables are read, the query ignored).
import { createServer, type IncomingMessage } from 'node:http';
import { jwtVerify } from 'jose';
import postgres from 'postgres';

const secret = new TextEncoder().encode(process.env.JWT_SECRET);
const sql = postgres(process.env.DATABASE_APP_URL!, { max: Number(process.env.DB_POOL_MAX ?? 10), prepare: true, onnotice: () => {} });
const globalId = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString('base64url');
const uuidOf = (id: string) => Buffer.from(id, 'base64url').toString('utf8').split(':')[1]!;

type Claims = { sub: string; tid: string; role: string };
type Body = { variables?: Record<string, string> };

async function handle(path: string, claims: Claims, body: Body): Promise<unknown> {
  const settings = (tx: postgres.TransactionSql) => tx`
    select set_config('app.tenant_id', ${claims.tid}, true), set_config('app.user_id', ${claims.sub}, true),
           set_config('app.role', ${claims.role}, true)`;
  if (path === '/Q1') {
    const [, agents] = await sql.begin((tx) => [
      settings(tx),
      tx<{ id: string; name: string; kind: string }[]>`select id, name, kind from app.agents order by created_at, id limit 21`,
    ]);
    return { data: { agents: { edges: agents.slice(0, 20).map((a) => ({ node: { id: globalId('Agent', a.id), name: a.name, kind: a.kind } })) } } };
  }
  if (path === '/Q2') {
    const id = uuidOf(body.variables!.id!);
    const [, [session], [agent], tasks] = await sql.begin((tx) => [
      settings(tx),
      tx<{ id: string; status: string }[]>`select id, status from app.sessions where id = ${id}`,
      tx<{ id: string; name: string }[]>`
        select a.id, a.name from app.agents a join app.sessions s on s.tenant_id = a.tenant_id and s.agent_id = a.id where s.id = ${id}`,
      tx<{ id: string; title: string; status: string; tokens: string }[]>`
        select id, title, status, tokens from app.tasks where session_id = ${id} order by created_at, id limit 11`,
    ]);
    if (!session || !agent) return { data: { session: null } };
    return {
      data: {
        session: {
          id: globalId('Session', session.id),
          status: session.status.toUpperCase(),
          agent: { id: globalId('Agent', agent.id), name: agent.name },
          tasks: {
            edges: tasks.slice(0, 10).map((t) => ({
              node: { id: globalId('Task', t.id), title: t.title, status: t.status.toUpperCase(), tokens: Number(t.tokens) },
            })),
          },
        },
      },
    };
  }
  if (path === '/M1') {
    const [, [task]] = await sql.begin((tx) => [
      settings(tx),
      tx<{ id: string; title: string; status: string }[]>`
        insert into app.tasks (tenant_id, session_id, title, created_by)
        values (app.current_tenant_id(), ${uuidOf(body.variables!.sessionId!)}, ${body.variables!.title!}, app.current_user_id())
        returning id, title, status`,
    ]);
    return { data: { createTask: { task: { id: globalId('Task', task!.id), title: task!.title, status: task!.status.toUpperCase() } } } };
  }
  throw new Error('unknown path');
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const server = createServer((req, res) => {
  void (async () => {
    try {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const { payload } = await jwtVerify(token ?? '', secret, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] });
      const body = JSON.parse(await readBody(req)) as Body;
      const result = JSON.stringify(await handle(req.url ?? '', payload as unknown as Claims, body));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(result) });
      res.end(result);
    } catch (error) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ message: (error as Error).message }] }));
    }
  })();
});
server.keepAliveTimeout = 5_000;
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => server.close(() => void sql.end().then(() => process.exit(0))));
