// What the replicas of one gateway share through Redis (`state.redis` in gateway.yaml):
// the per-key request and spend counters (src/state/limits.ts) and the cooldowns of failing
// models (src/state/health.ts). Without state.redis both are kept per process.
//
// - One connection per Redis URL for the whole process, kept across policy reloads (a
//   reload would otherwise reconnect, and limits checked during the reconnect would
//   miss the shared counts). Each runtime holds a reference; the last one out quits.
// - Commands never queue while Redis is away (enableOfflineQueue: false) and time out
//   after timeout_ms: a request that checks a limit waits at most that long, then the
//   caller falls back (limits_when_redis_down). Nothing here throws into a request.
// - Warnings are located (`gateway.yaml:12:3 state.redis: …`) and each kind is logged
//   at most every 30 s (with how many were left out); the end of an outage is logged once.
import { Redis } from 'ioredis';
import type winston from 'winston';
import { errorMessage, formatLocated, type SourceLocation } from '../common/errors.ts';
import type { CooldownSharing, ModelHealth } from './health.ts';
import { DEFAULT_REDIS } from '../policy-shape/defaults.ts';
import { LogThrottle } from '../observe/log-throttle.ts';
import type { RedisStateData as PolicyRedisData } from '../policy-shape/policy-data.ts';

/** state.redis (src/policy-shape/policy-data.ts), its defaults optional: they are applied here too (REDIS_DEFAULTS). */
export type RedisStateData = Pick<PolicyRedisData, 'url'> & Partial<Omit<PolicyRedisData, 'url'>>;

export const REDIS_DEFAULTS = DEFAULT_REDIS;
const CONNECT_TIMEOUT_MS = 1000;
const WARN_EVERY_MS = 30_000;
const UNAVAILABLE = 'Redis unavailable; until it is back, model cooldowns stay on each replica and per-key limits follow server.auth.limits_when_redis_down';

interface Connection {
  client: Redis;
  users: number;
  /** Lua scripts defined on this client, by name. */
  scripts: Set<string>;
  /** The first connection attempt, bounded: settles when it succeeds, fails or times out. */
  firstAttempt: Promise<void>;
  /** One holder is done with it; the last one closes it. */
  release(): void;
}

const connections = new Map<string, Connection>();

/** The URL with its password masked, for status pages and logs. */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'redis://(unparsable URL)';
  }
}

function connect(url: string, timeoutMs: number): Connection {
  const id = `${url}\0${timeoutMs}`;
  const existing = connections.get(id);
  if (existing) {
    existing.users++;
    return existing;
  }
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: timeoutMs,
    retryStrategy: (times) => Math.min(100 * times, 2000),
  });
  // Each holder logs errors through its own logger; this one keeps an unheard error
  // from becoming an "unhandled error event".
  client.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const attempt = client.connect().then(
    () => undefined,
    () => undefined, // reported by each holder's 'error' listener; ioredis keeps retrying
  );
  const connection: Connection = {
    client,
    users: 1,
    scripts: new Set(),
    firstAttempt: Promise.race([attempt, new Promise<void>((resolve) => (timer = setTimeout(resolve, CONNECT_TIMEOUT_MS + 200)))]).finally(() =>
      clearTimeout(timer),
    ),
    release() {
      connection.users--;
      if (connection.users > 0) return;
      connections.delete(id);
      if (client.status === 'ready') client.quit().catch(() => client.disconnect());
      else client.disconnect();
    },
  };
  connections.set(id, connection);
  return connection;
}

export type RedisScript = (keys: readonly string[], args: ReadonlyArray<string | number>) => Promise<unknown>;

export class SharedState {
  readonly prefix: string;
  readonly refreshMs: number;
  private readonly warnings: LogThrottle;
  /** When the outage being warned about began (the first warning since Redis was last reachable). */
  private downSince: number | null = null;
  private readonly onError: (err: Error) => void;
  private readonly onReady: () => void;
  private released = false;
  private cooldowns: SharedCooldowns | null = null;

  private constructor(
    private readonly data: RedisStateData,
    private readonly connection: Connection,
    private readonly location: SourceLocation,
    private readonly logger: winston.Logger,
  ) {
    this.prefix = data.prefix ?? REDIS_DEFAULTS.prefix;
    this.refreshMs = data.refresh_ms ?? REDIS_DEFAULTS.refresh_ms;
    this.warnings = new LogThrottle(logger, WARN_EVERY_MS);
    this.onError = (err) => this.warn(UNAVAILABLE, err);
    // After an outage, say so once it is over (and let the next outage warn at once).
    this.onReady = () => {
      const { logged, leftOut } = this.warnings.reset();
      const downSince = this.downSince;
      this.downSince = null;
      if (!logged) return;
      this.logger.info(formatLocated(this.location, 'Redis reachable again: limits and cooldowns are shared by the replicas again'), {
        redis: displayUrl(this.data.url),
        ...(downSince === null ? {} : { down_for_ms: Date.now() - downSince }),
        ...(leftOut > 0 ? { warnings_left_out: leftOut } : {}),
      });
    };
    connection.client.on('error', this.onError);
    connection.client.on('ready', this.onReady);
  }

  /**
   * Opens (or shares) the connection. The policy goes live once the first connection
   * attempt is over, so that the first requests already see the shared counts; Redis
   * being down delays a start by at most the connect timeout, and never fails it.
   */
  static async open(data: RedisStateData, location: SourceLocation, logger: winston.Logger): Promise<SharedState> {
    const connection = connect(data.url, data.timeout_ms ?? REDIS_DEFAULTS.timeout_ms);
    const state = new SharedState(data, connection, location, logger);
    await connection.firstAttempt;
    if (!state.up) state.warn(UNAVAILABLE);
    return state;
  }

  /** Connected and ready for commands now. */
  get up(): boolean {
    return this.connection.client.status === 'ready';
  }

  /** `${prefix}:${name}`: every key tiergate writes. */
  key(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  /** A Lua script, loaded once per connection (EVALSHA, reloaded on NOSCRIPT by ioredis). */
  script(name: string, numberOfKeys: number, lua: string): RedisScript {
    const client = this.connection.client as Redis & Record<string, (...args: Array<string | number>) => Promise<unknown>>;
    if (!this.connection.scripts.has(name)) {
      client.defineCommand(name, { numberOfKeys, lua });
      this.connection.scripts.add(name);
    }
    return (keys, args) => client[name](...keys, ...args);
  }

  get client(): Redis {
    return this.connection.client;
  }

  /** A located warning, each message at most every 30 s. */
  warn(message: string, err?: unknown): void {
    this.downSince ??= Date.now();
    this.warnings.log('warn', message, formatLocated(this.location, message), {
      redis: displayUrl(this.data.url),
      ...(err === undefined ? {} : { error: errorMessage(err) }),
    });
  }

  /** Shares `health`'s cooldowns with the other replicas until dispose (the last runtime built calls this). */
  shareCooldowns(health: ModelHealth): void {
    if (this.cooldowns || this.released) return;
    this.cooldowns = new SharedCooldowns(this, health);
    health.share(this.cooldowns);
  }

  describe(): { url: string; prefix: string; connected: boolean } {
    return { url: displayUrl(this.data.url), prefix: this.prefix, connected: this.up };
  }

  /** Idempotent. */
  dispose(): void {
    if (this.released) return;
    this.released = true;
    this.cooldowns?.stop();
    this.connection.client.off('error', this.onError);
    this.connection.client.off('ready', this.onReady);
    this.connection.release();
  }
}

// Cooldowns in one sorted set, `<prefix>:cooldowns`: member the model, score the epoch ms
// it comes back. Expired members are dropped on every write; the key expires with the
// longest cooldown in it.
const COOLDOWN_START = `
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not current) or tonumber(current) < tonumber(ARGV[2]) then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(tonumber(last[2]) - now))) end
return 1
`;

/** The Redis side of ModelHealth's cooldowns: writes what this process starts, reads every replica's. */
class SharedCooldowns implements CooldownSharing {
  private readonly key: string;
  private readonly start: RedisScript;
  private readonly timer: NodeJS.Timeout;
  private reading = false;

  constructor(
    private readonly state: SharedState,
    private readonly health: ModelHealth,
  ) {
    this.key = state.key('cooldowns');
    this.start = state.script('tiergateCooldownStart', 1, COOLDOWN_START);
    this.timer = setInterval(() => void this.read(), state.refreshMs);
    this.timer.unref();
    void this.read();
  }

  started(model: string, untilMs: number): void {
    if (!this.state.up) return this.state.warn('Redis unavailable: a model cooldown stays on this replica only');
    this.start([this.key], [model, untilMs, Date.now()]).catch((err: unknown) =>
      this.state.warn('a model cooldown could not be shared; it stays on this replica only', err),
    );
  }

  cleared(model: string): void {
    if (!this.state.up) return;
    this.state.client.zrem(this.key, model).catch((err: unknown) => this.state.warn('the end of a model cooldown could not be shared', err));
  }

  private async read(): Promise<void> {
    if (this.reading || !this.state.up) return;
    this.reading = true;
    try {
      const flat = await this.state.client.zrangebyscore(this.key, `(${Date.now()}`, '+inf', 'WITHSCORES');
      const cooldowns = new Map<string, number>();
      for (let i = 0; i + 1 < flat.length; i += 2) cooldowns.set(flat[i], Number(flat[i + 1]));
      this.health.adoptShared(cooldowns, this);
    } catch (err) {
      this.state.warn('model cooldowns could not be read from Redis; using what was last read', err);
    } finally {
      this.reading = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.health.unshare(this);
  }
}
