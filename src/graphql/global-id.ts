// Opaque global ids: base64url("Type:uuid"). Anything that does not decode to
// a known type and a uuid is treated as an id that does not exist.
import { isUuid } from '../auth/tokens.ts';

export const NODE_TYPES: ReadonlySet<string> = new Set(['Agent', 'Session', 'Task', 'Context', 'FineTuningJob']);

export function encodeGlobalId(typename: string, id: string): string {
  return Buffer.from(`${typename}:${id}`).toString('base64url');
}

export function decodeGlobalId(globalId: string): { typename: string; id: string } | undefined {
  if (globalId.length > 200) return undefined;
  const [typename, id, ...rest] = Buffer.from(globalId, 'base64url').toString('utf8').split(':');
  if (rest.length > 0 || !typename || !NODE_TYPES.has(typename) || !isUuid(id)) return undefined;
  return { typename, id: id.toLowerCase() };
}

/** The uuid inside a global id of `typename`, or undefined when it names nothing of that type. */
export function idOfType(globalId: string, typename: string): string | undefined {
  const decoded = decodeGlobalId(globalId);
  return decoded?.typename === typename ? decoded.id : undefined;
}
