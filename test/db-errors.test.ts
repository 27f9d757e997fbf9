// Database faults in the error contract (DESIGN.md section 5): timeouts, a
// full server, a server going away and a lost connection are UNAVAILABLE
// (503) with a reason; deadlocks and serialization failures are CONFLICT and
// recognised as retryable however they are wrapped.
import { GraphQLError } from 'graphql';
import { expect, it } from 'vitest';
import { errorForSqlState, isRetryableConflict, unavailableFor } from '../src/db/errors.ts';

const pg = (code: string) => Object.assign(new Error(`postgres ${code}`), { code });

it.each([
  ['57014', 'timeout'], // statement_timeout
  ['55P03', 'timeout'], // lock_timeout
  ['25P03', 'timeout'], // idle_in_transaction_session_timeout
  ['53300', 'connections'], // max_connections reached
  ['57P01', 'database'], // admin shutdown
  ['57P02', 'database'], // crash shutdown
  ['57P03', 'database'], // cannot connect now (starting up, shutting down)
  ['08006', 'database'], // connection failure
  ['28P01', 'database'], // the server refused our password (rotated under us)
  ['CONNECTION_CLOSED', 'database'],
  ['CONNECTION_DESTROYED', 'database'],
  ['CONNECT_TIMEOUT', 'database'],
  ['ECONNREFUSED', 'database'],
  ['ECONNRESET', 'database'],
])('%s is UNAVAILABLE (%s), HTTP 503', (code, reason) => {
  const mapped = errorForSqlState(pg(code));
  expect(mapped?.extensions).toMatchObject({ code: 'UNAVAILABLE', reason, http: { status: 503 } });
  expect(mapped?.message).not.toContain(code);
});

it('leaves other errors to their own mapping (or to INTERNAL)', () => {
  expect(unavailableFor(pg('23505'))).toBeUndefined();
  expect(unavailableFor(pg('CONNECTION_RELEASED'))).toBeUndefined(); // a query after release is our bug, not an outage
  expect(unavailableFor(new Error('no code'))).toBeUndefined();
  expect(errorForSqlState(pg('XX000'))).toBeUndefined();
});

it('recognises a deadlock or serialization failure raw, inside a resolver error, or mapped', () => {
  for (const code of ['40001', '40P01']) {
    expect(isRetryableConflict(pg(code))).toBe(true);
    expect(isRetryableConflict(new GraphQLError('wrapped', { originalError: pg(code) }))).toBe(true);
    expect(isRetryableConflict(errorForSqlState(pg(code)))).toBe(true);
    expect(errorForSqlState(pg(code))?.extensions).toMatchObject({ code: 'CONFLICT' });
  }
  expect(isRetryableConflict(pg('23505'))).toBe(false);
  expect(isRetryableConflict(errorForSqlState(pg('23505')))).toBe(false);
});
