// Tenant node types, declared once. A repository declares its table (which
// columns, in which groups, named by row keys); a schema file declares the
// node type on it (its fields); everything else follows from the two:
// the object type with a global id, its per-request loader, `node(id)` and
// every id argument (the registry of node types is the set of declarations),
// `<Type>Connection` lists with column pruning and cursors, child lists
// batched across parents, relations, the by-id root field and what it
// prefetches in the same round trip.
//
// A new tenant type with lists, a child list, column pruning and prefetch
// (say the artifacts a session produces) is four files:
//
// 1. A migration (migrations/README.md has the checklist): app.artifacts with
//    tenant_id, a uuid id, session_id (foreign key with tenant_id), created_at;
//    RLS; an index per list order: (tenant_id, created_at, id) for the
//    tenant's list, (tenant_id, session_id, created_at, id) for a session's;
//    its audit trigger (app_private.audit_row), and notify_row_change('Artifact')
//    if subscriptions are to follow it.
// 2. src/modules/artifacts/repo.ts, the SQL half:
//      export const artifacts = table<ArtifactRow>({
//        name: 'app.artifacts',
//        columns: [{ id: true, sessionId: true, name: true }, { createdAt: true, createdBy: true }, { content: true }],
//        orderBy: 'created_at',
//      });
//      export const artifactConditions = (tx: Tx, filter: ArtifactFilter) => conditions(tx, filter.name && tx`and name = ${filter.name}`);
//    The first group is always read; a list reads another group only when a
//    selected field needs one of its keys. Keys are row keys (`createdAt: true`
//    reads created_at, `size: 'octet_length(content)'` an expression), never GraphQL fields.
// 3. src/modules/artifacts/schema.ts, the GraphQL half:
//      export const Artifact = nodeType('Artifact', {
//        table: artifacts, byId: 'artifact', description: 'A file a session produced',
//        fields: (t) => ({
//          session: Session.relation(t, 'sessionId'),       // read with the row by artifact(id) { session }
//          name: t.exposeString('name'),
//          content: t.exposeString('content'),               // read by a list only when selected
//          createdAt: t.expose('createdAt', { type: 'DateTime' }),
//          createdBy: t.field({ type: UserRef, nullable: true, resolve: (artifact) => artifact.createdBy }),
//        }),
//      });
//      builder.queryFields((t) => ({ artifacts: t.field({
//        type: Artifact.connection, authScopes: { viewer: true },
//        args: { ...t.arg.connectionArgs(), orderBy: orderByArg(t.arg) },
//        resolve: Artifact.list((tx, args) => artifactConditions(tx, {})) }) }));
//      builder.objectFields(Session.ref, (t) => ({ artifacts: Artifact.childList(t, {   // batched; read with session(id)
//        parentKey: 'sessionId', description: "This session's artifacts",
//        args: { ...t.arg.connectionArgs() }, where: (tx) => artifactConditions(tx, {}) }) }));
//    A field named after a row key or exposing one needs nothing more; any
//    other field names the row keys it reads: `extensions: { columns: ['acceptedAt', …] }`
//    (a start-up error names the field that forgot).
// 4. One import in src/graphql/schema.ts: `import '../modules/artifacts/schema.ts';`
//
// Ids are uuids unless the table says `idType: 'bigint'` (an identity column:
// cursors, global ids and id parameters follow it), read from `id` unless it
// says `idColumn` (app.audit_events: its random event_id, never the identity
// all tenants share, whose gaps would count other tenants' events); lists order by a time
// column (`created_at`, `started_at`, `occurred_at`) with the id breaking ties.
// A list without an `orderBy` argument reads oldest first, or newest first
// with `list(where, { newestFirst: true })` (a log: src/modules/audit-events).
//
// Then `npm run schema` regenerates schema.graphql and docs/permissions.md;
// the tests that fail until told of the type: test/nodes.test.ts (each node
// type by a list that shows it), test/audit-coverage.test.ts (a scenario per
// new mutation), test/citus-ready.test.ts (the table in docs/deployment.md's plan).
//
// Files: node-type.ts (the declaration), plugin.ts (the Pothos plugin that
// maps fields to row keys and completes rows read in part), global-id.ts (ids
// and the registry), connection.ts, selection.ts, prefetch.ts, lists.ts; the
// SQL half, which repositories import: table.ts, keyset.ts, ids.ts.
export { connectionType, keysetConnection } from './connection.ts';
export { createdRange, createdRangeFields, orderByArg } from './lists.ts';
export { nodeType, type NodeType } from './node-type.ts';
export { NO_ROWS } from './table.ts';
