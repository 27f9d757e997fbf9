// The permission table of the product, checked against the database alone:
// every action attempted in plain SQL as the request role, for every role.
// (The GraphQL layer is checked by roles.test.ts and the module tests; this
// proves the write policies would hold if the API had a bug.)
import type postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROLES, type Role } from '../src/tenancy/roles.ts';
import { createTestTenant, type TestTenant } from './helpers/app.ts';
import { becomeMember, withRollback } from './helpers/as-member.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let tenant: TestTenant;
// Rows created by someone else (the tenant's MEMBER, or ADMIN for the MEMBER row).
let others: Record<string, string>;

beforeAll(async () => {
  db = await useTestDatabase();
  tenant = await createTestTenant(db.owner, 'perm-db');
});

type Action = { name: string; allowed: Record<Role, boolean>; attempt: (tx: postgres.TransactionSql, role: Role) => Promise<number> };

const yes = { ADMIN: true, LEAD: true, MEMBER: true, VIEWER: false };
const leads = { ADMIN: true, LEAD: true, MEMBER: false, VIEWER: false };

/** Rows of the same kind created by another member than `role`'s. */
async function seedOthers(tx: postgres.TransactionSql, role: Role) {
  const creator = role === 'MEMBER' ? tenant.members.ADMIN.userId : tenant.members.MEMBER.userId;
  const insert = async (query: postgres.PendingQuery<postgres.Row[]>) => ((await query)[0] as { id: string }).id;
  const agent = await insert(tx`insert into app.agents (tenant_id, name, kind, created_by) values (${tenant.id}, 'other agent', 'assistant', ${creator}) returning id`);
  const session = await insert(tx`insert into app.sessions (tenant_id, agent_id, started_by) values (${tenant.id}, ${agent}, ${creator}) returning id`);
  const task = await insert(tx`insert into app.tasks (tenant_id, session_id, title, created_by) values (${tenant.id}, ${session}, 'other task', ${creator}) returning id`);
  const context = await insert(tx`insert into app.contexts (tenant_id, kind, title, created_by) values (${tenant.id}, 'note', 'other context', ${creator}) returning id`);
  const job = await insert(tx`insert into app.fine_tuning_jobs (tenant_id, base_model, created_by) values (${tenant.id}, 'base', ${creator}) returning id`);
  others = { agent, session, task, context, job };
}

const count = (rows: postgres.RowList<postgres.Row[]>) => rows.count;

const ACTIONS: Action[] = [
  { name: 'read agents', allowed: { ...yes, VIEWER: true }, attempt: async (tx) => count(await tx`select id from app.agents`) },
  { name: 'create an agent', allowed: yes, attempt: async (tx) => count(await tx`insert into app.agents (tenant_id, name, kind, created_by) values (app.current_tenant_id(), 'new', 'assistant', app.current_user_id())`) },
  { name: 'start a session', allowed: yes, attempt: async (tx) => count(await tx`insert into app.sessions (tenant_id, agent_id, started_by) values (app.current_tenant_id(), ${others.agent!}, app.current_user_id())`) },
  { name: 'create a task', allowed: yes, attempt: async (tx) => count(await tx`insert into app.tasks (tenant_id, session_id, title, created_by) values (app.current_tenant_id(), ${others.session!}, 't', app.current_user_id())`) },
  { name: 'create a context', allowed: yes, attempt: async (tx) => count(await tx`insert into app.contexts (tenant_id, kind, title, created_by) values (app.current_tenant_id(), 'note', 'c', app.current_user_id())`) },
  { name: "change another's agent", allowed: leads, attempt: async (tx) => count(await tx`update app.agents set description = 'x' where id = ${others.agent!}`) },
  { name: "end another's session", allowed: leads, attempt: async (tx) => count(await tx`update app.sessions set status = 'cancelled', ended_at = now() where id = ${others.session!}`) },
  { name: "change another's task", allowed: leads, attempt: async (tx) => count(await tx`update app.tasks set status = 'running' where id = ${others.task!}`) },
  { name: "delete another's context", allowed: leads, attempt: async (tx) => count(await tx`delete from app.contexts where id = ${others.context!}`) },
  { name: 'archive an agent', allowed: leads, attempt: async (tx) => count(await tx`update app.agents set status = 'archived' where id = ${others.agent!}`) },
  { name: 'create a fine-tuning job', allowed: leads, attempt: async (tx) => count(await tx`insert into app.fine_tuning_jobs (tenant_id, base_model, created_by) values (app.current_tenant_id(), 'b', app.current_user_id())`) },
  { name: 'cancel a fine-tuning job', allowed: leads, attempt: async (tx) => count(await tx`update app.fine_tuning_jobs set status = 'cancelled' where id = ${others.job!}`) },
  { name: 'change a membership', allowed: { ADMIN: true, LEAD: false, MEMBER: false, VIEWER: false }, attempt: async (tx) => count(await tx`update app.memberships set role = role where user_id = ${tenant.members.VIEWER.userId}`) },
];

/** True when the statement did its work; false when refused (an error, or no row it may touch). */
async function attempt(role: Role, action: Action): Promise<boolean> {
  const changed = await withRollback(db.owner, async (tx) => {
    await seedOthers(tx, role);
    await becomeMember(tx, tenant.members[role]);
    return tx.savepoint((sp) => action.attempt(sp, role)).catch((error: { code?: string }) => {
      if (error.code === '42501') return 0; // refused by a policy, a grant or a role trigger
      throw error;
    });
  });
  return changed > 0;
}

describe.each(ROLES)('%s in plain SQL', (role) => {
  it.each(ACTIONS.map((action) => [action.name, action] as const))('%s', async (_name, action) => {
    expect(await attempt(role, action)).toBe(action.allowed[role]);
  });
});
