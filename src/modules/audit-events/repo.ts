// The tenant's audit log as the request role reads it (app.audit_events: RLS
// lets ADMIN read the tenant's own rows and nobody write them), newest first
// by (occurred_at, event_id) on audit_events_tenant_occurred_idx; and the platform
// log as operators read it (app_private.operator_audit_log, migration 000014).
import { isPgError } from '../../db/errors.ts';
import type { Tx } from '../../db/pool.ts';
import { forbidden } from '../../errors.ts';
import { conditions, timeRange, type KeysetPage } from '../../nodes/keyset.ts';
import { table } from '../../nodes/table.ts';

export type AuditActorKind = 'user' | 'api_key' | 'operator' | 'system';

export type AuditEventRow = {
  /** Its handle, event_id (a random uuid). */
  id: string;
  /** The event's place in the tenant's chain (gapless, commit order; migration 000012). */
  seq: number;
  occurredAt: Date;
  actorKind: AuditActorKind;
  actorUserId: string | null;
  actorApiKeyId: string | null;
  action: string;
  targetType: string;
  targetId: string;
  reason: string | null;
  details: Record<string, unknown>;
  requestId: string | null;
};

export type AuditEventFilter = {
  actorKind?: AuditActorKind | undefined;
  actorUserId?: string | undefined;
  actorApiKeyId?: string | undefined;
  action?: string | undefined;
  targetType?: string | undefined;
  targetId?: string | undefined;
  occurredAfter?: Date | undefined;
  occurredBefore?: Date | undefined;
};

export const auditEvents = table<AuditEventRow>({
  name: 'app.audit_events',
  columns: [
    { id: 'event_id', seq: 'seq::float8', occurredAt: true, actorKind: true, actorUserId: true, actorApiKeyId: true, action: true, targetType: true, targetId: true },
    { reason: true, details: true, requestId: true },
  ],
  orderBy: 'occurred_at',
  // Named by its own random handle (migration 000020), never by the identity id all tenants' events
  // share: the gap between two of B's ids would count the events every other tenant wrote.
  idColumn: 'event_id',
});

/** The conditions of an audit log page: each filter narrows it (all of them hold). */
export function auditEventConditions(tx: Tx, filter: AuditEventFilter) {
  return conditions(
    tx,
    filter.actorKind && tx`and actor_kind = ${filter.actorKind}`,
    filter.actorUserId && tx`and actor_user_id = ${filter.actorUserId}::uuid`,
    filter.actorApiKeyId && tx`and actor_api_key_id = ${filter.actorApiKeyId}::uuid`,
    filter.action && tx`and action = ${filter.action}`,
    filter.targetType && tx`and target_type = ${filter.targetType}`,
    filter.targetId && tx`and target_id = ${filter.targetId}`,
    timeRange(tx, 'occurred_at', filter.occurredAfter, filter.occurredBefore),
  );
}

/** An event of the platform log (app_private.operator_audit_events) as operators read it. */
export type PlatformAuditEventRow = {
  id: string;
  seq: number;
  occurredAt: Date;
  actorUserId: string | null;
  /** `user:<uuid>` for an operator's request, `cli:<OS user>` for the owner-side CLI. */
  actor: string;
  action: string;
  targetTenantId: string | null;
  reason: string | null;
  details: Record<string, unknown>;
  requestId: string | null;
  position: string;
};

export type PlatformAuditEventFilter = {
  action?: string | undefined;
  tenantId?: string | undefined;
  actorUserId?: string | undefined;
  occurredAfter?: Date | undefined;
  occurredBefore?: Date | undefined;
};

/** A page of the platform log, newest first; the function checks the operator capability and records the read. */
export async function platformAuditEvents(tx: Tx, filter: PlatformAuditEventFilter, page: KeysetPage): Promise<PlatformAuditEventRow[]> {
  try {
    return await tx<PlatformAuditEventRow[]>`
      select id, seq::float8 as seq, occurred_at as "occurredAt", actor_user_id as "actorUserId", actor, action,
             target_tenant_id as "targetTenantId", reason, details, request_id as "requestId", position
      from app_private.operator_audit_log(${filter.action ?? null}, ${filter.tenantId ?? null}::uuid, ${filter.actorUserId ?? null}::uuid,
                                          ${filter.occurredAfter ?? null}::timestamptz, ${filter.occurredBefore ?? null}::timestamptz,
                                          ${page.after?.at ?? null}, ${page.after?.id ?? null}::bigint,
                                          ${page.before?.at ?? null}, ${page.before?.id ?? null}::bigint, ${page.limit}, ${page.inverted})`;
  } catch (error) {
    if (isPgError(error) && error.code === 'TO403') throw forbidden('Only platform operators may do this');
    throw error;
  }
}
