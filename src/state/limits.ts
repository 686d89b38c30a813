// Per-key limits: requests and spend (USD) per minute and per day, for each gateway key
// that declares `limits` (server.auth.keys[].limits in gateway.yaml).
//
// Windows are fixed: the minute since the epoch, the UTC day. A request is admitted when
// none of its key's windows is at its limit, and then counted; a refused request counts
// for nothing. Spend is known only once the call is over, so the spend budget is checked
// before the call (refused when already at or over it) and the decision's actual cost
// (every attempt, gate and judge calls included) is added after it: a request that
// starts just under the budget may end above it, and the next one is refused.
//
// With state.redis the counts are shared by every replica (one Lua script per check,
// atomic, on Redis's clock, keys expiring with their window); without it, and while
// Redis is down when limits_when_redis_down is per_replica (the default), each process
// counts alone. LocalCounters outlive reloads (the manager keeps one), like cooldowns.
import { TiergateError } from '../common/errors.ts';
import type { DecisionRecord, ShadowRecord } from '../observe/decision-log.ts';
import type { AuthData, KeyLimitsData } from '../policy-shape/policy-data.ts';
import type { RedisScript, SharedState } from './shared-state.ts';

export type LimitsWhenRedisDown = NonNullable<AuthData['limits_when_redis_down']>;

type WindowName = 'minute' | 'day';
const WINDOWS: ReadonlyArray<{ name: WindowName; seconds: number; requests: keyof KeyLimitsData; usd: keyof KeyLimitsData }> = [
  { name: 'minute', seconds: 60, requests: 'requests_per_minute', usd: 'usd_per_minute' },
  { name: 'day', seconds: 86_400, requests: 'requests_per_day', usd: 'usd_per_day' },
];
const PERIOD: Record<WindowName, string> = { minute: 'this minute', day: 'today (UTC)' };

/** Why a request is refused, or null when it is admitted. */
type Refusal = { kind: 'requests' | 'usd'; window: WindowName; used: number; limit: number; retryAfterS: number } | null;

const hasUsd = (limits: KeyLimitsData) => limits.usd_per_minute !== undefined || limits.usd_per_day !== undefined;

/** This process's counts: without Redis, or while it is down. Kept across reloads. */
export class LocalCounters {
  private readonly windows = new Map<string, { index: number; requests: number; usd: number }>();

  private window(name: string, window: (typeof WINDOWS)[number], nowMs: number) {
    const index = Math.floor(nowMs / 1000 / window.seconds);
    const id = `${name}\0${window.name}`;
    let counts = this.windows.get(id);
    if (!counts || counts.index !== index) this.windows.set(id, (counts = { index, requests: 0, usd: 0 }));
    return { counts, retryAfterS: Math.max(1, Math.ceil((index + 1) * window.seconds - nowMs / 1000)) };
  }

  admit(name: string, limits: KeyLimitsData, nowMs = Date.now()): Refusal {
    const admitted = [];
    for (const window of WINDOWS) {
      const requestLimit = limits[window.requests];
      const usdLimit = limits[window.usd];
      if (requestLimit === undefined && usdLimit === undefined) continue;
      const { counts, retryAfterS } = this.window(name, window, nowMs);
      if (usdLimit !== undefined && counts.usd >= usdLimit) return { kind: 'usd', window: window.name, used: counts.usd, limit: usdLimit, retryAfterS };
      if (requestLimit !== undefined && counts.requests >= requestLimit)
        return { kind: 'requests', window: window.name, used: counts.requests, limit: requestLimit, retryAfterS };
      admitted.push(counts);
    }
    for (const counts of admitted) counts.requests++;
    return null;
  }

  spend(name: string, limits: KeyLimitsData, usd: number, nowMs = Date.now()): void {
    for (const window of WINDOWS) if (limits[window.usd] !== undefined) this.window(name, window, nowMs).counts.usd += usd;
  }
}

// KEYS[1]: the key's counters, <prefix>:limits:{<key name>} (a hash tag: one cluster slot).
// ARGV: requests_per_minute, requests_per_day, usd_per_minute, usd_per_day (0: none).
// Windows by Redis's clock, so replicas with drifting clocks agree on them.
const ADMIT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local windows = { {'minute', 60, tonumber(ARGV[1]), tonumber(ARGV[3])}, {'day', 86400, tonumber(ARGV[2]), tonumber(ARGV[4])} }
local counted = {}
for _, w in ipairs(windows) do
  if w[3] > 0 or w[4] > 0 then
    local index = math.floor(now / w[2])
    local key = KEYS[1] .. ':' .. w[1] .. ':' .. string.format('%d', index)
    local reset = math.max(1, math.ceil((index + 1) * w[2] - now))
    local counts = redis.call('HMGET', key, 'requests', 'usd')
    local requests = tonumber(counts[1]) or 0
    local usd = tonumber(counts[2]) or 0
    if w[4] > 0 and usd >= w[4] then return {'usd', w[1], tostring(usd), tostring(w[4]), reset} end
    if w[3] > 0 and requests >= w[3] then return {'requests', w[1], tostring(requests), tostring(w[3]), reset} end
    counted[#counted + 1] = {key, reset}
  end
end
for _, c in ipairs(counted) do
  redis.call('HINCRBY', c[1], 'requests', 1)
  redis.call('EXPIRE', c[1], c[2] + 60)
end
return {'ok'}
`;

// KEYS[1] as above. ARGV: usd, then 1/0 for the minute and the day window.
const SPEND_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local windows = { {'minute', 60, ARGV[2]}, {'day', 86400, ARGV[3]} }
for _, w in ipairs(windows) do
  if w[3] == '1' then
    local index = math.floor(now / w[2])
    local key = KEYS[1] .. ':' .. w[1] .. ':' .. string.format('%d', index)
    redis.call('HINCRBYFLOAT', key, 'usd', ARGV[1])
    redis.call('EXPIRE', key, math.max(1, math.ceil((index + 1) * w[2] - now)) + 60)
  end
end
return 1
`;

/** The limits of one policy's keys, enforced through Redis or this process's counters. */
export class KeyLimits {
  private readonly byKey: ReadonlyMap<string, Readonly<KeyLimitsData>>;
  private readonly admitScript: RedisScript | null;
  private readonly spendScript: RedisScript | null;

  constructor(
    keys: ReadonlyArray<{ name: string; limits?: KeyLimitsData }>,
    private readonly whenDown: LimitsWhenRedisDown,
    private readonly local: LocalCounters,
    private readonly shared: SharedState | null,
  ) {
    this.byKey = new Map(keys.filter((k) => k.limits !== undefined).map((k) => [k.name, Object.freeze({ ...k.limits })]));
    const useRedis = shared !== null && this.byKey.size > 0;
    this.admitScript = useRedis ? shared.script('tiergateLimitAdmit', 1, ADMIT_SCRIPT) : null;
    this.spendScript = useRedis ? shared.script('tiergateLimitSpend', 1, SPEND_SCRIPT) : null;
  }

  /** One line for `tiergate validate`: each limited key and its limits. */
  summary(): string | null {
    if (this.byKey.size === 0) return null;
    const describe = (l: KeyLimitsData) =>
      WINDOWS.flatMap((w) => [
        l[w.requests] !== undefined ? `${l[w.requests]} requests/${w.name}` : null,
        l[w.usd] !== undefined ? `$${l[w.usd]}/${w.name}` : null,
      ])
        .filter(Boolean)
        .join(', ');
    return [...this.byKey].map(([name, l]) => `${name} (${describe(l)})`).join('; ');
  }

  /** Whether the key has limits (the request path skips everything else). */
  has(name: string | undefined): name is string {
    return name !== undefined && this.byKey.has(name);
  }

  private counters(name: string): string {
    return (this.shared as SharedState).key('limits', `{${name}}`);
  }

  /** Counts the request, or throws the 429 (or, failing closed, the 503) for it. */
  async admit(name: string): Promise<void> {
    const limits = this.byKey.get(name);
    if (!limits) return;
    let refusal: Refusal;
    const shared = this.shared;
    if (shared && this.admitScript) {
      let reply: unknown = null;
      if (shared.up) {
        try {
          reply = await this.admitScript([this.counters(name)], [...WINDOWS.map((w) => limits[w.requests] ?? 0), ...WINDOWS.map((w) => limits[w.usd] ?? 0)]);
        } catch (err) {
          shared.warn(
            this.whenDown === 'reject'
              ? 'a per-key limit could not be checked in Redis; the request is refused (limits_when_redis_down: reject)'
              : 'a per-key limit could not be checked in Redis; this replica counts alone meanwhile',
            err,
          );
        }
      } else {
        shared.warn(
          this.whenDown === 'reject'
            ? 'Redis unavailable: requests of keys with limits are refused (limits_when_redis_down: reject)'
            : 'Redis unavailable: per-key limits are counted by each replica alone until it is back',
        );
      }
      if (Array.isArray(reply)) {
        const [verdict, window, used, limit, reset] = reply as [string, WindowName, string, string, number];
        refusal =
          verdict === 'ok'
            ? null
            : { kind: verdict === 'usd' ? 'usd' : 'requests', window, used: Number(used), limit: Number(limit), retryAfterS: Number(reset) };
      } else if (this.whenDown === 'reject') {
        throw new TiergateError('TG_ERR_LIMIT_UNAVAILABLE', { key: name }, { retryAfterMs: 1000 });
      } else {
        refusal = this.local.admit(name, limits);
      }
    } else {
      refusal = this.local.admit(name, limits);
    }
    if (!refusal) return;
    const params = { key: name, window: refusal.window, period: PERIOD[refusal.window], limit: refusal.limit, retry_after_s: refusal.retryAfterS };
    if (refusal.kind === 'usd')
      throw new TiergateError('TG_ERR_LIMIT_SPEND', { ...params, spent: Number(refusal.used.toPrecision(6)) }, { retryAfterMs: refusal.retryAfterS * 1000 });
    throw new TiergateError('TG_ERR_LIMIT_REQUESTS', params, { retryAfterMs: refusal.retryAfterS * 1000 });
  }

  /** A decision observer: adds a finished request's cost to its key's spend windows. Never throws. */
  observe(line: DecisionRecord | ShadowRecord): void {
    // Shadow calls are the gateway's own evaluation, not the client's spending.
    if ('kind' in line) return;
    const name = line.api_key_name;
    const cost = line.cost_usd;
    if (name === undefined || cost === null || !(cost > 0)) return;
    const limits = this.byKey.get(name);
    if (!limits || !hasUsd(limits)) return;
    const shared = this.shared;
    if (shared && this.spendScript && shared.up) {
      this.spendScript([this.counters(name)], [cost, limits.usd_per_minute !== undefined ? 1 : 0, limits.usd_per_day !== undefined ? 1 : 0]).catch(
        (err: unknown) => {
          shared.warn("a request's cost could not be added to its key's shared spend; this replica counts it alone", err);
          this.local.spend(name, limits, cost);
        },
      );
    } else {
      this.local.spend(name, limits, cost);
    }
  }
}
