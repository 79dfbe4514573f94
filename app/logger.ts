import winston from 'winston';
import { redactFormat } from './redact.js';
import type { LogLevel } from './config.js';

export type Logger = winston.Logger;

/** One JSON object per line on stdout (or on a stream the caller gives, e.g. tests). */
export function createLogger(options: { level?: LogLevel; silent?: boolean; stream?: NodeJS.WritableStream } = {}): Logger {
  return winston.createLogger({
    level: options.level ?? 'info',
    silent: options.silent ?? false,
    // Secrets (API tokens, AWS keys, SMTP password, Authorization values) are masked
    // before and after serialisation; see app/redact.ts.
    format: winston.format.combine(
      winston.format.timestamp(), winston.format.errors({ stack: true }), redactFormat(), winston.format.json(), redactFormat(),
    ),
    defaultMeta: { service: 'ec2-creator' },
    transports: [
      options.stream
        ? new winston.transports.Stream({ stream: options.stream })
        : new winston.transports.Console(),
    ],
  });
}
