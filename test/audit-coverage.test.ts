// Every mutation of the schema writes exactly one event to the tenant's audit
// log, in its own transaction, naming the actor (the user, or the API key and
// the user it acts for; the operator for the tenant lifecycle), the tenant, the
// target and the request (X-Request-Id). The list of mutations is read from
// the schema: a new mutation without a scenario here fails the first test.
// Operator mutations also write one event to the platform log. A mutation that
// fails writes nothing, also when the database wrote its event before failing.
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/graphql/schema.ts';
import { newApiKey } from '../src/auth/secrets.ts';
import { decodeGlobalId, encodeGlobalId } from '../src/nodes/global-id.ts';
import { addMember, createUser, setOperator } from '../src/operator/repo.ts';
import { codes, createTestApp, createTestTenant, insertAgents, insertSession, tokenFor, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let operatorToken: string;
let operatorId: string;
let apiKeySecret: string;
let apiKeyId: string;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(4));
  a = await createTestTenant(db.owner, 'cov-a');
  const operator = await createUser(db.owner, 'operator@cov.test', 'Operator');
  await setOperator(db.owner, operator, true, 'cli:test', undefined);
  operatorId = operator.id;
  operatorToken = await tokenFor(operator.id);
  // An ADMIN key of the tenant's ADMIN, inserted behind the API (its own creation is not a scenario's event).
  const key = newApiKey();
  apiKeySecret = key.secret;
  const [row] = await db.owner<{ id: string }[]>`
    insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by)
    values (${a.id}, 'coverage', ${key.prefix}, ${key.hash}, 'ADMIN', ${a.members.ADMIN.userId}) returning id`;
  apiKeyId = row!.id;
});

type Caller = { readonly kind: 'user' | 'api_key'; readonly headers: Record<string, string> };
const asUser = (): Caller => ({ kind: 'user', headers: {} });
const asKey = (): Caller => ({ kind: 'api_key', headers: { 'x-api-key': apiKeySecret } });

type Outcome = { readonly action: string; readonly targetType: string; readonly targetId: string; readonly tenantId?: string };
type Scenario = {
  /** Signed-in people only (the `person` scope): no API-key run. */
  readonly personOnly?: boolean;
  /** Platform operators: the operator's token, an `operator` actor, and one platform-log event too. */
  readonly operator?: boolean;
  run(send: Send): Promise<Outcome>;
};
type Send = (query: string, variables?: Record<string, unknown>, token?: string) => Promise<Record<string, unknown>>;

const rowId = (globalId: unknown): string => decodeGlobalId(String(globalId))!.id;
const at = (value: Record<string, unknown>, ...path: string[]): unknown => path.reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], value);

// Fixtures behind the API (owner connection): each run of a scenario gets its own rows.
const ADMIN = () => a.members.ADMIN.userId;
const newAgent = async (status = 'active') => {
  const [id] = await insertAgents(db.owner, a.id, ADMIN(), [`agent-${randomUUID()}`]);
  if (status !== 'active') await db.owner`update app.agents set status = ${status} where id = ${id!}`;
  return id!;
};
const newSession = async () => insertSession(db.owner, a.id, await newAgent(), ADMIN());
const newTask = async () => {
  const [row] = await db.owner<{ id: string }[]>`
    insert into app.tasks (tenant_id, session_id, title, created_by) values (${a.id}, ${await newSession()}, 'fixture', ${ADMIN()}) returning id`;
  return row!.id;
};
const newContext = async () => {
  const [row] = await db.owner<{ id: string }[]>`
    insert into app.contexts (tenant_id, kind, title, content, created_by) values (${a.id}, 'note', 'fixture', 'body', ${ADMIN()}) returning id`;
  return row!.id;
};
const newJob = async () => {
  const [row] = await db.owner<{ id: string }[]>`
    insert into app.fine_tuning_jobs (tenant_id, base_model, created_by) values (${a.id}, 'base', ${ADMIN()}) returning id`;
  return row!.id;
};
const newMember = async (role: 'VIEWER' | 'MEMBER' = 'VIEWER') => {
  const user = await createUser(db.owner, `${randomUUID()}@cov-a.test`, 'Fixture');
  await addMember(db.owner, a.id, user.id, role);
  return user.id;
};
const newTenant = async (status = 'active') => {
  const [row] = await db.owner<{ id: string }[]>`
    insert into app.tenants (slug, name, status, suspended_at) values (${`t-${randomUUID().slice(0, 8)}`}, 'Fixture', ${status}, ${status === 'active' ? null : new Date()})
    returning id`;
  return row!.id;
};
/** An invitation made through the API (its own request), for `email`. */
const invitation = async (send: Send, email = `${randomUUID()}@invited.test`) => {
  const made = await send('mutation($e: String!) { inviteMember(input: { email: $e, role: VIEWER }) { token invitation { id } } }', { e: email });
  return { id: rowId(at(made, 'inviteMember', 'invitation', 'id')), token: String(at(made, 'inviteMember', 'token')), email };
};

const SCENARIOS: Record<string, Scenario> = {
  createAgent: {
    run: async (send) => {
      const made = await send('mutation($n: String!) { createAgent(input: { name: $n, kind: "assistant" }) { agent { id } } }', { n: `new-${randomUUID()}` });
      return { action: 'agent.create', targetType: 'agent', targetId: rowId(at(made, 'createAgent', 'agent', 'id')) };
    },
  },
  updateAgent: {
    run: async (send) => {
      const id = await newAgent();
      await send('mutation($id: ID!) { updateAgent(input: { id: $id, description: "changed" }) { agent { id } } }', { id: encodeGlobalId('Agent', id) });
      return { action: 'agent.update', targetType: 'agent', targetId: id };
    },
  },
  archiveAgent: {
    run: async (send) => {
      const id = await newAgent();
      await send('mutation($id: ID!) { archiveAgent(input: { id: $id }) { agent { id } } }', { id: encodeGlobalId('Agent', id) });
      return { action: 'agent.update', targetType: 'agent', targetId: id };
    },
  },
  restoreAgent: {
    run: async (send) => {
      const id = await newAgent('archived');
      await send('mutation($id: ID!) { restoreAgent(input: { id: $id }) { agent { id } } }', { id: encodeGlobalId('Agent', id) });
      return { action: 'agent.update', targetType: 'agent', targetId: id };
    },
  },
  deleteAgent: {
    run: async (send) => {
      // With a session and a task: deleted with it, audited once, as the agent's deletion.
      const session = await newSession();
      await db.owner`insert into app.tasks (tenant_id, session_id, title, created_by) values (${a.id}, ${session}, 'goes too', ${ADMIN()})`;
      const [row] = await db.owner<{ agent_id: string }[]>`select agent_id from app.sessions where id = ${session}`;
      const id = row!.agent_id;
      await send('mutation($id: ID!) { deleteAgent(input: { id: $id }) { deletedAgentId } }', { id: encodeGlobalId('Agent', id) });
      return { action: 'agent.delete', targetType: 'agent', targetId: id };
    },
  },
  startSession: {
    run: async (send) => {
      const made = await send('mutation($a: ID!) { startSession(input: { agentId: $a }) { session { id } } }', { a: encodeGlobalId('Agent', await newAgent()) });
      return { action: 'session.create', targetType: 'session', targetId: rowId(at(made, 'startSession', 'session', 'id')) };
    },
  },
  endSession: {
    run: async (send) => {
      const id = await newSession();
      await send('mutation($id: ID!) { endSession(input: { id: $id, status: COMPLETED }) { session { id } } }', { id: encodeGlobalId('Session', id) });
      return { action: 'session.update', targetType: 'session', targetId: id };
    },
  },
  recordUsage: {
    run: async (send) => {
      const id = await newSession();
      await send('mutation($id: ID!) { recordUsage(input: { sessionId: $id, tokens: 10 }) { session { id } } }', { id: encodeGlobalId('Session', id) });
      return { action: 'session.update', targetType: 'session', targetId: id };
    },
  },
  createTask: {
    run: async (send) => {
      const made = await send('mutation($s: ID!) { createTask(input: { sessionId: $s, title: "t" }) { task { id } } }', { s: encodeGlobalId('Session', await newSession()) });
      return { action: 'task.create', targetType: 'task', targetId: rowId(at(made, 'createTask', 'task', 'id')) };
    },
  },
  updateTaskStatus: {
    run: async (send) => {
      // Its tokens reach the session by a trigger: audited once, as the task's change.
      const id = await newTask();
      await send('mutation($id: ID!) { updateTaskStatus(input: { id: $id, status: RUNNING, tokens: 3 }) { task { id } } }', { id: encodeGlobalId('Task', id) });
      return { action: 'task.update', targetType: 'task', targetId: id };
    },
  },
  assignTask: {
    run: async (send) => {
      const id = await newTask();
      await send('mutation($id: ID!, $u: ID) { assignTask(input: { id: $id, assigneeId: $u }) { task { id } } }', { id: encodeGlobalId('Task', id), u: a.members.MEMBER.userId });
      return { action: 'task.update', targetType: 'task', targetId: id };
    },
  },
  createContext: {
    run: async (send) => {
      const made = await send('mutation { createContext(input: { kind: NOTE, title: "t", content: "secret plans" }) { context { id } } }');
      return { action: 'context.create', targetType: 'context', targetId: rowId(at(made, 'createContext', 'context', 'id')) };
    },
  },
  updateContext: {
    run: async (send) => {
      const id = await newContext();
      await send('mutation($id: ID!) { updateContext(input: { id: $id, content: "new body" }) { context { id } } }', { id: encodeGlobalId('Context', id) });
      return { action: 'context.update', targetType: 'context', targetId: id };
    },
  },
  deleteContext: {
    run: async (send) => {
      const id = await newContext();
      await send('mutation($id: ID!) { deleteContext(input: { id: $id }) { deletedContextId } }', { id: encodeGlobalId('Context', id) });
      return { action: 'context.delete', targetType: 'context', targetId: id };
    },
  },
  createFineTuningJob: {
    run: async (send) => {
      const made = await send('mutation($c: [ID!]!) { createFineTuningJob(input: { baseModel: "base", datasetContextIds: $c }) { job { id } } }', {
        c: [encodeGlobalId('Context', await newContext())],
      });
      return { action: 'fine_tuning_job.create', targetType: 'fine_tuning_job', targetId: rowId(at(made, 'createFineTuningJob', 'job', 'id')) };
    },
  },
  cancelFineTuningJob: {
    run: async (send) => {
      const id = await newJob();
      await send('mutation($id: ID!) { cancelFineTuningJob(input: { id: $id }) { job { id } } }', { id: encodeGlobalId('FineTuningJob', id) });
      return { action: 'fine_tuning_job.update', targetType: 'fine_tuning_job', targetId: id };
    },
  },
  createApiKey: {
    personOnly: true,
    run: async (send) => {
      const made = await send('mutation { createApiKey(input: { name: "made", role: VIEWER }) { apiKey { id } secret } }');
      return { action: 'api_key.create', targetType: 'api_key', targetId: rowId(at(made, 'createApiKey', 'apiKey', 'id')) };
    },
  },
  revokeApiKey: {
    personOnly: true,
    run: async (send) => {
      const key = newApiKey();
      const [row] = await db.owner<{ id: string }[]>`
        insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by) values (${a.id}, 'old', ${key.prefix}, ${key.hash}, 'VIEWER', ${ADMIN()}) returning id`;
      await send('mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { id } } }', { id: encodeGlobalId('ApiKey', row!.id) });
      return { action: 'api_key.revoke', targetType: 'api_key', targetId: row!.id };
    },
  },
  inviteMember: {
    personOnly: true,
    run: async (send) => {
      const made = await send('mutation($e: String!) { inviteMember(input: { email: $e, role: VIEWER }) { invitation { id } } }', { e: `${randomUUID()}@invited.test` });
      return { action: 'invitation.create', targetType: 'invitation', targetId: rowId(at(made, 'inviteMember', 'invitation', 'id')) };
    },
  },
  revokeInvitation: {
    personOnly: true,
    run: async (send) => {
      const { id } = await invitation(send);
      await send('mutation($id: ID!) { revokeInvitation(input: { id: $id }) { invitation { id } } }', { id: encodeGlobalId('Invitation', id) });
      return { action: 'invitation.revoke', targetType: 'invitation', targetId: id };
    },
  },
  acceptInvitation: {
    personOnly: true,
    run: async (send) => {
      const { id, token, email } = await invitation(send);
      const newcomer = await createUser(db.owner, email, 'Newcomer');
      // The newcomer's token names no tenant: the event is the invitation's tenant's, by the newcomer.
      await send('mutation($t: String!) { acceptInvitation(input: { token: $t }) { role } }', { t: token }, await tokenFor(newcomer.id));
      return { action: 'invitation.accept', targetType: 'invitation', targetId: id, actorUserId: newcomer.id } as Outcome;
    },
  },
  updateMemberRole: {
    personOnly: true,
    run: async (send) => {
      const userId = await newMember();
      await send('mutation($u: ID!) { updateMemberRole(input: { userId: $u, role: MEMBER }) { member { id } } }', { u: userId });
      return { action: 'member.role_change', targetType: 'user', targetId: userId };
    },
  },
  removeMember: {
    personOnly: true,
    run: async (send) => {
      const userId = await newMember('MEMBER');
      // Rows they created keep their creator as null (a foreign-key action): audited once, as the removal.
      await db.owner`insert into app.agents (tenant_id, created_by, name, kind) values (${a.id}, ${userId}, ${`theirs-${randomUUID()}`}, 'assistant')`;
      await send('mutation($u: ID!) { removeMember(input: { userId: $u }) { removedUserId } }', { u: userId });
      return { action: 'member.remove', targetType: 'user', targetId: userId };
    },
  },
  createTenant: {
    operator: true,
    run: async (send) => {
      const made = await send('mutation($s: String!) { createTenant(input: { slug: $s, name: "New", plan: FREE }) { tenant { id } } }', { s: `n-${randomUUID().slice(0, 8)}` }, operatorToken);
      const id = String(at(made, 'createTenant', 'tenant', 'id'));
      return { action: 'tenant.create', targetType: 'tenant', targetId: id, tenantId: id };
    },
  },
  suspendTenant: {
    operator: true,
    run: async (send) => {
      const id = await newTenant();
      await send('mutation($id: ID!) { suspendTenant(input: { id: $id, reason: "unpaid" }) { tenant { id } } }', { id }, operatorToken);
      return { action: 'tenant.suspend', targetType: 'tenant', targetId: id, tenantId: id };
    },
  },
  reactivateTenant: {
    operator: true,
    run: async (send) => {
      const id = await newTenant('suspended');
      await send('mutation($id: ID!) { reactivateTenant(input: { id: $id }) { tenant { id } } }', { id }, operatorToken);
      return { action: 'tenant.reactivate', targetType: 'tenant', targetId: id, tenantId: id };
    },
  },
  setTenantLimits: {
    operator: true,
    run: async (send) => {
      const id = await newTenant();
      await send('mutation($id: ID!) { setTenantLimits(input: { id: $id, plan: TEAM, limits: { agents: 7 } }) { tenant { id } } }', { id }, operatorToken);
      return { action: 'tenant.set_limits', targetType: 'tenant', targetId: id, tenantId: id };
    },
  },
};

type EventRow = { tenant_id: string; action: string; target_type: string; target_id: string; actor_kind: string; actor_user_id: string | null; actor_api_key_id: string | null };

async function tenantEvents(requestId: string): Promise<EventRow[]> {
  return db.owner<EventRow[]>`
    select tenant_id, action, target_type, target_id, actor_kind, actor_user_id, actor_api_key_id from app.audit_events where request_id = ${requestId}`;
}
const countAll = async () => Number((await db.owner<{ n: string }[]>`select count(*) as n from app.audit_events`)[0]!.n);

/** A sender whose every request is checked to succeed; the last request id is the scenario's. */
function sender(caller: Caller) {
  const state = { requestId: '' };
  const send: Send = async (query, variables, token) => {
    state.requestId = `cov-${randomUUID()}`;
    const headers = { 'x-request-id': state.requestId, ...(token ? {} : caller.headers) };
    const response: GraphQLResponse = await api.request(query, { token: token ?? (caller.kind === 'user' ? a.members.ADMIN.token : undefined), variables, headers });
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    return response.body.data!;
  };
  return { send, state };
}

describe('coverage', () => {
  it('has a scenario for every mutation of the schema (docs/permissions.md lists the same)', () => {
    const mutations = Object.keys(schema.getMutationType()!.getFields()).sort();
    expect(Object.keys(SCENARIOS).sort()).toEqual(mutations);
  });

  type As = 'user' | 'api_key' | 'operator';
  const runs: [string, As][] = Object.entries(SCENARIOS).flatMap(([name, scenario]): [string, As][] =>
    scenario.operator ? [[name, 'operator']] : scenario.personOnly ? [[name, 'user']] : [[name, 'user'], [name, 'api_key']],
  );

  it.each(runs)('%s as %s writes exactly one event: actor, tenant, target, request', async (name, as) => {
    const scenario = SCENARIOS[name]!;
    const { send, state } = sender(as === 'api_key' ? asKey() : asUser());
    // Count around the scenario's own last request only: its fixtures may write events of their own.
    let before = 0;
    const counted: Send = async (query, variables, token) => {
      before = await countAll();
      return send(query, variables, token);
    };
    const outcome = (await scenario.run(counted)) as Outcome & { actorUserId?: string };
    expect(await countAll()).toBe(before + 1);
    const events = await tenantEvents(state.requestId);
    expect(events).toEqual([
      {
        tenant_id: outcome.tenantId ?? a.id,
        action: outcome.action,
        target_type: outcome.targetType,
        target_id: outcome.targetId,
        actor_kind: as,
        actor_user_id: as === 'operator' ? operatorId : (outcome.actorUserId ?? ADMIN()),
        actor_api_key_id: as === 'api_key' ? apiKeyId : null,
      },
    ]);
    if (scenario.operator) {
      const platform = await db.owner<{ action: string; actor_user_id: string; target_tenant_id: string }[]>`
        select action, actor_user_id, target_tenant_id from app_private.operator_audit_events where request_id = ${state.requestId}`;
      expect(platform).toEqual([{ action: outcome.action, actor_user_id: operatorId, target_tenant_id: outcome.targetId }]);
    }
  });
});

describe('a failed mutation writes nothing', () => {
  const expectNoEvents = async (requestId: string) => {
    expect(await tenantEvents(requestId)).toEqual([]);
    expect(await db.owner`select 1 from app_private.operator_audit_events where request_id = ${requestId}`).toEqual([]);
  };
  const request = (query: string, variables: Record<string, unknown>, token = a.members.ADMIN.token) => {
    const requestId = `fail-${randomUUID()}`;
    return { requestId, response: api.request(query, { token, variables, headers: { 'x-request-id': requestId } }) };
  };

  it('refused by the database after its event was written (a duplicate name): the event rolls back with the change', async () => {
    const name = `dup-${randomUUID()}`;
    await insertAgents(db.owner, a.id, ADMIN(), [name]);
    const before = await countAll();
    const { requestId, response } = request('mutation($n: String!) { createAgent(input: { name: $n, kind: "assistant" }) { agent { id } } }', { n: name });
    expect(codes(await response)).toEqual(['CONFLICT']);
    await expectNoEvents(requestId);
    expect(await countAll()).toBe(before);
  });

  it('two mutations in one request, the second failing: neither change nor its event remains', async () => {
    const name = `dup-${randomUUID()}`;
    await insertAgents(db.owner, a.id, ADMIN(), [name]);
    const before = await countAll();
    const { requestId, response } = request(
      'mutation($ok: String!, $dup: String!) { a: createAgent(input: { name: $ok, kind: "x" }) { agent { id } } b: createAgent(input: { name: $dup, kind: "x" }) { agent { id } } }',
      { ok: `ok-${randomUUID()}`, dup: name },
    );
    const answered = await response;
    expect(codes(answered)).toEqual(['CONFLICT']);
    expect(answered.body.data).toBeNull();
    await expectNoEvents(requestId);
    expect(await countAll()).toBe(before);
  });

  it('refused by the role, by a missing row, by a state rule, by an operator check: nothing', async () => {
    const agent = encodeGlobalId('Agent', await newAgent());
    const ended = await newSession();
    await db.owner`update app.sessions set status = 'completed', ended_at = now() where id = ${ended}`;
    const before = await countAll();
    const attempts = [
      request('mutation($id: ID!) { deleteAgent(input: { id: $id }) { deletedAgentId } }', { id: agent }, a.members.VIEWER.token),
      request('mutation($id: ID!) { updateAgent(input: { id: $id, name: "x" }) { agent { id } } }', { id: encodeGlobalId('Agent', randomUUID()) }),
      request('mutation($id: ID!) { endSession(input: { id: $id, status: FAILED }) { session { id } } }', { id: encodeGlobalId('Session', ended) }),
      request('mutation($id: ID!) { suspendTenant(input: { id: $id, reason: "no" }) { tenant { id } } }', { id: a.id }),
    ];
    const answers = await Promise.all(attempts.map(async ({ requestId, response }) => ({ requestId, codes: codes(await response) })));
    expect(answers.map((answer) => answer.codes)).toEqual([['FORBIDDEN'], ['NOT_FOUND'], ['BAD_USER_INPUT'], ['FORBIDDEN']]);
    for (const { requestId } of answers) await expectNoEvents(requestId);
    expect(await countAll()).toBe(before);
  });
});

describe('two changes, two events', () => {
  it('createTenant with adminEmail makes a tenant and its first invitation: one event each, in both logs', async () => {
    const { send, state } = sender(asUser());
    const made = await send('mutation($s: String!) { createTenant(input: { slug: $s, name: "Two", plan: FREE, adminEmail: "first@two.test" }) { tenant { id } adminInvitationToken } }', { s: `two-${randomUUID().slice(0, 8)}` }, operatorToken);
    const id = String(at(made, 'createTenant', 'tenant', 'id'));
    const events = await db.owner<{ tenant_id: string; action: string; actor_kind: string; actor_user_id: string }[]>`
      select tenant_id, action, actor_kind, actor_user_id from app.audit_events where request_id = ${state.requestId} order by seq`;
    expect(events).toEqual([
      { tenant_id: id, action: 'tenant.create', actor_kind: 'operator', actor_user_id: operatorId },
      // The invitation's own trigger: the operator is the request's user.
      { tenant_id: id, action: 'invitation.create', actor_kind: 'user', actor_user_id: operatorId },
    ]);
    const platform = await db.owner<{ action: string }[]>`select action from app_private.operator_audit_events where request_id = ${state.requestId} order by seq`;
    expect(platform).toEqual([{ action: 'tenant.create' }, { action: 'invitation.create' }]);
    expect(JSON.stringify(await db.owner`select * from app.audit_events where request_id = ${state.requestId}`)).not.toContain(String(at(made, 'createTenant', 'adminInvitationToken')));
  });
});

describe('event contents', () => {
  it('a summary names what changed and never a secret, a token or a body', async () => {
    const { send, state } = sender(asUser());
    const made = await send('mutation { createApiKey(input: { name: "summary", role: VIEWER }) { secret apiKey { id } } }');
    const secret = String(at(made, 'createApiKey', 'secret'));
    const keyEvent = JSON.stringify(await db.owner`select * from app.audit_events where request_id = ${state.requestId}`);
    expect(keyEvent).not.toContain(secret);
    expect(keyEvent).not.toContain(secret.slice(8, 24));

    const invited = await invitation(send);
    const inviteEvent = JSON.stringify(await db.owner`select * from app.audit_events where request_id = ${state.requestId}`);
    expect(inviteEvent).not.toContain(invited.token);

    const context = await send('mutation { createContext(input: { kind: NOTE, title: "t", content: "the launch code is 0000" }) { context { id } } }');
    const id = rowId(at(context, 'createContext', 'context', 'id'));
    await send('mutation($id: ID!) { updateContext(input: { id: $id, content: "the launch code is 1234" }) { context { id } } }', { id: encodeGlobalId('Context', id) });
    const [event] = await db.owner<{ details: Record<string, unknown> }[]>`select details from app.audit_events where request_id = ${state.requestId}`;
    expect(event!.details).toEqual({ changed: ['content'], kind: 'note', contentBytes: 23, agentId: null, sessionId: null });
  });

  it('an update that changes nothing writes no event', async () => {
    const id = await newAgent();
    const { send, state } = sender(asUser());
    await send('mutation($id: ID!) { updateAgent(input: { id: $id }) { agent { id } } }', { id: encodeGlobalId('Agent', id) });
    expect(await tenantEvents(state.requestId)).toEqual([]);
  });
});
