// The operator CLI against a given DATABASE_URL: every command prints JSON,
// errors are JSON on stderr with a non-zero exit, and its tokens work.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { codes, createTestApp, TEST_TOKENS, type TestApp } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { addMember, createTenant, createUser } from '../src/operator/repo.ts';
import { ROOT, runCli } from './helpers/process.ts';

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

  // A value it can judge itself is a usage error that says what is allowed (not a constraint name).
  const badSlug = await runCli(['tenant', 'create', '--slug', 'Not A Slug', '--name', 'Bad'], env);
  expect(badSlug.code).toBe(2);
  expect(badSlug.json).toEqual({
    error: '--slug must be 3 to 63 lowercase letters, digits or -, starting with a letter and ending with a letter or digit (got "Not A Slug")',
  });
  const badEmail = await runCli(['user', 'create', '--email', 'not an email'], env);
  expect(badEmail.code).toBe(2);
  expect((badEmail.json as { error: string }).error).toBe('--email must be an email address, name@domain, at most 320 characters (got "not an email")');

  const stranger = await runCli(['token', '--tenant', 'cli-dup', '--user', 'ops@cli.test'], env);
  expect(stranger.code).toBe(1);
  expect(stranger.json).toEqual({ error: 'ops@cli.test is not a member of cli-dup' });

  const nobody = await runCli(['member', 'add', '--tenant', 'cli-dup', '--user', 'nobody@cli.test', '--role', 'ADMIN'], env);
  expect(nobody.json).toEqual({ error: 'no user "nobody@cli.test"' });
});

it('reports usage errors with exit 2, the error and the usage of the command', async () => {
  const cases: [string[], string, string][] = [
    [[], 'no command', 'usage: tenancy <command>'],
    [['bogus'], 'unknown command "bogus"', 'usage: tenancy <command>'],
    [['tenant', 'bogus'], 'unknown command "tenant bogus"', 'tenancy tenant suspend --tenant <slug|id>'],
    [['tenant', 'create', '--slug', 'x'], 'tenant create needs --name', 'tenancy tenant create --slug <slug> --name <name>'],
    [['tenant', 'create', '--slug'], '--slug needs a value', 'tenancy tenant create --slug <slug>'],
    [['tenant', 'list', '--help-me'], 'unknown option --help-me', 'tenancy tenant list'],
    [['tenant', 'list', '--slug', 'a'], 'tenant list takes no --slug', 'tenancy tenant list'],
    [['member', 'add', '--tenant', 'a', '--user', 'b', '--role', 'OWNER'], '--role must be ADMIN, LEAD, MEMBER, VIEWER (got "OWNER")', 'tenancy member add'],
    [['token', '--tenant', 'cli-co', '--user', 'ops@cli.test', '--ttl', 'forever'], '--ttl is a number and a unit: 30s, 15m, 1h, 7d, 2w (got "forever")', 'tenancy token'],
    [['token', '--user', 'ops@cli.test', '--role', 'VIEWER'], '--role needs --tenant: a token without a tenant carries no role', 'tenancy token'],
    [['tenant', 'create', '--slug', 'ok-slug', '--name', 'Ok', '--plan', 'gold'], '--plan must be free, team, enterprise (got "gold")', 'tenancy tenant create'],
  ];
  // None of these opens the database: they run side by side.
  const results = await Promise.all(cases.map(([args]) => runCli(args, env)));
  for (const [index, [args, error, usage]] of cases.entries()) {
    const result = results[index]!;
    expect(result.code, args.join(' ')).toBe(2);
    expect(result.json, args.join(' ')).toEqual({ error });
    expect(result.stderr, args.join(' ')).toContain(usage);
    expect(result.stdout).toBe('');
  }
});

it('prints usage for --help, -h and help, on stdout with exit 0, for everything, a group or one command', async () => {
  const everything = await runCli(['--help'], env);
  expect(everything.code).toBe(0);
  for (const command of ['migrate', 'tenant create', 'tenant list', 'tenant suspend', 'tenant reactivate', 'user create', 'member add', 'member list', 'member remove', 'key list', 'key revoke', 'usage', 'token', 'operator grant', 'operator revoke']) {
    expect(everything.stdout).toContain(`  tenancy ${command}`);
  }
  const asked: [string[], string][] = [
    [['member', '--help'], 'tenancy member list --tenant <slug|id>'],
    [['help', 'member'], 'tenancy member remove --tenant <slug|id> --user <email|id>'],
    [['member', 'remove', '-h'], 'tenancy member remove --tenant <slug|id> --user <email|id>'],
    [['key', 'revoke', '--help', '--tenant', 'x'], 'tenancy key revoke --tenant <slug|id> --key <id|prefix>'],
  ];
  const results = await Promise.all(asked.map(([args]) => runCli(args, env)));
  for (const [index, [args, usage]] of asked.entries()) {
    expect(results[index]!.code, args.join(' ')).toBe(0);
    expect(results[index]!.stdout, args.join(' ')).toContain(usage);
    expect(results[index]!.stdout).not.toContain('tenancy tenant create');
  }
  expect((await runCli(['token', '--help'], env)).stdout).toContain('--role can only lower');
});

it("the README's CLI reference lists every command --help lists; the audit commands answer --help with 0 and an unknown option with 2", async () => {
  const everything = await runCli(['--help'], env);
  const listed = [...everything.stdout.matchAll(/^ {2}tenancy ([a-z][a-z-]*(?: [a-z][a-z-]*)?)(?= |$)/gm)].map((match) => match[1]!).sort();
  expect(listed).toEqual(expect.arrayContaining(['audit verify', 'audit export', 'audit checkpoint', 'audit retention', 'platform-audit verify', 'platform-audit export']));
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const reference = /\n## Operator CLI\n([\s\S]*?)\n## /.exec(readme)![1]!;
  const documented = [...reference.matchAll(/^\| `([a-z][a-z-]*(?: [a-z][a-z-]*)?)` \|/gm)].map((match) => match[1]!).sort();
  expect(documented).toEqual(listed);

  const audit = listed.filter((command) => command.includes('audit'));
  const [helps, unknown] = await Promise.all([
    Promise.all(audit.map((command) => runCli([...command.split(' '), '--help'], env))),
    Promise.all(audit.map((command) => runCli([...command.split(' '), '--no-such-option'], env))),
  ]);
  for (const [index, command] of audit.entries()) {
    expect(helps[index]!.code, command).toBe(0);
    expect(helps[index]!.stdout, command).toContain(`tenancy ${command}`);
    expect(unknown[index]!.code, command).toBe(2);
    expect(unknown[index]!.json, command).toEqual({ error: 'unknown option --no-such-option' });
    expect(unknown[index]!.stderr, command).toContain(`tenancy ${command}`);
  }
});

it('refuses a token role above the membership instead of signing one that acts lower', async () => {
  const [tenant] = await db.owner<{ id: string }[]>`select id from app.tenants where slug = 'cli-co'`;
  await addMember(db.owner, tenant!.id, (await createUser(db.owner, 'watcher@cli.test', 'Watcher')).id, 'VIEWER');
  const raised = await runCli(['token', '--tenant', 'cli-co', '--user', 'watcher@cli.test', '--role', 'ADMIN'], env);
  expect(raised.code).toBe(1);
  expect(raised.json).toEqual({ error: "watcher@cli.test is VIEWER in cli-co: a token's --role can only lower that (VIEWER), not raise it to ADMIN" });
  const same = await runCli(['token', '--tenant', 'cli-co', '--user', 'watcher@cli.test', '--role', 'viewer'], env);
  expect(same.code).toBe(0);
  expect(same.json).toMatchObject({ role: 'VIEWER', tenant: 'cli-co' });
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
    { action: 'user.create', reason: null },
    { action: 'operator.grant', reason: 'on call' },
    { action: 'operator.revoke', reason: null },
  ]);
});

it('suspends and reactivates a tenant (audited): its members are refused, then served again', async () => {
  const admin = await runCli(['token', '--tenant', 'cli-co', '--user', 'ops@cli.test'], env);
  const token = (admin.json as { token: string }).token;
  const suspended = await runCli(['tenant', 'suspend', '--tenant', 'cli-co', '--reason', 'unpaid invoice'], env);
  expect(suspended.code).toBe(0);
  expect(suspended.json).toMatchObject({ slug: 'cli-co', status: 'suspended', suspendedReason: 'unpaid invoice' });
  expect(codes(await api.request('{ tenant { slug } }', { token }))).toEqual(['TENANT_SUSPENDED']);
  const again = await runCli(['tenant', 'suspend', '--tenant', 'cli-co'], env);
  expect(again).toMatchObject({ code: 1, json: { error: 'cli-co is already suspended' } });

  const reactivated = await runCli(['tenant', 'reactivate', '--tenant', 'cli-co'], env);
  expect(reactivated.json).toMatchObject({ slug: 'cli-co', status: 'active', suspendedAt: null });
  expect((await api.request('{ tenant { slug } }', { token })).body).toEqual({ data: { tenant: { slug: 'cli-co' } } });

  const operatorLog = await db.owner`
    select e.action, e.reason from app_private.operator_audit_events e join app.tenants t on t.id = e.target_tenant_id
    where t.slug = 'cli-co' order by e.id`;
  expect(operatorLog).toEqual([
    { action: 'tenant.create', reason: null }, // by the CLI, too
    { action: 'member.add', reason: null },
    { action: 'tenant.suspend', reason: 'unpaid invoice' },
    { action: 'tenant.reactivate', reason: null },
  ]);
  const tenantLog = await db.owner`
    select a.action, a.actor_kind from app.audit_events a join app.tenants t on t.id = a.tenant_id
    where t.slug = 'cli-co' and a.action like 'tenant.%' order by a.occurred_at, a.action desc`;
  expect(tenantLog).toEqual([
    { action: 'tenant.create', actor_kind: 'operator' },
    { action: 'tenant.suspend', actor_kind: 'operator' },
    { action: 'tenant.reactivate', actor_kind: 'operator' },
  ]);
});

it('lists and removes members, keeping a tenant\'s last ADMIN', async () => {
  const team = await createTenant(db.owner, 'cli-team', 'Team');
  for (const [email, role] of [['boss@cli.test', 'ADMIN'], ['dev@cli.test', 'MEMBER']] as const) {
    await addMember(db.owner, team.id, (await createUser(db.owner, email, email.split('@')[0]!)).id, role);
  }
  const listed = await runCli(['member', 'list', '--tenant', 'cli-team'], env);
  expect((listed.json as { email: string; role: string }[]).map(({ email, role }) => ({ email, role }))).toEqual([
    { email: 'boss@cli.test', role: 'ADMIN' },
    { email: 'dev@cli.test', role: 'MEMBER' },
  ]);

  expect((await runCli(['member', 'remove', '--tenant', 'cli-team', '--user', 'dev@cli.test'], env)).json).toEqual({
    tenant: 'cli-team',
    email: 'dev@cli.test',
    removed: true,
  });
  expect(await runCli(['member', 'remove', '--tenant', 'cli-team', '--user', 'dev@cli.test'], env)).toMatchObject({
    code: 1,
    json: { error: 'dev@cli.test is not a member of cli-team' },
  });
  expect(await runCli(['member', 'remove', '--tenant', 'cli-team', '--user', 'boss@cli.test'], env)).toMatchObject({
    code: 1,
    json: { error: 'boss@cli.test is the last ADMIN of cli-team: make another member ADMIN first' },
  });
  expect(await runCli(['member', 'add', '--tenant', 'cli-team', '--user', 'boss@cli.test', '--role', 'VIEWER'], env)).toMatchObject({
    code: 1,
    json: { error: 'a tenant always keeps an ADMIN: make another member ADMIN first' },
  });
  expect((await runCli(['member', 'list', '--tenant', 'cli-team'], env)).json).toHaveLength(1);
});

it('lists and revokes API keys (by prefix or id), and shows a tenant\'s usage', async () => {
  const token = (await runCli(['token', '--tenant', 'cli-co', '--user', 'ops@cli.test'], env)).json as { token: string };
  const created = await api.request('mutation { createApiKey(input: { name: "ci", role: MEMBER }) { secret apiKey { prefix } } }', { token: token.token });
  const { secret, apiKey } = (created.body.data as { createApiKey: { secret: string; apiKey: { prefix: string } } }).createApiKey;
  await api.request('mutation { createApiKey(input: { name: "second", role: VIEWER }) { secret } }', { token: token.token });

  const keys = await runCli(['key', 'list', '--tenant', 'cli-co'], env);
  expect(keys.code).toBe(0);
  expect((keys.json as { name: string; prefix: string; role: string; createdBy: string; status: string }[]).map(({ name, prefix, role, createdBy, status }) => ({ name, prefix, role, createdBy, status }))).toEqual([
    { name: 'ci', prefix: apiKey.prefix, role: 'MEMBER', createdBy: 'ops@cli.test', status: 'active' },
    expect.objectContaining({ name: 'second', role: 'VIEWER', status: 'active' }),
  ]);
  expect(keys.stdout).not.toContain(secret);
  expect((await api.request('{ tenant { slug } }', { headers: { 'x-api-key': secret } })).body).toEqual({ data: { tenant: { slug: 'cli-co' } } });

  const revoked = await runCli(['key', 'revoke', '--tenant', 'cli-co', '--key', apiKey.prefix], env);
  expect(revoked.json).toMatchObject({ name: 'ci', status: 'revoked' });
  expect(codes(await api.request('{ tenant { slug } }', { headers: { 'x-api-key': secret } }))).toEqual(['UNAUTHENTICATED']);
  expect(await runCli(['key', 'revoke', '--tenant', 'cli-co', '--key', apiKey.prefix], env)).toMatchObject({
    code: 1,
    json: { error: `the API key ${apiKey.prefix} is already revoked` },
  });
  const second = (keys.json as { id: string }[])[1]!.id;
  expect((await runCli(['key', 'revoke', '--tenant', 'cli-co', '--key', second], env)).json).toMatchObject({ name: 'second', status: 'revoked' });
  expect(await runCli(['key', 'revoke', '--tenant', 'cli-team', '--key', second], env)).toMatchObject({ code: 1 });

  const usage = await runCli(['usage', '--tenant', 'cli-co'], env);
  expect(usage.code).toBe(0);
  expect(usage.json).toMatchObject({ tenant: 'cli-co', plan: 'free', status: 'active' });
  expect((usage.json as { usage: { quota: string; used: number }[] }).usage).toContainEqual(expect.objectContaining({ quota: 'members', used: 2 }));
});
