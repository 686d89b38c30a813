// The bandit router called directly: its learning (epsilon-greedy EWMA, contextual
// LinUCB), the reward formula, state across restarts and reloads (file) and across
// instances (Redis, and a Redis outage), and the regret replay on recorded data. The
// bandit in a running gateway (feedback over HTTP, replicas) is in bandit-gateway.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import winston from 'winston';
import bandit, { ewmaStep, rewardOf, type BanditOptions } from '../../plugins/routers/bandit/index.ts';
import type {
  FeedbackWindow,
  Logger,
  PluginContext,
  PolicyView,
  RoutedDecision,
  Router,
  RoutingContext,
  RoutingOutcome,
} from '../../src/plugin-contract/plugin-api.ts';
import { mulberry32 } from '../../src/analysis/metrics.ts';
import { PREFIX, REDIS_URL, REPO, redisKeysDeletedAfter } from '../support/bandit.ts';
import { waitFor } from '../support/wait.ts';

const silent = winston.createLogger({ transports: [new winston.transports.Console({ silent: true })] });

const VIEW: PolicyView = {
  models: new Map(),
  tiers: [
    { name: 'small', models: ['s'] },
    { name: 'large', models: ['l'] },
  ],
  featureNames: ['x'],
};

function context(dir = tmpdir(), logger: Logger = silent): PluginContext {
  return {
    at: 'routes.test.router',
    baseDir: dir,
    policy: VIEW,
    logger,
    expression: () => assert.fail('no expressions'),
    optionError: (_p, m) => new Error(m),
    callModel: () => assert.fail('no model calls'),
  };
}

async function makeRouter(options: BanditOptions, dir?: string, logger?: Logger): Promise<Router> {
  return bandit.create(options, context(dir, logger));
}

const routing = (features: Record<string, unknown> = {}): RoutingContext => ({ route: 'test', request: {} as RoutingContext['request'], features, input: {} });
const outcome = (arm: string, quality: number | null, extra: Partial<RoutingOutcome> = {}): RoutingOutcome => ({
  route: 'test',
  request_id: 'r',
  arm,
  features: {},
  quality,
  cost_usd: 0,
  latency_ms: 0,
  source: 'gate',
  ...extra,
});
const arms = (router: Router) => (router.describe!() as { arms: Record<string, { mean: number; count: number }> }).arms;

const redisKeys = redisKeysDeletedAfter();

describe('learning', () => {
  test("EWMA matches the seed's formula (first reward as is, then α·r + (1−α)·ema)", () => {
    const rewards = [0.2, 0.9, 0.4, 1, 0, 0.7];
    let ema = rewards[0];
    for (const r of rewards.slice(1)) ema = 0.3 * r + 0.7 * ema;
    let stats;
    for (const r of rewards) stats = ewmaStep(stats, r, 0.3);
    assert.equal(stats!.count, rewards.length);
    assert.ok(Math.abs(stats!.mean - ema) < 1e-12);
  });

  test('reward = quality − λ·cost_usd·1000 − μ·latency_s; no quality, no reward', () => {
    assert.ok(Math.abs(rewardOf({ quality: 0.9, cost_usd: 0.005, latency_ms: 2000 }, 0.1, 0.05)! - (0.9 - 0.5 - 0.1)) < 1e-12);
    assert.equal(rewardOf({ quality: 0.9, cost_usd: null, latency_ms: 0 }, 0.1, 0), 0.9);
    assert.equal(rewardOf({ quality: null, cost_usd: 1, latency_ms: 1 }, 1, 1), null);
  });

  test('epsilon-greedy converges to the better arm (seeded, simulated Bernoulli rewards)', async () => {
    const router = await makeRouter({ epsilon: 0.1, seed: 7 });
    const env = mulberry32(42);
    const p: Record<string, number> = { small: 0.3, large: 0.8 };
    const chosen: string[] = [];
    for (let i = 0; i < 1500; i++) {
      const arm = (router.route(routing()) as { tier: string }).tier;
      chosen.push(arm);
      await router.learn!(outcome(arm, env() < p[arm] ? 1 : 0));
    }
    const late = chosen.slice(-500);
    assert.ok(late.filter((a) => a === 'large').length / late.length > 0.85, `large chosen ${late.filter((a) => a === 'large').length}/500`);
    // Deterministic given the seed: the same run again makes the same choices.
    const again = await makeRouter({ epsilon: 0.1, seed: 7 });
    const env2 = mulberry32(42);
    for (let i = 0; i < 200; i++) {
      const arm = (again.route(routing()) as { tier: string }).tier;
      assert.equal(arm, chosen[i]);
      await again.learn!(outcome(arm, env2() < p[arm] ? 1 : 0));
    }
    await router.dispose();
    await again.dispose();
  });

  test('a cost weight λ turns the choice to the cheaper arm', async () => {
    const router = await makeRouter({ epsilon: 0, lambda: 0.1, seed: 1 });
    // large: quality 0.95 at $0.005 → 0.45; small: 0.7 at $0.00025 → 0.675
    for (let i = 0; i < 5; i++) {
      await router.learn!(outcome('large', 0.95, { cost_usd: 0.005 }));
      await router.learn!(outcome('small', 0.7, { cost_usd: 0.00025 }));
    }
    const decision = router.route(routing())!;
    assert.equal((decision as { tier: string }).tier, 'small');
    assert.match((decision as { reason: string }).reason, /^bandit: small \(ε-greedy exploit, mean reward 0\.675 over 5\)$/);
    await router.dispose();
  });

  test('LinUCB learns a context-dependent best arm (x > 0 → small, else large)', async () => {
    const router = await makeRouter({ algorithm: 'linucb', context_features: ['x'], ucb_width: 0.3 });
    const env = mulberry32(3);
    const truth = (arm: string, x: number) => (x > 0 ? (arm === 'small' ? 0.9 : 0.6) : arm === 'small' ? 0.2 : 0.8);
    let right = 0;
    for (let i = 0; i < 600; i++) {
      const x = env() < 0.5 ? 1 : -1;
      const arm = (router.route(routing({ x })) as { tier: string }).tier;
      if (i >= 400 && arm === (x > 0 ? 'small' : 'large')) right++;
      await router.learn!(outcome(arm, Math.min(1, Math.max(0, truth(arm, x) + (env() - 0.5) * 0.2)), { features: { x } }));
    }
    assert.ok(right / 200 > 0.95, `right ${right}/200`);
    assert.equal((router.route(routing({ x: 1 })) as { tier: string }).tier, 'small');
    assert.equal((router.route(routing({ x: -1 })) as { tier: string }).tier, 'large');
    await router.dispose();
  });

  test('options are checked against the policy: unknown feature, context without linucb', () => {
    assert.deepEqual(
      bandit.validate!({ algorithm: 'linucb', context_features: ['x', 'nope'] }, { policy: VIEW }).map((i) => i.path),
      [['context_features', 1]],
    );
    assert.deepEqual(
      bandit.validate!({ context_features: ['x'] }, { policy: VIEW }).map((i) => i.path),
      [['context_features']],
    );
  });

  test('state survives a restart through the file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-bandit-'));
    try {
      const first = await makeRouter({ epsilon: 0, state: { file: 'state/bandit.json' } }, dir);
      await first.learn!(outcome('large', 1));
      await first.learn!(outcome('large', 0.5));
      await first.dispose();
      const saved = JSON.parse(readFileSync(path.join(dir, 'state/bandit.json'), 'utf8')) as { arms: Record<string, { count: number }> };
      assert.equal(saved.arms.large.count, 2);
      const second = await makeRouter({ epsilon: 0, state: { file: 'state/bandit.json' } }, dir);
      assert.deepEqual(arms(second).large, { mean: 0.3 * 0.5 + 0.7 * 1, count: 2 });
      assert.equal((second.route(routing()) as { tier: string }).tier, 'large');
      await second.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Redis: concurrent updates from two instances are atomic (one EWMA, counts add up)', async () => {
    const key = `${PREFIX}:atomic`;
    redisKeys.push(key);
    const a = await makeRouter({ epsilon: 0, algorithm: 'linucb', state: { redis: { url: REDIS_URL, key, refresh_ms: 20 } } });
    const b = await makeRouter({ epsilon: 0, algorithm: 'linucb', state: { redis: { url: REDIS_URL, key, refresh_ms: 20 } } });
    await waitFor('both connected', () => [a, b].every((r) => (r.describe!() as { state: { redis: { connected: boolean } } }).state.redis.connected));
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).learn!(outcome('small', 1))));
    await waitFor('both see 40 rewards', () => arms(a).small.count === 40 && arms(b).small.count === 40);
    await a.dispose();
    await b.dispose();
  });

  test("state file: a new instance (a reload) starts from the live one's unflushed updates, and the old one's late updates are kept", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-bandit-'));
    const file = path.join(dir, 'state/bandit.json');
    const options: BanditOptions = { epsilon: 0, state: { file: 'state/bandit.json', flush_ms: 60_000 } };
    try {
      const old = await makeRouter(options, dir);
      await old.learn!(outcome('large', 1));
      assert.equal(existsSync(file), false, 'the write is still debounced');
      // A reload builds the new runtime aside, while the old one still serves.
      const next = await makeRouter(options, dir);
      assert.deepEqual(arms(next).large, { mean: 1, count: 1 });
      // A request that finishes on the old runtime after the swap.
      await old.learn!(outcome('large', 0.5));
      await old.dispose();
      assert.equal(
        (JSON.parse(readFileSync(file, 'utf8')) as { arms: Record<string, { count: number }> }).arms.large.count,
        2,
        'dispose wrote the file at once',
      );
      assert.equal(arms(next).large.count, 2);
      await next.learn!(outcome('small', 1));
      await next.dispose();
      await next.dispose();
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { arms: Record<string, { count: number }> };
      assert.deepEqual([saved.arms.large.count, saved.arms.small.count], [2, 1]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Redis: decisions kept for feedback are claimed once, and bounded by the window and the capacity', async () => {
    const key = `${PREFIX}:decisions`;
    redisKeys.push(key, `${key}:decisions`, `${key}:decisions:order`);
    const a = await makeRouter({ state: { redis: { url: REDIS_URL, key, refresh_ms: 20 } } });
    const b = await makeRouter({ state: { redis: { url: REDIS_URL, key, refresh_ms: 20 } } });
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      await waitFor('both connected', () => [a, b].every((r) => (r.describe!() as { state: { redis: { connected: boolean } } }).state.redis.connected));
      const window: FeedbackWindow = { ttl_ms: 60_000, capacity: 3 };
      const decision = (id: string): RoutedDecision => ({ route: 'test', request_id: id, arm: 'small', features: { x: 1 }, cost_usd: 0.001, latency_ms: 12 });
      for (let i = 1; i <= 5; i++) a.sharedDecisions!.remember(decision(`r${i}`), window);
      // remember() does not wait; a's next command runs after its writes.
      assert.deepEqual(await a.sharedDecisions!.claim('r5', 0.4, window, null), { status: 'claimed', decision: decision('r5') });
      assert.deepEqual(await b.sharedDecisions!.claim('r5', 0.9, window, null), { status: 'already_scored', decision: decision('r5'), score: 0.4 });
      assert.deepEqual(await b.sharedDecisions!.claim('r1', 0.9, window, null), { status: 'unknown' }, 'the oldest beyond the capacity is dropped');
      assert.equal((await b.sharedDecisions!.claim('r3', 1, window, null)).status, 'claimed');
      assert.equal(await redis.zcard(`${key}:decisions:order`), 3);
      assert.equal(await redis.hlen(`${key}:decisions`), 3 + 2, 'three decisions, two of them scored');
      const ttl = await redis.pttl(`${key}:decisions`);
      assert.ok(ttl > 0 && ttl <= 60_000, `TTL ${ttl} ms`);
      // Past the window: unknown, and idle keys expire with it.
      const short: FeedbackWindow = { ttl_ms: 50, capacity: 3 };
      a.sharedDecisions!.remember(decision('r6'), short);
      await waitFor('r6 stored', async () => (await redis.zscore(`${key}:decisions:order`, 'r6')) !== null);
      await sleep(120);
      assert.deepEqual(await b.sharedDecisions!.claim('r6', 1, short, null), { status: 'unknown' });
      assert.equal(await redis.exists(`${key}:decisions`, `${key}:decisions:order`), 0);

      // A decision made with a gateway key is claimed only with that key; a refusal leaves it unclaimed.
      const owned: RoutedDecision = { ...decision('r7'), api_key_name: 'team-a' };
      a.sharedDecisions!.remember(owned, window);
      assert.deepEqual(await b.sharedDecisions!.claim('r7', 0.2, window, 'team-b'), { status: 'forbidden' });
      assert.deepEqual(await b.sharedDecisions!.claim('r7', 0.2, window, null), { status: 'forbidden' });
      assert.deepEqual(await b.sharedDecisions!.claim('r7', 0.3, window, 'team-a'), { status: 'claimed', decision: owned });
      assert.deepEqual(await a.sharedDecisions!.claim('r7', 0.9, window, 'team-b'), { status: 'forbidden' }, 'still not theirs once scored');
      assert.deepEqual(await a.sharedDecisions!.claim('r7', 0.9, window, 'team-a'), { status: 'already_scored', decision: owned, score: 0.3 });
      // One made without a key is anyone's.
      a.sharedDecisions!.remember(decision('r8'), window);
      assert.equal((await b.sharedDecisions!.claim('r8', 0.5, window, 'team-b')).status, 'claimed');
    } finally {
      redis.disconnect();
      await a.dispose();
      await b.dispose();
    }
  });

  test('Redis down: sharing a decision never throws and logs a located warning; claims reject; learning goes on locally', async () => {
    const warnings: Array<{ message: string; meta?: Record<string, unknown> }> = [];
    const capture: Logger = { error: () => {}, info: () => {}, debug: () => {}, warn: (message, meta) => warnings.push({ message, meta }) };
    const router = await makeRouter({ epsilon: 0, state: { redis: { url: 'redis://127.0.0.1:1', key: `${PREFIX}:nowhere` } } }, undefined, capture);
    try {
      router.sharedDecisions!.remember(
        { route: 'test', request_id: 'r1', arm: 'small', features: {}, cost_usd: null, latency_ms: 1 },
        { ttl_ms: 1000, capacity: 10 },
      );
      const warning = warnings.find((w) => /feedback for decisions made now is accepted only by the replica that served them/.test(w.message));
      assert.ok(warning, JSON.stringify(warnings));
      assert.deepEqual({ at: warning.meta?.at, key: warning.meta?.key }, { at: 'routes.test.router', key: `${PREFIX}:nowhere` });
      await assert.rejects(router.sharedDecisions!.claim('r1', 1, { ttl_ms: 1000, capacity: 10 }, null), /Redis is not connected \(key tiergate-test:bandit:/);
      await router.learn!(outcome('small', 0.2));
      assert.deepEqual(arms(router).small, { mean: 0.2, count: 1 });
    } finally {
      await router.dispose();
    }
  });
});

describe('regret replay', () => {
  const data = path.resolve(REPO, '../shared/data/routellm_gpt4_vs_mixtral.jsonl');
  test('scripts/bandit-regret.ts replays the RouteLLM test split and writes the report', { skip: existsSync(data) ? false : `${data} is absent` }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-regret-'));
    try {
      const out = path.join(dir, 'regret.md');
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'scripts/bandit-regret.ts'), '--data', data, '--out', out], {
        cwd: REPO,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (t: string) => (stderr += t));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      assert.equal(code, 0, stderr);
      const report = readFileSync(out, 'utf8');
      assert.match(report, /\*\*7791 rows\*\*/);
      // λ = 0: GPT-4 is the best fixed arm and always-GPT-4 has zero regret against it.
      assert.match(report, /\| always large \(GPT-4\) \| 0\.0 \| 0\.0 \| 0\.0 \| 0\.0 \| 0\.0 \| 0\.0 \| 429\.8 \|/);
      // The committed report is what the script produces.
      assert.equal(report, readFileSync(path.join(REPO, 'docs/bandit-regret.md'), 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
