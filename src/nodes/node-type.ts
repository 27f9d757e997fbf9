// A tenant node type, declared once: its table (src/nodes/table.ts), its
// fields, and from those the GraphQL object with a global id, its per-request
// loader, its connection type, the registry entry that `node(id)` and every
// id argument use, the by-id root field with prefetch, and the resolvers of its
// lists, child lists and relations with column pruning. See src/nodes/index.ts.
import { brandWithType, createContextCache, type FieldMap, type InputFieldMap, type InputShapeFromFields, type ObjectRef } from '@pothos/core';
import { pathDataloaderGetter } from '@pothos/plugin-dataloader';
import DataLoader from 'dataloader';
import type { FieldNode, GraphQLResolveInfo } from 'graphql';
import type { Tx } from '../db/pool.ts';
import { notFound } from '../errors.ts';
import { builder } from '../graphql/builder.ts';
import type { GraphQLContext } from '../graphql/context.ts';
import { connectionType, keysetConnection, type Connection, type ConnectionArgs } from './connection.ts';
import { decodeGlobalId, encodeGlobalId, nodeTypeNamed, registerNodeType, type RegisteredNode } from './global-id.ts';
import type { NodeFieldExtensions } from './plugin.ts';
import { prefetchChildren, prefetched } from './prefetch.ts';
import { connectionNodeSelection, eachField, objectFields } from './selection.ts';
import type { ColumnChoice, Listed, Table, Where } from './table.ts';

type Types = typeof builder.$inferSchemaTypes;
type FieldBuilder<Row> = PothosSchemaTypes.ObjectFieldBuilder<Types, Row>;
type Selected = Pick<GraphQLResolveInfo, 'fieldNodes' | 'fragments'>;
/** A row wanted by id, with the columns its reader needs (`WHOLE`: every column). */
type Wanted = { readonly id: string; readonly choice: ColumnChoice };
/** The keys of `Row` that hold another row's id. */
type IdKey<Row> = { [K in keyof Row]-?: Row[K] extends string | null ? K : never }[keyof Row] & string;
/** A list's arguments as this machinery reads them; `orderBy` where the list has one (`SortOrderEnum`). */
type ListArgs = ConnectionArgs & { readonly orderBy?: 'oldest' | 'newest' | null };

export type NodeTypeOptions<Row extends { id: string }> = {
  readonly table: Table<Row>;
  readonly description: string;
  /** The type's fields but `id` (a global id, added here). A field reading columns it is not named after says so: `extensions: { columns: [...] }`. */
  readonly fields: (t: FieldBuilder<Row>) => FieldMap;
  /** The root field that reads one row by its global id (`agent(id:)`), starting its prefetched children with it. */
  readonly byId?: string;
};

export class NodeType<Row extends { id: string }> implements RegisteredNode {
  readonly name: string;
  readonly table: Table<Row>;
  readonly ref: ObjectRef<Types, Row>;
  /** `<Name>Connection`: what the type's lists return. */
  readonly connection: ObjectRef<Types, Connection<Row>>;
  readonly fieldChoices = new Map<string, ColumnChoice>();
  readonly #loader: (context: GraphQLContext) => DataLoader<Wanted, Listed<Row> | null, string>;
  readonly #listChoices = new WeakMap<Selected['fieldNodes'], ColumnChoice>();
  readonly #objectChoices = new WeakMap<Selected['fieldNodes'], ColumnChoice>();
  readonly #payloadChoices = new WeakMap<Selected['fieldNodes'], ColumnChoice>();

  constructor(name: string, options: NodeTypeOptions<Row>) {
    this.name = name;
    this.table = options.table;
    // One statement a batch: every id wanted in the tick, with the columns any of them needs (a row wanted whole
    // and in part in one tick is read once, whole). A row is cached per id and choice.
    this.#loader = createContextCache(
      (context: GraphQLContext) =>
        new DataLoader<Wanted, Listed<Row> | null, string>(
          async (wanted) => {
            let choice = 0;
            const ids = new Set<string>();
            for (const want of wanted) {
              choice |= want.choice;
              ids.add(want.id);
            }
            const rows = await context.db.run((tx) => this.table.byIds(tx, [...ids], choice));
            const byId = new Map(rows.map((row) => [row.id, row]));
            return wanted.map((want) => byId.get(want.id) ?? null);
          },
          { cacheKeyFn: (want) => `${want.choice} ${want.id}` },
        ),
    );
    registerNodeType(this);
    this.ref = builder.objectRef<Row>(name).implement({
      description: options.description,
      interfaces: [builder.nodeInterfaceRef()],
      // The id is the row's own id, encoded: resolved synchronously, and called by compiled queries in place
      // (jitInlineResolve: no resolve info, path or closures per row; src/graphql/schema.ts refuses a wrapper on it).
      fields: (t) => ({ id: t.id({ resolve: (row) => encodeGlobalId(name, row.id), extensions: { jitInlineResolve: true } }), ...options.fields(t) }),
    });
    this.connection = connectionType(name, this.ref);
    if (options.byId) this.#byIdField(options.byId);
  }

  /** The whole row by id, batched per request; null when it does not exist or RLS hides it. */
  load(context: GraphQLContext, id: string): Promise<Row | null> {
    return this.#loader(context).load({ id, choice: this.table.WHOLE }) as Promise<Row | null>;
  }

  /**
   * The row by id with the columns the object being resolved needs (`objectChoice`), batched with `load`; a field
   * the choice missed still gets its columns: the plugin completes a row read in part from the whole row.
   */
  #loadFor(context: GraphQLContext, id: string, selection: Selected): Promise<Listed<Row> | null> {
    return this.#loader(context).load({ id, choice: this.objectChoice(selection) });
  }

  /** The row a global id of this type names, or NOT_FOUND (for mutations: a foreign id reads as one that does not exist). */
  async find(context: GraphQLContext, globalId: string): Promise<Row> {
    const id = this.parseId(globalId);
    const [row] = id ? await context.db.run((tx) => this.table.byIds(tx, [id])) : [];
    if (!row) throw notFound(this.name);
    return row;
  }

  /** The uuid inside a global id of this type; undefined when it names nothing of this type. */
  parseId(globalId: string): string | undefined {
    const decoded = decodeGlobalId(globalId);
    return decoded?.typename === this.name ? decoded.id : undefined;
  }

  /**
   * A root list field's resolver: a page of the tenant's rows matching
   * `where` (the repository's conditions for the field's arguments), with the
   * columns the selected fields need; oldest first unless `orderBy` or
   * `newestFirst` (for a list without the argument) says otherwise.
   */
  list<Args extends ListArgs>(where: (tx: Tx, args: Args) => Where, options: { readonly newestFirst?: boolean } = {}) {
    return (_root: unknown, args: Args, context: GraphQLContext, info: GraphQLResolveInfo): Promise<Connection<Row>> => {
      const choice = this.listChoice(info);
      return keysetConnection(
        args,
        (page) => context.db.run((tx) => this.table.page(tx, page, choice, where(tx, args))) as Promise<Row[]>,
        // A list without an orderBy argument reads in the order it declares (a log: newest first).
        args.orderBy == null ? options.newestFirst === true : args.orderBy === 'newest',
        this.table.idType,
      );
    };
  }

  /**
   * A list of this type under a parent node (`Agent.sessions`): the rows whose
   * `parentKey` holds the parent's id. One statement per path of the query
   * for all its parents (each path has its own arguments), and read with the
   * parent when a by-id root field prefetches it.
   */
  childList<Parent extends { id: string }, Args extends InputFieldMap>(
    t: FieldBuilder<Parent>,
    options: {
      readonly parentKey: IdKey<Row>;
      readonly description: string;
      readonly args: Args;
      readonly where: (tx: Tx, args: InputShapeFromFields<Args> & ListArgs) => Where;
    },
  ) {
    type Values = InputShapeFromFields<Args> & ListArgs;
    const { parentKey, where } = options;
    const pages = (context: GraphQLContext, parentIds: readonly string[], args: Values, choice: ColumnChoice) => {
      let rows: Promise<Listed<Row>[]> | undefined;
      return Promise.all(
        parentIds.map((parentId) =>
          keysetConnection(
            args,
            async (page) => {
              rows ??= context.db.run((tx) => this.table.pagesOf(tx, parentKey, parentIds, page, choice, where(tx, args)));
              return (await rows).filter((row) => row[parentKey] === parentId) as Row[];
            },
            args.orderBy === 'newest',
            this.table.idType,
          ),
        ),
      );
    };
    const loader = pathDataloaderGetter(
      undefined,
      (parentIds: readonly string[], context, args: Values, info) => pages(context as GraphQLContext, parentIds, args, this.listChoice(info)),
      undefined,
      false,
      true,
    );
    const extensions: NodeFieldExtensions = {
      columns: ['id'],
      prefetch: () => async (context, parentId, child) => (await pages(context, [parentId], child.args as Values, this.listChoice(child)))[0],
    };
    const resolve = (parent: Parent, args: Values, context: GraphQLContext, info: GraphQLResolveInfo): Promise<Connection<Row>> =>
      prefetched<Connection<Row>>(context, info, parent.id) ?? loader(args, context, info).load(parent.id);
    return t.field({ type: this.connection, description: options.description, args: options.args, extensions, resolve });
  }

  /**
   * A field of another node type that holds this type's row by id in `key`
   * (`Session.agent` through `agentId`): loaded by id, batched; read with the
   * parent when a by-id root field prefetches it.
   */
  relation<Parent extends { id: string }>(t: FieldBuilder<Parent>, key: IdKey<Parent>, options: { readonly description?: string } = {}) {
    return t.field({
      type: this.ref,
      description: options.description,
      extensions: this.#relationExtensions(key),
      // A reference that is not null points into the tenant (foreign keys include tenant_id).
      resolve: ((parent: Parent, _args: unknown, context: GraphQLContext, info: GraphQLResolveInfo) => this.#related(parent, key, context, info)) as never,
    });
  }

  /** `relation` through a key that may be null: the field is null then. */
  optionalRelation<Parent extends { id: string }>(t: FieldBuilder<Parent>, key: IdKey<Parent>, options: { readonly description?: string } = {}) {
    return t.field({
      type: this.ref,
      nullable: true,
      description: options.description,
      extensions: this.#relationExtensions(key),
      resolve: ((parent: Parent, _args: unknown, context: GraphQLContext, info: GraphQLResolveInfo) => this.#related(parent, key, context, info)) as never,
    });
  }

  #relationExtensions<Parent extends { id: string }>(key: IdKey<Parent>): NodeFieldExtensions {
    return {
      columns: [key],
      prefetch: (parent) => (context, parentId, child) =>
        context.db.run((tx) => this.table.rowVia(tx, this.objectChoice(child), parent.table as unknown as Table<Parent>, key, parentId)),
    };
  }

  #related<Parent extends { id: string }>(parent: Parent, key: IdKey<Parent>, context: GraphQLContext, info: GraphQLResolveInfo): Promise<Listed<Row> | null> | null {
    const id = parent[key] as string | null;
    if (id === null) return null;
    return prefetched<Listed<Row> | undefined>(context, info, parent.id)?.then((row) => row ?? this.#loadFor(context, id, info)) ?? this.#loadFor(context, id, info);
  }

  /**
   * The columns the nodes of the connection being resolved need. Remembered
   * per field nodes: a cached operation's (graphql-jit) are the same objects on
   * every request, and with the document's fragments they decide the answer.
   */
  listChoice(info: Selected): ColumnChoice {
    let choice = this.#listChoices.get(info.fieldNodes);
    if (choice === undefined) {
      const { fields, cursor } = connectionNodeSelection(info);
      choice = this.#choiceOf(fields) | (cursor ? this.table.POSITION : 0);
      this.#listChoices.set(info.fieldNodes, choice);
    }
    return choice;
  }

  /** The columns the object being resolved needs; remembered per field nodes, as `listChoice`. */
  objectChoice(selection: Selected): ColumnChoice {
    let choice = this.#objectChoices.get(selection.fieldNodes);
    if (choice === undefined) {
      choice = this.#choiceOf(objectFields(selection));
      this.#objectChoices.set(selection.fieldNodes, choice);
    }
    return choice;
  }

  /**
   * The columns the object selected at `field` of the field being resolved needs (a payload's `task`): what a
   * write returns (`insert … returning`), so its answer parses no column it does not show. Remembered per field nodes.
   */
  payloadChoice(info: Selected, field: string): ColumnChoice {
    let choice = this.#payloadChoices.get(info.fieldNodes);
    if (choice === undefined) {
      const fieldNodes: FieldNode[] = [];
      for (const node of info.fieldNodes) eachField(node.selectionSet, info.fragments, (selected) => selected.name.value === field && fieldNodes.push(selected));
      choice = this.#choiceOf(objectFields({ fieldNodes, fragments: info.fragments }));
      this.#payloadChoices.set(info.fieldNodes, choice);
    }
    return choice;
  }

  #choiceOf(fields: ReadonlySet<string>): ColumnChoice {
    let choice = 1;
    for (const field of fields) choice |= this.fieldChoices.get(field) ?? 0;
    return choice;
  }

  #byIdField(fieldName: string): void {
    builder.queryField(fieldName, (t) =>
      t.field({
        type: this.ref,
        nullable: true,
        authScopes: { viewer: true },
        args: { id: t.arg.id({ required: true }) },
        resolve: ((_root: unknown, args: { id: string }, context: GraphQLContext, info: GraphQLResolveInfo) => {
          const id = this.parseId(args.id);
          if (!id) return null;
          prefetchChildren(context, info, this.name, id);
          return this.#loadFor(context, id, info);
        }) as never,
      }),
    );
  }
}

/** Declares a tenant node type (see src/nodes/index.ts for the whole recipe). */
export function nodeType<Row extends { id: string }>(name: string, options: NodeTypeOptions<Row>): NodeType<Row> {
  return new NodeType(name, options);
}

// `node(id:)`: any registered type's row by its global id; null for anything else.
builder.queryField('node', (t) =>
  t.field({
    type: builder.nodeInterfaceRef(),
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, args, context) => {
      const decoded = decodeGlobalId(args.id);
      const node = decoded && nodeTypeNamed(decoded.typename);
      const row = node ? await node.load(context, decoded.id) : null;
      if (row) brandWithType(row, decoded!.typename as never);
      return row;
    },
  }),
);
