// What the tenant's lists share: the order argument and the creation-time range of their filters.
import type { ArgBuilder, InputFieldBuilder } from '@pothos/core';
import { builder } from '../graphql/builder.ts';

export const SortOrderEnum = builder.enumType('SortOrder', {
  values: { OLDEST_FIRST: { value: 'oldest' }, NEWEST_FIRST: { value: 'newest' } } as const,
});

/** `createdAfter` (inclusive) and `createdBefore` (exclusive) for a filter input; `createdRange` reads them. */
export function createdRangeFields(t: InputFieldBuilder<typeof builder.$inferSchemaTypes, 'InputObject'>) {
  return {
    createdAfter: t.field({ type: 'DateTime', required: false, description: 'Inclusive' }),
    createdBefore: t.field({ type: 'DateTime', required: false, description: 'Exclusive' }),
  };
}

/** The creation-time range a filter argument asks for, in repository terms. */
export function createdRange(filter: { createdAfter?: Date | null; createdBefore?: Date | null } | null | undefined) {
  return { createdAfter: filter?.createdAfter ?? undefined, createdBefore: filter?.createdBefore ?? undefined };
}

/** `orderBy: SortOrder = OLDEST_FIRST`, for lists that can be read newest first (node-type.ts reads it). */
export function orderByArg(arg: ArgBuilder<typeof builder.$inferSchemaTypes>) {
  return arg({ type: SortOrderEnum, required: false, defaultValue: 'oldest' });
}
