import { isPgError, rethrowConstraint } from '../../db/errors.ts';
import { conditions, keysetConditions, keysetOrder, positionColumn, type KeysetPage } from '../../db/keyset.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput, conflict, notFound, tenantSuspended } from '../../errors.ts';
import type { Role } from '../../tenancy/roles.ts';

export type MemberRow = { id: string; role: Role; joinedAt: Date; position: string };

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
  position: string;
};

export type AcceptedInvitation = { tenantId: string; tenantSlug: string; tenantName: string; role: Role };

const memberConstraints = {
  memberships_keep_an_admin: () => conflict('A tenant needs at least one ADMIN: make someone else ADMIN first'),
};

const invitationConstraints = {
  invitations_pending: () => badUserInput('input.id', 'the invitation is no longer pending'),
  invitations_email_format: () => badUserInput('input.email', 'must be an email address'),
};

// Members are listed in the order they joined; the user id is the row's id.
const memberSelect = (tx: Tx) => tx`
  select user_id as id, role, created_at as "joinedAt", created_at, ${positionColumn(tx, 'created_at')}
  from app.memberships`;

export async function listMembers(tx: Tx, role: Role | undefined, page: KeysetPage): Promise<MemberRow[]> {
  return tx<MemberRow[]>`
    select id, role, "joinedAt", position from (${memberSelect(tx)}) m
    where true ${conditions(tx, role && tx`and role = ${role}`)} ${keysetConditions(tx, 'created_at', page)}
    ${keysetOrder(tx, 'created_at', page)}
    limit ${page.limit}`;
}

/** Undefined when the user is not a member (or RLS does not let this request change them). */
export async function updateMemberRole(tx: Tx, userId: string, role: Role): Promise<MemberRow | undefined> {
  try {
    const [row] = await tx<MemberRow[]>`
      update app.memberships set role = ${role} where user_id = ${userId}
      returning user_id as id, role, created_at as "joinedAt", ${positionColumn(tx, 'created_at')}`;
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

const invitationColumns = (tx: Tx) => tx`
  id, email, role, invited_by as "invitedBy", created_at as "createdAt", expires_at as "expiresAt",
  accepted_at as "acceptedAt", accepted_by as "acceptedBy", revoked_at as "revokedAt", ${positionColumn(tx, 'created_at')}`;

export async function listInvitations(tx: Tx, pendingOnly: boolean, page: KeysetPage): Promise<InvitationRow[]> {
  return tx<InvitationRow[]>`
    select ${invitationColumns(tx)} from app.invitations
    where true
      ${pendingOnly ? tx`and accepted_at is null and revoked_at is null and expires_at > now()` : tx``}
      ${keysetConditions(tx, 'created_at', page)}
    ${keysetOrder(tx, 'created_at', page)}
    limit ${page.limit}`;
}

export async function findInvitation(tx: Tx, id: string): Promise<InvitationRow | undefined> {
  const [row] = await tx<InvitationRow[]>`select ${invitationColumns(tx)} from app.invitations where id = ${id}`;
  return row;
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
      returning ${invitationColumns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, invitationConstraints);
  }
}

/** Undefined when no pending invitation is visible and revocable to this request. */
export async function revokeInvitation(tx: Tx, id: string): Promise<InvitationRow | undefined> {
  try {
    const [row] = await tx<InvitationRow[]>`
      update app.invitations set revoked_at = now() where id = ${id} returning ${invitationColumns(tx)}`;
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
