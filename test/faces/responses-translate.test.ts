// The Responses API translation on its own (src/faces/openai-responses/translate.ts): what
// it refuses is a located error naming the field, never a silently dropped one; input items
// become the chat turns a chat model expects; and the stream translator opens and closes
// one output item per text run or tool call, with the status the finish reason implies.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ResponsesRequestError, ResponsesStateError, ResponsesStreamTranslator, toChatBody } from '../../src/faces/openai-responses/translate.ts';

const located = (path: string) => (e: unknown) => e instanceof ResponsesRequestError && e.path === path;

test('refusals name their field: unknown fields, hosted tools, unknown items and parts, bad formats; state is its own error', () => {
  assert.throws(() => toChatBody({ model: 'm', input: 'hi', top_k: 3 }), located('top_k'));
  assert.throws(() => toChatBody({ model: 'm', input: 'hi', tools: [{ type: 'file_search', vector_store_ids: [] }] }), located('tools.0.type'));
  assert.throws(() => toChatBody({ model: 'm', input: [{ type: 'reasoning', summary: [] }] }), located('input.0.type'));
  assert.throws(
    () => toChatBody({ model: 'm', input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] }),
    located('input.0.content.0.type'),
  );
  assert.throws(() => toChatBody({ model: 'm', input: 'hi', text: { format: { type: 'json_schema', schema: {} } } }), located('text.format.name'));
  assert.throws(() => toChatBody({ model: 'm', input: 'hi', truncation: 'auto' }), located('truncation'));
  assert.throws(() => toChatBody({ model: 'm', instructions: 'only a system prompt' }), located('input'));
  assert.throws(() => toChatBody({ input: 'hi' }), located('model'));
  assert.throws(
    () => toChatBody({ model: 'm', input: 'hi', previous_response_id: 'resp_1' }),
    (e: unknown) => e instanceof ResponsesStateError && e.field === 'previous_response_id',
  );
  assert.throws(
    () => toChatBody({ model: 'm', input: 'hi', store: true }),
    (e: unknown) => e instanceof ResponsesStateError && e.field === 'store',
  );
  assert.doesNotThrow(() => toChatBody({ model: 'm', input: 'hi', store: false, previous_response_id: null }));
});

test('input items become chat turns: parallel calls join one assistant turn, outputs become tool messages, images stay parts', () => {
  const { body } = toChatBody({
    model: 'm',
    instructions: 'Be brief.',
    input: [
      { role: 'developer', content: 'Use tools.' },
      {
        type: 'message',
        role: 'user',
        content: [
          { type: 'input_text', text: 'What is this, and where are A1 and B2?' },
          { type: 'input_image', image_url: 'https://x/y.png' },
        ],
      },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Looking.', annotations: [] }] },
      { type: 'function_call', call_id: 'c1', name: 'find', arguments: '{"id":"A1"}' },
      { type: 'function_call', call_id: 'c2', name: 'find', arguments: '{"id":"B2"}' },
      { type: 'function_call_output', call_id: 'c1', output: 'here' },
      { type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: 'there' }] },
    ],
    max_output_tokens: 50,
    reasoning: { effort: 'low' },
    text: { format: { type: 'json_object' } },
  });
  assert.deepEqual(body.messages, [
    { role: 'system', content: 'Be brief.' },
    { role: 'developer', content: 'Use tools.' },
    {
      role: 'user',
      content: [
        { type: 'text', text: 'What is this, and where are A1 and B2?' },
        { type: 'image_url', image_url: { url: 'https://x/y.png' } },
      ],
    },
    {
      role: 'assistant',
      content: 'Looking.',
      tool_calls: [
        { id: 'c1', type: 'function', function: { name: 'find', arguments: '{"id":"A1"}' } },
        { id: 'c2', type: 'function', function: { name: 'find', arguments: '{"id":"B2"}' } },
      ],
    },
    { role: 'tool', tool_call_id: 'c1', content: 'here' },
    { role: 'tool', tool_call_id: 'c2', content: 'there' },
  ]);
  assert.equal(body.max_tokens, 50);
  assert.equal(body.reasoning_effort, 'low');
  assert.deepEqual(body.response_format, { type: 'json_object' });
});

test('the stream translator: a text item, then a function call item at the next output index; a cut answer ends response.incomplete', () => {
  const { echo } = toChatBody({ model: 'm', input: 'hi' });
  const t = new ResponsesStreamTranslator('small-a', echo);
  const events = [
    ...t.push({ choices: [{ index: 0, delta: { content: 'Let me look' }, finish_reason: null }] }),
    ...t.push({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'c9', function: { name: 'find', arguments: '{"q"' } }] }, finish_reason: null }] }),
    ...t.push({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }, finish_reason: 'length' }] }),
    ...t.push({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 5 } }),
    ...t.end(),
    ...t.end(),
  ];
  assert.deepEqual(
    events.map((e) => `${e.type}${typeof e.output_index === 'number' ? `@${e.output_index}` : ''}`),
    [
      'response.created',
      'response.in_progress',
      'response.output_item.added@0',
      'response.content_part.added@0',
      'response.output_text.delta@0',
      'response.output_text.done@0',
      'response.content_part.done@0',
      'response.output_item.done@0',
      'response.output_item.added@1',
      'response.function_call_arguments.delta@1',
      'response.function_call_arguments.delta@1',
      'response.function_call_arguments.done@1',
      'response.output_item.done@1',
      'response.incomplete',
    ],
  );
  const last = events.at(-1)?.response as {
    status: string;
    incomplete_details: unknown;
    model: string;
    output: Array<Record<string, unknown>>;
    usage: Record<string, number>;
  };
  assert.equal(last.status, 'incomplete');
  assert.deepEqual(last.incomplete_details, { reason: 'max_output_tokens' });
  assert.equal(last.model, 'small-a');
  assert.equal(last.output[1].arguments, '{"q":1}');
  assert.equal(last.output[1].call_id, 'c9');
  assert.equal(last.usage.total_tokens, 8);
});
