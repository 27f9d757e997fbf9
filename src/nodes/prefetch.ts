// Lookahead for root fields that name one row by id. GraphQL resolves a level
// at a time, so `session(id) { agent tasks }` would read the session in one
// round trip and its agent and tasks in the next. The children that only need
// the row's id can be read with the row: the by-id root field of a node type
// starts them in the same tick, and the child fields pick up what was started
// for their path instead of loading again. Which children: every relation
// (`NodeType.relation`: a session's agent, a task's session, a context's agent
// and session) and child list (`NodeType.childList`: a session's tasks, an
// agent's sessions); they declare their prefetch, and the plugin registers it.
// Everything runs in the request's transaction under RLS: a prefetch for a
// row that turns out not to exist (or to be another tenant's) reads nothing
// and is never used.
import { createContextCache } from '@pothos/core';
import { getArgumentValues, isObjectType, Kind, visit, type FieldNode, type FragmentDefinitionNode, type GraphQLField, type GraphQLResolveInfo } from 'graphql';
import type { GraphQLContext } from '../graphql/context.ts';
import { eachField } from './selection.ts';

/** What a child field needs to start its read: its arguments and its own selection. */
export type ChildSelection = {
  readonly args: Record<string, unknown>;
  readonly fieldNodes: readonly FieldNode[];
  readonly fragments: Record<string, FragmentDefinitionNode>;
};

/** How to start a child from its parent's id alone. */
export type Prefetch = (context: GraphQLContext, parentId: string, child: ChildSelection) => Promise<unknown>;

/** By `Type.field`: how to start that child. Schema configuration, set while the schema is built (src/nodes/plugin.ts). */
const prefetches = new Map<string, Prefetch>();
/** The types with at least one prefetched child: a by-id read of any other type looks at nothing. */
const parents = new Set<string>();

/** Per request: what was started, by response path and parent id. */
const started = createContextCache(() => new Map<string, Promise<unknown>>());

/** Declares that `typeName.fieldName` can be read from the parent's id alone (see `prefetched`). */
export function registerPrefetch(typeName: string, fieldName: string, prefetch: Prefetch): void {
  prefetches.set(`${typeName}.${fieldName}`, prefetch);
  parents.add(typeName);
}

/**
 * From a field resolving one `typeName` row by `id`: starts every selected
 * child that has a registered prefetch. Selections are followed through
 * fragments; @skip/@include are ignored (an unused read costs, never misleads).
 */
export function prefetchChildren(context: GraphQLContext, info: GraphQLResolveInfo, typeName: string, id: string): void {
  if (!parents.has(typeName)) return;
  const children = childrenOf(info, typeName);
  if (children.length === 0) return;
  const path = pathKey(info.path);
  const reads = started(context);
  for (const child of children) {
    let promise: Promise<unknown>;
    try {
      const selection = child.selection ?? {
        args: getArgumentValues(child.field, child.fieldNodes[0]!, info.variableValues),
        fieldNodes: child.fieldNodes,
        fragments: info.fragments,
      };
      promise = child.prefetch(context, id, selection);
    } catch {
      continue; // arguments the child field will refuse itself, with its own error
    }
    promise.catch(() => {}); // observed by the child field, if it runs
    reads.set(`${path}.${child.responseKey}|${id}`, promise);
  }
}

/** A selected child with a prefetch; `selection` when its arguments name no variable (the same on every run). */
type Child = {
  readonly responseKey: string;
  readonly prefetch: Prefetch;
  readonly field: GraphQLField<unknown, unknown>;
  readonly fieldNodes: readonly FieldNode[];
  readonly selection: ChildSelection | undefined;
};

/** Per field nodes of a by-id field (the same objects on every run of a cached operation): its prefetched children. */
const childrenByFieldNodes = new WeakMap<readonly FieldNode[], readonly Child[]>();

function childrenOf(info: GraphQLResolveInfo, typeName: string): readonly Child[] {
  let children = childrenByFieldNodes.get(info.fieldNodes);
  if (children) return children;
  const type = info.schema.getType(typeName);
  const found: Child[] = [];
  if (isObjectType(type)) {
    for (const [responseKey, fieldNodes] of selectedFields(info.fieldNodes, info.fragments)) {
      const name = fieldNodes[0]!.name.value;
      const prefetch = prefetches.get(`${typeName}.${name}`);
      const field = type.getFields()[name];
      if (!prefetch || !field) continue;
      let selection: ChildSelection | undefined;
      if (!namesVariables(fieldNodes[0]!)) {
        try {
          selection = { args: Object.freeze(getArgumentValues(field, fieldNodes[0]!, {})), fieldNodes, fragments: info.fragments };
        } catch {
          continue; // literal arguments the child field will refuse itself, with its own error
        }
      }
      found.push({ responseKey, prefetch, field, fieldNodes, selection });
    }
  }
  children = found;
  childrenByFieldNodes.set(info.fieldNodes, children);
  return children;
}

/** Whether a field's arguments name a variable (then they are read per request). */
function namesVariables(field: FieldNode): boolean {
  let named = false;
  for (const argument of field.arguments ?? []) {
    visit(argument.value, {
      [Kind.VARIABLE]: () => {
        named = true;
      },
    });
  }
  return named;
}

/** What `prefetchChildren` started for the field being resolved on the row `parentId`, if anything. */
export function prefetched<T>(context: GraphQLContext, info: GraphQLResolveInfo, parentId: string): Promise<T> | undefined {
  const reads = started(context);
  return reads.size === 0 ? undefined : (reads.get(`${pathKey(info.path)}|${parentId}`) as Promise<T> | undefined);
}

/** Per field nodes (the same objects on every run of a cached operation): what `selectedFields` found. */
const selections = new WeakMap<readonly FieldNode[], ReadonlyMap<string, FieldNode[]>>();

/**
 * The response keys selected under `fieldNodes` (merged, through fragments), each with its field nodes;
 * remembered, so a child's field nodes are the same objects from run to run too (its column choice is remembered by them).
 */
function selectedFields(fieldNodes: readonly FieldNode[], fragments: Record<string, FragmentDefinitionNode>): ReadonlyMap<string, FieldNode[]> {
  let fields = selections.get(fieldNodes);
  if (!fields) {
    fields = collectFields(fieldNodes, fragments);
    selections.set(fieldNodes, fields);
  }
  return fields;
}

function collectFields(fieldNodes: readonly FieldNode[], fragments: Record<string, FragmentDefinitionNode>): Map<string, FieldNode[]> {
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
