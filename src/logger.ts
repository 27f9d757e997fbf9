import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'tenancy' },
    // Credentials never reach the log, whatever a caller passes in.
    redact: { paths: ['authorization', '*.authorization', 'token', '*.token', 'headers.authorization'], censor: '[redacted]' },
  });
}
