// Members and invitations. ADMIN changes roles and removes members; LEAD and
// ADMIN invite (a LEAD only MEMBER and VIEWER); the invited user accepts
// outside any tenant. Only a signed-in person manages members, never an API key.
import { z } from 'zod';
import { invitationTokenHash, newInvitationToken } from '../../auth/secrets.ts';
import { conflict, forbidden, notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import { nodeType } from '../../nodes/index.ts';
import { roleAtLeast } from '../../tenancy/roles.ts';
import { RoleEnum, TenantRef } from '../tenants/schema.ts';
import { UserRef } from '../users/schema.ts';
import {
  acceptInvitation,
  createInvitation,
  invitationConditions,
  invitations,
  memberConditions,
  members,
  removeMember,
  revokeInvitation,
  updateMemberRole,
  type AcceptedInvitation,
  type InvitationRow,
  type MemberRow,
} from './repo.ts';

export const Member = nodeType('Member', {
  table: members,
  description: 'A user and their role in the tenant',
  fields: (t) => ({
    user: t.field({ type: UserRef, extensions: { columns: ['id'] }, resolve: (member) => member.id }),
    role: t.expose('role', { type: RoleEnum }),
    joinedAt: t.expose('joinedAt', { type: 'DateTime' }),
  }),
});

const InvitationStatusEnum = builder.enumType('InvitationStatus', {
  values: ['PENDING', 'ACCEPTED', 'REVOKED', 'EXPIRED'] as const,
});

function invitationStatus(invitation: InvitationRow): 'PENDING' | 'ACCEPTED' | 'REVOKED' | 'EXPIRED' {
  if (invitation.acceptedAt) return 'ACCEPTED';
  if (invitation.revokedAt) return 'REVOKED';
  return invitation.expiresAt.getTime() <= Date.now() ? 'EXPIRED' : 'PENDING';
}

const Invitation = nodeType('Invitation', {
  table: invitations,
  description: 'An invitation to join the tenant; its token is shown once, when it is created',
  fields: (t) => ({
    email: t.exposeString('email'),
    role: t.expose('role', { type: RoleEnum }),
    status: t.field({ type: InvitationStatusEnum, extensions: { columns: ['acceptedAt', 'revokedAt', 'expiresAt'] }, resolve: invitationStatus }),
    invitedBy: t.field({ type: UserRef, nullable: true, description: 'Null when sent by the platform or once the inviter has left', resolve: (i) => i.invitedBy }),
    acceptedBy: t.field({ type: UserRef, nullable: true, resolve: (i) => i.acceptedBy }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime' }),
    acceptedAt: t.expose('acceptedAt', { type: 'DateTime', nullable: true }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
  }),
});

builder.queryFields((t) => ({
  members: t.field({
    type: Member.connection,
    description: "The tenant's members in the order they joined",
    authScopes: { viewer: true },
    args: { ...t.arg.connectionArgs(), role: t.arg({ type: RoleEnum, required: false }) },
    resolve: Member.list((tx, args) => memberConditions(tx, args.role ?? undefined)),
  }),
  invitations: t.field({
    type: Invitation.connection,
    description: 'LEAD and above: invitations of the tenant, oldest first',
    authScopes: { lead: true },
    args: { ...t.arg.connectionArgs(), pendingOnly: t.arg.boolean({ required: false, defaultValue: true }) },
    resolve: Invitation.list((tx, args) => invitationConditions(tx, args.pendingOnly !== false)),
  }),
}));

const userId = z.string().uuid('must be a user id');
const email = z.string().trim().max(320, 'must be at most 320 characters').email('must be an email address');

const InviteMemberInput = builder.inputType('InviteMemberInput', {
  fields: (t) => ({
    email: t.string({ required: true, validate: email }),
    role: t.field({ type: RoleEnum, required: true }),
    expiresInHours: t.int({
      required: false,
      description: 'Defaults to 168 (7 days)',
      validate: z.number().int().min(1, 'must be 1 to 720').max(720, 'must be 1 to 720'),
    }),
  }),
});

const MemberRoleInput = builder.inputType('UpdateMemberRoleInput', {
  fields: (t) => ({ userId: t.id({ required: true, validate: userId }), role: t.field({ type: RoleEnum, required: true }) }),
});
const MemberIdInput = builder.inputType('RemoveMemberInput', {
  fields: (t) => ({ userId: t.id({ required: true, validate: userId }) }),
});
const InvitationIdInput = builder.inputType('RevokeInvitationInput', {
  fields: (t) => ({ id: t.id({ required: true }) }),
});
const AcceptInvitationInput = builder.inputType('AcceptInvitationInput', {
  fields: (t) => ({ token: t.string({ required: true, validate: z.string().max(100, 'is not an invitation token') }) }),
});

const InviteMemberPayload = builder.objectRef<{ invitation: InvitationRow; token: string }>('InviteMemberPayload').implement({
  fields: (t) => ({
    invitation: t.expose('invitation', { type: Invitation.ref }),
    token: t.exposeString('token', { description: 'Give this to the invited person; it is not shown again' }),
  }),
});
const MemberPayload = builder.objectRef<{ member: MemberRow }>('MemberPayload').implement({
  fields: (t) => ({ member: t.expose('member', { type: Member.ref }) }),
});
const RemoveMemberPayload = builder.objectRef<{ removedUserId: string }>('RemoveMemberPayload').implement({
  fields: (t) => ({ removedUserId: t.exposeID('removedUserId') }),
});
const InvitationPayload = builder.objectRef<{ invitation: InvitationRow }>('InvitationPayload').implement({
  fields: (t) => ({ invitation: t.expose('invitation', { type: Invitation.ref }) }),
});
const AcceptInvitationPayload = builder.objectRef<AcceptedInvitation>('AcceptInvitationPayload').implement({
  fields: (t) => ({
    tenant: t.field({
      type: TenantRef,
      resolve: (accepted) => ({ id: accepted.tenantId, slug: accepted.tenantSlug, name: accepted.tenantName, status: 'active' as const }),
    }),
    role: t.expose('role', { type: RoleEnum }),
  }),
});

const DAY_HOURS = 24;

builder.mutationFields((t) => ({
  inviteMember: t.field({
    type: InviteMemberPayload,
    description: 'ADMIN: any role; LEAD: MEMBER or VIEWER. Signed-in users only (not API keys)',
    authScopes: { $all: { lead: true, person: true } },
    args: { input: t.arg({ type: InviteMemberInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const { role } = await context.identity.tenant();
      if (!roleAtLeast(role, 'ADMIN') && roleAtLeast(input.role, 'LEAD')) {
        throw forbidden('A LEAD may invite MEMBER and VIEWER only');
      }
      const { token, hash } = newInvitationToken();
      const expiresAt = new Date(Date.now() + (input.expiresInHours ?? 7 * DAY_HOURS) * 3_600_000);
      const invitation = await context.db.run((tx) => createInvitation(tx, { email: input.email, role: input.role, tokenHash: hash, expiresAt }));
      if (!invitation) throw conflict('That person is already a member of the tenant');
      return { invitation, token };
    },
  }),
  revokeInvitation: t.field({
    extensions: { ownOnlyBelow: 'ADMIN' },
    type: InvitationPayload,
    description: 'ADMIN: any pending invitation; LEAD: the ones they sent',
    authScopes: { $all: { lead: true, person: true } },
    args: { input: t.arg({ type: InvitationIdInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const found = await Invitation.find(context, input.id);
      const [{ role }, { userId: me }] = await Promise.all([context.identity.tenant(), context.identity.principal()]);
      if (!roleAtLeast(role, 'ADMIN') && found.invitedBy !== me) throw forbidden('A LEAD may revoke only the invitations they sent');
      const invitation = await context.db.run((tx) => revokeInvitation(tx, found.id));
      if (!invitation) throw notFound('Invitation');
      return { invitation };
    },
  }),
  acceptInvitation: t.field({
    extensions: { platform: true },
    type: AcceptInvitationPayload,
    description: 'The signed-in user whose email the invitation was sent to joins its tenant. Needs no tenant in the token',
    authScopes: { person: true },
    args: { input: t.arg({ type: AcceptInvitationInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const hash = invitationTokenHash(input.token.trim());
      if (!hash) throw notFound('Invitation');
      return context.db.run((tx) => acceptInvitation(tx, hash));
    },
  }),
  updateMemberRole: t.field({
    type: MemberPayload,
    description: 'ADMIN. The last ADMIN cannot be demoted',
    authScopes: { $all: { admin: true, person: true } },
    args: { input: t.arg({ type: MemberRoleInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const member = await context.db.run((tx) => updateMemberRole(tx, input.userId, input.role));
      if (!member) throw notFound('Member');
      return { member };
    },
  }),
  removeMember: t.field({
    type: RemoveMemberPayload,
    description: 'ADMIN. The last ADMIN cannot be removed. What the member created stays',
    authScopes: { $all: { admin: true, person: true } },
    args: { input: t.arg({ type: MemberIdInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      if (!(await context.db.run((tx) => removeMember(tx, input.userId)))) throw notFound('Member');
      return { removedUserId: input.userId };
    },
  }),
}));
