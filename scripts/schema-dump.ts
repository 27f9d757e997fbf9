// The schema of the app schemas as readable SQL, read from the catalog: what
// migrations/schema.sql holds (`npm run db:dump`; test/schema-dump.test.ts
// keeps it current). The embedded PostgreSQL ships no pg_dump and the
// machine's is older than the server (pg_dump refuses newer servers), so the
// catalog is read here: every object under one heading, in name order, with
// role names as migration placeholders, nothing that differs between runs.
// An object kind it cannot show is an error, never a silent omission.
import path from 'node:path';
import type postgres from 'postgres';

/** Where the dump is committed. */
export const SCHEMA_DUMP_FILE = path.resolve(import.meta.dirname, '../migrations/schema.sql');
export const DUMPED_SCHEMAS = ['app', 'app_private'];

export type DumpRoles = {
  /** The role that ran the migrations: written `:DATABASE_OWNER`. */
  readonly owner: string;
  /** The request role: written `:DATABASE_APP`. */
  readonly app: string;
};

type Tx = postgres.TransactionSql;

/** The dump, read in one snapshot (a read-only repeatable-read transaction of `sql`). */
export async function dumpSchema(sql: postgres.Sql, roles: DumpRoles): Promise<string> {
  return sql.begin('isolation level repeatable read read only', async (tx) => {
    // Unqualified names in deparsed SQL only for pg_catalog, as pg_dump does.
    await tx`set local search_path = ''`;
    await refuseUnknownObjects(tx);
    const role = roleNamer(roles);
    const parts = [
      HEADER,
      section('Schemas and extensions', [...(await schemas(tx, role)), ...(await extensions(tx))]),
      section('Types', await types(tx)),
      ...(await tables(tx, role)),
      ...(await views(tx, role)),
      section('Sequences', await sequences(tx, role)),
      ...(await functions(tx, role)),
    ];
    return `${parts.filter((part) => part !== '').join('\n\n')}\n`;
  });
}

const HEADER = `-- The database schema as the committed migrations leave it (schemas ${DUMPED_SCHEMAS.join(', ')}).
-- For reading and reviewing, not for running: the migrations build databases.
-- Written by \`npm run db:dump\`; test/schema-dump.test.ts fails when it is stale.
-- :DATABASE_OWNER is the role that runs the migrations, :DATABASE_APP the request role.`;

const RULE = '-'.repeat(80);

function section(title: string, statements: string[], separator = '\n'): string {
  return statements.length === 0 ? '' : `${RULE}\n-- ${title}\n\n${statements.join(separator)}`;
}

/** Groups of statements, a blank line between groups, empty ones left out. */
function paragraphs(groups: string[][]): string[] {
  return groups.filter((group) => group.length > 0).map((group) => group.join('\n'));
}

type RoleNamer = (name: string) => string;

function roleNamer(roles: DumpRoles): RoleNamer {
  return (name) => {
    if (name === '-') return 'PUBLIC'; // aclexplode's grantee 0
    if (name === roles.owner) return ':DATABASE_OWNER';
    if (name === roles.app) return ':DATABASE_APP';
    return quoteName(name);
  };
}

/** Fails on objects in the dumped schemas that this file does not know how to show. */
async function refuseUnknownObjects(tx: Tx): Promise<void> {
  const rows = await tx<{ object: string }[]>`
    select format('%s %s', kind, name) as object from (
      select 'relation of kind ' || c.relkind::text as kind, c.oid::regclass::text as name
        from pg_class c where c.relnamespace::regnamespace::text = any(${DUMPED_SCHEMAS})
          and (c.relkind not in ('r', 'p', 'v', 'm', 'i', 'S', 'c') or c.relispartition
               or exists (select 1 from pg_inherits i where i.inhrelid = c.oid))
      union all
      select 'aggregate', p.oid::regprocedure::text from pg_proc p
        where p.pronamespace::regnamespace::text = any(${DUMPED_SCHEMAS}) and p.prokind = 'a'
      union all
      select 'type of kind ' || t.typtype::text, t.oid::regtype::text from pg_type t
        where t.typnamespace::regnamespace::text = any(${DUMPED_SCHEMAS})
          and t.typtype not in ('c', 'e', 'd')
          and not exists (select 1 from pg_type e where e.typarray = t.oid)
      union all
      select 'rule', r.rulename || ' on ' || r.ev_class::regclass::text from pg_rewrite r
        join pg_class c on c.oid = r.ev_class
        where c.relnamespace::regnamespace::text = any(${DUMPED_SCHEMAS}) and r.rulename <> '_RETURN'
      union all
      select 'operator', o.oid::regoperator::text from pg_operator o where o.oprnamespace::regnamespace::text = any(${DUMPED_SCHEMAS})
      union all
      select 'collation', c.collname from pg_collation c where c.collnamespace::regnamespace::text = any(${DUMPED_SCHEMAS})
      union all
      select 'text search configuration', c.cfgname from pg_ts_config c where c.cfgnamespace::regnamespace::text = any(${DUMPED_SCHEMAS})
      union all
      select 'text search dictionary', d.dictname from pg_ts_dict d where d.dictnamespace::regnamespace::text = any(${DUMPED_SCHEMAS})
      union all
      select 'default privileges', d.defaclobjtype::text from pg_default_acl d
    ) unknown
    order by 1`;
  if (rows.length > 0) {
    throw new Error(`scripts/schema-dump.ts cannot show: ${rows.map((row) => row.object).join(', ')} (teach it, or change the migration)`);
  }
}

async function schemas(tx: Tx, role: RoleNamer): Promise<string[]> {
  const rows = await tx<{ name: string; comment: string | null; usage: string[] }[]>`
    select n.nspname as name, obj_description(n.oid, 'pg_namespace') as comment,
      array(select coalesce(r.rolname, '-') from aclexplode(n.nspacl) a left join pg_roles r on r.oid = a.grantee
            where a.grantee <> n.nspowner and a.privilege_type = 'USAGE' order by 1) as usage
    from pg_namespace n where n.nspname = any(${DUMPED_SCHEMAS}) order by n.nspname`;
  return rows.flatMap((row) => [
    `CREATE SCHEMA ${row.name};`,
    ...comment(`SCHEMA ${row.name}`, row.comment),
    ...row.usage.map((grantee) => `GRANT USAGE ON SCHEMA ${row.name} TO ${role(grantee)};`),
  ]);
}

async function extensions(tx: Tx): Promise<string[]> {
  const rows = await tx<{ statement: string }[]>`
    select format('CREATE EXTENSION IF NOT EXISTS %I WITH SCHEMA %I;', e.extname, e.extnamespace::regnamespace) as statement
    from pg_extension e where e.extname <> 'plpgsql' order by e.extname`;
  return rows.map((row) => row.statement);
}

async function types(tx: Tx): Promise<string[]> {
  const rows = await tx<{ name: string; kind: string; definition: string; comment: string | null }[]>`
    select t.oid::regtype::text as name, t.typtype as kind, obj_description(t.oid, 'pg_type') as comment,
      case t.typtype
        when 'c' then (select string_agg(format('  %I %s', a.attname, format_type(a.atttypid, a.atttypmod)), E',\n' order by a.attnum)
                       from pg_attribute a where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped)
        when 'e' then (select string_agg(quote_literal(e.enumlabel), ', ' order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid)
        when 'd' then format_type(t.typbasetype, t.typtypmod)
          || coalesce(' DEFAULT ' || t.typdefault, '') || case when t.typnotnull then ' NOT NULL' else '' end
          || coalesce((select string_agg(format(E'\n  CONSTRAINT %I %s', c.conname, pg_get_constraintdef(c.oid, true)), '' order by c.conname)
                       from pg_constraint c where c.contypid = t.oid and c.contype = 'c'), '')
      end as definition
    from pg_type t
    where t.typnamespace::regnamespace::text = any(${DUMPED_SCHEMAS})
      and (t.typtype in ('e', 'd') or (t.typtype = 'c' and (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c'))
    order by 1`;
  return rows.flatMap((row) => [
    row.kind === 'c' ? `CREATE TYPE ${row.name} AS (\n${row.definition}\n);`
      : row.kind === 'e' ? `CREATE TYPE ${row.name} AS ENUM (${row.definition});`
      : `CREATE DOMAIN ${row.name} AS ${row.definition};`,
    ...comment(`TYPE ${row.name}`, row.comment),
  ]);
}

/** A relation by oid, and by its qualified name as SQL writes it. */
type Named = { oid: number; name: string };

type Relation = Named & {
  kind: string;
  unlogged: boolean;
  options: string[] | null;
  rls: boolean;
  force_rls: boolean;
  partition_key: string | null;
  comment: string | null;
};

async function relations(tx: Tx, kinds: string[]): Promise<Relation[]> {
  return tx<Relation[]>`
    select c.oid::int as oid, c.oid::regclass::text as name, c.relkind as kind, c.relpersistence = 'u' as unlogged,
      c.reloptions as options, c.relrowsecurity as rls, c.relforcerowsecurity as force_rls,
      case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end as partition_key,
      obj_description(c.oid, 'pg_class') as comment
    from pg_class c
    where c.relnamespace::regnamespace::text = any(${DUMPED_SCHEMAS}) and c.relkind = any(${kinds})
    order by c.relnamespace::regnamespace::text, c.relname`;
}

async function tables(tx: Tx, role: RoleNamer): Promise<string[]> {
  const out: string[] = [];
  for (const table of await relations(tx, ['r', 'p'])) {
    const columns = await tx<{ definition: string }[]>`
      select format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
        || case when a.attcollation <> 0 and a.attcollation <> t.typcollation then ' COLLATE ' || a.attcollation::regcollation::text else '' end
        || case
             when a.attgenerated = 's' then ' GENERATED ALWAYS AS (' || pg_get_expr(d.adbin, d.adrelid, true) || ') STORED'
             when a.attgenerated = 'v' then ' GENERATED ALWAYS AS (' || pg_get_expr(d.adbin, d.adrelid, true) || ') VIRTUAL'
             when a.attidentity = 'a' then ' GENERATED ALWAYS AS IDENTITY'
             when a.attidentity = 'd' then ' GENERATED BY DEFAULT AS IDENTITY'
             when d.adbin is not null then ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid, true)
             else '' end
        || case when a.attnotnull then ' NOT NULL' else '' end as definition
      from pg_attribute a join pg_type t on t.oid = a.atttypid
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where a.attrelid = ${table.oid} and a.attnum > 0 and not a.attisdropped
      order by a.attnum`;
    // NOT NULL constraints (contype n) are shown on their columns.
    const constraints = await tx<{ definition: string }[]>`
      select format('CONSTRAINT %I %s', c.conname, pg_get_constraintdef(c.oid, true)) as definition
      from pg_constraint c where c.conrelid = ${table.oid} and c.contype <> 'n'
      order by array_position(array['p', 'u', 'x', 'f', 'c', 't'], c.contype::text), c.conname`;
    const body = [...columns, ...constraints].map((row) => `  ${row.definition}`).join(',\n');
    const options = table.options ? ` WITH (${table.options.join(', ')})` : '';
    const partition = table.partition_key ? ` PARTITION BY ${table.partition_key}` : '';
    const groups = [
      [
        `CREATE ${table.unlogged ? 'UNLOGGED ' : ''}TABLE ${table.name} (\n${body}\n)${partition}${options};`,
        ...comment(`TABLE ${table.name}`, table.comment),
        ...(await columnComments(tx, table)),
      ],
      [...(await indexes(tx, table)), ...(await statistics(tx, table))],
      await triggers(tx, table),
      [
        ...(table.rls ? [`ALTER TABLE ${table.name} ENABLE ROW LEVEL SECURITY;`] : []),
        ...(table.force_rls ? [`ALTER TABLE ${table.name} FORCE ROW LEVEL SECURITY;`] : []),
        ...(await policies(tx, table, role)),
      ],
      await grants(tx, table, 'TABLE', role),
    ];
    out.push(section(`Table ${table.name}`, paragraphs(groups), '\n\n'));
  }
  return out;
}

async function views(tx: Tx, role: RoleNamer): Promise<string[]> {
  const out: string[] = [];
  for (const view of await relations(tx, ['v', 'm'])) {
    const [definition] = await tx<{ sql: string }[]>`select pg_get_viewdef(${view.oid}::oid, true) as sql`;
    const options = view.options ? ` WITH (${view.options.join(', ')})` : '';
    const kind = view.kind === 'm' ? 'MATERIALIZED VIEW' : 'VIEW';
    const groups = [
      [
        `CREATE ${kind} ${view.name}${options} AS\n${definition!.sql.trimEnd().replace(/;$/, '')};`,
        ...comment(`${kind} ${view.name}`, view.comment),
        ...(await columnComments(tx, view)),
      ],
      await indexes(tx, view),
      await triggers(tx, view),
      await grants(tx, view, 'TABLE', role),
    ];
    out.push(section(`${view.kind === 'm' ? 'Materialized view' : 'View'} ${view.name}`, paragraphs(groups), '\n\n'));
  }
  return out;
}

async function columnComments(tx: Tx, relation: Named): Promise<string[]> {
  const rows = await tx<{ name: string; comment: string }[]>`
    select format('%s.%I', ${relation.name}::text, a.attname) as name, d.description as comment
    from pg_attribute a join pg_description d on d.objoid = a.attrelid and d.classoid = 'pg_class'::regclass and d.objsubid = a.attnum
    where a.attrelid = ${relation.oid} and a.attnum > 0 and not a.attisdropped order by a.attnum`;
  return rows.flatMap((row) => comment(`COLUMN ${row.name}`, row.comment));
}

async function indexes(tx: Tx, relation: Named): Promise<string[]> {
  // Indexes that back a primary key, unique or exclusion constraint are shown as the constraint.
  const rows = await tx<{ definition: string; name: string; comment: string | null }[]>`
    select pg_get_indexdef(i.indexrelid, 0, true) as definition, i.indexrelid::regclass::text as name,
      obj_description(i.indexrelid, 'pg_class') as comment
    from pg_index i
    where i.indrelid = ${relation.oid}
      and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid and c.conrelid = i.indrelid and c.contype in ('p', 'u', 'x'))
    order by 2`;
  return rows.flatMap((row) => [`${row.definition};`, ...comment(`INDEX ${row.name}`, row.comment)]);
}

async function statistics(tx: Tx, relation: Named): Promise<string[]> {
  const rows = await tx<{ definition: string }[]>`
    select pg_get_statisticsobjdef(s.oid) as definition from pg_statistic_ext s where s.stxrelid = ${relation.oid} order by s.stxname`;
  return rows.map((row) => `${row.definition};`);
}

async function triggers(tx: Tx, relation: Named): Promise<string[]> {
  const rows = await tx<{ definition: string; name: string; comment: string | null }[]>`
    select pg_get_triggerdef(t.oid, true) as definition, format('%I ON %s', t.tgname, ${relation.name}::text) as name,
      obj_description(t.oid, 'pg_trigger') as comment
    from pg_trigger t where t.tgrelid = ${relation.oid} and not t.tgisinternal order by t.tgname`;
  return rows.flatMap((row) => [`${row.definition};`, ...comment(`TRIGGER ${row.name}`, row.comment)]);
}

async function policies(tx: Tx, table: Relation, role: RoleNamer): Promise<string[]> {
  const rows = await tx<{ name: string; permissive: boolean; command: string; roles: string[]; using: string | null; check: string | null; comment: string | null }[]>`
    select p.polname as name, p.polpermissive as permissive,
      case p.polcmd when 'r' then 'SELECT' when 'a' then 'INSERT' when 'w' then 'UPDATE' when 'd' then 'DELETE' else 'ALL' end as command,
      array(select coalesce(r.rolname, '-') from unnest(p.polroles) g (oid) left join pg_roles r on r.oid = g.oid order by 1) as roles,
      pg_get_expr(p.polqual, p.polrelid) as using, pg_get_expr(p.polwithcheck, p.polrelid) as check,
      obj_description(p.oid, 'pg_policy') as comment
    from pg_policy p where p.polrelid = ${table.oid} order by p.polname`;
  return rows.flatMap((row) => {
    const to = row.roles.length === 1 && row.roles[0] === '-' ? '' : ` TO ${row.roles.map(role).join(', ')}`;
    const lines = [
      `CREATE POLICY ${quoteName(row.name)} ON ${table.name}${row.permissive ? '' : ' AS RESTRICTIVE'}${row.command === 'ALL' ? '' : ` FOR ${row.command}`}${to}`,
      ...(row.using !== null ? [`  USING (${row.using})`] : []),
      ...(row.check !== null ? [`  WITH CHECK (${row.check})`] : []),
    ];
    return [`${lines.join('\n')};`, ...comment(`POLICY ${quoteName(row.name)} ON ${table.name}`, row.comment)];
  });
}

const PRIVILEGE_ORDER = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'MAINTAIN', 'USAGE'];

/** Table and column privileges of everyone but the owner, one statement per grantee and column list. */
async function grants(tx: Tx, relation: Named, kind: 'TABLE' | 'SEQUENCE', role: RoleNamer): Promise<string[]> {
  const rows = await tx<{ grantee: string; privilege: string; columns: string | null }[]>`
    select coalesce(r.rolname, '-') as grantee, a.privilege_type as privilege, null as columns
    from pg_class c, aclexplode(c.relacl) a left join pg_roles r on r.oid = a.grantee
    where c.oid = ${relation.oid} and a.grantee <> c.relowner
    union all
    select grantee, privilege, string_agg(column_name, ', ' order by attnum) from (
      select coalesce(r.rolname, '-') as grantee, a.privilege_type as privilege, quote_ident(att.attname) as column_name, att.attnum
      from pg_attribute att, aclexplode(att.attacl) a left join pg_roles r on r.oid = a.grantee
      where att.attrelid = ${relation.oid} and att.attnum > 0 and not att.attisdropped
    ) per_column group by grantee, privilege`;
  const statements = new Map<string, string[]>(); // "grantee|columns" -> privileges
  for (const row of rows) {
    const key = `${row.grantee}|${row.columns ?? ''}`;
    statements.set(key, [...(statements.get(key) ?? []), row.privilege]);
  }
  return [...statements.entries()]
    .map(([key, privileges]) => {
      const [grantee, columns] = key.split('|') as [string, string];
      const list = privileges.sort((a, b) => PRIVILEGE_ORDER.indexOf(a) - PRIVILEGE_ORDER.indexOf(b)).join(', ');
      return `GRANT ${list}${columns ? ` (${columns})` : ''} ON ${kind} ${relation.name} TO ${role(grantee)};`;
    })
    .sort();
}

async function sequences(tx: Tx, role: RoleNamer): Promise<string[]> {
  // Identity sequences are part of their column.
  const rows = await tx<(Named & { definition: string; owned_by: string | null; comment: string | null })[]>`
    select c.oid::int as oid, c.oid::regclass::text as name, obj_description(c.oid, 'pg_class') as comment,
      format('AS %s START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s', s.seqtypid::regtype, s.seqstart,
             s.seqincrement, s.seqmin, s.seqmax, s.seqcache, case when s.seqcycle then ' CYCLE' else '' end) as definition,
      (select format('%s.%I', d.refobjid::regclass, a.attname) from pg_depend d
         join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
         where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'a') as owned_by
    from pg_class c join pg_sequence s on s.seqrelid = c.oid
    where c.relnamespace::regnamespace::text = any(${DUMPED_SCHEMAS}) and c.relkind = 'S'
      and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'i')
    order by 2`;
  const out: string[] = [];
  for (const row of rows) {
    out.push(
      `CREATE SEQUENCE ${row.name} ${row.definition};`,
      ...(row.owned_by ? [`ALTER SEQUENCE ${row.name} OWNED BY ${row.owned_by};`] : []),
      ...comment(`SEQUENCE ${row.name}`, row.comment),
      ...(await grants(tx, row, 'SEQUENCE', role)),
    );
  }
  return out;
}

async function functions(tx: Tx, role: RoleNamer): Promise<string[]> {
  const rows = await tx<{ schema: string; signature: string; kind: string; definition: string; comment: string | null; executors: string[] }[]>`
    select p.pronamespace::regnamespace::text as schema, p.oid::regprocedure::text as signature, p.prokind as kind,
      pg_get_functiondef(p.oid) as definition, obj_description(p.oid, 'pg_proc') as comment,
      -- No ACL is the default: PUBLIC may execute.
      case when p.proacl is null then array['-']
           else array(select coalesce(r.rolname, '-') from aclexplode(p.proacl) a left join pg_roles r on r.oid = a.grantee
                      where a.grantee <> p.proowner and a.privilege_type = 'EXECUTE' order by 1) end as executors
    from pg_proc p
    where p.pronamespace::regnamespace::text = any(${DUMPED_SCHEMAS})
      and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
    order by 1, p.proname, 2`;
  return DUMPED_SCHEMAS.map((schema) =>
    section(
      `Functions in ${schema}`,
      rows
        .filter((row) => row.schema === schema)
        .map((row) => {
          const what = row.kind === 'p' ? 'PROCEDURE' : 'FUNCTION';
          return [
            `${row.definition.trimEnd()};`,
            ...comment(`${what} ${row.signature}`, row.comment),
            ...row.executors.map((grantee) => `GRANT EXECUTE ON ${what} ${row.signature} TO ${role(grantee)};`),
          ].join('\n');
        }),
      '\n\n',
    ),
  );
}

function comment(target: string, text: string | null): string[] {
  return text === null ? [] : [`COMMENT ON ${target} IS ${quoteLiteral(text)};`];
}

function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

function quoteName(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}
