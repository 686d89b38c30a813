// The anthropic provider against a local server speaking Anthropic's wire format, through
// the real @anthropic-ai/sdk: request translation is asserted on what the server received,
// response translation on what the provider returned.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import anthropic, { fromAnthropicMessage, parseRetryAfter, toAnthropicRequest, toUpstreamError } from '../../plugins/providers/anthropic/index.ts';
import type { AnthropicOptions } from '../../plugins/providers/anthropic/index.ts';
import { testPluginContext, type LogLine } from '../support/plugin-context.ts';
import {
  isUpstreamError,
  type CallOptions,
  type ChatChunk,
  type ChatRequest,
  type ModelSpec,
  type PluginContext,
  type Provider,
  type UpstreamError,
} from '../../src/plugin-contract/plugin-api.ts';
import { startFakeAnthropic, type FakeAnthropic } from '../support/fake-anthropic.ts';

const API_KEY = 'sk-ant-test-0123456789';
const model: ModelSpec = { name: 'claude', provider: 'anthropic', upstream: 'claude-x', price: { input_per_mtok: 1, output_per_mtok: 5 }, timeout_ms: 5000 };

function makeContext(logs: LogLine[] = []): PluginContext {
  return testPluginContext({ at: 'providers.anthropic', logs });
}

function call(signal: AbortSignal = new AbortController().signal): CallOptions {
  return { model, signal };
}

function chat(overrides: Partial<ChatRequest> = {}): ChatRequest {
  return { model: 'claude-x', messages: [{ role: 'user', content: 'hello there, world' }], ...overrides };
}

async function collect(stream: AsyncIterable<ChatChunk>): Promise<ChatChunk[]> {
  const chunks: ChatChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

async function upstreamFailure(work: () => Promise<unknown>): Promise<UpstreamError> {
  try {
    await work();
  } catch (err) {
    assert.ok(isUpstreamError(err), `expected an UpstreamError, got ${String(err)}`);
    assert.ok(!err.message.includes(API_KEY), 'the api key leaked into an error message');
    return err;
  }
  assert.fail('expected the call to fail');
}

describe('anthropic provider', () => {
  let fake: FakeAnthropic;
  let provider: Provider;
  let logs: LogLine[];

  const create = (options: AnthropicOptions = {}, ctxLogs: LogLine[] = []) =>
    anthropic.create({ api_key: API_KEY, base_url: fake.baseURL, ...options }, makeContext(ctxLogs));
  const lastBody = () => fake.requests[fake.requests.length - 1].body;

  before(async () => {
    fake = await startFakeAnthropic();
  });
  after(async () => {
    await provider?.dispose();
    await fake.close();
  });
  beforeEach(async () => {
    fake.behave(() => ({ kind: 'reply' }));
    await provider?.dispose();
    logs = [];
    provider = await create({}, logs);
  });

  describe('request translation, as the server receives it', () => {
    it('hoists system and developer messages into system and merges consecutive same-role turns', async () => {
      await provider.complete(
        chat({
          messages: [
            { role: 'system', content: 'You are terse.' },
            { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
            { role: 'user', content: 'first' },
            { role: 'user', content: [{ type: 'text', text: 'second' }] },
            { role: 'assistant', content: 'one' },
            { role: 'assistant', content: 'two' },
            { role: 'system', content: 'Late system note.' },
            { role: 'user', content: 'third' },
          ],
        }),
        call(),
      );
      const body = lastBody();
      assert.equal(body.model, 'claude-x');
      assert.equal(body.system, 'You are terse.\n\nAnswer in French.\n\nLate system note.');
      assert.deepEqual(body.messages, [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'first' },
            { type: 'text', text: 'second' },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'one' },
            { type: 'text', text: 'two' },
          ],
        },
        { role: 'user', content: 'third' },
      ]);
      const request = fake.requests[fake.requests.length - 1];
      assert.equal(request.path, '/v1/messages');
      assert.equal(request.headers['authorization'], `Bearer ${API_KEY}`);
    });

    it('maps stop to stop_sequences and user to metadata.user_id', async () => {
      await provider.complete(chat({ stop: '\n\n', user: 'user-42' }), call());
      assert.deepEqual(lastBody().stop_sequences, ['\n\n']);
      assert.deepEqual(lastBody().metadata, { user_id: 'user-42' });

      await provider.complete(chat({ stop: ['END', 'STOP'] }), call());
      assert.deepEqual(lastBody().stop_sequences, ['END', 'STOP']);

      await provider.complete(chat({ stop: null }), call());
      assert.equal('stop_sequences' in lastBody(), false);
    });

    it('sends default_max_tokens unless the request sets max_tokens or max_completion_tokens', async () => {
      await provider.complete(chat(), call());
      assert.equal(lastBody().max_tokens, 1024);

      await provider.complete(chat({ max_tokens: 77 }), call());
      assert.equal(lastBody().max_tokens, 77);

      await provider.complete(chat({ max_tokens: 77, max_completion_tokens: 55 }), call());
      assert.equal(lastBody().max_tokens, 55);

      const custom = await create({ default_max_tokens: 300 });
      try {
        await custom.complete(chat(), call());
        assert.equal(lastBody().max_tokens, 300);
      } finally {
        await custom.dispose();
      }
    });

    it('drops temperature and top_p on the SDK API version (which refuses them), once warning', async () => {
      await provider.complete(chat({ temperature: 0.2, top_p: 0.9 }), call());
      await provider.complete(chat({ temperature: 0.2 }), call());
      const body = lastBody();
      assert.equal('temperature' in body, false);
      assert.equal('top_p' in body, false);
      assert.equal(fake.requests[fake.requests.length - 1].headers['anthropic-version'], '2026-10-21');
      assert.equal(logs.filter((l) => l.level === 'warn' && l.message.includes('temperature')).length, 1);
    });

    it('passes temperature and top_p when anthropic_version pins an earlier API version', async () => {
      const older = await create({ anthropic_version: '2023-06-01' });
      try {
        await older.complete(chat({ temperature: 0.2, top_p: 0.9 }), call());
        const request = fake.requests[fake.requests.length - 1];
        assert.equal(request.headers['anthropic-version'], '2023-06-01');
        assert.equal(request.body.temperature, 0.2);
        assert.equal(request.body.top_p, 0.9);
      } finally {
        await older.dispose();
      }
    });

    it('sends extra headers', async () => {
      const withHeaders = await create({ headers: { 'x-team': 'search' } });
      try {
        await withHeaders.complete(chat(), call());
        assert.equal(fake.requests[fake.requests.length - 1].headers['x-team'], 'search');
      } finally {
        await withHeaders.dispose();
      }
    });
  });

  describe('non-streaming replies', () => {
    it('translates content, ids and usage', async () => {
      fake.behave(() => ({ kind: 'reply', text: 'Bonjour.', usage: { input_tokens: 12, output_tokens: 3 } }));
      const before = Math.floor(Date.now() / 1000);
      const result = await provider.complete(chat(), call());
      assert.equal(result.object, 'chat.completion');
      assert.match(result.id, /^msg_fake_/);
      assert.equal(result.model, 'claude-x');
      assert.ok(result.created >= before && result.created <= Math.floor(Date.now() / 1000) + 1);
      assert.equal(result.choices.length, 1);
      assert.deepEqual(result.choices[0].message, { role: 'assistant', content: 'Bonjour.' });
      assert.equal(result.choices[0].finish_reason, 'stop');
      assert.deepEqual(result.usage, { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 });
    });

    it('echoes the last user message by default and joins text blocks', async () => {
      const echoed = await provider.complete(chat(), call());
      assert.equal(echoed.choices[0].message.content, 'echo: hello there, world');

      fake.behave(() => ({
        kind: 'reply',
        content: [
          { type: 'text', text: 'Hello, ' },
          { type: 'text', text: 'world.' },
        ],
      }));
      const joined = await provider.complete(chat(), call());
      assert.equal(joined.choices[0].message.content, 'Hello, world.');
    });

    for (const [stopReason, finishReason] of [
      ['end_turn', 'stop'],
      ['stop_sequence', 'stop'],
      ['max_tokens', 'length'],
      ['tool_use', 'tool_calls'],
    ] as const) {
      it(`maps stop_reason ${stopReason} to finish_reason ${finishReason}`, async () => {
        fake.behave(() => ({ kind: 'reply', text: 'x', stop_reason: stopReason, stop_sequence: stopReason === 'stop_sequence' ? 'END' : null }));
        const result = await provider.complete(chat(), call());
        assert.equal(result.choices[0].finish_reason, finishReason);
      });
    }
  });

  describe('streaming', () => {
    it('yields a role chunk, text pieces, the finish_reason and a final usage chunk', async () => {
      const text = 'The quick brown fox jumps over the lazy dog.';
      fake.behave(() => ({ kind: 'reply', text, usage: { input_tokens: 21, output_tokens: 11 } }));
      const chunks = await collect(provider.stream(chat({ stream: true }), call()));
      assert.equal(fake.requests[fake.requests.length - 1].body.stream, true);

      for (const chunk of chunks) {
        assert.equal(chunk.object, 'chat.completion.chunk');
        assert.equal(chunk.id, chunks[0].id);
        assert.equal(chunk.model, 'claude-x');
      }
      assert.equal(chunks[0].choices[0].delta.role, 'assistant');

      const pieces = chunks.flatMap((c) => c.choices.map((choice) => choice.delta.content ?? '')).filter((p) => p !== '');
      assert.ok(pieces.length > 1, 'the text should arrive in several pieces');
      assert.equal(pieces.join(''), text);

      const finishes = chunks.flatMap((c) => c.choices.map((choice) => choice.finish_reason)).filter((f) => f !== null);
      assert.deepEqual(finishes, ['stop']);

      const last = chunks[chunks.length - 1];
      assert.deepEqual(last.choices, []);
      assert.deepEqual(last.usage, { prompt_tokens: 21, completion_tokens: 11, total_tokens: 32 });
      assert.equal(chunks.filter((c) => c.usage).length, 1);
    });

    it('maps max_tokens to finish_reason length', async () => {
      fake.behave(() => ({ kind: 'reply', text: 'cut short', stop_reason: 'max_tokens' }));
      const chunks = await collect(provider.stream(chat({ stream: true }), call()));
      const finishes = chunks.flatMap((c) => c.choices.map((choice) => choice.finish_reason)).filter((f) => f !== null);
      assert.deepEqual(finishes, ['length']);
    });
  });

  describe('tool calls', () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather for a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      },
    ];
    const input = { city: 'Paris', units: 'metric' };

    it('round-trips: tools out, tool_use back as tool_calls, tool results out as tool_result', async () => {
      fake.behave(() => ({
        kind: 'reply',
        content: [
          { type: 'text', text: 'Checking.' },
          { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input },
        ],
      }));
      const first = await provider.complete(chat({ tools, tool_choice: 'required', parallel_tool_calls: false }), call());

      assert.deepEqual(lastBody().tools, [
        {
          name: 'get_weather',
          description: 'Weather for a city',
          input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      ]);
      assert.deepEqual(lastBody().tool_choice, { type: 'any', disable_parallel_tool_use: true });

      const choice = first.choices[0];
      assert.equal(choice.finish_reason, 'tool_calls');
      assert.equal(choice.message.content, 'Checking.');
      assert.equal(choice.message.tool_calls?.length, 1);
      const toolCall = choice.message.tool_calls![0];
      assert.equal(toolCall.id, 'toolu_01');
      assert.equal(toolCall.type, 'function');
      assert.equal(toolCall.function.name, 'get_weather');
      assert.deepEqual(JSON.parse(toolCall.function.arguments), input);

      fake.behave(() => ({ kind: 'reply', text: 'It is sunny in Paris.' }));
      const second = await provider.complete(
        chat({
          tools,
          messages: [
            { role: 'user', content: 'Weather in Paris?' },
            { role: 'assistant', content: choice.message.content, tool_calls: choice.message.tool_calls },
            { role: 'tool', tool_call_id: 'toolu_01', content: '{"temp_c":21}' },
            { role: 'user', content: 'Thanks. Short answer please.' },
          ],
        }),
        call(),
      );
      assert.deepEqual(lastBody().messages, [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Checking.' },
            { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_01', content: '{"temp_c":21}' },
            { type: 'text', text: 'Thanks. Short answer please.' },
          ],
        },
      ]);
      assert.equal(second.choices[0].message.content, 'It is sunny in Paris.');
      assert.equal(second.choices[0].finish_reason, 'stop');
    });

    it('streams tool calls as tool_calls deltas whose arguments add up to the input', async () => {
      fake.behave(() => ({ kind: 'reply', content: [{ type: 'tool_use', id: 'toolu_02', name: 'get_weather', input }] }));
      const chunks = await collect(provider.stream(chat({ tools, stream: true }), call()));
      type ToolDelta = { index: number; id?: string; function?: { name?: string; arguments?: string } };
      const deltas = chunks.flatMap((c) => c.choices.flatMap((choice) => (choice.delta.tool_calls ?? []) as ToolDelta[]));
      assert.ok(deltas.length > 1);
      assert.ok(deltas.every((d) => d.index === 0));
      assert.equal(deltas[0].id, 'toolu_02');
      assert.equal(deltas[0].function?.name, 'get_weather');
      assert.deepEqual(JSON.parse(deltas.map((d) => d.function?.arguments ?? '').join('')), input);
      const finishes = chunks.flatMap((c) => c.choices.map((choice) => choice.finish_reason)).filter((f) => f !== null);
      assert.deepEqual(finishes, ['tool_calls']);
    });
  });

  describe('failures', () => {
    it('429 with retry-after → http 429 with retryAfterMs, and no SDK retry', async () => {
      fake.behave(() => ({ kind: 'status', status: 429, headers: { 'retry-after': '7' } }));
      const sent = fake.requests.length;
      const err = await upstreamFailure(() => provider.complete(chat(), call()));
      assert.equal(err.failure, 'http');
      assert.equal(err.status, 429);
      assert.equal(err.retryAfterMs, 7000);
      assert.match(err.message, /rate_limit_error/);
      assert.equal(fake.requests.length, sent + 1, 'the SDK must not retry: retries are the host’s job');

      fake.behave(() => ({ kind: 'status', status: 429, headers: { 'retry-after-ms': '1500' } }));
      const streamed = await upstreamFailure(() => collect(provider.stream(chat({ stream: true }), call())));
      assert.equal(streamed.failure, 'http');
      assert.equal(streamed.status, 429);
      assert.equal(streamed.retryAfterMs, 1500);
    });

    it('500 → http 500, without a retry', async () => {
      fake.behave(() => ({ kind: 'status', status: 500 }));
      const sent = fake.requests.length;
      const err = await upstreamFailure(() => provider.complete(chat(), call()));
      assert.equal(err.failure, 'http');
      assert.equal(err.status, 500);
      assert.equal(err.retryAfterMs, undefined);
      assert.equal(fake.requests.length, sent + 1);

      const streamed = await upstreamFailure(() => collect(provider.stream(chat({ stream: true }), call())));
      assert.equal(streamed.failure, 'http');
      assert.equal(streamed.status, 500);
    });

    it('an error event in the middle of a stream → http with the status of its type', async () => {
      fake.behave(() => ({ kind: 'error-mid-stream', errorType: 'overloaded_error' }));
      const seen: ChatChunk[] = [];
      const err = await upstreamFailure(async () => {
        for await (const chunk of provider.stream(chat({ stream: true }), call())) seen.push(chunk);
      });
      assert.ok(seen.length > 0, 'chunks before the error are delivered');
      assert.equal(err.failure, 'http');
      assert.equal(err.status, 529);
    });

    it('hang then abort → aborted, and the server sees the client go away', async () => {
      fake.behave(() => ({ kind: 'hang' }));
      const aborted = fake.requests.filter((r) => r.aborted).length;

      const controller = new AbortController();
      const pending = upstreamFailure(() => provider.complete(chat(), call(controller.signal)));
      setTimeout(() => controller.abort(), 50);
      assert.equal((await pending).failure, 'aborted');
      await fake.waitForAborted(aborted + 1);

      const streamController = new AbortController();
      const streaming = upstreamFailure(() => collect(provider.stream(chat({ stream: true }), call(streamController.signal))));
      setTimeout(() => streamController.abort(), 50);
      assert.equal((await streaming).failure, 'aborted');
      await fake.waitForAborted(aborted + 2);
    });

    it('an abort in the middle of a stream → aborted', async () => {
      fake.behave(() => ({ kind: 'reply', text: 'one two three four five six seven eight nine ten' }));
      const controller = new AbortController();
      let received = 0;
      const err = await upstreamFailure(async () => {
        for await (const chunk of provider.stream(chat({ stream: true }), call(controller.signal))) {
          received++;
          if (chunk.choices[0]?.delta.content) controller.abort();
        }
      });
      assert.equal(err.failure, 'aborted');
      assert.ok(received >= 2);
    });

    it('an already aborted signal → aborted, without a request', async () => {
      const sent = fake.requests.length;
      const err = await upstreamFailure(() => provider.complete(chat(), call(AbortSignal.abort())));
      assert.equal(err.failure, 'aborted');
      assert.equal(fake.requests.length, sent);
    });

    it('a reset connection → connection', async () => {
      fake.behave(() => ({ kind: 'reset' }));
      assert.equal((await upstreamFailure(() => provider.complete(chat(), call()))).failure, 'connection');
      assert.equal((await upstreamFailure(() => collect(provider.stream(chat({ stream: true }), call())))).failure, 'connection');
    });

    it('a connection reset in the middle of the reply → connection', async () => {
      fake.behave(() => ({ kind: 'reset-mid-stream' }));
      assert.equal((await upstreamFailure(() => provider.complete(chat(), call()))).failure, 'connection');
      const seen: ChatChunk[] = [];
      const err = await upstreamFailure(async () => {
        for await (const chunk of provider.stream(chat({ stream: true }), call())) seen.push(chunk);
      });
      assert.equal(err.failure, 'connection');
      assert.ok(seen.length > 0);
    });

    it('a refused connection → connection', async () => {
      const closed = await startFakeAnthropic();
      const baseURL = closed.baseURL;
      await closed.close();
      const orphan = await anthropic.create({ api_key: API_KEY, base_url: baseURL }, makeContext());
      try {
        assert.equal((await upstreamFailure(() => orphan.complete(chat(), call()))).failure, 'connection');
      } finally {
        await orphan.dispose();
      }
    });
  });

  describe('lifecycle', () => {
    it('dispose is idempotent, aborts calls in flight and refuses new ones', async () => {
      const own = await create();
      fake.behave(() => ({ kind: 'hang' }));
      const pending = upstreamFailure(() => own.complete(chat(), call()));
      await new Promise((resolve) => setTimeout(resolve, 50));
      await own.dispose();
      await own.dispose();
      assert.equal((await pending).failure, 'aborted');
      assert.equal((await upstreamFailure(() => own.complete(chat(), call()))).failure, 'aborted');
    });

    it('meta.example creates with no network, no key and no environment', async () => {
      const sent = fake.requests.length;
      const ctxLogs: LogLine[] = [];
      const example = await anthropic.create(anthropic.meta.example, makeContext(ctxLogs));
      await example.dispose();
      await example.dispose();
      assert.equal(fake.requests.length, sent);
      assert.equal(anthropic.meta.id, 'anthropic');
      assert.equal(anthropic.meta.kind, 'provider');
      assert.equal(anthropic.meta.options.additionalProperties, false);
    });
  });
});

describe('anthropic translation functions', () => {
  it('toAnthropicRequest maps tool_choice and keeps the model', () => {
    const body = toAnthropicRequest(
      {
        model: 'claude-y',
        messages: [{ role: 'user', content: 'hi' }],
        tools: [{ type: 'function', function: { name: 'f', parameters: { properties: {} } } }],
        tool_choice: { type: 'function', function: { name: 'f' } },
      },
      { defaultMaxTokens: 10, samplingParameters: false },
    );
    assert.equal(body.model, 'claude-y');
    assert.equal(body.max_tokens, 10);
    assert.deepEqual(body.tools, [{ name: 'f', input_schema: { type: 'object', properties: {} } }]);
    assert.deepEqual(body.tool_choice, { type: 'tool', name: 'f' });
  });

  it('fromAnthropicMessage refuses a reply that is not a message', () => {
    for (const reply of ['<html>bad gateway</html>', null, { type: 'message' }, []]) {
      assert.throws(
        () => fromAnthropicMessage(reply),
        (err: unknown) => isUpstreamError(err) && err.failure === 'reply',
      );
    }
  });

  it('fromAnthropicMessage counts cached input tokens as prompt tokens', () => {
    const result = fromAnthropicMessage(
      {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-y',
        content: [{ type: 'text', text: 'ok' }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 10, output_tokens: 2, cache_creation_input_tokens: 5, cache_read_input_tokens: 100 },
      },
      1_700_000_000_500,
    );
    assert.equal(result.created, 1_700_000_000);
    assert.deepEqual(result.usage, {
      prompt_tokens: 115,
      completion_tokens: 2,
      total_tokens: 117,
      prompt_tokens_details: { cached_tokens: 100, cache_write_tokens: 5 },
    });
  });

  it('parseRetryAfter reads milliseconds, seconds and HTTP dates', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(parseRetryAfter(new Headers({ 'retry-after-ms': '250' }), now), 250);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': '2' }), now), 2000);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:30 GMT' }), now), 30_000);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': 'soon' }), now), undefined);
    assert.equal(parseRetryAfter(new Headers(), now), undefined);
  });

  it('validate reports a bad base_url and conflicting API versions', () => {
    const validate = anthropic.validate;
    assert.deepEqual(validate({ base_url: 'http://127.0.0.1:9' }), []);
    assert.deepEqual(
      validate({ base_url: 'http://[bad' }).map((i) => i.path),
      [['base_url']],
    );
    assert.deepEqual(
      validate({ anthropic_version: '2023-06-01', headers: { 'Anthropic-Version': '2026-10-21' } }).map((i) => i.path),
      [['headers']],
    );
  });

  it('toUpstreamError scrubs the api key', () => {
    const err = toUpstreamError(new Error(`bad key ${API_KEY}`), undefined, API_KEY);
    assert.ok(!err.message.includes(API_KEY));
  });
});
