// Relay connections over keyset pages: cursors are opaque positions.
import { resolveCursorConnection } from '@pothos/plugin-relay';
import { isUuid } from '../auth/tokens.ts';
import type { KeysetPage, Position } from '../db/keyset.ts';
import { badUserInput } from '../errors.ts';

export type ConnectionArgs = {
  first?: number | null;
  last?: number | null;
  after?: string | null;
  before?: string | null;
};

// A UTC timestamp as PostgreSQL prints it ("2026-01-01 10:00:00.000123"), or in ISO 8601 with T and Z.
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z?$/;

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

/** A page of at most 100 (20 by default) rows fetched by `load`, as a Relay connection. */
export function keysetConnection<Row extends { id: string; position: string }>(
  args: ConnectionArgs,
  load: (page: KeysetPage) => Promise<Row[]>,
  newestFirst = false,
) {
  return resolveCursorConnection<Promise<Row[]>>(
    { args, toCursor: (row) => encodeCursor({ at: row.position, id: row.id }), defaultSize: 20, maxSize: 100 },
    ({ before, after, limit, inverted }) =>
      load({ after: decodeCursor(after, 'after'), before: decodeCursor(before, 'before'), limit, inverted, newestFirst }),
  );
}
