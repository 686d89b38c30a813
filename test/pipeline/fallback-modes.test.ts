// The route's fallback in every mode, end to end: a route without a gate, and a stream
// that bypasses its gate, still get their last resort when every routed model fails,
// before the client has a byte. The two-tier fake-openai gateway of test/support/gates.ts
// (routes plain-fallback and bypass), the official openai SDK as the client. The gated
// ladder's own fallback: gates.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type OpenAI from 'openai';
import type { TestGateway } from '../support/gateway.ts';
import { apiError, drain } from '../support/http.ts';
import { reply, type ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { ask, askStream, brief, cost, LARGE, startTwoTierGateway, type TwoTierGateway } from '../support/gates.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';

const rejections = watchUnhandledRejections();
after(() => rejections.assertNone());

const FAILED_SMALL_TIER = [
  { model: 'small-a', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM' },
  { model: 'small-b', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM' },
];

describe('the fallback applies to every route and every mode', () => {
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

  const smallTierDown = (large: ReturnType<typeof reply>) =>
    up.script({ 'up-small-a': { kind: 'status', status: 500 }, 'up-small-b': { kind: 'status', status: 500 }, 'up-large-l': large });

  test('no gate, JSON: every routed model 500s → the declared fallback answers with 200', async () => {
    const usage = { prompt_tokens: 12, completion_tokens: 4 };
    smallTierDown(reply('the fallback answers', usage));
    const { data, response } = await sdk.chat.completions.create(ask('plain-fallback', 'small tier down')).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.choices[0].message.content, 'the fallback answers');
    assert.equal(response.headers.get('x-tiergate-model'), 'large-l');
    assert.equal(response.headers.get('x-tiergate-gate'), 'none');
    assert.equal(response.headers.get('x-tiergate-escalations'), '1');
    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.status, 'ok');
    assert.deepEqual(line.attempts.map(brief), [
      ...FAILED_SMALL_TIER,
      { model: 'large-l', role: 'fallback', outcome: 'ok', retries: 0, error_code: undefined },
    ]);
    assert.equal(line.selected_model, 'large-l');
    assert.equal(line.escalations, 1);
    assert.equal(line.cost_usd, cost(LARGE, usage));
  });

  test('no gate, streamed: every routed model 500s → the declared fallback streams', async () => {
    smallTierDown(reply('the fallback streams'));
    const { data: stream, response } = await sdk.chat.completions.create(askStream('plain-fallback', 'small tier down, streaming')).withResponse();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-tiergate-model'), 'large-l');
    assert.equal(response.headers.get('x-tiergate-escalations'), '1');
    const got = await drain(stream);
    assert.equal(got.error, undefined);
    assert.equal(got.text, 'the fallback streams');
    assert.equal(up.to('up-large-l')[0].body.stream, true, 'the fallback is streamed from its upstream too');
    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.status, 'ok');
    assert.deepEqual(line.attempts.map(brief), [
      ...FAILED_SMALL_TIER,
      { model: 'large-l', role: 'fallback', outcome: 'ok', retries: 0, error_code: undefined },
    ]);
    assert.equal(line.escalations, 1);
  });

  test('streaming: bypass: every routed model 500s → the fallback (the top tier by default) streams, and the gate still scores it', async () => {
    smallTierDown(reply('[q=0.8] the top tier streams'));
    const { data: stream, response } = await sdk.chat.completions.create(askStream('bypass', 'small tier down, bypassing')).withResponse();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-tiergate-gate'), 'bypass');
    assert.equal(response.headers.get('x-tiergate-model'), 'large-l');
    const got = await drain(stream);
    assert.equal(got.error, undefined);
    assert.equal(got.text, '[q=0.8] the top tier streams');
    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.gate, 'bypass');
    assert.equal(line.quality_score, 0.8);
    assert.deepEqual(line.attempts.map(brief), [
      ...FAILED_SMALL_TIER,
      { model: 'large-l', role: 'fallback', outcome: 'ok', retries: 0, error_code: undefined },
    ]);
  });

  test('when the fallback fails too, one 502 lists every model tried, fallback included', async () => {
    smallTierDown({ kind: 'status', status: 500 });
    for (const stream of [false, true]) {
      const err = await apiError(sdk.chat.completions.create(stream ? askStream('plain-fallback', 'all down') : ask('plain-fallback', 'all down')));
      assert.equal(err.status, 502, stream ? 'stream' : 'JSON');
      assert.equal(err.code, 'TG_ERR_ALL_FAILED');
      const body = err.error as { attempts: Array<{ model: string }> };
      assert.deepEqual(
        body.attempts.map((a) => a.model),
        ['small-a', 'small-b', 'large-l'],
      );
    }
  });

  test("a request the upstream rejects as invalid (400) is not sent to the fallback: it is the client's to fix", async () => {
    up.script({ 'up-small-a': { kind: 'status', status: 400 }, 'up-large-l': reply('must not be used') });
    const err = await apiError(sdk.chat.completions.create(ask('plain-fallback', 'a bad request')));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'TG_ERR_UPSTREAM_REJECTED');
    assert.equal(up.to('up-large-l').length, 0);
  });
});
