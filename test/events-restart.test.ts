// The event hub across database faults, on a PostgreSQL of this file's own
// (test/helpers/fault-postgres.ts): a restart (pg_ctl restart -m fast), a
// crash (kill -9 of the postmaster, then a start) and a frozen server
// (SIGSTOP: TCP accepts, nothing answers). Each time every subscriber gets a
// resync once the hub listens again, `connected` says where it stands, and
// live events follow: never silence.
import postgres from 'postgres';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventHub, type EventHub, type HubEvent } from '../src/events/hub.ts';
import { createTestTenant, insertAgents, type TestTenant } from './helpers/app.ts';
import { startFaultServer, type FaultServer } from './helpers/fault-postgres.ts';

let server: FaultServer;
let owner: postgres.Sql;
let hub: EventHub;
let tenant: TestTenant;
let other: TestTenant;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function listen(tenantId: string) {
  const events: HubEvent[] = [];
  const stop = hub.subscribe(tenantId, (event) => events.push(event));
  return { events, stop };
}

const created = (events: HubEvent[], id: string) => events.some((event) => event.type === 'row' && event.change.id === id && event.change.kind === 'created');

/** Writes an agent (retrying while the database comes back) and returns its id. */
async function write(of: TestTenant): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const [id] = await insertAgents(owner, of.id, of.members.ADMIN.userId, [`agent ${Date.now()} ${Math.random()}`]);
      return id!;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(100);
    }
  }
}

/** The fault, then: a resync for both tenants' subscribers, connected again, and a live event after it. */
async function expectResyncThenLive(fault: () => Promise<void>) {
  const mine = listen(tenant.id);
  const theirs = listen(other.id);
  await fault();
  await until(() => mine.events.some((event) => event.type === 'resync') && theirs.events.some((event) => event.type === 'resync'), 20_000, 'a resync for every subscriber');
  expect(hub.connected).toBe(true);
  const id = await write(tenant);
  await until(() => created(mine.events, id), 10_000, 'a live event after the resync');
  const resyncAt = mine.events.findIndex((event) => event.type === 'resync');
  const liveAt = mine.events.findIndex((event) => event.type === 'row' && event.change.id === id);
  expect(resyncAt).toBeLessThan(liveAt);
  mine.stop();
  theirs.stop();
}

beforeAll(async () => {
  server = await startFaultServer();
  owner = postgres(server.ownerUrl, { max: 2, onnotice: () => {} });
  tenant = await createTestTenant(owner, 'events-restart');
  other = await createTestTenant(owner, 'events-restart-b');
  hub = createEventHub({ url: server.appUrl, logger: pino({ level: 'silent' }), minBackoffMs: 50, maxBackoffMs: 500, publishTimeoutMs: 1_000 });
  await until(() => hub.connected, 10_000, 'the hub to listen');
}, 60_000);

afterAll(async () => {
  await hub?.close();
  await owner?.end({ timeout: 1 });
  await server?.destroy();
});

describe('the hub across database faults', () => {
  it('a restart: resync, then live events', async () => {
    await expectResyncThenLive(async () => {
      await server.restart();
    });
  }, 60_000);

  it('a crash (kill -9) and a start: not connected meanwhile, then resync and live events', async () => {
    await expectResyncThenLive(async () => {
      await server.kill();
      await until(() => !hub.connected, 10_000, 'the hub to notice');
      await sleep(300); // it keeps trying while the server is away
      expect(hub.connected).toBe(false);
      await server.start();
    });
  }, 60_000);

  it('a frozen server: the unanswered publish gives the connection up; after the thaw, resync and live events', async () => {
    await expectResyncThenLive(async () => {
      await server.freeze();
      try {
        await until(() => !hub.connected, 10_000, 'the hub to notice the silence');
      } finally {
        await server.thaw();
      }
    });
  }, 60_000);
});
