// Opaque global ids, base64url("Type:uuid"), and the registry of node types
// they name. The registry is filled by the node type declarations
// (`nodeType()` in node-type.ts), so a declared type is always known: an id
// that does not decode to a registered type and a uuid reads as an id that does not exist.
import type { GraphQLContext } from '../graphql/context.ts';
import { isIdOf } from './ids.ts';
import type { ColumnChoice, Table } from './table.ts';

/** What the schema's plumbing needs of a node type (node-type.ts implements it). */
export type RegisteredNode = {
  readonly name: string;
  readonly table: Table<{ id: string }>;
  /** Per field of the type: the column groups it reads (filled while the schema is built, src/nodes/plugin.ts). */
  readonly fieldChoices: Map<string, ColumnChoice>;
  /** The whole row by id, batched per request; null when it does not exist (or is another tenant's). */
  load(context: GraphQLContext, id: string): Promise<object | null>;
};

const nodeTypes = new Map<string, RegisteredNode>();

export function registerNodeType(node: RegisteredNode): void {
  if (nodeTypes.has(node.name)) throw new Error(`node type ${node.name} is declared twice`);
  nodeTypes.set(node.name, node);
}

/** The node type of that GraphQL name, if it is one. */
export function nodeTypeNamed(name: string): RegisteredNode | undefined {
  return nodeTypes.get(name);
}

/**
 * base64url without padding. Type names and ids are ASCII, so `btoa` (native,
 * no Buffer between) encodes them: 0.4-0.8 us against Buffer's 0.7-1.5 us, for
 * every id of every row a response carries.
 */
export function encodeGlobalId(typename: string, id: string): string {
  let encoded = btoa(`${typename}:${id}`);
  if (encoded.includes('+')) encoded = encoded.replaceAll('+', '-');
  if (encoded.includes('/')) encoded = encoded.replaceAll('/', '_');
  const padding = encoded.indexOf('=');
  return padding < 0 ? encoded : encoded.slice(0, padding);
}

/**
 * The type and id a global id names; undefined for anything else. Decoded by `atob` (the URL alphabet mapped
 * back; 0.5 against Buffer's 1.5-2.4 us a decode): what is not base64 throws there and names nothing, and a
 * decoded text that is not ASCII cannot name a type and a uuid.
 */
export function decodeGlobalId(globalId: string): { typename: string; id: string } | undefined {
  if (globalId.length > 200) return undefined;
  let text: string;
  try {
    text = atob(globalId.includes('-') || globalId.includes('_') ? globalId.replaceAll('-', '+').replaceAll('_', '/') : globalId);
  } catch {
    return undefined;
  }
  const [typename, id, ...rest] = text.split(':');
  const node = typename ? nodeTypes.get(typename) : undefined;
  if (rest.length > 0 || !node || !isIdOf(node.table.idType, id)) return undefined;
  return { typename: typename!, id: id.toLowerCase() };
}
