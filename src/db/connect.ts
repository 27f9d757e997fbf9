// Start-up's first connection: tried again until DB_CONNECT_TIMEOUT (a
// container's database can look ready, then restart once its init is done),
// then a clear error instead of a silent hang; a refusal that waiting cannot
// cure (wrong password, no such role or database) fails at once.
import postgres from 'postgres';

export class DatabaseUnreachableError extends Error {
  override name = 'DatabaseUnreachableError';
}

/** Waiting more does not help: the credentials or the database name are wrong. */
const PERMANENT = /^(28|3D)/;

/** Less time than this left: not worth another attempt (it could only end in our own timer). */
const MIN_ATTEMPT_MS = 100;

/** Resolves once `url` takes a connection and answers on it; throws DatabaseUnreachableError past `timeoutMs`. */
export async function waitForDatabase(url: string, timeoutMs: number, log: (message: string) => void = () => {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const where = describe(url);
  let last: unknown;
  log(`connecting to the database at ${where} (trying for up to ${timeoutMs / 1000} s)`);
  for (let attempt = 1; ; attempt++) {
    const left = deadline - Date.now();
    if (left <= 0 || (attempt > 1 && left < MIN_ATTEMPT_MS)) break;
    const sql = postgres(url, {
      max: 1,
      connect_timeout: Math.max(0.1, left / 1000),
      fetch_types: false,
      prepare: false,
      onnotice: () => {},
      connection: { application_name: 'tenancy-start' },
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      // connect_timeout bounds the connection; a server that takes it and never answers is bounded here.
      // The timer rejects only after the I/O already due (a refusal, say) has been read: on a busy
      // machine both can be due at once, and the refusal is the better report.
      const noAnswer = () => Object.assign(new Error('no answer'), { code: 'NO_ANSWER' });
      await Promise.race([
        sql`select 1`,
        new Promise((_, reject) => (timer = setTimeout(() => setImmediate(() => reject(noAnswer())), left))),
      ]);
      return;
    } catch (error) {
      last = error;
      const code = codeOf(error);
      if (PERMANENT.test(code)) {
        throw new DatabaseUnreachableError(`Database refused the connection to ${where}: ${(error as Error).message} (${code})`);
      }
      log(`database at ${where} not reachable yet (${code}, attempt ${attempt}): trying again`);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(200 * attempt, 1_000, deadline - Date.now()))));
    } finally {
      clearTimeout(timer);
      void sql.end({ timeout: 0 });
    }
  }
  throw new DatabaseUnreachableError(`Database unreachable: no answer from ${where} within ${timeoutMs / 1000} s (last: ${codeOf(last)}); see DB_CONNECT_TIMEOUT`);
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

/** host:port/database, never the credentials. */
function describe(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || '5432'}${parsed.pathname}`;
  } catch {
    return 'the configured database';
  }
}
