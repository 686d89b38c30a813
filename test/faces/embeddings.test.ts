// POST /v1/embeddings over real HTTP with the official openai SDK (embeddings.create):
// on the shipped gateway.yaml (the simulator's deterministic vectors), with gateway keys
// and a spend budget that embeddings exhaust, and through the openai and
// openai_compatible providers to fake-openai. Each request gets one decision line
// (endpoint: embeddings) with its tokens and cost.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startShippedGateway, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { fakeVector, startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { apiError } from '../support/http.ts';

const norm = (v: readonly number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const cosine = (a: readonly number[], b: readonly number[]) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b));

/** The body of a raw POST /v1/embeddings, and its status. */
async function post(tg: TestGateway, body: unknown): Promise<{ status: number; json: any; headers: Headers }> {
  const response = await fetch(`${tg.baseURL}/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, json: await response.json(), headers: response.headers };
}

describe('POST /v1/embeddings on the shipped gateway.yaml (simulator)', () => {
  let tg: TestGateway;
  let client: OpenAI;

  before(async () => {
    tg = await startShippedGateway();
    client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    await tg?.close();
  });

  test('a route name embeds with its embeddings model: unit vectors of its dimensions, the same for the same text, and one decision line with tokens and cost', async () => {
    // The SDK asks for base64 by default and decodes it: the gateway must encode it right.
    const { data, response } = await client.embeddings.create({ model: 'support', input: 'Where is my parcel?' }).withResponse();
    assert.equal(data.model, 'text-embedding-3-small');
    assert.equal(data.data.length, 1);
    const vector = data.data[0].embedding;
    assert.equal(vector.length, 1536);
    assert.ok(Math.abs(norm(vector) - 1) < 1e-4, `unit length, got ${norm(vector)}`);
    assert.ok(data.usage.prompt_tokens > 0);
    assert.equal(data.usage.total_tokens, data.usage.prompt_tokens);
    assert.equal(response.headers.get('x-tiergate-route'), 'support');
    assert.equal(response.headers.get('x-tiergate-model'), 'text-embedding-3-small');
    assert.equal(response.headers.get('x-tiergate-simulated'), 'true');

    const again = await client.embeddings.create({ model: 'support', input: 'Where is my parcel?', encoding_format: 'float' });
    assert.deepEqual(
      again.data[0].embedding.map((x) => Math.fround(x)),
      vector,
      'float and base64 carry the same vector (base64 as float32)',
    );

    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.endpoint, 'embeddings');
    assert.equal(line.route, 'support');
    assert.equal(line.selected_model, 'text-embedding-3-small');
    assert.equal(line.routed_model, null, 'no router decided');
    assert.equal(line.status, 'ok');
    assert.equal(line.simulated, true);
    assert.deepEqual(line.usage, { prompt_tokens: data.usage.prompt_tokens, completion_tokens: 0, total_tokens: data.usage.prompt_tokens });
    // gateway.yaml prices text-embedding-3-small at $0.02 per 1M input tokens.
    assert.ok(Math.abs((line.cost_usd ?? 0) - (data.usage.prompt_tokens * 0.02) / 1e6) < 1e-15, `cost ${line.cost_usd}`);
    assert.equal(line.attempts.length, 1);
    assert.equal(line.attempts[0].model, 'text-embedding-3-small');

    // The line's observers count it as they count a chat request.
    const metrics = await (await fetch(`${tg.url}/metrics`)).text();
    const requests = metrics.split('\n').filter((l) => l.startsWith('tiergate_requests_total{') && l.includes('model="text-embedding-3-small"'));
    assert.equal(requests.length, 1, metrics.slice(0, 2000));
    assert.match(requests[0], /route="support"/);
    assert.ok(Number(requests[0].split(' ').at(-1)) >= 2);
  });

  test('GET /v1/models says what each entry answers: the route names its embeddings model, the embedding model is of kind embedding', async () => {
    const entries = new Map<string, any>();
    for await (const model of client.models.list()) entries.set(model.id, model);
    assert.equal(entries.get('support').tiergate.embeddings, 'text-embedding-3-small');
    assert.equal(entries.get('text-embedding-3-small').tiergate.model_kind, 'embedding');
    assert.equal(entries.get('gpt-4o-mini').tiergate.model_kind, 'chat');
  });

  test('several texts get a vector each, in order; related texts point closer together than unrelated ones; dimensions shortens them', async () => {
    const texts = ['Where is my parcel? It has not arrived', 'My parcel has not arrived yet, where is it?', 'Quarterly revenue grew by four percent'];
    const { data } = await client.embeddings.create({ model: 'support', input: texts });
    assert.deepEqual(
      data.map((d) => d.index),
      [0, 1, 2],
    );
    const [a, b, c] = data.map((d) => d.embedding);
    assert.ok(cosine(a, b) > cosine(a, c) + 0.3, `related ${cosine(a, b)} vs unrelated ${cosine(a, c)}`);

    const short = await client.embeddings.create({ model: 'text-embedding-3-small', input: texts[0], dimensions: 256 });
    assert.equal(short.data[0].embedding.length, 256);
    assert.ok(Math.abs(norm(short.data[0].embedding) - 1) < 1e-4);
    // As OpenAI's shortening: the full vector's first values, renormalised.
    const prefix = a.slice(0, 256);
    assert.ok(cosine(short.data[0].embedding, prefix) > 0.9999);

    const tokens = await client.embeddings.create({
      model: 'support',
      input: [
        [1, 2, 3],
        [4, 5],
      ],
    });
    assert.equal(tokens.data.length, 2);
    assert.equal(tokens.usage.prompt_tokens, 5, 'a token array counts its ids');
  });

  test('refusals are catalogued and located: a chat model, an unknown model, a bad input, too many dimensions; chat refuses the embedding model', async () => {
    const chat = await apiError(client.embeddings.create({ model: 'gpt-4o', input: 'hi' }));
    assert.equal(chat.status, 400);
    assert.equal(chat.code, 'TG_ERR_REQUEST_CANNOT_EMBED');
    assert.equal(chat.param, 'model');

    const unknown = await apiError(client.embeddings.create({ model: 'nope', input: 'hi' }));
    assert.equal(unknown.status, 404);
    assert.equal(unknown.code, 'TG_ERR_REQUEST_UNKNOWN_MODEL');

    for (const input of ['', [], [''], [1, 'a'], { text: 'hi' }, null]) {
      const bad = await post(tg, { model: 'support', input });
      assert.equal(bad.status, 400, JSON.stringify(input));
      assert.equal(bad.json.error.code, 'TG_ERR_REQUEST_INVALID');
      assert.equal(bad.json.error.param, 'input');
    }
    const missing = await post(tg, { model: 'support' });
    assert.equal(missing.json.error.param, 'input');
    const format = await post(tg, { model: 'support', input: 'hi', encoding_format: 'hex' });
    assert.equal(format.json.error.param, 'encoding_format');

    const wide = await apiError(client.embeddings.create({ model: 'support', input: 'hi', dimensions: 4096 }));
    assert.equal(wide.status, 400);
    assert.equal(wide.code, 'TG_ERR_UPSTREAM_REJECTED');

    const asChat = await apiError(client.chat.completions.create({ model: 'text-embedding-3-small', messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(asChat.status, 400);
    assert.equal(asChat.code, 'TG_ERR_REQUEST_EMBEDDING_MODEL');
    const line = await tg.waitForDecision(wide.headers?.get('x-tiergate-decision-id'));
    assert.equal(line.endpoint, 'embeddings');
    assert.equal(line.status, 'error');
    assert.equal(line.error_code, 'TG_ERR_UPSTREAM_REJECTED');
  });
});

const KEYED = (fakeURL: string) => `
version: 1
server:
  auth:
    keys:
      - { name: search-app, key: tg-search-key-0123456789, routes: [docs], limits: { usd_per_day: 0.000001 } }
      - { name: chat-app, key: tg-chat-key-0123456789, routes: [chat, remote, local] }
providers:
  sim:
    plugin: simulator
    time_scale: 0
    profiles: { small: { capability: 1, first_token_ms: 0, tokens_per_second: 1000 } }
    embedding_models: { sim-embed: { dimensions: 8 } }
  oa: { plugin: openai, api_key: sk-upstream-embeddings, base_url: ${fakeURL} }
  compat: { plugin: openai_compatible, base_url: ${fakeURL} }
models:
  small: { provider: sim, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  sim-embed: { provider: sim, kind: embedding, price: { input_per_mtok: 100 } }
  oa-embed: { provider: oa, upstream: text-embedding-3-large, kind: embedding, price: { input_per_mtok: 0.13 } }
  compat-embed: { provider: compat, upstream: nomic-embed-text, kind: embedding, price: { input_per_mtok: 0 } }
tiers: [ { name: only, models: [small] } ]
routes:
  docs: { router: { plugin: rules, rules: [] }, default: only, embeddings: sim-embed }
  chat: { router: { plugin: rules, rules: [] }, default: only }
  remote: { router: { plugin: rules, rules: [] }, default: only, embeddings: oa-embed }
  local: { router: { plugin: rules, rules: [] }, default: only, embeddings: compat-embed }
analytics:
  decision_log: { file: decisions.jsonl }
`;

describe('POST /v1/embeddings with gateway keys, a spend budget, and OpenAI-wire upstreams', () => {
  let tg: TestGateway;
  let fake: FakeOpenAI;
  const as = (key: string) => new OpenAI({ baseURL: tg.baseURL, apiKey: key, maxRetries: 0 });

  before(async () => {
    fake = await startFakeOpenAI();
    tg = await startTestGateway(KEYED(fake.baseURL));
  });
  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  test('the key is checked first; a key may embed only through the routes it may call; a route without embeddings refuses', async () => {
    const missing = await post(tg, { model: 'docs', input: 'hi' });
    assert.equal(missing.status, 401);
    assert.equal(missing.json.error.code, 'TG_ERR_AUTH_MISSING');
    const wrong = await apiError(as('tg-wrong-key-0123456789').embeddings.create({ model: 'docs', input: 'hi' }));
    assert.equal(wrong.code, 'TG_ERR_AUTH_INVALID');
    const forbidden = await apiError(as('tg-chat-key-0123456789').embeddings.create({ model: 'docs', input: 'hi' }));
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.code, 'TG_ERR_AUTH_FORBIDDEN');
    const noEmbeddings = await apiError(as('tg-chat-key-0123456789').embeddings.create({ model: 'chat', input: 'hi' }));
    assert.equal(noEmbeddings.status, 400);
    assert.equal(noEmbeddings.code, 'TG_ERR_REQUEST_CANNOT_EMBED');
  });

  test('an embeddings request spends the key’s budget: the next request is refused with 429 until the window resets', async () => {
    const search = as('tg-search-key-0123456789');
    // 100 USD per 1M tokens: a few tokens cost more than the key's $0.000001 a day.
    const { data, response } = await search.embeddings.create({ model: 'docs', input: 'a text long enough to cost more than the budget' }).withResponse();
    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.api_key_name, 'search-app');
    assert.equal(line.cost_usd, (data.usage.prompt_tokens * 100) / 1e6);
    assert.ok(line.cost_usd! > 0.000001);
    const refused = await apiError(search.embeddings.create({ model: 'docs', input: 'again' }));
    assert.equal(refused.status, 429);
    assert.equal(refused.code, 'TG_ERR_LIMIT_SPEND');
  });

  for (const { route, provider, upstream } of [
    { route: 'remote', provider: 'openai (the official SDK)', upstream: 'text-embedding-3-large' },
    { route: 'local', provider: 'openai_compatible (undici)', upstream: 'nomic-embed-text' },
  ]) {
    test(`through the ${provider} provider: the upstream gets its model name, the input and dimensions, asked in floats; its vectors and usage come back`, async () => {
      const before = fake.requests.length;
      const { data, response } = await as('tg-chat-key-0123456789')
        .embeddings.create({ model: route, input: ['first text', 'second'], dimensions: 3, user: 'u-1' })
        .withResponse();
      const sent = fake.requests.slice(before).filter((r) => r.path === '/v1/embeddings');
      assert.equal(sent.length, 1);
      assert.deepEqual(sent[0].body, { model: upstream, input: ['first text', 'second'], dimensions: 3, user: 'u-1', encoding_format: 'float' });
      assert.deepEqual(
        data.data.map((d) => d.embedding.map((x) => Math.fround(x))),
        [fakeVector(0, 3), fakeVector(1, 3)].map((v) => v.map((x) => Math.fround(x))),
      );
      // fake-openai counts a token per character: the upstream's usage, not an estimate.
      assert.equal(data.usage.prompt_tokens, 'first text'.length + 'second'.length);
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.usage?.prompt_tokens, 16);
      assert.equal(line.usage_estimated, undefined);
      assert.equal(line.simulated, false);
    });
  }

  test('an upstream failure is the catalogue’s upstream error, with its decision line', async () => {
    fake.behave(() => ({ kind: 'status', status: 400 }));
    try {
      const failed = await apiError(as('tg-chat-key-0123456789').embeddings.create({ model: 'remote', input: 'hi' }));
      assert.equal(failed.code, 'TG_ERR_UPSTREAM_REJECTED');
      const line = await tg.waitForDecision(failed.headers?.get('x-tiergate-decision-id'));
      assert.deepEqual([line.status, line.route, line.selected_model, line.api_key_name], ['error', 'remote', 'oa-embed', 'chat-app']);
      assert.equal(line.attempts[0].outcome, 'failed');
    } finally {
      fake.behave(() => ({ kind: 'reply' }));
    }
  });
});
