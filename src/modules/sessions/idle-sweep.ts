// Sessions whose client vanished: every so often the service asks the
// database to end the sessions idle for longer than SESSION_IDLE_TIMEOUT
// (app_private.expire_idle_sessions: status failed, audited in each tenant's
// log, the active-session quota released). Safe to run in every worker.
import type { Sql } from '../../db/pool.ts';
import type { Logger } from '../../logger.ts';

export type IdleSessionSweep = {
  /** One sweep now; resolves to the number of sessions ended. */
  sweep(): Promise<number>;
  stop(): void;
};

export function startIdleSessionSweep(sql: Sql, idleSeconds: number, log: Logger, everyMs = Math.min(60_000, idleSeconds * 250)): IdleSessionSweep {
  let warnedAt = 0;
  const sweep = async () => {
    const [row] = await sql<{ ended: number }[]>`select app_private.expire_idle_sessions(make_interval(secs => ${idleSeconds})) as ended`;
    const ended = row?.ended ?? 0;
    if (ended > 0) log.info({ ended, idleSeconds }, 'ended idle sessions');
    return ended;
  };
  const timer = setInterval(() => {
    sweep().catch((error: unknown) => {
      if (Date.now() - warnedAt < 600_000) return; // a database outage is reported by requests and /ready
      warnedAt = Date.now();
      log.warn({ err: error }, 'idle-session sweep failed; it runs again shortly');
    });
  }, everyMs);
  timer.unref();
  return { sweep, stop: () => clearInterval(timer) };
}
