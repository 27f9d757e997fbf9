// What a JSON text may cost to parse, checked before JSON.parse sees it.
// JSON.parse runs on the event loop and its cost grows with the number of
// values, not with the bytes alone: a 5 MiB body of nested or empty arrays
// (2.5 million values) held every request of the process for 0.7-1.5 s
// (measured on the loaded 2-core machine), while 5 MiB in a few strings
// parses in under 20 ms. A body or WebSocket message with more values than
// MAX_JSON_VALUES is refused unparsed, before any credentials are looked at.
// The scan skips string contents with indexOf (native), so text-heavy bodies
// cost little, and it stops as soon as the bound is passed.

/**
 * Values in one JSON text (each array or object, and each element or member
 * after the first: opening brackets plus commas outside strings). 100,000
 * empty arrays parse in 15-70 ms here; real requests hold ids, inputs and
 * JSONObject values of at most 64 KiB each: thousands of values at most.
 * Nesting is bounded by it too (each level is a value); deeper limits are the
 * pipeline's (JSON inputs: 32 levels).
 */
export const MAX_JSON_VALUES = 100_000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const COMMA = 0x2c;

export type JsonShapeRefusal = { readonly limit: 'jsonValues'; readonly max: number; readonly message: string };

/**
 * Why the JSON text in `bytes` (UTF-8: no byte of a multi-byte character is
 * ASCII) would be too costly to parse, or undefined. It does not validate
 * JSON: a text it lets through may still be malformed, and JSON.parse says so.
 */
export function jsonShapeRefusal(bytes: Buffer, maxValues = MAX_JSON_VALUES): JsonShapeRefusal | undefined {
  let values = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === QUOTE) i = stringEnd(bytes, i);
    else if ((c === OPEN_ARRAY || c === OPEN_OBJECT || c === COMMA) && ++values > maxValues) {
      return { limit: 'jsonValues', max: maxValues, message: `The JSON holds more than ${maxValues} values` };
    }
  }
  return undefined;
}

/** The index of the quote that closes the string opened at `open` (the end when it never closes). */
function stringEnd(bytes: Buffer, open: number): number {
  let at = open;
  for (;;) {
    at = bytes.indexOf(QUOTE, at + 1);
    if (at < 0) return bytes.length;
    let backslashes = 0;
    while (bytes[at - 1 - backslashes] === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return at;
  }
}
