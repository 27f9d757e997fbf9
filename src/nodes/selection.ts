// What a request asks of a connection's nodes or of an object, so a
// statement reads only the columns those fields need (node types map fields
// to column groups, src/nodes/table.ts), and how a row read in part is
// completed when a field needs a column it lacks.
import { Kind, type FieldNode, type FragmentDefinitionNode, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';

type Selected = Pick<GraphQLResolveInfo, 'fieldNodes' | 'fragments'>;

/** The field names selected on a connection's nodes, and whether a cursor is asked for (rows' positions are read only then). */
export type NodeSelection = { readonly fields: ReadonlySet<string>; readonly cursor: boolean };

/**
 * Every field name selected on the nodes of the connection being resolved
 * (`edges { node { … } }`), through fragments and across every selection of
 * the same field merged into one; `cursor` when the request asks for one
 * (`edges { cursor }`, `pageInfo { startCursor endCursor }`). @skip/@include
 * are ignored: a superset of what is needed is always safe.
 */
export function connectionNodeSelection(info: Selected): NodeSelection {
  const fields = new Set<string>();
  let cursor = false;
  const fieldsOf = (set: SelectionSetNode | undefined, visit: (field: FieldNode) => void) => eachField(set, info.fragments, visit);
  for (const field of info.fieldNodes) {
    fieldsOf(field.selectionSet, ({ name, selectionSet }) => {
      if (name.value === 'edges') {
        fieldsOf(selectionSet, (edge) => {
          if (edge.name.value === 'node') fieldsOf(edge.selectionSet, (nodeField) => fields.add(nodeField.name.value));
          else if (edge.name.value === 'cursor') cursor = true;
        });
      } else if (name.value === 'pageInfo') {
        fieldsOf(selectionSet, (pageField) => {
          if (pageField.name.value === 'startCursor' || pageField.name.value === 'endCursor') cursor = true;
        });
      }
    });
  }
  return { fields, cursor };
}

/** Every field name selected on the object being resolved, as `connectionNodeSelection` sees a list's nodes. */
export function objectFields(info: Selected): ReadonlySet<string> {
  const names = new Set<string>();
  for (const field of info.fieldNodes) eachField(field.selectionSet, info.fragments, (selected) => names.add(selected.name.value));
  return names;
}

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
 * Whether a row read in part lacks one of `keys`: then a field that needs
 * them resolves on the whole row (loaded by id, batched). Lists and rows read
 * by id (the by-id root field, relations) read what the selection analysis
 * finds, so the whole row only guards against a field the
 * analysis did not see: a cost, never a wrong answer. (A column read as SQL
 * NULL is `null`, never `undefined`.)
 */
export function lacksColumns(row: object, keys: readonly string[]): boolean {
  for (const key of keys) if ((row as Record<string, unknown>)[key] === undefined) return true;
  return false;
}

/** One column of a row read in part, from the whole row when the row lacks it (see `lacksColumns`). */
export function column<Row, K extends keyof Row>(row: Partial<Row>, key: K, whole: () => Promise<Row>): Row[K] | Promise<Row[K]> {
  const value = row[key];
  return value === undefined ? whole().then((full) => full[key]) : value;
}
