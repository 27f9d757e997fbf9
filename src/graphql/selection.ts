// What a request asks of a connection's nodes or of an object, so a
// statement selects only the columns those fields need (src/db/columns.ts).
import { Kind, type FieldNode, type FragmentDefinitionNode, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';
import type { GraphQLContext } from './context.ts';

/**
 * Every field name selected on the nodes of the connection being resolved
 * (`edges { node { … } }`), through fragments and across every selection of
 * the same field merged into one, and `cursor` when the request asks for a
 * cursor (`edges { cursor }`, `pageInfo { startCursor endCursor }`): the rows'
 * positions are read only then. @skip/@include are ignored: a superset of
 * what is needed is always safe.
 */
export function connectionNodeFields(info: Selected): ReadonlySet<string> {
  const names = new Set<string>();
  const fieldsOf = (set: SelectionSetNode | undefined, visit: (field: FieldNode) => void) => eachField(set, info.fragments, visit);
  for (const field of info.fieldNodes) {
    fieldsOf(field.selectionSet, ({ name, selectionSet }) => {
      if (name.value === 'edges') {
        fieldsOf(selectionSet, (edge) => {
          if (edge.name.value === 'node') fieldsOf(edge.selectionSet, (nodeField) => names.add(nodeField.name.value));
          else if (edge.name.value === 'cursor') names.add('cursor');
        });
      } else if (name.value === 'pageInfo') {
        fieldsOf(selectionSet, (pageField) => {
          if (pageField.name.value === 'startCursor' || pageField.name.value === 'endCursor') names.add('cursor');
        });
      }
    });
  }
  return names;
}

/** Every field name selected on the object being resolved, as `connectionNodeFields` sees a list's nodes. */
export function objectFields(info: Selected): ReadonlySet<string> {
  const names = new Set<string>();
  for (const field of info.fieldNodes) eachField(field.selectionSet, info.fragments, (selected) => names.add(selected.name.value));
  return names;
}

type Selected = Pick<GraphQLResolveInfo, 'fieldNodes' | 'fragments'>;

/** Visits the fields of a selection set, through inline fragments and fragment spreads. */
export function eachField(
  selectionSet: SelectionSetNode | undefined,
  fragments: Record<string, FragmentDefinitionNode>,
  visit: (field: FieldNode) => void,
): void {
  for (const selection of selectionSet?.selections ?? []) {
    if (selection.kind === Kind.FIELD) visit(selection);
    else if (selection.kind === Kind.INLINE_FRAGMENT) eachField(selection.selectionSet, fragments, visit);
    else eachField(fragments[selection.name.value]?.selectionSet, fragments, visit);
  }
}

/**
 * A column of a row a list read in part, or, when the list left it out, the
 * same column of the whole row (loaded by id, batched). The lists read what
 * `connectionNodeFields` finds, so the fallback only guards against a field
 * the analysis did not see: a cost, never a wrong answer.
 */
export function column<Row, K extends keyof Row>(row: Partial<Row>, key: K, whole: () => Promise<Row>): Row[K] | Promise<Row[K]> {
  const value = row[key];
  return value === undefined ? whole().then((full) => full[key]) : value;
}

/** `column` for one type, reading whole rows through `whole` (its by-id loader). */
export function detailColumns<Row extends { id: string }>(whole: (context: GraphQLContext, id: string) => Promise<Row>) {
  return <K extends keyof Row>(row: Partial<Row> & { id: string }, key: K, context: GraphQLContext): Row[K] | Promise<Row[K]> =>
    column<Row, K>(row, key, () => whole(context, row.id));
}
