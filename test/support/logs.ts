// A gateway logger whose JSON lines a test can read back (give it to startTestGateway or
// startGateway as `logger`), for tests that check what was logged and what never was.
import { Writable } from 'node:stream';
import winston from 'winston';

export function capturingLogger(level: 'error' | 'warn' | 'info' | 'debug' = 'debug'): { logger: winston.Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const logger = winston.createLogger({ level, format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  return {
    logger,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
