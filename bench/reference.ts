// What the reference servers (bench/limit-server.ts, bench/plain-server.ts)
// share: the request's claims, the service's SQL for Q1, Q2 and M1 written by
// hand, and the JSON the service answers with. Every server shapes the same
// answer from the same rows, so the benchmark compares only how they get there.
import { createServer, type IncomingMessage } from 'node:http';
import type postgres from 'postgres';

export type Claims = { sub: string; tid: string; role: string };
export type Body = { variables?: Record<string, string> };
export type Kind = 'Q1' | 'Q2' | 'M1';
type Queryable = postgres.TransactionSql | postgres.ReservedSql;

/** The service's GraphQL document of each case (the references answer the same, from their hand-written SQL). */
export const QUERIES: Record<Kind, string> = {
  Q1: '{ agents(first: 20) { edges { node { id name kind } } } }',
  Q2: 'query($id: ID!) { session(id: $id) { id status agent { id name } tasks(first: 10) { edges { node { id title status tokens } } } } }',
  M1: 'mutation($sessionId: ID!, $title: String!) { createTask(input: { sessionId: $sessionId, title: $title }) { task { id title status } } }',
};

/** The middle value (the upper of the two middle ones for an even count). */
export const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const globalId = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString('base64url');
const uuidOf = (id: string) => Buffer.from(id, 'base64url').toString('utf8').split(':')[1]!;

export function kindOf(path: string | undefined): Kind {
  if (path === '/Q1' || path === '/Q2' || path === '/M1') return path.slice(1) as Kind;
  throw new Error('unknown path');
}

/** The settings every RLS policy reads, from the token's claims (no membership check: that is begin_request's work). */
export const settings = (tx: Queryable, claims: Claims) => tx`
  select set_config('app.tenant_id', ${claims.tid}, true), set_config('app.user_id', ${claims.sub}, true),
         set_config('app.role', ${claims.role}, true)`;

/** The product's request check, as the service sends it (src/db/tenant-transaction.ts): membership, role and tenant status, then the same settings. */
export const requestCheck = (tx: Queryable, claims: Claims) => tx`
  select * from app_private.begin_request(${claims.tid}::uuid, ${null}, ${claims.sub}, ${claims.role}, ${null})`;

/** The case's statements, in order; `answer` turns their results into the service's JSON. */
export function statements(kind: Kind, tx: Queryable, body: Body): postgres.PendingQuery<postgres.Row[]>[] {
  if (kind === 'Q1') return [tx`select id, name, kind from app.agents order by created_at, id limit 21`];
  if (kind === 'Q2') {
    const id = uuidOf(body.variables!.id!);
    return [
      tx`select id, status from app.sessions where id = ${id}`,
      tx`select a.id, a.name from app.agents a join app.sessions s on s.tenant_id = a.tenant_id and s.agent_id = a.id where s.id = ${id}`,
      tx`select id, title, status, tokens from app.tasks where session_id = ${id} order by created_at, id limit 11`,
    ];
  }
  return [
    tx`insert into app.tasks (tenant_id, session_id, title, created_by)
       values (app.current_tenant_id(), ${uuidOf(body.variables!.sessionId!)}, ${body.variables!.title!}, app.current_user_id())
       returning id, title, status`,
  ];
}

export function answer(kind: Kind, results: readonly postgres.Row[][]): unknown {
  if (kind === 'Q1') {
    return { data: { agents: { edges: results[0]!.slice(0, 20).map((a) => ({ node: { id: globalId('Agent', a.id as string), name: a.name as string, kind: a.kind as string } })) } } };
  }
  if (kind === 'Q2') {
    const [[session], [agent], tasks] = results as [postgres.Row[], postgres.Row[], postgres.Row[]];
    if (!session || !agent) return { data: { session: null } };
    return {
      data: {
        session: {
          id: globalId('Session', session.id as string),
          status: (session.status as string).toUpperCase(),
          agent: { id: globalId('Agent', agent.id as string), name: agent.name as string },
          tasks: {
            edges: tasks.slice(0, 10).map((t) => ({
              node: { id: globalId('Task', t.id as string), title: t.title as string, status: (t.status as string).toUpperCase(), tokens: Number(t.tokens) },
            })),
          },
        },
      },
    };
  }
  const task = results[0]![0]!;
  return { data: { createTask: { task: { id: globalId('Task', task.id as string), title: task.title as string, status: (task.status as string).toUpperCase() } } } };
}

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export const bearer = (req: IncomingMessage) => /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';

/**
 * The servers' HTTP side: `handle` answers a request with the JSON value to send (200), a failure with 500 and
 * its message; listens on PORT (stdout `ready`), and on SIGTERM closes and ends `sql`.
 */
export function serve(sql: postgres.Sql, handle: (req: IncomingMessage) => Promise<unknown>): void {
  const server = createServer((req, res) => {
    void (async () => {
      try {
        const json = JSON.stringify(await handle(req));
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
}
