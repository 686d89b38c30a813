// Gates on streamed requests, end to end: in buffer mode the answer is gated before the
// client gets a byte (and escalated like a JSON one); in bypass mode the cheap answer
// streams at once and is scored afterwards for the log; failover before the first byte,
// none after it. The two-tier fake-openai gateway of test/support/gates.ts, the official
// openai SDK as the client.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type OpenAI from 'openai';
import { APIError } from 'openai';
import type { TestGateway } from '../support/gateway.ts';
import { drain } from '../support/http.ts';
import { reply, type ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { askStream, brief, cost, SMALL, startTwoTierGateway, type TwoTierGateway } from '../support/gates.ts';
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

  describe('streaming', () => {
    test('gate buffer: a failing cheap answer is escalated and the client streams the strong answer, with usage', async () => {
      const largeUsage = { prompt_tokens: 15, completion_tokens: 6 };
      up.script({ 'up-small-a': reply('[q=0.1] weak streamed'), 'up-large-l': reply('[q=0.9] the strong streamed answer', largeUsage) });
      const { data: stream, response } = await sdk.chat.completions
        .create(askStream('gated', 'stream it', { stream_options: { include_usage: true } }))
        .withResponse();
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
      assert.equal(response.headers.get('x-tiergate-escalations'), '1');
      assert.equal(response.headers.get('x-tiergate-model'), 'large-l');
      const got = await drain(stream);
      assert.equal(got.error, undefined);
      assert.equal(got.text, '[q=0.9] the strong streamed answer');
      assert.equal(got.finish, 'stop');
      assert.deepEqual(got.usages, [{ ...largeUsage, total_tokens: 21 }]);
      assert.ok(
        up.calls.every((c) => c.body.stream !== true),
        'buffer mode asks the upstream for complete answers',
      );
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.stream, true);
      assert.equal(line.gate, 'passed');
      assert.equal(line.escalations, 1);
      assert.equal(line.quality_score, 0.9);
    });

    test('gate bypass: the cheap answer streams at once; the decision records bypass with its score', async () => {
      up.script({ 'up-small-a': reply('[q=0.4] cheap streamed', { prompt_tokens: 9, completion_tokens: 5 }) });
      const { data: stream, response } = await sdk.chat.completions.create(askStream('bypass', 'stream it raw')).withResponse();
      assert.equal(response.headers.get('x-tiergate-gate'), 'bypass');
      assert.equal(response.headers.get('x-tiergate-model'), 'small-a');
      const got = await drain(stream);
      assert.equal(got.error, undefined);
      assert.equal(got.text, '[q=0.4] cheap streamed');
      assert.deepEqual(got.usages, []);
      assert.equal(up.to('up-large-l').length, 0, 'bypass never escalates');
      assert.equal(up.to('up-small-a')[0].body.stream, true, 'streamed from the upstream');
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.gate, 'bypass');
      assert.equal(line.quality_score, 0.4, 'scored afterwards, for the log');
      assert.equal(line.attempts[0].gate?.passed, false);
      assert.equal(line.escalations, 0);
      assert.equal(line.cost_usd, cost(SMALL, { prompt_tokens: 9, completion_tokens: 5 }));
    });

    for (const mode of ['gated', 'bypass'] as const) {
      test(`${mode === 'gated' ? 'buffer' : 'bypass'}: the first model resets before any response → the tier-mate streams`, async () => {
        up.script({ 'up-small-a': { kind: 'reset' }, 'up-small-b': reply('[q=0.9] b streams') });
        const { data: stream, response } = await sdk.chat.completions.create(askStream(mode, 'reset first')).withResponse();
        assert.equal(response.headers.get('x-tiergate-model'), 'small-b');
        const got = await drain(stream);
        assert.equal(got.error, undefined);
        assert.equal(got.text, '[q=0.9] b streams');
        assert.equal(up.to('up-small-a').length, 2);
        const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
        assert.equal(line.status, 'ok');
        assert.deepEqual(line.attempts.map(brief), [
          { model: 'small-a', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM' },
          { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
        ]);
      });
    }

    test('bypass: a reset after the first byte → an error event, no failover', async () => {
      up.script({ 'up-small-a': { kind: 'reset-mid-stream' }, 'up-small-b': reply('[q=0.9] must not be used') });
      const { data: stream, response } = await sdk.chat.completions.create(askStream('bypass', 'break mid-stream')).withResponse();
      assert.equal(response.status, 200);
      const got = await drain(stream);
      assert.equal(got.text, 'partial ');
      assert.ok(got.error instanceof APIError, `the stream ends with an error, got ${String(got.error)}`);
      assert.equal(got.error.code, 'TG_ERR_UPSTREAM');
      assert.equal(up.to('up-small-b').length, 0, 'bytes were sent: too late to fail over');
      assert.equal(up.to('up-small-a').length, 1);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM');
      assert.deepEqual(line.attempts.map(brief), [{ model: 'small-a', role: 'routed', outcome: 'failed', retries: 0, error_code: 'TG_ERR_UPSTREAM' }]);
    });
  });
});
