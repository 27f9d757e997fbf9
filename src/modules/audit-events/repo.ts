// The tenant's audit log as the request role reads it (app.audit_events: RLS
// lets ADMIN read the tenant's own rows and nobody write them). Newest first,
// by (occurred_at, id) on audit_events_tenant_occurred_idx.
import type { Tx } from '../../db/pool.ts';
import { conditions, timeRange } from '../../nodes/keyset.ts';
import { table } from '../../nodes/table.ts';

export type AuditActorKind = 'user' | 'api_key' | 'operator' | 'system';

export type AuditEventRow = {
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
    { id: true, seq: 'seq::float8', occurredAt: true, actorKind: true, actorUserId: true, actorApiKeyId: true, action: true, targetType: true, targetId: true },
    { reason: true, details: true, requestId: true },
  ],
  orderBy: 'occurred_at',
  idType: 'bigint',
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
