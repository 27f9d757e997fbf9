// The work a document may cause, known before it runs (invariant 11). Two
// measures: `measureDocument` reads the document's shape once (depth,
// aliases, directives, fields as fragments expand them: counted with one
// result per fragment, never by expanding), before validation and cached with
// the document; `operationCost` prices one operation with its variables,
// multiplying by the page sizes its lists ask for (@pothos/plugin-complexity's
// walk, memoised per selection set). Both are refused with BAD_USER_INPUT and
// `extensions.limit`.
import { complexityFromQuery } from '@pothos/plugin-complexity';
import { Kind, visit, type DefinitionNode, type DocumentNode, type FragmentDefinitionNode, type GraphQLSchema, type OperationDefinitionNode, type SelectionSetNode } from 'graphql';
import { apiError } from '../errors.ts';

export type DocumentLimits = {
  /** Bytes of query text. */
  readonly documentBytes: number;
  /** Lexical tokens (graphql-js counts them while parsing; comments are not tokens, `documentBytes` bounds them). */
  readonly tokens: number;
  /** Nesting of fields, through fragments. */
  readonly depth: number;
  readonly aliases: number;
  readonly directives: number;
  /** Field selections once every fragment spread is expanded. */
  readonly fields: number;
  /** Fields priced by the list sizes they ask for. */
  readonly cost: number;
};

export type DocumentShape = { readonly depth: number; readonly aliases: number; readonly directives: number; readonly fields: number };

type Measure = { depth: number; aliases: number; directives: number; fields: number };

const limitError = (limit: keyof DocumentLimits, max: number, found: number, what: string) =>
  apiError('BAD_USER_INPUT', `The document ${what} (${found}, at most ${max})`, { limit, max, found, http: { status: 400 } });

/**
 * The shape of every operation of a parsed document, or the first limit it
 * passes. Linear in the document's size whatever its fragments do; a
 * fragment cycle stops the walk (validation names it).
 */
export function measureDocument(document: DocumentNode, limits: DocumentLimits): DocumentShape {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const done = new Map<string, Measure>();
  const active = new Set<string>();

  const measureSet = (set: SelectionSetNode): Measure => {
    const total: Measure = { depth: 0, aliases: 0, directives: 0, fields: 0 };
    const add = (part: Measure, deeper: number) => {
      total.depth = Math.max(total.depth, part.depth + deeper);
      total.aliases += part.aliases;
      total.directives += part.directives;
      total.fields += part.fields;
    };
    for (const selection of set.selections) {
      const directives = selection.directives?.length ?? 0;
      if (selection.kind === Kind.FIELD) {
        const inner = selection.selectionSet ? measureSet(selection.selectionSet) : { depth: 0, aliases: 0, directives: 0, fields: 0 };
        add({ depth: inner.depth, aliases: inner.aliases + (selection.alias ? 1 : 0), directives: inner.directives + directives, fields: inner.fields + 1 }, 1);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const inner = measureSet(selection.selectionSet);
        add({ ...inner, directives: inner.directives + directives }, 0);
      } else {
        const inner = measureFragment(selection.name.value);
        add({ ...inner, directives: inner.directives + directives }, 0);
      }
      // Checked as the totals grow: a document far past a limit stops early.
      if (total.fields > limits.fields) throw limitError('fields', limits.fields, total.fields, 'selects too many fields once its fragments are expanded');
    }
    return total;
  };

  const measureFragment = (name: string): Measure => {
    const known = done.get(name);
    if (known) return known;
    const fragment = fragments.get(name);
    if (!fragment || active.has(name)) return { depth: 0, aliases: 0, directives: 0, fields: 0 };
    active.add(name);
    const measured = measureSet(fragment.selectionSet);
    measured.directives += fragment.directives?.length ?? 0;
    active.delete(name);
    done.set(name, measured);
    return measured;
  };

  const shape: Measure = { depth: 0, aliases: 0, directives: 0, fields: 0 };
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION) continue;
    const measured = measureSet(definition.selectionSet);
    shape.depth = Math.max(shape.depth, measured.depth);
    shape.aliases = Math.max(shape.aliases, measured.aliases);
    shape.directives = Math.max(shape.directives, measured.directives + (definition.directives?.length ?? 0));
    shape.fields = Math.max(shape.fields, measured.fields);
  }
  if (shape.depth > limits.depth) throw limitError('depth', limits.depth, shape.depth, 'nests fields too deeply');
  if (shape.aliases > limits.aliases) throw limitError('aliases', limits.aliases, shape.aliases, 'has too many aliases');
  if (shape.directives > limits.directives) throw limitError('directives', limits.directives, shape.directives, 'has too many directives');
  return shape;
}

/**
 * How deeply the text nests brackets, braces and parentheses outside strings
 * and comments: graphql-js parses (and valueFromAST reads) nested input
 * values recursively, so a deep literal must be refused before parsing.
 */
export function textNesting(query: string): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < query.length; i++) {
    const c = query.charCodeAt(i);
    if (c === 0x7b || c === 0x5b || c === 0x28) deepest = Math.max(deepest, ++depth); // { [ (
    else if (c === 0x7d || c === 0x5d || c === 0x29) depth--;
    else if (c === 0x23) while (i < query.length && query.charCodeAt(i) !== 0x0a) i++; // # comment
    else if (c === 0x22) i = endOfString(query, i);
  }
  return deepest;
}

function endOfString(query: string, start: number): number {
  if (query.startsWith('"""', start)) {
    const end = query.indexOf('"""', start + 3);
    return end === -1 ? query.length : end + 2;
  }
  for (let i = start + 1; i < query.length; i++) {
    const c = query.charCodeAt(i);
    if (c === 0x5c) i++; // backslash escape
    else if (c === 0x22 || c === 0x0a) return i;
  }
  return query.length;
}

/** The operation alone with the document's fragments: what `operationCost` prices (built once per cached operation). */
export function operationDocument(document: DocumentNode, operation: OperationDefinitionNode): DocumentNode {
  const definitions: DefinitionNode[] = [operation];
  for (const definition of document.definitions) if (definition.kind === Kind.FRAGMENT_DEFINITION) definitions.push(definition);
  return { kind: Kind.DOCUMENT, definitions };
}

/**
 * The cost of `operationDocument` with these variables: each field costs 1,
 * times the page size of every list above it (graphql/prices.ts). Undefined
 * when the variables do not coerce: the executor refuses them with its own error.
 */
export function operationCost(schema: GraphQLSchema, operation: DocumentNode, variables: Record<string, unknown> | undefined): number | undefined {
  try {
    return complexityFromQuery(operation, { schema, variables: variables ?? {} }).complexity;
  } catch (error) {
    if (error instanceof Error && (error.name === 'PothosValidationError' || error.name === 'GraphQLError')) return undefined;
    throw error;
  }
}

/**
 * True when no variable reaches a `first` or `last` argument: the only
 * arguments prices read (graphql/prices.ts), so the cost is the same for any
 * variables and can be computed once per operation.
 */
export function costIgnoresVariables(operation: DocumentNode): boolean {
  let ignores = true;
  visit(operation, {
    Argument(node) {
      if ((node.name.value === 'first' || node.name.value === 'last') && node.value.kind !== Kind.INT) ignores = false;
    },
  });
  return ignores;
}

export function refuseCost(cost: number | undefined, max: number): void {
  if (cost !== undefined && cost > max) {
    throw apiError('BAD_USER_INPUT', `The operation costs too much (${cost}, at most ${max}): ask for smaller pages or fewer nested lists`, {
      limit: 'cost',
      max,
      cost,
      http: { status: 400 },
    });
  }
}
