// A router that learns which tier pays off, from outcomes (the seed's BanditRouter).
//
// reward = quality − λ·(cost_usd × 1000) − μ·(latency_ms / 1000)
//   quality: the gate's score of the answer (automatically, when the route has a gate)
//            and every POST /v1/feedback {request_id, score} for the request;
//   λ weighs cost in dollars per thousand requests (λ = 0.1 takes 0.1 × 5 = 0.5 off a
//            $0.005 call), μ weighs latency in seconds.
//
// Two algorithms:
// - epsilon_greedy: with probability ε a uniformly random arm, else the arm with the
//   highest exponentially weighted mean reward (EWMA, weight α on the newest reward, the
//   first reward taken as is — the seed's formula; an arm never rewarded counts `prior`).
//   Ties go to the cheapest arm. Exploration draws from a seeded PRNG: deterministic.
// - linucb (disjoint LinUCB, Li et al. 2010): per arm A = I + Σ x xᵀ and b = Σ r x over
//   x = [1, context features…]; picks argmax θᵀx + c·√(xᵀA⁻¹x) with θ = A⁻¹b. Fully
//   deterministic. The EWMA statistics are kept too (shown by describe()).
//
// State lives in memory; `state.file` persists it (atomic temp + rename, debounced) so it
// survives restarts. Every instance of this process on one file shares one in-memory
// state, so a hot reload's new runtime starts from the old one's latest updates (not from
// a file still waiting on its debounced write) and updates from requests that finish on
// the old runtime are not lost either.
// `state.redis` shares the state between replicas: every update is one Lua script
// (atomic), and the local copy is refreshed from Redis every `refresh_ms`, so the request
// path never waits on Redis. Recent decisions are kept in Redis too (sharedDecisions:
// <key>:decisions, bounded by the host's feedback window), so feedback posted to any
// replica is claimed there once and applied to the shared statistics. A Redis outage
// never fails a request: updates keep landing locally (a warning is logged), the
// replica that served a request still takes its feedback, and the next successful refresh
// replaces the local copy with the shared one (updates made during the outage stay local
// only).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import {
  mulberry32,
  type FeedbackClaim,
  type FeedbackWindow,
  type OptionIssue,
  type OptionsFrom,
  type RoutedDecision,
  type Router,
  type RouterModule,
  type RoutingContext,
  type RoutingDecision,
  type RoutingOutcome,
  type SharedDecisions,
} from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    algorithm: { enum: ['epsilon_greedy', 'linucb'], description: 'epsilon_greedy (default) or linucb (contextual, over context_features).' },
    arms: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      items: { type: 'string', 'x-ref': 'tier' },
      description: 'Tiers to choose among (default: every tier).',
    },
    epsilon: { type: 'number', minimum: 0, maximum: 1, description: 'epsilon_greedy: share of requests sent to a random arm (default 0.1).' },
    alpha: { type: 'number', exclusiveMinimum: 0, maximum: 1, description: 'Weight of the newest reward in the EWMA (default 0.3, as in the seed).' },
    prior: { type: 'number', description: 'Expected reward of an arm never rewarded (default 0.5).' },
    ucb_width: { type: 'number', minimum: 0, description: 'linucb: width c of the confidence bonus (default 0.5).' },
    lambda: { type: 'number', minimum: 0, description: 'Cost weight: reward −= λ × cost_usd × 1000 (per dollar per thousand requests; default 0).' },
    mu: { type: 'number', minimum: 0, description: 'Latency weight: reward −= μ × latency in seconds (default 0).' },
    context_features: {
      type: 'array',
      uniqueItems: true,
      items: { type: 'string', minLength: 1 },
      description: "linucb: the policy's features that form the context (numbers; booleans as 0/1; anything else 0).",
    },
    state: {
      type: 'object',
      additionalProperties: false,
      properties: {
        file: { type: 'string', minLength: 1, 'x-path': true, description: 'JSON file (relative to the policy folder) the state is kept in across restarts.' },
        flush_ms: { type: 'integer', minimum: 0, description: 'Debounce of file writes (default 200).' },
        redis: {
          type: 'object',
          additionalProperties: false,
          required: ['url', 'key'],
          properties: {
            url: { type: 'string', minLength: 1, description: 'redis://host:port/db' },
            key: { type: 'string', minLength: 1, description: 'Hash key shared by every replica that should learn as one.' },
            refresh_ms: { type: 'integer', minimum: 10, description: 'How often the local copy is refreshed from Redis (default 250).' },
          },
        },
      },
    },
    seed: { type: 'integer', description: 'Seeds exploration (deterministic routing for tests and replays).' },
  },
} as const;

export type BanditOptions = OptionsFrom<typeof optionsSchema>;

export interface ArmStats {
  mean: number;
  count: number;
}

export interface LinArm {
  /** d×d, row-major. */
  A: number[];
  b: number[];
}

export interface BanditState {
  arms: Record<string, ArmStats>;
  linucb: Record<string, LinArm>;
}

export const DEFAULTS = { epsilon: 0.1, alpha: 0.3, prior: 0.5, ucb_width: 0.5, lambda: 0, mu: 0, refresh_ms: 250, flush_ms: 200 } as const;

/** The reward of one outcome (null when nothing judged the answer). */
export function rewardOf(outcome: Pick<RoutingOutcome, 'quality' | 'cost_usd' | 'latency_ms'>, lambda: number, mu: number): number | null {
  if (outcome.quality === null) return null;
  return outcome.quality - lambda * (outcome.cost_usd ?? 0) * 1000 - mu * (outcome.latency_ms / 1000);
}

/** The seed's EWMA step: the first reward is the mean; after that mean ← α·r + (1−α)·mean. */
export function ewmaStep(stats: ArmStats | undefined, reward: number, alpha: number): ArmStats {
  if (!stats || stats.count === 0) return { mean: reward, count: 1 };
  return { mean: alpha * reward + (1 - alpha) * stats.mean, count: stats.count + 1 };
}

/** [1, features…]: numbers as they are, booleans 0/1, anything else 0. */
export function featureVector(features: Readonly<Record<string, unknown>>, names: readonly string[]): number[] {
  const x = [1];
  for (const name of names) {
    const v = features[name];
    x.push(typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'boolean' ? (v ? 1 : 0) : 0);
  }
  return x;
}

function identity(d: number): number[] {
  const A = new Array<number>(d * d).fill(0);
  for (let i = 0; i < d; i++) A[i * d + i] = 1;
  return A;
}

/** Solves A·y = v for symmetric positive-definite A (Gauss–Jordan with partial pivoting; d is small). */
function solve(A: readonly number[], v: readonly number[], d: number): number[] {
  const m = Array.from({ length: d }, (_, i) => [...A.slice(i * d, i * d + d), v[i]]);
  for (let c = 0; c < d; c++) {
    let p = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    const pivot = m[c][c] || 1e-12;
    for (let k = c; k <= d; k++) m[c][k] /= pivot;
    for (let r = 0; r < d; r++) {
      if (r === c || m[r][c] === 0) continue;
      const f = m[r][c];
      for (let k = c; k <= d; k++) m[r][k] -= f * m[c][k];
    }
  }
  return m.map((row) => row[d]);
}

export function linStep(arm: LinArm | undefined, x: readonly number[], reward: number): LinArm {
  const d = x.length;
  const A = arm && arm.b.length === d ? [...arm.A] : identity(d);
  const b = arm && arm.b.length === d ? [...arm.b] : new Array<number>(d).fill(0);
  for (let i = 0; i < d; i++) {
    b[i] += reward * x[i];
    for (let j = 0; j < d; j++) A[i * d + j] += x[i] * x[j];
  }
  return { A, b };
}

/** LinUCB's score of an arm for context x: estimate and exploration bonus. */
export function linScore(arm: LinArm | undefined, x: readonly number[], width: number): { estimate: number; bonus: number } {
  const d = x.length;
  const A = arm && arm.b.length === d ? arm.A : identity(d);
  const b = arm && arm.b.length === d ? arm.b : new Array<number>(d).fill(0);
  const theta = solve(A, b, d);
  const Ainvx = solve(A, x, d);
  const estimate = theta.reduce((s, t, i) => s + t * x[i], 0);
  const bonus =
    width *
    Math.sqrt(
      Math.max(
        0,
        Ainvx.reduce((s, t, i) => s + t * x[i], 0),
      ),
    );
  return { estimate, bonus };
}

// One update, atomically: EWMA of the arm, and (when x is given) LinUCB's A and b.
const UPDATE_SCRIPT = `
local key = KEYS[1]
local arm = ARGV[1]
local r = tonumber(ARGV[2])
local alpha = tonumber(ARGV[3])
local f = 'eg:' .. arm
local cur = redis.call('HGET', key, f)
local mean, count = r, 1
if cur then
  local t = cjson.decode(cur)
  if t.count > 0 then mean = alpha * r + (1 - alpha) * t.mean; count = t.count + 1 end
end
redis.call('HSET', key, f, cjson.encode({mean = mean, count = count}))
if ARGV[4] ~= '' then
  local x = cjson.decode(ARGV[4])
  local d = #x
  local lf = 'lin:' .. arm
  local raw = redis.call('HGET', key, lf)
  local A, b = nil, nil
  if raw then
    local t = cjson.decode(raw)
    if #t.b == d then A = t.A; b = t.b end
  end
  if not A then
    A = {}; b = {}
    for i = 1, d * d do A[i] = 0 end
    for i = 1, d do b[i] = 0; A[(i - 1) * d + i] = 1 end
  end
  for i = 1, d do
    b[i] = b[i] + r * x[i]
    for j = 1, d do A[(i - 1) * d + j] = A[(i - 1) * d + j] + x[i] * x[j] end
  end
  redis.call('HSET', key, lf, cjson.encode({A = A, b = b}))
end
return redis.call('HINCRBY', key, 'updates', 1)
`;

// Recent decisions, for feedback from any replica. KEYS[1]: a hash (d:<id> → the decision
// as JSON, s:<id> → its score once claimed, o:<id> → the name of the gateway key that made
// the request, when it came with one); KEYS[2]: a sorted set of ids by time (ms, by
// Redis's clock). Both expire with the window when idle; each write drops what is older
// than the window and the oldest beyond `capacity`, so memory stays bounded.
const REMEMBER_SCRIPT = `
local id, ttl, capacity = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'd:' .. id, ARGV[2])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'o:' .. id, ARGV[5]) end
redis.call('ZADD', KEYS[2], now, id)
local function drop(ids)
  for _, old in ipairs(ids) do
    redis.call('HDEL', KEYS[1], 'd:' .. old, 's:' .. old, 'o:' .. old)
    redis.call('ZREM', KEYS[2], old)
  end
end
drop(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - ttl), 'LIMIT', 0, 1000))
local over = redis.call('ZCARD', KEYS[2]) - capacity
if over > 0 then drop(redis.call('ZRANGE', KEYS[2], 0, over - 1)) end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`;

// Takes a decision for one score, atomically: {'claimed', decision}, {'already_scored',
// decision, score}, {'forbidden'} (made with another gateway key than ARGV[4]; '' is no
// key) or {'unknown'} (never stored, dropped, or older than the window).
const CLAIM_SCRIPT = `
local id, ttl = ARGV[1], tonumber(ARGV[3])
local decision = redis.call('HGET', KEYS[1], 'd:' .. id)
local at = redis.call('ZSCORE', KEYS[2], id)
if not decision or not at then return {'unknown'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(at) > ttl then return {'unknown'} end
local owner = redis.call('HGET', KEYS[1], 'o:' .. id)
if owner and owner ~= ARGV[4] then return {'forbidden'} end
if redis.call('HSETNX', KEYS[1], 's:' .. id, ARGV[2]) == 0 then return {'already_scored', decision, redis.call('HGET', KEYS[1], 's:' .. id)} end
return {'claimed', decision}
`;

type RedisWithScripts = Redis & {
  banditUpdate(key: string, arm: string, reward: string, alpha: string, x: string): Promise<number>;
  banditRemember(decisions: string, order: string, id: string, decision: string, ttlMs: string, capacity: string, owner: string): Promise<number>;
  banditClaim(decisions: string, order: string, id: string, score: string, ttlMs: string, caller: string): Promise<string[]>;
};

/** A decision as stored in Redis, checked on the way back (another replica, maybe another version, wrote it). */
function decisionFromJson(raw: string): RoutedDecision | null {
  try {
    const d = JSON.parse(raw) as Partial<RoutedDecision>;
    if (typeof d.route !== 'string' || typeof d.request_id !== 'string' || typeof d.arm !== 'string' || typeof d.latency_ms !== 'number') return null;
    return {
      route: d.route,
      request_id: d.request_id,
      arm: d.arm,
      features: d.features && typeof d.features === 'object' ? d.features : {},
      cost_usd: typeof d.cost_usd === 'number' ? d.cost_usd : null,
      latency_ms: d.latency_ms,
      ...(typeof d.api_key_name === 'string' ? { api_key_name: d.api_key_name } : {}),
    };
  } catch {
    return null;
  }
}

/**
 * An instance's statistics. Live instances of this process that name the same file share
 * one: during a reload the old runtime and the new one learn into the same statistics,
 * and the file is written from them.
 */
interface Statistics {
  state: BanditState;
  updates: number;
  users: number;
  timer: NodeJS.Timeout | null;
}

const openFiles = new Map<string, Statistics>();

/** Parses a Redis hash (eg:<arm>, lin:<arm>) into state; unknown fields are ignored. */
export function stateFromHash(hash: Record<string, string>): BanditState {
  const state: BanditState = { arms: {}, linucb: {} };
  for (const [field, raw] of Object.entries(hash)) {
    try {
      if (field.startsWith('eg:')) state.arms[field.slice(3)] = JSON.parse(raw) as ArmStats;
      else if (field.startsWith('lin:')) state.linucb[field.slice(4)] = JSON.parse(raw) as LinArm;
    } catch {
      // a malformed field: that arm starts afresh
    }
  }
  return state;
}

const banditRouter: RouterModule<BanditOptions> = {
  meta: {
    id: 'bandit',
    kind: 'router',
    contract: 1,
    description:
      'Learns the best tier from outcomes (gate scores, POST /v1/feedback): epsilon-greedy over EWMA rewards, or contextual LinUCB over policy features. reward = quality − λ·cost_usd·1000 − μ·latency_s.',
    options: optionsSchema,
    example: { algorithm: 'epsilon_greedy', epsilon: 0.1, seed: 1 },
  },

  validate(options, ctx): OptionIssue[] {
    const issues: OptionIssue[] = [];
    (options.context_features ?? []).forEach((name, i) => {
      if (!ctx.policy.featureNames.includes(name))
        issues.push({ path: ['context_features', i], message: `no feature named "${name}" (declared: ${ctx.policy.featureNames.join(', ') || 'none'})` });
    });
    if (options.algorithm !== 'linucb' && options.context_features?.length)
      issues.push({ path: ['context_features'], message: 'context_features are used by algorithm linucb only' });
    return issues;
  },

  async create(options, ctx): Promise<Router> {
    const algorithm = options.algorithm ?? 'epsilon_greedy';
    const arms = options.arms ?? ctx.policy.tiers.map((t) => t.name);
    const epsilon = options.epsilon ?? DEFAULTS.epsilon;
    const alpha = options.alpha ?? DEFAULTS.alpha;
    const prior = options.prior ?? DEFAULTS.prior;
    const width = options.ucb_width ?? DEFAULTS.ucb_width;
    const lambda = options.lambda ?? DEFAULTS.lambda;
    const mu = options.mu ?? DEFAULTS.mu;
    const contextNames = options.context_features ?? [];
    const random = mulberry32(options.seed ?? Math.floor(Math.random() * 2 ** 32));
    const file = options.state?.file ? path.resolve(ctx.baseDir, options.state.file) : null;
    const flushMs = options.state?.flush_ms ?? DEFAULTS.flush_ms;
    const redisOptions = options.state?.redis ?? null;
    const log = ctx.logger;

    // Warnings name the policy location and the Redis key; each kind at most every 30 s.
    const lastWarning = new Map<string, number>();
    const warn = (message: string, error: unknown) => {
      const now = Date.now();
      if (now - (lastWarning.get(message) ?? -Infinity) < 30_000) return;
      lastWarning.set(message, now);
      log.warn(message, { at: ctx.at, key: redisOptions?.key, error: error instanceof Error ? error.message : String(error) });
    };

    // --- the state, and the file
    const readFile = (from: string): BanditState => {
      try {
        const parsed = JSON.parse(readFileSync(from, 'utf8')) as Partial<BanditState>;
        return { arms: parsed.arms ?? {}, linucb: parsed.linucb ?? {} };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          log.warn('bandit state file unreadable; starting afresh', { at: ctx.at, file: from, error: String(err) });
        return { arms: {}, linucb: {} };
      }
    };
    let shared: Statistics;
    if (file) {
      // Another live instance on this file (the runtime being replaced) holds the newest state.
      shared = openFiles.get(file) ?? { state: readFile(file), updates: 0, users: 0, timer: null };
      openFiles.set(file, shared);
      shared.users++;
    } else {
      shared = { state: { arms: {}, linucb: {} }, updates: 0, users: 1, timer: null };
    }
    const writeFile = () => {
      if (!file) return;
      if (shared.timer) clearTimeout(shared.timer);
      shared.timer = null;
      try {
        mkdirSync(path.dirname(file), { recursive: true });
        const temp = `${file}.${process.pid}.tmp`;
        writeFileSync(temp, JSON.stringify({ algorithm, ...shared.state }));
        renameSync(temp, file);
      } catch (err) {
        log.warn('bandit state file not written', { at: ctx.at, file, error: String(err) });
      }
    };
    const scheduleFlush = () => {
      if (file && !shared.timer) shared.timer = setTimeout(writeFile, flushMs);
    };

    // --- Redis
    let redis: RedisWithScripts | null = null;
    let redisUp = false;
    let refreshTimer: NodeJS.Timeout | null = null;
    let refreshing = false;
    let disposed = false;
    const decisionKeys = redisOptions ? [`${redisOptions.key}:decisions`, `${redisOptions.key}:decisions:order`] : [];
    const refresh = async () => {
      if (!redis || !redisUp || refreshing || disposed) return;
      refreshing = true;
      try {
        const hash = await redis.hgetall(redisOptions!.key);
        if (Object.keys(hash).length > 0) {
          shared.state = stateFromHash(hash);
          shared.updates = Number(hash.updates ?? 0);
          scheduleFlush();
        }
      } catch (err) {
        warn('bandit: Redis refresh failed; routing on the local state', err);
      } finally {
        refreshing = false;
      }
    };
    if (redisOptions) {
      redis = new Redis(redisOptions.url, {
        lazyConnect: true,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        connectTimeout: 1000,
        retryStrategy: (times) => Math.min(200 * times, 2000),
      }) as RedisWithScripts;
      redis.defineCommand('banditUpdate', { numberOfKeys: 1, lua: UPDATE_SCRIPT });
      redis.defineCommand('banditRemember', { numberOfKeys: 2, lua: REMEMBER_SCRIPT });
      redis.defineCommand('banditClaim', { numberOfKeys: 2, lua: CLAIM_SCRIPT });
      redis.on('error', (err) => warn('bandit: Redis unavailable; learning locally', err));
      redis.on('ready', () => {
        redisUp = true;
        void refresh();
      });
      redis.on('close', () => {
        redisUp = false;
      });
      redis.connect().catch((err) => warn('bandit: Redis unavailable; learning locally', err));
      refreshTimer = setInterval(() => void refresh(), redisOptions.refresh_ms ?? DEFAULTS.refresh_ms);
      refreshTimer.unref();
    }

    // Recent decisions in Redis, so that feedback reaches the shared statistics from any replica.
    const sharedDecisions: SharedDecisions | undefined = redisOptions
      ? {
          remember(decision: RoutedDecision, window: FeedbackWindow): void {
            const notShared = 'bandit: Redis unavailable; feedback for decisions made now is accepted only by the replica that served them';
            if (!redis || !redisUp) {
              warn(notShared, new Error(disposed ? 'router disposed' : 'not connected'));
              return;
            }
            redis
              .banditRemember(
                decisionKeys[0],
                decisionKeys[1],
                decision.request_id,
                JSON.stringify(decision),
                String(Math.max(1, Math.round(window.ttl_ms))),
                String(Math.max(1, window.capacity)),
                decision.api_key_name ?? '',
              )
              .catch((err: unknown) => warn(notShared, err));
          },
          async claim(requestId: string, score: number, window: FeedbackWindow, caller: string | null): Promise<FeedbackClaim> {
            if (!redis || !redisUp) throw new Error(`Redis is not connected (key ${redisOptions.key})`);
            const [status, raw, taken] = await redis.banditClaim(
              decisionKeys[0],
              decisionKeys[1],
              requestId,
              String(score),
              String(Math.max(1, Math.round(window.ttl_ms))),
              caller ?? '',
            );
            if (status === 'forbidden') return { status: 'forbidden' };
            const decision = status === 'unknown' ? null : decisionFromJson(raw);
            if (!decision) return { status: 'unknown' };
            if (status === 'claimed') return { status: 'claimed', decision };
            const earlier = Number(taken);
            return { status: 'already_scored', decision, score: Number.isFinite(earlier) ? earlier : null };
          },
        }
      : undefined;

    const meanOf = (arm: string) => {
      const s = shared.state.arms[arm];
      return s && s.count > 0 ? s.mean : prior;
    };
    const fmt = (n: number) => n.toFixed(3);

    return {
      route(routing: RoutingContext): RoutingDecision {
        const { state } = shared;
        if (algorithm === 'linucb') {
          const x = featureVector(routing.features, contextNames);
          let best = arms[0];
          let bestScore = -Infinity;
          let detail = { estimate: 0, bonus: 0 };
          for (const arm of arms) {
            const s = linScore(state.linucb[arm], x, width);
            if (s.estimate + s.bonus > bestScore + 1e-12) {
              best = arm;
              bestScore = s.estimate + s.bonus;
              detail = s;
            }
          }
          return {
            tier: best,
            reason: `bandit: ${best} (LinUCB, ucb ${fmt(bestScore)} = estimate ${fmt(detail.estimate)} + bonus ${fmt(detail.bonus)}; ${state.arms[best]?.count ?? 0} rewards)`,
          };
        }
        if (epsilon > 0 && random() < epsilon) {
          const arm = arms[Math.min(arms.length - 1, Math.floor(random() * arms.length))];
          return { tier: arm, reason: `bandit: ${arm} (ε-greedy explore, mean reward ${fmt(meanOf(arm))} over ${state.arms[arm]?.count ?? 0})` };
        }
        let best = arms[0];
        for (const arm of arms) if (meanOf(arm) > meanOf(best) + 1e-12) best = arm;
        return { tier: best, reason: `bandit: ${best} (ε-greedy exploit, mean reward ${fmt(meanOf(best))} over ${state.arms[best]?.count ?? 0})` };
      },

      async learn(outcome: RoutingOutcome): Promise<void> {
        if (disposed || !arms.includes(outcome.arm)) return;
        const reward = rewardOf(outcome, lambda, mu);
        if (reward === null) return;
        const x = algorithm === 'linucb' ? featureVector(outcome.features, contextNames) : null;
        const { state } = shared;
        shared.state = {
          arms: { ...state.arms, [outcome.arm]: ewmaStep(state.arms[outcome.arm], reward, alpha) },
          linucb: x ? { ...state.linucb, [outcome.arm]: linStep(state.linucb[outcome.arm], x, reward) } : state.linucb,
        };
        shared.updates++;
        scheduleFlush();
        if (redis && redisUp) {
          try {
            shared.updates = await redis.banditUpdate(redisOptions!.key, outcome.arm, String(reward), String(alpha), x ? JSON.stringify(x) : '');
          } catch (err) {
            warn('bandit: Redis update failed; learned locally only', err);
          }
        }
      },

      ...(sharedDecisions ? { sharedDecisions } : {}),

      describe() {
        return {
          algorithm,
          arms: Object.fromEntries(arms.map((arm) => [arm, { mean: meanOf(arm), count: shared.state.arms[arm]?.count ?? 0 }])),
          updates: shared.updates,
          reward: { lambda, mu, unit: 'quality − λ·cost_usd·1000 − μ·latency_s' },
          ...(algorithm === 'linucb' ? { context_features: contextNames } : { epsilon, alpha }),
          state: { file, redis: redisOptions ? { key: redisOptions.key, connected: redisUp } : null },
        };
      },

      async dispose() {
        if (disposed) return;
        disposed = true;
        if (refreshTimer) clearInterval(refreshTimer);
        if (file) {
          // Written now, synchronously: a process exiting after dispose loses nothing.
          if (shared.timer) writeFile();
          if (--shared.users === 0 && openFiles.get(file) === shared) openFiles.delete(file);
        }
        if (redis) {
          const r = redis;
          redis = null;
          try {
            if (redisUp) await r.quit();
            else r.disconnect();
          } catch {
            r.disconnect();
          }
        }
      },
    };
  },
};

export default banditRouter;
