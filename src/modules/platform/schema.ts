// Platform operators (a capability carried in the database, granted by the
// CLI): tenant lifecycle and limits, across tenants, never tenant data. These
// fields work outside any tenant (`platform`), so an operator's token needs no
// tid. Also: every tenant's own usage against its limits.
import { z } from 'zod';
import { newInvitationToken } from '../../auth/secrets.ts';
import { notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import { connectionType, keysetConnection } from '../../nodes/index.ts';
import { isUuid, SLUG, SLUG_RULE } from '../../tenancy/identifiers.ts';
import { TenantStatusEnum } from '../tenants/schema.ts';
import {
  createTenant,
  inviteFirstMember,
  listTenants,
  setTenantLimits,
  setTenantStatus,
  tenantUsage,
  type Limits,
  type PlatformTenantRow,
  type QuotaName,
  type QuotaUsage,
} from './repo.ts';

const PlanEnum = builder.enumType('Plan', {
  description: 'Default limits for a tenant; an operator may override each',
  values: { FREE: { value: 'free' }, TEAM: { value: 'team' }, ENTERPRISE: { value: 'enterprise' } } as const,
});

const QuotaEnum = builder.enumType('Quota', {
  values: {
    ACTIVE_SESSIONS: { value: 'active_sessions', description: 'Sessions active at the same time' },
    MONTHLY_TOKENS: { value: 'monthly_tokens', description: 'Tokens used this calendar month (UTC)' },
    AGENTS: { value: 'agents', description: 'Agents, archived ones included' },
    MEMBERS: { value: 'members', description: 'Members of the tenant' },
    CONTEXT_BYTES: { value: 'context_bytes', description: 'Bytes of context content stored' },
    REQUESTS_PER_MINUTE: {
      value: 'requests_per_minute',
      description: 'Requests a minute by all of the tenant, a bucket of ten seconds\' worth; `used` reaches `limit` when requests are refused (RATE_LIMITED)',
    },
    API_KEY_REQUESTS_PER_MINUTE: {
      value: 'api_key_requests_per_minute',
      description: 'Requests a minute by each API key, likewise; `used` is the busiest key\'s',
    },
  } as const,
});

const QuotaUsageRef = builder.objectRef<QuotaUsage>('QuotaUsage').implement({
  fields: (t) => ({
    quota: t.expose('quota', { type: QuotaEnum }),
    used: t.exposeFloat('used', { description: 'An integer (Float only for its range)' }),
    limit: t.exposeFloat('limit', { nullable: true, description: 'Null: unlimited' }),
    overridden: t.exposeBoolean('overridden', { description: "True when an operator set this limit instead of the plan's" }),
  }),
});

const PlatformTenantRef = builder.objectRef<PlatformTenantRow>('PlatformTenant').implement({
  description: "A tenant as the platform operator sees it: metadata and usage, none of the tenant's data",
  fields: (t) => ({
    id: t.exposeID('id'),
    slug: t.exposeString('slug'),
    name: t.exposeString('name'),
    status: t.expose('status', { type: TenantStatusEnum }),
    plan: t.expose('plan', { type: PlanEnum }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    suspendedAt: t.expose('suspendedAt', { type: 'DateTime', nullable: true }),
    suspendedReason: t.exposeString('suspendedReason', { nullable: true }),
    usage: t.expose('usage', { type: [QuotaUsageRef] }),
  }),
});

const PlatformTenantConnection = connectionType('PlatformTenant', PlatformTenantRef);

builder.queryFields((t) => ({
  platformTenants: t.field({
    extensions: { platform: true },
    type: PlatformTenantConnection,
    description: 'Platform operators: every tenant with its usage, oldest first. Audited',
    authScopes: { operator: true },
    args: { ...t.arg.connectionArgs(), status: t.arg({ type: TenantStatusEnum, required: false }) },
    resolve: (_root, args, context) => keysetConnection(args, (page) => context.db.run((tx) => listTenants(tx, args.status ?? undefined, page))),
  }),
  usage: t.field({
    type: [QuotaUsageRef],
    description: "The request tenant's usage against its limits",
    authScopes: { viewer: true },
    resolve: (_root, _args, context) => context.db.run((tx) => tenantUsage(tx)),
  }),
}));

const slug = z.string().trim().regex(SLUG, SLUG_RULE);
const reason = z.string().trim().min(1, 'must not be empty').max(500, 'must be at most 500 characters');
const limit = z.number().int().min(0, 'must be 0 or more').max(Number.MAX_SAFE_INTEGER, 'is too large');
const tenantId = z.string().refine(isUuid, 'must be a tenant id');

const CreateTenantInput = builder.inputType('CreateTenantInput', {
  fields: (t) => ({
    slug: t.string({ required: true, validate: slug }),
    name: t.string({ required: true, validate: z.string().trim().min(1, 'must be 1 to 200 characters').max(200, 'must be 1 to 200 characters') }),
    plan: t.field({ type: PlanEnum, required: true }),
    adminEmail: t.string({
      required: false,
      description: 'Invites this person as the first ADMIN; the invitation token is returned',
      validate: z.string().trim().max(320, 'must be at most 320 characters').email('must be an email address'),
    }),
    reason: t.string({ required: false, validate: reason }),
  }),
});

const SuspendTenantInput = builder.inputType('SuspendTenantInput', {
  fields: (t) => ({ id: t.id({ required: true, validate: tenantId }), reason: t.string({ required: true, validate: reason }) }),
});
const ReactivateTenantInput = builder.inputType('ReactivateTenantInput', {
  fields: (t) => ({ id: t.id({ required: true, validate: tenantId }), reason: t.string({ required: false, validate: reason }) }),
});

const LimitsInput = builder.inputType('TenantLimitsInput', {
  description: "Each field left out keeps its limit; null returns it to the plan's",
  fields: (t) => ({
    activeSessions: t.float({ required: false, validate: limit }),
    monthlyTokens: t.float({ required: false, validate: limit }),
    agents: t.float({ required: false, validate: limit }),
    members: t.float({ required: false, validate: limit }),
    contextBytes: t.float({ required: false, validate: limit }),
    requestsPerMinute: t.float({ required: false, validate: limit }),
    apiKeyRequestsPerMinute: t.float({ required: false, validate: limit }),
  }),
});
const SetTenantLimitsInput = builder.inputType('SetTenantLimitsInput', {
  fields: (t) => ({
    id: t.id({ required: true, validate: tenantId }),
    plan: t.field({ type: PlanEnum, required: false }),
    limits: t.field({ type: LimitsInput, required: false }),
    reason: t.string({ required: false, validate: reason }),
  }),
});

const CreateTenantPayload = builder.objectRef<{ tenant: PlatformTenantRow; adminInvitationToken: string | null }>('CreateTenantPayload').implement({
  fields: (t) => ({
    tenant: t.expose('tenant', { type: PlatformTenantRef }),
    adminInvitationToken: t.exposeString('adminInvitationToken', { nullable: true, description: 'For adminEmail to accept; shown once' }),
  }),
});
const PlatformTenantPayload = builder.objectRef<{ tenant: PlatformTenantRow }>('PlatformTenantPayload').implement({
  fields: (t) => ({ tenant: t.expose('tenant', { type: PlatformTenantRef }) }),
});

const LIMIT_FIELDS: Readonly<Record<string, QuotaName>> = {
  activeSessions: 'active_sessions',
  monthlyTokens: 'monthly_tokens',
  agents: 'agents',
  members: 'members',
  contextBytes: 'context_bytes',
  requestsPerMinute: 'requests_per_minute',
  apiKeyRequestsPerMinute: 'api_key_requests_per_minute',
};
const INVITATION_HOURS = 7 * 24;

builder.mutationFields((t) => ({
  createTenant: t.field({
    extensions: { platform: true },
    type: CreateTenantPayload,
    description: 'Platform operators. Audited',
    authScopes: { operator: true },
    args: { input: t.arg({ type: CreateTenantInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const tenant = await context.db.run((tx) => createTenant(tx, { slug: input.slug, name: input.name, plan: input.plan, reason: input.reason ?? undefined }));
      if (!input.adminEmail) return { tenant, adminInvitationToken: null };
      const { token, hash } = newInvitationToken();
      const expiresAt = new Date(Date.now() + INVITATION_HOURS * 3_600_000);
      await context.db.run((tx) => inviteFirstMember(tx, tenant.id, { email: input.adminEmail!, role: 'ADMIN', tokenHash: hash, expiresAt }));
      return { tenant, adminInvitationToken: token };
    },
  }),
  suspendTenant: t.field({
    extensions: { platform: true },
    type: PlatformTenantPayload,
    description: "Platform operators. Every request of the tenant's members and API keys gets TENANT_SUSPENDED from the next one on; nothing is deleted. Audited",
    authScopes: { operator: true },
    args: { input: t.arg({ type: SuspendTenantInput, required: true }) },
    resolve: async (_root, { input }, context) => ({
      tenant: await context.db.run((tx) => setTenantStatus(tx, input.id, 'suspended', input.reason)),
    }),
  }),
  reactivateTenant: t.field({
    extensions: { platform: true },
    type: PlatformTenantPayload,
    description: 'Platform operators. Access returns with the next request. Audited',
    authScopes: { operator: true },
    args: { input: t.arg({ type: ReactivateTenantInput, required: true }) },
    resolve: async (_root, { input }, context) => ({
      tenant: await context.db.run((tx) => setTenantStatus(tx, input.id, 'active', input.reason ?? undefined)),
    }),
  }),
  setTenantLimits: t.field({
    extensions: { platform: true },
    type: PlatformTenantPayload,
    description: 'Platform operators: the plan and per-quota overrides. Lowering a limit below usage refuses new use only. Audited',
    authScopes: { operator: true },
    args: { input: t.arg({ type: SetTenantLimitsInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const limits: Limits = {};
      for (const [field, quota] of Object.entries(LIMIT_FIELDS)) {
        const value = (input.limits as Record<string, number | null | undefined> | null | undefined)?.[field];
        if (value !== undefined) limits[quota] = value;
      }
      const tenant = await context.db.run((tx) => setTenantLimits(tx, input.id, input.plan ?? undefined, limits, input.reason ?? undefined));
      if (!tenant) throw notFound('Tenant');
      return { tenant };
    },
  }),
}));

