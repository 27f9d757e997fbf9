// CPU time (user + system) of processes, from /proc (Linux; elsewhere the
// figures read as zero): the service or the limit server, and every
// PostgreSQL process, so a run can say where a request's CPU goes.
import { readdirSync, readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

function ticks(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime
  } catch {
    return 0;
  }
}

function postgresPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .map(Number)
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
        } catch {
          return false;
        }
      });
  } catch {
    return [];
  }
}

/** CPU milliseconds of `pid` and of all PostgreSQL processes, so far. */
export function cpuNow(pid: number): { server: number; postgres: number } {
  return { server: ticks(pid) * TICK_MS, postgres: postgresPids().reduce((sum, p) => sum + ticks(p), 0) * TICK_MS };
}
