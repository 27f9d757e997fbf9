import { Kind, valueFromASTUntyped } from 'graphql';
import { apiError } from '../errors.ts';
import { builder } from './builder.ts';

/** The largest JSON input any field accepts (task input and output: 64 KiB). */
const JSON_MAX_BYTES = 64 * 1024;
const JSON_MAX_DEPTH = 32;

builder.scalarType('DateTime', {
  description: 'An instant, as an ISO 8601 string in UTC',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => parseDate(value),
  parseLiteral: (ast) => parseDate(ast.kind === Kind.STRING ? ast.value : undefined),
});

builder.scalarType('JSONObject', {
  description: `A JSON object: at most ${JSON_MAX_DEPTH} levels deep and ${JSON_MAX_BYTES / 1024} KiB (fields may allow less)`,
  serialize: (value) => value,
  parseValue: (value) => parseObject(value),
  parseLiteral: (ast, variables) => parseObject(valueFromASTUntyped(ast, variables)),
});

function parseDate(value: unknown): Date {
  const date = typeof value === 'string' ? new Date(value) : undefined;
  if (!date || Number.isNaN(date.getTime())) throw apiError('BAD_USER_INPUT', 'DateTime must be an ISO 8601 string');
  return date;
}

function parseObject(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw apiError('BAD_USER_INPUT', 'JSONObject must be a JSON object');
  }
  // Depth first, without recursion: measuring the size of a 5,000-deep value by JSON.stringify would overflow the stack.
  if (jsonDepth(value) > JSON_MAX_DEPTH) {
    throw apiError('BAD_USER_INPUT', `JSONObject may nest at most ${JSON_MAX_DEPTH} levels`, { limit: 'jsonDepth', max: JSON_MAX_DEPTH });
  }
  if (jsonBytes(value) > JSON_MAX_BYTES) {
    throw apiError('BAD_USER_INPUT', `JSONObject may be at most ${JSON_MAX_BYTES / 1024} KiB as JSON`, { limit: 'jsonBytes', max: JSON_MAX_BYTES });
  }
  return value as Record<string, unknown>;
}

/**
 * A value's bytes as JSON, its numbers as PostgreSQL's jsonb sends them back: in full (1e308 is 309 digits, 5e-324
 * 326 characters), 16 bytes stored (pg_column_size). What the read budget charges for the row and the bound a write
 * committed with its statement relies on (graphql/operation.ts WRITE_ROW_BOUND_BYTES): measured as JSON.stringify
 * writes them, 4,000 such numbers (28 KB) came back as 1.3 MB, refused for the read budget after the COMMIT.
 */
export function jsonBytes(value: unknown): number {
  const json = JSON.stringify(value);
  let bytes = Buffer.byteLength(json);
  if (bytes > JSON_MAX_BYTES || !/\de[+-]\d/.test(json)) return bytes; // refused already, or no number in exponent form (the usual case)
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const current = stack.pop();
    if (typeof current === 'number') bytes += printedNumber(String(current)) - String(current).length;
    else if (typeof current === 'object' && current !== null) for (const child of Array.isArray(current) ? current : Object.values(current)) stack.push(child);
  }
  return bytes;
}

/** The length of a number JavaScript writes in exponent form ("-1.5e-7") as PostgreSQL's numeric writes it ("-0.00000015"). */
function printedNumber(text: string): number {
  const at = text.indexOf('e');
  if (at < 0) return text.length;
  const mantissa = text.slice(0, at);
  const sign = mantissa.startsWith('-') ? 1 : 0;
  const digits = mantissa.length - sign - (mantissa.includes('.') ? 1 : 0);
  const point = 1 + Number(text.slice(at + 1)); // digits before the decimal point
  if (point >= digits) return sign + point;
  if (point <= 0) return sign + 2 - point + digits;
  return sign + digits + 1;
}

/** The nesting of objects and arrays in a JSON value (a scalar is 0), stopping once past the limit. */
export function jsonDepth(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > JSON_MAX_DEPTH) return deepest;
    for (const child of Array.isArray(current) ? current : Object.values(current)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return deepest;
}
