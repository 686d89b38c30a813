// Every chat example the README shows for the `support` route, sent by the client the
// README shows it with (curl and Python as their exact bodies, the openai SDK, LangChain
// JS, Anthropic's SDK, the Responses API) to a gateway on the shipped gateway.yaml: each
// answer passes its gate on the tier the route's rules choose, with no escalation (issue
// 16), and the LangChain tool call and structured output come back parsed (issue 18). The
// same policy is also served by an OpenAI-wire upstream that answers as a real model would.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { ChatOpenAI } from '@langchain/openai';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { assertValid } from '../support/json-schema.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const SHIPPED = readFileSync(path.join(REPO, 'gateway.yaml'), 'utf8');
const README = readFileSync(path.join(REPO, 'README.md'), 'utf8');

/** The README's LangChain JS tool and schema, as defined there (the first test checks they are). */
const lookupOrderTool = {
  type: 'function' as const,
  function: {
    name: 'lookup_order',
    description: 'Looks an order up by its number.',
    parameters: { type: 'object', properties: { order_number: { type: 'string' } }, required: ['order_number'] },
  },
};
const orderSchema = {
  type: 'object',
  properties: { order_number: { type: 'string' }, state: { type: 'string' } },
  required: ['order_number', 'state'],
  additionalProperties: false,
};

/** The shipped policy's decision log (logs/decisions.jsonl beside its gateway.yaml). */
async function decisionOf(tg: TestGateway, requestId: string | null): Promise<DecisionRecord> {
  assert.ok(requestId, 'the response carries x-tiergate-decision-id');
  const file = path.join(tg.dir, 'logs', 'decisions.jsonl');
  const deadline = Date.now() + 3000;
  for (;;) {
    if (existsSync(file)) {
      const lines = readFileSync(file, 'utf8').split('\n');
      lines.pop(); // the last line is complete only once it ends with \n
      const line = lines.find((l) => l.includes(requestId));
      if (line) return JSON.parse(line) as DecisionRecord;
    }
    if (Date.now() > deadline) assert.fail(`no decision line for ${requestId}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Which evaluators judged the served answer, and their scores ('skipped' when their `when` did not hold). */
function evaluatorsOf(decision: DecisionRecord): Record<string, number | 'skipped'> {
  const served = decision.attempts.at(-1) as { gate?: { evaluators: Array<{ name: string; score: number | null; skipped?: boolean }> } };
  return Object.fromEntries((served.gate?.evaluators ?? []).map((e) => [e.name, e.skipped ? 'skipped' : e.score!]));
}

/**
 * The README's promise for one example: gate passed (or none), no escalation, served on
 * the tier the rules chose, which is the tier the rules say for it.
 */
async function assertServedAsRouted(tg: TestGateway, headers: Headers, tier: string, name: string): Promise<DecisionRecord> {
  const shown = `${name}: gate ${headers.get('x-tiergate-gate')} (score ${headers.get('x-tiergate-quality-score')}), escalations ${headers.get('x-tiergate-escalations')}, tier ${headers.get('x-tiergate-tier')}`;
  assert.ok(['passed', 'none'].includes(headers.get('x-tiergate-gate') ?? ''), shown);
  assert.equal(headers.get('x-tiergate-escalations'), '0', shown);
  assert.equal(headers.get('x-tiergate-tier'), tier, shown);
  const decision = await decisionOf(tg, headers.get('x-tiergate-decision-id'));
  assert.equal(decision.routed_tier, tier, `${name}: the rules chose ${decision.routed_tier} (${decision.routing_reason})`);
  assert.equal(decision.was_escalated, false);
  return decision;
}

/** A fetch that keeps the headers of the last response: LangChain does not show them. */
function headerKeepingFetch(): { fetch: typeof fetch; last: () => Headers } {
  let last: Headers | null = null;
  return {
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      last = response.headers;
      return response;
    },
    last: () => {
      assert.ok(last, 'a response was received');
      return last;
    },
  };
}

describe('README examples on the shipped gateway.yaml (simulator)', () => {
  let tg: TestGateway;
  let client: OpenAI;

  before(async () => {
    tg = await startTestGateway(SHIPPED, { env: { SIMULATOR_TIME_SCALE: '0' } });
    client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    await tg?.close();
  });

  // The README's curl and Python bodies, as they are written there.
  const bodies: Array<{ name: string; body: Record<string, unknown>; tier: string; orderStatus: 'judged' | 'skipped' }> = [
    {
      name: 'Try it (curl) and openai (Python)',
      body: { model: 'support', messages: [{ role: 'user', content: 'Where is my package? Order 12345' }], metadata: { task_type: 'order_status' } },
      tier: 'small',
      orderStatus: 'judged',
    },
    {
      name: 'curl with a key, openai (JS) and LangChain Python',
      body: { model: 'support', messages: [{ role: 'user', content: 'Where is my package?' }], metadata: { task_type: 'order_status' } },
      tier: 'small',
      orderStatus: 'judged',
    },
  ];

  test('the bodies this test sends are the README’s', () => {
    assert.match(README, /"content": "Where is my package\? Order 12345"}\],\s+"metadata": \{"task_type": "order_status"\}/);
    assert.match(README, /messages=\[\{"role": "user", "content": "Where is my package\? Order 12345"\}\],\s+metadata=\{"task_type": "order_status"\}/);
    assert.ok(README.includes(`"content": "Where is my package?"}], "metadata": {"task_type": "order_status"}}'`));
    assert.ok(README.includes(`content: 'Classify: "my parcel never arrived"' }],\n    metadata: { task_type: 'classification' }`));
    assert.ok(README.includes(`content: 'Explain step by step why the sky is blue' }],\n  metadata: { task_type: 'reasoning' }`));
    assert.ok(README.includes(`messages: [{ role: 'user', content: 'Where is my package?' }], metadata: { task_type: 'order_status' } }`));
    assert.ok(README.includes(`modelKwargs: { metadata: { task_type: 'order_status' } }`));
    assert.ok(README.includes(`extra_body={"metadata": {"task_type": "order_status"}}`));
    assert.ok(README.includes(`messages: [{ role: 'user', content: 'Where is my order?' }] });`));
    // The LangChain example defines the names it uses, as this test does.
    assert.ok(
      README.includes(
        `const lookupOrderTool = {\n  type: 'function' as const,\n  function: {\n    name: 'lookup_order',\n    description: 'Looks an order up by its number.',`,
      ),
    );
    assert.ok(README.includes(`parameters: { type: 'object', properties: { order_number: { type: 'string' } }, required: ['order_number'] },`));
    assert.ok(
      README.includes(
        `const orderSchema = {\n  type: 'object',\n  properties: { order_number: { type: 'string' }, state: { type: 'string' } },\n  required: ['order_number', 'state'],`,
      ),
    );
    assert.ok(README.includes(`llm.bindTools([lookupOrderTool]).invoke('Where is order 12345?')`));
    assert.ok(README.includes(`llm.withStructuredOutput(orderSchema, { method: 'jsonSchema' }).invoke('Where is order 12345?')`));
  });

  for (const { name, body, tier, orderStatus } of bodies) {
    test(`${name}: ${JSON.stringify(body.messages)}`, async () => {
      const response = await fetch(`${tg.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      assert.equal(response.status, 200);
      await response.json();
      const decision = await assertServedAsRouted(tg, response.headers, tier, name);
      const evaluators = evaluatorsOf(decision);
      assert.equal(evaluators.heuristics, 1);
      assert.equal(evaluators.order_status, orderStatus === 'judged' ? 1 : 'skipped', JSON.stringify(evaluators));
    });
  }

  test('openai SDK: Classify: "my parcel never arrived" is answered "negative" on small and passes (order_status does not judge a label)', async () => {
    const { data, response } = await client.chat.completions
      .create({
        model: 'support',
        messages: [{ role: 'user', content: 'Classify: "my parcel never arrived"' }],
        metadata: { task_type: 'classification' },
      })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'negative');
    const decision = await assertServedAsRouted(tg, response.headers, 'small', 'classify');
    assert.deepEqual(evaluatorsOf(decision), { heuristics: 1, order_status: 'skipped' });
    assert.equal(Number(response.headers.get('x-tiergate-quality-score')), 1);
  });

  test('openai SDK, streamed: Explain step by step why the sky is blue (reasoning) on large', async () => {
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'support',
        messages: [{ role: 'user', content: 'Explain step by step why the sky is blue' }],
        metadata: { task_type: 'reasoning' },
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    let text = '';
    let usage = false;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = true;
    }
    assert.ok(text.length > 100, text);
    assert.ok(usage, 'include_usage brings the usage chunk');
    const decision = await assertServedAsRouted(tg, response.headers, 'large', 'stream');
    assert.deepEqual(evaluatorsOf(decision), { heuristics: 1, order_status: 'skipped' });
  });

  test('LangChain JS: invoke, bindTools and withStructuredOutput with the README’s metadata, on small', async () => {
    const kept = headerKeepingFetch();
    const llm = new ChatOpenAI({
      model: 'support',
      apiKey: 'unused',
      configuration: { baseURL: tg.baseURL, fetch: kept.fetch },
      modelKwargs: { metadata: { task_type: 'order_status' } },
      maxRetries: 0,
    });
    const reply = await llm.invoke('Where is my package?');
    assert.match(String(reply.content), /in transit|shipped|out for delivery/);
    assert.deepEqual(evaluatorsOf(await assertServedAsRouted(tg, kept.last(), 'small', 'langchain invoke')), { heuristics: 1, order_status: 1 });

    // The simulator calls the tool the prompt is about, with arguments from the prompt (issue 18).
    const called = await llm.bindTools([lookupOrderTool]).invoke('Where is order 12345?');
    assert.deepEqual(
      called.tool_calls?.map((c) => [c.name, c.args]),
      [['lookup_order', { order_number: '12345' }]],
    );
    assert.deepEqual(evaluatorsOf(await assertServedAsRouted(tg, kept.last(), 'small', 'langchain bindTools')), { heuristics: 1, order_status: 'skipped' });

    // And answers in JSON that follows the schema, with a shipment state the order_status gate accepts.
    const structured = await llm.withStructuredOutput(orderSchema, { method: 'jsonSchema' }).invoke('Where is order 12345?');
    assertValid(orderSchema, structured, 'the structured answer');
    assert.equal(structured.order_number, '12345');
    assert.deepEqual(evaluatorsOf(await assertServedAsRouted(tg, kept.last(), 'small', 'langchain structured')), { heuristics: 1, order_status: 1 });
  });

  test('Anthropic SDK: Where is my order? (no metadata) on the default tier, large', async () => {
    const anthropic = new Anthropic({ baseURL: tg.url, apiKey: 'unused', maxRetries: 0 });
    const { data, response } = await anthropic.messages
      .create({ model: 'support', max_tokens: 256, messages: [{ role: 'user', content: 'Where is my order?' }] })
      .withResponse();
    assert.equal(data.content[0].type, 'text');
    const decision = await assertServedAsRouted(tg, response.headers, 'large', 'anthropic');
    assert.deepEqual(evaluatorsOf(decision), { heuristics: 1, order_status: 1 });
  });

  test('openai SDK, Responses API: Where is my package? (order_status) on small, answered by the model that served', async () => {
    assert.ok(README.includes(`client.responses.create({ model: 'support', input: 'Where is my package?', metadata: { task_type: 'order_status' } })`));
    const { data, response } = await client.responses
      .create({ model: 'support', input: 'Where is my package?', metadata: { task_type: 'order_status' } })
      .withResponse();
    assert.match(data.output_text, /in transit|shipped|out for delivery/);
    assert.equal(data.model, response.headers.get('x-tiergate-model'));
    const decision = await assertServedAsRouted(tg, response.headers, 'small', 'responses');
    assert.deepEqual(evaluatorsOf(decision), { heuristics: 1, order_status: 1 });
  });
});

describe('README examples on the shipped gateway.yaml, served by an OpenAI-wire upstream answering as real models do', () => {
  let tg: TestGateway;
  let fake: FakeOpenAI;
  let client: OpenAI;

  before(async () => {
    fake = await startFakeOpenAI();
    tg = await startTestGateway(SHIPPED, {
      env: { SMALL_PROVIDER: 'openai', LARGE_PROVIDER: 'openai', OPENAI_BASE_URL: fake.baseURL, OPENAI_API_KEY: 'sk-readme-examples' },
    });
    client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  test('a one-word label, a short JSON answer and a tool call each pass on small', async () => {
    fake.behave(() => ({ kind: 'reply', content: 'negative' }));
    const classify = await client.chat.completions
      .create({ model: 'support', messages: [{ role: 'user', content: 'Classify: "my parcel never arrived"' }], metadata: { task_type: 'classification' } })
      .withResponse();
    assert.deepEqual(evaluatorsOf(await assertServedAsRouted(tg, classify.response.headers, 'small', 'label')), { heuristics: 1, order_status: 'skipped' });

    fake.behave(() => ({ kind: 'reply', content: '{"order_number":"12345","state":"shipped"}' }));
    const kept = headerKeepingFetch();
    const llm = new ChatOpenAI({
      model: 'support',
      apiKey: 'unused',
      configuration: { baseURL: tg.baseURL, fetch: kept.fetch },
      modelKwargs: { metadata: { task_type: 'order_status' } },
      maxRetries: 0,
    });
    const structured = await llm.withStructuredOutput(orderSchema, { method: 'jsonSchema' }).invoke('Where is order 12345?');
    assert.deepEqual(structured, { order_number: '12345', state: 'shipped' });
    assert.deepEqual(evaluatorsOf(await assertServedAsRouted(tg, kept.last(), 'small', 'structured')), { heuristics: 1, order_status: 1 });

    fake.behave(() => ({
      kind: 'reply',
      tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup_order', arguments: '{"order_number":"12345"}' } }],
    }));
    const called = await llm.bindTools([lookupOrderTool]).invoke('Where is order 12345?');
    assert.equal(called.tool_calls?.[0]?.name, 'lookup_order');
    // The answer is a call to look the order up: it states no shipment state, and is not asked to.
    assert.deepEqual(evaluatorsOf(await assertServedAsRouted(tg, kept.last(), 'small', 'tool call')), { heuristics: 1, order_status: 'skipped' });
  });

  test('issue 16’s short structured answer, {"ok":true}, passes the 0.8 gate on small instead of climbing', async () => {
    fake.behave(() => ({ kind: 'reply', content: '{"ok":true}' }));
    const { data, response } = await client.chat.completions
      .create({
        model: 'support',
        messages: [{ role: 'user', content: 'Is the account of jane@example.com active?' }],
        metadata: { task_type: 'extraction' },
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'status', schema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } },
        },
      })
      .withResponse();
    assert.equal(data.choices[0].message.content, '{"ok":true}');
    const decision = await assertServedAsRouted(tg, response.headers, 'small', 'short JSON');
    assert.deepEqual(evaluatorsOf(decision), { heuristics: 1, order_status: 'skipped' });
  });

  test('after the tool result, the reply is judged by order_status again: a vague one climbs', async () => {
    fake.behave(() => ({ kind: 'reply', content: 'It should be with you soon, thanks for waiting!' }));
    const { response } = await client.chat.completions
      .create({
        model: 'support',
        messages: [
          { role: 'user', content: 'Where is order 12345?' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup_order', arguments: '{"order_number":"12345"}' } }],
          },
          { role: 'tool', tool_call_id: 'call_1', content: '{"state":"in transit"}' },
        ],
        tools: [lookupOrderTool],
        metadata: { task_type: 'order_status' },
      })
      .withResponse();
    assert.equal(response.headers.get('x-tiergate-gate'), 'failed', 'no model stated a shipment state');
    assert.equal(response.headers.get('x-tiergate-escalations'), '1');
    const decision = await decisionOf(tg, response.headers.get('x-tiergate-decision-id'));
    assert.equal(decision.routed_tier, 'small');
    assert.equal(evaluatorsOf(decision).order_status, 0);
  });
});
