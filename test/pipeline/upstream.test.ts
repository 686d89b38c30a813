// The gateway in front of local upstreams, through the real provider plugins: the
// openai SDK talks to tiergate over HTTP, tiergate talks to fake-openai / fake-anthropic
// over HTTP. Covers pass-through of request fields, failures mapped to catalogue codes,
// deadlines, cancellation reaching the upstream, and Anthropic translation end to end.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { APIError, APIUserAbortError } from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { apiError } from '../support/http.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { startFakeAnthropic, type FakeAnthropic } from '../support/fake-anthropic.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);

const TIMEOUT_MS = 400;
const PRICE = { input_per_mtok: 1.25, output_per_mtok: 5 };

function policy(openaiBaseURL: string, anthropicBaseURL: string): string {
  return `version: 1
providers:
  up: { plugin: openai, base_url: "${openaiBaseURL}", api_key: test-key }
  claude: { plugin: anthropic, base_url: "${anthropicBaseURL}", api_key: test-key }
models:
  oa-fast: { provider: up, upstream: fake-gpt, price: { input_per_mtok: ${PRICE.input_per_mtok}, output_per_mtok: ${PRICE.output_per_mtok} }, timeout_ms: ${TIMEOUT_MS} }
  oa-patient: { provider: up, upstream: fake-gpt-patient, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 10000 }
  claude-model: { provider: claude, upstream: claude-fake-1, price: { input_per_mtok: 3, output_per_mtok: 15 }, timeout_ms: 5000 }
tiers:
  - { name: small, models: [oa-fast] }
  - { name: large, models: [claude-model] }
features:
  task_type: metadata.task_type
routes:
  chat:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'hard'", tier: large, reason: hard }
    default: small
analytics:
  decision_log: { file: decisions.jsonl, log_prompts: true }
`;
}

let markers = 0;
/** A string unique to one test, to find its request upstream and its decision line. */
function marker(): string {
  return `mk-${process.pid}-${++markers}-${Math.random().toString(36).slice(2, 8)}`;
}

function body(model: string, content: string, extra: Record<string, unknown> = {}): ChatCompletionCreateParamsNonStreaming {
  return { model, messages: [{ role: 'user', content }], ...extra } as ChatCompletionCreateParamsNonStreaming;
}

function streamBody(model: string, content: string, extra: Record<string, unknown> = {}): ChatCompletionCreateParamsStreaming {
  return { model, messages: [{ role: 'user', content }], stream: true, ...extra } as ChatCompletionCreateParamsStreaming;
}


async function until(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('gateway in front of real provider plugins', () => {
  let openai: FakeOpenAI;
  let anthropic: FakeAnthropic;
  let tg: TestGateway;
  let client: OpenAI;

  before(async () => {
    openai = await startFakeOpenAI();
    anthropic = await startFakeAnthropic();
    tg = await startTestGateway(policy(openai.baseURL, anthropic.baseURL));
    client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'client-key', maxRetries: 0, timeout: 10_000 });
  });

  after(async () => {
    await tg?.close();
    await openai?.close();
    await anthropic?.close();
  });

  /** The decision line whose logged prompt contains `mark` (log_prompts is on in this policy). */
  async function decisionFor(mark: string): Promise<DecisionRecord> {
    let found: DecisionRecord | undefined;
    await until(() => {
      found = tg.decisions().find((d) => JSON.stringify(d.prompt ?? null).includes(mark));
      return found !== undefined;
    }, `the decision line of ${mark}`);
    return found as DecisionRecord;
  }

  function upstreamRequestFor(mark: string) {
    const found = openai.requests.filter((r) => JSON.stringify(r.body ?? null).includes(mark));
    assert.equal(found.length, 1, `exactly one upstream request carries ${mark}`);
    return found[0];
  }

  describe('openai provider → fake-openai', () => {
    test('request fields reach the upstream unchanged; metadata does not; the upstream model is the policy upstream name', async () => {
      openai.behave(() => ({ kind: 'reply', content: 'fine', usage: { prompt_tokens: 21, completion_tokens: 4 } }));
      const mark = marker();
      const tools = [
        {
          type: 'function',
          function: { name: 'lookup_order', description: 'Find an order', parameters: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] } },
        },
      ];
      const responseFormat = {
        type: 'json_schema',
        json_schema: { name: 'answer', strict: true, schema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false } },
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
      assert.equal(openai.requests.some((r) => JSON.stringify(r.body ?? null).includes(mark)), false, 'the small tier was not called');
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

  describe('upstream failures become catalogue errors', () => {
    test('upstream 500 → 502 TG_ERR_UPSTREAM', async () => {
      openai.behave(() => ({ kind: 'status', status: 500 }));
      const mark = marker();
      const err = await apiError(client.chat.completions.create(body('oa-fast', mark)));
      assert.equal(err.status, 502);
      assert.equal(err.code, 'TG_ERR_UPSTREAM');
      assert.equal(err.type, 'api_error');
      assert.ok(!err.message.includes('test-key'), 'the upstream key never leaks');
      const line = await decisionFor(mark);
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM');
      assert.equal(line.selected_model, 'oa-fast');
    });

    test('upstream 429 with retry-after → 429 TG_ERR_UPSTREAM_RATE_LIMITED with retry-after', async () => {
      openai.behave(() => ({ kind: 'status', status: 429, headers: { 'retry-after': '2' } }));
      const err = await apiError(client.chat.completions.create(body('oa-fast', marker())));
      assert.ok(err instanceof OpenAI.RateLimitError);
      assert.equal(err.status, 429);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_RATE_LIMITED');
      assert.equal(err.type, 'rate_limit_error');
      assert.equal(err.headers?.get('retry-after'), '2');
    });

    test('upstream 400 → 400 TG_ERR_UPSTREAM_REJECTED (the client can fix it)', async () => {
      openai.behave(() => ({ kind: 'status', status: 400 }));
      const err = await apiError(client.chat.completions.create(body('oa-fast', marker())));
      assert.equal(err.status, 400);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_REJECTED');
    });

    test('an upstream that hangs past timeout_ms → 504 TG_ERR_UPSTREAM_TIMEOUT, and the upstream call is aborted', async () => {
      openai.behave(() => ({ kind: 'hang' }));
      const aborted = openai.abortedCount();
      const mark = marker();
      const started = performance.now();
      const err = await apiError(client.chat.completions.create(body('oa-fast', mark)));
      const elapsed = performance.now() - started;
      assert.equal(err.status, 504);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_TIMEOUT');
      assert.equal(err.type, 'timeout_error');
      assert.ok(elapsed >= TIMEOUT_MS - 50, `the deadline was honoured, not cut short (${elapsed} ms)`);
      assert.ok(elapsed < 3000, `bounded time (${elapsed} ms)`);
      await openai.waitForAborted(aborted + 1);
      assert.equal(upstreamRequestFor(mark).aborted, true);
      const line = await decisionFor(mark);
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM_TIMEOUT');
    });

    test('a streaming request whose upstream hangs before the first chunk → a clean 504 JSON error', async () => {
      openai.behave(() => ({ kind: 'hang' }));
      const aborted = openai.abortedCount();
      const started = performance.now();
      const err = await apiError(client.chat.completions.create(streamBody('oa-fast', marker())));
      assert.ok(performance.now() - started < 3000);
      assert.equal(err.status, 504);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_TIMEOUT');
      await openai.waitForAborted(aborted + 1);
    });

    test('a stream that stalls between chunks longer than timeout_ms ends with a timeout error event', async () => {
      openai.behave(() => ({ kind: 'reply', content: 'one two three four five six', chunkDelayMs: 1500 }));
      const aborted = openai.abortedCount();
      const mark = marker();
      const started = performance.now();
      const stream = await client.chat.completions.create(streamBody('oa-fast', mark));
      let caught: unknown;
      try {
        for await (const _chunk of stream) {
          // drain
        }
      } catch (err) {
        caught = err;
      }
      assert.ok(performance.now() - started < 3000);
      assert.ok(caught instanceof APIError, `the stream ends with an error, got ${String(caught)}`);
      assert.equal(caught.code, 'TG_ERR_UPSTREAM_TIMEOUT');
      await openai.waitForAborted(aborted + 1);
      const line = await decisionFor(mark);
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM_TIMEOUT');
    });

    test('a connection reset before any response → 502 TG_ERR_UPSTREAM', async () => {
      openai.behave(() => ({ kind: 'reset' }));
      const err = await apiError(client.chat.completions.create(body('oa-fast', marker())));
      assert.equal(err.status, 502);
      assert.equal(err.code, 'TG_ERR_UPSTREAM');
      const streamed = await apiError(client.chat.completions.create(streamBody('oa-fast', marker())));
      assert.equal(streamed.status, 502);
      assert.equal(streamed.code, 'TG_ERR_UPSTREAM');
    });

    test('a reset halfway through a JSON body → 502', async () => {
      openai.behave(() => ({ kind: 'reset-mid-stream' }));
      const err = await apiError(client.chat.completions.create(body('oa-fast', marker())));
      assert.equal(err.status, 502);
      assert.ok(err.code === 'TG_ERR_UPSTREAM' || err.code === 'TG_ERR_UPSTREAM_REPLY', String(err.code));
    });

    test('a malformed reply → 502 TG_ERR_UPSTREAM_REPLY', async () => {
      openai.behave(() => ({ kind: 'malformed' }));
      const mark = marker();
      const err = await apiError(client.chat.completions.create(body('oa-fast', mark)));
      assert.equal(err.status, 502);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_REPLY');
      const line = await decisionFor(mark);
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM_REPLY');
    });

    test('a malformed SSE line mid-stream ends the stream with a TG_ERR_UPSTREAM_REPLY error event', async () => {
      openai.behave(() => ({ kind: 'malformed' }));
      const stream = await client.chat.completions.create(streamBody('oa-fast', marker()));
      let caught: unknown;
      try {
        for await (const _chunk of stream) {
          // drain
        }
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof APIError, `expected an APIError, got ${String(caught)}`);
      assert.equal(caught.code, 'TG_ERR_UPSTREAM_REPLY');
    });

    test('a stream reset mid-stream → the client sees the partial text, then an error; the decision says error', async () => {
      openai.behave(() => ({ kind: 'reset-mid-stream' }));
      const mark = marker();
      const { data: stream, response } = await client.chat.completions.create(streamBody('oa-fast', mark)).withResponse();
      assert.equal(response.status, 200, 'the stream had started');
      let text = '';
      let caught: unknown;
      try {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      } catch (err) {
        caught = err;
      }
      assert.equal(text, 'partial ');
      assert.ok(caught instanceof APIError, `the stream must end with an error, got ${String(caught)}`);
      assert.equal(caught.code, 'TG_ERR_UPSTREAM');
      const line = await decisionFor(mark);
      assert.equal(line.request_id, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM');
      assert.equal(line.stream, true);
    });

    test('the raw SSE of a broken stream ends with an OpenAI-shaped error event and no [DONE]', async () => {
      openai.behave(() => ({ kind: 'reset-mid-stream' }));
      const res = await fetch(`${tg.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(streamBody('oa-fast', marker())),
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      const events = text.split('\n\n').filter(Boolean);
      const last = JSON.parse(events[events.length - 1].replace(/^data: /, ''));
      assert.equal(last.error.code, 'TG_ERR_UPSTREAM');
      assert.equal(typeof last.error.message, 'string');
      assert.equal(text.includes('[DONE]'), false);
    });
  });

  describe('cancellation reaches the upstream', () => {
    async function abortWhileUpstreamHangs(stream: boolean): Promise<void> {
      openai.behave(() => ({ kind: 'hang' }));
      const aborted = openai.abortedCount();
      const mark = marker();
      const seen = openai.requests.length;
      const controller = new AbortController();
      const pending = stream
        ? client.chat.completions.create(streamBody('oa-patient', mark), { signal: controller.signal })
        : client.chat.completions.create(body('oa-patient', mark), { signal: controller.signal });
      const outcome = pending.then(
        () => assert.fail('the aborted request must not succeed'),
        (err: unknown) => err,
      );
      await until(() => openai.requests.length > seen, 'the request to reach the upstream');
      controller.abort();
      const err = await outcome;
      assert.ok(err instanceof APIUserAbortError, `the SDK reports the abort, got ${String(err)}`);
      await openai.waitForAborted(aborted + 1);
      assert.equal(upstreamRequestFor(mark).aborted, true);
      const line = await decisionFor(mark);
      assert.equal(line.status, 'client_closed');
      assert.equal(line.error_code, undefined);
      assert.equal(line.stream, stream);
    }

    test('non-streaming: the client aborts, the gateway cancels the upstream call', async () => {
      await abortWhileUpstreamHangs(false);
    });

    test('streaming, before the first chunk: the client aborts, the gateway cancels the upstream call', async () => {
      await abortWhileUpstreamHangs(true);
    });

    test('streaming, mid-stream: the client stops reading, the gateway cancels the upstream stream', async () => {
      openai.behave(() => ({ kind: 'reply', content: 'a slow answer in several parts', chunkDelayMs: 5000 }));
      const aborted = openai.abortedCount();
      const mark = marker();
      const controller = new AbortController();
      const stream = await client.chat.completions.create(streamBody('oa-patient', mark), { signal: controller.signal });
      let chunks = 0;
      let caught: unknown;
      try {
        for await (const _chunk of stream) {
          chunks++;
          controller.abort();
        }
      } catch (err) {
        caught = err;
      }
      assert.equal(chunks, 1, 'one chunk arrived before the abort');
      assert.ok(caught === undefined || caught instanceof APIUserAbortError, `unexpected ${String(caught)}`);
      await openai.waitForAborted(aborted + 1);
      assert.equal(upstreamRequestFor(mark).aborted, true);
      const line = await decisionFor(mark);
      assert.equal(line.status, 'client_closed');
      assert.equal(line.stream, true);
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
      openai.behave(() => ({ kind: 'reply' }));
      const mark = marker();
      const data = await client.chat.completions.create(body('chat', `ping ${mark}`));
      assert.equal(data.choices[0].message.content, `echo: ping ${mark}`);
      const ready = await fetch(`${tg.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(tg.gateway.manager.runtime.inflightRequests, 0, 'no request is left hanging in the gateway');
    });

    test('no promise rejection went unhandled during the file', async () => {
      // Let any late rejection from the aborted calls surface first.
      await new Promise((resolve) => setTimeout(resolve, 50));
      process.off('unhandledRejection', onUnhandled);
      assert.deepEqual(unhandled.map(String), []);
    });
  });
});
