// The Pothos plugin behind node types (src/nodes/node-type.ts). While the
// schema is built it reads every field of a node type and
// - records which row keys the field reads, so lists and prefetches choose
//   their column groups from the selected fields (the repository names only
//   row keys; this is where GraphQL fields meet them);
// - registers the field's prefetch, if it declares one (child lists and relations);
// - completes a row read in part: a field whose columns are outside the
//   always-read group resolves on the whole row (loaded by id, batched) when
//   the row it was given lacks them. Fields of the first group keep their
//   resolver as it is (an exposed column stays a default resolver).
// A field's row keys: `extensions.columns` when it declares them, else the
// column it exposes, else the row key of its own name; anything else is a
// start-up error that names the field.
import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from '@pothos/core';
import type { GraphQLFieldResolver } from 'graphql';
import type { GraphQLContext } from '../graphql/context.ts';
import { nodeTypeNamed, type RegisteredNode } from './global-id.ts';
import { registerPrefetch, type Prefetch } from './prefetch.ts';
import { lacksColumns } from './selection.ts';

/** What a field of a node type may declare in its `extensions`. */
export type NodeFieldExtensions = {
  /** The row keys the field reads, when it is neither named after one nor exposes one. */
  readonly columns?: readonly string[];
  /** How to read this child with its parent, from the parent's id (see src/nodes/prefetch.ts). */
  readonly prefetch?: (parent: RegisteredNode) => Prefetch;
};

function rowKeysOf<Types extends SchemaTypes>(node: RegisteredNode, field: PothosOutputFieldConfig<Types>): readonly string[] {
  const extensions = (field.extensions ?? {}) as NodeFieldExtensions & { pothosExposedField?: string };
  const keys = extensions.columns ?? [extensions.pothosExposedField ?? field.name];
  for (const key of keys) {
    if (!node.table.has(key)) {
      throw new Error(`${node.name}.${field.name} reads no column of ${node.table.name}: declare extensions.columns (row keys of the table)`);
    }
  }
  return keys;
}

export class TenantNodesPlugin<Types extends SchemaTypes> extends BasePlugin<Types> {
  override onOutputFieldConfig(fieldConfig: PothosOutputFieldConfig<Types>): PothosOutputFieldConfig<Types> {
    const node = nodeTypeNamed(fieldConfig.parentType);
    if (!node) return fieldConfig;
    node.fieldChoices.set(fieldConfig.name, node.table.choiceOf(rowKeysOf(node, fieldConfig)));
    const { prefetch } = (fieldConfig.extensions ?? {}) as NodeFieldExtensions;
    if (prefetch) registerPrefetch(node.name, fieldConfig.name, prefetch(node));
    return fieldConfig;
  }

  override wrapResolve(
    resolver: GraphQLFieldResolver<unknown, Types['Context'], object>,
    fieldConfig: PothosOutputFieldConfig<Types>,
  ): GraphQLFieldResolver<unknown, Types['Context'], object> {
    const node = nodeTypeNamed(fieldConfig.parentType);
    if (!node) return resolver;
    const keys = rowKeysOf(node, fieldConfig);
    if (node.table.choiceOf(keys) === 1) return resolver; // the always-read group
    return (row, args, context, info) => {
      if (!lacksColumns(row as object, keys)) return resolver(row, args, context, info);
      return node.load(context as GraphQLContext, (row as { id: string }).id).then((whole) => resolver(whole ?? row, args, context, info));
    };
  }
}

const pluginName = 'tenantNodes';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace -- Pothos plugins register through this global namespace
  export namespace PothosSchemaTypes {
    export interface Plugins<Types extends SchemaTypes> {
      tenantNodes: TenantNodesPlugin<Types>;
    }
  }
}

SchemaBuilder.registerPlugin(pluginName, TenantNodesPlugin);

export default pluginName;
