import { Kind, valueFromASTUntyped } from 'graphql';
import { apiError } from '../errors.ts';
import { builder } from './builder.ts';

builder.scalarType('DateTime', {
  description: 'An instant, as an ISO 8601 string in UTC',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => parseDate(value),
  parseLiteral: (ast) => parseDate(ast.kind === Kind.STRING ? ast.value : undefined),
});

builder.scalarType('JSONObject', {
  description: 'A JSON object (size limits depend on the field)',
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
  return value as Record<string, unknown>;
}
