// Every owner-side change the CLI makes is in the platform log (actor
// cli:<OS user>), in the change's own transaction: a refused change leaves
// no record. The tenant's own log has its side (tenant.create, member.add,
// member.remove, api_key.revoke), once each.
import { userInfo } from 'node:os';
import { beforeAll, expect, it } from 'vitest';
import { newApiKey } from '../src/auth/secrets.ts';
import { TEST_TOKENS } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { runCli } from './helpers/process.ts';

let db: TestDatabase;
let env: Record<string, string>;
const actor = `cli:${userInfo().username}`;

beforeAll(async () => {
  db = await useTestDatabase();
  env = { DATABASE_URL: db.ownerUrl, DATABASE_APP_URL: db.appUrl, JWT_SECRET: TEST_TOKENS.secret! };
});

type PlatformRow = { actor: string; action: string; target_tenant_id: string | null; details: Record<string, string> };
const platformLog = () =>
  db.owner<PlatformRow[]>`select actor, action, target_tenant_id, details from app_private.operator_audit_events where actor like 'cli:%' order by seq`;
const tenantLog = (tenantId: string) =>
  db.owner<{ action: string; actor_kind: string; target_id: string }[]>`select action, actor_kind, target_id from app.audit_events where tenant_id = ${tenantId} order by seq`;

it('tenant create, user create, member add and remove, key revoke: one platform event each, by the CLI', async () => {
  const ok = async (...args: string[]) => {
    const result = await runCli(args, env);
    expect(result.code, result.stderr).toBe(0);
    return result.json as Record<string, string>;
  };
  const tenant = await ok('tenant', 'create', '--slug', 'cli-audit', '--name', 'Audited', '--plan', 'team');
  const user = await ok('user', 'create', '--email', 'owner@cli-audit.test');
  await ok('user', 'create', '--email', 'second@cli-audit.test');
  await ok('member', 'add', '--tenant', 'cli-audit', '--user', 'owner@cli-audit.test', '--role', 'admin');
  await ok('member', 'add', '--tenant', 'cli-audit', '--user', 'second@cli-audit.test', '--role', 'admin');
  await ok('member', 'remove', '--tenant', 'cli-audit', '--user', 'second@cli-audit.test');
  const key = newApiKey();
  const [row] = await db.owner<{ id: string }[]>`
    insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by) values (${tenant.id!}, 'k', ${key.prefix}, ${key.hash}, 'VIEWER', ${user.id!}) returning id`;
  await ok('key', 'revoke', '--tenant', 'cli-audit', '--key', key.prefix);

  const second = (await db.owner<{ id: string }[]>`select id from app.users where email = 'second@cli-audit.test'`)[0]!.id;
  expect(await platformLog()).toEqual([
    { actor, action: 'tenant.create', target_tenant_id: tenant.id, details: { slug: 'cli-audit', plan: 'team' } },
    { actor, action: 'user.create', target_tenant_id: null, details: { userId: user.id, email: 'owner@cli-audit.test' } },
    { actor, action: 'user.create', target_tenant_id: null, details: { userId: second, email: 'second@cli-audit.test' } },
    { actor, action: 'member.add', target_tenant_id: tenant.id, details: { userId: user.id, role: 'ADMIN' } },
    { actor, action: 'member.add', target_tenant_id: tenant.id, details: { userId: second, role: 'ADMIN' } },
    { actor, action: 'member.remove', target_tenant_id: tenant.id, details: { userId: second } },
    { actor, action: 'api_key.revoke', target_tenant_id: tenant.id, details: { apiKeyId: row!.id, prefix: key.prefix } },
  ]);
  expect(await tenantLog(tenant.id!)).toEqual([
    { action: 'tenant.create', actor_kind: 'operator', target_id: tenant.id },
    { action: 'member.add', actor_kind: 'system', target_id: user.id },
    { action: 'member.add', actor_kind: 'system', target_id: second },
    { action: 'member.remove', actor_kind: 'system', target_id: second },
    { action: 'api_key.create', actor_kind: 'system', target_id: row!.id }, // the fixture's own insert
    { action: 'api_key.revoke', actor_kind: 'system', target_id: row!.id },
  ]);
});

it('a refused change leaves no record in either log', async () => {
  const before = await platformLog();
  const duplicate = await runCli(['tenant', 'create', '--slug', 'cli-audit', '--name', 'Again'], env);
  expect(duplicate.code).toBe(1);
  const lastAdmin = await runCli(['member', 'remove', '--tenant', 'cli-audit', '--user', 'owner@cli-audit.test'], env);
  expect(lastAdmin.code).toBe(1);
  expect(lastAdmin.json).toEqual({ error: 'owner@cli-audit.test is the last ADMIN of cli-audit: make another member ADMIN first' });
  expect(await platformLog()).toEqual(before);
  const [tenant] = await db.owner<{ id: string }[]>`select id from app.tenants where slug = 'cli-audit'`;
  expect((await tenantLog(tenant!.id)).filter((event) => event.action === 'member.remove')).toHaveLength(1);
});
