// API keys: machine access to one tenant with a role no higher than the
// creator's. The secret is returned once; only a signed-in person manages keys.
import { z } from 'zod';
import { newApiKey } from '../../auth/secrets.ts';
import { badUserInput, forbidden, notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import { nodeType } from '../../nodes/index.ts';
import { roleAtLeast } from '../../tenancy/roles.ts';
import { RoleEnum } from '../tenants/schema.ts';
import { UserRef } from '../users/schema.ts';
import { apiKeyConditions, apiKeys, createApiKey, revokeApiKey, type ApiKeyRow } from './repo.ts';

export const ApiKey = nodeType('ApiKey', {
  table: apiKeys,
  description: 'Machine access to the tenant: send the secret as the X-Api-Key header',
  fields: (t) => ({
    name: t.exposeString('name'),
    prefix: t.exposeString('prefix', { description: 'The start of the secret, to recognise it by' }),
    role: t.expose('role', { type: RoleEnum, description: "The most it may do; never more than its creator's current role" }),
    createdBy: t.field({ type: UserRef, nullable: true, description: 'Null once the creator has left (the key stops working)', resolve: (key) => key.createdBy }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true, description: 'Recorded at most once a minute' }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
  }),
});

builder.queryField('apiKeys', (t) =>
  t.field({
    type: ApiKey.connection,
    description: 'ADMIN: every key of the tenant; others: their own. Oldest first',
    authScopes: { member: true },
    args: { ...t.arg.connectionArgs(), activeOnly: t.arg.boolean({ required: false, defaultValue: false }) },
    resolve: ApiKey.list((tx, args) => apiKeyConditions(tx, args.activeOnly === true)),
  }),
);

const CreateApiKeyInput = builder.inputType('CreateApiKeyInput', {
  fields: (t) => ({
    name: t.string({ required: true, validate: z.string().trim().min(1, 'must be 1 to 100 characters').max(100, 'must be 1 to 100 characters') }),
    role: t.field({ type: RoleEnum, required: true }),
    expiresAt: t.field({ type: 'DateTime', required: false, description: 'Never expires when left out' }),
  }),
});
const ApiKeyIdInput = builder.inputType('RevokeApiKeyInput', { fields: (t) => ({ id: t.id({ required: true }) }) });

const CreateApiKeyPayload = builder.objectRef<{ apiKey: ApiKeyRow; secret: string }>('CreateApiKeyPayload').implement({
  fields: (t) => ({
    apiKey: t.expose('apiKey', { type: ApiKey.ref }),
    secret: t.exposeString('secret', { description: 'Shown only now: store it safely' }),
  }),
});
const ApiKeyPayload = builder.objectRef<{ apiKey: ApiKeyRow }>('ApiKeyPayload').implement({
  fields: (t) => ({ apiKey: t.expose('apiKey', { type: ApiKey.ref }) }),
});

builder.mutationFields((t) => ({
  createApiKey: t.field({
    type: CreateApiKeyPayload,
    description: 'MEMBER and above, signed in (a key cannot create keys); the role cannot exceed your own',
    authScopes: { $all: { member: true, person: true } },
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const { role } = await context.identity.tenant();
      if (!roleAtLeast(role, input.role)) throw forbidden(`An API key's role cannot exceed yours (${role})`);
      if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) throw badUserInput('input.expiresAt', 'must be in the future');
      const { secret, prefix, hash } = newApiKey();
      const apiKey = await context.db.run((tx) =>
        createApiKey(tx, { name: input.name, role: input.role, prefix, secretHash: hash, expiresAt: input.expiresAt ?? undefined }),
      );
      return { apiKey, secret };
    },
  }),
  revokeApiKey: t.field({
    extensions: { ownOnlyBelow: 'ADMIN' },
    type: ApiKeyPayload,
    description: 'ADMIN: any key; others: their own. Takes effect on the next request',
    authScopes: { $all: { member: true, person: true } },
    args: { input: t.arg({ type: ApiKeyIdInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const id = ApiKey.parseId(input.id);
      const apiKey = id ? await context.db.run((tx) => revokeApiKey(tx, id)) : undefined;
      if (!apiKey) throw notFound('API key');
      return { apiKey };
    },
  }),
}));
