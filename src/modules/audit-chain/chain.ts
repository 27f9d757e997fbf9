// The audit chain's canonical encoding, computed again outside the database:
// the same bytes app_private.audit_event_hash and platform_audit_event_hash
// hash at insert (migration 000015), so a verifier needs only the events' text.
// The fields, behind a version tag, are a JSON array as PostgreSQL's
// json_build_array prints it (`["tenancy-audit-v2", "…", null]`: elements
// joined by a comma and a space, strings escaped as JSON.stringify escapes
// them); the hash is SHA-256 over its UTF-8 followed by the previous event's hash.
import { createHash } from 'node:crypto';

/** The chain's start: the previous hash of its first event. */
export const GENESIS = Buffer.alloc(32);

/** Which chain: a tenant's (its uuid) or the platform's. */
export type ChainId = { readonly kind: 'tenant'; readonly tenantId: string } | { readonly kind: 'platform' };

export const PLATFORM_CHAIN: ChainId = { kind: 'platform' };
export const tenantChain = (tenantId: string): ChainId => ({ kind: 'tenant', tenantId });

/** The name a signed checkpoint gives its chain. */
export function chainName(chain: ChainId): string {
  return chain.kind === 'platform' ? 'platform' : `tenant:${chain.tenantId}`;
}

/** A tenant event's hashed content, each field as the database prints it (occurredAt: UTC, microseconds). */
export type TenantEventFields = {
  readonly seq: string;
  readonly occurredAt: string;
  readonly actorKind: string;
  readonly actorUserId: string | null;
  readonly actorApiKeyId: string | null;
  readonly action: string;
  readonly targetType: string;
  readonly targetId: string;
  readonly reason: string | null;
  /** jsonb's own text of the details. */
  readonly details: string;
  readonly requestId: string | null;
};

export type PlatformEventFields = {
  readonly seq: string;
  readonly occurredAt: string;
  readonly actorUserId: string | null;
  readonly actor: string;
  readonly action: string;
  readonly targetTenantId: string | null;
  readonly reason: string | null;
  readonly details: string;
  readonly requestId: string | null;
};

/**
 * An event's encoding cut around its seq: `head`, the seq as a JSON string, `tail`. Verification hashes an
 * event as if it sat at another seq (to tell a moved event from an edited one) and keeps only this of it.
 */
export type EventEncoding = { readonly head: string; readonly tail: string };

const field = (value: string | null) => (value === null ? 'null' : JSON.stringify(value));

function cut(tag: string, before: readonly string[], after: readonly (string | null)[]): EventEncoding {
  return { head: `[${[tag, ...before].map(field).join(', ')}, `, tail: `${after.map((value) => `, ${field(value)}`).join('')}]` };
}

/** The hash of an encoded event at `seq` after `prevHash`. */
export function hashAt(encoding: EventEncoding, seq: string, prevHash: Buffer): Buffer {
  return sha256(Buffer.from(`${encoding.head}${JSON.stringify(seq)}${encoding.tail}`, 'utf8'), prevHash);
}

function sha256(...parts: Buffer[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

export function tenantEventEncoding(tenantId: string, event: Omit<TenantEventFields, 'seq'>): EventEncoding {
  return cut('tenancy-audit-v2', [tenantId], [event.occurredAt, event.actorKind, event.actorUserId, event.actorApiKeyId,
    event.action, event.targetType, event.targetId, event.reason, event.details, event.requestId]);
}

export function platformEventEncoding(event: Omit<PlatformEventFields, 'seq'>): EventEncoding {
  return cut('tenancy-platform-audit-v2', [], [event.occurredAt, event.actorUserId, event.actor, event.action, event.targetTenantId,
    event.reason, event.details, event.requestId]);
}

export function tenantEventHash(tenantId: string, event: TenantEventFields, prevHash: Buffer): Buffer {
  return hashAt(tenantEventEncoding(tenantId, event), event.seq, prevHash);
}

export function platformEventHash(event: PlatformEventFields, prevHash: Buffer): Buffer {
  return hashAt(platformEventEncoding(event), event.seq, prevHash);
}
