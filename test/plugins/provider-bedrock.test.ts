// The bedrock provider through the gateway: the openai SDK as the client, the provider's
// BedrockRuntimeClient (Converse, ConverseStream, and InvokeModel for Titan embeddings) as
// the upstream's, signed with static fake credentials, and fake-bedrock answering in JSON
// and AWS event-stream frames.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import bedrockModule, { type BedrockOptions } from '../../plugins/providers/bedrock/index.ts';
import type { ProviderModule } from '../../src/plugin-contract/plugin-api.ts';
import { fakeTitanVector, startFakeBedrock, type FakeBedrock } from '../support/fake-bedrock.ts';
import { apiError, drain } from '../support/http.ts';
import { testPluginContext } from '../support/plugin-context.ts';
import {
  assertCatalogueErrors,
  EMBEDDING_MODEL,
  EMBEDDING_PRICE_PER_MTOK,
  MODEL,
  startOneProviderGateway,
  TOOL_TURNS,
  WEATHER_TOOL,
  type OneProviderGateway,
} from '../support/sdk-providers.ts';

const ACCESS_KEY = 'AKIDTESTBEDROCK';
const SECRET = 'bedrock-test-secret-0123456789';
const UPSTREAM = 'anthropic.claude-3-5-haiku-20241022-v1:0';
const EMBEDDING_UPSTREAM = 'amazon.titan-embed-text-v2:0';
const bedrockPlugin: ProviderModule<BedrockOptions> = bedrockModule;

let fake: FakeBedrock;
let gateway: OneProviderGateway;

before(async () => {
  fake = await startFakeBedrock();
  gateway = await startOneProviderGateway(
    `{ plugin: bedrock, region: us-east-1, endpoint: "${fake.endpoint}", access_key_id: ${ACCESS_KEY}, secret_access_key: "${SECRET}" }`,
    UPSTREAM,
    EMBEDDING_UPSTREAM,
  );
});

after(async () => {
  await gateway?.close();
  await fake?.close();
});

beforeEach(() => {
  fake.behave(() => ({ kind: 'reply' }));
  fake.requests.length = 0;
  fake.resetPeakInvocations();
});

describe('bedrock provider', () => {
  test('a Converse call: signed, system and inference config translated, the answer in chat shape', async () => {
    const data = await gateway.client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hello bedrock' },
      ],
      max_tokens: 64,
      temperature: 0.5,
      stop: 'END',
    });
    assert.equal(data.choices[0].message.content, 'echo: hello bedrock');
    assert.equal(data.choices[0].finish_reason, 'stop');
    assert.deepEqual(data.usage, { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 });
    const [sent] = fake.requests;
    assert.equal(sent.modelId, UPSTREAM);
    assert.match(String(sent.headers.authorization), new RegExp(`^AWS4-HMAC-SHA256 Credential=${ACCESS_KEY}/\\d{8}/us-east-1/bedrock/aws4_request`));
    assert.deepEqual(sent.body.system, [{ text: 'Be brief.' }]);
    assert.deepEqual(sent.body.messages, [{ role: 'user', content: [{ text: 'hello bedrock' }] }]);
    assert.deepEqual(sent.body.inferenceConfig, { maxTokens: 64, temperature: 0.5, stopSequences: ['END'] });
  });

  test('tools both ways: toolSpec definitions, toolUse and toolResult blocks upstream, toolUse back as tool_calls', async () => {
    fake.behave(() => ({ kind: 'reply', content: [{ toolUse: { toolUseId: 'tooluse_1', name: 'get_weather', input: { city: 'Lima' } } }] }));
    const data = await gateway.client.chat.completions.create({ model: MODEL, messages: TOOL_TURNS, tools: [WEATHER_TOOL], tool_choice: 'required' });
    assert.equal(data.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(data.choices[0].message.tool_calls, [
      { id: 'tooluse_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Lima"}' } },
    ]);
    const sent = fake.requests[0].body;
    assert.deepEqual(sent.toolConfig, {
      tools: [{ toolSpec: { name: 'get_weather', description: 'The weather in a city', inputSchema: { json: WEATHER_TOOL.function.parameters } } }],
      toolChoice: { any: {} },
    });
    assert.deepEqual(sent.messages.slice(1), [
      { role: 'assistant', content: [{ toolUse: { toolUseId: 'call_1', name: 'get_weather', input: { city: 'Paris' } } }] },
      { role: 'user', content: [{ toolResult: { toolUseId: 'call_1', content: [{ json: { temp_c: 18 } }] } }] },
    ]);
  });

  test('a ConverseStream: event-stream frames become text deltas, a streamed tool call, the finish and the usage', async () => {
    fake.behave(() => ({
      kind: 'reply',
      content: [{ text: 'Looking it up.' }, { toolUse: { toolUseId: 'tooluse_s', name: 'get_weather', input: { city: 'Oslo' } } }],
      usage: { inputTokens: 30, outputTokens: 12, cacheReadInputTokens: 200, cacheWriteInputTokens: 50 },
    }));
    const { data: stream, response } = await gateway.client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'weather?' }], tools: [WEATHER_TOOL], stream: true, stream_options: { include_usage: true } })
      .withResponse();
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Looking it up.');
    const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    assert.equal(calls[0].id, 'tooluse_s');
    assert.equal(calls[0].function?.name, 'get_weather');
    assert.equal(calls.map((c) => c.function?.arguments ?? '').join(''), '{"city":"Oslo"}');
    assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(chunks.at(-1)?.usage, {
      prompt_tokens: 280,
      completion_tokens: 12,
      total_tokens: 292,
      prompt_tokens_details: { cached_tokens: 200, cache_write_tokens: 50 },
    });
    assert.match(fake.requests[0].path, /\/converse-stream$/);
    const line = await gateway.tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.cached_input_tokens, 200);
    assert.equal(line.cache_write_input_tokens, 50);
  });

  test('an exception frame after the 200 ends the stream with a catalogue error', async () => {
    fake.behave(() => ({ kind: 'exception-mid-stream', exceptionType: 'modelStreamErrorException', message: 'the model broke' }));
    const { text, error } = await drain(
      await gateway.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true }),
    );
    assert.equal(text, 'partial ');
    assert.equal((error as { code?: unknown }).code, 'TG_ERR_UPSTREAM', String(error));
  });

  test('failures: 429 keeps its retry-after, 400 and 500 map to the catalogue, the secret never leaks', async () => {
    const types: Record<number, string> = { 429: 'ThrottlingException', 400: 'ValidationException', 500: 'InternalServerException' };
    await assertCatalogueErrors(
      gateway,
      (status, retryAfterS) =>
        fake.behave(() => ({
          kind: 'status',
          status,
          errorType: types[status],
          message: `refused, secret ${SECRET}`,
          ...(retryAfterS ? { headers: { 'retry-after': String(retryAfterS) } } : {}),
        })),
      SECRET,
    );
  });

  test('a 200 that is not a Converse response → 502 TG_ERR_UPSTREAM_REPLY', async () => {
    fake.behave(() => ({ kind: 'raw', body: { surprise: true } }));
    const err = await apiError(gateway.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(err.status, 502);
    assert.equal(err.code, 'TG_ERR_UPSTREAM_REPLY');
    assert.match(err.message, /not a Converse response/);
  });

  test('options: credentials go in pairs, the endpoint must be a URL', () => {
    const ctx = testPluginContext({ at: 'providers.p' });
    assert.deepEqual(bedrockPlugin.validate?.({ region: 'eu-west-1', access_key_id: 'AKID' }, ctx), [
      { path: ['secret_access_key'], message: 'access_key_id and secret_access_key go together' },
    ]);
    assert.deepEqual(bedrockPlugin.validate?.({ region: 'eu-west-1', endpoint: 'not a url' }, ctx), [
      { path: ['endpoint'], message: '"not a url" is not a URL' },
    ]);
  });

  test('embeddings: a signed InvokeModel call per input with the Titan V2 body; vectors in the input’s order; Titan’s token counts summed and priced', async () => {
    const texts = ['Where is my parcel?', 'Quarterly revenue grew', 'ok'];
    const { data, response } = await gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: texts, dimensions: 256 }).withResponse();
    assert.equal(fake.requests.length, 3, 'Titan embeds one text a call');
    for (const sent of fake.requests) {
      assert.equal(sent.modelId, EMBEDDING_UPSTREAM);
      assert.match(sent.path, /\/invoke$/);
      assert.equal(sent.headers['content-type'], 'application/json');
      assert.match(String(sent.headers.authorization), new RegExp(`^AWS4-HMAC-SHA256 Credential=${ACCESS_KEY}/\\d{8}/us-east-1/bedrock/aws4_request`));
    }
    assert.deepEqual(
      fake.requests.map((r) => r.body).sort((a, b) => texts.indexOf(a.inputText) - texts.indexOf(b.inputText)),
      texts.map((inputText) => ({ inputText, dimensions: 256, normalize: true })),
    );

    assert.equal(data.model, EMBEDDING_MODEL);
    assert.deepEqual(
      data.data.map((d) => d.index),
      [0, 1, 2],
    );
    assert.deepEqual(
      data.data.map((d) => d.embedding),
      texts.map((text) => fakeTitanVector(text, 256)),
      'each text’s vector in its place, 256 long',
    );
    // fake-bedrock's Titan counts a token per character, which no estimate would give.
    const tokens = texts.reduce((sum, text) => sum + text.length, 0);
    assert.deepEqual(data.usage, { prompt_tokens: tokens, total_tokens: tokens });
    const line = await gateway.tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.endpoint, 'embeddings');
    assert.deepEqual(line.usage, { prompt_tokens: tokens, completion_tokens: 0, total_tokens: tokens });
    assert.equal(line.usage_estimated, undefined);
    assert.equal(line.cost_usd, (tokens * EMBEDDING_PRICE_PER_MTOK) / 1e6);

    const full = await gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: 'no dimensions', encoding_format: 'float' });
    assert.equal(full.data[0].embedding.length, 1024, 'without dimensions, Titan’s own length');
    assert.deepEqual(fake.requests[3].body, { inputText: 'no dimensions', normalize: true });
  });

  test('many inputs: a few Titan calls at a time, never all at once, the vectors still in order', async () => {
    fake.behave(() => ({ kind: 'reply', delayMs: 40 }));
    const texts = Array.from({ length: 12 }, (_, i) => `text ${i}`);
    const data = await gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: texts, encoding_format: 'float' });
    assert.equal(fake.requests.length, 12);
    assert.ok(fake.peakInvocations() > 1 && fake.peakInvocations() <= 4, `at most 4 calls open at once, got ${fake.peakInvocations()}`);
    assert.deepEqual(
      data.data.map((d) => d.embedding),
      texts.map((text) => fakeTitanVector(text)),
    );
  });

  test('one input refused: the request fails with Titan’s words at once, and the calls still open are cancelled, not waited for', async () => {
    fake.behave((body) =>
      body.inputText === 'bad' ? { kind: 'status', status: 400, errorType: 'ValidationException', message: 'bad input' } : { kind: 'reply', delayMs: 5000 },
    );
    const started = performance.now();
    const err = await apiError(gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: ['slow one', 'bad', 'slow two'] }));
    assert.ok(performance.now() - started < 3000, `failed after ${Math.round(performance.now() - started)} ms`);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'TG_ERR_UPSTREAM_REJECTED');
    assert.match(err.message, /ValidationException: bad input/);

    fake.behave(() => ({ kind: 'reply' }));
    const narrow = await apiError(gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: 'hi', dimensions: 3 }));
    assert.equal(narrow.code, 'TG_ERR_UPSTREAM_REJECTED');
    assert.match(narrow.message, /dimensions: 3 is not a valid enum value/, 'Titan makes 256, 512 or 1024: its refusal reaches the client');
  });

  test('embeddings failures: 429 keeps its retry-after, 400 and 500 map to the catalogue, the secret never leaks', async () => {
    const types: Record<number, string> = { 429: 'ThrottlingException', 400: 'ValidationException', 500: 'InternalServerException' };
    await assertCatalogueErrors(
      gateway,
      (status, retryAfterS) =>
        fake.behave(() => ({
          kind: 'status',
          status,
          errorType: types[status],
          message: `refused, secret ${SECRET}`,
          ...(retryAfterS ? { headers: { 'retry-after': String(retryAfterS) } } : {}),
        })),
      SECRET,
      'embeddings',
    );
    assert.ok(fake.requests.every((r) => r.path.endsWith('/invoke')));
  });

  test('embeddings refused before any call: token ids, which Titan cannot embed, are the client’s located 400', async () => {
    const err = await apiError(gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: [1, 2, 3] }));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'TG_ERR_REQUEST_UNSENDABLE');
    assert.match(err.message, /input is an array of token ids, and Titan embeds text only/);
    assert.equal(fake.requests.length, 0);
  });

  test('a 200 that is not a Titan embedding → 502 TG_ERR_UPSTREAM_REPLY', async () => {
    fake.behave(() => ({ kind: 'raw', body: { surprise: true } }));
    const err = await apiError(gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: 'hi' }));
    assert.equal(err.status, 502);
    assert.equal(err.code, 'TG_ERR_UPSTREAM_REPLY');
    assert.match(err.message, /not a Titan embedding/);
  });
});
