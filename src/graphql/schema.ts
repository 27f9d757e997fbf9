import { isObjectType, lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { builder } from './builder.ts';
import './scalars.ts';
import '../modules/tenants/schema.ts';
import '../modules/users/schema.ts';
import '../modules/viewer/schema.ts';
import '../modules/agents/schema.ts';
import '../modules/sessions/schema.ts';
import '../modules/tasks/schema.ts';
import '../modules/contexts/schema.ts';
import '../modules/fine-tuning/schema.ts';
import '../modules/members/schema.ts';
import '../modules/api-keys/schema.ts';
import '../modules/platform/schema.ts';
import '../modules/audit-events/schema.ts';
import '../modules/audit-events/platform-schema.ts';
import '../modules/audit-chain/schema.ts';
import '../subscriptions/schema.ts';

builder.queryType({});
builder.mutationType({});

export const schema = builder.toSchema();
refuseWrappedInlineResolvers(schema);

/**
 * A field marked `jitInlineResolve` (a node's id: synchronous, reads only its
 * parent) is called by compiled queries without resolve info, path or
 * closures (patches/graphql-jit+0.8.9.patch). A plugin that wrapped such a
 * resolver (scope-auth, validation) might read what the call does not pass:
 * that is a start-up error, not a wrong answer later.
 */
export function refuseWrappedInlineResolvers(built: GraphQLSchema): void {
  for (const type of Object.values(built.getTypeMap())) {
    if (!isObjectType(type)) continue;
    for (const field of Object.values(type.getFields())) {
      if (field.extensions.jitInlineResolve === true && field.extensions.pothosResolveWrapped !== false) {
        throw new Error(`${type.name}.${field.name} is marked jitInlineResolve but its resolver is wrapped by a plugin: remove the mark or the wrapper`);
      }
    }
  }
}

export { permissionsDoc } from './permissions-doc.ts';

/** The committed schema.graphql: the sorted SDL of `schema`. */
export function printSortedSchema(): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
