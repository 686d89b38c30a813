// The gemini provider through the gateway: the openai SDK as the client, the provider's
// @google/genai client as the upstream's, and fake-gemini speaking generateContent,
// streamGenerateContent (SSE) and batchEmbedContents as Google does.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import geminiModule, { type GeminiOptions } from '../../plugins/providers/gemini/index.ts';
import type { ProviderModule } from '../../src/plugin-contract/plugin-api.ts';
import { estimateTextTokens } from '../../src/plugin-contract/tokens.ts';
import { fakeGeminiVector, startFakeGemini, type FakeGemini } from '../support/fake-gemini.ts';
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

const KEY = 'gemini-test-key-0123456789';
const UPSTREAM = 'gemini-2.5-flash';
const EMBEDDING_UPSTREAM = 'gemini-embedding-001';
const geminiPlugin: ProviderModule<GeminiOptions> = geminiModule;

let fake: FakeGemini;
let gateway: OneProviderGateway;

before(async () => {
  fake = await startFakeGemini();
  gateway = await startOneProviderGateway(`{ plugin: gemini, base_url: "${fake.baseURL}", api_key: "${KEY}" }`, UPSTREAM, EMBEDDING_UPSTREAM);
});

after(async () => {
  await gateway?.close();
  await fake?.close();
});

beforeEach(() => {
  fake.behave(() => ({ kind: 'reply' }));
  fake.requests.length = 0;
});

describe('gemini provider', () => {
  test('a completion: system instruction, roles and sampling translated; the answer in chat shape', async () => {
    const data = await gateway.client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hello' },
        { role: 'assistant', content: 'hi' },
        { role: 'user', content: 'hello gemini' },
      ],
      temperature: 0.3,
      top_p: 0.9,
      max_tokens: 50,
      stop: ['END'],
    });
    assert.equal(data.choices[0].message.content, 'echo: hello gemini');
    assert.equal(data.choices[0].finish_reason, 'stop');
    assert.deepEqual(data.usage, { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 });
    const [sent] = fake.requests;
    assert.equal(sent.path, `/v1beta/models/${UPSTREAM}:generateContent`);
    assert.equal(sent.headers['x-goog-api-key'], KEY);
    assert.deepEqual(sent.body.systemInstruction, { parts: [{ text: 'Be brief.' }], role: 'user' });
    assert.deepEqual(
      sent.body.contents.map((c: { role: string }) => c.role),
      ['user', 'model', 'user'],
    );
    assert.deepEqual(sent.body.generationConfig, { temperature: 0.3, topP: 0.9, maxOutputTokens: 50, stopSequences: ['END'] });
  });

  test('tools both ways: definitions as functionDeclarations, results as functionResponse, functionCall back as tool_calls', async () => {
    fake.behave(() => ({ kind: 'reply', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Lyon' } } }] }));
    const data = await gateway.client.chat.completions.create({
      model: MODEL,
      messages: TOOL_TURNS,
      tools: [WEATHER_TOOL],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const message = data.choices[0].message;
    assert.equal(data.choices[0].finish_reason, 'tool_calls');
    assert.equal(message.content, null);
    assert.equal(message.tool_calls?.length, 1);
    const call = message.tool_calls![0];
    assert.equal(call.type === 'function' && call.function.name, 'get_weather');
    assert.deepEqual(call.type === 'function' && JSON.parse(call.function.arguments), { city: 'Lyon' });
    assert.ok(call.id.length > 0, 'a call without an id upstream gets one, for the tool result to name');

    const sent = fake.requests[0].body;
    assert.deepEqual(sent.tools, [
      { functionDeclarations: [{ name: 'get_weather', description: 'The weather in a city', parametersJsonSchema: WEATHER_TOOL.function.parameters }] },
    ]);
    assert.deepEqual(sent.toolConfig, { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_weather'] } });
    assert.deepEqual(sent.contents[1], { role: 'model', parts: [{ functionCall: { id: 'call_1', name: 'get_weather', args: { city: 'Paris' } } }] });
    assert.deepEqual(sent.contents[2], { role: 'user', parts: [{ functionResponse: { id: 'call_1', name: 'get_weather', response: { temp_c: 18 } } }] });
  });

  test('response_format json_schema becomes responseMimeType and responseJsonSchema', async () => {
    const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };
    fake.behave(() => ({ kind: 'reply', parts: [{ text: '{"ok":true}' }] }));
    const data = await gateway.client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'json please' }],
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema } },
    });
    assert.equal(data.choices[0].message.content, '{"ok":true}');
    assert.equal(fake.requests[0].body.generationConfig.responseMimeType, 'application/json');
    assert.deepEqual(fake.requests[0].body.generationConfig.responseJsonSchema, schema);
  });

  test('a stream: text deltas, a function call, the finish and the usage with thinking tokens counted as output', async () => {
    fake.behave(() => ({
      kind: 'reply',
      parts: [{ text: 'Let me ' }, { text: 'check.' }, { functionCall: { id: 'fc-1', name: 'get_weather', args: { city: 'Rome' } } }],
      usageMetadata: { promptTokenCount: 40, cachedContentTokenCount: 30, candidatesTokenCount: 12, thoughtsTokenCount: 20, totalTokenCount: 72 },
    }));
    const { data: stream, response } = await gateway.client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'weather?' }], tools: [WEATHER_TOOL], stream: true, stream_options: { include_usage: true } })
      .withResponse();
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Let me check.');
    const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    assert.deepEqual(calls, [{ index: 0, id: 'fc-1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } }]);
    assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(chunks.at(-1)?.usage, {
      prompt_tokens: 40,
      completion_tokens: 32,
      total_tokens: 72,
      prompt_tokens_details: { cached_tokens: 30 },
      completion_tokens_details: { reasoning_tokens: 20 },
    });
    assert.match(fake.requests[0].path, /:streamGenerateContent\?alt=sse$/);
    const line = await gateway.tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.reasoning_tokens, 20);
    assert.equal(line.cached_input_tokens, 30);
    // Priced at this policy's input 1 and output 4 per Mtok (no cached price: input's).
    assert.equal(line.cost_usd, (40 * 1 + 32 * 4) / 1e6);
  });

  test('a failure after the 200 ends the stream with a catalogue error', async () => {
    fake.behave(() => ({ kind: 'error-mid-stream', status: 503, message: 'overloaded' }));
    const { text, error } = await drain(
      await gateway.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true }),
    );
    assert.equal(text, 'partial ');
    assert.equal((error as { code?: unknown }).code, 'TG_ERR_UPSTREAM', String(error));
    assert.match(String(error), /overloaded/);
  });

  test('failures: 429 keeps its retry-after, 400 and 500 map to the catalogue, the key never leaks', async () => {
    await assertCatalogueErrors(
      gateway,
      (status, retryAfterS) =>
        fake.behave(() => ({
          kind: 'status',
          status,
          message: `refused for key ${KEY}`,
          ...(retryAfterS ? { headers: { 'retry-after': String(retryAfterS) } } : {}),
        })),
      KEY,
    );
  });

  test("a 429 with Google's RetryInfo instead of a retry-after header: its retryDelay is honoured", async () => {
    fake.behave(() => ({ kind: 'status', status: 429, retryDelay: '9s' }));
    const err = await apiError(gateway.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(err.code, 'TG_ERR_UPSTREAM_RATE_LIMITED');
    assert.equal(err.headers?.get('retry-after'), '9');
  });

  test('an empty candidate is an empty answer, not a failure', async () => {
    fake.behave(() => ({ kind: 'reply', parts: [] }));
    const data = await gateway.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'nothing' }] });
    assert.equal(data.choices[0].message.content, '');
    assert.equal(data.choices[0].finish_reason, 'stop');
  });

  test('a 200 that is not a generateContent response → 502 TG_ERR_UPSTREAM_REPLY, and the gateway keeps serving', async () => {
    fake.behave(() => ({ kind: 'raw', body: { unexpected: true } }));
    const err = await apiError(gateway.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(err.status, 502);
    assert.equal(err.code, 'TG_ERR_UPSTREAM_REPLY');
    assert.match(err.message, /sent a reply that is not a generateContent response/);
    fake.behave(() => ({ kind: 'reply' }));
    const data = await gateway.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'still there?' }] });
    assert.equal(data.choices[0].message.content, 'echo: still there?');
  });

  test('embeddings: one batchEmbedContents call with the model and outputDimensionality; vectors in order; tokens estimated and priced, as Gemini counts none', async () => {
    const texts = ['Where is my parcel?', 'Quarterly revenue grew', 'ok'];
    const { data, response } = await gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: texts, dimensions: 3 }).withResponse();
    assert.equal(fake.requests.length, 1);
    const [sent] = fake.requests;
    assert.equal(sent.path, `/v1beta/models/${EMBEDDING_UPSTREAM}:batchEmbedContents`);
    assert.equal(sent.headers['x-goog-api-key'], KEY);
    assert.deepEqual(sent.body, {
      requests: texts.map((text) => ({ content: { parts: [{ text }] }, model: `models/${EMBEDDING_UPSTREAM}`, outputDimensionality: 3 })),
    });

    assert.equal(data.model, EMBEDDING_MODEL);
    assert.deepEqual(
      data.data.map((d) => d.index),
      [0, 1, 2],
    );
    assert.deepEqual(
      data.data.map((d) => d.embedding),
      texts.map((text) => fakeGeminiVector(text, 3)),
      'each text’s vector in its place, 3 long',
    );
    const tokens = texts.reduce((sum, text) => sum + estimateTextTokens(text), 0);
    assert.deepEqual(data.usage, { prompt_tokens: tokens, total_tokens: tokens }, 'the client is told the estimate it is charged for');
    const line = await gateway.tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.endpoint, 'embeddings');
    assert.deepEqual(line.usage, { prompt_tokens: tokens, completion_tokens: 0, total_tokens: tokens });
    assert.equal(line.usage_estimated, true);
    assert.equal(line.cost_usd, (tokens * EMBEDDING_PRICE_PER_MTOK) / 1e6);

    const full = await gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: 'no dimensions' });
    assert.equal(full.data[0].embedding.length, 8, "without dimensions, the model's own length");
    assert.equal(fake.requests[1].body.requests[0].outputDimensionality, undefined);
  });

  test('more than 100 texts are cut into batchEmbedContents calls of 100 at most, and the vectors come back in the input’s order', async () => {
    const texts = Array.from({ length: 230 }, (_, i) => `text number ${i}`);
    const data = await gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: texts, encoding_format: 'float' });
    assert.deepEqual(
      fake.requests.map((r) => r.body.requests.length),
      [100, 100, 30],
    );
    assert.deepEqual(
      data.data.map((d) => d.index),
      texts.map((_, i) => i),
    );
    assert.deepEqual(
      data.data.map((d) => d.embedding),
      texts.map((text) => fakeGeminiVector(text)),
    );
  });

  test('a gemini-embedding-2 model still gets each text as its own content (the SDK would merge bare strings into one)', async () => {
    const provider = await geminiPlugin.create({ base_url: fake.baseURL, api_key: KEY }, testPluginContext({ at: 'providers.p' }));
    try {
      const spec = {
        name: 'x',
        provider: 'p',
        upstream: 'gemini-embedding-2-preview',
        kind: 'embedding' as const,
        price: { input_per_mtok: 1, output_per_mtok: 0 },
        timeout_ms: 5000,
      };
      const result = await provider.embed!({ model: spec.upstream, input: ['a', 'b'] }, { model: spec, signal: AbortSignal.timeout(5000) });
      assert.equal(result.data.length, 2);
      assert.equal(fake.requests[0].body.requests.length, 2);
      assert.equal(result.usage, undefined, 'Gemini reports no usage: the gateway estimates it');
    } finally {
      await provider.dispose();
    }
  });

  test('embeddings failures: 429 keeps its retry-after, 400 and 500 map to the catalogue, the key never leaks', async () => {
    await assertCatalogueErrors(
      gateway,
      (status, retryAfterS) =>
        fake.behave(() => ({
          kind: 'status',
          status,
          message: `refused for key ${KEY}`,
          ...(retryAfterS ? { headers: { 'retry-after': String(retryAfterS) } } : {}),
        })),
      KEY,
      'embeddings',
    );
    assert.ok(fake.requests.every((r) => r.path.endsWith(':batchEmbedContents')));
  });

  test('embeddings refused before any call: token ids, which Gemini cannot embed, are the client’s located 400', async () => {
    const err = await apiError(gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: [[1, 2, 3], [4]] }));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'TG_ERR_REQUEST_UNSENDABLE');
    assert.match(err.message, /input\[0\] is an array of token ids, and Gemini embeds text only/);
    assert.equal(fake.requests.length, 0);
  });

  test('a batchEmbedContents reply without a vector per text → 502 TG_ERR_UPSTREAM_REPLY', async () => {
    fake.behave(() => ({ kind: 'raw', body: { embeddings: [{ values: [0.5] }] } }));
    const err = await apiError(gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: ['one', 'two'] }));
    assert.equal(err.status, 502);
    assert.equal(err.code, 'TG_ERR_UPSTREAM_REPLY');
    assert.match(err.message, /sent a reply that is not 2 embeddings/);
  });
});
