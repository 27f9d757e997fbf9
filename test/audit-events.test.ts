// auditEvents: the tenant's audit log for its ADMINs through GraphQL, newest
// first, paged by cursors, filtered by actor, action, target and time, each
// filter input with a stated limit and its attack refused as BAD_USER_INPUT.
// Isolation: another tenant's ADMIN never sees, pages into or loads A's events.
import { beforeAll, describe, expect, it } from 'vitest';
import { newApiKey } from '../src/auth/secrets.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { codes, createTestApp, createTestTenant, type GraphQLResponse, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let a: TestTenant;
let b: TestTenant;
let keySecret: string;
let keyId: string;
/** A's agents made for these tests, in the order they were made (each an agent.create event). */
const made: string[] = [];

type Event = {
  id: string;
  seq: number;
  occurredAt: string;
  actorKind: string;
  actorUserId: string | null;
  actorUser: { email: string } | null;
  actorApiKey: { id: string; name: string } | null;
  action: string;
  targetType: string;
  targetId: string;
  reason: string | null;
  details: Record<string, unknown>;
  requestId: string | null;
};
type Page = { edges: { cursor: string; node: Event }[]; pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; endCursor: string; startCursor: string } };

const FIELDS = 'id seq occurredAt actorKind actorUserId actorUser { email } actorApiKey { id name } action targetType targetId reason details requestId';
const LIST = `query($first: Int, $after: String, $last: Int, $before: String, $filter: AuditEventFilter) {
  auditEvents(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    edges { cursor node { ${FIELDS} } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`;

const page = (response: GraphQLResponse): Page => {
  expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
  return response.body.data!.auditEvents as Page;
};
const list = (variables: Record<string, unknown>, token = a.members.ADMIN.token, headers: Record<string, string> = {}) =>
  api.request(LIST, { token, variables, headers });

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(4));
  a = await createTestTenant(db.owner, 'ae-a');
  b = await createTestTenant(db.owner, 'ae-b');
  const key = newApiKey();
  keySecret = key.secret;
  const [row] = await db.owner<{ id: string }[]>`
    insert into app.api_keys (tenant_id, name, prefix, secret_hash, role, created_by) values (${a.id}, 'robot', ${key.prefix}, ${key.hash}, 'LEAD', ${a.members.LEAD.userId}) returning id`;
  keyId = row!.id;
  for (let index = 0; index < 5; index++) {
    const byKey = index % 2 === 1;
    const response = await api.request('mutation($n: String!) { createAgent(input: { name: $n, kind: "assistant" }) { agent { id } } }', {
      token: byKey ? undefined : a.members.MEMBER.token,
      headers: { 'x-request-id': `ae-${index}`, ...(byKey ? { 'x-api-key': keySecret } : {}) },
      variables: { n: `agent-${index}` },
    });
    expect(response.body.errors).toBeUndefined();
    made.push(String((response.body.data!.createAgent as { agent: { id: string } }).agent.id));
  }
  // B's own events: B's ADMIN sees these and nothing of A's.
  await api.request('mutation { createAgent(input: { name: "b-agent", kind: "assistant" }) { agent { id } } }', { token: b.members.ADMIN.token });
});

describe('reading', () => {
  it("is the tenant's log newest first, each event whole: actor, target, request, summary", async () => {
    const events = page(await list({ first: 100 })).edges.map((edge) => edge.node);
    const seqs = events.map((event) => event.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => y - x));
    const newest = events.slice(0, 5).reverse();
    expect(newest.map((event) => event.requestId)).toEqual(['ae-0', 'ae-1', 'ae-2', 'ae-3', 'ae-4']);
    expect(newest[0]).toMatchObject({
      actorKind: 'USER',
      actorUserId: a.members.MEMBER.userId,
      actorUser: { email: 'member@ae-a.test' },
      actorApiKey: null,
      action: 'agent.create',
      targetType: 'agent',
      reason: null,
      details: { name: 'agent-0', kind: 'assistant', status: 'active', model: 'default' },
    });
    expect(newest[1]).toMatchObject({ actorKind: 'API_KEY', actorUserId: a.members.LEAD.userId, actorApiKey: { id: encodeGlobalId('ApiKey', keyId), name: 'robot' } });
    // The target id is the row's own (the agents' global ids name the same rows).
    const agentIds = (await db.owner<{ id: string }[]>`select id from app.agents where tenant_id = ${a.id} order by created_at`).map((row) => row.id);
    expect(newest.map((event) => event.targetId)).toEqual(agentIds);
    expect(made).toEqual(agentIds.map((id) => encodeGlobalId('Agent', id)));
    // Every event is one node(id:) reads back, for ADMIN only (the policy).
    const node = `query($id: ID!) { node(id: $id) { ... on AuditEvent { action requestId } } }`;
    expect((await api.request(node, { token: a.members.ADMIN.token, variables: { id: newest[0]!.id } })).body.data).toEqual({ node: { action: 'agent.create', requestId: 'ae-0' } });
    expect((await api.request(node, { token: a.members.LEAD.token, variables: { id: newest[0]!.id } })).body.data).toEqual({ node: null });
  });

  it('pages by cursor both ways without gaps or repeats', async () => {
    const all = page(await list({ first: 100 })).edges.map((edge) => edge.node.id);
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const current = page(await list({ first: 3, after }));
      seen.push(...current.edges.map((edge) => edge.node.id));
      if (!current.pageInfo.hasNextPage) break;
      after = current.pageInfo.endCursor;
    }
    expect(seen).toEqual(all);
    const tail = page(await list({ last: 2 }));
    expect(tail.edges.map((edge) => edge.node.id)).toEqual(all.slice(-2));
    const before = page(await list({ last: 2, before: tail.pageInfo.startCursor }));
    expect(before.edges.map((edge) => edge.node.id)).toEqual(all.slice(-4, -2));
  });

  it('ADMIN only: LEAD, MEMBER, VIEWER and an API key below ADMIN are FORBIDDEN', async () => {
    for (const role of ['LEAD', 'MEMBER', 'VIEWER'] as const) expect(codes(await list({}, a.members[role].token))).toEqual(['FORBIDDEN']);
    expect(codes(await api.request(LIST, { headers: { 'x-api-key': keySecret } }))).toEqual(['FORBIDDEN']);
  });
});

describe('filters', () => {
  const ids = async (filter: Record<string, unknown>, token = a.members.ADMIN.token) =>
    page(await list({ first: 100, filter }, token)).edges.map((edge) => edge.node.requestId ?? edge.node.action);

  it('by actor (user, API key, kind), action, target and time, together', async () => {
    expect(await ids({ actorUserId: a.members.MEMBER.userId })).toEqual(['ae-4', 'ae-2', 'ae-0']);
    expect(await ids({ actorUserId: a.members.MEMBER.userId.toUpperCase() })).toEqual(['ae-4', 'ae-2', 'ae-0']);
    expect(await ids({ actorApiKeyId: encodeGlobalId('ApiKey', keyId) })).toEqual(['ae-3', 'ae-1']);
    expect(await ids({ actorKind: 'API_KEY' })).toEqual(['ae-3', 'ae-1']);
    expect(await ids({ action: 'agent.create', actorKind: 'USER' })).toEqual(['ae-4', 'ae-2', 'ae-0']);
    const [target] = await db.owner<{ id: string }[]>`select id from app.agents where tenant_id = ${a.id} and name = 'agent-2'`;
    expect(await ids({ targetType: 'agent', targetId: target!.id })).toEqual(['ae-2']);
    expect(await ids({ targetType: 'api_key', targetId: target!.id })).toEqual([]);
    const events = page(await list({ first: 5 })).edges.map((edge) => edge.node);
    const middle = events[2]!.occurredAt;
    // occurredAfter inclusive, occurredBefore exclusive.
    expect(await ids({ occurredAfter: middle, action: 'agent.create' })).toEqual(['ae-4', 'ae-3', 'ae-2']);
    expect(await ids({ occurredBefore: middle, action: 'agent.create' })).toEqual(['ae-1', 'ae-0']);
    expect(await ids({ action: 'agent.delete' })).toEqual([]);
    // A key id that names no key (or names something else) matches nothing.
    expect(await ids({ actorApiKeyId: encodeGlobalId('Agent', keyId) })).toEqual([]);
    expect(await ids({ actorApiKeyId: 'not an id' })).toEqual([]);
  });

  it('every input has a limit; each attack on it is BAD_USER_INPUT naming the input, before any SQL', async () => {
    const refused = async (variables: Record<string, unknown>, field: string) => {
      const response = await list(variables);
      expect(response.body.errors?.[0]?.extensions, JSON.stringify(variables)).toMatchObject({ code: 'BAD_USER_INPUT', ...(field ? { field } : {}) });
      expect(response.body.data?.auditEvents ?? null).toBeNull();
    };
    await refused({ filter: { action: `a${'.b'.repeat(50)}` } }, 'filter.action'); // 101 characters
    await refused({ filter: { action: "agent.create' or 1=1 --" } }, 'filter.action');
    await refused({ filter: { action: 'Agent.Create' } }, 'filter.action');
    await refused({ filter: { targetType: 'x'.repeat(51) } }, 'filter.targetType');
    await refused({ filter: { targetType: 'agent; drop table app.audit_events' } }, 'filter.targetType');
    await refused({ filter: { targetId: 'x'.repeat(201) } }, 'filter.targetId');
    await refused({ filter: { targetId: '' } }, 'filter.targetId');
    await refused({ filter: { actorUserId: "' or ''='" } }, 'filter.actorUserId');
    await refused({ filter: { actorUserId: 'x'.repeat(10_000) } }, 'filter.actorUserId');
    await refused({ filter: { occurredAfter: 'yesterday' } }, '');
    await refused({ filter: { actorKind: 'ROOT' } }, '');
    // Cursors: only what this list returned (an event's uuid handle at a timestamp), at most 200 characters.
    const forged = (text: string) => Buffer.from(text).toString('base64url');
    await refused({ after: forged('2026-01-01 00:00:00|12345') }, 'after');
    await refused({ after: forged('2026-01-01 00:00:00|1 or 1=1') }, 'after');
    await refused({ before: forged(`2026-01-01 00:00:00|${'9'.repeat(19)}`) }, 'before');
    await refused({ after: 'A'.repeat(10_000) }, 'after');
    await refused({ after: forged('not a time|5') }, 'after');
    // A page: at most 100 (a larger first is capped, as on every list); a negative one is refused.
    const many = await db.owner<{ n: number }[]>`select count(*)::int as n from app.audit_events where tenant_id = ${a.id}`;
    expect(page(await list({ first: 1000 })).edges).toHaveLength(Math.min(100, many[0]!.n));
    expect(codes(await list({ first: -1 }))).toEqual(['BAD_USER_INPUT']);
  });
});

describe('isolation', () => {
  it("B's ADMIN sees only B's events, whatever the filter, cursor or id", async () => {
    const bEvents = page(await list({ first: 100 }, b.members.ADMIN.token)).edges.map((edge) => edge.node);
    expect(bEvents.length).toBeGreaterThan(0);
    const bTargets = new Set((await db.owner<{ id: string }[]>`select target_id as id from app.audit_events where tenant_id = ${b.id}`).map((row) => row.id));
    for (const event of bEvents) expect(bTargets.has(event.targetId)).toBe(true);
    expect(bEvents.map((event) => event.requestId)).not.toContain('ae-0');

    // A's actors, key, targets: nothing in B.
    const [target] = await db.owner<{ id: string }[]>`select id from app.agents where tenant_id = ${a.id} and name = 'agent-2'`;
    for (const filter of [
      { actorUserId: a.members.MEMBER.userId },
      { actorApiKeyId: encodeGlobalId('ApiKey', keyId) },
      { targetType: 'agent', targetId: target!.id },
    ]) {
      expect(page(await list({ first: 100, filter }, b.members.ADMIN.token)).edges).toEqual([]);
    }
    // A cursor from A's log pages B's own log (it carries a position, never a tenant), and never A's rows.
    const aPage = page(await list({ first: 2 }));
    const fromA = page(await list({ first: 100, after: aPage.pageInfo.endCursor }, b.members.ADMIN.token)).edges.map((edge) => edge.node.id);
    const aIds = new Set(page(await list({ first: 100 })).edges.map((edge) => edge.node.id));
    for (const id of fromA) expect(aIds.has(id)).toBe(false);
    // A's event by its global id: null for B's ADMIN, exactly like an id that names nothing.
    const node = 'query($id: ID!) { node(id: $id) { id } }';
    const aEvent = aPage.edges[0]!.node.id;
    expect((await api.request(node, { token: b.members.ADMIN.token, variables: { id: aEvent } })).body.data).toEqual({ node: null });
    expect((await api.request(node, { token: b.members.ADMIN.token, variables: { id: encodeGlobalId('AuditEvent', '999999999') } })).body.data).toEqual({ node: null });
    // B's ADMIN naming tenant A in the header: not a member there, refused as for any tenant.
    expect(codes(await list({}, b.members.ADMIN.token, { 'x-tenant-id': 'ae-a' }))).toEqual(['TENANT_NOT_FOUND']);
  });
});
