// The clients teams already use, over real HTTP: the official openai SDK and LangChain
// JS's ChatOpenAI talk to tiergate; tiergate's openai provider talks to fake-openai.
// Each test records the exact request the client put on the wire (a recording fetch
// given to the client) and the request the upstream received, and checks that every
// field arrived untouched except `model` (route → upstream model name) and `metadata`
// (tiergate's routing input, documented as not forwarded); then that what the upstream
// answered (tool_calls with ids and arguments, finish_reason, usage with its token
// details, system_fingerprint, logprobs, several choices) reached the client untouched
// except `model` (the policy model that answered).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { ChatOpenAI } from '@langchain/openai';
import { type AIMessageChunk, HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';
import { startTestGateway, type TestGateway } from './support/gateway.ts';
import { startFakeOpenAI, type FakeOpenAI, type RecordedRequest } from './support/fake-openai.ts';

const GATEWAY_KEY = 'tg-clients-test-key-0123456789';
const UPSTREAM_KEY = 'sk-upstream-clients-test';
const UPSTREAM_MODEL = 'gpt-4o-mini-2024-07-18';
/** The policy model behind both routes: what the client sees as `model`. */
const SERVED_MODEL = 'oa-mini';
/** The large tier's model, for requests whose metadata says task_type 'hard'. */
const LARGE_MODEL = 'oa-big';
const LARGE_UPSTREAM = 'gpt-4o-2024-08-06';

function policy(baseURL: string): string {
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
function marker(): string {
  return `mk-${process.pid}-${++markers}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A fetch that records each JSON body the client sends: the client's own wire request. */
function recordingFetch(sent: any[]): typeof fetch {
  return async (input, init) => {
    if (typeof init?.body === 'string') sent.push(JSON.parse(init.body));
    return fetch(input, init);
  };
}

const weatherTool = {
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

const timeTool = {
  type: 'function',
  function: { name: 'get_time', description: 'Local time in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
} satisfies ChatCompletionTool;

// Arguments with non-ASCII text and escapes: they must arrive byte for byte.
const TOOL_CALLS = [
  { id: 'call_8fQx2Lw1Zr', type: 'function' as const, function: { name: 'get_weather', arguments: '{"city":"Zürich","unit":"c"}' } },
  { id: 'call_Tm3Kp9Vd0a', type: 'function' as const, function: { name: 'get_time', arguments: '{"city":"São Paulo \\"SP\\""}' } },
];

// OpenAI's usage, token details included.
const USAGE = {
  prompt_tokens: 57,
  completion_tokens: 21,
  prompt_tokens_details: { cached_tokens: 32, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
};
const USAGE_OUT = { ...USAGE, total_tokens: USAGE.prompt_tokens + USAGE.completion_tokens };

/**
 * The upstream got what the client sent: every field equal except `model` (the upstream
 * name) and `metadata` (not forwarded). A stream asks upstream for usage whatever the
 * client asked (the gateway accounts cost from it); a non-stream never carries
 * stream_options (OpenAI rejects it) and may say `stream: false`.
 */
function assertForwardedAsSent(up: RecordedRequest, sent: Record<string, unknown>, upstreamModel = UPSTREAM_MODEL): void {
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
function asServed<T extends object>(answer: T): T {
  return { ...answer, model: SERVED_MODEL };
}

/** The SSE events the client gets when it did not ask for usage: no usage chunk, no usage field. */
function withoutUsage(events: object[]): object[] {
  return events
    .filter((event) => (event as { choices: unknown[] }).choices.length > 0)
    .map((event) => {
      const { usage: _usage, ...rest } = event as Record<string, unknown>;
      return rest;
    });
}

/** Tool calls reassembled from stream deltas, the way clients do it (by index). */
function toolCallsOf(chunks: ChatCompletionChunk[], choiceIndex = 0) {
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

describe('clients → tiergate → an OpenAI-format upstream', () => {
  let fake: FakeOpenAI;
  let tg: TestGateway;
  /** JSON bodies the clients put on the wire, in order. */
  const sent: any[] = [];
  let client: OpenAI;

  before(async () => {
    fake = await startFakeOpenAI();
    tg = await startTestGateway(policy(fake.baseURL));
    client = new OpenAI({ baseURL: tg.baseURL, apiKey: GATEWAY_KEY, maxRetries: 0, timeout: 10_000, fetch: recordingFetch(sent) });
  });
  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  /** The one upstream request carrying `mark` (optionally: the n-th of several). */
  function upstreamWith(mark: string, expected = 1): RecordedRequest[] {
    const found = fake.requests.filter((r) => JSON.stringify(r.body ?? null).includes(mark));
    assert.equal(found.length, expected, `${expected} upstream request(s) carry ${mark}`);
    return found;
  }

  /** The client's own wire request carrying `mark` (the last one when there are several). */
  function sentWith(mark: string): Record<string, unknown> {
    const found = sent.filter((body) => JSON.stringify(body).includes(mark));
    assert.ok(found.length > 0, `the client sent a request carrying ${mark}`);
    return found[found.length - 1];
  }

  describe('the openai SDK', () => {
    test('tool calls: tools, tool_choice and parallel_tool_calls in; tool_calls with ids and arguments out; then a turn with role "tool" messages', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', tool_calls: TOOL_CALLS, usage: USAGE }));
      const messages: ChatCompletionMessageParam[] = [
        { role: 'system', content: 'You answer with tools.' },
        { role: 'user', content: `Weather in Zürich and the time in São Paulo? ${mark}` },
      ];
      const first = await client.chat.completions.create({ model: 'assistant', messages, tools: [weatherTool, timeTool], tool_choice: 'required', parallel_tool_calls: true });
      const [up1] = upstreamWith(mark);
      assertForwardedAsSent(up1, sentWith(mark));
      assert.deepEqual(up1.body.tools, [weatherTool, timeTool]);
      assert.equal(up1.body.tool_choice, 'required');
      assert.equal(up1.body.parallel_tool_calls, true);

      assert.deepEqual(first, asServed(up1.answer!), 'the whole completion comes back as the upstream sent it');
      const message = first.choices[0].message;
      assert.equal(first.choices[0].finish_reason, 'tool_calls');
      assert.equal(message.content, null);
      assert.deepEqual(message.tool_calls, TOOL_CALLS);
      assert.deepEqual(first.usage, USAGE_OUT);
      assert.equal(first.system_fingerprint, 'fp_fake');

      // The follow-up turn: the assistant's tool calls and one "tool" message per call.
      fake.behave(() => ({ kind: 'reply', content: 'Zürich: 12 °C. São Paulo: 14:05.', usage: USAGE }));
      const followUp: ChatCompletionMessageParam[] = [
        ...messages,
        message,
        { role: 'tool', tool_call_id: TOOL_CALLS[0].id, content: '{"temp_c":12}' },
        { role: 'tool', tool_call_id: TOOL_CALLS[1].id, content: [{ type: 'text', text: '14:05' }] },
      ];
      const second = await client.chat.completions.create({ model: 'assistant', messages: followUp, tools: [weatherTool, timeTool], tool_choice: { type: 'function', function: { name: 'get_weather' } } });
      const up2 = upstreamWith(mark, 2)[1];
      assertForwardedAsSent(up2, sentWith(mark));
      assert.deepEqual(up2.body.messages.slice(2), [
        { role: 'assistant', content: null, refusal: null, tool_calls: TOOL_CALLS },
        { role: 'tool', tool_call_id: TOOL_CALLS[0].id, content: '{"temp_c":12}' },
        { role: 'tool', tool_call_id: TOOL_CALLS[1].id, content: [{ type: 'text', text: '14:05' }] },
      ]);
      assert.deepEqual(up2.body.tool_choice, { type: 'function', function: { name: 'get_weather' } });
      assert.deepEqual(second, asServed(up2.answer!));
      assert.equal(second.choices[0].message.content, 'Zürich: 12 °C. São Paulo: 14:05.');
      assert.equal(second.choices[0].finish_reason, 'stop');
    });

    test('streamed tool calls (id and name first, then argument fragments, as OpenAI streams them) arrive chunk for chunk', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', tool_calls: TOOL_CALLS, tool_call_deltas: 'split', usage: USAGE }));
      const stream = await client.chat.completions.create({
        model: 'assistant',
        messages: [{ role: 'user', content: `Weather and time? ${mark}` }],
        tools: [weatherTool, timeTool],
        tool_choice: 'auto',
        parallel_tool_calls: true,
        stream: true,
        stream_options: { include_usage: true },
      });
      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(chunks, (up.answer as object[]).map(asServed), 'every chunk as the upstream sent it, in order');
      assert.deepEqual(toolCallsOf(chunks), TOOL_CALLS);
      assert.ok(chunks.filter((c) => c.choices[0]?.delta.tool_calls).length > TOOL_CALLS.length, 'the arguments came in fragments');
      assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason, 'tool_calls');
      assert.deepEqual(chunks.at(-1)?.usage, USAGE_OUT);
    });

    test('JSON mode: response_format json_object in, the JSON text out', async () => {
      const mark = marker();
      const json = '{"category":"billing","urgent":false,"note":"naïve \\"quote\\""}';
      fake.behave(() => ({ kind: 'reply', content: json, usage: USAGE, system_fingerprint: 'fp_44709d6fcb' }));
      const data = await client.chat.completions.create({
        model: 'assistant',
        messages: [
          { role: 'system', content: 'Reply in JSON.' },
          { role: 'user', content: `Classify: I was charged twice. ${mark}` },
        ],
        response_format: { type: 'json_object' },
      });
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(up.body.response_format, { type: 'json_object' });
      assert.deepEqual(data, asServed(up.answer!));
      assert.equal(data.choices[0].message.content, json);
      assert.deepEqual(JSON.parse(data.choices[0].message.content ?? ''), { category: 'billing', urgent: false, note: 'naïve "quote"' });
      assert.equal(data.system_fingerprint, 'fp_44709d6fcb');
    });

    test('structured outputs: response_format json_schema (strict) in, parsed by the SDK out', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', content: '{"city":"Zürich","temp_c":12.5}', usage: USAGE }));
      const responseFormat = {
        type: 'json_schema' as const,
        json_schema: {
          name: 'weather_report',
          description: 'A weather report',
          strict: true,
          schema: { type: 'object', properties: { city: { type: 'string' }, temp_c: { type: 'number' } }, required: ['city', 'temp_c'], additionalProperties: false },
        },
      };
      const data = await client.chat.completions.parse({ model: 'assistant', messages: [{ role: 'user', content: `Weather in Zürich? ${mark}` }], response_format: responseFormat });
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(up.body.response_format, responseFormat);
      assert.deepEqual(data.choices[0].message.parsed, { city: 'Zürich', temp_c: 12.5 });
      assert.equal(data.choices[0].message.content, '{"city":"Zürich","temp_c":12.5}');
      assert.equal(data.choices[0].finish_reason, 'stop');
      assert.deepEqual(data.usage, USAGE_OUT);
    });

    test('streaming with stream_options.include_usage: every chunk untouched, and the final usage chunk (token details included) reaches the client', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', content: 'The sky is blue because of Rayleigh scattering.', usage: USAGE }));
      const { data: stream, response } = await client.chat.completions
        .create({ model: 'assistant', messages: [{ role: 'user', content: `Why is the sky blue? ${mark}` }], stream: true, stream_options: { include_usage: true }, temperature: 0 })
        .withResponse();
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      assert.equal(response.headers.get('x-tiergate-model'), SERVED_MODEL);
      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(chunks, (up.answer as object[]).map(asServed));
      const last = chunks.at(-1)!;
      assert.deepEqual(last.choices, [], 'the usage chunk has no choices, as OpenAI sends it');
      assert.deepEqual(last.usage, USAGE_OUT);
      assert.ok(chunks.slice(0, -1).every((c) => c.usage === null), 'the other chunks say usage: null, as OpenAI sends them');
      assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'The sky is blue because of Rayleigh scattering.');

      // Without include_usage the client gets the same chunks minus usage; the upstream is still asked for it.
      const plainMark = marker();
      const plain: ChatCompletionChunk[] = [];
      for await (const chunk of await client.chat.completions.create({ model: 'assistant', messages: [{ role: 'user', content: `Again ${plainMark}` }], stream: true })) plain.push(chunk);
      const [plainUp] = upstreamWith(plainMark);
      assertForwardedAsSent(plainUp, sentWith(plainMark));
      assert.deepEqual(plain, withoutUsage(plainUp.answer as object[]).map(asServed));
    });

    test('sampling and control fields pass through (seed, logprobs, top_logprobs, n, stop, temperature, top_p, max_completion_tokens, user, penalties, logit_bias, store, service_tier, reasoning_effort); logprobs and every choice come back', async () => {
      const mark = marker();
      const logprobsA = [
        { token: 'Bon', logprob: -0.01, top_logprobs: [{ token: 'Bon', logprob: -0.01 }, { token: 'Sal', logprob: -4.7 }] },
        { token: 'jour', logprob: -0.002, top_logprobs: [{ token: 'jour', logprob: -0.002 }, { token: 'soir', logprob: -6.3 }] },
      ];
      const logprobsB = [{ token: 'Salut', logprob: -0.5, top_logprobs: [{ token: 'Salut', logprob: -0.5 }, { token: 'Coucou', logprob: -1.2 }] }];
      fake.behave(() => ({ kind: 'reply', choices: [{ content: 'Bonjour', logprobs: logprobsA }, { content: 'Salut', logprobs: logprobsB, finish_reason: 'length' }], usage: USAGE, system_fingerprint: 'fp_f33667828e' }));
      const params = {
        model: 'assistant',
        messages: [{ role: 'user' as const, content: `Say hello in French. ${mark}` }],
        seed: 1234,
        logprobs: true,
        top_logprobs: 2,
        n: 2,
        stop: ['\n\n', 'END'],
        temperature: 0.4,
        top_p: 0.8,
        max_completion_tokens: 64,
        user: 'user-42',
        presence_penalty: 0.1,
        frequency_penalty: -0.2,
        logit_bias: { '50256': -100 },
        store: true,
        service_tier: 'default' as const,
        reasoning_effort: 'low' as const,
        metadata: { team: 'support', task_type: 'greeting' },
      };
      const data = await client.chat.completions.create(params);
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      for (const key of ['seed', 'logprobs', 'top_logprobs', 'n', 'stop', 'temperature', 'top_p', 'max_completion_tokens', 'user', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'store', 'service_tier', 'reasoning_effort'] as const) {
        assert.deepEqual(up.body[key], params[key], `${key} arrived untouched`);
      }
      assert.deepEqual(data, asServed(up.answer!));
      assert.equal(data.choices.length, 2);
      assert.deepEqual(
        data.choices.map((c) => [c.index, c.message.content, c.finish_reason]),
        [
          [0, 'Bonjour', 'stop'],
          [1, 'Salut', 'length'],
        ],
      );
      assert.deepEqual(
        data.choices[0].logprobs?.content?.map((t) => [t.token, t.logprob, t.top_logprobs.map((a) => a.token)]),
        [
          ['Bon', -0.01, ['Bon', 'Sal']],
          ['jour', -0.002, ['jour', 'soir']],
        ],
      );
      assert.deepEqual(data.choices[1].logprobs?.content?.[0].bytes, [...Buffer.from('Salut')]);
      assert.equal(data.system_fingerprint, 'fp_f33667828e');
      assert.deepEqual(data.usage, USAGE_OUT);
    });

    test('a stream with n = 2 and logprobs: the chunks of both choices arrive untouched', async () => {
      const mark = marker();
      fake.behave(() => ({
        kind: 'reply',
        choices: [
          { content: 'Hello there, friend', logprobs: [{ token: 'Hello', logprob: -0.1 }, { token: ' there', logprob: -0.2 }, { token: ', friend', logprob: -0.3 }] },
          { content: 'Hi', logprobs: [{ token: 'Hi', logprob: -0.4 }] },
        ],
        usage: USAGE,
      }));
      const chunks: ChatCompletionChunk[] = [];
      const stream = await client.chat.completions.create({ model: 'assistant', messages: [{ role: 'user', content: `Greet me ${mark}` }], n: 2, logprobs: true, top_logprobs: 0, stream: true, stream_options: { include_usage: true } });
      for await (const chunk of stream) chunks.push(chunk);
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(chunks, (up.answer as object[]).map(asServed));
      const textOf = (index: number) => chunks.flatMap((c) => c.choices.filter((ch) => ch.index === index).map((ch) => ch.delta.content ?? '')).join('');
      assert.equal(textOf(0), 'Hello there, friend');
      assert.equal(textOf(1), 'Hi');
      const tokensOf = (index: number) => chunks.flatMap((c) => c.choices.filter((ch) => ch.index === index).flatMap((ch) => ch.logprobs?.content ?? []).map((t) => t.token));
      assert.deepEqual(tokensOf(0), ['Hello', ' there', ', friend']);
      assert.deepEqual(tokensOf(1), ['Hi']);
    });

    test('through a gated route (streams buffered, gated, replayed): tool_calls, finish_reason, system_fingerprint, service_tier, logprobs and usage come back', async () => {
      const mark = marker();
      const logprobs = [{ token: 'Checking', logprob: -0.05, top_logprobs: [{ token: 'Checking', logprob: -0.05 }] }];
      fake.behave(() => ({ kind: 'reply', content: 'Checking.', tool_calls: TOOL_CALLS, logprobs, usage: USAGE, system_fingerprint: 'fp_gated01', service_tier: 'default' }));
      const json = await client.chat.completions.create({ model: 'gated', messages: [{ role: 'user', content: `Weather? ${mark}` }], tools: [weatherTool, timeTool], logprobs: true, top_logprobs: 1 });
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(json, asServed(up.answer!), 'the gated JSON answer is the upstream answer');

      const streamMark = marker();
      const chunks: ChatCompletionChunk[] = [];
      const stream = await client.chat.completions.create({ model: 'gated', messages: [{ role: 'user', content: `Weather? ${streamMark}` }], tools: [weatherTool, timeTool], logprobs: true, top_logprobs: 1, stream: true, stream_options: { include_usage: true } });
      for await (const chunk of stream) chunks.push(chunk);
      const [streamUp] = upstreamWith(streamMark);
      assert.notEqual(streamUp.body.stream, true, 'the gate judges the whole answer: the upstream call is not streamed');
      assert.deepEqual({ ...streamUp.body, stream: true, stream_options: { include_usage: true } }, { ...sentWith(streamMark), model: UPSTREAM_MODEL });
      const answer = streamUp.answer as { id: string; created: number; system_fingerprint: string };
      for (const chunk of chunks) {
        assert.equal(chunk.id, answer.id);
        assert.equal(chunk.created, answer.created);
        assert.equal(chunk.model, SERVED_MODEL);
        assert.equal(chunk.system_fingerprint, 'fp_gated01', 'every replayed chunk carries the upstream system_fingerprint');
        assert.equal(chunk.service_tier, 'default', 'and its service_tier');
      }
      assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Checking.');
      assert.deepEqual(toolCallsOf(chunks), TOOL_CALLS);
      assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason, 'tool_calls');
      assert.deepEqual(
        chunks.flatMap((c) => c.choices.flatMap((ch) => ch.logprobs?.content ?? [])),
        logprobs.map((t) => ({ ...t, bytes: [...Buffer.from(t.token)], top_logprobs: t.top_logprobs.map((a) => ({ ...a, bytes: [...Buffer.from(a.token)] })) })),
      );
      assert.deepEqual(chunks.at(-1)?.usage, USAGE_OUT);
    });
  });

  describe('LangChain JS ChatOpenAI', () => {
    function chatModel(fields: ConstructorParameters<typeof ChatOpenAI>[0] = {}): ChatOpenAI {
      return new ChatOpenAI({ model: 'assistant', apiKey: GATEWAY_KEY, configuration: { baseURL: tg.baseURL, fetch: recordingFetch(sent) }, maxRetries: 0, ...fields });
    }

    test('invoke: the request arrives as LangChain sent it; content, finish_reason, system_fingerprint and usage come back', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', content: 'Your parcel is in transit.', usage: USAGE, system_fingerprint: 'fp_lc0001' }));
      const llm = chatModel({ temperature: 0.2, topP: 0.9, maxTokens: 80, stop: ['END'] });
      const reply = await llm.invoke([new SystemMessage('You are a support agent.'), new HumanMessage(`Where is order 12345? ${mark}`)], { seed: 7 });
      const [up] = upstreamWith(mark);
      const wire = sentWith(mark);
      assertForwardedAsSent(up, wire);
      assert.deepEqual(up.body.messages, [
        { role: 'system', content: 'You are a support agent.' },
        { role: 'user', content: `Where is order 12345? ${mark}` },
      ]);
      assert.equal(up.body.temperature, 0.2);
      assert.equal(up.body.top_p, 0.9);
      assert.deepEqual(up.body.stop, ['END']);
      assert.equal(up.body.seed, 7);

      const answer = up.answer as { id: string };
      assert.equal(reply.content, 'Your parcel is in transit.');
      assert.equal(reply.id, answer.id);
      assert.equal(reply.response_metadata.finish_reason, 'stop');
      assert.equal(reply.response_metadata.system_fingerprint, 'fp_lc0001');
      assert.equal(reply.response_metadata.model_name, SERVED_MODEL);
      assert.deepEqual(reply.response_metadata.usage, USAGE_OUT);
      assert.equal(reply.usage_metadata?.input_tokens, USAGE.prompt_tokens);
      assert.equal(reply.usage_metadata?.output_tokens, USAGE.completion_tokens);
      assert.equal(reply.usage_metadata?.total_tokens, USAGE_OUT.total_tokens);
      assert.equal(reply.usage_metadata?.input_token_details?.cache_read, USAGE.prompt_tokens_details.cached_tokens, 'usage token details survived the gateway');
    });

    test('routing metadata from LangChain (modelKwargs.metadata) reaches the rules; it is not forwarded upstream', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', content: 'A hard answer.', usage: USAGE }));
      const reply = await chatModel({ modelKwargs: { metadata: { task_type: 'hard' } } }).invoke(`Prove it ${mark}`);
      assert.deepEqual(sentWith(mark).metadata, { task_type: 'hard' }, 'LangChain sent the metadata');
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark), LARGE_UPSTREAM);
      assert.equal(reply.response_metadata.model_name, LARGE_MODEL, 'the rule sent it to the large tier');
      assert.equal(reply.content, 'A hard answer.');
    });

    test('stream: chunks concatenate to the answer; LangChain asks for usage and gets it', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', content: 'Streaming through tiergate works.', usage: USAGE }));
      let acc: AIMessageChunk | undefined;
      let count = 0;
      for await (const chunk of await chatModel().stream(`Stream something ${mark}`)) {
        count++;
        acc = acc ? acc.concat(chunk) : chunk;
      }
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.equal(up.body.stream, true);
      assert.deepEqual(sentWith(mark).stream_options, { include_usage: true }, 'LangChain streams with include_usage');
      assert.ok(count > 2, `expected several chunks, got ${count}`);
      assert.equal(acc?.content, 'Streaming through tiergate works.');
      assert.equal(acc?.response_metadata.finish_reason, 'stop');
      assert.equal(acc?.response_metadata.system_fingerprint, 'fp_fake');
      assert.equal(acc?.usage_metadata?.input_tokens, USAGE.prompt_tokens);
      assert.equal(acc?.usage_metadata?.output_tokens, USAGE.completion_tokens);
      assert.equal(acc?.usage_metadata?.total_tokens, USAGE_OUT.total_tokens);
    });

    test('bindTools: tools and tool_choice go out, tool_calls (ids, parsed arguments) come back, invoked and streamed; ToolMessages go back as role "tool"', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', tool_calls: TOOL_CALLS, usage: USAGE }));
      const bound = chatModel().bindTools([weatherTool, timeTool], { tool_choice: 'required', parallel_tool_calls: true });
      const question = new HumanMessage(`Weather in Zürich, time in São Paulo? ${mark}`);
      const ai = await bound.invoke([question]);
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(up.body.tools, [weatherTool, timeTool]);
      assert.equal(up.body.tool_choice, 'required');
      assert.equal(up.body.parallel_tool_calls, true);
      assert.deepEqual(
        ai.tool_calls?.map(({ id, name, args }) => ({ id, name, args })),
        [
          { id: TOOL_CALLS[0].id, name: 'get_weather', args: { city: 'Zürich', unit: 'c' } },
          { id: TOOL_CALLS[1].id, name: 'get_time', args: { city: 'São Paulo "SP"' } },
        ],
      );
      assert.equal(ai.response_metadata.finish_reason, 'tool_calls');

      // Streamed the way OpenAI streams tool calls: LangChain's chunks reassemble them.
      const streamMark = marker();
      fake.behave(() => ({ kind: 'reply', tool_calls: TOOL_CALLS, tool_call_deltas: 'split', usage: USAGE }));
      let acc: AIMessageChunk | undefined;
      for await (const chunk of await bound.stream([new HumanMessage(`Again ${streamMark}`)])) acc = acc ? acc.concat(chunk) : chunk;
      assertForwardedAsSent(upstreamWith(streamMark)[0], sentWith(streamMark));
      assert.deepEqual(
        acc?.tool_calls?.map(({ id, name, args }) => ({ id, name, args })),
        ai.tool_calls?.map(({ id, name, args }) => ({ id, name, args })),
      );

      // The results go back as ToolMessages: the upstream sees role "tool" with the call ids.
      fake.behave(() => ({ kind: 'reply', content: 'Zürich: 12 °C; São Paulo: 14:05.', usage: USAGE }));
      const final = await bound.invoke([
        question,
        ai,
        new ToolMessage({ tool_call_id: TOOL_CALLS[0].id, content: '{"temp_c":12}' }),
        new ToolMessage({ tool_call_id: TOOL_CALLS[1].id, content: '14:05' }),
      ]);
      const up2 = upstreamWith(mark, 2)[1];
      assertForwardedAsSent(up2, sentWith(mark));
      const [, assistant, tool1, tool2] = up2.body.messages;
      assert.equal(assistant.role, 'assistant');
      assert.deepEqual(assistant.tool_calls, TOOL_CALLS, 'the tool calls go back with their ids and argument strings');
      assert.deepEqual(tool1, { role: 'tool', tool_call_id: TOOL_CALLS[0].id, content: '{"temp_c":12}' });
      assert.deepEqual(tool2, { role: 'tool', tool_call_id: TOOL_CALLS[1].id, content: '14:05' });
      assert.equal(final.content, 'Zürich: 12 °C; São Paulo: 14:05.');
    });

    test('withStructuredOutput: jsonSchema → response_format json_schema, jsonMode → json_object, functionCalling → a forced tool; each parsed', async () => {
      const schema = {
        type: 'object',
        title: 'verdict',
        description: 'A classification',
        properties: { category: { type: 'string' }, confidence: { type: 'number' } },
        required: ['category', 'confidence'],
        additionalProperties: false,
      };
      const expected = { category: 'billing', confidence: 0.93 };

      const jsonSchemaMark = marker();
      fake.behave(() => ({ kind: 'reply', content: JSON.stringify(expected), usage: USAGE }));
      const viaSchema = await chatModel().withStructuredOutput(schema, { method: 'jsonSchema', name: 'verdict', strict: true }).invoke(`Classify: charged twice ${jsonSchemaMark}`);
      const [schemaUp] = upstreamWith(jsonSchemaMark);
      assertForwardedAsSent(schemaUp, sentWith(jsonSchemaMark));
      assert.equal(schemaUp.body.response_format.type, 'json_schema');
      assert.equal(schemaUp.body.response_format.json_schema.name, 'verdict');
      assert.equal(schemaUp.body.response_format.json_schema.strict, true);
      assert.deepEqual(schemaUp.body.response_format.json_schema.schema.properties, schema.properties);
      assert.deepEqual(viaSchema, expected);

      const jsonModeMark = marker();
      const viaJsonMode = await chatModel().withStructuredOutput(schema, { method: 'jsonMode' }).invoke(`Classify as JSON: charged twice ${jsonModeMark}`);
      const [modeUp] = upstreamWith(jsonModeMark);
      assertForwardedAsSent(modeUp, sentWith(jsonModeMark));
      assert.deepEqual(modeUp.body.response_format, { type: 'json_object' });
      assert.deepEqual(viaJsonMode, expected);

      const toolMark = marker();
      fake.behave(() => ({ kind: 'reply', tool_calls: [{ id: 'call_Vx81', type: 'function', function: { name: 'verdict', arguments: JSON.stringify(expected) } }], usage: USAGE }));
      const viaTool = await chatModel().withStructuredOutput(schema, { method: 'functionCalling', name: 'verdict' }).invoke(`Classify with a tool: charged twice ${toolMark}`);
      const [toolUp] = upstreamWith(toolMark);
      assertForwardedAsSent(toolUp, sentWith(toolMark));
      assert.equal(toolUp.body.tools[0].function.name, 'verdict');
      assert.deepEqual(toolUp.body.tool_choice, { type: 'function', function: { name: 'verdict' } });
      assert.deepEqual(viaTool, expected);
    });
  });
});
