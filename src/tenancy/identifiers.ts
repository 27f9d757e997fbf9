// How ids and slugs look, in one place: every parser of a tenant id or slug,
// a user id or a row id asks here (the database holds the same rules as
// check constraints: tenants_slug_format, tenants_slug_not_uuid).
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A tenant slug: 3 to 63 lowercase letters, digits or -, starting with a letter and not ending with -. */
export const SLUG = /^[a-z][a-z0-9-]{1,61}[a-z0-9]$/;

export const SLUG_RULE = 'must be 3 to 63 lowercase letters, digits or -, starting with a letter';

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

export function isSlug(value: string): boolean {
  return SLUG.test(value);
}
