// Operational logs (not decision logs): JSON lines in production, readable lines in a
// terminal. Everything on the request path logs through here, never console.log.
import winston from 'winston';
import type { Logger } from '../plugin-contract/plugin-api.ts';
import { redactDeep, redactSecrets } from '../common/secrets.ts';

export type LogFormat = 'auto' | 'json' | 'pretty';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'silent';

const pretty = winston.format.printf((info) => {
  const { level, message, timestamp, ...rest } = info as Record<string, unknown>;
  const extras = Object.entries(rest).filter(([k]) => typeof k === 'string');
  const tail = extras.length ? ' ' + extras.map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
  return `${String(timestamp).slice(11, 23)} ${String(level).padEnd(5)} ${String(message)}${tail}`;
});

// The last line of defence for secrets: whatever a plugin or the host logs, a registered
// secret (provider key, gateway key, admin token) is replaced before the line is written.
const redact = winston.format((info) => {
  info.message = typeof info.message === 'string' ? redactSecrets(info.message) : redactDeep(info.message);
  for (const key of Object.keys(info)) if (key !== 'message' && key !== 'level') info[key] = redactDeep(info[key]);
  return info;
});

export function createLogger(options: { level?: LogLevel; format?: LogFormat } = {}): winston.Logger {
  const level = options.level ?? (process.env.TIERGATE_LOG_LEVEL as LogLevel | undefined) ?? 'info';
  const format = options.format ?? (process.env.TIERGATE_LOG_FORMAT as LogFormat | undefined) ?? 'auto';
  const usePretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true);
  return winston.createLogger({
    level: level === 'silent' ? 'error' : level,
    silent: level === 'silent',
    format: usePretty
      ? winston.format.combine(redact(), winston.format.timestamp(), pretty)
      : winston.format.combine(redact(), winston.format.timestamp(), winston.format.json()),
    // Operational logs go to stderr so stdout stays free for decision lines.
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
}

/** A plugin's view of the logger: tagged with where the plugin sits in the policy. */
export function childLogger(logger: winston.Logger, meta: Record<string, unknown>): Logger {
  return logger.child(meta);
}
