// What each field costs in the operation cost (graphql/limits.ts): 1 an
// object or list field (a row, or a statement), 0 a scalar (a column of a row
// already counted), and a list multiplies what it selects by how many items it
// may return. Every multiplier is an upper bound, so the cost bounds the rows
// and statements a request causes (test/cost.property.test.ts).
import { getNamedType, getNullableType, isLeafType, isListType, type GraphQLField } from 'graphql';

/** The default and the largest page of a connection (graphql/connection.ts). */
const DEFAULT_PAGE = 20;
const MAX_PAGE = 100;

/** Lists that are not connections, by field name, with their bound; any other list counts as 100. */
const LIST_BOUNDS: Readonly<Record<string, number>> = {
  // A connection's edges: the connection field already multiplied by its page (and edges cost nothing: their nodes do).
  edges: 1,
  // One row per quota kind.
  usage: 5,
  // CreateFineTuningJobInput.datasetContextIds allows 1000.
  datasetContexts: 1000,
};
const OTHER_LIST = 100;

export function fieldPrice(args: Record<string, unknown>, _context: unknown, field: Pick<GraphQLField<unknown, never>, 'name' | 'type'>) {
  if ('first' in args || 'last' in args) {
    const asked = Math.max(pageSize(args.first), pageSize(args.last));
    const page = asked === 0 ? DEFAULT_PAGE : Math.min(asked, MAX_PAGE);
    // The statement and the page's rows (one more, to know whether a next page exists), whatever the nodes select.
    return { field: page + 2, multiplier: page };
  }
  if (isListType(getNullableType(field.type))) return { field: field.name === 'edges' ? 0 : 1, multiplier: LIST_BOUNDS[field.name] ?? OTHER_LIST };
  return isLeafType(getNamedType(field.type)) ? 0 : 1;
}

function pageSize(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}
