import SchemaBuilder from '@pothos/core';
import ComplexityPlugin from '@pothos/plugin-complexity';
import DataloaderPlugin from '@pothos/plugin-dataloader';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import ValidationPlugin from '@pothos/plugin-validation';
import { badUserInput, forbidden } from '../errors.ts';
import { decodeGlobalId, encodeGlobalId } from '../nodes/global-id.ts';
import TenantNodesPlugin from '../nodes/plugin.ts';
import { roleAtLeast, type Role } from '../tenancy/roles.ts';
import type { GraphQLContext } from './context.ts';
import { fieldPrice } from './prices.ts';

export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  AuthScopes: {
    viewer: boolean;
    member: boolean;
    lead: boolean;
    admin: boolean;
    /** A platform operator (carried in the database). */
    operator: boolean;
    /** A signed-in user, not an API key: managing members and keys needs a person. */
    person: boolean;
  };
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    ID: { Input: string; Output: string };
    JSONObject: { Input: Record<string, unknown>; Output: Record<string, unknown> };
  };
  // Fields are non-null unless they say otherwise: clients need not guard every field.
  DefaultFieldNullability: false;
}>({
  defaultFieldNullability: false,
  // scope-auth first: plugin hooks apply in reverse order.
  // TenantNodesPlugin last: it completes rows read in part before any other plugin's wrapper sees the value (src/nodes/plugin.ts).
  plugins: [ScopeAuthPlugin, ValidationPlugin, RelayPlugin, DataloaderPlugin, ComplexityPlugin, TenantNodesPlugin],
  // Prices only: the request pipeline checks the cost before execution (graphql/limits.ts), not a resolver wrapper.
  complexity: { disabled: true, fieldComplexity: fieldPrice },
  scopeAuth: {
    // The role the database granted this request (membership, lowered by a role claim or the key's role).
    // `viewer` (any member) does not wait for the database: the request's first
    // statement refuses non-members, which replaces the whole result, and the
    // reads it lets through run in the same round trip. Roles above it wait for
    // the check, so a missing role is FORBIDDEN before any of the field's SQL runs.
    authScopes: (context) => {
      const atLeast = (required: Role) => async () => {
        const { tenant } = await context.identity.principal();
        return tenant !== undefined && roleAtLeast(tenant.role, required);
      };
      return {
        viewer: context.identity.inTenant,
        member: atLeast('MEMBER'),
        lead: atLeast('LEAD'),
        admin: atLeast('ADMIN'),
        operator: () => context.identity.isOperator(),
        person: context.identity.byPerson,
      };
    },
    unauthorizedError: () => forbidden(),
  },
  validation: {
    // The first problem, named by its argument path (input.name, say).
    validationError: (result) => {
      const issue = result.issues[0];
      const field = issue?.path?.map((part) => (typeof part === 'object' ? String(part.key) : String(part))).join('.') || 'input';
      return badUserInput(field, issue?.message ?? 'is invalid');
    },
  },
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
    // Any id a client sends is opaque: malformed or of an unknown type reads as "no such node".
    // One format everywhere: base64url without padding (safe in URLs and headers).
    encodeGlobalID: (typename, id) => encodeGlobalId(typename, String(id)),
    decodeGlobalID: (globalId) => decodeGlobalId(globalId) ?? { typename: '', id: '' },
    // node(id:) resolves through the registry of node types (src/nodes/node-type.ts).
    nodeQueryOptions: false,
    nodesQueryOptions: false,
  },
});
