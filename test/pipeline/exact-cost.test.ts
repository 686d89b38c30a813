// Exact cost for every provider: an upstream's usage block with cached prompt tokens and
// reasoning tokens, in that provider's own wire format, priced as the policy declares
// (price.cached_input_per_mtok, price.cache_write_input_per_mtok, reasoning as output), and
// the same dollars in the decision line, in the key's budget and in the metrics. Each provider is called
// through its real plugin and official SDK against a local server speaking its format.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { startFakeAnthropic, type FakeAnthropic } from '../support/fake-anthropic.ts';
import { startFakeGemini, type FakeGemini } from '../support/fake-gemini.ts';
import { startFakeBedrock, type FakeBedrock } from '../support/fake-bedrock.ts';
import { apiError } from '../support/http.ts';

/** Dyadic prices, so that every sum of token × price is exact in floating point. */
const PRICE = { input_per_mtok: 2, cached_input_per_mtok: 0.5, cache_write_input_per_mtok: 2.5, output_per_mtok: 8 };

/** Tokens each counted once, and what the documented arithmetic says they cost. */
interface Expected {
  uncached: number;
  cached: number;
  cacheWrite: number;
  visibleOutput: number;
  reasoning: number;
}

function dollars(e: Expected): number {
  return (
    (e.uncached * PRICE.input_per_mtok +
      e.cached * PRICE.cached_input_per_mtok +
      e.cacheWrite * PRICE.cache_write_input_per_mtok +
      (e.visibleOutput + e.reasoning) * PRICE.output_per_mtok) /
    1e6
  );
}

interface ProviderCase {
  name: string;
  /** The provider entry of the policy, pointed at the case's local server. */
  provider: () => string;
  /** Scripts the next reply's usage block, in the provider's own wire format. */
  scriptUsage: () => void;
  expected: Expected;
}

let fakeOpenAI: FakeOpenAI;
let fakeAnthropic: FakeAnthropic;
let fakeGemini: FakeGemini;
let fakeBedrock: FakeBedrock;

/** An OpenAI-format usage block (openai, openai_compatible, azure_openai): cached tokens inside prompt_tokens, reasoning inside completion_tokens. */
function openAIFormatCase(name: string, provider: () => string, e: Expected): ProviderCase {
  const usage = {
    prompt_tokens: e.uncached + e.cached,
    completion_tokens: e.visibleOutput + e.reasoning,
    prompt_tokens_details: { cached_tokens: e.cached },
    completion_tokens_details: { reasoning_tokens: e.reasoning },
  };
  return { name, provider, scriptUsage: () => fakeOpenAI.behave(() => ({ kind: 'reply', usage })), expected: e };
}

const CASES: ProviderCase[] = [
  openAIFormatCase('openai', () => `{ plugin: openai, base_url: "${fakeOpenAI.baseURL}", api_key: test-key }`, {
    uncached: 400,
    cached: 600,
    cacheWrite: 0,
    visibleOutput: 100,
    reasoning: 200,
  }),
  openAIFormatCase('openai_compatible', () => `{ plugin: openai_compatible, base_url: "${fakeOpenAI.baseURL}" }`, {
    uncached: 1024,
    cached: 1024,
    cacheWrite: 0,
    visibleOutput: 128,
    reasoning: 384,
  }),
  openAIFormatCase('azure_openai', () => `{ plugin: azure_openai, endpoint: "${fakeOpenAI.baseURL.replace(/\/v1$/, '')}", api_key: test-key }`, {
    uncached: 256,
    cached: 1280,
    cacheWrite: 0,
    visibleOutput: 128,
    reasoning: 512,
  }),
  {
    // Gemini counts cached tokens inside promptTokenCount but thinking tokens outside candidatesTokenCount.
    name: 'gemini',
    provider: () => `{ plugin: gemini, base_url: "${fakeGemini.baseURL}", api_key: test-key }`,
    scriptUsage: () =>
      fakeGemini.behave(() => ({
        kind: 'reply',
        usageMetadata: { promptTokenCount: 2000, cachedContentTokenCount: 1500, candidatesTokenCount: 100, thoughtsTokenCount: 300, totalTokenCount: 2400 },
      })),
    expected: { uncached: 500, cached: 1500, cacheWrite: 0, visibleOutput: 100, reasoning: 300 },
  },
  {
    // Converse, like Anthropic, leaves cache reads and writes out of inputTokens; reasoning is inside outputTokens, uncounted.
    name: 'bedrock',
    provider: () => `{ plugin: bedrock, region: us-east-1, endpoint: "${fakeBedrock.endpoint}", access_key_id: AKIDTEST, secret_access_key: test-secret }`,
    scriptUsage: () =>
      fakeBedrock.behave(() => ({ kind: 'reply', usage: { inputTokens: 300, cacheReadInputTokens: 900, cacheWriteInputTokens: 200, outputTokens: 250 } })),
    expected: { uncached: 300, cached: 900, cacheWrite: 200, visibleOutput: 250, reasoning: 0 },
  },
  {
    // Anthropic leaves cache reads and writes out of input_tokens, and reports thinking
    // inside output_tokens with no count of its own: there are no reasoning tokens to show.
    name: 'anthropic',
    provider: () => `{ plugin: anthropic, base_url: "${fakeAnthropic.baseURL}", api_key: test-key }`,
    scriptUsage: () =>
      fakeAnthropic.behave(() => ({
        kind: 'reply',
        usage: { input_tokens: 400, cache_read_input_tokens: 600, cache_creation_input_tokens: 100, output_tokens: 300 },
      })),
    expected: { uncached: 400, cached: 600, cacheWrite: 100, visibleOutput: 300, reasoning: 0 },
  },
];

const keyOf = (c: ProviderCase) => `sk-${c.name.replace(/_/g, '-')}-0123456789abcdef`;

function policy(): string {
  const price = `{ input_per_mtok: ${PRICE.input_per_mtok}, cached_input_per_mtok: ${PRICE.cached_input_per_mtok}, cache_write_input_per_mtok: ${PRICE.cache_write_input_per_mtok}, output_per_mtok: ${PRICE.output_per_mtok} }`;
  return `version: 1
server:
  auth:
    metrics_token: "${METRICS_TOKEN}"
    keys:
${CASES.map((c) => `      - { name: k-${c.name}, key: "${keyOf(c)}", routes: '*', models: '*', limits: { usd_per_day: 0.000001 } }`).join('\n')}
providers:
${CASES.map((c) => `  p-${c.name}: ${c.provider()}`).join('\n')}
models:
${CASES.map((c) => `  m-${c.name}: { provider: p-${c.name}, upstream: upstream-model, price: ${price}, timeout_ms: 5000 }`).join('\n')}
tiers:
  - { name: only, models: [${CASES.map((c) => `m-${c.name}`).join(', ')}] }
routes:
  chat: { router: { plugin: rules, rules: [] }, default: only }
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

let tg: TestGateway;

/** The sum of a Prometheus series' samples over the label sets that contain every one of `labels`. */
function sampleSum(exposition: string, name: string, labels: string[]): number {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    const match = new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`).exec(line);
    if (match && labels.every((label) => match[1].split(',').includes(label))) sum += Number(match[2]);
  }
  return sum;
}

before(async () => {
  fakeOpenAI = await startFakeOpenAI();
  fakeAnthropic = await startFakeAnthropic();
  fakeGemini = await startFakeGemini();
  fakeBedrock = await startFakeBedrock();
  tg = await startTestGateway(policy());
});

after(async () => {
  await tg?.close();
  await fakeOpenAI?.close();
  await fakeAnthropic?.close();
  await fakeGemini?.close();
  await fakeBedrock?.close();
});

describe('exact cost: cached and reasoning tokens priced as declared, in the decision line and the budget', () => {
  for (const c of CASES) {
    test(`${c.name}: a usage block with cached and reasoning tokens`, async () => {
      const client = new OpenAI({ baseURL: tg.baseURL, apiKey: keyOf(c), maxRetries: 0, timeout: 10_000 });
      c.scriptUsage();
      const { data, response } = await client.chat.completions
        .create({ model: `m-${c.name}`, messages: [{ role: 'user', content: `what does ${c.name} cost?` }] })
        .withResponse();
      const e = c.expected;
      const prompt = e.uncached + e.cached + e.cacheWrite;
      const completion = e.visibleOutput + e.reasoning;
      assert.equal(data.usage?.prompt_tokens, prompt);
      assert.equal(data.usage?.completion_tokens, completion);

      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      const cost = dollars(e);
      assert.equal(line.cost_usd, cost, 'cost_usd prices cached input, cache writes and reasoning as declared');
      assert.notEqual(cost, (prompt * PRICE.input_per_mtok + completion * PRICE.output_per_mtok) / 1e6, 'the case tells exact pricing from the naive one');
      assert.equal(line.cached_input_tokens, e.cached || undefined);
      assert.equal(line.cache_write_input_tokens, e.cacheWrite || undefined);
      assert.equal(line.reasoning_tokens, e.reasoning || undefined);
      assert.equal(line.attempts[0].cost_usd, cost);

      // The budget was charged the same dollars: the next request is refused and says what was spent.
      const refused = await apiError(client.chat.completions.create({ model: `m-${c.name}`, messages: [{ role: 'user', content: 'again' }] }));
      assert.equal(refused.code, 'TG_ERR_LIMIT_SPEND');
      const spent = /has spent \$([0-9.e-]+) of/.exec(refused.message)?.[1];
      assert.equal(Number(spent), Number(cost.toPrecision(6)), refused.message);
    });
  }

  test('metrics: the same cost per model, and the cached, cache-write and reasoning tokens by kind', async () => {
    const res = await fetch(`${tg.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(res.status, 200);
    const exposition = await res.text();
    for (const c of CASES) {
      const model = `model="m-${c.name}"`;
      const cost = sampleSum(exposition, 'tiergate_cost_usd_total', [model]);
      assert.ok(Math.abs(cost - dollars(c.expected)) <= 1e-15, `${c.name}: tiergate_cost_usd_total ${cost}, decision line ${dollars(c.expected)}`);
      assert.equal(sampleSum(exposition, 'tiergate_tokens_total', [model, 'kind="cached_prompt"']), c.expected.cached, `${c.name} cached_prompt`);
      assert.equal(sampleSum(exposition, 'tiergate_tokens_total', [model, 'kind="cache_write_prompt"']), c.expected.cacheWrite, `${c.name} cache_write_prompt`);
      assert.equal(sampleSum(exposition, 'tiergate_tokens_total', [model, 'kind="reasoning"']), c.expected.reasoning, `${c.name} reasoning`);
    }
  });
});
