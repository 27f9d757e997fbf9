import { rethrowConstraint } from '../../db/errors.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput } from '../../errors.ts';
import { idIn } from '../../nodes/ids.ts';
import { conditions } from '../../nodes/keyset.ts';
import { table } from '../../nodes/table.ts';

export type FineTuningStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export type FineTuningJobRow = {
  id: string;
  baseModel: string;
  hyperparameters: Record<string, unknown>;
  status: FineTuningStatus;
  resultModel: string | null;
  createdBy: string | null;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
};

export type NewFineTuningJob = { baseModel: string; hyperparameters: Record<string, unknown>; datasetContextIds: string[] };

type Json = Parameters<Tx['json']>[0];

export const fineTuningJobs = table<FineTuningJobRow>({
  name: 'app.fine_tuning_jobs',
  columns: [{ id: true, baseModel: true, hyperparameters: true, status: true, resultModel: true, createdBy: true, createdAt: true, updatedAt: true, finishedAt: true }],
  orderBy: 'created_at',
});

const constraints = {
  fine_tuning_job_contexts_context_fkey: () => badUserInput('input.datasetContextIds', 'names a context that does not exist'),
  fine_tuning_jobs_status_transition: () => badUserInput('input.id', 'the job has already finished'),
};

/** The conditions of a fine-tuning jobs list. */
export function jobConditions(tx: Tx, status: FineTuningStatus | undefined) {
  return conditions(tx, status && tx`and status = ${status}`);
}

/** The dataset context ids of each job, in one statement. */
export async function datasetContextIds(tx: Tx, jobIds: readonly string[]): Promise<{ jobId: string; contextId: string }[]> {
  return tx<{ jobId: string; contextId: string }[]>`
    select job_id as "jobId", context_id as "contextId" from app.fine_tuning_job_contexts
    where ${idIn(tx, 'job_id', jobIds)} order by context_id`;
}

/** The job and its dataset in one statement: both or neither. */
export async function createFineTuningJob(tx: Tx, job: NewFineTuningJob): Promise<FineTuningJobRow> {
  try {
    const [row] = await tx<FineTuningJobRow[]>`
      with job as (
        insert into app.fine_tuning_jobs (tenant_id, base_model, hyperparameters, created_by)
        values (app.current_tenant_id(), ${job.baseModel}, ${tx.json(job.hyperparameters as Json)}, app.current_user_id())
        returning *
      ), dataset as (
        insert into app.fine_tuning_job_contexts (tenant_id, job_id, context_id)
        select job.tenant_id, job.id, context_id from job, unnest(${tx.array(job.datasetContextIds, 2950)}::uuid[]) as context_id
      )
      select ${fineTuningJobs.columns(tx)} from job`;
    return row!;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Undefined when no row is visible and writable to this request (RLS). */
export async function cancelFineTuningJob(tx: Tx, id: string): Promise<FineTuningJobRow | undefined> {
  try {
    const [row] = await tx<FineTuningJobRow[]>`
      update app.fine_tuning_jobs set status = 'cancelled' where id = ${id} returning ${fineTuningJobs.columns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}
