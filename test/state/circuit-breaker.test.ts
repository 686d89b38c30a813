// The circuit breaker (resilience.failure_threshold, cooldown_ms), over real HTTP: the
// official openai SDK talks to a real tiergate, tiergate's openai provider to a scripted
// fake-openai upstream. A model that fails failure_threshold times in a row is skipped
// for cooldown_ms and listed in /admin/status, then probed again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type OpenAI from 'openai';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { reply, ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { ask, client } from '../support/gates.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';
import { sleep } from '../support/wait.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';

const rejections = watchUnhandledRejections();
after(() => rejections.assertNone());

describe('circuit breaker', () => {
  let fake: FakeOpenAI;
  let up: ScriptedUpstreams;
  let tg: TestGateway;
  let sdk: OpenAI;
  const COOLDOWN_MS = 800;

  before(async () => {
    fake = await startFakeOpenAI();
    up = new ScriptedUpstreams(fake);
    tg = await startTestGateway(`version: 1
providers:
  up: { plugin: openai, base_url: "${fake.baseURL}", api_key: test-key }
models:
  cb-a: { provider: up, upstream: up-cb-a, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 2000 }
  cb-b: { provider: up, upstream: up-cb-b, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 2000 }
tiers:
  - { name: pool, models: [cb-a, cb-b] }
resilience: { retries: 0, backoff_ms: 10, max_backoff_ms: 100, failure_threshold: 2, cooldown_ms: ${COOLDOWN_MS} }
routes:
  pool:
    router: { plugin: rules, rules: [] }
    default: pool
analytics:
  decision_log: { file: decisions.jsonl }
`);
    sdk = client(tg);
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  async function call(): Promise<DecisionRecord> {
    const { data, response } = await sdk.chat.completions.create(ask('pool', 'circuit')).withResponse();
    assert.ok(data.choices[0].message.content);
    return tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
  }

  async function cooling(): Promise<Record<string, string>> {
    const res = await fetch(`${tg.url}/admin/status`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { models_in_cooldown: Record<string, string> }).models_in_cooldown;
  }

  test('failure_threshold consecutive failures → skipped for cooldown_ms, listed in /admin/status, then probed again', async () => {
    let aHealthy = false;
    up.script({ 'up-cb-a': () => (aHealthy ? reply('a is back') : { kind: 'status', status: 500 }), 'up-cb-b': reply('b') });

    for (let i = 0; i < 2; i++) {
      const line = await call();
      assert.deepEqual(
        line.attempts.map((a) => [a.model, a.outcome, a.error_code]),
        [
          ['cb-a', 'failed', 'TG_ERR_UPSTREAM'],
          ['cb-b', 'ok', undefined],
        ],
      );
    }
    const listed = await cooling();
    assert.deepEqual(Object.keys(listed), ['cb-a']);
    assert.ok(Date.parse(listed['cb-a']) > Date.now(), 'with the time it comes back');

    const skipped = await call();
    assert.deepEqual(
      skipped.attempts.map((a) => [a.model, a.outcome]),
      [
        ['cb-a', 'skipped_cooldown'],
        ['cb-b', 'ok'],
      ],
    );
    assert.equal(skipped.attempts[0].cost_usd, 0);
    assert.equal(up.to('up-cb-a').length, 2, 'a model in cooldown is not called');

    // After the cooldown: one probe. It fails, and one failure sends the model straight back.
    await sleep(COOLDOWN_MS + 50);
    assert.deepEqual(await cooling(), {});
    const probe = await call();
    assert.deepEqual(
      probe.attempts.map((a) => [a.model, a.outcome]),
      [
        ['cb-a', 'failed'],
        ['cb-b', 'ok'],
      ],
    );
    assert.equal(up.to('up-cb-a').length, 3, 'probed again');
    assert.deepEqual(Object.keys(await cooling()), ['cb-a'], 'a failed probe reopens the breaker at once');
    assert.equal((await call()).attempts[0].outcome, 'skipped_cooldown');

    // Next cooldown over, the model has recovered: the probe succeeds and the breaker closes.
    aHealthy = true;
    await sleep(COOLDOWN_MS + 50);
    const recovered = await call();
    assert.deepEqual(
      recovered.attempts.map((a) => [a.model, a.outcome]),
      [['cb-a', 'ok']],
    );
    assert.equal(recovered.selected_model, 'cb-a');
    assert.deepEqual(await cooling(), {});
  });
});
