// The rule scope-auth cannot see (it needs the row): LEAD and ADMIN change
// anything in the tenant, a MEMBER only what they created. The write policies
// in the database hold the same rule.
import { forbidden } from '../errors.ts';
import { roleAtLeast } from '../tenancy/roles.ts';
import type { GraphQLContext } from './context.ts';

export async function assertMayChange(context: GraphQLContext, createdBy: string | null, what: string): Promise<void> {
  const [{ role }, { userId }] = await Promise.all([context.identity.tenant(), context.identity.principal()]);
  if (!roleAtLeast(role, 'LEAD') && createdBy !== userId) {
    throw forbidden(`A MEMBER can change only the ${what} they created`);
  }
}
