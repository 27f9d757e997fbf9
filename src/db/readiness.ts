// Whether the database accepts connections and answers, for /ready: each
// probe opens a connection of its own (an open connection to a backend that
// outlived its postmaster would still answer), one probe at a time shared by
// every caller, an answer within a second even when the server is frozen.
import postgres from 'postgres';
import { poolState, type Sql } from './pool.ts';

/** A probe slower than this reads as "not ready" (a frozen server, a dropped network). */
const PROBE_TIMEOUT_MS = 700;
/** Answers this recent are reused: a load balancer polling hard costs the database little. */
const FRESH_MS = 200;

type Probe = { check(): Promise<boolean> };

const probes = new WeakMap<Sql, Probe>();

/** True when the pool's database takes a new connection and answers on it now; false while it is down, frozen or the pool is shutting down. */
export function databaseReady(sql: Sql): Promise<boolean> {
  const state = poolState(sql);
  if (state.closing || state.draining) return Promise.resolve(false);
  let probe = probes.get(sql);
  if (!probe) {
    // A pool made by postgres() directly (some tests) has no URL on record: ask it instead.
    probe = createProbe(state.url ? () => probeOnce(state.url) : () => sql`select 1`.then(() => true));
    probes.set(sql, probe);
  }
  return probe.check();
}

/** /health's answer: the process is up (it says nothing of the database; /ready does). */
export function healthBody(): { status: number; body: string; headers: Record<string, string> } {
  return { status: 200, body: '{"status":"ok"}', headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' } };
}

/** /ready's answer: a small body that says only what a load balancer needs. */
export function readinessBody(ready: boolean): { status: number; body: string; headers: Record<string, string> } {
  return {
    status: ready ? 200 : 503,
    body: JSON.stringify({ status: ready ? 'ready' : 'unavailable' }),
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...(ready ? {} : { 'retry-after': '1' }) },
  };
}

async function probeOnce(url: string): Promise<boolean> {
  const connection = postgres(url, {
    max: 1,
    connect_timeout: PROBE_TIMEOUT_MS / 1000,
    fetch_types: false,
    prepare: false,
    onnotice: () => {},
    connection: { application_name: 'tenancy-ready' },
  });
  try {
    await connection`select 1`;
    return true;
  } finally {
    void connection.end({ timeout: 0 });
  }
}

function createProbe(ping: () => Promise<boolean>): Probe {
  let running: Promise<boolean> | undefined;
  let last = { at: 0, ready: false };
  const probe = async () => {
    let timer: NodeJS.Timeout | undefined;
    const ready = await Promise.race([
      ping(),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), PROBE_TIMEOUT_MS);
      }),
    ]).catch(() => false);
    clearTimeout(timer);
    last = { at: Date.now(), ready };
    return ready;
  };
  return {
    check: () => {
      if (Date.now() - last.at < FRESH_MS) return Promise.resolve(last.ready);
      running ??= probe().finally(() => (running = undefined));
      return running;
    },
  };
}
