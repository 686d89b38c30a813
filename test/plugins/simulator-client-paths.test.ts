// Every client path on the shipped, keyless gateway.yaml, whose models are the simulator:
// the official openai SDK asks for tools (auto, none, required, a named function,
// parallel calls, streamed), structured output (json_schema, json_object) and logprobs,
// and gets answers in the form it asked for, whose arguments and objects validate (ajv)
// against the schema it gave (issue 18: the simulator used to answer every one in prose).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionFunctionTool } from 'openai/resources/chat/completions';
import { startShippedGateway, type TestGateway } from '../support/gateway.ts';
import { toolCallsOf } from '../support/clients.ts';
import { assertValid } from '../support/json-schema.ts';

function tool(name: string, parameters: Record<string, unknown>, description = ''): ChatCompletionFunctionTool {
  return { type: 'function', function: { name, description, parameters } };
}

const lookupOrder = tool('lookup_order', { type: 'object', properties: { order_number: { type: 'string' } }, required: ['order_number'] });
const getWeather = tool('get_weather', {
  type: 'object',
  properties: { city: { type: 'string', minLength: 2 }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
  required: ['city', 'unit'],
  additionalProperties: false,
});

/** A schema with each keyword the generator must honour. */
const DEMANDING = {
  type: 'object',
  additionalProperties: false,
  required: ['ticket_id', 'priority', 'score', 'tags', 'customer', 'due', 'contact', 'note', 'escalate', 'items', 'code'],
  properties: {
    ticket_id: { type: 'integer', minimum: 1 },
    priority: { enum: ['high', 'low'] },
    score: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    tags: { type: 'array', items: { type: 'string', pattern: '^[a-z]+$' }, minItems: 3, uniqueItems: true },
    customer: { $ref: '#/definitions/customer' },
    due: { type: 'string', format: 'date' },
    contact: { type: 'string', format: 'email' },
    note: { anyOf: [{ type: 'string', maxLength: 5 }, { type: 'null' }] },
    escalate: { type: 'boolean' },
    items: {
      type: 'array',
      minItems: 2,
      maxItems: 2,
      items: { type: 'object', required: ['qty'], properties: { qty: { type: 'integer', multipleOf: 5, minimum: 7 } } },
    },
    code: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{2}$' },
  },
  definitions: {
    customer: {
      allOf: [
        { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 3 } } },
        { required: ['id'], properties: { id: { type: 'string', format: 'uuid' } } },
      ],
    },
  },
};

describe('the simulator answers every client path on the shipped gateway.yaml', () => {
  let tg: TestGateway;
  let client: OpenAI;

  before(async () => {
    tg = await startShippedGateway();
    client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    await tg?.close();
  });

  const ask = (content: string, extra: Partial<ChatCompletionCreateParamsNonStreaming> = {}) =>
    client.chat.completions.create({ model: 'support', messages: [{ role: 'user', content }], metadata: { task_type: 'order_status' }, ...extra });

  test('tools, auto: a prompt about a tool gets a call to it whose arguments validate and carry the order number; the same request gets the same call', async () => {
    const first = await ask('Where is order 12345?', { tools: [lookupOrder, getWeather] });
    const choice = first.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls?.length, 1, 'only the tool the prompt is about');
    const call = choice.message.tool_calls![0];
    assert.ok(call.type === 'function');
    assert.equal(call.function.name, 'lookup_order');
    assert.match(call.id, /^call_\w+$/);
    const args = JSON.parse(call.function.arguments);
    assertValid(lookupOrder.function.parameters!, args, 'the arguments');
    assert.equal(args.order_number, '12345');
    const again = await ask('Where is order 12345?', { tools: [lookupOrder, getWeather] });
    assert.deepEqual(again.choices[0].message.tool_calls, choice.message.tool_calls);
  });

  test('tools, auto: a prompt about no tool, and the answer after a tool result, are prose', async () => {
    const unrelated = await ask('Say hello to the team', { tools: [lookupOrder] });
    assert.equal(unrelated.choices[0].message.tool_calls, undefined);
    assert.ok((unrelated.choices[0].message.content ?? '').length > 0);

    const afterResult = await client.chat.completions.create({
      model: 'support',
      metadata: { task_type: 'order_status' },
      tools: [lookupOrder],
      messages: [
        { role: 'user', content: 'Where is order 12345?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup_order', arguments: '{"order_number":"12345"}' } }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"state":"in transit"}' },
      ],
    });
    assert.equal(afterResult.choices[0].message.tool_calls, undefined);
    assert.equal(afterResult.choices[0].finish_reason, 'stop');
    assert.match(afterResult.choices[0].message.content ?? '', /order/i);
  });

  test('tool_choice: none never calls; required calls even when the prompt names no tool; a named function is the one called, ending with stop', async () => {
    const none = await ask('Where is order 12345?', { tools: [lookupOrder], tool_choice: 'none' });
    assert.equal(none.choices[0].message.tool_calls, undefined);
    assert.ok(none.choices[0].message.content);

    const required = await ask('Say hello to the team', { tools: [getWeather, lookupOrder], tool_choice: 'required' });
    assert.equal(required.choices[0].finish_reason, 'tool_calls');
    const forcedCall = required.choices[0].message.tool_calls![0];
    assert.ok(forcedCall.type === 'function');
    assert.equal(forcedCall.function.name, 'get_weather', 'the first tool when the prompt is about none');
    assertValid(getWeather.function.parameters!, JSON.parse(forcedCall.function.arguments), 'the arguments');

    const named = await ask('Where is order 12345?', {
      tools: [lookupOrder, getWeather],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    assert.equal(named.choices[0].finish_reason, 'stop');
    const namedCall = named.choices[0].message.tool_calls![0];
    assert.ok(namedCall.type === 'function');
    assert.deepEqual(
      named.choices[0].message.tool_calls!.map((c) => c.type === 'function' && c.function.name),
      ['get_weather'],
    );
    assertValid(getWeather.function.parameters!, JSON.parse(namedCall.function.arguments), 'the arguments');
  });

  test('parallel calls: a prompt about two tools calls both, unless parallel_tool_calls is false', async () => {
    const prompt = 'What is the weather where order 12345 is going?';
    const both = await ask(prompt, { tools: [lookupOrder, getWeather] });
    assert.deepEqual(both.choices[0].message.tool_calls!.map((c) => c.type === 'function' && c.function.name).sort(), ['get_weather', 'lookup_order']);
    assert.equal(new Set(both.choices[0].message.tool_calls!.map((c) => c.id)).size, 2, 'each call has its own id');
    const one = await ask(prompt, { tools: [lookupOrder, getWeather], parallel_tool_calls: false });
    assert.equal(one.choices[0].message.tool_calls!.length, 1);
  });

  test('a demanding schema: refs, allOf, anyOf with null, enums, bounds, multipleOf, unique items, formats and patterns all validate', async () => {
    const demanding = tool('file_ticket', DEMANDING);
    const called = await ask('File ticket 4521 for order 12345, please', { tools: [demanding], tool_choice: 'required' });
    const call = called.choices[0].message.tool_calls![0];
    assert.ok(call.type === 'function');
    const args = JSON.parse(call.function.arguments);
    assertValid(DEMANDING, args, 'the arguments');
    assert.equal(args.ticket_id, 4521, 'an id the prompt gives');

    const structured = await ask('File ticket 4521 for order 12345, please', {
      response_format: { type: 'json_schema', json_schema: { name: 'ticket', schema: DEMANDING } },
    });
    assertValid(DEMANDING, JSON.parse(structured.choices[0].message.content!), 'the answer');
  });

  // By model name: no gate buffers the stream, so the chunks are the simulator's own.
  test('a streamed call arrives as tool_call deltas, the arguments in pieces, that assemble into the call a complete answer makes', async () => {
    const request = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Where is order 12345?' }], tools: [lookupOrder] };
    const complete = await client.chat.completions.create(request);
    const stream = await client.chat.completions.create({ ...request, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.deepEqual(toolCallsOf(chunks), complete.choices[0].message.tool_calls);
    assert.ok(chunks.filter((c) => c.choices[0]?.delta?.tool_calls).length > 2, 'the arguments come in pieces');
    assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason).at(-1)?.choices[0].finish_reason, 'tool_calls');
  });

  test('response_format json_schema: an object that validates, with the order number and a shipment state the order_status gate accepts', async () => {
    const schema = {
      type: 'object',
      properties: { order_number: { type: 'string' }, state: { type: 'string' } },
      required: ['order_number', 'state'],
      additionalProperties: false,
    };
    const { data, response } = await ask('Where is order 12345?', {
      response_format: { type: 'json_schema', json_schema: { name: 'order', schema, strict: true } },
    }).withResponse();
    const value = JSON.parse(data.choices[0].message.content!);
    assertValid(schema, value, 'the answer');
    assert.equal(value.order_number, '12345');
    assert.match(value.state, /in transit|shipped|out for delivery/);
    assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
    assert.equal(response.headers.get('x-tiergate-escalations'), '0');
  });

  test('response_format json_object: a JSON object', async () => {
    const answer = await ask('Summarise the refund policy as JSON', { response_format: { type: 'json_object' } });
    const value = JSON.parse(answer.choices[0].message.content!);
    assert.equal(typeof value, 'object');
    assert.ok(value !== null && !Array.isArray(value));
  });

  test('logprobs with top_logprobs: one entry per token, joining to the content, each with its alternatives, most likely first, probabilities adding to at most 1', async () => {
    const answer = await ask('Where is order 12345?', { logprobs: true, top_logprobs: 3 });
    const content = answer.choices[0].logprobs?.content;
    assert.ok(content && content.length > 3);
    assert.equal(content.map((t) => t.token).join(''), answer.choices[0].message.content);
    for (const entry of content) {
      assert.ok(entry.logprob <= 0);
      assert.equal(entry.top_logprobs.length, 3);
      assert.ok(
        entry.top_logprobs.some((t) => t.token === entry.token && t.logprob === entry.logprob),
        'the token is among its alternatives',
      );
      const values = entry.top_logprobs.map((t) => t.logprob);
      assert.deepEqual(
        values,
        [...values].sort((a, b) => b - a),
      );
      assert.ok(values.reduce((sum, lp) => sum + Math.exp(lp), 0) <= 1 + 1e-9);
    }
    const without = await ask('Where is order 12345?');
    assert.equal(without.choices[0].logprobs ?? null, null, 'only when asked');
  });
});
