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
  if (Buffer.byteLength(JSON.stringify(value)) > JSON_MAX_BYTES) {
    throw apiError('BAD_USER_INPUT', `JSONObject may be at most ${JSON_MAX_BYTES / 1024} KiB as JSON`, { limit: 'jsonBytes', max: JSON_MAX_BYTES });
  }
  return value as Record<string, unknown>;
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
