import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on standard output. `async`: written off the request path (the
 * lines that arrive while a write is under way go out together in the next
 * one); call `flushLogs` before exiting.
 */
export function createLogger(level: string, options: { async?: boolean } = {}): Logger {
  return pino(
    {
      level,
      base: { service: 'tenancy' },
      // Credentials never reach the log, whatever a caller passes in.
      redact: { paths: ['authorization', '*.authorization', 'token', '*.token', 'headers.authorization'], censor: '[redacted]' },
    },
    options.async ? (destination = pino.destination({ dest: 1, sync: false })) : undefined,
  );
}

let destination: ReturnType<typeof pino.destination> | undefined;

/** Writes out what an async logger still holds (before process.exit). */
export function flushLogs(): void {
  destination?.flushSync();
}
