// The gateway in front of local upstreams, through the real provider plugins: the
// openai SDK talks to tiergate over HTTP, tiergate talks to fake-openai / fake-anthropic
// over HTTP. This file: pass-through of request fields, and Anthropic translation end to
// end. Failures mapped to catalogue codes, deadlines and cancellation reaching the
// upstream: upstream-errors.test.ts; a tier's failover through every fault:
// upstream-faults.test.ts. The gateway they share: test/support/provider-gateway.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type OpenAI from 'openai';
import { APIError, APIUserAbortError } from 'openai';
import type { ChatCompletionCreateParamsNonStreaming } from 'openai/resources/chat/completions';
import { apiError } from '../support/http.ts';
import type { FakeOpenAI } from '../support/fake-openai.ts';
import type { FakeAnthropic } from '../support/fake-anthropic.ts';
import { body, marker, PRICE, startProviderGateway, streamBody, type ProviderGateway } from '../support/provider-gateway.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';
import { until } from '../support/wait.ts';

const rejections = watchUnhandledRejections();

describe('gateway in front of real provider plugins', () => {
  let gateway: ProviderGateway | undefined;
  let openai: FakeOpenAI;
  let anthropic: FakeAnthropic;
  let client: OpenAI;

  before(async () => {
    gateway = await startProviderGateway();
    ({ openai, anthropic, client } = gateway);
  });

  after(async () => {
    await gateway?.close();
  });

  const decisionFor = (mark: string) => gateway!.decisionFor(mark);
  const upstreamRequestFor = (mark: string) => gateway!.upstreamRequestFor(mark);

  describe('openai provider → fake-openai', () => {
    test('request fields reach the upstream unchanged; metadata does not; the upstream model is the policy upstream name', async () => {
      openai.behave(() => ({ kind: 'reply', content: 'fine', usage: { prompt_tokens: 21, completion_tokens: 4 } }));
      const mark = marker();
      const tools = [
        {
          type: 'function',
          function: {
            name: 'lookup_order',
            description: 'Find an order',
            parameters: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
          },
        },
      ];
      const responseFormat = {
        type: 'json_schema',
        json_schema: {
          name: 'answer',
          strict: true,
          schema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false },
        },
      };
      const messages = [
        { role: 'system', content: 'You are a support agent.' },
        { role: 'user', content: `Where is my order? ${mark}` },
      ];
      const { data, response } = await client.chat.completions
        .create({
          model: 'chat',
          messages,
          tools,
          tool_choice: 'auto',
          response_format: responseFormat,
          temperature: 0.3,
          top_p: 0.9,
          max_tokens: 77,
          user: 'user-42',
          seed: 7,
          metadata: { task_type: 'lookup', secret_routing_hint: 'x' },
        } as unknown as ChatCompletionCreateParamsNonStreaming)
        .withResponse();
      assert.equal(data.choices[0].message.content, 'fine');
      assert.equal(data.model, 'oa-fast', 'the client sees the policy model name');
      assert.deepEqual(data.usage, { prompt_tokens: 21, completion_tokens: 4, total_tokens: 25 });
      assert.equal(response.headers.get('x-tiergate-model'), 'oa-fast');
      assert.equal(response.headers.get('x-tiergate-tier'), 'small');
      assert.equal(response.headers.get('x-tiergate-simulated'), null, 'a real provider is not simulated');

      const up = upstreamRequestFor(mark);
      assert.equal(up.method, 'POST');
      assert.equal(up.path, '/v1/chat/completions');
      assert.equal(up.headers.authorization, 'Bearer test-key', 'the policy key is sent, not the client key');
      assert.equal(up.body.model, 'fake-gpt');
      assert.deepEqual(up.body.messages, messages);
      assert.deepEqual(up.body.tools, tools);
      assert.equal(up.body.tool_choice, 'auto');
      assert.deepEqual(up.body.response_format, responseFormat);
      assert.equal(up.body.temperature, 0.3);
      assert.equal(up.body.top_p, 0.9);
      assert.equal(up.body.max_tokens, 77);
      assert.equal(up.body.user, 'user-42');
      assert.equal(up.body.seed, 7);
      assert.equal('metadata' in up.body, false, 'metadata is tiergate routing input and must not reach the upstream');
      assert.notEqual(up.body.stream, true);
      assert.equal('stream_options' in up.body, false);

      const line = await decisionFor(mark);
      assert.equal(line.request_id, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'ok');
      assert.equal(line.simulated, false);
      assert.deepEqual(line.usage, { prompt_tokens: 21, completion_tokens: 4, total_tokens: 25 });
      assert.equal(line.cost_usd, (21 * PRICE.input_per_mtok + 4 * PRICE.output_per_mtok) / 1e6);
      assert.deepEqual(line.request_features, { task_type: 'lookup' });
    });

    test('a routed request with a matching rule goes to the tier the rule names', async () => {
      anthropic.behave(() => ({ kind: 'reply', text: 'hard answer' }));
      const mark = marker();
      const { data, response } = await client.chat.completions.create(body('chat', `Prove it ${mark}`, { metadata: { task_type: 'hard' } })).withResponse();
      assert.equal(data.model, 'claude-model');
      assert.equal(data.choices[0].message.content, 'hard answer');
      assert.equal(response.headers.get('x-tiergate-tier'), 'large');
      assert.equal(
        openai.requests.some((r) => JSON.stringify(r.body ?? null).includes(mark)),
        false,
        'the small tier was not called',
      );
    });

    test('streaming passes through, with usage when asked and usage always requested upstream', async () => {
      openai.behave(() => ({ kind: 'reply', content: 'streamed reply text', usage: { prompt_tokens: 13, completion_tokens: 5 } }));
      const withUsage = marker();
      const { data: stream, response } = await client.chat.completions
        .create(streamBody('oa-fast', `Tell me ${withUsage}`, { stream_options: { include_usage: true }, temperature: 0.1 }))
        .withResponse();
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      assert.equal(response.headers.get('x-tiergate-model'), 'oa-fast');
      let text = '';
      let finish: string | null = null;
      const usages: unknown[] = [];
      for await (const chunk of stream) {
        assert.equal(chunk.model, 'oa-fast');
        for (const choice of chunk.choices) {
          text += choice.delta.content ?? '';
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        if (chunk.usage) usages.push(chunk.usage);
      }
      assert.equal(text, 'streamed reply text');
      assert.equal(finish, 'stop');
      assert.deepEqual(usages, [{ prompt_tokens: 13, completion_tokens: 5, total_tokens: 18 }]);
      const up = upstreamRequestFor(withUsage);
      assert.equal(up.body.stream, true);
      assert.equal(up.body.model, 'fake-gpt');
      assert.equal(up.body.temperature, 0.1);
      assert.deepEqual(up.body.stream_options, { include_usage: true });

      // Without include_usage: the client gets no usage, but the upstream is still asked for it
      // and the decision line has the real numbers (not an estimate).
      const noUsage = marker();
      const plain = await client.chat.completions.create(streamBody('oa-fast', `Tell me ${noUsage}`));
      let plainText = '';
      for await (const chunk of plain) {
        assert.equal('usage' in chunk, false, 'no usage field at all without stream_options.include_usage (as OpenAI sends it)');
        plainText += chunk.choices[0]?.delta.content ?? '';
      }
      assert.equal(plainText, 'streamed reply text');
      assert.deepEqual(upstreamRequestFor(noUsage).body.stream_options, { include_usage: true });
      const line = await decisionFor(noUsage);
      assert.equal(line.status, 'ok');
      assert.equal(line.stream, true);
      assert.deepEqual(line.usage, { prompt_tokens: 13, completion_tokens: 5, total_tokens: 18 });
      assert.equal((line as { usage_estimated?: boolean }).usage_estimated, undefined);
      assert.equal(line.cost_usd, (13 * PRICE.input_per_mtok + 5 * PRICE.output_per_mtok) / 1e6);
    });
  });

  describe('anthropic provider → fake-anthropic (translated both ways)', () => {
    test('non-streaming: system prompt becomes `system`, content and finish_reason come back', async () => {
      anthropic.behave(() => ({ kind: 'reply', text: 'Bonjour from Claude', usage: { input_tokens: 30, output_tokens: 6 } }));
      const mark = marker();
      const seen = anthropic.requests.length;
      const { data, response } = await client.chat.completions
        .create({
          model: 'claude-model',
          messages: [
            { role: 'system', content: 'You are terse.' },
            { role: 'user', content: `Say hello ${mark}` },
          ],
          max_tokens: 64,
          stop: ['END'],
        })
        .withResponse();
      assert.equal(data.object, 'chat.completion');
      assert.equal(data.model, 'claude-model');
      assert.equal(data.choices[0].message.role, 'assistant');
      assert.equal(data.choices[0].message.content, 'Bonjour from Claude');
      assert.equal(data.choices[0].finish_reason, 'stop');
      assert.equal(data.usage?.prompt_tokens, 30);
      assert.equal(data.usage?.completion_tokens, 6);
      assert.equal(data.usage?.total_tokens, 36);
      assert.equal(response.headers.get('x-tiergate-model'), 'claude-model');
      assert.equal(response.headers.get('x-tiergate-tier'), 'large');

      assert.equal(anthropic.requests.length, seen + 1);
      const up = anthropic.requests[seen];
      assert.equal(up.path.split('?')[0], '/v1/messages');
      assert.equal(up.body.model, 'claude-fake-1');
      assert.equal(up.body.system, 'You are terse.');
      assert.equal(up.body.max_tokens, 64);
      assert.deepEqual(up.body.stop_sequences, ['END']);
      assert.equal(up.body.messages.length, 1);
      assert.equal(up.body.messages[0].role, 'user');
      assert.ok(JSON.stringify(up.body.messages[0].content).includes(mark));
      assert.equal(JSON.stringify(up.body.messages).includes('You are terse.'), false, 'the system prompt is not a message');
      assert.ok(up.body.stream !== true);

      const line = await decisionFor(mark);
      assert.equal(line.status, 'ok');
      assert.deepEqual(line.usage, data.usage);
      assert.equal(line.cost_usd, (30 * 3 + 6 * 15) / 1e6);
    });

    test('max_tokens stop reason maps to finish_reason length', async () => {
      anthropic.behave(() => ({ kind: 'reply', text: 'cut', stop_reason: 'max_tokens' }));
      const data = await client.chat.completions.create(body('claude-model', marker()));
      assert.equal(data.choices[0].finish_reason, 'length');
    });

    test('streaming end to end: text, finish_reason and usage', async () => {
      anthropic.behave(() => ({ kind: 'reply', text: 'one two three four', usage: { input_tokens: 12, output_tokens: 4 } }));
      const mark = marker();
      const seen = anthropic.requests.length;
      const { data: stream, response } = await client.chat.completions
        .create({
          model: 'claude-model',
          messages: [
            { role: 'system', content: 'Count.' },
            { role: 'user', content: `Count to four ${mark}` },
          ],
          stream: true,
          stream_options: { include_usage: true },
        })
        .withResponse();
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      let text = '';
      let finish: string | null = null;
      let chunks = 0;
      const usages: OpenAI.CompletionUsage[] = [];
      for await (const chunk of stream) {
        chunks++;
        assert.equal(chunk.object, 'chat.completion.chunk');
        assert.equal(chunk.model, 'claude-model');
        for (const choice of chunk.choices) {
          text += choice.delta.content ?? '';
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        if (chunk.usage) usages.push(chunk.usage);
      }
      assert.equal(text, 'one two three four');
      assert.ok(chunks > 3, `the text arrived in several chunks (${chunks})`);
      assert.equal(finish, 'stop');
      assert.equal(usages.length, 1);
      assert.equal(usages[0].prompt_tokens, 12);
      assert.equal(usages[0].completion_tokens, 4);
      const up = anthropic.requests[seen];
      assert.equal(up.body.stream, true);
      assert.equal(up.body.system, 'Count.');
      const line = await decisionFor(mark);
      assert.equal(line.status, 'ok');
      assert.equal(line.usage?.prompt_tokens, 12);
      assert.equal(line.usage?.completion_tokens, 4);
    });

    test('an Anthropic error status maps to the catalogue too (529 overloaded → 502)', async () => {
      anthropic.behave(() => ({ kind: 'status', status: 529 }));
      const err = await apiError(client.chat.completions.create(body('claude-model', marker())));
      assert.equal(err.status, 502);
      assert.equal(err.code, 'TG_ERR_UPSTREAM');
    });

    test('an Anthropic SSE error event mid-stream ends the client stream with an error', async () => {
      anthropic.behave(() => ({ kind: 'error-mid-stream' }));
      const mark = marker();
      const stream = await client.chat.completions.create(streamBody('claude-model', mark));
      let caught: unknown;
      try {
        for await (const _chunk of stream) {
          // drain
        }
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof APIError, `expected an APIError, got ${String(caught)}`);
      assert.match(String(caught.code), /^TG_ERR_UPSTREAM/);
      const line = await decisionFor(mark);
      assert.equal(line.status, 'error');
    });

    test('client abort reaches the Anthropic upstream as well', async () => {
      anthropic.behave(() => ({ kind: 'hang' }));
      const seen = anthropic.requests.length;
      const controller = new AbortController();
      const outcome = client.chat.completions.create(body('claude-model', marker()), { signal: controller.signal }).then(
        () => assert.fail('must not succeed'),
        (err: unknown) => err,
      );
      await until(() => anthropic.requests.length > seen, 'the request to reach fake-anthropic');
      controller.abort();
      assert.ok((await outcome) instanceof APIUserAbortError);
      await anthropic.waitForAborted(1);
    });
  });

  describe('after everything', () => {
    test('the gateway still serves a normal request and is ready', async () => {
      await gateway!.assertStillServes();
    });

    test('no promise rejection went unhandled during the file', async () => {
      // Let any late rejection from the aborted calls surface first.
      await rejections.assertNone();
    });
  });
});
