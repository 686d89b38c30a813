import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import openaiSdkPlugin from '../../plugins/providers/openai/index.ts';
import openaiCompatiblePlugin from '../../plugins/providers/openai_compatible/index.ts';
import {
  type ProviderModule,
  type CallOptions,
  type ChatChunk,
  type ChatRequest,
  type ModelSpec,
  type Provider,
  type UpstreamError,
} from '../../src/plugin-contract/plugin-api.ts';
import { collect, testPluginContext, upstreamFailure as expectUpstreamFailure, type LogLine } from '../support/plugin-context.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';

const API_KEY = 'sk-test-secret-key-123';

const model: ModelSpec = { name: 'm', provider: 'openai', upstream: 'gpt-x', price: { input_per_mtok: 1, output_per_mtok: 2 }, timeout_ms: 5000 };

const logged: LogLine[] = [];
const ctx = testPluginContext({ at: 'providers.openai', logs: logged });

function request(extra: Partial<ChatRequest> = {}): ChatRequest {
  return { model: 'gpt-x', messages: [{ role: 'user', content: 'hello there' }], ...extra };
}

function call(signal: AbortSignal = AbortSignal.timeout(5000)): CallOptions {
  return { model, signal };
}

/** An UpstreamError of this kind, whose message never carries the API key. */
async function upstreamFailure(promise: Promise<unknown>, failure: UpstreamError['failure']): Promise<UpstreamError> {
  const caught = await expectUpstreamFailure(promise, failure);
  assert.ok(!caught.message.includes(API_KEY), 'the message must not include the API key');
  return caught;
}

// Both providers of OpenAI's wire format go through the same cases: `openai` through the
// official SDK, `openai_compatible` over node:http. A policy can move a model from one to
// the other without its behaviour changing.
const WIRE_PROVIDERS = [
  // The SDK insists on a key, so a keyless instance sends a placeholder.
  {
    id: 'openai',
    plugin: openaiSdkPlugin as ProviderModule<{ api_key?: string; base_url?: string; organization?: string; headers?: Record<string, string> }>,
    keylessAuthorization: 'Bearer not-needed' as string | undefined,
  },
  // Without a key nothing is sent: a keyless local server gets no Authorization at all.
  {
    id: 'openai_compatible',
    plugin: openaiCompatiblePlugin as ProviderModule<{ api_key?: string; base_url?: string; organization?: string; headers?: Record<string, string> }>,
    keylessAuthorization: undefined,
  },
];

for (const { id, plugin: openaiPlugin, keylessAuthorization } of WIRE_PROVIDERS)
  describe(`${id} provider`, () => {
    let fake: FakeOpenAI;
    let provider: Provider;

    before(async () => {
      fake = await startFakeOpenAI();
      provider = await openaiPlugin.create({ api_key: API_KEY, base_url: fake.baseURL }, ctx);
    });
    after(async () => {
      await provider?.dispose();
      await fake?.close();
    });
    beforeEach(() => {
      fake.behave(() => ({ kind: 'reply' }));
      fake.requests.length = 0;
    });

    test('the example options create with no network', async () => {
      const instance = await openaiPlugin.create(openaiPlugin.meta.example, ctx);
      await instance.dispose();
    });

    test('complete returns a chat completion with usage', async () => {
      fake.behave(() => ({ kind: 'reply', content: 'hi!', usage: { prompt_tokens: 7, completion_tokens: 3 } }));
      const result = await provider.complete(request(), call());
      assert.equal(result.object, 'chat.completion');
      assert.equal(result.model, 'gpt-x');
      assert.equal(result.choices.length, 1);
      assert.deepEqual(result.choices[0].message.content, 'hi!');
      assert.equal(result.choices[0].message.role, 'assistant');
      assert.equal(result.choices[0].finish_reason, 'stop');
      assert.deepEqual(result.usage, { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });

      const sent = fake.requests[0];
      assert.equal(sent.method, 'POST');
      assert.equal(sent.path, '/v1/chat/completions');
      assert.equal(sent.headers.authorization, `Bearer ${API_KEY}`);
      assert.equal(sent.body.stream, false);
      assert.equal('stream_options' in sent.body, false);
    });

    test('the default fake reply echoes the last user message', async () => {
      const result = await provider.complete(request(), call());
      assert.equal(result.choices[0].message.content, 'echo: hello there');
      assert.ok((result.usage?.prompt_tokens ?? 0) > 0);
    });

    test('request fields pass through unchanged and the upstream model name is sent', async () => {
      const tools = [
        { type: 'function', function: { name: 'lookup', description: 'Look up', parameters: { type: 'object', properties: { q: { type: 'string' } } } } },
      ];
      const response_format = { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } };
      const messages: ChatRequest['messages'] = [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'hello' }] },
      ];
      await provider.complete(
        { model: 'upstream-name-1', messages, tools, response_format, temperature: 0.2, logprobs: true, seed: 42, custom_field: { a: 1 } },
        call(),
      );
      const body = fake.requests[0].body;
      assert.equal(body.model, 'upstream-name-1');
      assert.deepEqual(body.messages, messages);
      assert.deepEqual(body.tools, tools);
      assert.deepEqual(body.response_format, response_format);
      assert.equal(body.temperature, 0.2);
      assert.equal(body.logprobs, true);
      assert.equal(body.seed, 42);
      assert.deepEqual(body.custom_field, { a: 1 });
    });

    test('stream yields chunks in order and ends with usage', async () => {
      fake.behave(() => ({ kind: 'reply', content: 'streamed answer', usage: { prompt_tokens: 5, completion_tokens: 2 } }));
      const chunks = await collect(provider.stream(request({ stream_options: { include_obfuscation: false } }), call()));
      assert.ok(chunks.length >= 4, `got ${chunks.length} chunks`);
      for (const chunk of chunks) {
        assert.equal(chunk.object, 'chat.completion.chunk');
        assert.equal(chunk.model, 'gpt-x');
      }
      assert.equal(chunks[0].choices[0].delta.role, 'assistant');
      const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
      assert.equal(text, 'streamed answer');
      assert.ok(chunks.some((c) => c.choices[0]?.finish_reason === 'stop'));
      const last = chunks.at(-1)!;
      assert.deepEqual(last.choices, []);
      assert.deepEqual(last.usage, { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 });

      const body = fake.requests[0].body;
      assert.equal(body.stream, true);
      assert.deepEqual(body.stream_options, { include_obfuscation: false, include_usage: true });
    });

    test('HTTP 500 becomes failure "http" with the status', async () => {
      fake.behave(() => ({ kind: 'status', status: 500 }));
      const err = await upstreamFailure(provider.complete(request(), call()), 'http');
      assert.equal(err.status, 500);
      assert.equal(err.retryAfterMs, undefined);
      assert.match(err.message, /500/);
      assert.equal(fake.requests.length, 1, 'the SDK must not retry');
    });

    test('HTTP 500 on a stream request also becomes failure "http"', async () => {
      fake.behave(() => ({ kind: 'status', status: 503 }));
      const err = await upstreamFailure(collect(provider.stream(request(), call())), 'http');
      assert.equal(err.status, 503);
    });

    test('429 with retry-after carries retryAfterMs', async () => {
      fake.behave(() => ({ kind: 'status', status: 429, headers: { 'retry-after': '2' } }));
      const err = await upstreamFailure(provider.complete(request(), call()), 'http');
      assert.equal(err.status, 429);
      assert.equal(err.retryAfterMs, 2000);
      assert.equal(fake.requests.length, 1, 'the SDK must not retry');
    });

    test('retry-after-ms wins over retry-after', async () => {
      fake.behave(() => ({ kind: 'status', status: 429, headers: { 'retry-after-ms': '250', 'retry-after': '2' } }));
      const err = await upstreamFailure(provider.complete(request(), call()), 'http');
      assert.equal(err.retryAfterMs, 250);
    });

    test('an upstream error message that echoes the key is redacted', async () => {
      fake.behave(() => ({
        kind: 'status',
        status: 401,
        body: { error: { message: `Incorrect API key provided: ${API_KEY}`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } },
      }));
      const err = await upstreamFailure(provider.complete(request(), call()), 'http');
      assert.equal(err.status, 401);
      assert.match(err.message, /Incorrect API key provided: \[redacted\]/);
    });

    test('aborting a hanging call gives "aborted" and the upstream sees the disconnect', async () => {
      fake.behave(() => ({ kind: 'hang' }));
      const before = fake.abortedCount();
      const controller = new AbortController();
      const pending = provider.complete(request(), call(controller.signal));
      while (fake.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      controller.abort();
      await upstreamFailure(pending, 'aborted');
      await fake.waitForAborted(before + 1);
      assert.equal(fake.requests[0].aborted, true);
    });

    test('aborting a stream midway gives "aborted" and the upstream sees the disconnect', async () => {
      fake.behave(() => ({ kind: 'reply', content: 'a fairly long answer', chunkDelayMs: 50 }));
      const before = fake.abortedCount();
      const controller = new AbortController();
      const seen: ChatChunk[] = [];
      const consume = async () => {
        for await (const chunk of provider.stream(request(), call(controller.signal))) {
          seen.push(chunk);
          if (seen.length === 2) controller.abort();
        }
      };
      await upstreamFailure(consume(), 'aborted');
      assert.equal(seen.length, 2);
      await fake.waitForAborted(before + 1);
    });

    test('calls sharing one long-lived signal leave no listeners on it', async () => {
      const controller = new AbortController();
      const signal = controller.signal;
      let listeners = 0;
      const add = signal.addEventListener.bind(signal);
      const remove = signal.removeEventListener.bind(signal);
      signal.addEventListener = (...args: Parameters<AbortSignal['addEventListener']>) => {
        listeners++;
        add(...args);
      };
      signal.removeEventListener = (...args: Parameters<AbortSignal['removeEventListener']>) => {
        listeners--;
        remove(...args);
      };
      for (let i = 0; i < 3; i++) {
        await provider.complete(request(), call(signal));
        await collect(provider.stream(request(), call(signal)));
      }
      fake.behave(() => ({ kind: 'status', status: 500 }));
      await upstreamFailure(provider.complete(request(), call(signal)), 'http');
      await upstreamFailure(collect(provider.stream(request(), call(signal))), 'http');
      assert.equal(listeners, 0);
    });

    test('a consumer that stops reading a stream cancels the upstream request', async () => {
      fake.behave(() => ({ kind: 'reply', content: 'a fairly long answer', chunkDelayMs: 50 }));
      const before = fake.abortedCount();
      for await (const _chunk of provider.stream(request(), call())) break;
      await fake.waitForAborted(before + 1);
    });

    test('a socket reset before the response becomes failure "connection"', async () => {
      fake.behave(() => ({ kind: 'reset' }));
      const err = await upstreamFailure(provider.complete(request(), call()), 'connection');
      assert.ok(err.message.includes('127.0.0.1'), err.message);
      await upstreamFailure(collect(provider.stream(request(), call())), 'connection');
    });

    test('a refused connection becomes failure "connection"', async () => {
      const closed = await startFakeOpenAI();
      await closed.close();
      const instance = await openaiPlugin.create({ base_url: closed.baseURL }, ctx);
      try {
        await upstreamFailure(instance.complete(request(), call()), 'connection');
      } finally {
        await instance.dispose();
      }
    });

    test('a socket reset mid-stream is thrown from the iterator as an UpstreamError', async () => {
      fake.behave(() => ({ kind: 'reset-mid-stream' }));
      const seen: ChatChunk[] = [];
      const consume = async () => {
        for await (const chunk of provider.stream(request(), call())) seen.push(chunk);
      };
      await upstreamFailure(consume(), 'connection');
      assert.ok(seen.length >= 1, 'the chunks before the reset arrive');
    });

    test('a socket reset mid-body of a non-streaming reply becomes failure "connection"', async () => {
      fake.behave(() => ({ kind: 'reset-mid-stream' }));
      await upstreamFailure(provider.complete(request(), call()), 'connection');
    });

    test('a malformed reply becomes failure "reply"', async () => {
      fake.behave(() => ({ kind: 'malformed' }));
      await upstreamFailure(provider.complete(request(), call()), 'reply');
      await upstreamFailure(collect(provider.stream(request(), call())), 'reply');
    });

    test('a 200 reply that is not a chat completion becomes failure "reply"', async () => {
      fake.behave(() => ({ kind: 'status', status: 200, body: 'plain text, not a completion' }));
      await upstreamFailure(provider.complete(request(), call()), 'reply');
      await upstreamFailure(collect(provider.stream(request(), call())), 'reply');
    });

    test('no api_key: keyless local servers work', async () => {
      const instance = await openaiPlugin.create({ base_url: fake.baseURL, headers: { 'x-extra': 'yes' }, organization: 'org-1' }, ctx);
      try {
        const result = await instance.complete(request(), call());
        assert.equal(result.choices[0].message.content, 'echo: hello there');
        const headers = fake.requests[0].headers;
        assert.equal(headers.authorization, keylessAuthorization);
        assert.equal(headers['x-extra'], 'yes');
        assert.equal(headers['openai-organization'], 'org-1');
      } finally {
        await instance.dispose();
      }
    });

    test('validate rejects a base_url that is not an http(s) URL', () => {
      const validate = (options: { base_url?: string }) => openaiPlugin.validate!(options, ctx);
      assert.deepEqual(validate({ base_url: 'http://localhost:11434/v1' }), []);
      assert.deepEqual(
        validate({ base_url: 'not a url' }).map((i) => i.path),
        [['base_url']],
      );
      assert.deepEqual(
        validate({ base_url: 'ftp://example.com' }).map((i) => i.path),
        [['base_url']],
      );
      assert.deepEqual(
        validate({ base_url: 'http://user:pw@example.com/v1' }).map((i) => i.path),
        [['base_url']],
      );
    });

    test('dispose twice is safe', async () => {
      const instance = await openaiPlugin.create({ base_url: fake.baseURL }, ctx);
      await instance.dispose();
      await instance.dispose();
    });
  });
