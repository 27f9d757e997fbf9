// The isolation matrix of subscriptions: insert / update / delete × a row the
// subscription may show / one it may not (another session of the tenant,
// another tenant's) × two tenants × the four roles and an API key, over SSE
// and WebSocket. Every payload must be one the subscriber could have read with
// a query: its own tenant's rows in what it follows, nodes a query by the same
// credentials returns, and DELETED only for rows it had been shown.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Sql } from '../src/db/pool.ts';
import { encodeGlobalId } from '../src/nodes/global-id.ts';
import { createTestTenant, insertAgents, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { insertApiKey, sse, startLiveServer, wsConnect, type LiveResult, type LiveServer, type Received } from './helpers/live.ts';

let db: TestDatabase;
let sql: Sql;
let live: LiveServer;

type Event = { kind: string; id: string | null; node: Record<string, unknown> | null };
type Setup = { tenant: TestTenant; followed: string; unfollowed: string; key: string };
type Subscriber = { readonly setup: Setup; readonly principal: string; readonly headers: Record<string, string>; readonly activity: Received; readonly members: Received };

const ACTIVITY = 'subscription ($id: ID!) { sessionActivity(sessionId: $id) { kind id node { __typename ... on Task { title status } ... on Session { tokensUsed } } } }';
const MEMBERS = 'subscription { members { kind id node { role user { email } } } }';
const setups: Setup[] = [];
const subscribers: Subscriber[] = [];

const eventsOf = (results: LiveResult[], field: string) => results.map((result) => {
  expect(result.errors, JSON.stringify(result)).toBeUndefined();
  return result.data![field] as Event;
});

beforeAll(async () => {
  db = await useTestDatabase();
  sql = db.appPool(8);
  live = await startLiveServer(sql, db.appUrl, { subscriptions: { perTenant: 100 } });
  for (const slug of ['matrix-a', 'matrix-b']) {
    const tenant = await createTestTenant(db.owner, slug);
    const [agent] = await insertAgents(db.owner, tenant.id, tenant.members.ADMIN.userId, ['runner']);
    const sessions = await db.owner<{ id: string }[]>`insert into app.sessions (tenant_id, agent_id) values (${tenant.id}, ${agent!}), (${tenant.id}, ${agent!}) returning id`;
    const key = await insertApiKey(db.owner, tenant.id, tenant.members.LEAD.userId, 'VIEWER');
    setups.push({ tenant, followed: sessions[0]!.id, unfollowed: sessions[1]!.id, key: key.secret });
  }
  // Every principal of both tenants: activity over SSE, members over WebSocket (and the other way round for the key).
  await Promise.all(
    setups.flatMap((setup) =>
      [...(['ADMIN', 'LEAD', 'MEMBER', 'VIEWER'] as const).map((role) => [role, { authorization: `Bearer ${setup.tenant.members[role].token}` }] as const), ['API key', { 'x-api-key': setup.key }] as const].map(async ([principal, headers]) => {
        const variables = { id: encodeGlobalId('Session', setup.followed) };
        const client = await wsConnect(live.origin);
        await client.init(headers);
        const viaWs = principal === 'API key';
        const activity = viaWs ? client.subscribe(ACTIVITY, variables) : await sse(live.origin, ACTIVITY, { headers, variables });
        const members = viaWs ? await sse(live.origin, MEMBERS, { headers }) : client.subscribe(MEMBERS);
        subscribers.push({ setup, principal, headers, activity, members });
      }),
    ),
  );
  // Every subscription is open in the engine (the members streams over WebSocket have no marker: a subscribe is not
  // acknowledged, and one still starting when the joiner is written would never hear it), then every stream flows:
  // marker tasks until all have heard one.
  for (const deadline = Date.now() + 20_000; setups.some((setup) => live.app.subscriptions.count(setup.tenant.id) < 10); ) {
    if (Date.now() > deadline) throw new Error(`subscriptions open: ${setups.map((setup) => live.app.subscriptions.count(setup.tenant.id)).join(', ')} of 10 each`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const markers = new Set<string>();
  for (let attempt = 0; attempt < 40; attempt++) {
    for (const setup of setups) {
      const [row] = await db.owner<{ id: string }[]>`insert into app.tasks (tenant_id, session_id, title) values (${setup.tenant.id}, ${setup.followed}, 'marker') returning id`;
      markers.add(encodeGlobalId('Task', row!.id));
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (subscribers.every((s) => eventsOf(s.activity.results, 'sessionActivity').some((event) => markers.has(event.id ?? '')))) break;
  }
}, 60_000);

afterAll(async () => {
  await live?.close();
});

it('insert / update / delete × visible or not × two tenants × four roles and an API key: zero payloads the subscriber could not have read', async () => {
  const written = new Map<string, { tasks: { visible: string[]; hidden: string[]; deleted: string[] }; member: string }>();
  for (const setup of setups) {
    const { tenant } = setup;
    const task = async (session: string, title: string) => (await db.owner<{ id: string }[]>`insert into app.tasks (tenant_id, session_id, title) values (${tenant.id}, ${session}, ${title}) returning id`)[0]!.id;
    const kept = await task(setup.followed, 'kept');
    const hidden = await task(setup.unfollowed, 'other session');
    const doomed = await task(setup.followed, 'doomed');
    const hiddenDoomed = await task(setup.unfollowed, 'other session, doomed');
    await db.owner`update app.tasks set status = 'running' where tenant_id = ${tenant.id} and id in ${db.owner([kept, hidden])}`;
    const [user] = await db.owner<{ id: string }[]>`insert into app.users (email, display_name) values (${`joiner@${tenant.slug}.test`}, 'Joiner') returning id`;
    await db.owner`insert into app.memberships (tenant_id, user_id, role) values (${tenant.id}, ${user!.id}, 'VIEWER')`;
    written.set(tenant.id, { tasks: { visible: [kept, doomed], hidden: [hidden, hiddenDoomed], deleted: [doomed, hiddenDoomed] }, member: user!.id });
  }
  // Deletes once every subscriber was shown the rows (a row deleted before its re-read was never visible to it).
  const shown = (s: Subscriber, ids: string[], field: 'activity' | 'members', type: string) =>
    ids.every((id) => eventsOf(s[field].results, field === 'activity' ? 'sessionActivity' : 'members').some((event) => event.id === encodeGlobalId(type, id)));
  await Promise.all(subscribers.map((s) => s.activity.until(() => shown(s, written.get(s.setup.tenant.id)!.tasks.visible, 'activity', 'Task'))));
  await Promise.all(subscribers.map((s) => s.members.until(() => shown(s, [written.get(s.setup.tenant.id)!.member], 'members', 'Member'))));
  for (const setup of setups) {
    const w = written.get(setup.tenant.id)!;
    await db.owner`update app.memberships set role = 'MEMBER' where tenant_id = ${setup.tenant.id} and user_id = ${w.member}`;
    await db.owner`delete from app.tasks where tenant_id = ${setup.tenant.id} and id in ${db.owner(w.tasks.deleted)}`;
    await db.owner`delete from app.memberships where tenant_id = ${setup.tenant.id} and user_id = ${w.member}`;
  }
  const deletedSeen = (s: Subscriber, field: 'activity' | 'members', id: string) =>
    eventsOf(s[field].results, field === 'activity' ? 'sessionActivity' : 'members').some((event) => event.kind === 'DELETED' && event.id === id);
  await Promise.all(subscribers.map(async (s) => {
    const w = written.get(s.setup.tenant.id)!;
    await s.activity.until(() => deletedSeen(s, 'activity', encodeGlobalId('Task', w.tasks.deleted[0]!)));
    await s.members.until(() => deletedSeen(s, 'members', encodeGlobalId('Member', w.member)));
  }));
  // One more round of markers, so that anything wrongly delivered late would have arrived.
  await new Promise((resolve) => setTimeout(resolve, 500));

  let payloads = 0;
  const violations: string[] = [];
  for (const s of subscribers) {
    const w = written.get(s.setup.tenant.id)!;
    const own = new Set([encodeGlobalId('Session', s.setup.followed), ...w.tasks.visible.map((id) => encodeGlobalId('Task', id))]);
    const foreign = [...written.entries()].filter(([tenantId]) => tenantId !== s.setup.tenant.id).flatMap(([, other]) => [...other.tasks.visible, ...other.tasks.hidden]);
    for (const event of eventsOf(s.activity.results, 'sessionActivity')) {
      payloads++;
      const title = event.node?.title;
      if (title === 'marker') continue; // the markers of its own session
      if (!own.has(event.id!)) violations.push(`${s.setup.tenant.slug} ${s.principal}: sessionActivity delivered ${event.kind} ${event.id}`);
      if (event.kind === 'DELETED' && event.node !== null) violations.push(`${s.principal}: a DELETED carried its node`);
      if (w.tasks.hidden.some((id) => encodeGlobalId('Task', id) === event.id) || foreign.some((id) => encodeGlobalId('Task', id) === event.id)) {
        violations.push(`${s.setup.tenant.slug} ${s.principal}: a row outside what it follows: ${event.id}`);
      }
    }
    for (const event of eventsOf(s.members.results, 'members')) {
      payloads++;
      if (event.id !== encodeGlobalId('Member', w.member)) violations.push(`${s.setup.tenant.slug} ${s.principal}: members delivered ${event.kind} ${event.id}`);
    }
    // Every node it was sent and that still exists, a query with the same credentials reads; the other tenant's it cannot.
    const kept = encodeGlobalId('Task', w.tasks.visible[0]!);
    const delivered = eventsOf(s.activity.results, 'sessionActivity').filter((event) => event.id === kept && event.node);
    const response = await fetch(`${live.origin}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...s.headers },
      body: JSON.stringify({ query: 'query ($id: ID!, $foreign: ID!) { mine: node(id: $id) { ... on Task { title status } } foreign: node(id: $foreign) { id } }', variables: { id: kept, foreign: encodeGlobalId('Task', foreign[0]!) } }),
    });
    const body = (await response.json()) as { data: { mine: { title: string; status: string } | null; foreign: unknown } };
    expect(body.data.foreign).toBeNull();
    expect(body.data.mine).toEqual({ title: 'kept', status: 'RUNNING' });
    expect(delivered.at(-1)?.node).toEqual({ __typename: 'Task', ...body.data.mine });
    expect(deletedSeen(s, 'activity', encodeGlobalId('Task', w.tasks.deleted[0]!))).toBe(true);
  }
  expect(violations).toEqual([]);
  expect(subscribers).toHaveLength(10);
  expect(payloads).toBeGreaterThan(10 * 6);
}, 60_000);
