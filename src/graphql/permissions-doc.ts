// docs/permissions.md, generated from the schema's scope declarations (the
// authScopes of each root field, and the `memberOwnsOnly` extension on fields
// where a MEMBER may act only on what they created).
import type { GraphQLField, GraphQLObjectType, GraphQLSchema } from 'graphql';
import { ROLES, roleAtLeast, type Role } from '../tenancy/roles.ts';

const SCOPE_ROLE: Record<string, Role> = { viewer: 'VIEWER', member: 'MEMBER', lead: 'LEAD', admin: 'ADMIN' };

type FieldExtensions = { pothosOptions?: { authScopes?: Record<string, boolean> }; memberOwnsOnly?: boolean };

/** The lowest role a field's scopes admit. */
function requiredRole(field: GraphQLField<unknown, unknown>): Role | undefined {
  const scopes = (field.extensions as FieldExtensions).pothosOptions?.authScopes;
  if (!scopes || typeof scopes !== 'object') return undefined;
  const roles = Object.entries(scopes).filter(([, on]) => on).map(([scope]) => SCOPE_ROLE[scope]).filter((role): role is Role => role !== undefined);
  return [...ROLES].reverse().find((role) => roles.includes(role));
}

function rows(type: GraphQLObjectType | null | undefined): string[] {
  if (!type) return [];
  return Object.values(type.getFields())
    .filter((field) => field.name !== 'node')
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((field) => {
      const required = requiredRole(field);
      const ownOnly = (field.extensions as FieldExtensions).memberOwnsOnly === true;
      const cells = [...ROLES].reverse().map((role) => {
        if (!required || !roleAtLeast(role, required)) return '-';
        return ownOnly && role === 'MEMBER' ? 'own' : 'yes';
      });
      return `| \`${field.name}\` | ${cells.join(' | ')} |`;
    });
}

export function permissionsDoc(schema: GraphQLSchema): string {
  const header = `| field | ${[...ROLES].reverse().join(' | ')} |\n| --- | --- | --- | --- | --- |`;
  return [
    '# Permissions',
    '',
    'Generated from the schema by `npm run schema`; a test fails when it is stale.',
    'Roles include the ones below them: ADMIN > LEAD > MEMBER > VIEWER. `own`: a MEMBER',
    'may do it only to what they created. Every rule is enforced twice: by scope-auth',
    'in the API (FORBIDDEN before any SQL runs) and by the write policies in the database',
    '(`test/permissions.db.test.ts` attempts each action as each role in plain SQL).',
    'Reads are always limited to the request\'s own tenant.',
    '',
    '## Queries',
    '',
    header,
    ...rows(schema.getQueryType()),
    '',
    '## Mutations',
    '',
    header,
    ...rows(schema.getMutationType()),
    '',
  ].join('\n');
}
