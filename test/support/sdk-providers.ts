// What the tests of the providers built on a vendor's SDK (gemini, bedrock, azure_openai)
// share: a gateway with one chat model (and one embedding model) on the provider under
// test, the openai SDK as its client, a weather tool to call both ways, and the check
// that the vendor's failures become the gateway's catalogue errors (4xx, 5xx, and 429
// with its retry-after), for chat and for embeddings.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { ChatCompletionFunctionTool } from 'openai/resources/chat/completions';
import { startTestGateway, type TestGateway } from './gateway.ts';
import { apiError } from './http.ts';

/** The one chat model of the gateway, on the provider under test. */
export const MODEL = 'm';
/** The embedding model (kind: embedding), on the same provider, when the gateway has one. */
export const EMBEDDING_MODEL = 'e';
/** The embedding model's price: USD per million input tokens. */
export const EMBEDDING_PRICE_PER_MTOK = 2;

export interface OneProviderGateway {
  tg: TestGateway;
  client: OpenAI;
  close(): Promise<void>;
}

/**
 * A gateway whose model `m` (upstream `upstream`) is on the provider entry `providerYaml`,
 * and with `embeddingUpstream` its embedding model `e` too; resilience retries off so each
 * failure is seen once.
 */
export async function startOneProviderGateway(providerYaml: string, upstream: string, embeddingUpstream?: string): Promise<OneProviderGateway> {
  const embedding = embeddingUpstream
    ? `\n  ${EMBEDDING_MODEL}: { provider: p, upstream: "${embeddingUpstream}", kind: embedding, price: { input_per_mtok: ${EMBEDDING_PRICE_PER_MTOK} }, timeout_ms: 5000 }`
    : '';
  const tg = await startTestGateway(`version: 1
providers:
  p: ${providerYaml}
models:
  ${MODEL}: { provider: p, upstream: "${upstream}", price: { input_per_mtok: 1, output_per_mtok: 4 }, timeout_ms: 5000 }${embedding}
tiers:
  - { name: only, models: [${MODEL}] }
routes:
  chat: { router: { plugin: rules, rules: [] }, default: only }
resilience: { retries: 0 }
analytics:
  decision_log: { file: decisions.jsonl }
`);
  const client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'client-key', maxRetries: 0, timeout: 10_000 });
  return { tg, client, close: () => tg.close() };
}

export const WEATHER_TOOL: ChatCompletionFunctionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

/** A conversation that has been through one tool call: the assistant's call and the tool's result. */
export const TOOL_TURNS: OpenAI.ChatCompletionMessageParam[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
  { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c":18}' },
];

/**
 * Scripts the next upstream reply as a failure with this HTTP status, in the vendor's
 * error shape; `retryAfterS` goes in a retry-after header.
 */
export type FailWith = (status: number, retryAfterS?: number) => void;

/** A 429 with retry-after, a 400 and a 500 from the upstream, as the client of the gateway sees them: of a chat call, or of an embeddings call to `e`. */
export async function assertCatalogueErrors(
  gateway: OneProviderGateway,
  failWith: FailWith,
  secret: string,
  call: 'chat' | 'embeddings' = 'chat',
): Promise<void> {
  const ask = () =>
    call === 'chat'
      ? gateway.client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      : gateway.client.embeddings.create({ model: EMBEDDING_MODEL, input: 'hi' });

  failWith(429, 7);
  const limited = await apiError(ask());
  assert.equal(limited.status, 429);
  assert.equal(limited.code, 'TG_ERR_UPSTREAM_RATE_LIMITED');
  assert.equal(limited.headers?.get('retry-after'), '7', 'the upstream retry-after reaches the client');

  failWith(400);
  const rejected = await apiError(ask());
  assert.equal(rejected.status, 400);
  assert.equal(rejected.code, 'TG_ERR_UPSTREAM_REJECTED');

  failWith(500);
  const failed = await apiError(ask());
  assert.equal(failed.status, 502);
  assert.equal(failed.code, 'TG_ERR_UPSTREAM');

  for (const err of [limited, rejected, failed]) assert.ok(!err.message.includes(secret), `the key never leaks: ${err.message}`);
  for (const err of [limited, rejected, failed]) {
    const line = await gateway.tg.waitForDecision(err.headers?.get('x-tiergate-decision-id'));
    assert.equal(line.error_code, err.code, 'the decision line names the same error');
    if (call === 'embeddings') assert.equal(line.endpoint, 'embeddings');
  }
}
