// A dependency outage is logged once, then at a bounded rate, and its end is logged: with
// Redis down and `limits_when_redis_down: reject`, every request of a limited key fails
// alike, and a line per request (1,997 lines, 690 KB in 10 s) buried the log. A real gateway
// pointed at a closed port takes a few hundred such requests; then a throwaway
// redis-server comes up on that port and the gateway says so, and admits again.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { LogThrottle } from '../../src/observe/log-throttle.ts';
import { simulatorPolicy, startTestGateway } from '../support/gateway.ts';
import { capturingLogger } from '../support/logs.ts';
import { freePort } from '../support/ports.ts';
import { waitFor } from '../support/wait.ts';

const KEY = 'sk-metered-outage-0123456789';
const REQUESTS = 300;

describe('LogThrottle', () => {
  test('the first line of a kind at once, then one per interval with how many were left out; reset() says what it forgets', () => {
    const { logger, lines } = capturingLogger('info');
    let now = 0;
    const throttle = new LogThrottle(logger, 1000, () => now);
    assert.equal(throttle.log('warn', 'a', 'A down', { x: 1 }), true);
    for (let i = 0; i < 5; i++) assert.equal(throttle.log('warn', 'a', 'A down'), false);
    assert.equal(throttle.log('error', 'b', 'B down'), true, 'another kind is not held back by the first');
    now = 999;
    assert.equal(throttle.log('warn', 'a', 'A down'), false);
    now = 1000;
    assert.equal(throttle.log('warn', 'a', 'A down', { x: 2 }), true);
    throttle.log('warn', 'a', 'A down');
    assert.deepEqual(
      lines().map(({ level, message, x, repeated, repeated_over_ms }) => ({ level, message, x, repeated, repeated_over_ms })),
      [
        { level: 'warn', message: 'A down', x: 1, repeated: undefined, repeated_over_ms: undefined },
        { level: 'error', message: 'B down', x: undefined, repeated: undefined, repeated_over_ms: undefined },
        { level: 'warn', message: 'A down', x: 2, repeated: 6, repeated_over_ms: 1000 },
      ],
    );
    assert.deepEqual(throttle.reset(), { logged: true, leftOut: 1 });
    assert.deepEqual(throttle.reset(), { logged: false, leftOut: 0 });
    assert.equal(throttle.log('warn', 'a', 'A down'), true, 'after a reset the next line goes out at once');
  });
});

describe('Redis down, then back', () => {
  test(`${REQUESTS} requests refused while Redis is down write a handful of log lines; its return is logged and requests are admitted again`, async (t) => {
    const port = await freePort();
    const { logger, lines } = capturingLogger('info');
    const tg = await startTestGateway(
      simulatorPolicy({
        extra: `server:
  auth:
    keys:
      - { name: metered, key: "${KEY}", routes: '*', limits: { requests_per_minute: 100000 } }
    limits_when_redis_down: reject
state:
  redis: { url: "redis://127.0.0.1:${port}", timeout_ms: 100, prefix: "tiergate-test:outage:${process.pid}" }
`,
      }),
      { logger },
    );
    t.after(() => tg.close());
    const ask = async () => {
      const res = await fetch(`${tg.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ model: 'support', messages: [{ role: 'user', content: 'Where is my parcel?' }] }),
      });
      const body = (await res.json()) as { error?: { code?: string } };
      return { status: res.status, code: body.error?.code };
    };

    const startedWith = lines().length;
    for (let sent = 0; sent < REQUESTS; sent += 10) {
      const answers = await Promise.all(Array.from({ length: 10 }, ask));
      for (const answer of answers) assert.deepEqual(answer, { status: 503, code: 'TG_ERR_LIMIT_UNAVAILABLE' });
    }
    const during = lines().slice(startedWith);
    assert.ok(during.length <= 6, `${REQUESTS} refused requests wrote ${during.length} log lines:\n${during.map((l) => JSON.stringify(l)).join('\n')}`);
    const failed = during.filter((l) => l.message === 'chat completion failed');
    assert.ok(failed.length >= 1, 'the failure itself is logged');
    assert.equal(failed[0].code, 'TG_ERR_LIMIT_UNAVAILABLE');
    assert.ok(
      lines().some((l) => l.level === 'warn' && /gateway\.yaml:\d+:\d+ state\.redis: Redis unavailable/.test(String(l.message))),
      'the outage is logged, located',
    );
    assert.ok(!lines().some((l) => /Redis reachable again/.test(String(l.message))));

    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    t.after(async () => {
      if (redis.exitCode === null && redis.signalCode === null) {
        redis.kill('SIGTERM');
        await once(redis, 'exit');
      }
    });
    const back = await waitFor('the "Redis reachable again" line', () => lines().find((l) => /Redis reachable again/.test(String(l.message))), 15_000);
    assert.equal(back.level, 'info');
    assert.match(String(back.message), /gateway\.yaml:\d+:\d+ state\.redis: Redis reachable again/);
    assert.equal(typeof back.down_for_ms, 'number');
    assert.deepEqual(await ask(), { status: 200, code: undefined }, 'a limited key is admitted once Redis is back');
    assert.equal(lines().filter((l) => /Redis reachable again/.test(String(l.message))).length, 1, 'the return is logged once');
  });
});
