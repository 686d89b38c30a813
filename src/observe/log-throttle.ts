// Operational log lines that repeat, bounded: the first of a kind goes out at once, then
// at most one per interval, saying how many were left out meanwhile. A dependency outage
// (Redis down, an upstream refusing every call) fails every request the same way; a line
// per request buried the log (with Redis down and `limits_when_redis_down: reject`, 1,997
// lines, 690 KB, in 10 s) and let one busy client fill the disk that every client's
// gateway writes to.
import type winston from 'winston';

/** Failed requests of one error code: a line at most this often (each has its decision line regardless). */
export const FAILURE_LOG_EVERY_MS = 10_000;

export class LogThrottle {
  private readonly kinds = new Map<string, { loggedAt: number; leftOut: number }>();

  constructor(
    private readonly logger: winston.Logger,
    readonly everyMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Logs the line unless a line of this kind went out less than `everyMs` ago (then counts it). True when logged. */
  log(level: 'error' | 'warn' | 'info', kind: string, message: string, meta: Record<string, unknown> = {}): boolean {
    const now = this.now();
    const last = this.kinds.get(kind);
    if (last && now - last.loggedAt < this.everyMs) {
      last.leftOut++;
      return false;
    }
    this.kinds.set(kind, { loggedAt: now, leftOut: 0 });
    this.logger.log(level, message, last && last.leftOut > 0 ? { ...meta, repeated: last.leftOut, repeated_over_ms: now - last.loggedAt } : meta);
    return true;
  }

  /**
   * Forgets every kind, so that the next line of each goes out at once (the outage is
   * over). Returns whether anything had been logged since the last reset, and how many
   * lines were left out since each kind's last one.
   */
  reset(): { logged: boolean; leftOut: number } {
    let leftOut = 0;
    for (const kind of this.kinds.values()) leftOut += kind.leftOut;
    const logged = this.kinds.size > 0;
    this.kinds.clear();
    return { logged, leftOut };
  }
}
