// POST /v1/messages with the official @anthropic-ai/sdk as the gateway's client, over real
// HTTP, in front of a local OpenAI-wire upstream: the request is routed by the same
// routes (and keys) as /v1/chat/completions, the upstream sees the translated OpenAI body,
// and the answer, its stream event sequence, tool use and every error come back in
// Anthropic's shapes.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { MessagesStreamTranslator, toChatBody, MessagesRequestError } from '../../src/faces/anthropic-messages/translate.ts';

const KEY = 'team-key-0123456789abcdef';

function policy(baseURL: string, withKeys: boolean): string {
  return `version: 1
${withKeys ? `server:\n  auth:\n    keys:\n      - { name: team, key: ${KEY}, routes: [support] }\n` : ''}providers:
  up: { plugin: openai, base_url: "${baseURL}", api_key: test-key }
models:
  small-model: { provider: up, upstream: fake-small, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  large-model: { provider: up, upstream: fake-large, price: { input_per_mtok: 10, output_per_mtok: 10 } }
tiers:
  - { name: small, models: [small-model] }
  - { name: large, models: [large-model] }
features:
  hard: $contains($string(messages[-1].content), 'prove')
routes:
  support:
    router:
      plugin: rules
      rules:
        - { when: "hard", tier: large, reason: a proof }
    default: small
  other:
    router: { plugin: rules, rules: [] }
    default: small
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

let fake: FakeOpenAI;
let tg: TestGateway;
let keyed: TestGateway;
before(async () => {
  fake = await startFakeOpenAI();
  tg = await startTestGateway(policy(fake.baseURL, false));
  keyed = await startTestGateway(policy(fake.baseURL, true));
});
after(async () => {
  await tg?.close();
  await keyed?.close();
  await fake?.close();
});

const client = (gateway: TestGateway, apiKey = 'unused') => new Anthropic({ baseURL: gateway.url, apiKey, maxRetries: 0 });
const lastUpstream = () => fake.requests[fake.requests.length - 1];

test('messages.create: routed like /v1/chat/completions; the upstream gets the OpenAI body; the answer is an Anthropic message', async () => {
  fake.behave(() => ({ kind: 'reply', content: 'Paris.', usage: { prompt_tokens: 21, completion_tokens: 2 } }));
  const { data, response } = await client(tg)
    .messages.create({
      model: 'support',
      max_tokens: 64,
      system: 'Answer in one word.',
      stop_sequences: ['###'],
      metadata: { user_id: 'u-7' },
      messages: [{ role: 'user', content: 'Capital of France?' }],
    })
    .withResponse();
  assert.equal(data.type, 'message');
  assert.equal(data.role, 'assistant');
  // The model that served, as x-tiergate-model says, not the route asked for.
  assert.equal(data.model, 'small-model');
  assert.equal(response.headers.get('x-tiergate-model'), 'small-model');
  assert.match(data.id, /^msg_/);
  assert.deepEqual(data.content, [{ type: 'text', text: 'Paris.' }]);
  assert.equal(data.stop_reason, 'end_turn');
  assert.deepEqual(data.usage, { input_tokens: 21, output_tokens: 2 });
  assert.equal(response.headers.get('x-tiergate-route'), 'support');
  assert.equal(response.headers.get('x-tiergate-tier'), 'small');
  const sent = lastUpstream().body;
  assert.equal(sent.model, 'fake-small');
  assert.deepEqual(sent.messages, [
    { role: 'system', content: 'Answer in one word.' },
    { role: 'user', content: 'Capital of France?' },
  ]);
  assert.equal(sent.max_tokens, 64);
  assert.deepEqual(sent.stop, ['###']);
  assert.equal(sent.user, 'u-7');
  // The same rules decide: a proof goes large.
  const hard = await client(tg)
    .messages.create({ model: 'support', max_tokens: 64, messages: [{ role: 'user', content: 'prove that √2 is irrational' }] })
    .withResponse();
  assert.equal(hard.response.headers.get('x-tiergate-tier'), 'large');
  assert.equal(hard.data.model, 'large-model');
  assert.equal(lastUpstream().body.model, 'fake-large');
  const lines = await tg.waitForDecisions(2);
  assert.ok(
    lines.some((l) => l.route === 'support' && l.tier === 'large'),
    'the decision log has the routed request',
  );
});

test('messages.stream: the Messages event sequence, text deltas that add up, and usage in message_delta', async () => {
  fake.behave(() => ({ kind: 'reply', content: 'one two three four', usage: { prompt_tokens: 9, completion_tokens: 4 }, chunkDelayMs: 5 }));
  const stream = client(tg).messages.stream({ model: 'support', max_tokens: 64, messages: [{ role: 'user', content: 'count' }] });
  const types: string[] = [];
  let text = '';
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
  }
  const final = await stream.finalMessage();
  assert.equal(final.model, 'small-model', 'message_start names the model that served');
  assert.equal(types[0], 'message_start');
  assert.equal(types[1], 'content_block_start');
  assert.ok(types.filter((t) => t === 'content_block_delta').length >= 2, `several deltas: ${types.join(' ')}`);
  assert.deepEqual(types.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(text, 'one two three four');
  assert.deepEqual(
    final.content,
    [{ type: 'text', text: 'one two three four', citations: null }].map((b) => ({
      type: b.type,
      text: b.text,
      ...('citations' in (final.content[0] ?? {}) ? { citations: b.citations } : {}),
    })),
  );
  assert.equal(final.stop_reason, 'end_turn');
  assert.equal(final.usage.output_tokens, 4);
  assert.equal(lastUpstream().body.stream, true);
  assert.deepEqual(lastUpstream().body.stream_options, { include_usage: true });
});

test('tools: tool definitions and tool_choice go up as OpenAI tools; tool_calls come back as tool_use; tool_result goes up as a tool message', async () => {
  fake.behave(() => ({ kind: 'reply', tool_calls: [{ id: 'call_42', type: 'function', function: { name: 'get_order', arguments: '{"order_id":"A17"}' } }] }));
  const tools = [
    {
      name: 'get_order',
      description: 'Look an order up',
      input_schema: { type: 'object' as const, properties: { order_id: { type: 'string' } }, required: ['order_id'] },
    },
  ];
  const first = await client(tg).messages.create({
    model: 'support',
    max_tokens: 64,
    tools,
    tool_choice: { type: 'tool', name: 'get_order' },
    messages: [{ role: 'user', content: 'Where is order A17?' }],
  });
  assert.equal(first.stop_reason, 'tool_use');
  assert.deepEqual(first.content, [{ type: 'tool_use', id: 'call_42', name: 'get_order', input: { order_id: 'A17' } }]);
  const up = lastUpstream().body;
  assert.deepEqual(up.tools, [{ type: 'function', function: { name: 'get_order', description: 'Look an order up', parameters: tools[0].input_schema } }]);
  assert.deepEqual(up.tool_choice, { type: 'function', function: { name: 'get_order' } });

  fake.behave(() => ({ kind: 'reply', content: 'It shipped on Monday.' }));
  const second = await client(tg).messages.create({
    model: 'support',
    max_tokens: 64,
    tools,
    messages: [
      { role: 'user', content: 'Where is order A17?' },
      { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_42', content: 'shipped 2026-11-30' }] },
    ],
  });
  assert.equal(second.content[0].type === 'text' && second.content[0].text, 'It shipped on Monday.');
  const messages = lastUpstream().body.messages;
  assert.deepEqual(messages.slice(1), [
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_42', type: 'function', function: { name: 'get_order', arguments: '{"order_id":"A17"}' } }] },
    { role: 'tool', tool_call_id: 'call_42', content: 'shipped 2026-11-30' },
  ]);
});

test('a streamed tool call arrives as tool_use with input_json_delta fragments', async () => {
  fake.behave(() => ({
    kind: 'reply',
    tool_calls: [{ id: 'call_7', type: 'function', function: { name: 'lookup', arguments: '{"q":"shipping times"}' } }],
    tool_call_deltas: 'split',
  }));
  const stream = client(tg).messages.stream({
    model: 'support',
    max_tokens: 64,
    tools: [{ name: 'lookup', input_schema: { type: 'object' } }],
    messages: [{ role: 'user', content: 'search' }],
  });
  const final = await stream.finalMessage();
  assert.equal(final.stop_reason, 'tool_use');
  assert.equal(final.content.length, 1);
  const block = final.content[0];
  assert.ok(block.type === 'tool_use');
  assert.equal(block.id, 'call_7');
  assert.equal(block.name, 'lookup');
  assert.deepEqual(block.input, { q: 'shipping times' });
});

test("errors come back in Anthropic's shape: bad request, unknown route, upstream failure, missing and wrong keys; x-api-key is a gateway key", async () => {
  const bad = await client(tg)
    .messages.create({ model: 'support', messages: [{ role: 'user', content: 'hi' }] } as never)
    .catch((e: unknown) => e);
  assert.ok(bad instanceof Anthropic.BadRequestError, String(bad));
  assert.equal((bad.error as { type: string; error: { type: string; message: string } }).error.type, 'invalid_request_error');
  assert.match((bad.error as { error: { message: string } }).error.message, /max_tokens/);

  const unknown = await client(tg)
    .messages.create({ model: 'no-such-route', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })
    .catch((e: unknown) => e);
  assert.ok(unknown instanceof Anthropic.NotFoundError, String(unknown));
  assert.deepEqual(Object.keys(unknown.error as object).sort(), ['error', 'type']);
  assert.equal((unknown.error as { error: { type: string; code: string } }).error.type, 'not_found_error');
  assert.equal((unknown.error as { error: { code: string } }).error.code, 'TG_ERR_REQUEST_UNKNOWN_MODEL');

  fake.behave(() => ({ kind: 'status', status: 500 }));
  const failed = await client(tg)
    .messages.create({ model: 'support', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })
    .catch((e: unknown) => e);
  assert.ok(failed instanceof Anthropic.APIError && failed.status === 502, String(failed));
  assert.equal((failed.error as { type: string }).type, 'error');
  assert.equal((failed.error as { error: { type: string } }).error.type, 'api_error');
  fake.behave(() => ({ kind: 'reply', content: 'ok' }));

  const missing = await new Anthropic({ baseURL: keyed.url, apiKey: 'dropped', defaultHeaders: { 'x-api-key': null }, maxRetries: 0 }).messages
    .create({ model: 'support', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })
    .catch((e: unknown) => e);
  assert.ok(missing instanceof Anthropic.AuthenticationError, String(missing));
  assert.equal((missing.error as { error: { type: string } }).error.type, 'authentication_error');
  const wrong = await client(keyed, 'not-the-key-at-all-000')
    .messages.create({ model: 'support', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })
    .catch((e: unknown) => e);
  assert.ok(wrong instanceof Anthropic.AuthenticationError, String(wrong));
  // The SDK's own header (x-api-key) carries a gateway key; the key's allow-list applies.
  const ok = await client(keyed, KEY).messages.create({ model: 'support', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(ok.type, 'message');
  const forbidden = await client(keyed, KEY)
    .messages.create({ model: 'other', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })
    .catch((e: unknown) => e);
  assert.ok(forbidden instanceof Anthropic.PermissionDeniedError, String(forbidden));
  assert.equal((forbidden.error as { error: { type: string } }).error.type, 'permission_error');
});

test('translation: unknown fields and block types are located 400s, never silently dropped; the stream translator closes what it opened', () => {
  assert.throws(
    () => toChatBody({ model: 'x', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }], top_kk: 3 }),
    (e: unknown) => e instanceof MessagesRequestError && e.path === 'top_kk',
  );
  assert.throws(
    () => toChatBody({ model: 'x', max_tokens: 1, messages: [{ role: 'user', content: [{ type: 'document', source: {} }] }] }),
    /messages\.0\.content\.0\.type: content block type "document" is not supported/,
  );
  assert.throws(
    () => toChatBody({ model: 'x', max_tokens: 1, messages: [{ role: 'assistant', content: [{ type: 'tool_result', tool_use_id: 'a' }] }] }),
    /tool_result blocks belong to user turns/,
  );
  // Sampling fields (which this SDK version no longer types) translate as they are.
  assert.deepEqual(
    Object.fromEntries(
      Object.entries(toChatBody({ model: 'x', max_tokens: 5, temperature: 0.2, top_p: 0.9, messages: [{ role: 'user', content: 'hi' }] }).body).filter(
        ([k]) => k !== 'messages',
      ),
    ),
    { model: 'x', max_tokens: 5, temperature: 0.2, top_p: 0.9 },
  );
  const image = toChatBody({
    model: 'x',
    max_tokens: 1,
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'what is this?' },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
        ],
      },
    ],
  });
  assert.deepEqual(image.body.messages[0].content, [
    { type: 'text', text: 'what is this?' },
    { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
  ]);
  const t = new MessagesStreamTranslator('r');
  const events = [
    ...t.push({ choices: [{ index: 0, delta: { content: 'a' }, finish_reason: null }] }),
    ...t.push({ choices: [{ index: 0, delta: { content: 'b' }, finish_reason: 'length' }] }),
    ...t.end(),
    ...t.end(),
  ];
  assert.deepEqual(
    events.map((e) => e.event),
    ['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop'],
  );
  assert.equal((events[5].data.delta as { stop_reason: string }).stop_reason, 'max_tokens');
});
