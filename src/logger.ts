import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on standard output (or `destination`). `async`: written off the
 * request path, in writes of at least 4 KiB or once a second, whichever comes
 * first (one write per request line cost about 10 us of CPU a request under
 * load); lines still held are written on exit, and `flushLogs` writes them at once.
 */
export function createLogger(level: string, options: { async?: boolean; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level,
      base: { service: 'tenancy' },
      // Credentials never reach the log, whatever a caller passes in. A key scan per line instead of pino's
      // `redact` (@pinojs/redact parses its paths and clones the object on every line: ~11 KB and a few us a request).
      formatters: { log: censored },
    },
    options.destination ?? (options.async ? (destination = pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 1000 })) : undefined),
  );
}

let destination: ReturnType<typeof pino.destination> | undefined;

/** Writes out what an async logger still holds (before process.exit). */
export function flushLogs(): void {
  destination?.flushSync();
}

const SECRET_KEYS = new Set(['authorization', 'token', 'password', 'secret', 'apiKey', 'x-api-key', 'cookie']);
const CENSOR = '[redacted]';

/**
 * The line's object with every credential-named value replaced, at the top
 * level and one level down (`headers.authorization`, `*.token`); the caller's
 * object is never changed, and a line without one is passed on as it is.
 */
export function censored(object: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key in object) {
    const value = object[key];
    if (SECRET_KEYS.has(key)) {
      (copy ??= { ...object })[key] = CENSOR;
    } else if (value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Error)) {
      let inner: Record<string, unknown> | undefined;
      for (const name in value) {
        if (SECRET_KEYS.has(name)) (inner ??= { ...(value as Record<string, unknown>) })[name] = CENSOR;
      }
      if (inner) (copy ??= { ...object })[key] = inner;
    }
  }
  return copy ?? object;
}
