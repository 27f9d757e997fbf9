// Keyset cursors over (created_at, id): stable under inserts and deletes.
import { badUserInput } from '../errors.ts';
import { isUuid } from '../auth/tokens.ts';

export type Position = { readonly at: string; readonly id: string };

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

export function encodeCursor(position: Position): string {
  return Buffer.from(`${position.at}|${position.id}`).toString('base64url');
}

export function decodeCursor(cursor: string | null | undefined, argument: string): Position | undefined {
  if (cursor == null) return undefined;
  const [at, id, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (rest.length > 0 || !at || !TIMESTAMP.test(at) || !isUuid(id)) {
    throw badUserInput(argument, 'is not a cursor this list returned');
  }
  return { at, id };
}
