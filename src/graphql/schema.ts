import { lexicographicSortSchema, printSchema } from 'graphql';
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

export { permissionsDoc } from './permissions-doc.ts';

/** The committed schema.graphql: the sorted SDL of `schema`. */
export function printSortedSchema(): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
