import { PassThrough } from 'node:stream';
import { createLogger, type Logger } from '../../app/logger.js';

/** A real winston logger whose JSON lines the test can read back. */
export function capturedLogger(): { logger: Logger; lines(): any[]; text(): string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  const logger = createLogger({ level: 'debug', stream });
  return {
    logger,
    text: () => text,
    lines: () => text.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line)),
  };
}
