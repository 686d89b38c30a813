// POST /v1/responses with the official openai SDK (responses.create, responses.stream) as
// the gateway's client, over real HTTP, in front of fake-openai upstreams scripted per
// model (the two-tier gateway of test/support/gates.ts): a route name in `model` is
// routed, gated and escalated as on /v1/chat/completions, the upstream sees the
// translated chat body, and the answer, its event sequence, function calls, structured
// output and errors come back in the Responses API's shapes, one decision line each.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { apiError } from '../support/http.ts';
import { reply } from '../support/scripted-upstream.ts';
import { startTwoTierGateway, type TwoTierGateway } from '../support/gates.ts';
import { simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';

let gw: TwoTierGateway;
before(async () => {
  gw = await startTwoTierGateway();
});
after(async () => {
  await gw?.close();
});

/**
 * An SDK client that keeps each answer's headers: responses.stream does not show them, and
 * the decision id among them finds the request's decision line.
 */
function headerKeepingClient(): { sdk: OpenAI; headers: Headers[] } {
  const headers: Headers[] = [];
  const sdk = new OpenAI({
    baseURL: gw.tg.baseURL,
    apiKey: 'client-key',
    maxRetries: 0,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      headers.push(res.headers);
      return res;
    },
  });
  return { sdk, headers };
}

/** The one decision line of this response (and no other line with its id). */
async function decisionOf(headers: Headers) {
  const id = headers.get('x-tiergate-decision-id');
  const line = await gw.tg.waitForDecision(id);
  assert.equal(gw.tg.decisions().filter((l) => l.request_id === id).length, 1, 'one decision line per request');
  return line;
}

describe('responses.create', () => {
  test('a route name in model is routed like chat; the upstream gets the chat body; the answer is a Response with the serving model and usage', async () => {
    gw.up.script({ 'up-small-a': reply('Paris.', { prompt_tokens: 21, completion_tokens: 2 }) });
    const { data, response } = await gw.sdk.responses
      .create({ model: 'plain', instructions: 'Answer in one word.', input: 'Capital of France?', max_output_tokens: 64, temperature: 0.3 })
      .withResponse();
    assert.equal(data.object, 'response');
    assert.match(data.id, /^resp_/);
    assert.equal(data.status, 'completed');
    assert.equal(data.model, 'small-a');
    assert.equal(data.output_text, 'Paris.');
    assert.equal(data.output.length, 1);
    assert.equal(data.output[0].type, 'message');
    assert.deepEqual(data.usage, {
      input_tokens: 21,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 2,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 23,
    });
    assert.equal(Reflect.get(data, 'store'), false, 'nothing is stored');
    assert.equal(data.instructions, 'Answer in one word.');
    assert.equal(response.headers.get('x-tiergate-route'), 'plain');
    assert.equal(response.headers.get('x-tiergate-model'), 'small-a');
    assert.equal(response.headers.get('x-tiergate-tier'), 'small');
    assert.equal(response.headers.get('x-tiergate-policy-version'), gw.tg.gateway.manager.runtime.version);
    const [call] = gw.up.to('up-small-a');
    assert.deepEqual(call.body.messages, [
      { role: 'system', content: 'Answer in one word.' },
      { role: 'user', content: 'Capital of France?' },
    ]);
    assert.equal(call.body.max_tokens, 64);
    assert.equal(call.body.temperature, 0.3);
    assert.equal(call.body.max_output_tokens, undefined, 'Responses field names do not leak upstream');
    const line = await decisionOf(response.headers);
    assert.equal(line.route, 'plain');
    assert.equal(line.selected_model, 'small-a');
    assert.equal(line.status, 'ok');
  });

  test('a gated route escalates: the weak small answer fails the gate, the large one serves, and model, headers and decision say so', async () => {
    gw.up.script({ 'up-small-a': reply('[q=0.2] a weak answer'), 'up-large-l': reply('[q=0.9] a strong answer') });
    const { data, response } = await gw.sdk.responses.create({ model: 'gated', input: 'What is the capital of France?' }).withResponse();
    assert.equal(data.output_text, '[q=0.9] a strong answer');
    assert.equal(data.model, 'large-l');
    assert.equal(response.headers.get('x-tiergate-model'), 'large-l');
    assert.equal(response.headers.get('x-tiergate-escalations'), '1');
    assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
    assert.equal(gw.up.to('up-small-a').length, 1);
    assert.equal(gw.up.to('up-large-l').length, 1);
    const line = await decisionOf(response.headers);
    assert.equal(line.escalations, 1);
    assert.equal(line.routed_model, 'small-a');
    assert.equal(line.selected_model, 'large-l');
  });

  test('a function tool round trip: the call comes back as a function_call item; its output goes up as a tool message; the answer follows', async () => {
    const tools: OpenAI.Responses.FunctionTool[] = [
      {
        type: 'function',
        name: 'get_order',
        description: 'Look an order up',
        parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'], additionalProperties: false },
        strict: true,
      },
    ];
    gw.up.script({
      'up-small-a': (n) =>
        n === 0
          ? reply('', undefined, { tool_calls: [{ id: 'call_42', type: 'function', function: { name: 'get_order', arguments: '{"order_id":"A17"}' } }] })
          : reply('It shipped on Monday.'),
    });
    const first = await gw.sdk.responses.create({ model: 'plain', input: 'Where is order A17?', tools, tool_choice: { type: 'function', name: 'get_order' } });
    assert.equal(first.output.length, 1);
    const call = first.output[0];
    assert.ok(call.type === 'function_call', JSON.stringify(call));
    assert.equal(call.call_id, 'call_42');
    assert.equal(call.name, 'get_order');
    assert.deepEqual(JSON.parse(call.arguments), { order_id: 'A17' });
    const up = gw.up.to('up-small-a')[0].body;
    assert.deepEqual(up.tools, [
      { type: 'function', function: { name: 'get_order', description: 'Look an order up', parameters: tools[0].parameters, strict: true } },
    ]);
    assert.deepEqual(up.tool_choice, { type: 'function', function: { name: 'get_order' } });

    const second = await gw.sdk.responses.create({
      model: 'plain',
      tools,
      input: [{ role: 'user', content: 'Where is order A17?' }, call, { type: 'function_call_output', call_id: 'call_42', output: 'shipped 2026-11-30' }],
    });
    assert.equal(second.output_text, 'It shipped on Monday.');
    assert.deepEqual(gw.up.to('up-small-a')[1].body.messages, [
      { role: 'user', content: 'Where is order A17?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_42', type: 'function', function: { name: 'get_order', arguments: '{"order_id":"A17"}' } }] },
      { role: 'tool', tool_call_id: 'call_42', content: 'shipped 2026-11-30' },
    ]);
  });

  test('structured output: text.format json_schema goes up as response_format; the JSON answer comes back in output_text', async () => {
    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false };
    gw.up.script({ 'up-small-a': reply('{"city":"Paris"}') });
    const data = await gw.sdk.responses.create({
      model: 'plain',
      input: 'Capital of France, as JSON',
      text: { format: { type: 'json_schema', name: 'capital', schema, strict: true } },
    });
    assert.deepEqual(JSON.parse(data.output_text), { city: 'Paris' });
    assert.deepEqual(data.text?.format, { type: 'json_schema', name: 'capital', schema, strict: true });
    assert.deepEqual(gw.up.to('up-small-a')[0].body.response_format, { type: 'json_schema', json_schema: { name: 'capital', schema, strict: true } });
  });

  test('state is refused with TG_ERR_RESPONSES_STATE, saying to send the conversation in input; store: false and no store are served; nothing stored is retrieved', async () => {
    gw.up.script({ 'up-small-a': reply('ok') });
    const previous = await apiError(gw.sdk.responses.create({ model: 'plain', input: 'and then?', previous_response_id: 'resp_123' }));
    assert.equal(previous.status, 400);
    assert.equal(previous.code, 'TG_ERR_RESPONSES_STATE');
    assert.equal(previous.param, 'previous_response_id');
    assert.match(previous.message, /send the whole conversation in `input`/);
    // A refused request is a request all the same: its decision line says why.
    const refused = await gw.tg.waitForDecision(previous.headers?.get('x-tiergate-decision-id'));
    assert.equal(refused.status, 'error');
    assert.equal(refused.error_code, 'TG_ERR_RESPONSES_STATE');
    const stored = await apiError(gw.sdk.responses.create({ model: 'plain', input: 'hi', store: true }));
    assert.equal(stored.code, 'TG_ERR_RESPONSES_STATE');
    assert.equal(stored.param, 'store');
    assert.equal(gw.up.calls.length, 0, 'no model was called');
    assert.equal((await gw.sdk.responses.create({ model: 'plain', input: 'hi', store: false })).output_text, 'ok');
    assert.equal((await gw.sdk.responses.create({ model: 'plain', input: 'hi' })).output_text, 'ok');
    const retrieved = await apiError(gw.sdk.responses.retrieve('resp_123'));
    assert.equal(retrieved.status, 400);
    assert.equal(retrieved.code, 'TG_ERR_RESPONSES_STATE');
    assert.match(retrieved.message, /GET \/v1\/responses\/resp_123 needs stored responses/);
    assert.equal((await apiError(gw.sdk.responses.delete('resp_123'))).code, 'TG_ERR_RESPONSES_STATE');
  });

  test("errors are catalogued, in OpenAI's shape: an unknown route, an unknown field, a hosted tool, an upstream failure", async () => {
    gw.up.script({ 'up-small-a': { kind: 'status', status: 500 }, 'up-small-b': { kind: 'status', status: 500 } });
    const unknown = await apiError(gw.sdk.responses.create({ model: 'no-such-route', input: 'hi' }));
    assert.equal(unknown.status, 404);
    assert.equal(unknown.code, 'TG_ERR_REQUEST_UNKNOWN_MODEL');
    const field = await apiError(gw.sdk.responses.create({ model: 'plain', input: 'hi', prompt_cache_key: 'k' }));
    assert.equal(field.status, 400);
    assert.equal(field.code, 'TG_ERR_REQUEST_INVALID');
    assert.equal(field.param, 'prompt_cache_key');
    const hosted = await apiError(gw.sdk.responses.create({ model: 'plain', input: 'hi', tools: [{ type: 'web_search' }] }));
    assert.equal(hosted.code, 'TG_ERR_REQUEST_INVALID');
    assert.equal(hosted.param, 'tools.0.type');
    const item = await apiError(gw.sdk.responses.create({ model: 'plain', input: [{ type: 'item_reference', id: 'msg_1' }] }));
    assert.equal(item.param, 'input.0.type');
    assert.equal(gw.up.calls.length, 0, 'a request the face cannot translate calls no model');
    const failed = await apiError(gw.sdk.responses.create({ model: 'plain', input: 'hi' }));
    assert.equal(failed.status, 502);
    assert.match(String(failed.code), /^TG_ERR_/);
    assert.match(failed.headers?.get('x-tiergate-decision-id') ?? '', /^tg-/);
  });
});

describe('responses.stream', () => {
  test('the Responses event sequence, text deltas that add up, the serving model and usage in response.completed; one decision line', async () => {
    gw.up.script({ 'up-small-a': reply('one two three four', { prompt_tokens: 9, completion_tokens: 4 }, { chunkDelayMs: 5 }) });
    const { sdk, headers } = headerKeepingClient();
    const stream = sdk.responses.stream({ model: 'plain', input: 'count' });
    const types: string[] = [];
    const sequence: number[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      sequence.push(event.sequence_number);
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    const final = await stream.finalResponse();
    const deltas = types.filter((t) => t === 'response.output_text.delta').length;
    assert.ok(deltas >= 2, `several deltas: ${types.join(' ')}`);
    assert.deepEqual(types, [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array<string>(deltas).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    assert.deepEqual(
      sequence,
      types.map((_, i) => i),
    );
    assert.equal(text, 'one two three four');
    assert.equal(final.output_text, 'one two three four');
    assert.equal(final.status, 'completed');
    assert.equal(final.model, 'small-a');
    assert.equal(final.usage?.output_tokens, 4);
    assert.equal(final.usage?.input_tokens, 9);
    const up = gw.up.to('up-small-a')[0].body;
    assert.equal(up.stream, true);
    assert.deepEqual(up.stream_options, { include_usage: true });
    assert.equal(headers[0].get('x-tiergate-model'), 'small-a');
    const line = await decisionOf(headers[0]);
    assert.equal(line.route, 'plain');
    assert.equal(line.status, 'ok');
    assert.equal(line.usage?.completion_tokens, 4);
  });

  test('a streamed function call: output_item.added, function_call_arguments.delta fragments and .done, and the whole call in the final response', async () => {
    gw.up.script({
      'up-small-a': reply('', undefined, {
        tool_calls: [{ id: 'call_7', type: 'function', function: { name: 'lookup', arguments: '{"q":"shipping times"}' } }],
        tool_call_deltas: 'split',
      }),
    });
    const stream = gw.sdk.responses.stream({
      model: 'plain',
      input: 'search',
      tools: [{ type: 'function', name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } }, strict: false }],
    });
    const types: string[] = [];
    let args = '';
    let done = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.function_call_arguments.delta') args += event.delta;
      if (event.type === 'response.function_call_arguments.done') done = event.arguments;
    }
    assert.ok(types.filter((t) => t === 'response.function_call_arguments.delta').length >= 2, types.join(' '));
    assert.deepEqual(types.slice(-3), ['response.function_call_arguments.done', 'response.output_item.done', 'response.completed']);
    assert.equal(args, '{"q":"shipping times"}');
    assert.equal(done, args);
    const final = await stream.finalResponse();
    assert.equal(final.output.length, 1);
    const call = final.output[0];
    assert.ok(call.type === 'function_call');
    assert.equal(call.call_id, 'call_7');
    assert.equal(call.name, 'lookup');
    assert.deepEqual(JSON.parse(call.arguments), { q: 'shipping times' });
  });

  test('a gated route streams the answer that passed (gate "buffer"): the escalation happens before the first event', async () => {
    gw.up.script({ 'up-small-a': reply('[q=0.1] weak'), 'up-large-l': reply('[q=0.95] strong', { prompt_tokens: 5, completion_tokens: 3 }) });
    const { sdk, headers } = headerKeepingClient();
    const final = await sdk.responses.stream({ model: 'gated', input: 'hello' }).finalResponse();
    assert.equal(final.output_text, '[q=0.95] strong');
    assert.equal(final.model, 'large-l');
    assert.equal(final.usage?.output_tokens, 3);
    assert.equal(headers[0].get('x-tiergate-escalations'), '1');
    assert.equal(headers[0].get('x-tiergate-model'), 'large-l');
    assert.equal((await decisionOf(headers[0])).escalations, 1);
  });

  test('a stream that breaks after it began ends with an error event the SDK throws as an APIError', async () => {
    gw.up.script({ 'up-small-a': { kind: 'reset-mid-stream' } });
    const stream = gw.sdk.responses.stream({ model: 'plain', input: 'hello there' });
    const types: string[] = [];
    const error = await (async () => {
      try {
        for await (const event of stream) types.push(event.type);
      } catch (err) {
        return err;
      }
      return null;
    })();
    assert.ok(error instanceof OpenAI.APIError, String(error));
    assert.match(String(error.code), /^TG_ERR_/);
    assert.equal(types[0], 'response.created');
    assert.ok(!types.includes('response.completed'));
  });
});

describe('POST /v1/responses on a gateway with keys', () => {
  const KEY = 'tg-responses-face-key-0123456789';
  let tg: TestGateway;
  before(async () => {
    tg = await startTestGateway(simulatorPolicy({ extra: `server:\n  auth:\n    keys:\n      - { name: responses-team, key: ${KEY}, routes: [support] }\n` }));
  });
  after(async () => {
    await tg?.close();
  });

  test("the caller is authenticated before the body is read; the key's allow-list and name apply", async () => {
    for (const body of ['{not json', JSON.stringify({ model: 'support', input: 'hi' })]) {
      const res = await fetch(`${tg.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'TG_ERR_AUTH_MISSING');
    }
    const sdk = new OpenAI({ baseURL: `${tg.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const { data, response } = await sdk.responses.create({ model: 'support', input: 'hi', metadata: { task_type: 'classification' } }).withResponse();
    assert.equal(data.status, 'completed');
    assert.equal(data.model, 'small-model', 'metadata is routing input, as on the chat API');
    const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.api_key_name, 'responses-team');
    const forbidden = await apiError(sdk.responses.create({ model: 'large-model', input: 'hi' }));
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.code, 'TG_ERR_AUTH_FORBIDDEN');
  });
});
