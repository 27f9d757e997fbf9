// CPU time (user + system) of a process tree, from /proc (Linux; elsewhere the
// figures read as zero): the server under test with its workers, and the
// PostgreSQL this benchmark started (its postmaster and every backend), so a
// run says where a request's CPU goes and no other process on the machine
// (another PostgreSQL, another engineer's tests) is counted as ours.
import { readdirSync, readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

type Stat = { pid: number; ppid: number; ticks: number };

function stat(pid: number): Stat | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime, stime, and cutime, cstime: the CPU of children it has reaped (a backend that ended), which left the tree.
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    return { pid, ppid: Number(fields[1]), ticks };
  } catch {
    return undefined;
  }
}

/** CPU milliseconds used so far by `root` and all its descendants (0 when there is no root). */
export function treeCpuMs(root: number | undefined): number {
  if (!root) return 0;
  const all = readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => stat(Number(name)))
    .filter((s): s is Stat => s !== undefined);
  const children = new Map<number, Stat[]>();
  for (const s of all) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  let ticks = 0;
  const pending = all.filter((s) => s.pid === root);
  while (pending.length > 0) {
    const s = pending.pop()!;
    ticks += s.ticks;
    pending.push(...(children.get(s.pid) ?? []));
  }
  return ticks * TICK_MS;
}

/** The postmaster of a data directory (first line of postmaster.pid), or undefined. */
export function postmasterPid(pgdata: string | undefined): number | undefined {
  if (!pgdata) return undefined;
  try {
    const pid = Number(readFileSync(`${pgdata}/postmaster.pid`, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** CPU milliseconds of the server's tree and of the benchmark's PostgreSQL, so far. */
export function cpuNow(serverPid: number, postgresPid: number | undefined): { server: number; postgres: number } {
  return { server: treeCpuMs(serverPid), postgres: treeCpuMs(postgresPid) };
}
