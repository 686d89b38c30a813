// Per-key limits (server.auth.keys[].limits) and shared model cooldowns (state.redis),
// over real HTTP with the openai SDK: requests and spend per window, in one process and
// shared by two gateways through Redis, across a reload, with Redis down (failing open
// to per-replica counts, or closed), and a cooldown one gateway starts that the other
// obeys. replicas.test.ts runs the same through nginx and three processes.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { apiError } from '../support/http.ts';
import { capturingLogger } from '../support/logs.ts';

const REDIS_URL = process.env.TIERGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `tiergate-test:limits:${process.pid}:${Date.now()}`;
const ON_CI = Boolean(process.env.CI) && process.env.CI !== 'false' && process.env.CI !== '0';
const ADMIN = 'admin-token-for-limits-tests';
const KEYS = { metered: 'sk-metered-0123456789abcdef', free: 'sk-free-0123456789abcdef' };

async function redisReachable(): Promise<boolean> {
  const probe = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1000, retryStrategy: () => null });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}
const HAVE_REDIS = await redisReachable();
const NO_REDIS = HAVE_REDIS || ON_CI ? false : `no Redis at ${REDIS_URL} (set TIERGATE_TEST_REDIS_URL; on CI this fails instead)`;

after(async () => {
  if (!HAVE_REDIS) return;
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
});

/** Fixed windows: keep a test's requests inside one window (waits at most `marginMs`). */
async function clearOfBoundary(windowMs: number, marginMs = 4000): Promise<void> {
  const left = windowMs - (Date.now() % windowMs);
  if (left < marginMs) await sleep(left + 100);
}
const clearOfMinuteBoundary = () => clearOfBoundary(60_000);

function policy(options: { limits: string; freeLimits?: string; state?: string; authExtra?: string; models?: string; resilience?: string }): string {
  return simulatorPolicy({
    extra: `server:
  auth:
    keys:
      - { name: metered, key: "${KEYS.metered}", routes: '*', limits: ${options.limits} }
      - { name: free, key: "${KEYS.free}", routes: '*'${options.freeLimits ? `, limits: ${options.freeLimits}` : ''} }
    admin_token: "${ADMIN}"
${options.authExtra ?? ''}${options.state ?? ''}${options.resilience ?? ''}`,
  });
}

const client = (tg: TestGateway, key: string) => new OpenAI({ baseURL: tg.baseURL, apiKey: key, maxRetries: 0, timeout: 10_000 });
const ask = (tg: TestGateway, key = KEYS.metered, model = 'support') =>
  client(tg, key)
    .chat.completions.create({ model, messages: [{ role: 'user', content: 'Where is my parcel? Order 12345' }] })
    .withResponse();

async function status(
  tg: TestGateway,
): Promise<{ models_in_cooldown: Record<string, string>; shared_state: { redis: { connected: boolean; prefix: string; url: string } } | null }> {
  const res = await fetch(`${tg.url}/admin/status`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(res.status, 200);
  return (await res.json()) as Awaited<ReturnType<typeof status>>;
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

describe('per-key limits in one process (no Redis)', () => {
  test('requests_per_minute: the 4th request of a key limited to 3 is 429 with retry-after; invalid requests and other keys do not count', async () => {
    const tg = await startTestGateway(policy({ limits: '{ requests_per_minute: 3 }' }));
    try {
      await clearOfMinuteBoundary();
      // A request that is not valid is refused before it is counted.
      const invalid = await apiError(client(tg, KEYS.metered).chat.completions.create({ model: 'support', messages: 'hello' as never }));
      assert.equal(invalid.status, 400);
      for (let i = 0; i < 3; i++) assert.equal((await ask(tg)).response.status, 200);
      const limited = await apiError(ask(tg));
      assert.equal(limited.status, 429);
      assert.equal(limited.code, 'TG_ERR_LIMIT_REQUESTS');
      assert.equal(limited.type, 'rate_limit_error');
      assert.match(limited.message, /key "metered" has made its 3 requests this minute \(limits\.requests_per_minute\)/);
      const retryAfter = Number(limited.headers?.get('retry-after'));
      const untilNextMinute = Math.ceil((60_000 - (Date.now() % 60_000)) / 1000);
      assert.ok(
        retryAfter >= 1 && retryAfter <= 60 && Math.abs(retryAfter - untilNextMinute) <= 1,
        `retry-after ${retryAfter}, next minute in ${untilNextMinute} s`,
      );
      // A refused request counts for nothing, and another key has its own budget (none).
      assert.equal((await apiError(ask(tg))).status, 429);
      for (let i = 0; i < 5; i++) assert.equal((await ask(tg, KEYS.free)).response.status, 200);
      // The refusal is on the decision line, under the key's name.
      const lines = await tg.waitForDecisions(1 + 3 + 2 + 5);
      const refused = lines.filter((l) => l.error_code === 'TG_ERR_LIMIT_REQUESTS');
      assert.equal(refused.length, 2);
      assert.ok(refused.every((l) => l.api_key_name === 'metered' && l.status === 'error' && l.cost_usd === null));
    } finally {
      await tg.close();
    }
  });

  test('usd_per_day: checked before the call and the actual cost added after it; counts survive a reload that changes the limit', async () => {
    const tg = await startTestGateway(policy({ limits: '{ usd_per_day: 0.0001 }' }));
    try {
      await clearOfBoundary(86_400_000);
      // Under budget at the check: served, though this one call costs more than the budget.
      const { response } = await ask(tg);
      assert.equal(response.status, 200);
      const [served] = await tg.waitForDecisions(1);
      assert.ok(served.cost_usd! > 0.0001, `cost ${served.cost_usd}`);
      const limited = await apiError(ask(tg));
      assert.equal(limited.status, 429);
      assert.equal(limited.code, 'TG_ERR_LIMIT_SPEND');
      assert.match(limited.message, /key "metered" has spent \$[0-9.]+ of its \$0\.0001 budget today \(UTC\) \(limits\.usd_per_day\)/);
      const retryAfter = Number(limited.headers?.get('retry-after'));
      const untilMidnight = Math.ceil((86_400_000 - (Date.now() % 86_400_000)) / 1000);
      assert.ok(Math.abs(retryAfter - untilMidnight) <= 2, `retry-after ${retryAfter}, UTC midnight in ${untilMidnight} s`);
      // A reload keeps what was spent: a raised budget still sees it.
      tg.writePolicy(policy({ limits: `{ usd_per_day: ${served.cost_usd! * 1.5} }` }));
      assert.equal((await tg.gateway.manager.reload('admin')).outcome, 'applied');
      assert.equal((await ask(tg)).response.status, 200, 'spent 1× of a 1.5× budget: served');
      await tg.waitForDecisions(3);
      assert.equal((await apiError(ask(tg))).code, 'TG_ERR_LIMIT_SPEND', 'spent 2× of a 1.5× budget: refused');
    } finally {
      await tg.close();
    }
  });
});

describe('per-key limits shared through Redis (state.redis)', { skip: NO_REDIS }, () => {
  const gateways: TestGateway[] = [];
  after(async () => {
    await Promise.all(gateways.map((g) => g.close()));
  });

  test('two gateways on one prefix count one budget: requests and spend', async () => {
    const prefix = `${PREFIX}:shared`;
    const yaml = policy({
      limits: '{ requests_per_minute: 4 }',
      freeLimits: '{ usd_per_minute: 0.0001 }',
      state: `state:\n  redis: { url: "${REDIS_URL}", prefix: "${prefix}" }\n`,
    });
    const [a, b] = await Promise.all([startTestGateway(yaml), startTestGateway(yaml)]);
    gateways.push(a, b);
    for (const tg of [a, b]) assert.equal((await status(tg)).shared_state?.redis.connected, true);
    await clearOfMinuteBoundary();
    for (const tg of [a, b, a, b]) assert.equal((await ask(tg)).response.status, 200);
    for (const tg of [a, b]) {
      const limited = await apiError(ask(tg));
      assert.equal(limited.status, 429, 'the 5th request is refused by whichever gateway gets it');
      assert.equal(limited.code, 'TG_ERR_LIMIT_REQUESTS');
    }
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      // Spend: what a request through A cost stops the key on B (added after A answered).
      assert.equal((await ask(a, KEYS.free)).response.status, 200);
      await waitFor('the spend in Redis', async () => {
        const keys = await redis.keys(`${prefix}:limits:{free}:minute:*`);
        return keys.length === 1 && Number(await redis.hget(keys[0], 'usd')) > 0.0001;
      });
      assert.equal((await apiError(ask(b, KEYS.free))).code, 'TG_ERR_LIMIT_SPEND');
      // Every counter expires with its window.
      const keys = await redis.keys(`${prefix}:limits:*`);
      assert.deepEqual(keys.map((k) => k.replace(/:\d+$/, '')).sort(), [`${prefix}:limits:{free}:minute`, `${prefix}:limits:{metered}:minute`]);
      for (const key of keys) {
        const ttl = await redis.ttl(key);
        assert.ok(ttl > 0 && ttl <= 120, `${key} TTL ${ttl}`);
      }
    } finally {
      redis.disconnect();
    }
  });

  test('a cooldown one gateway starts is obeyed by the other', async () => {
    const prefix = `${PREFIX}:cooldowns`;
    const yaml = simulatorPolicy({
      extra: `state:
  redis: { url: "${REDIS_URL}", prefix: "${prefix}", refresh_ms: 20 }
resilience: { retries: 0, failure_threshold: 1, cooldown_ms: 60000 }
`,
    })
      .replace('      sim-small:', '      sim-broken: { capability: 0.9, first_token_ms: 10, tokens_per_second: 100, failure_rate: 1 }\n      sim-small:')
      .replace('models:\n', 'models:\n  broken-model: { provider: sim, upstream: sim-broken, price: { input_per_mtok: 1, output_per_mtok: 1 } }\n')
      .replace('{ name: small, models: [small-model] }', '{ name: small, models: [broken-model, small-model] }');
    const [a, b] = await Promise.all([startTestGateway(yaml), startTestGateway(yaml)]);
    gateways.push(a, b);
    const classify = (tg: TestGateway) =>
      new OpenAI({ baseURL: tg.baseURL, apiKey: 'x', maxRetries: 0 }).chat.completions
        .create({ model: 'support', messages: [{ role: 'user', content: 'Classify: my parcel is late' }], metadata: { task_type: 'classification' } })
        .withResponse();
    // A: the broken model fails once (failure_threshold 1) and A fails over to small-model.
    assert.equal((await classify(a)).response.headers.get('x-tiergate-model'), 'small-model');
    const [first] = await a.waitForDecisions(1);
    assert.deepEqual(
      first.attempts.map((x) => [x.model, x.outcome]),
      [
        ['broken-model', 'failed'],
        ['small-model', 'ok'],
      ],
    );
    // B never called it, yet learns of the cooldown and skips the model.
    const seen = await waitFor("A's cooldown in B's status", async () => (await status(b)).models_in_cooldown['broken-model']);
    assert.ok(Date.parse(seen) > Date.now() + 50_000, seen);
    assert.equal((await classify(b)).response.headers.get('x-tiergate-model'), 'small-model');
    const [onB] = await b.waitForDecisions(1);
    assert.deepEqual(
      onB.attempts.map((x) => [x.model, x.outcome]),
      [
        ['broken-model', 'skipped_cooldown'],
        ['small-model', 'ok'],
      ],
    );
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      const score = Number(await redis.zscore(`${prefix}:cooldowns`, 'broken-model'));
      assert.ok(Math.abs(score - Date.parse(seen)) < 1000, `stored until ${score}`);
      assert.ok((await redis.pttl(`${prefix}:cooldowns`)) <= 60_000);
    } finally {
      redis.disconnect();
    }
  });
});

describe('Redis down', () => {
  // A password in the URL is a secret: it must not show in a log line or a status page.
  const PASSWORD = 'redis-password-for-limits-tests';
  const down = (extra = '') =>
    policy({
      limits: '{ requests_per_minute: 2 }',
      authExtra: extra,
      state: `state:\n  redis: { url: "redis://:${PASSWORD}@127.0.0.1:1", timeout_ms: 100 }\n`,
    });

  test('default (per_replica): requests are served, each replica counts alone, and a located warning is logged', async () => {
    const { logger, lines } = capturingLogger('warn');
    const tg = await startTestGateway(down(), { logger });
    try {
      const shown = await status(tg);
      assert.deepEqual(shown.shared_state?.redis, { url: 'redis://:***@127.0.0.1:1', prefix: 'tiergate', connected: false });
      await clearOfMinuteBoundary();
      for (let i = 0; i < 2; i++) assert.equal((await ask(tg)).response.status, 200);
      assert.equal((await apiError(ask(tg))).code, 'TG_ERR_LIMIT_REQUESTS', 'the limit still holds, per replica');
      const warning = lines().find((l) => l.level === 'warn' && /state\.redis: Redis unavailable/.test(String(l.message)));
      assert.ok(warning, JSON.stringify(lines()));
      assert.match(String(warning.message), /gateway\.yaml:\d+:\d+ state\.redis: /);
      assert.ok(!JSON.stringify(lines()).includes(PASSWORD), 'the Redis password is never logged');
    } finally {
      await tg.close();
    }
  });

  test('limits_when_redis_down: reject fails closed with 503 for keys with limits only', async () => {
    const tg = await startTestGateway(down('    limits_when_redis_down: reject\n'));
    try {
      const refused = await apiError(ask(tg));
      assert.equal(refused.status, 503);
      assert.equal(refused.code, 'TG_ERR_LIMIT_UNAVAILABLE');
      assert.equal(refused.headers?.get('retry-after'), '1');
      assert.equal((await ask(tg, KEYS.free)).response.status, 200, 'a key without limits does not need Redis');
    } finally {
      await tg.close();
    }
  });
});
