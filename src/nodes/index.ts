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
// (say audit events, listed per agent) is four files:
//
// 1. A migration (migrations/README.md): the table with tenant_id, RLS, the
//    index its list is ordered by (tenant_id, created_at, id), and for a child
//    list one on (tenant_id, agent_id, created_at, id).
// 2. src/modules/audit-events/repo.ts, the SQL half:
//      export const auditEvents = table<AuditEventRow>({
//        name: 'app.audit_events',
//        columns: [{ id: true, agentId: true, action: true }, { createdAt: true }, { details: true }],
//        orderBy: 'created_at',
//      });
//      export const auditConditions = (tx: Tx, filter: AuditFilter) => conditions(tx, filter.action && tx`and action = ${filter.action}`);
//    The first group is always read; a list reads another group only when a
//    selected field needs one of its keys. Keys are row keys (`createdAt: true`
//    reads created_at), never GraphQL fields.
// 3. src/modules/audit-events/schema.ts, the GraphQL half:
//      export const AuditEvent = nodeType('AuditEvent', {
//        table: auditEvents, byId: 'auditEvent', description: '…',
//        fields: (t) => ({
//          agent: Agent.relation(t, 'agentId'),            // prefetched by auditEvent(id) { agent }
//          action: t.exposeString('action'),
//          createdAt: t.expose('createdAt', { type: 'DateTime' }),
//          details: t.expose('details', { type: 'JSONObject' }),
//        }),
//      });
//      builder.queryFields((t) => ({ auditEvents: t.field({
//        type: AuditEvent.connection, authScopes: { viewer: true },
//        args: { ...t.arg.connectionArgs(), orderBy: orderByArg(t.arg) },
//        resolve: AuditEvent.list((tx, args) => auditConditions(tx, {})) }) }));
//      builder.objectFields(Agent.ref, (t) => ({ auditEvents: t.field({      // a child list, batched, prefetched by agent(id)
//        type: AuditEvent.connection, args: { ...t.arg.connectionArgs() },
//        ...AuditEvent.childList('agentId', (tx, args) => auditConditions(tx, {})) }) }));
//    A field named after a row key or exposing one needs nothing more; any
//    other field names the row keys it reads: `extensions: { columns: ['acceptedAt', …] }`
//    (a start-up error says which field forgot).
// 4. One import in src/graphql/schema.ts: `import '../modules/audit-events/schema.ts';`
//
// Then `npm run schema` regenerates schema.graphql and docs/permissions.md.
//
// Files: node-type.ts (the declaration), plugin.ts (the Pothos plugin that
// maps fields to row keys and completes rows read in part), global-id.ts (ids
// and the registry), connection.ts, selection.ts, prefetch.ts, lists.ts; the
// SQL half, which repositories import: table.ts, keyset.ts, ids.ts.
export { connectionType, keysetConnection, type Connection, type ConnectionArgs } from './connection.ts';
export { encodeGlobalId, idOfType } from './global-id.ts';
export { createdRange, createdRangeFields, orderByArg, SortOrderEnum } from './lists.ts';
export { NodeType, nodeType } from './node-type.ts';
