// `node bench/audit-cost.ts`: what one audit event costs a write. On a fresh
// embedded PostgreSQL, one tenant's task inserts (the benchmark's M1, as the
// request role with the request's settings, one transaction each) in
// interleaved rounds with the tasks' audit trigger on and off: "off" writes no
// event (no app_private.audit_row, no record_audit, no chain hash), "on" all of
// it. Reports per write: wall time, the Node process's CPU, and the
// PostgreSQL backend's CPU (from /proc, the backend of the one connection).
// Settings: AUDIT_BENCH_ROUNDS (6), AUDIT_BENCH_WRITES (400) per round.
import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import { startDatabase, stopAll } from './harness.ts';
import { median } from './reference.ts';

const ROUNDS = Number(process.env.AUDIT_BENCH_ROUNDS ?? 6);
const WRITES = Number(process.env.AUDIT_BENCH_WRITES ?? 400);
const TICK_US = 1e6 / 100; // USER_HZ

const db = await startDatabase();
const owner = postgres(db.ownerUrl, { max: 1, onnotice: () => {} });
const app = postgres(db.appUrl, { max: 1, onnotice: () => {} });
try {
  const [tenant] = await owner<{ id: string }[]>`insert into app.tenants (slug, name, plan) values ('bench-audit', 'Bench', 'enterprise') returning id`;
  const [user] = await owner<{ id: string }[]>`insert into app.users (email) values ('bench@audit.test') returning id`;
  await owner`insert into app.memberships (tenant_id, user_id, role) values (${tenant!.id}, ${user!.id}, 'ADMIN')`;
  const [agent] = await owner<{ id: string }[]>`insert into app.agents (tenant_id, created_by, name, kind) values (${tenant!.id}, ${user!.id}, 'a', 'assistant') returning id`;
  const [session] = await owner<{ id: string }[]>`
    insert into app.sessions (tenant_id, agent_id, started_by) values (${tenant!.id}, ${agent!.id}, ${user!.id}) returning id`;
  const [{ pid }] = (await app<{ pid: number }[]>`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
  const backendTicks = () => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  };

  const write = (index: number) =>
    app.begin(async (tx) => {
      await tx`select set_config('app.tenant_id', ${tenant!.id}, true), set_config('app.user_id', ${user!.id}, true),
                      set_config('app.role', 'ADMIN', true), set_config('app.request_id', ${`bench-${index}`}, true)`;
      await tx`insert into app.tasks (tenant_id, session_id, title, created_by)
               values (app.current_tenant_id(), ${session!.id}, ${`task ${index}`}, app.current_user_id())`;
    });

  const results: Record<'on' | 'off', { wall: number[]; node: number[]; pg: number[] }> = { on: { wall: [], node: [], pg: [] }, off: { wall: [], node: [], pg: [] } };
  for (let index = 0; index < 200; index++) await write(index); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    for (const state of round % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
      await owner.unsafe(`alter table app.tasks ${state === 'on' ? 'enable' : 'disable'} trigger tasks_z_audit`);
      const ticks = backendTicks();
      const cpu = process.cpuUsage();
      const started = process.hrtime.bigint();
      for (let index = 0; index < WRITES; index++) await write(round * WRITES + index);
      const wall = Number(process.hrtime.bigint() - started) / 1e3 / WRITES;
      const used = process.cpuUsage(cpu);
      results[state].wall.push(wall);
      results[state].node.push((used.user + used.system) / WRITES);
      results[state].pg.push(((backendTicks() - ticks) * TICK_US) / WRITES);
      console.log(`round ${round + 1} audit ${state.padEnd(3)}  wall ${wall.toFixed(0)} us  node ${results[state].node.at(-1)!.toFixed(0)} us  postgres ${results[state].pg.at(-1)!.toFixed(0)} us per write`);
    }
  }
  const [events] = await owner<{ n: number }[]>`select count(*)::int as n from app.audit_events where tenant_id = ${tenant!.id} and action = 'task.create'`;
  console.log(`\nmedian per write (on - off): wall ${(median(results.on.wall) - median(results.off.wall)).toFixed(0)} us, ` +
    `node ${(median(results.on.node) - median(results.off.node)).toFixed(0)} us, postgres ${(median(results.on.pg) - median(results.off.pg)).toFixed(0)} us; ` +
    `events written ${events!.n} (expected ${200 + ROUNDS * WRITES})`);
  console.log(`medians: on wall ${median(results.on.wall).toFixed(0)} / off ${median(results.off.wall).toFixed(0)} us; on postgres ${median(results.on.pg).toFixed(0)} / off ${median(results.off.pg).toFixed(0)} us`);
} finally {
  await app.end();
  await owner.end();
  await stopAll(db);
}
