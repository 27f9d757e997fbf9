import { isObjectType, lexicographicSortSchema, printSchema } from 'graphql';
import { builder } from './builder.ts';
import { encodeGlobalId, NODE_TYPES } from './global-id.ts';
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

builder.queryType({});
builder.mutationType({});

export const schema = builder.toSchema();

// Two per-node costs of Pothos' relay and dataloader plugins, measured with
// a sampling heap profile under Q2 (133 -> 116 KB allocated a request):
// - every node's `id` has an async resolver, so each id of a page is a
//   promise for graphql-jit to await; a global id is a plain encoding of the
//   row's own id, so it is resolved synchronously;
// - every edge's `node` is `(edge) => edge.node`, wrapped by the dataloader
//   plugin to load the node when given an id; our connections always hold
//   rows (keysetConnection), so the default resolver reads the same value
//   and graphql-jit inlines it.
for (const name of NODE_TYPES) {
  const type = schema.getType(name);
  const id = isObjectType(type) ? type.getFields()['id'] : undefined;
  if (!id) throw new Error(`node type ${name} has no id field`);
  id.resolve = (row: { id: string }) => encodeGlobalId(name, row.id);
}
for (const type of Object.values(schema.getTypeMap())) {
  const node = isObjectType(type) && type.name.endsWith('Edge') ? type.getFields()['node'] : undefined;
  if (node) node.resolve = undefined;
}

export { permissionsDoc } from './permissions-doc.ts';

/** The committed schema.graphql: the sorted SDL of `schema`. */
export function printSortedSchema(): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
