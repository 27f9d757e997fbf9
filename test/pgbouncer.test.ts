// Through PgBouncer in transaction mode (Debian's, 1.18 here): the settings
// that work (prepare: false; named statements collide below 1.21), a canary of
// 10,000 interleaved requests of many tenants on 3 server connections checked
// statement by statement, nothing left on any server connection, and what
// prepare: false costs in round trips. The isolation and property suites run
// through it too (test/*.pgbouncer.test.ts).
import net from 'node:net';
import type { GraphQLError } from 'graphql';
import postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Sql, type Tx } from '../src/db/pool.ts';
import { TenantTransaction } from '../src/db/tenant-transaction.ts';
import { addMember, createTenant, createUser } from '../src/operator/repo.ts';
import { createTestApp, createTestTenant, insertAgents, insertWorkSession, tokenFor, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';
import { pgbouncerVersion, startPgBouncer, versionAtLeast, type PgBouncer } from './helpers/pgbouncer.ts';

const SERVER_CONNECTIONS = 3;

let db: TestDatabase;
let bouncer: PgBouncer;
/** The request role through PgBouncer, as the service would with DB_PREPARE=false. */
let pool: Sql;

beforeAll(async () => {
  db = await useTestDatabase();
  // >= 1.21 keeps named statements when told to: the settings test then expects prepare: true to work.
  const keepsPrepared = versionAtLeast(pgbouncerVersion(), 1, 21);
  bouncer = await startPgBouncer({ poolSize: SERVER_CONNECTIONS, ...(keepsPrepared ? { maxPreparedStatements: 200 } : {}) });
  pool = createPool(bouncer.url(db.appUrl), { max: 16, prepare: false });
  return async () => {
    await pool.end({ timeout: 5 });
    await bouncer.stop();
  };
});

describe('settings', () => {
  it('runs Debian 12 PgBouncer 1.18 or newer', () => {
    expect(versionAtLeast(bouncer.version, 1, 18)).toBe(true);
  });

  it('named prepared statements fail below 1.21 (hence DB_PREPARE=false); unnamed ones work', async () => {
    const prepared = postgres(bouncer.url(db.appUrl), { max: 1, prepare: true, onnotice: () => {} });
    const holders = postgres(bouncer.url(db.appUrl), { max: SERVER_CONNECTIONS, prepare: false, onnotice: () => {} });
    const unnamed = postgres(bouncer.url(db.appUrl), { max: 4, prepare: false, onnotice: () => {} });
    const releases: (() => void)[] = [];
    const holding: Promise<unknown>[] = [];
    try {
      const statement = (sql: postgres.Sql, i: number) => sql.begin((tx) => tx<{ n: number; pid: number }[]>`select ${i}::int as n, pg_backend_pid() as pid`);
      // The statement is prepared on one server connection; other clients then hold transactions until one holds that
      // very connection, so the client's next transaction runs on another. (60 concurrent transactions left this to
      // PgBouncer's scheduling: on a loaded machine none landed elsewhere, and nothing failed.)
      const [first] = await statement(prepared, 0);
      let holdsIt = false;
      for (let held = 0; held < SERVER_CONNECTIONS && !holdsIt; held++) {
        let release!: () => void;
        const released = new Promise<void>((resolve) => (release = resolve));
        const pid = await new Promise<number>((resolve, reject) => {
          holding.push(holders.begin(async (tx) => {
            resolve((await tx<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid);
            await released;
          }).catch(reject));
        });
        releases.push(release);
        holdsIt = pid === first!.pid;
      }
      expect(holdsIt, 'a holder got the connection the statement was prepared on').toBe(true);
      for (const release of releases.slice(0, -1)) release(); // the others go back: that connection stays held
      const again = await statement(prepared, 1).then(() => undefined, (error: unknown) => String(error));
      if (versionAtLeast(bouncer.version, 1, 21)) expect(again).toBeUndefined();
      else expect(again).toMatch(/prepared statement .* does not exist/);
      const runs = Array.from({ length: 60 }, (_, i) => i);
      const plain = await Promise.all(runs.map((i) => statement(unnamed, i)));
      expect(plain.map(([row]) => row!.n)).toEqual(runs);
    } finally {
      for (const release of releases) release();
      await Promise.allSettled(holding);
      await Promise.all([prepared.end({ timeout: 1 }), holders.end({ timeout: 1 }), unnamed.end({ timeout: 1 })]);
    }
  });

  it('pipelined statements outside a transaction do not hang (porsager/postgres#970 is Supavisor, not PgBouncer)', async () => {
    const one = postgres(bouncer.url(db.appUrl), { max: 1, prepare: false, onnotice: () => {} });
    try {
      // The issue's reproduction: five queries without parameters, pipelined on one connection, then with parameters.
      const bare = await Promise.all(Array.from({ length: 5 }, () => one<{ n: number }[]>`select 1 as n`));
      const bound = await Promise.all(Array.from({ length: 5 }, (_, i) => one<{ n: number }[]>`select ${i}::int as n`));
      expect(bare.map(([row]) => row!.n)).toEqual([1, 1, 1, 1, 1]);
      expect(bound.map(([row]) => row!.n)).toEqual([0, 1, 2, 3, 4]);
    } finally {
      await one.end({ timeout: 1 });
    }
  });

  it('a session-level setting leaks to other clients through PgBouncer: why invariant 2 is transaction-local only', async () => {
    const clients = postgres(bouncer.url(db.appUrl), { max: 8, prepare: false, onnotice: () => {} });
    try {
      const one = await clients.reserve();
      await one`select set_config('app.leak_probe', 'set by one client', false)`; // session-level: stays on the server connection
      one.release();
      const seen = await Promise.all(Array.from({ length: 40 }, () => clients<{ value: string | null }[]>`select current_setting('app.leak_probe', true) as value`));
      expect(seen.some(([row]) => row!.value === 'set by one client')).toBe(true);
    } finally {
      await clients`select set_config('app.leak_probe', '', false)`.catch(() => {});
      await clients.end({ timeout: 1 });
    }
  });
});

describe('canary', () => {
  const TENANTS = 40;
  const REQUESTS = 10_000;
  type CanaryTenant = { id: string; slug: string; userId: string };
  let tenants: CanaryTenant[];

  beforeAll(async () => {
    tenants = [];
    for (let i = 0; i < TENANTS; i++) {
      const slug = `canary-${i}`;
      const tenant = await createTenant(db.owner, slug, `Canary ${i}`, 'enterprise');
      const user = await createUser(db.owner, `admin@${slug}.test`, `${slug} admin`);
      await addMember(db.owner, tenant.id, user.id, 'ADMIN');
      await insertAgents(db.owner, tenant.id, user.id, [`${slug} a`, `${slug} b`]);
      tenants.push({ id: tenant.id, slug, userId: user.id });
    }
  });

  type Probe = { tenant: string | null; visible: string[]; pid: number };
  /** What one statement ran with: the tenant setting, and whose agents RLS let it see. */
  const probe = async (tx: Tx): Promise<Probe> => {
    const [row] = await tx<Probe[]>`
      select current_setting('app.tenant_id', true) as tenant,
             coalesce((select array_agg(distinct tenant_id::text) from app.agents), '{}') as visible,
             pg_backend_pid() as pid`;
    return row!;
  };

  it(`${REQUESTS} requests of ${TENANTS} tenants on ${SERVER_CONNECTIONS} server connections: every statement ran as its own request's tenant`, async () => {
    let mismatches = 0;
    let statements = 0;
    let refused = 0;
    let committedWrites = 0;
    const pids = new Set<number>();
    const check = (expected: CanaryTenant, seen: Probe) => {
      statements++;
      pids.add(seen.pid);
      if (seen.tenant !== expected.id || seen.visible.length !== 1 || seen.visible[0] !== expected.id) mismatches++;
    };
    const request = async (i: number) => {
      const tenant = tenants[(i * 7) % TENANTS]!; // neighbours in time are different tenants
      const kind = i % 20;
      // One in twenty asks for a tenant its user is not in: refused by begin_request, the transaction rolled back.
      const userId = kind === 7 ? tenants[(i * 7 + 1) % TENANTS]!.userId : tenant.userId;
      const tx = new TenantTransaction(pool, { credentials: { kind: 'user', userId, roleCap: undefined }, tenant: tenant.id, allowedSlugs: undefined });
      try {
        // Queued in the same tick as BEGIN and the request check: the production pipeline.
        const first = await Promise.all([tx.run(probe), tx.run(probe)]);
        for (const seen of first) check(tenant, seen);
        if (kind === 3 || kind === 13) {
          await tx.run((sql) => sql`insert into app.agents (tenant_id, created_by, name, kind) values (${tenant.id}, ${userId}, ${`${tenant.slug} canary ${i}`}, 'assistant')`);
        }
        if (kind % 2 === 1) check(tenant, await tx.run(probe)); // and one after a round trip
        await tx.end(kind !== 13); // kind 13 rolls its write back
        if (kind === 3) committedWrites++;
      } catch (error) {
        await tx.end(false);
        if (kind !== 7 || (error as GraphQLError).extensions?.code !== 'TENANT_NOT_FOUND') throw error;
        refused++;
      }
    };
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 48 }, async () => {
        while (next < REQUESTS) await request(next++);
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    console.info(`canary: ${REQUESTS} requests, ${statements} statements checked, ${mismatches} mismatches, ${pids.size} server backends, ${Math.round(REQUESTS / seconds)} requests/s`);
    expect(mismatches).toBe(0);
    // Two statements a request, one more in 9 of every 20 (odd kinds but the refused 7).
    expect(statements).toBe((REQUESTS - refused) * 2 + (REQUESTS / 20) * 9);
    expect(refused).toBe(REQUESTS / 20);
    expect(pids.size).toBeLessThanOrEqual(SERVER_CONNECTIONS); // all of it through PgBouncer's small pool
    expect(pids.size).toBeGreaterThan(1);
    // Every committed write landed in its own tenant, none of the rolled-back ones did.
    const [written] = await db.owner<{ total: number; misplaced: number }[]>`
      select count(*)::int as total, count(*) filter (where a.name not like t.slug || ' canary %')::int as misplaced
      from app.agents a join app.tenants t on t.id = a.tenant_id where a.name like '% canary %'`;
    expect(written).toEqual({ total: committedWrites, misplaced: 0 });
  }, 180_000); // 42-46 s on the loaded 2-core machine (every write audited, chained and published): room, not a bound

  it('leaves no tenant on any of PgBouncer\'s server connections', async () => {
    // As many transactions at once as PgBouncer has server connections: each is pinned to its own.
    const held = await Promise.all(Array.from({ length: SERVER_CONNECTIONS }, () => pool.reserve()));
    try {
      await Promise.all(held.map((connection) => connection`begin`));
      const rows = await Promise.all(
        held.map(async (connection) => {
          const [row] = await connection<{ tenant: string; role: string; helper: string | null; agents: number; pid: number }[]>`
            select coalesce(current_setting('app.tenant_id', true), '') as tenant, coalesce(current_setting('app.role', true), '') as role,
                   app.current_tenant_id() as helper, (select count(*)::int from app.agents) as agents, pg_backend_pid() as pid`;
          return row!;
        }),
      );
      expect(new Set(rows.map((row) => row.pid)).size).toBe(SERVER_CONNECTIONS);
      for (const row of rows) expect(row).toMatchObject({ tenant: '', role: '', helper: null, agents: 0 });
    } finally {
      await Promise.all(held.map((connection) => connection`rollback`.then(() => {}, () => {})));
      for (const connection of held) connection.release();
    }
  });

  it('400 GraphQL requests of 40 tenants through the service: every list holds only its own tenant\'s agents', async () => {
    const members = await Promise.all(tenants.map(async (tenant) => ({ tenant, token: await tokenForAdmin(tenant) })));
    const api = createTestApp(pool);
    let next = 0;
    let foreign = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < 400) {
          const { tenant, token } = members[(next++ * 7) % members.length]!;
          const { body } = await api.request('{ tenant { slug } agents(first: 100) { edges { node { name } } } }', { token });
          expect(body.errors).toBeUndefined();
          expect((body.data!.tenant as { slug: string }).slug).toBe(tenant.slug);
          const names = (body.data!.agents as { edges: { node: { name: string } }[] }).edges.map((edge) => edge.node.name);
          expect(names.length).toBeGreaterThanOrEqual(2);
          foreign += names.filter((name) => !name.startsWith(`${tenant.slug} `)).length;
        }
      }),
    );
    expect(foreign).toBe(0);
  });
});

function tokenForAdmin(tenant: { id: string; userId: string }): Promise<string> {
  return tokenFor(tenant.userId, tenant.id);
}

describe('round trips through PgBouncer with prepare: false', () => {
  let tenant: TestTenant;
  let sessionId: string;

  beforeAll(async () => {
    tenant = await createTestTenant(db.owner, 'rt-bouncer');
    ({ sessionId } = await insertWorkSession(db.owner, tenant, 'counted'));
  });

  /** Writes to PgBouncer's port per request: the median of 10 runs after a warm-up (test/round-trips.test.ts counts the same way). */
  async function writesPerRequest(run: () => Promise<unknown>): Promise<number> {
    await run();
    // eslint-disable-next-line @typescript-eslint/unbound-method -- restored as the prototype's method, called with its own `this`
    const original = net.Socket.prototype.write;
    let writes = 0;
    const counts: number[] = [];
    net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
      if (this.remotePort === bouncer.port) writes++;
      return (original as (...values: unknown[]) => boolean).apply(this, args);
    };
    try {
      for (let i = 0; i < 10; i++) {
        writes = 0;
        await run();
        counts.push(writes);
      }
    } finally {
      net.Socket.prototype.write = original;
    }
    return counts.sort((a, b) => a - b)[5]!;
  }

  it('a simple read and a write: every statement with parameters costs one more round trip (Parse/Describe first)', async () => {
    const single = createPool(bouncer.url(db.appUrl), { max: 1, prepare: false });
    try {
      const through = createTestApp(single);
      const read = () => through.request('{ agents(first: 20) { edges { node { id name kind } } } }', { token: tenant.members.VIEWER.token });
      const write = () =>
        through.request('mutation($s: ID!) { createTask(input: { sessionId: $s, title: "counted" }) { task { id } } }', {
          token: tenant.members.MEMBER.token,
          variables: { s: sessionId },
        });
      const reads = await writesPerRequest(read);
      const writes = await writesPerRequest(write);
      console.info(`round trips through PgBouncer, prepare: false: read ${reads}, write ${writes} (direct with prepared statements: 1 and 3)`);
      expect({ reads, writes }).toEqual({ reads: 5, writes: 5 }); // BEGIN and the timeouts go as one simple-protocol message
    } finally {
      await single.end({ timeout: 1 });
    }
  });
});

describe('deadline behind PgBouncer', () => {
  it('a request check waiting for a lock ends on the server by the deadline (the startup ceilings never reach the backend)', async () => {
    const tenant = await createTestTenant(db.owner, 'check-lock');
    const single = createPool(bouncer.url(db.appUrl), { max: 1, prepare: false });
    const holder = await db.owner.reserve();
    await holder`begin`;
    await holder`lock table app.tenants in access exclusive mode`; // a migration's lock: the check waits for it
    try {
      const selection = { credentials: { kind: 'user' as const, userId: tenant.members.ADMIN.userId, roleCap: undefined }, tenant: tenant.id, allowedSlugs: undefined };
      const transaction = new TenantTransaction(single, selection, { deadline: Date.now() + 600 });
      await expect(transaction.principal()).rejects.toMatchObject({ extensions: { code: 'UNAVAILABLE' } });
      await transaction.end(false);
      // Its backend stops waiting by the deadline (lock_timeout, set before the check): nothing is left waiting 2 s later.
      // With the timeouts set only in the check's own select list, it waited as long as the lock was held.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const waiting = await db.owner`
        select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%begin_request%' and pid <> pg_backend_pid()`;
      expect(waiting).toHaveLength(0);
    } finally {
      await holder`rollback`;
      holder.release();
      await single.end({ timeout: 1 });
    }
  });
});
