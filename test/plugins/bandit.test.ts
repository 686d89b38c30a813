// The bandit router: its learning (epsilon-greedy EWMA, contextual LinUCB), the reward
// formula, state across restarts and hot reloads (file) and across replicas (Redis, two
// real gateway processes, feedback posted to the replica that did not serve the request),
// feedback over real HTTP, and a Redis outage that must not fail requests.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
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
} from '../../src/plugin-sdk/plugin-api.ts';
import { mulberry32 } from '../../src/analysis/metrics.ts';
import { readFeedback, readLogs } from '../../src/analysis/report.ts';
import { simulatorPolicy, startTestGateway } from '../support/gateway.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const REDIS_URL = process.env.TIERGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `tiergate-test:bandit:${process.pid}:${Date.now()}`;
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

const redisKeys: string[] = [];
after(async () => {
  if (redisKeys.length === 0) return;
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await redis.del(...redisKeys);
  } catch {
    // Redis absent: nothing to clean
  } finally {
    redis.disconnect();
  }
});

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

async function waitFor<T>(what: string, probe: () => T | Promise<T>, timeoutMs = 5000): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      last = await probe();
      if (last) return last as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline)
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(20);
  }
}

function banditPolicy(router: string, gate = '', extra?: string): string {
  return simulatorPolicy({
    extra,
    routes: `  learn:
    router:
      plugin: bandit
${router
  .split('\n')
  .map((l) => `      ${l}`)
  .join('\n')}
    default: large
${gate}`,
  });
}

interface Status {
  router_state: Record<string, { arms: Record<string, { mean: number; count: number }>; updates: number; state: { redis: { connected: boolean } | null } }>;
}

async function status(url: string): Promise<Status> {
  const res = await fetch(`${url}/admin/status`);
  assert.equal(res.status, 200);
  return (await res.json()) as Status;
}

async function ask(url: string, apiKey = 'x'): Promise<{ decisionId: string; tier: string | null }> {
  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 15_000 });
  const { response } = await openai.chat.completions.create({ model: 'learn', messages: [{ role: 'user', content: 'What is 2 + 2?' }] }).withResponse();
  return { decisionId: response.headers.get('x-tiergate-decision-id')!, tier: response.headers.get('x-tiergate-tier') };
}

async function feedback(url: string, body: unknown, apiKey?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) };
  const res = await fetch(`${url}/v1/feedback`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('over HTTP', () => {
  test('feedback: decision id → POST /v1/feedback → the bandit learns; a second score → 409; unknown id → 404; bad body → 400', async () => {
    const tg = await startTestGateway(banditPolicy('epsilon: 0\nseed: 1'));
    try {
      const first = await ask(tg.url);
      assert.equal(first.tier, 'small'); // no rewards yet: every arm at the prior, the cheapest wins
      await tg.waitForDecisions(1);
      assert.equal((await status(tg.url)).router_state.learn.arms.small.count, 0, 'no gate: nothing learned yet');
      const ok = await feedback(tg.url, { request_id: first.decisionId, score: 0.1 });
      assert.equal(ok.status, 200);
      assert.deepEqual({ learned: ok.body.learned, arm: ok.body.arm, route: ok.body.route }, { learned: true, arm: 'small', route: 'learn' });
      const state = (await status(tg.url)).router_state.learn;
      assert.deepEqual(state.arms.small, { mean: 0.1, count: 1 });
      // A decision takes one score: a second (a retry, a change of mind) is refused and changes nothing.
      const again = await feedback(tg.url, { request_id: first.decisionId, score: 1 });
      assert.equal(again.status, 409);
      assert.equal((again.body.error as { code: string }).code, 'TG_ERR_FEEDBACK_DUPLICATE');
      assert.deepEqual((await status(tg.url)).router_state.learn.arms.small, { mean: 0.1, count: 1 });
      // small (0.1) is now below large's prior (0.5): the next request goes large.
      assert.equal((await ask(tg.url)).tier, 'large');

      const unknown = await feedback(tg.url, { request_id: 'tg-nope', score: 1 });
      assert.equal(unknown.status, 404);
      assert.equal((unknown.body.error as { code: string }).code, 'TG_ERR_FEEDBACK_UNKNOWN');
      for (const bad of [{ request_id: first.decisionId, score: 2 }, { score: 1 }, [1], '{not json']) {
        const res = await feedback(tg.url, bad);
        assert.equal(res.status, 400, JSON.stringify(bad));
        assert.equal((res.body.error as { code: string }).code, 'TG_ERR_FEEDBACK_INVALID');
      }
      const lines = await waitFor('the feedback line', () =>
        tg
          .decisionLogText()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((l) => l.kind === 'feedback'),
      );
      assert.deepEqual({ request_id: lines.request_id, score: lines.score, route: lines.route }, { request_id: first.decisionId, score: 0.1, route: 'learn' });
      // `tiergate report` reads the same log: decisions as decisions, feedback via --feedback.
      await tg.waitForDecisions(3);
      const logs = await readLogs([tg.decisionLogFile]);
      assert.equal(logs.badLines, 0);
      const fed = await readFeedback(tg.decisionLogFile);
      assert.deepEqual({ bad: fed.badLines, scores: [...fed.scores] }, { bad: 0, scores: [[first.decisionId, [0.1]]] });
    } finally {
      await tg.close();
    }
  });

  test('with gateway keys, only the key that made a request may score it: another key gets 403 and the decision stays open', async () => {
    const keys = { TEAM_A_KEY: 'tg-team-a-feedback-0123456789', TEAM_B_KEY: 'tg-team-b-feedback-9876543210' };
    const auth =
      'server:\n  auth:\n    keys:\n      - { name: team-a, key: ${TEAM_A_KEY}, routes: "*" }\n      - { name: team-b, key: ${TEAM_B_KEY}, routes: "*" }\n';
    const tg = await startTestGateway(banditPolicy('epsilon: 0\nseed: 1', '', auth), { env: keys });
    try {
      const made = await ask(tg.url, keys.TEAM_A_KEY);
      await tg.waitForDecisions(1);
      const theirs = await feedback(tg.url, { request_id: made.decisionId, score: 0 }, keys.TEAM_B_KEY);
      assert.equal(theirs.status, 403, JSON.stringify(theirs.body));
      const error = theirs.body.error as { code: string; message: string; type: string; param: string };
      assert.deepEqual(
        { code: error.code, type: error.type, param: error.param },
        { code: 'TG_ERR_FEEDBACK_FORBIDDEN', type: 'permission_error', param: 'request_id' },
      );
      assert.match(error.message, /key "team-b"/);
      assert.doesNotMatch(error.message, /team-a/, 'the owner key is not named to another caller');
      assert.equal((await feedback(tg.url, { request_id: made.decisionId, score: 0 })).status, 401, 'no key: not even asked');
      const ours = await feedback(tg.url, { request_id: made.decisionId, score: 0.25 }, keys.TEAM_A_KEY);
      assert.equal(ours.status, 200, JSON.stringify(ours.body));
      assert.equal(ours.body.learned, true);
      await waitFor('one feedback line', () => tg.decisionLogText().includes('"kind":"feedback"'));
      const fed = tg
        .decisionLogText()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.kind === 'feedback');
      assert.deepEqual(
        fed.map((l) => l.score),
        [0.25],
        'the refused score was not logged',
      );
    } finally {
      await tg.close();
    }
  });

  test('gate scores are rewards without any feedback', async () => {
    const tg = await startTestGateway(
      banditPolicy('epsilon: 0\nseed: 1', '    gate: { evaluators: [{ plugin: heuristics }], threshold: 0, max_escalations: 0 }'),
    );
    try {
      await ask(tg.url);
      const [line] = await tg.waitForDecisions(1);
      assert.equal(typeof line.quality_score, 'number');
      const small = (await waitFor('the gate reward', async () => ((await status(tg.url)).router_state.learn.arms.small.count === 1 ? status(tg.url) : null)))
        .router_state.learn.arms.small;
      assert.ok(Math.abs(small.mean - line.quality_score!) < 1e-9);
    } finally {
      await tg.close();
    }
  });

  test('hot reload with a file state and a pending debounced write: the new runtime keeps every update', async () => {
    const router = (seed: number) => banditPolicy(`epsilon: 0\nseed: ${seed}\nstate: { file: state/bandit.json, flush_ms: 60000 }`);
    const tg = await startTestGateway(router(1));
    try {
      const { decisionId } = await ask(tg.url);
      assert.equal((await feedback(tg.url, { request_id: decisionId, score: 0.1 })).status, 200);
      assert.equal(existsSync(path.join(tg.dir, 'state/bandit.json')), false, 'the write waits on flush_ms');
      tg.writePolicy(router(2));
      const res = await fetch(`${tg.url}/admin/reload`, { method: 'POST' });
      assert.equal(((await res.json()) as { outcome: string }).outcome, 'applied');
      assert.deepEqual((await status(tg.url)).router_state.learn.arms.small, { mean: 0.1, count: 1 });
      assert.equal((await ask(tg.url)).tier, 'large', 'the new runtime routes on what the old one learned');
      // The old runtime, disposed, wrote the file at once.
      const saved = JSON.parse(readFileSync(path.join(tg.dir, 'state/bandit.json'), 'utf8')) as { arms: Record<string, { count: number }> };
      assert.equal(saved.arms.small.count, 1);
    } finally {
      await tg.close();
    }
  });

  test('Redis down (wrong port): requests are still served and learning goes on locally', async () => {
    const tg = await startTestGateway(banditPolicy(`epsilon: 0\nstate: { redis: { url: "redis://127.0.0.1:1", key: "${PREFIX}:down", refresh_ms: 20 } }`));
    try {
      for (let i = 0; i < 3; i++) {
        const { decisionId } = await ask(tg.url);
        assert.equal((await feedback(tg.url, { request_id: decisionId, score: 0.9 })).status, 200);
      }
      const state = (await status(tg.url)).router_state.learn;
      assert.equal(state.arms.small.count, 3);
      assert.deepEqual(state.state.redis, { key: `${PREFIX}:down`, connected: false });
    } finally {
      await tg.close();
    }
  });
});

interface Process {
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

async function serve(policyFile: string): Promise<Process> {
  const child = spawn(
    process.execPath,
    [path.join(REPO, 'bin', 'tiergate.js'), 'serve', '--config', policyFile, '--port', '0', '--host', '127.0.0.1', '--no-watch'],
    {
      cwd: REPO,
      env: { ...process.env, TIERGATE_LOG_LEVEL: 'info', TIERGATE_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  child.stdout!.resume();
  let code: number | null | undefined;
  void exited.then((c) => (code = c));
  const url = await waitFor(
    'the gateway to listen',
    () => {
      if (code !== undefined) assert.fail(`tiergate exited early (${code}): ${stderr}`);
      const match = /"message":"tiergate listening on (http:\/\/[^"]+)"/.exec(stderr);
      return match?.[1];
    },
    20_000,
  );
  return { url, child, exited };
}

describe('replicas', () => {
  test('two gateway processes on one Redis key learn as one', async () => {
    const key = `${PREFIX}:replicas`;
    // The decisions kept for feedback live next to the statistics.
    redisKeys.push(key, `${key}:decisions`, `${key}:decisions:order`);
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-bandit-replicas-'));
    const policyFile = path.join(dir, 'gateway.yaml');
    writeFileSync(
      policyFile,
      banditPolicy(`epsilon: 0\nseed: 1\nstate: { redis: { url: "${REDIS_URL}", key: "${key}", refresh_ms: 50 } }`).replace(
        'decision_log: { file: decisions.jsonl }',
        'decision_log: { file: null }',
      ),
    );
    const procs: Process[] = [];
    try {
      procs.push(...(await Promise.all([serve(policyFile), serve(policyFile)])));
      const [a, b] = procs;
      await waitFor('both connected to Redis', async () =>
        (await Promise.all([status(a.url), status(b.url)])).every((s) => s.router_state.learn.state.redis?.connected),
      );
      // Before: B, like A, sends to small (every arm at the prior).
      assert.equal((await ask(b.url)).tier, 'small');
      // A learns from five requests that small is bad (feedback 0) and large is fair (0.3).
      const tiers: string[] = [];
      for (let i = 0; i < 5; i++) {
        const { decisionId, tier } = await ask(a.url);
        tiers.push(tier!);
        assert.equal((await feedback(a.url, { request_id: decisionId, score: tier === 'small' ? 0 : 0.3 })).status, 200);
      }
      assert.deepEqual(tiers, ['small', 'large', 'large', 'large', 'large']);
      // B never saw those requests, yet its statistics include them and it routes on them.
      const seen = await waitFor("A's rewards in B's state", async () => {
        const s = (await status(b.url)).router_state.learn;
        return s.arms.large.count === 4 ? s : null;
      });
      assert.deepEqual(seen.arms, (await status(a.url)).router_state.learn.arms);
      assert.deepEqual(seen.arms.small, { mean: 0, count: 1 });
      assert.equal((await ask(b.url)).tier, 'large');
      // And the other way round: B rewards large, A sees it.
      const { decisionId } = await ask(b.url);
      assert.equal((await feedback(b.url, { request_id: decisionId, score: 1 })).status, 200);
      await waitFor("B's reward in A's state", async () => (await status(a.url)).router_state.learn.arms.large.count === 5);
    } finally {
      for (const p of procs) p.child.kill('SIGTERM');
      await Promise.all(procs.map((p) => p.exited));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('feedback posted to the replica that did not serve the request is applied once to the shared statistics', async () => {
    const key = `${PREFIX}:cross-feedback`;
    redisKeys.push(key, `${key}:decisions`, `${key}:decisions:order`);
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-bandit-replicas-'));
    const policyFile = path.join(dir, 'gateway.yaml');
    writeFileSync(
      policyFile,
      banditPolicy(`epsilon: 0\nseed: 1\nstate: { redis: { url: "${REDIS_URL}", key: "${key}", refresh_ms: 50 } }`).replace(
        'decision_log: { file: decisions.jsonl }',
        'decision_log: { file: null }',
      ),
    );
    const procs: Process[] = [];
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      procs.push(...(await Promise.all([serve(policyFile), serve(policyFile)])));
      const [a, b] = procs;
      await waitFor('both connected to Redis', async () =>
        (await Promise.all([status(a.url), status(b.url)])).every((s) => s.router_state.learn.state.redis?.connected),
      );
      // Served by A (every arm at the prior: small) …
      const { decisionId, tier } = await ask(a.url);
      assert.equal(tier, 'small');
      // … judged through B, which never saw the request.
      const fed = await feedback(b.url, { request_id: decisionId, score: 0 });
      assert.equal(fed.status, 200, JSON.stringify(fed.body));
      assert.deepEqual({ learned: fed.body.learned, arm: fed.body.arm, route: fed.body.route }, { learned: true, arm: 'small', route: 'learn' });
      // The shared statistics took the reward once, and both replicas route on it.
      assert.deepEqual(JSON.parse((await redis.hget(key, 'eg:small'))!), { mean: 0, count: 1 });
      assert.equal(await redis.hget(key, 'updates'), '1');
      await waitFor("B's reward in A's state", async () => (await status(a.url)).router_state.learn.arms.small.count === 1);
      assert.equal((await ask(a.url)).tier, 'large', 'A routes on the feedback B received');
      // Once: the same request judged again, on either replica, is refused and changes nothing.
      for (const url of [a.url, b.url]) {
        const again = await feedback(url, { request_id: decisionId, score: 1 });
        assert.equal(again.status, 409, JSON.stringify(again.body));
        assert.equal((again.body.error as { code: string }).code, 'TG_ERR_FEEDBACK_DUPLICATE');
      }
      // An id no replica served: 404 on either, in the OpenAI error shape.
      for (const url of [a.url, b.url]) {
        const unknown = await feedback(url, { request_id: 'tg-never-served', score: 1 });
        assert.equal(unknown.status, 404);
        assert.deepEqual(
          { code: (unknown.body.error as { code: string }).code, param: (unknown.body.error as { param: string }).param },
          { code: 'TG_ERR_FEEDBACK_UNKNOWN', param: 'request_id' },
        );
      }
      assert.equal(await redis.hget(key, 'updates'), '1');
      assert.deepEqual((await status(b.url)).router_state.learn.arms.small, { mean: 0, count: 1 });
      // The decisions wait in Redis no longer than the feedback window (24 h).
      const ttl = await redis.pttl(`${key}:decisions`);
      assert.ok(ttl > 0 && ttl <= 24 * 3600_000, `TTL ${ttl} ms`);
    } finally {
      redis.disconnect();
      for (const p of procs) p.child.kill('SIGTERM');
      await Promise.all(procs.map((p) => p.exited));
      rmSync(dir, { recursive: true, force: true });
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
