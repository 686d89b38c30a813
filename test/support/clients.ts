// The clients tests' shared ground (test/faces/clients*.test.ts): a gateway with two
// routes (a plain one whose streams pass through chunk by chunk, a gated one whose streams
// are buffered and replayed) in front of fake-openai, gateway and upstream keys, the
// recorded wire requests of the client, the tools, tool calls and usage the upstream
// answers with, and the checks that a request was forwarded as sent and an answer served
// as the upstream gave it.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionTool } from 'openai/resources/chat/completions';
import { startTestGateway, type TestGateway } from './gateway.ts';
import { startFakeOpenAI, type FakeOpenAI, type RecordedRequest } from './fake-openai.ts';

export const GATEWAY_KEY = 'tg-clients-test-key-0123456789';
export const UPSTREAM_KEY = 'sk-upstream-clients-test';
export const UPSTREAM_MODEL = 'gpt-4o-mini-2024-07-18';
/** The policy model behind both routes: what the client sees as `model`. */
export const SERVED_MODEL = 'oa-mini';
/** The large tier's model, for requests whose metadata says task_type 'hard'. */
export const LARGE_MODEL = 'oa-big';
export const LARGE_UPSTREAM = 'gpt-4o-2024-08-06';

export function policy(baseURL: string): string {
  return `version: 1
providers:
  up: { plugin: openai, base_url: "${baseURL}", api_key: ${UPSTREAM_KEY} }
models:
  ${SERVED_MODEL}: { provider: up, upstream: ${UPSTREAM_MODEL}, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 }, timeout_ms: 5000 }
  ${LARGE_MODEL}: { provider: up, upstream: ${LARGE_UPSTREAM}, price: { input_per_mtok: 2.5, output_per_mtok: 10 }, timeout_ms: 5000 }
tiers:
  - { name: small, models: [${SERVED_MODEL}] }
  - { name: large, models: [${LARGE_MODEL}] }
features:
  task_type: metadata.task_type
resilience: { retries: 0 }
routes:
  # No gate: streams are passed through chunk by chunk.
  assistant:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'hard'", tier: large, reason: hard }
    default: small
  # A gate that always passes; its streams are buffered, gated, then replayed as SSE.
  gated:
    router: { plugin: rules, rules: [] }
    default: small
    gate: { evaluators: [ { plugin: jsonata, expression: "true" } ], threshold: 0.5 }
server:
  auth:
    keys:
      - { name: team-app, key: "${GATEWAY_KEY}", routes: '*' }
`;
}

let markers = 0;
/** A string unique to one test, to find its requests upstream. */
export function marker(): string {
  return `mk-${process.pid}-${++markers}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A fetch that records each JSON body the client sends: the client's own wire request. */
export function recordingFetch(sent: any[]): typeof fetch {
  return async (input, init) => {
    if (typeof init?.body === 'string') sent.push(JSON.parse(init.body));
    return fetch(input, init);
  };
}

export const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
    strict: true,
  },
} satisfies ChatCompletionTool;

export const timeTool = {
  type: 'function',
  function: {
    name: 'get_time',
    description: 'Local time in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
} satisfies ChatCompletionTool;

// Arguments with non-ASCII text and escapes: they must arrive byte for byte.
export const TOOL_CALLS = [
  { id: 'call_8fQx2Lw1Zr', type: 'function' as const, function: { name: 'get_weather', arguments: '{"city":"Zürich","unit":"c"}' } },
  { id: 'call_Tm3Kp9Vd0a', type: 'function' as const, function: { name: 'get_time', arguments: '{"city":"São Paulo \\"SP\\""}' } },
];

// OpenAI's usage, token details included.
export const USAGE = {
  prompt_tokens: 57,
  completion_tokens: 21,
  prompt_tokens_details: { cached_tokens: 32, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
};
export const USAGE_OUT = { ...USAGE, total_tokens: USAGE.prompt_tokens + USAGE.completion_tokens };

/**
 * The upstream got what the client sent: every field equal except `model` (the upstream
 * name) and `metadata` (not forwarded). A stream asks upstream for usage whatever the
 * client asked (the gateway accounts cost from it); a non-stream never carries
 * stream_options (OpenAI rejects it) and may say `stream: false`.
 */
export function assertForwardedAsSent(up: RecordedRequest, sent: Record<string, unknown>, upstreamModel = UPSTREAM_MODEL): void {
  assert.equal(up.method, 'POST');
  assert.equal(up.path, '/v1/chat/completions');
  assert.equal(up.headers.authorization, `Bearer ${UPSTREAM_KEY}`, 'the policy key goes upstream, never the client key');
  assert.ok(!JSON.stringify(up.headers).includes(GATEWAY_KEY), 'the gateway key never reaches the upstream');
  assert.equal(up.body.model, upstreamModel);
  assert.equal('metadata' in up.body, false, 'metadata is routing input and is not forwarded');
  const strip = ({ model: _m, metadata: _md, stream: _s, stream_options: _so, ...rest }: Record<string, unknown>) => rest;
  assert.deepEqual(strip(up.body), strip(sent), 'every other field arrives exactly as the client sent it');
  if (sent.stream === true) {
    assert.equal(up.body.stream, true);
    assert.deepEqual(up.body.stream_options, { ...((sent.stream_options as object | undefined) ?? {}), include_usage: true });
  } else {
    assert.notEqual(up.body.stream, true);
    assert.equal('stream_options' in up.body, false);
  }
}

/** What a client should see of an upstream event or completion: the same, with the policy model's name. */
export function asServed<T extends object>(answer: T): T {
  return { ...answer, model: SERVED_MODEL };
}

/** The SSE events the client gets when it did not ask for usage: no usage chunk, no usage field. */
export function withoutUsage(events: object[]): object[] {
  return events
    .filter((event) => (event as { choices: unknown[] }).choices.length > 0)
    .map((event) => {
      const { usage: _usage, ...rest } = event as Record<string, unknown>;
      return rest;
    });
}

/** Tool calls reassembled from stream deltas, the way clients do it (by index). */
export function toolCallsOf(chunks: ChatCompletionChunk[], choiceIndex = 0) {
  const calls: Array<{ id: string; type: string; function: { name: string; arguments: string } }> = [];
  for (const chunk of chunks) {
    for (const choice of chunk.choices) {
      if (choice.index !== choiceIndex) continue;
      for (const delta of choice.delta.tool_calls ?? []) {
        const call = (calls[delta.index] ??= { id: '', type: '', function: { name: '', arguments: '' } });
        if (delta.id) call.id = delta.id;
        if (delta.type) call.type = delta.type;
        if (delta.function?.name) call.function.name += delta.function.name;
        if (delta.function?.arguments) call.function.arguments += delta.function.arguments;
      }
    }
  }
  return calls;
}

export interface ClientsGateway {
  fake: FakeOpenAI;
  tg: TestGateway;
  /** JSON bodies the clients put on the wire, in order (give `recordingFetch(sent)` to a client). */
  sent: any[];
  /** The openai SDK, with the gateway key, recording what it sends. */
  client: OpenAI;
  /** The one upstream request carrying `mark` (optionally: the n-th of several). */
  upstreamWith(mark: string, expected?: number): RecordedRequest[];
  /** The client's own wire request carrying `mark` (the last one when there are several). */
  sentWith(mark: string): Record<string, unknown>;
  close(): Promise<void>;
}

export async function startClientsGateway(): Promise<ClientsGateway> {
  const fake = await startFakeOpenAI();
  let tg: TestGateway;
  try {
    tg = await startTestGateway(policy(fake.baseURL));
  } catch (err) {
    await fake.close();
    throw err;
  }
  const sent: any[] = [];
  const client = new OpenAI({ baseURL: tg.baseURL, apiKey: GATEWAY_KEY, maxRetries: 0, timeout: 10_000, fetch: recordingFetch(sent) });
  return {
    fake,
    tg,
    sent,
    client,
    upstreamWith(mark: string, expected = 1): RecordedRequest[] {
      const found = fake.requests.filter((r) => JSON.stringify(r.body ?? null).includes(mark));
      assert.equal(found.length, expected, `${expected} upstream request(s) carry ${mark}`);
      return found;
    },
    sentWith(mark: string): Record<string, unknown> {
      const found = sent.filter((body) => JSON.stringify(body).includes(mark));
      assert.ok(found.length > 0, `the client sent a request carrying ${mark}`);
      return found[found.length - 1];
    },
    async close() {
      await tg.close();
      await fake.close();
    },
  };
}
