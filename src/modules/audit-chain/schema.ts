// verifyAuditChain: an ADMIN asks whether the tenant's audit log is intact.
// The chain is read in the request's transaction (RLS: this tenant's rows
// only) and verified here, in the service, against the checkpoints the audit
// key signed, and against one kept outside the database when given.
import { z } from 'zod';
import { unavailable } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import { readTenantChainBatches } from './repo.ts';
import { TAMPER_CLASSES, VerificationDeadlineError, verifyChainBatches, type Verification } from './verify.ts';

const AuditTamper = builder.enumType('AuditTamper', {
  description: 'What a broken audit chain looks like at its first bad seq',
  values: {
    EDITED: { description: "An event's content (or hash) is not what was hashed" },
    INSERTED: { description: 'An event was added where none was written' },
    REORDERED: { description: 'Events stand in another order than they were written' },
    DELETED: { description: 'Events are missing from inside the chain' },
    OLDEST_DELETED: { description: 'The oldest events are missing and no signed retention anchor covers them' },
    TRUNCATED: { description: 'The newest events are missing: a signed checkpoint (or the chain head) names later ones' },
    CHAIN_DELETED: { description: 'No events are left, but a signed checkpoint (or the chain head) says there were' },
    FORGED_CHECKPOINT: { description: 'A checkpoint or anchor is not signed by the audit key, or names another chain' },
  } satisfies Record<(typeof TAMPER_CLASSES)[number], { description: string }>,
});

const AuditChainVerification = builder.objectRef<Verification>('AuditChainVerification').implement({
  description: "The tenant's audit chain, recomputed and held against its newest signed checkpoint",
  fields: (t) => ({
    ok: t.exposeBoolean('ok', { description: 'Intact: every hash, link and seq, and the signed checkpoints agree' }),
    tamper: t.expose('tamper', { type: AuditTamper, nullable: true }),
    firstBadSeq: t.exposeInt('firstBadSeq', { nullable: true, description: 'The first seq that does not verify' }),
    message: t.exposeString('message'),
    events: t.exposeInt('events', { description: 'Events checked' }),
    lastSeq: t.exposeInt('lastSeq', { description: 'The newest seq checked' }),
    anchorSeq: t.exposeInt('anchorSeq', { description: 'Events up to here were purged by retention under a signed anchor (0: none)' }),
    checkpointSeq: t.int({ nullable: true, description: 'The newest signed checkpoint', resolve: (result) => result.checkpoint?.seq ?? null }),
    checkpointSignedAt: t.field({ type: 'DateTime', nullable: true, resolve: (result) => (result.checkpoint ? new Date(result.checkpoint.at) : null) }),
    unsignedEvents: t.exposeInt('unsignedEvents', { description: 'Events newer than the newest checkpoint: chained but not yet signed' }),
    signed: t.boolean({ description: 'False when the service has no audit signing key: hashes and links only', resolve: (_result, _args, context) => context.audit.key !== undefined }),
  }),
});

builder.queryField('verifyAuditChain', (t) =>
  t.field({
    type: AuditChainVerification,
    description: "ADMIN: recomputes the tenant's audit chain and checks it against the newest signed checkpoint",
    authScopes: { admin: true },
    args: {
      checkpoint: t.arg.string({
        required: false,
        description: 'A checkpoint or anchor (compact JWS) kept outside the database, such as from `tenancy audit export`',
        validate: z.string().max(4096, 'must be at most 4096 characters').regex(/^[\w-]+\.[\w-]+\.[\w-]+$/, 'must be a compact JWS'),
      }),
    },
    resolve: async (_root, args, context) => {
      const { id } = await context.identity.tenant();
      const extra = args.checkpoint ? [args.checkpoint] : [];
      // Read and hashed a batch at a time (memory of one batch, whatever the chain's length), in slices, by the
      // request's deadline: a chain too long for it is the CLI's to verify. Its rows are read to answer whether it
      // holds, never sent: not charged to the read budget (MAX_RESPONSE_BYTES).
      const { deadline } = context.db;
      try {
        return await context.db.run(
          (tx) => readTenantChainBatches(tx, id, extra, { deadline }, (chain) => verifyChainBatches(chain, context.audit.key, { deadline })),
          { charged: false },
        );
      } catch (error) {
        if (error instanceof VerificationDeadlineError) {
          throw unavailable('timeout', 'The audit chain is too long to verify within the request deadline: verify it with `tenancy audit verify`');
        }
        throw error;
      }
    },
  }),
);
