// The operator CLI against a given DATABASE_URL: every command prints JSON,
// errors are JSON on stderr with a non-zero exit, and its tokens work.
import { beforeAll, expect, it } from 'vitest';
import { codes, createTestApp, TEST_TOKENS, type TestApp } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { runCli } from './helpers/process.ts';

let db: TestDatabase;
let api: TestApp;
let env: Record<string, string>;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(2));
  env = { DATABASE_URL: db.ownerUrl, DATABASE_APP_URL: db.appUrl, JWT_SECRET: TEST_TOKENS.secret! };
});

it('migrates (idempotently)', async () => {
  const result = await runCli(['migrate'], env);
  expect(result.code).toBe(0);
  expect(result.json).toEqual({ migrated: true });
});

it('creates a tenant, a user and a membership, and signs a token that works', async () => {
  const tenant = await runCli(['tenant', 'create', '--slug', 'cli-co', '--name', 'CLI Co'], env);
  expect(tenant.code).toBe(0);
  expect(tenant.json).toMatchObject({ slug: 'cli-co', name: 'CLI Co', status: 'active' });

  const user = await runCli(['user', 'create', '--email', 'ops@cli.test', '--name', 'Ops'], env);
  expect(user.json).toMatchObject({ email: 'ops@cli.test', displayName: 'Ops' });

  const member = await runCli(['member', 'add', '--tenant', 'cli-co', '--user', 'ops@cli.test', '--role', 'lead'], env);
  expect(member.json).toMatchObject({ role: 'LEAD', tenant: 'cli-co', email: 'ops@cli.test' });

  const listed = await runCli(['tenant', 'list'], env);
  expect((listed.json as { slug: string }[]).map((t) => t.slug)).toEqual(['cli-co']);

  const token = await runCli(['token', '--tenant', 'cli-co', '--user', 'ops@cli.test', '--ttl', '10m'], env);
  expect(token.code).toBe(0);
  const { body } = await api.request('{ viewer { role user { email } } tenant { slug } }', { token: (token.json as { token: string }).token });
  expect(body).toEqual({ data: { viewer: { role: 'LEAD', user: { email: 'ops@cli.test' } }, tenant: { slug: 'cli-co' } } });

  const capped = await runCli(['token', '--tenant', 'cli-co', '--user', 'ops@cli.test', '--role', 'VIEWER'], env);
  const write = await api.request('mutation { createAgent(input: { name: "x", kind: "assistant" }) { agent { id } } }', {
    token: (capped.json as { token: string }).token,
  });
  expect(codes(write)).toEqual(['FORBIDDEN']);
});

it('reports operator errors as JSON on stderr with exit 1', async () => {
  await runCli(['tenant', 'create', '--slug', 'cli-dup', '--name', 'Dup'], env);
  const duplicate = await runCli(['tenant', 'create', '--slug', 'cli-dup', '--name', 'Dup'], env);
  expect(duplicate.code).toBe(1);
  expect(duplicate.json).toEqual({ error: 'a tenant with slug "cli-dup" already exists' });

  const badSlug = await runCli(['tenant', 'create', '--slug', 'Not A Slug', '--name', 'Bad'], env);
  expect(badSlug.code).toBe(1);
  expect((badSlug.json as { error: string }).error).toMatch(/tenants_slug_format/);

  const stranger = await runCli(['token', '--tenant', 'cli-dup', '--user', 'ops@cli.test'], env);
  expect(stranger.code).toBe(1);
  expect(stranger.json).toEqual({ error: 'ops@cli.test is not a member of cli-dup' });

  const nobody = await runCli(['member', 'add', '--tenant', 'cli-dup', '--user', 'nobody@cli.test', '--role', 'ADMIN'], env);
  expect(nobody.json).toEqual({ error: 'no user "nobody@cli.test"' });
});

it('reports usage errors with exit 2', async () => {
  for (const args of [[], ['bogus'], ['tenant', 'create', '--slug', 'x'], ['member', 'add', '--tenant', 'a', '--user', 'b', '--role', 'OWNER'], ['token', '--tenant', 'cli-co', '--user', 'ops@cli.test', '--ttl', 'forever']]) {
    const result = await runCli(args, env);
    expect(result.code, args.join(' ')).toBe(2);
    expect(result.stderr).toContain('usage: tenancy');
  }
});

it('grants the operator capability (audited), signs a token without a tenant for it, and revokes it', async () => {
  await runCli(['tenant', 'create', '--slug', 'cli-paid', '--name', 'Paid', '--plan', 'team'], env);
  await runCli(['user', 'create', '--email', 'root@cli.test'], env);
  const granted = await runCli(['operator', 'grant', '--user', 'root@cli.test', '--reason', 'on call'], env);
  expect(granted.code).toBe(0);
  expect(granted.json).toMatchObject({ email: 'root@cli.test', operator: true });

  const token = (await runCli(['token', '--user', 'root@cli.test'], env)).json as { token: string; tenant: string | null };
  expect(token.tenant).toBeNull();
  const QUERY = '{ platformTenants(status: ACTIVE) { edges { node { slug plan } } } }';
  const listed = await api.request(QUERY, { token: token.token });
  expect((listed.body.data as { platformTenants: { edges: { node: { slug: string; plan: string } }[] } }).platformTenants.edges).toContainEqual({
    node: { slug: 'cli-paid', plan: 'TEAM' },
  });

  expect((await runCli(['operator', 'revoke', '--user', 'root@cli.test'], env)).json).toMatchObject({ operator: false });
  expect(codes(await api.request(QUERY, { token: token.token }))).toEqual(['FORBIDDEN']);
  const audit = await db.owner`select action, reason from app_private.operator_audit_events where details->>'email' = 'root@cli.test' order by id`;
  expect(audit).toEqual([
    { action: 'operator.grant', reason: 'on call' },
    { action: 'operator.revoke', reason: null },
  ]);
  expect((await runCli(['tenant', 'create', '--slug', 'cli-x', '--name', 'X', '--plan', 'gold'], env)).code).toBe(2);
});
