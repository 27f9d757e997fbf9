// Lookahead for root fields that name one row by id. GraphQL resolves a level
// at a time, so `session(id) { agent tasks }` would read the session in one
// round trip and its agent and tasks in the next. The children that only need
// the row's id (a session's tasks and agent, an agent's sessions) can be read
// with the row: the root field starts them in the same tick, and the child
// fields pick up what was started for their path instead of loading again.
// Everything runs in the request's transaction under RLS: a prefetch for a
// row that turns out not to exist (or to be another tenant's) reads nothing
// and is never used.
import { createContextCache } from '@pothos/core';
import { pathDataloaderGetter } from '@pothos/plugin-dataloader';
import { getArgumentValues, isObjectType, type FieldNode, type FragmentDefinitionNode, type GraphQLResolveInfo } from 'graphql';
import type { KeysetPage } from '../db/keyset.ts';
import type { Tx } from '../db/pool.ts';
import { keysetConnection, type ConnectionArgs, type KeysetRow } from './connection.ts';
import type { GraphQLContext } from './context.ts';
import { connectionNodeFields, eachField } from './selection.ts';

/** What a child field needs to start its read: its arguments and its own selection. */
export type ChildSelection = {
  readonly args: Record<string, unknown>;
  readonly fieldNodes: readonly FieldNode[];
  readonly fragments: Record<string, FragmentDefinitionNode>;
};

type Prefetch = (context: GraphQLContext, parentId: string, child: ChildSelection) => Promise<unknown>;

/** By `Type.field`: how to start that child from its parent's id. Schema configuration, set once at start-up. */
const prefetches = new Map<string, Prefetch>();

/** Per request: what was started, by response path and parent id. */
const started = createContextCache(() => new Map<string, Promise<unknown>>());

/** Declares that `typeName.fieldName` can be read from the parent's id alone (see `prefetched`). */
export function registerPrefetch(typeName: string, fieldName: string, prefetch: Prefetch): void {
  prefetches.set(`${typeName}.${fieldName}`, prefetch);
}

/**
 * From a field resolving one `typeName` row by `id`: starts every selected
 * child that has a registered prefetch. Selections are followed through
 * fragments; @skip/@include are ignored (an unused read costs, never misleads).
 */
export function prefetchChildren(context: GraphQLContext, info: GraphQLResolveInfo, typeName: string, id: string): void {
  const type = info.schema.getType(typeName);
  if (!isObjectType(type)) return;
  const path = pathKey(info.path);
  for (const [responseKey, fieldNodes] of selectedFields(info.fieldNodes, info.fragments)) {
    const name = fieldNodes[0]!.name.value;
    const prefetch = prefetches.get(`${typeName}.${name}`);
    const field = type.getFields()[name];
    if (!prefetch || !field) continue;
    let promise: Promise<unknown>;
    try {
      promise = prefetch(context, id, { args: getArgumentValues(field, fieldNodes[0]!, info.variableValues), fieldNodes, fragments: info.fragments });
    } catch {
      continue; // arguments the child field will refuse itself, with its own error
    }
    promise.catch(() => {}); // observed by the child field, if it runs
    started(context).set(`${path}.${responseKey}|${id}`, promise);
  }
}

/** What `prefetchChildren` started for the field being resolved on the row `parentId`, if anything. */
export function prefetched<T>(context: GraphQLContext, info: GraphQLResolveInfo, parentId: string): Promise<T> | undefined {
  return started(context).get(`${pathKey(info.path)}|${parentId}`) as Promise<T> | undefined;
}

/** How a list keyed by its parent's id is read: `childList`. */
export type ChildRows<Args extends ConnectionArgs, Row extends KeysetRow> = {
  /** One page for each parent, in one statement, with the columns `fields` need. */
  readonly rows: (tx: Tx, parentIds: readonly string[], args: Args, page: KeysetPage, fields: ReadonlySet<string>) => Promise<Row[]>;
  /** The parent a row belongs to. */
  readonly parentOf: (row: Row) => string;
  readonly newestFirst?: (args: Args) => boolean;
};

/**
 * A list field keyed by its parent's id (`Session.tasks`, `Agent.sessions`):
 * batched across the parents at one path of the query (each path has its own
 * arguments), and read with the parent when a by-id root field prefetches it.
 * Returns the field's resolver.
 */
export function childList<Args extends ConnectionArgs, Row extends KeysetRow>(typeName: string, fieldName: string, read: ChildRows<Args, Row>) {
  const pages = (context: GraphQLContext, parentIds: readonly string[], args: Args, fields: ReadonlySet<string>) => {
    let rows: Promise<Row[]> | undefined;
    return Promise.all(
      parentIds.map((parentId) =>
        keysetConnection(
          args,
          async (page) => {
            rows ??= context.db.run((tx) => read.rows(tx, parentIds, args, page, fields));
            return (await rows).filter((row) => read.parentOf(row) === parentId);
          },
          read.newestFirst?.(args),
        ),
      ),
    );
  };
  type Page = Awaited<ReturnType<typeof pages>>[number];
  const loader = pathDataloaderGetter(
    undefined,
    (parentIds: string[], context, args: Args, info) => pages(context as GraphQLContext, parentIds, args, connectionNodeFields(info)),
    undefined,
    false,
    true,
  );
  registerPrefetch(typeName, fieldName, async (context, parentId, child) => (await pages(context, [parentId], child.args as Args, connectionNodeFields(child)))[0]);
  return (parentId: string, args: Args, context: GraphQLContext, info: GraphQLResolveInfo): Promise<Page> =>
    prefetched<Page>(context, info, parentId) ?? loader(args, context, info).load(parentId);
}

/** The response keys selected under `fieldNodes` (merged, through fragments), each with its field nodes. */
function selectedFields(fieldNodes: readonly FieldNode[], fragments: Record<string, FragmentDefinitionNode>): Map<string, FieldNode[]> {
  const fields = new Map<string, FieldNode[]>();
  for (const node of fieldNodes) {
    eachField(node.selectionSet, fragments, (field) => {
      const key = field.alias?.value ?? field.name.value;
      fields.set(key, [...(fields.get(key) ?? []), field]);
    });
  }
  return fields;
}

function pathKey(path: GraphQLResolveInfo['path'] | undefined): string {
  return path ? (path.prev ? `${pathKey(path.prev)}.${path.key}` : String(path.key)) : '';
}
