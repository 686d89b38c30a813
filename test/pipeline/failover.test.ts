// Failover inside a tier and what the client gets when every option fails, end to end:
// the official openai SDK talks to a real tiergate over HTTP, tiergate talks through the
// real `openai` provider plugin to a scripted fake-openai upstream (the two-tier gateway
// of test/support/gates.ts: two models in the small tier). Latency assertions are
// generous bounds only; everything else is exact. The gate and the ladder: gates.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type OpenAI from 'openai';
import type { TestGateway } from '../support/gateway.ts';
import { apiError } from '../support/http.ts';
import { abortedUpstream, reply, type ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { ask, brief, cost, SMALL, SMALL_TIMEOUT_MS, startTwoTierGateway, type TwoTierGateway } from '../support/gates.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';

const rejections = watchUnhandledRejections();
after(() => rejections.assertNone());

describe('gates, ladder, failover and speculation over real HTTP', () => {
  let gateway: TwoTierGateway | undefined;
  let up: ScriptedUpstreams;
  let tg: TestGateway;
  let sdk: OpenAI;

  before(async () => {
    gateway = await startTwoTierGateway();
    ({ up, tg, sdk } = gateway);
  });

  after(async () => {
    await gateway?.close();
  });

  describe('failover inside a tier', () => {
    test('500 → retried once (resilience.retries) → the tier-mate answers', async () => {
      up.script({ 'up-small-a': { kind: 'status', status: 500 }, 'up-small-b': reply('from b', { prompt_tokens: 8, completion_tokens: 2 }) });
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'fail over please')).withResponse();
      assert.equal(data.choices[0].message.content, 'from b');
      assert.equal(response.headers.get('x-tiergate-model'), 'small-b');
      assert.equal(up.to('up-small-a').length, 2, 'one call and one retry');
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM' },
        { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
      assert.equal(line.attempts[0].cost_usd, 0, 'a failed call costs nothing');
      assert.equal(line.cost_usd, cost(SMALL, { prompt_tokens: 8, completion_tokens: 2 }));
      assert.equal(line.escalations, 0, 'failover inside a tier is not an escalation');
    });

    test('429 with retry-after: 1 → the same model is retried after about a second', async () => {
      up.script({
        'up-small-a': (n) => (n === 0 ? { kind: 'status', status: 429, headers: { 'retry-after': '1' } } : reply('after the pause')),
      });
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'rate limited')).withResponse();
      assert.equal(data.choices[0].message.content, 'after the pause');
      const calls = up.to('up-small-a');
      assert.equal(calls.length, 2);
      const gap = calls[1].at - calls[0].at;
      assert.ok(gap >= 950, `the retry waited for retry-after (${gap.toFixed(0)} ms)`);
      assert.equal(up.to('up-small-b').length, 0);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [{ model: 'small-a', role: 'routed', outcome: 'ok', retries: 1, error_code: undefined }]);
    });

    test('429 with a retry-after longer than max_backoff_ms → fail over at once', async () => {
      up.script({ 'up-small-a': { kind: 'status', status: 429, headers: { 'retry-after': '5' } }, 'up-small-b': reply('b instead') });
      const started = performance.now();
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'rate limited for long')).withResponse();
      const elapsed = performance.now() - started;
      assert.equal(data.choices[0].message.content, 'b instead');
      assert.equal(up.to('up-small-a').length, 1, 'no retry of a model that asked for 5 s');
      assert.ok(elapsed < 1000, `no waiting (${elapsed.toFixed(0)} ms)`);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'failed', retries: 0, error_code: 'TG_ERR_UPSTREAM_RATE_LIMITED' },
        { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
    });

    test('a hang past timeout_ms → retried, then the next model; the hung calls are aborted upstream', async () => {
      up.script({ 'up-small-a': { kind: 'hang' }, 'up-small-b': reply('b was awake') });
      const started = performance.now();
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'are you there?')).withResponse();
      const elapsed = performance.now() - started;
      assert.equal(data.choices[0].message.content, 'b was awake');
      assert.ok(elapsed >= 2 * SMALL_TIMEOUT_MS - 50, `two deadlines ran out first (${elapsed.toFixed(0)} ms)`);
      assert.ok(elapsed < 5000, `bounded (${elapsed.toFixed(0)} ms)`);
      assert.equal(up.to('up-small-a').length, 2);
      for (const call of up.to('up-small-a')) await abortedUpstream(call);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM_TIMEOUT' },
        { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
    });

    test('a connection reset → retried, then the next model', async () => {
      up.script({ 'up-small-a': { kind: 'reset' }, 'up-small-b': reply('b answered') });
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'reset me')).withResponse();
      assert.equal(data.choices[0].message.content, 'b answered');
      assert.equal(up.to('up-small-a').length, 2);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM' },
        { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
    });

    test('a tier that fails outright on a gated route climbs the ladder', async () => {
      up.script({ 'up-small-a': { kind: 'status', status: 503 }, 'up-small-b': { kind: 'status', status: 503 }, 'up-large-l': reply('[q=0.8] large') });
      const { data, response } = await sdk.chat.completions.create(ask('gated', 'small tier down')).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.8] large');
      assert.equal(response.headers.get('x-tiergate-escalations'), '1');
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(
        line.attempts.map((a) => [a.model, a.role, a.outcome]),
        [
          ['small-a', 'routed', 'failed'],
          ['small-b', 'routed', 'failed'],
          ['large-l', 'escalation', 'ok'],
        ],
      );
    });
  });

  describe('every option fails', () => {
    test('both models of the tier 500 → 502 TG_ERR_ALL_FAILED, OpenAI error shape, error.attempts lists both', async () => {
      up.script({ 'up-small-a': { kind: 'status', status: 500 }, 'up-small-b': { kind: 'status', status: 500 } });
      const err = await apiError(sdk.chat.completions.create(ask('plain', 'nobody home')));
      assert.equal(err.status, 502);
      assert.equal(err.code, 'TG_ERR_ALL_FAILED');
      assert.equal(err.type, 'api_error');
      assert.match(err.message, /small-a/);
      assert.match(err.message, /small-b/);
      const body = err.error as { message: string; type: string; code: string; attempts: Array<Record<string, unknown>> };
      assert.equal(typeof body.message, 'string');
      assert.deepEqual(
        body.attempts.map((a) => ({ model: a.model, tier: a.tier, outcome: a.outcome, error_code: a.error_code, retries: a.retries })),
        [
          { model: 'small-a', tier: 'small', outcome: 'failed', error_code: 'TG_ERR_UPSTREAM', retries: 1 },
          { model: 'small-b', tier: 'small', outcome: 'failed', error_code: 'TG_ERR_UPSTREAM', retries: 1 },
        ],
      );
      assert.equal(up.calls.length, 4);
      const line = await tg.waitForDecision(err.headers?.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_ALL_FAILED');
      assert.equal(line.attempts.length, 2);
    });

    test('a single model failing → its own error (504) with error.attempts', async () => {
      up.script({ 'up-solo': { kind: 'hang' } });
      const err = await apiError(sdk.chat.completions.create(ask('solo', 'anyone?')));
      assert.equal(err.status, 504);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_TIMEOUT');
      const body = err.error as { attempts: Array<Record<string, unknown>> };
      assert.deepEqual(
        body.attempts.map((a) => ({ model: a.model, outcome: a.outcome, error_code: a.error_code, retries: a.retries })),
        [{ model: 'solo', outcome: 'failed', error_code: 'TG_ERR_UPSTREAM_TIMEOUT', retries: 1 }],
      );
    });
  });
});
