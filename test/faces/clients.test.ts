// The clients teams already use, over real HTTP: the official openai SDK and LangChain
// JS's ChatOpenAI talk to tiergate; tiergate's openai provider talks to fake-openai.
// Each test records the exact request the client put on the wire (a recording fetch
// given to the client) and the request the upstream received, and checks that every
// field arrived untouched except `model` (route → upstream model name) and `metadata`
// (tiergate's routing input, documented as not forwarded); then that what the upstream
// answered (tool_calls with ids and arguments, finish_reason, usage with its token
// details, system_fingerprint, logprobs, several choices) reached the client untouched
// except `model` (the policy model that answered).
// This file: the openai SDK. LangChain JS: clients-langchain.test.ts. The gateway, the
// upstream's answers and the checks they share: test/support/clients.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { FakeOpenAI } from '../support/fake-openai.ts';
import {
  asServed,
  assertForwardedAsSent,
  marker,
  SERVED_MODEL,
  startClientsGateway,
  timeTool,
  TOOL_CALLS,
  toolCallsOf,
  UPSTREAM_MODEL,
  USAGE,
  USAGE_OUT,
  weatherTool,
  withoutUsage,
  type ClientsGateway,
} from '../support/clients.ts';

describe('clients → tiergate → an OpenAI-format upstream', () => {
  let gateway: ClientsGateway | undefined;
  let fake: FakeOpenAI;
  let client: OpenAI;

  before(async () => {
    gateway = await startClientsGateway();
    ({ fake, client } = gateway);
  });
  after(async () => {
    await gateway?.close();
  });

  const upstreamWith = (mark: string, expected = 1) => gateway!.upstreamWith(mark, expected);
  const sentWith = (mark: string) => gateway!.sentWith(mark);

  describe('the openai SDK', () => {
    test('tool calls: tools, tool_choice and parallel_tool_calls in; tool_calls with ids and arguments out; then a turn with role "tool" messages', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', tool_calls: TOOL_CALLS, usage: USAGE }));
      const messages: ChatCompletionMessageParam[] = [
        { role: 'system', content: 'You answer with tools.' },
        { role: 'user', content: `Weather in Zürich and the time in São Paulo? ${mark}` },
      ];
      const first = await client.chat.completions.create({
        model: 'assistant',
        messages,
        tools: [weatherTool, timeTool],
        tool_choice: 'required',
        parallel_tool_calls: true,
      });
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
      const second = await client.chat.completions.create({
        model: 'assistant',
        messages: followUp,
        tools: [weatherTool, timeTool],
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
      });
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
          schema: {
            type: 'object',
            properties: { city: { type: 'string' }, temp_c: { type: 'number' } },
            required: ['city', 'temp_c'],
            additionalProperties: false,
          },
        },
      };
      const data = await client.chat.completions.parse({
        model: 'assistant',
        messages: [{ role: 'user', content: `Weather in Zürich? ${mark}` }],
        response_format: responseFormat,
      });
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
        .create({
          model: 'assistant',
          messages: [{ role: 'user', content: `Why is the sky blue? ${mark}` }],
          stream: true,
          stream_options: { include_usage: true },
          temperature: 0,
        })
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
      assert.ok(
        chunks.slice(0, -1).every((c) => c.usage === null),
        'the other chunks say usage: null, as OpenAI sends them',
      );
      assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'The sky is blue because of Rayleigh scattering.');

      // Without include_usage the client gets the same chunks minus usage; the upstream is still asked for it.
      const plainMark = marker();
      const plain: ChatCompletionChunk[] = [];
      for await (const chunk of await client.chat.completions.create({
        model: 'assistant',
        messages: [{ role: 'user', content: `Again ${plainMark}` }],
        stream: true,
      }))
        plain.push(chunk);
      const [plainUp] = upstreamWith(plainMark);
      assertForwardedAsSent(plainUp, sentWith(plainMark));
      assert.deepEqual(plain, withoutUsage(plainUp.answer as object[]).map(asServed));
    });

    test('sampling and control fields pass through (seed, logprobs, top_logprobs, n, stop, temperature, top_p, max_completion_tokens, user, penalties, logit_bias, store, service_tier, reasoning_effort); logprobs and every choice come back', async () => {
      const mark = marker();
      const logprobsA = [
        {
          token: 'Bon',
          logprob: -0.01,
          top_logprobs: [
            { token: 'Bon', logprob: -0.01 },
            { token: 'Sal', logprob: -4.7 },
          ],
        },
        {
          token: 'jour',
          logprob: -0.002,
          top_logprobs: [
            { token: 'jour', logprob: -0.002 },
            { token: 'soir', logprob: -6.3 },
          ],
        },
      ];
      const logprobsB = [
        {
          token: 'Salut',
          logprob: -0.5,
          top_logprobs: [
            { token: 'Salut', logprob: -0.5 },
            { token: 'Coucou', logprob: -1.2 },
          ],
        },
      ];
      fake.behave(() => ({
        kind: 'reply',
        choices: [
          { content: 'Bonjour', logprobs: logprobsA },
          { content: 'Salut', logprobs: logprobsB, finish_reason: 'length' },
        ],
        usage: USAGE,
        system_fingerprint: 'fp_f33667828e',
      }));
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
      for (const key of [
        'seed',
        'logprobs',
        'top_logprobs',
        'n',
        'stop',
        'temperature',
        'top_p',
        'max_completion_tokens',
        'user',
        'presence_penalty',
        'frequency_penalty',
        'logit_bias',
        'store',
        'service_tier',
        'reasoning_effort',
      ] as const) {
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
          {
            content: 'Hello there, friend',
            logprobs: [
              { token: 'Hello', logprob: -0.1 },
              { token: ' there', logprob: -0.2 },
              { token: ', friend', logprob: -0.3 },
            ],
          },
          { content: 'Hi', logprobs: [{ token: 'Hi', logprob: -0.4 }] },
        ],
        usage: USAGE,
      }));
      const chunks: ChatCompletionChunk[] = [];
      const stream = await client.chat.completions.create({
        model: 'assistant',
        messages: [{ role: 'user', content: `Greet me ${mark}` }],
        n: 2,
        logprobs: true,
        top_logprobs: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      for await (const chunk of stream) chunks.push(chunk);
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(chunks, (up.answer as object[]).map(asServed));
      const textOf = (index: number) => chunks.flatMap((c) => c.choices.filter((ch) => ch.index === index).map((ch) => ch.delta.content ?? '')).join('');
      assert.equal(textOf(0), 'Hello there, friend');
      assert.equal(textOf(1), 'Hi');
      const tokensOf = (index: number) =>
        chunks.flatMap((c) =>
          c.choices
            .filter((ch) => ch.index === index)
            .flatMap((ch) => ch.logprobs?.content ?? [])
            .map((t) => t.token),
        );
      assert.deepEqual(tokensOf(0), ['Hello', ' there', ', friend']);
      assert.deepEqual(tokensOf(1), ['Hi']);
    });

    test('through a gated route (streams buffered, gated, replayed): tool_calls, finish_reason, system_fingerprint, service_tier, logprobs and usage come back', async () => {
      const mark = marker();
      const logprobs = [{ token: 'Checking', logprob: -0.05, top_logprobs: [{ token: 'Checking', logprob: -0.05 }] }];
      fake.behave(() => ({
        kind: 'reply',
        content: 'Checking.',
        tool_calls: TOOL_CALLS,
        logprobs,
        usage: USAGE,
        system_fingerprint: 'fp_gated01',
        service_tier: 'default',
      }));
      const json = await client.chat.completions.create({
        model: 'gated',
        messages: [{ role: 'user', content: `Weather? ${mark}` }],
        tools: [weatherTool, timeTool],
        logprobs: true,
        top_logprobs: 1,
      });
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(json, asServed(up.answer!), 'the gated JSON answer is the upstream answer');

      const streamMark = marker();
      const chunks: ChatCompletionChunk[] = [];
      const stream = await client.chat.completions.create({
        model: 'gated',
        messages: [{ role: 'user', content: `Weather? ${streamMark}` }],
        tools: [weatherTool, timeTool],
        logprobs: true,
        top_logprobs: 1,
        stream: true,
        stream_options: { include_usage: true },
      });
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
        logprobs.map((t) => ({
          ...t,
          bytes: [...Buffer.from(t.token)],
          top_logprobs: t.top_logprobs.map((a) => ({ ...a, bytes: [...Buffer.from(a.token)] })),
        })),
      );
      assert.deepEqual(chunks.at(-1)?.usage, USAGE_OUT);
    });
  });
});
