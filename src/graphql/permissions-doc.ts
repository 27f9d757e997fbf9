// docs/permissions.md, generated from the schema's scope declarations (the
// authScopes of each root field, the `memberOwnsOnly` / `ownOnlyBelow`
// extensions on fields where lower roles act only on what they created, and
// `platform` on fields that work outside any tenant). The request pipeline
// reads a subscription field's role from the same declarations (subscriptionRole).
import { getOperationAST, Kind, type DocumentNode, type GraphQLField, type GraphQLObjectType, type GraphQLSchema } from 'graphql';
import { ROLES, roleAtLeast, type Role } from '../tenancy/roles.ts';

const SCOPE_ROLE: Record<string, Role> = { viewer: 'VIEWER', member: 'MEMBER', lead: 'LEAD', admin: 'ADMIN' };

type Scopes = Record<string, boolean | Record<string, boolean>>;
type FieldExtensions = {
  pothosOptions?: { authScopes?: Scopes };
  memberOwnsOnly?: boolean;
  /** Roles below this one act only on what they created. */
  ownOnlyBelow?: Role;
  platform?: boolean;
};

/** The scopes a field requires: its own, or all of those in `$all`. */
function scopesOf(field: GraphQLField<unknown, unknown>): Record<string, boolean> {
  const scopes = (field.extensions as FieldExtensions).pothosOptions?.authScopes;
  if (!scopes || typeof scopes !== 'object') return {};
  const all = scopes.$all;
  return typeof all === 'object' ? all : (scopes as Record<string, boolean>);
}

/** The lowest role a field's scopes admit. */
function requiredRole(scopes: Record<string, boolean>): Role | undefined {
  const roles = Object.entries(scopes).filter(([, on]) => on).map(([scope]) => SCOPE_ROLE[scope]).filter((role): role is Role => role !== undefined);
  return [...ROLES].reverse().find((role) => roles.includes(role));
}

function notes(scopes: Record<string, boolean>, extensions: FieldExtensions): string {
  return [
    scopes.operator ? 'platform operators only' : '',
    scopes.person ? (requiredRole(scopes) ? 'not with an API key' : 'any signed-in user, not an API key') : '',
    extensions.platform ? 'needs no tenant' : '',
  ].filter(Boolean).join('; ');
}

function rows(type: GraphQLObjectType | null | undefined): string[] {
  if (!type) return [];
  return Object.values(type.getFields())
    .filter((field) => field.name !== 'node')
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((field) => {
      const extensions = field.extensions as FieldExtensions;
      const scopes = scopesOf(field);
      const required = requiredRole(scopes);
      const ownOnlyBelow = extensions.ownOnlyBelow ?? (extensions.memberOwnsOnly ? 'LEAD' : undefined);
      const cells = [...ROLES].reverse().map((role) => {
        if (!required || !roleAtLeast(role, required)) return '-';
        return ownOnlyBelow && !roleAtLeast(role, ownOnlyBelow) ? 'own' : 'yes';
      });
      return `| \`${field.name}\` | ${cells.join(' | ')} | ${notes(scopes, extensions)} |`;
    });
}

/**
 * The lowest role the root field of a subscription operation admits (its
 * authScopes, as the table shows them; VIEWER without any). A subscription
 * has one root field (validation says so).
 */
export function subscriptionRole(schema: GraphQLSchema, document: DocumentNode, operationName: string | undefined): Role {
  const operation = getOperationAST(document, operationName);
  const selection = operation?.selectionSet.selections.find((node) => node.kind === Kind.FIELD && node.name.value !== '__typename');
  const field = selection?.kind === Kind.FIELD ? schema.getSubscriptionType()?.getFields()[selection.name.value] : undefined;
  return (field && requiredRole(scopesOf(field))) ?? 'VIEWER';
}

export function permissionsDoc(schema: GraphQLSchema): string {
  const header = `| field | ${[...ROLES].reverse().join(' | ')} | notes |\n| --- | --- | --- | --- | --- | --- |`;
  return [
    '# Permissions',
    '',
    'Generated from the schema by `npm run schema`; a test fails when it is stale.',
    'Roles include the ones below them: ADMIN > LEAD > MEMBER > VIEWER. `own`: a MEMBER',
    'may do it only to what they created. Every rule is enforced twice: by scope-auth',
    'in the API (FORBIDDEN before any SQL runs) and by the write policies in the database',
    '(`test/permissions.db.test.ts` attempts each action as each role in plain SQL).',
    'Reads are always limited to the request\'s own tenant. Platform operators are',
    'users granted the capability with `tenancy operator grant`; it is read from the',
    'database on every request and every use is audited. An API key acts for its',
    'creator with the lower of its role and theirs.',
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
    '## Subscriptions',
    '',
    'A stream ends with FORBIDDEN when a role change takes the role away, and with',
    'UNAUTHENTICATED, FORBIDDEN or TENANT_SUSPENDED when the token expires, the member',
    'is removed, the API key is revoked or the tenant is suspended (README: Live events).',
    '',
    header,
    ...rows(schema.getSubscriptionType()),
    '',
  ].join('\n');
}
