import { isPgError, rethrowConstraint } from '../../db/errors.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, conflict, notFound, tenantSuspended } from '../../errors.ts';
import { conditions } from '../../nodes/keyset.ts';
import { table } from '../../nodes/table.ts';
import type { Role } from '../../tenancy/roles.ts';

/** A membership; its id is the member's user id (one membership per user and tenant). */
export type MemberRow = { id: string; role: Role; joinedAt: Date };

export type InvitationRow = {
  id: string;
  email: string;
  role: Role;
  invitedBy: string | null;
  createdAt: Date;
  expiresAt: Date;
  acceptedAt: Date | null;
  acceptedBy: string | null;
  revokedAt: Date | null;
};

export type AcceptedInvitation = { tenantId: string; tenantSlug: string; tenantName: string; role: Role };

const memberConstraints = {
  memberships_keep_an_admin: () => conflict('A tenant needs at least one ADMIN: make someone else ADMIN first'),
};

const invitationConstraints = {
  invitations_pending: () => badUserInput('input.id', 'the invitation is no longer pending'),
  invitations_email_format: () => badUserInput('input.email', 'must be an email address'),
};

// Members are listed in the order they joined.
export const members = table<MemberRow>({
  name: 'app.memberships',
  columns: [{ id: 'user_id', role: true, joinedAt: 'created_at' }],
  orderBy: 'created_at',
  idColumn: 'user_id',
});

export function memberConditions(tx: Tx, role: Role | undefined) {
  return conditions(tx, role && tx`and role = ${role}`);
}

/** Undefined when the user is not a member (or RLS does not let this request change them). */
export async function updateMemberRole(tx: Tx, userId: string, role: Role): Promise<MemberRow | undefined> {
  try {
    const [row] = await tx<MemberRow[]>`
      update app.memberships set role = ${role} where user_id = ${userId}
      returning ${members.columns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, memberConstraints);
  }
}

export async function removeMember(tx: Tx, userId: string): Promise<boolean> {
  try {
    const rows = await tx`delete from app.memberships where user_id = ${userId} returning user_id`;
    return rows.length === 1;
  } catch (error) {
    rethrowConstraint(error, memberConstraints);
  }
}

export const invitations = table<InvitationRow>({
  name: 'app.invitations',
  columns: [{ id: true, email: true, role: true, invitedBy: true, createdAt: true, expiresAt: true, acceptedAt: true, acceptedBy: true, revokedAt: true }],
  orderBy: 'created_at',
});

export function invitationConditions(tx: Tx, pendingOnly: boolean) {
  return conditions(tx, pendingOnly && tx`and accepted_at is null and revoked_at is null and expires_at > now()`);
}

/** Undefined when the email already belongs to a member of the tenant. */
export async function createInvitation(
  tx: Tx,
  input: { email: string; role: Role; tokenHash: Buffer; expiresAt: Date },
): Promise<InvitationRow | undefined> {
  try {
    const [row] = await tx<InvitationRow[]>`
      insert into app.invitations (tenant_id, email, role, token_hash, invited_by, expires_at)
      select app.current_tenant_id(), ${input.email}, ${input.role}, ${input.tokenHash}, app.current_user_id(),
             ${input.expiresAt.toISOString()}::timestamptz
      where not exists (select 1 from app.memberships m join app.users u on u.id = m.user_id
                        where lower(u.email) = lower(${input.email}))
      returning ${invitations.columns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, invitationConstraints);
  }
}

/** Undefined when no pending invitation is visible and revocable to this request. */
export async function revokeInvitation(tx: Tx, id: string): Promise<InvitationRow | undefined> {
  try {
    const [row] = await tx<InvitationRow[]>`
      update app.invitations set revoked_at = now() where id = ${id} returning ${invitations.columns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, invitationConstraints);
  }
}

/** The signed-in user joins the invitation's tenant (a platform transaction: no tenant is set). */
export async function acceptInvitation(tx: Tx, tokenHash: Buffer): Promise<AcceptedInvitation> {
  try {
    const [row] = await tx<AcceptedInvitation[]>`
      select tenant_id as "tenantId", tenant_slug as "tenantSlug", tenant_name as "tenantName", role
      from app_private.accept_invitation(${tokenHash})`;
    return row!;
  } catch (error) {
    if (!isPgError(error)) throw error;
    switch (error.code) {
      case 'TI404':
        throw notFound('Invitation');
      case 'TI410':
        throw badUserInput('input.token', `the invitation ${error.message}`);
      case 'TI423':
        throw tenantSuspended();
      case 'TI409':
        throw conflict('You are already a member of this tenant');
      default:
        throw error;
    }
  }
}
