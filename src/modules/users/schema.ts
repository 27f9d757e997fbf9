import { builder } from '../../graphql/builder.ts';
import { findUsers, type UserRow } from './repo.ts';

export const UserRef = builder.loadableObject('User', {
  description: 'A person; visible to the members of the tenants they belong to',
  load: (ids: string[], context) => context.db.run((tx) => findUsers(tx, ids)),
  toKey: (user: UserRow) => user.id,
  sort: true,
  fields: (t) => ({
    id: t.exposeID('id'),
    email: t.exposeString('email'),
    displayName: t.exposeString('displayName'),
  }),
});
