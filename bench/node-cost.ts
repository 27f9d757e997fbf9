// `npm run bench:node-cost`: the Node CPU of a request, layer by layer, in one
// process (no HTTP, no load generator on the same cores): each layer runs
// Q1 and Q2 against the same database with CONCURRENCY requests in flight,
// and the process's CPU (user + system) per request is printed, the layers
// interleaved round by round (median of the rounds).
//
//   raw          the true limit's transaction: reserve, BEGIN, the request
//                check, the case's statements (bench/reference.ts), COMMIT, in one write
//   transaction  the same statements through src/db/tenant-transaction.ts
//                (commitEarly, the read budget, the deadline): its bookkeeping
//   pipeline     the service's pipeline.execute (http/pipeline.ts) for the case's
//                GraphQL document, credentials checked before (as the POST path
//                does): documents, execution, scope-auth, the transaction, the answer
//   guarded      the same with the fair-share guard (rate limits, lanes) as main.ts builds it
//
// The PostgreSQL side is the same in raw and transaction (the same statements); pipeline sends the service's own.
// The tenants are on the enterprise plan: a guarded run past its request rate (a refusal) stops the tool with the answer.
// Settings: NODE_COST_N (3000) requests a layer and round, NODE_COST_ROUNDS (5), NODE_COST_CONCURRENCY (16),
// NODE_COST_LAYERS (raw,transaction,pipeline,guarded), NODE_COST_CASES (Q1,Q2).
import { pino } from 'pino';
import { createTokenVerifier } from '../src/auth/tokens.ts';
import { loadConfig } from '../src/config.ts';
import { createPool, type Sql } from '../src/db/pool.ts';
import { TenantTransaction } from '../src/db/tenant-transaction.ts';
import type { Pipeline } from '../src/http/pipeline.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createApp } from '../src/server.ts';
import { createFairShareGuard } from '../src/tenancy/fair-share.ts';
import { BENCH_TOKEN_SETTINGS, seedCostTenants, startDatabase, stopAll, tokens as sign, type CostPrincipal } from './harness.ts';
import { median, QUERIES, requestCheck, statements, type Body, type Claims, type Kind } from './reference.ts';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const N = env('NODE_COST_N', 3000);
const ROUNDS = env('NODE_COST_ROUNDS', 5);
const CONCURRENCY = env('NODE_COST_CONCURRENCY', 16);
const LAYERS = (process.env.NODE_COST_LAYERS ?? 'raw,transaction,pipeline,guarded').split(',');
const CASES = (process.env.NODE_COST_CASES ?? 'Q1,Q2').split(',') as Kind[];
const TENANTS = 20;

type Principal = CostPrincipal & { token: string };

const db = await startDatabase();
const config = loadConfig({ NODE_ENV: 'production', DATABASE_URL: db.appUrl, JWT_SECRET: BENCH_TOKEN_SETTINGS.secret });
const sql: Sql = createPool(db.appUrl, { max: config.dbPoolMax, prepare: true });
const guardSql: Sql = createPool(db.appUrl, { max: 1, prepare: true, applicationName: 'tenancy-fair-share' });
try {
  const principals = await seed();
  const fairShare = createFairShareGuard(guardSql, config.fairShare);
  const build = (guarded: boolean) =>
    createApp({
      config,
      sql,
      verifyToken: createTokenVerifier(BENCH_TOKEN_SETTINGS),
      log: pino({ level: 'warn' }),
      guards: guarded ? [fairShare] : [],
      fairShareLanes: guarded ? fairShare.lanes : undefined,
    }).pipeline;
  const pipelines = { pipeline: build(false), guarded: build(true) };

  const layer = (name: string, kind: Kind): ((p: Principal) => Promise<void>) => {
    if (name === 'raw') return (p) => raw(kind, p);
    if (name === 'transaction') return (p) => transaction(kind, p);
    return (p) => request(pipelines[name as keyof typeof pipelines], kind, p);
  };
  const results = new Map<string, number[]>();
  for (let round = 0; round <= ROUNDS; round++) {
    for (const kind of CASES) {
      for (const name of LAYERS) {
        const us = await measure(layer(name, kind), principals);
        if (round > 0) results.set(`${kind} ${name}`, [...(results.get(`${kind} ${name}`) ?? []), us]); // round 0 warms up
      }
    }
  }
  process.stdout.write(`\nNode CPU per request, in process, ${CONCURRENCY} in flight, ${N} a layer and round (median of ${ROUNDS} rounds; the rounds in brackets)\n\n`);
  process.stdout.write('| case | layer | µs | over the layer above |\n| --- | --- | --- | --- |\n');
  for (const kind of CASES) {
    let above: number | undefined;
    for (const name of LAYERS) {
      const rounds = results.get(`${kind} ${name}`)!;
      const us = median(rounds);
      process.stdout.write(`| ${kind} | ${name} | ${us.toFixed(0)} (${rounds.map((r) => r.toFixed(0)).join(', ')}) | ${above === undefined ? '' : `${us >= above ? '+' : ''}${(us - above).toFixed(0)}`} |\n`);
      above = us;
    }
  }
  await fairShare.close();
} finally {
  await guardSql.end();
  await sql.end();
  await stopAll(db);
}

/** CPU µs of this process per call of `send`, CONCURRENCY calls in flight at a time, N in all. */
async function measure(send: (p: Principal) => Promise<void>, principals: Principal[]): Promise<number> {
  let next = 0;
  const worker = async () => {
    while (next < N) await send(principals[next++ % principals.length]!);
  };
  const before = process.cpuUsage();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / N;
}

function claimsOf(p: Principal): Claims {
  return { sub: p.userId, tid: p.tenantId, role: 'ADMIN' };
}

function bodyOf(kind: Kind, p: Principal): Body {
  return kind === 'Q2' ? { variables: { id: encodeGlobalId('Session', p.readSession) } } : {};
}

async function raw(kind: Kind, p: Principal): Promise<void> {
  const tx = await sql.reserve();
  try {
    await Promise.all([tx`begin`, requestCheck(tx, claimsOf(p)), ...statements(kind, tx, bodyOf(kind, p)), tx`commit`]);
  } finally {
    tx.release();
  }
}

async function transaction(kind: Kind, p: Principal): Promise<void> {
  const selection = { credentials: { kind: 'user' as const, userId: p.userId, roleCap: 'ADMIN' as const }, tenant: p.tenantId, tokenTenant: p.tenantId, allowedSlugs: undefined };
  const tenantTx = new TenantTransaction(sql, selection, { readBytes: config.http.maxResponseBytes, requestId: 'cost', commitEarly: true });
  tenantTx.start('tenant');
  try {
    // The repositories' view of the connection sends what a reserved connection sends (reference.ts types it as one).
    await tenantTx.run((tx) => Promise.all(statements(kind, tx as never, bodyOf(kind, p))));
    await tenantTx.end(true);
  } finally {
    await tenantTx.end(false); // a no-op once committed
  }
}

async function request(pipeline: Pipeline, kind: Kind, p: Principal): Promise<void> {
  const headers = { get: (name: string) => (name === 'authorization' ? `Bearer ${p.token}` : null) };
  const credentials = await pipeline.credentials(headers);
  const response = await pipeline.execute({ params: { query: QUERIES[kind], ...bodyOf(kind, p) }, headers, readOnly: false, requestId: 'cost', state: {}, credentials });
  if (response.status !== 200 || response.errors) throw new Error(`${kind}: ${response.json.slice(0, 300)}`);
}

async function seed(): Promise<Principal[]> {
  const rows = await seedCostTenants(db, TENANTS);
  const signed = await sign(rows.map((p) => ({ ...p, role: 'ADMIN' as const })));
  return rows.map((p, i) => ({ ...p, token: signed[i]! }));
}
