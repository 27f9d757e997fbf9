import { rethrowConstraint } from '../../db/errors.ts';
import { idIn } from '../../db/ids.ts';
import { conditions, keysetConditions, keysetOrder, positionColumn, type KeysetPage } from '../../db/keyset.ts';
import type { Tx } from '../../db/pool.ts';
import { badUserInput } from '../../errors.ts';

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
  position: string;
};

export type NewFineTuningJob = { baseModel: string; hyperparameters: Record<string, unknown>; datasetContextIds: string[] };

type Json = Parameters<Tx['json']>[0];

const jobColumns = (tx: Tx) => tx`
  id, base_model as "baseModel", hyperparameters, status, result_model as "resultModel", created_by as "createdBy",
  created_at as "createdAt", updated_at as "updatedAt", finished_at as "finishedAt", ${positionColumn(tx, 'created_at')}`;

const constraints = {
  fine_tuning_job_contexts_context_fkey: () => badUserInput('input.datasetContextIds', 'names a context that does not exist'),
  fine_tuning_jobs_status_transition: () => badUserInput('input.id', 'the job has already finished'),
};

export async function listFineTuningJobs(tx: Tx, status: FineTuningStatus | undefined, page: KeysetPage): Promise<FineTuningJobRow[]> {
  return tx<FineTuningJobRow[]>`
    select ${jobColumns(tx)} from app.fine_tuning_jobs
    where true ${conditions(tx, status && tx`and status = ${status}`)} ${keysetConditions(tx, 'created_at', page)}
    ${keysetOrder(tx, 'created_at', page)}
    limit ${page.limit}`;
}

export async function findFineTuningJobs(tx: Tx, ids: readonly string[]): Promise<FineTuningJobRow[]> {
  return tx<FineTuningJobRow[]>`select ${jobColumns(tx)} from app.fine_tuning_jobs where ${idIn(tx, 'id', ids)}`;
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
      select ${jobColumns(tx)} from job`;
    return row!;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}

/** Undefined when no row is visible and writable to this request (RLS). */
export async function cancelFineTuningJob(tx: Tx, id: string): Promise<FineTuningJobRow | undefined> {
  try {
    const [row] = await tx<FineTuningJobRow[]>`
      update app.fine_tuning_jobs set status = 'cancelled' where id = ${id} returning ${jobColumns(tx)}`;
    return row;
  } catch (error) {
    rethrowConstraint(error, constraints);
  }
}
