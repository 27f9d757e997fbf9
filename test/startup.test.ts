// Start-up as a user runs it: `npm start`'s entry point on an empty data
// folder boots an embedded PostgreSQL, migrates, seeds the demo, serves; the
// CLI works beside it; SIGTERM stops everything; a restart keeps the data.
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connectionUrl } from '../src/db/embedded.ts';
import { freePort } from './helpers/local.ts';
import { runCli, runScript, startServer, type ServerProcess } from './helpers/process.ts';

let dataDir: string;
let env: Record<string, string>;
let server: ServerProcess | undefined;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'tenancy-start-'));
  await chmod(dataDir, 0o755);
  env = {
    TENANCY_DATA_DIR: dataDir,
    EMBEDDED_PG_PORT: String(await freePort()),
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
  };
});

afterAll(async () => {
  if (server && server.child.exitCode === null) await server.stop();
  await rm(dataDir, { recursive: true, force: true });
});

async function graphql(url: string, token: string, query: string) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query }),
    signal: AbortSignal.timeout(30_000), // a request that hangs fails here, not at the test's timeout with nothing said
  });
  return { status: response.status, body: (await response.json()) as { data?: Record<string, unknown>; errors?: unknown[] } };
}

let adminToken: string;

it('boots on an empty data folder and serves /health, /ready, GraphiQL and GraphQL', async () => {
  server = await startServer(env);
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
  expect((await fetch(`${server.url}/ready`)).status).toBe(200);
  const page = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('Tenancy');

  // Standard output is the log here (not a terminal): the banner comes after the lines it follows from, without tokens.
  await expect.poll(() => server!.output().includes('Tenancy is running'), { timeout: 10_000 }).toBe(true);
  const output = server.output();
  expect(output.indexOf('Tenancy is running')).toBeGreaterThan(output.indexOf('"msg":"listening"'));
  expect(output.indexOf('"msg":"listening"')).toBeGreaterThan(output.indexOf('"msg":"events: listening"'));
  expect(output.indexOf('"msg":"events: listening"')).toBeGreaterThan(-1);
  expect(output).not.toMatch(/eyJ[\w-]+\.eyJ/);
  const signed = await runCli(['token', '--tenant', 'acme', '--user', 'admin@acme.example', '--ttl', '1h'], env);
  adminToken = (signed.json as { token: string }).token;
  const { body } = await graphql(server.url, adminToken, '{ tenant { slug } agents { edges { node { name } } } }');
  expect(body.errors).toBeUndefined();
  expect(body.data!.tenant).toEqual({ slug: 'acme' });
  expect((body.data!.agents as { edges: unknown[] }).edges).toHaveLength(3);

  const created = await graphql(server.url, adminToken, 'mutation { createAgent(input: { name: "survives restarts", kind: "assistant" }) { agent { name } } }');
  expect(created.body.errors).toBeUndefined();
  // Request lines are written within a second (src/logger.ts); they carry no token.
  const logLines = () => server!.output().split('\n').filter((line) => line.startsWith('{'));
  const requestLine = (line: string) => line.includes('"msg":"request"') && line.includes('"tenantId"') && line.includes('"userId"');
  await expect.poll(() => logLines().some(requestLine), { timeout: 3_000 }).toBe(true);
  expect(logLines().join('\n')).not.toContain(adminToken);
  // A first start: initdb, 20 migrations and the demo, then a CLI process: over 60 s (the default) at load 18.
}, 180_000);

it('lets the CLI work on the same embedded database while the server runs', async () => {
  const listed = await runCli(['tenant', 'list'], env);
  expect(listed.code).toBe(0);
  expect((listed.json as { slug: string }[]).map((tenant) => tenant.slug)).toEqual(['acme', 'globex']);
});

it('finishes a request in flight when SIGTERM arrives', async () => {
  // Hold the agent name in an open owner transaction, so the mutation waits on
  // the unique index: a request that is still running when the signal comes.
  const password = (await readFile(path.join(dataDir, 'pg-superuser-password'), 'utf8')).trim();
  const owner = postgres(connectionUrl('postgres', password, Number(env.EMBEDDED_PG_PORT), 'tenancy'), { max: 2, onnotice: () => {} });
  const reserved = await owner.reserve();
  const [acme] = await reserved<{ id: string }[]>`select id from app.tenants where slug = 'acme'`;
  await reserved`begin`;
  await reserved`insert into app.agents (tenant_id, name, kind) values (${acme!.id}, 'in flight', 'assistant')`;

  const pending = graphql(server!.url, adminToken, 'mutation { createAgent(input: { name: "in flight", kind: "assistant" }) { agent { name } } }');
  // The signal once the mutation waits on the index (not after a fixed 300 ms, which a loaded machine could spend
  // before the request even arrived: then it met a closed listener), the rollback once the service is draining.
  const waiting = async () => (await owner<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = 'tenancy' and wait_event_type = 'Lock'`)[0]!.n;
  await expect.poll(waiting, { timeout: 10_000, interval: 20 }).toBe(1);
  const exited = server!.stop();
  await expect.poll(() => server!.output().includes('shutting down: draining requests'), { timeout: 10_000, interval: 20 }).toBe(true);
  await reserved`rollback`; // the waiting insert goes ahead
  reserved.release();
  await owner.end();

  const response = await pending;
  expect(response.status).toBe(200);
  expect(response.body).toEqual({ data: { createAgent: { agent: { name: 'in flight' } } } });
  expect(await exited).toBe(0);
  expect(server!.output()).toContain('"msg":"stopped"');
});

it('stopped the embedded PostgreSQL it had started', () => {
  expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
});

it('lets the CLI start the embedded database itself when no server runs', async () => {
  const listed = await runCli(['tenant', 'list'], env);
  expect(listed.code).toBe(0);
  expect((listed.json as unknown[]).length).toBe(2);
  expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
});

it('restarts on the same data, without seeding the demo twice, and honours earlier tokens', async () => {
  server = await startServer(env);
  expect(server.output()).not.toContain('demo data created');
  const { body } = await graphql(server.url, adminToken, '{ agents { edges { node { name } } } }');
  expect(body.errors).toBeUndefined();
  const names = (body.data!.agents as { edges: { node: { name: string } }[] }).edges.map((edge) => edge.node.name);
  expect(names).toContain('survives restarts');
  expect(names).toHaveLength(5);
  const code = await server.stop();
  expect(code, server.output()).toBe(0);
});

it('WORKERS=2 serves from two processes on one port and stops them all cleanly', async () => {
  server = await startServer({ ...env, WORKERS: '2' });
  const { body } = await graphql(server.url, adminToken, '{ tenant { slug } }');
  expect(body).toEqual({ data: { tenant: { slug: 'acme' } } });
  const started = Date.now();
  while ((server.output().match(/"msg":"listening"/g) ?? []).length < 2 && Date.now() - started < 30_000) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const pids = new Set([...server.output().matchAll(/"pid":(\d+),"url":"[^"]+","msg":"listening"/g)].map((match) => match[1]));
  expect(pids.size).toBe(2);
  const code = await server.stop();
  expect(code, server.output()).toBe(0);
  expect(server.output().match(/"msg":"stopped"/g)?.length).toBe(3); // two workers, then the supervisor
  // Room for the helpers' own bounds (a start, a stop), which fail with the processes' output: one whole-file run in
  // four timed out at the 60 s default with nothing to say why (not reproduced in 18 rounds of start and stop since).
}, 120_000);

it('WORKERS=2: SIGTERM as soon as the first worker says listening is a drained stop too (exit 0, the embedded PostgreSQL stopped)', async () => {
  // A worker logs 'listening' itself, before the supervisor has heard from every worker: the supervisor handled the
  // signal only after that, so one sent on the first worker's line met the embedded PostgreSQL's exit hook (exit 143,
  // no drain, no 'stopped'; 3 of 3 before the fix).
  server = await startServer({ ...env, WORKERS: '2' });
  const worker = /"pid":(\d+),"url":"[^"]+","msg":"listening"/.exec(server.output())![1];
  const code = await server.stop();
  expect(code, server.output()).toBe(0);
  const stopped = [...server.output().matchAll(/"pid":(\d+),"msg":"stopped"/g)].map((match) => match[1]);
  expect(stopped, server.output()).toContain(worker);
  expect(stopped, server.output()).toContain(String(server.child.pid));
  expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
}, 120_000);

it('refuses a bad configuration with a message naming the variable', async () => {
  const result = await runScript('src/main.ts', [], { ...env, PORT: 'eighty' });
  expect(result.code).toBe(2);
  expect(result.stderr).toContain('Configuration error: PORT must be a whole number');
});
