import { z } from 'zod';
import { badUserInput, notFound } from '../../errors.ts';
import { builder } from '../../graphql/builder.ts';
import { nodeType } from '../../nodes/index.ts';
import { Context } from '../contexts/schema.ts';
import { UserRef } from '../users/schema.ts';
import { cancelFineTuningJob, createFineTuningJob, datasetContextIds, fineTuningJobs, jobConditions, type FineTuningJobRow } from './repo.ts';

const FineTuningStatusEnum = builder.enumType('FineTuningStatus', {
  description: 'queued -> running | cancelled; running -> succeeded | failed | cancelled',
  values: {
    QUEUED: { value: 'queued' },
    RUNNING: { value: 'running' },
    SUCCEEDED: { value: 'succeeded' },
    FAILED: { value: 'failed' },
    CANCELLED: { value: 'cancelled' },
  } as const,
});

export const FineTuningJob = nodeType('FineTuningJob', {
  table: fineTuningJobs,
  byId: 'fineTuningJob',
  description: "Fine-tuning of a base model on the tenant's contexts",
  fields: (t) => ({
    baseModel: t.exposeString('baseModel'),
    hyperparameters: t.expose('hyperparameters', { type: 'JSONObject' }),
    status: t.expose('status', { type: FineTuningStatusEnum }),
    resultModel: t.exposeString('resultModel', { nullable: true, description: 'Set when the job succeeds' }),
    datasetContexts: t.loadableList({
      type: Context.ref,
      description: 'The contexts the job trains on; batched across jobs',
      extensions: { columns: ['id'] },
      load: async (jobIds: string[], context) => {
        const links = await context.db.run((tx) => datasetContextIds(tx, jobIds));
        const rows = await Promise.all(links.map((link) => Context.load(context, link.contextId)));
        return jobIds.map((jobId) => rows.filter((row, i) => row !== null && links[i]!.jobId === jobId) as NonNullable<(typeof rows)[number]>[]);
      },
      resolve: (job) => job.id,
    }),
    createdBy: t.field({ type: UserRef, nullable: true, resolve: (job) => job.createdBy }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
  }),
});

builder.queryFields((t) => ({
  fineTuningJobs: t.field({
    type: FineTuningJob.connection,
    description: "The tenant's fine-tuning jobs, oldest first",
    authScopes: { viewer: true },
    args: { ...t.arg.connectionArgs(), status: t.arg({ type: FineTuningStatusEnum, required: false }) },
    resolve: FineTuningJob.list((tx, args) => jobConditions(tx, args.status ?? undefined)),
  }),
}));

const CreateFineTuningJobInput = builder.inputType('CreateFineTuningJobInput', {
  fields: (t) => ({
    baseModel: t.string({ required: true, validate: z.string().trim().min(1, 'must be 1 to 200 characters').max(200, 'must be 1 to 200 characters') }),
    datasetContextIds: t.idList({ required: true, validate: z.array(z.string()).min(1, 'needs at least one context').max(1000, 'at most 1000 contexts') }),
    hyperparameters: t.field({
      type: 'JSONObject',
      required: false,
      validate: z.record(z.string(), z.unknown()).refine((value) => Buffer.byteLength(JSON.stringify(value)) <= 16_384, 'must be at most 16 KiB'),
    }),
  }),
});

const FineTuningJobIdInput = builder.inputType('FineTuningJobIdInput', { fields: (t) => ({ id: t.id({ required: true }) }) });

const FineTuningJobPayload = builder.objectRef<{ job: FineTuningJobRow }>('FineTuningJobPayload').implement({
  fields: (t) => ({ job: t.expose('job', { type: FineTuningJob.ref }) }),
});

builder.mutationFields((t) => ({
  createFineTuningJob: t.field({
    type: FineTuningJobPayload,
    description: 'LEAD and above',
    authScopes: { lead: true },
    args: { input: t.arg({ type: CreateFineTuningJobInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const ids = input.datasetContextIds.map((id) => Context.parseId(id));
      if (ids.some((id) => id === undefined)) throw badUserInput('input.datasetContextIds', 'names a context that does not exist');
      const datasetContextIds = [...new Set(ids as string[])];
      const job = await context.db.run((tx) =>
        createFineTuningJob(tx, { baseModel: input.baseModel, hyperparameters: input.hyperparameters ?? {}, datasetContextIds }),
      );
      return { job };
    },
  }),
  cancelFineTuningJob: t.field({
    type: FineTuningJobPayload,
    description: 'LEAD and above; only a queued or running job',
    authScopes: { lead: true },
    args: { input: t.arg({ type: FineTuningJobIdInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const found = await FineTuningJob.find(context, input.id);
      if (found.status !== 'queued' && found.status !== 'running') throw badUserInput('input.id', 'the job has already finished');
      const job = await context.db.run((tx) => cancelFineTuningJob(tx, found.id));
      if (!job) throw notFound('FineTuningJob');
      return { job };
    },
  }),
}));
