// approximateBytes (src/db/row-bytes.ts) charges the rows a repository returned
// against MAX_RESPONSE_BYTES. It walks without recursion and without
// allocations; here it must equal the plain recursive definition for any
// JSON value, rows of any shape, Dates and Buffers, however deep.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { approximateBytes } from '../src/db/row-bytes.ts';

/** The definition: strings by length (+2 quotes), arrays 2 + an item each, objects a key's length + 4 each, Dates 26, Buffers their length, anything else 8. */
function definition(value: unknown): number {
  if (typeof value === 'string') return value.length + 2;
  if (value === null || typeof value !== 'object') return 8;
  if (value instanceof Date) return 26;
  if (Buffer.isBuffer(value)) return value.length;
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + definition(item), 2 + value.length);
  return Object.entries(value).reduce((sum, [key, item]) => sum + key.length + 4 + definition(item), 0);
}

const leaf = fc.oneof(fc.jsonValue({ maxDepth: 0 }), fc.date({ noInvalidDate: true }), fc.uint8Array({ maxLength: 20 }).map((bytes) => Buffer.from(bytes)));
const value = fc.letrec((tie) => ({
  any: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('any'), { maxLength: 5 }), fc.dictionary(fc.string({ maxLength: 8 }), tie('any'), { maxKeys: 5 })),
})).any;

it('equals the recursive definition for any value: JSON, Dates, Buffers, nested arrays and objects', () => {
  fc.assert(fc.property(value, (v) => {
    expect(approximateBytes(v)).toBe(definition(v));
  }), { numRuns: 3000 });
});

it('equals it for pages of rows (the common case: a list of flat rows, some with a JSON column)', () => {
  const row = fc.record({ id: fc.uuid(), name: fc.string(), tokens: fc.integer(), createdAt: fc.date({ noInvalidDate: true }), input: fc.option(fc.jsonValue({ maxDepth: 3 })) });
  fc.assert(fc.property(fc.array(row, { maxLength: 100 }), (rows) => {
    expect(approximateBytes(rows)).toBe(definition(rows));
  }), { numRuns: 500 });
});

it('leaves nothing behind between walks: the same value twice, the same figure', () => {
  const rows = [{ id: 'a', nested: { deep: [1, [2, [3]]] } }, [{ x: 'y' }]];
  const first = approximateBytes(rows);
  expect(approximateBytes(rows)).toBe(first);
  expect(first).toBe(definition(rows));
});

it('a walk that threw leaves nothing for the next one (its pushed nested values are dropped)', () => {
  const throwing = { nested: { deep: [1, 2, 3] }, get broken(): never { throw new Error('a getter that throws') } };
  expect(() => approximateBytes([throwing])).toThrow('a getter that throws');
  expect(approximateBytes([])).toBe(2);
});
