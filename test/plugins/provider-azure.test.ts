// The azure_openai provider through the gateway: the openai SDK as the client, the
// provider's AzureOpenAI client as the upstream's, and fake-openai answering Azure's paths
// (/openai/deployments/<deployment>/chat/completions or …/embeddings ?api-version=…, key in api-key).
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import azureModule, { type AzureOpenAIOptions } from '../../plugins/providers/azure_openai/index.ts';
import type { ProviderModule } from '../../src/plugin-contract/plugin-api.ts';
import { fakeVector, startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { drain } from '../support/http.ts';
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

const KEY = 'azure-test-key-0123456789';
const DEPLOYMENT = 'gpt-4o-mini-prod';
const EMBEDDING_DEPLOYMENT = 'text-embedding-3-large-prod';
const azurePlugin: ProviderModule<AzureOpenAIOptions> = azureModule;
const ctx = testPluginContext({ at: 'providers.p' });

let fake: FakeOpenAI;
let gateway: OneProviderGateway;

before(async () => {
  fake = await startFakeOpenAI();
  const endpoint = fake.baseURL.replace(/\/v1$/, '');
  gateway = await startOneProviderGateway(
    `{ plugin: azure_openai, endpoint: "${endpoint}/", api_key: "${KEY}", api_version: 2024-10-21 }`,
    DEPLOYMENT,
    EMBEDDING_DEPLOYMENT,
  );
});

after(async () => {
  await gateway?.close();
  await fake?.close();
});

beforeEach(() => {
  fake.behave(() => ({ kind: 'reply' }));
  fake.requests.length = 0;
});

describe('azure_openai provider', () => {
  test("a completion goes to the model's deployment with the api-key header and the api-version", async () => {
    const data = await gateway.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hello azure' }], temperature: 0.2 });
    assert.equal(data.choices[0].message.content, 'echo: hello azure');
    assert.equal(data.model, MODEL);
    assert.ok(data.usage && data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
    const [sent] = fake.requests;
    assert.equal(sent.path, `/openai/deployments/${DEPLOYMENT}/chat/completions?api-version=2024-10-21`);
    assert.equal(sent.headers['api-key'], KEY);
    assert.equal(sent.headers.authorization, undefined, 'Azure keys go in api-key, not a bearer token');
    assert.equal(sent.body.temperature, 0.2);
  });

  test('tools go upstream as sent, tool results included, and tool calls come back in chat shape', async () => {
    const call = { id: 'call_9', type: 'function' as const, function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } };
    fake.behave(() => ({ kind: 'reply', tool_calls: [call] }));
    const data = await gateway.client.chat.completions.create({ model: MODEL, messages: TOOL_TURNS, tools: [WEATHER_TOOL], tool_choice: 'auto' });
    assert.deepEqual(data.choices[0].message.tool_calls, [call]);
    assert.equal(data.choices[0].finish_reason, 'tool_calls');
    const sent = fake.requests[0].body;
    assert.deepEqual(sent.tools, [WEATHER_TOOL]);
    assert.equal(sent.tool_choice, 'auto');
    assert.deepEqual(
      sent.messages.map((m: { role: string }) => m.role),
      ['system', 'user', 'assistant', 'tool'],
    );
  });

  test('a stream: text, streamed tool calls and the usage chunk', async () => {
    const call = { id: 'call_s', type: 'function' as const, function: { name: 'get_weather', arguments: '{"city":"Rome"}' } };
    fake.behave(() => ({ kind: 'reply', content: 'Checking.', tool_calls: [call], tool_call_deltas: 'split' }));
    const stream = await gateway.client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'weather?' }],
      tools: [WEATHER_TOOL],
      stream: true,
      stream_options: { include_usage: true },
    });
    let args = '';
    let name = '';
    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
        name += delta.function?.name ?? '';
        args += delta.function?.arguments ?? '';
      }
    }
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Checking.');
    assert.equal(name, 'get_weather');
    assert.equal(args, '{"city":"Rome"}');
    assert.ok(chunks.at(-1)?.usage && chunks.at(-1)!.usage!.total_tokens > 0, 'the usage chunk comes last');
    assert.equal(fake.requests[0].body.stream_options.include_usage, true);
  });

  test('a stream without include_usage still asks Azure for usage, so its cost is known', async () => {
    const { data: stream, response } = await gateway.client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'count' }], stream: true })
      .withResponse();
    const { text, usages } = await drain(stream);
    assert.equal(text, 'echo: count');
    assert.equal(usages.length, 0);
    assert.equal(fake.requests[0].body.stream_options.include_usage, true);
    const line = await gateway.tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.ok(line.cost_usd! > 0 && line.usage_estimated !== true, 'cost from the reported usage');
  });

  test('failures: 429 keeps its retry-after, 400 and 500 map to the catalogue, the key never leaks', async () => {
    await assertCatalogueErrors(
      gateway,
      (status, retryAfterS) =>
        fake.behave(() => ({
          kind: 'status',
          status,
          ...(retryAfterS ? { headers: { 'retry-after': String(retryAfterS) } } : {}),
          body: { error: { code: String(status), message: `Azure refused key ${KEY}` } },
        })),
      KEY,
    );
  });

  test("embeddings go to the embedding model's deployment with the api-key header and the api-version; Azure's vectors and usage come back, priced", async () => {
    // The SDK asks the gateway for base64 (its default) and decodes it; the gateway asks Azure for floats.
    const { data, response } = await gateway.client.embeddings
      .create({ model: EMBEDDING_MODEL, input: ['first text', 'second', 'third one'], dimensions: 3 })
      .withResponse();
    const [sent] = fake.requests;
    assert.equal(fake.requests.length, 1, 'one call for every input');
    assert.equal(sent.path, `/openai/deployments/${EMBEDDING_DEPLOYMENT}/embeddings?api-version=2024-10-21`);
    assert.equal(sent.headers['api-key'], KEY);
    assert.deepEqual(sent.body, { model: EMBEDDING_DEPLOYMENT, input: ['first text', 'second', 'third one'], dimensions: 3, encoding_format: 'float' });

    assert.equal(data.model, EMBEDDING_MODEL);
    assert.deepEqual(
      data.data.map((d) => d.index),
      [0, 1, 2],
    );
    assert.deepEqual(
      data.data.map((d) => d.embedding),
      [0, 1, 2].map((i) => fakeVector(i, 3).map((x) => Math.fround(x))),
      'each vector in its input’s place, 3 long',
    );
    // fake-openai counts a token per character, which no estimate would give: this is Azure's count.
    const tokens = 'first text'.length + 'second'.length + 'third one'.length;
    assert.deepEqual(data.usage, { prompt_tokens: tokens, total_tokens: tokens });
    const line = await gateway.tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.endpoint, 'embeddings');
    assert.equal(line.selected_model, EMBEDDING_MODEL);
    assert.deepEqual(line.usage, { prompt_tokens: tokens, completion_tokens: 0, total_tokens: tokens });
    assert.equal(line.usage_estimated, undefined);
    assert.equal(line.cost_usd, (tokens * EMBEDDING_PRICE_PER_MTOK) / 1e6);
  });

  test('embeddings failures: 429 keeps its retry-after, 400 and 500 map to the catalogue, the key never leaks', async () => {
    await assertCatalogueErrors(
      gateway,
      (status, retryAfterS) =>
        fake.behave(() => ({
          kind: 'status',
          status,
          ...(retryAfterS ? { headers: { 'retry-after': String(retryAfterS) } } : {}),
          body: { error: { code: String(status), message: `Azure refused key ${KEY}` } },
        })),
      KEY,
      'embeddings',
    );
    assert.ok(fake.requests.every((r) => r.path.startsWith(`/openai/deployments/${EMBEDDING_DEPLOYMENT}/embeddings?`)));
  });

  test('`deployment` sends every model to one deployment', async () => {
    const provider = await azurePlugin.create(
      { endpoint: fake.baseURL.replace(/\/v1$/, ''), api_key: KEY, api_version: '2025-01-01-preview', deployment: 'pinned' },
      ctx,
    );
    try {
      const spec = { name: 'x', provider: 'p', upstream: 'ignored', price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 5000 };
      await provider.complete({ model: 'ignored', messages: [{ role: 'user', content: 'hi' }] }, { model: spec, signal: AbortSignal.timeout(5000) });
      assert.equal(fake.requests[0].path, '/openai/deployments/pinned/chat/completions?api-version=2025-01-01-preview');
      const embedded = await provider.embed!({ model: 'ignored', input: 'hi' }, { model: { ...spec, kind: 'embedding' }, signal: AbortSignal.timeout(5000) });
      assert.equal(embedded.data.length, 1);
      assert.equal(fake.requests[1].path, '/openai/deployments/pinned/embeddings?api-version=2025-01-01-preview');
    } finally {
      await provider.dispose();
    }
  });

  test('an endpoint that is not an http(s) URL is an option error', () => {
    assert.deepEqual(azurePlugin.validate?.({ endpoint: 'ftp://example.com', api_key: KEY }, ctx), [
      { path: ['endpoint'], message: 'must be an http or https URL, not ftp:' },
    ]);
  });
});
