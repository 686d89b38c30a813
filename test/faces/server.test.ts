// The gateway's HTTP face over real HTTP, with the official openai SDK as the client,
// on the simulator provider (time_scale 0, so answers are instant and deterministic).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { ChatCompletionCreateParamsNonStreaming } from 'openai/resources/chat/completions';
import { simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { apiError } from '../support/http.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';

const PRICES = {
  'small-model': { input_per_mtok: 0.15, output_per_mtok: 0.6 },
  'large-model': { input_per_mtok: 2.5, output_per_mtok: 10 },
} as const;

function clientFor(tg: TestGateway): OpenAI {
  return new OpenAI({ baseURL: tg.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 5000 });
}

/** A create() body with `metadata` of any shape (the SDK types it as Record<string, string>). */
function chat(content: string, extra: Record<string, unknown> = {}): ChatCompletionCreateParamsNonStreaming {
  return { model: 'support', messages: [{ role: 'user', content }], ...extra } as ChatCompletionCreateParamsNonStreaming;
}

/** Calls the SDK and returns the APIError it throws. */

/** Raw POST to /v1/chat/completions; returns status and parsed body. */
async function rawPost(
  tg: TestGateway,
  body: string,
  headers: Record<string, string> = { 'content-type': 'application/json' },
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${tg.url}/v1/chat/completions`, { method: 'POST', headers, body });
  const text = await res.text();
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Asserts the OpenAI error shape with exactly these four keys. */
function assertErrorShape(body: any, code: string, param?: string | null): void {
  assert.equal(typeof body, 'object', `error body: ${JSON.stringify(body)}`);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(body.error.code, code, JSON.stringify(body));
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
  assert.equal(typeof body.error.type, 'string');
  if (param !== undefined) assert.equal(body.error.param, param, JSON.stringify(body));
}

function costOf(model: keyof typeof PRICES, usage: { prompt_tokens: number; completion_tokens: number }): number {
  const price = PRICES[model];
  return (usage.prompt_tokens * price.input_per_mtok + usage.completion_tokens * price.output_per_mtok) / 1e6;
}

describe('gateway over HTTP (simulator)', () => {
  let tg: TestGateway;
  let client: OpenAI;

  before(async () => {
    tg = await startTestGateway(simulatorPolicy({ extra: 'server: { body_limit: 1kb }\n' }));
    client = clientFor(tg);
  });
  after(async () => {
    await tg?.close();
  });

  test('a non-streaming completion through a route has the OpenAI shape and the decision headers', async () => {
    const { data, response } = await client.chat.completions.create(chat('What is the capital of France?')).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.model, 'large-model', 'the body names the policy model, not the upstream one');
    assert.equal(data.choices.length, 1);
    assert.equal(data.choices[0].message.role, 'assistant');
    assert.equal(typeof data.choices[0].message.content, 'string');
    assert.ok((data.choices[0].message.content ?? '').length > 0);
    assert.ok(data.choices[0].finish_reason === 'stop' || data.choices[0].finish_reason === 'length');
    assert.ok(data.usage, 'usage is present');
    assert.ok(data.usage.prompt_tokens > 0);
    assert.ok(data.usage.completion_tokens > 0);
    assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);
    assert.equal('simulated' in data, false, 'the provider-internal marker is not leaked');

    assert.equal(response.headers.get('x-tiergate-route'), 'support');
    assert.equal(response.headers.get('x-tiergate-model'), 'large-model');
    assert.equal(response.headers.get('x-tiergate-tier'), 'large');
    assert.match(response.headers.get('x-tiergate-decision-id') ?? '', /^tg-[0-9a-f-]{36}$/);
    assert.equal(response.headers.get('x-tiergate-policy-version'), tg.gateway.manager.runtime.version);
    assert.match(response.headers.get('x-tiergate-policy-version') ?? '', /^[0-9a-f]{12}$/);
    assert.equal(response.headers.get('x-tiergate-simulated'), 'true');
  });

  test('a rule picks the tier from metadata; without a match the route default applies', async () => {
    const small = await client.chat.completions.create(chat('Is this ticket about billing?', { metadata: { task_type: 'classification' } })).withResponse();
    assert.equal(small.data.model, 'small-model');
    assert.equal(small.response.headers.get('x-tiergate-tier'), 'small');
    assert.equal(small.response.headers.get('x-tiergate-model'), 'small-model');

    const other = await client.chat.completions.create(chat('Is this ticket about billing?', { metadata: { task_type: 'reasoning' } })).withResponse();
    assert.equal(other.data.model, 'large-model');
    assert.equal(other.response.headers.get('x-tiergate-tier'), 'large');

    const none = await client.chat.completions.create(chat('Is this ticket about billing?')).withResponse();
    assert.equal(none.response.headers.get('x-tiergate-tier'), 'large');
    assert.notEqual(small.response.headers.get('x-tiergate-decision-id'), none.response.headers.get('x-tiergate-decision-id'));
  });

  test('streaming with the SDK: chunks concatenate to the same text as the JSON answer; no usage unless asked', async () => {
    const prompt = 'Name three primary colours.';
    const full = await client.chat.completions.create(chat(prompt, { metadata: { task_type: 'classification' } }));
    const { data: stream, response } = await client.chat.completions
      .create({ ...chat(prompt, { metadata: { task_type: 'classification' } }), stream: true })
      .withResponse();
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(response.headers.get('x-tiergate-model'), 'small-model');
    assert.equal(response.headers.get('x-tiergate-tier'), 'small');
    assert.equal(response.headers.get('x-tiergate-route'), 'support');
    assert.ok(response.headers.get('x-tiergate-decision-id'));
    let text = '';
    let chunks = 0;
    let finish: string | null = null;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.model, 'small-model');
      assert.equal(chunk.usage ?? null, null, 'no chunk carries usage without stream_options.include_usage');
      assert.equal('simulated' in chunk, false);
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? '';
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    assert.ok(chunks > 1, `expected several chunks, got ${chunks}`);
    assert.ok(text.length > 0);
    assert.equal(text, full.choices[0].message.content, 'the simulator is deterministic: stream and JSON agree');
    assert.equal(finish, full.choices[0].finish_reason);
  });

  test('streaming with include_usage: a final usage chunk arrives', async () => {
    const stream = await client.chat.completions.create({ ...chat('Summarise the plot of Hamlet.'), stream: true, stream_options: { include_usage: true } });
    let text = '';
    const usages: OpenAI.CompletionUsage[] = [];
    let usageChunkChoices = -1;
    for await (const chunk of stream) {
      for (const choice of chunk.choices) text += choice.delta.content ?? '';
      if (chunk.usage) {
        usages.push(chunk.usage);
        usageChunkChoices = chunk.choices.length;
      }
    }
    assert.ok(text.length > 0);
    assert.equal(usages.length, 1, 'exactly one chunk carries usage');
    assert.equal(usageChunkChoices, 0, 'the usage chunk has no choices, as OpenAI sends it');
    assert.ok(usages[0].prompt_tokens > 0);
    assert.ok(usages[0].completion_tokens > 0);
    assert.equal(usages[0].total_tokens, usages[0].prompt_tokens + usages[0].completion_tokens);
  });

  test('a concrete model name is served directly, without routing', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'small-model', messages: [{ role: 'user', content: 'Hello!' }] }).withResponse();
    assert.equal(data.model, 'small-model');
    assert.equal(response.headers.get('x-tiergate-model'), 'small-model');
    assert.equal(response.headers.get('x-tiergate-tier'), 'small');
    assert.equal(response.headers.get('x-tiergate-route'), null, 'no route was involved');
    const id = response.headers.get('x-tiergate-decision-id');
    const lines = await tg.waitForDecision(id);
    assert.equal(lines.route, null);
    assert.equal(lines.selected_model, 'small-model');
    assert.match(lines.routing_reason, /no routing/);
    assert.deepEqual(lines.alternative_models, []);
  });

  test('an unknown model is a 404 TG_ERR_REQUEST_UNKNOWN_MODEL in the OpenAI error shape', async () => {
    const err = await apiError(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }));
    assert.ok(err instanceof OpenAI.NotFoundError, `expected NotFoundError, got ${err.constructor.name}`);
    assert.equal(err.status, 404);
    assert.equal(err.code, 'TG_ERR_REQUEST_UNKNOWN_MODEL');
    assert.equal((err.error as any).code, 'TG_ERR_REQUEST_UNKNOWN_MODEL');
    assert.equal(err.param, 'model');
    assert.equal(err.type, 'not_found_error');
    assert.match(err.message, /no-such-model/);

    const raw = await rawPost(tg, JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(raw.status, 404);
    assertErrorShape(raw.body, 'TG_ERR_REQUEST_UNKNOWN_MODEL', 'model');
  });

  test('GET /v1/models lists every route and model', async () => {
    const ids: string[] = [];
    const entries: any[] = [];
    for await (const model of client.models.list()) {
      ids.push(model.id);
      entries.push(model);
      assert.equal(model.object, 'model');
      assert.equal(typeof model.created, 'number');
    }
    assert.deepEqual(ids.sort(), ['large-model', 'small-model', 'support']);
    const route = entries.find((m) => m.id === 'support');
    assert.equal(route.tiergate.kind, 'route');
    const small = entries.find((m) => m.id === 'small-model');
    assert.equal(small.tiergate.kind, 'model');
    assert.equal(small.tiergate.tier, 'small');
  });

  test('/healthz and /readyz answer 200', async () => {
    const health = await fetch(`${tg.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
    const ready = await fetch(`${tg.url}/readyz`);
    assert.equal(ready.status, 200);
    const body = (await ready.json()) as any;
    assert.equal(body.status, 'ready');
    assert.equal(body.policy_version, tg.gateway.manager.runtime.version);
  });

  describe('bad requests are 4xx in the OpenAI error shape and never hurt the process', () => {
    test('malformed JSON → 400 TG_ERR_REQUEST_JSON', async () => {
      for (const body of ['{"model": "support", "messages": [', '{not json}', 'model=support']) {
        const res = await rawPost(tg, body);
        assert.equal(res.status, 400, body);
        assertErrorShape(res.body, 'TG_ERR_REQUEST_JSON');
        assert.equal(res.body.error.type, 'invalid_request_error');
      }
    });

    test('malformed JSON sent as form encoding (as curl -d does) is still a JSON error', async () => {
      const res = await rawPost(tg, 'model=support&messages=hi', { 'content-type': 'application/x-www-form-urlencoded' });
      assert.equal(res.status, 400);
      assertErrorShape(res.body, 'TG_ERR_REQUEST_JSON');
    });

    test('valid JSON that is not an object → 400 TG_ERR_REQUEST_INVALID', async () => {
      for (const body of ['[]', '[{"model":"support"}]', '"hello"', '42', 'null', 'true']) {
        const res = await rawPost(tg, body);
        assert.equal(res.status, 400, body);
        assertErrorShape(res.body, 'TG_ERR_REQUEST_INVALID');
        assert.match(res.body.error.message, /object/, `${body}: ${res.body.error.message}`);
      }
    });

    test('an empty body → 400 with messages (or model) named as the problem', async () => {
      const res = await rawPost(tg, '');
      assert.equal(res.status, 400);
      assertErrorShape(res.body, 'TG_ERR_REQUEST_INVALID');
      assert.ok(['model', 'messages'].includes(res.body.error.param), `param: ${res.body.error.param}`);
    });

    const invalid: Array<{ name: string; body: unknown; param: string }> = [
      { name: 'missing messages', body: { model: 'support' }, param: 'messages' },
      { name: 'missing model', body: { messages: [{ role: 'user', content: 'hi' }] }, param: 'model' },
      { name: 'empty messages', body: { model: 'support', messages: [] }, param: 'messages' },
      { name: 'messages is a string', body: { model: 'support', messages: 'hi' }, param: 'messages' },
      { name: 'unknown role', body: { model: 'support', messages: [{ role: 'robot', content: 'hi' }] }, param: 'messages[0].role' },
      {
        name: 'role missing in the second message',
        body: { model: 'support', messages: [{ role: 'user', content: 'hi' }, { content: 'x' }] },
        param: 'messages[1].role',
      },
      { name: 'temperature is a string', body: { model: 'support', messages: [{ role: 'user', content: 'hi' }], temperature: 'hot' }, param: 'temperature' },
      { name: 'negative max_tokens', body: { model: 'support', messages: [{ role: 'user', content: 'hi' }], max_tokens: -1 }, param: 'max_tokens' },
      { name: 'model is a number', body: { model: 7, messages: [{ role: 'user', content: 'hi' }] }, param: 'model' },
      { name: 'stream is a string', body: { model: 'support', messages: [{ role: 'user', content: 'hi' }], stream: 'yes' }, param: 'stream' },
    ];
    for (const { name, body, param } of invalid) {
      test(`${name} → 400 TG_ERR_REQUEST_INVALID with param ${param}`, async () => {
        const res = await rawPost(tg, JSON.stringify(body));
        assert.equal(res.status, 400);
        assertErrorShape(res.body, 'TG_ERR_REQUEST_INVALID', param);
        assert.equal(res.body.error.type, 'invalid_request_error');
        assert.ok(res.body.error.message.includes(param), `the message names ${param}: ${res.body.error.message}`);
      });
    }

    test('the SDK surfaces a validation error as BadRequestError with code and param', async () => {
      const err = await apiError(
        client.chat.completions.create({ model: 'support', messages: [{ role: 'user', content: 'hi' }], temperature: 'hot' as unknown as number }),
      );
      assert.ok(err instanceof OpenAI.BadRequestError);
      assert.equal(err.status, 400);
      assert.equal(err.code, 'TG_ERR_REQUEST_INVALID');
      assert.equal(err.param, 'temperature');
    });

    test('a body over server.body_limit → 413 TG_ERR_REQUEST_TOO_LARGE', async () => {
      const big = JSON.stringify({ model: 'support', messages: [{ role: 'user', content: 'x'.repeat(4000) }] });
      const res = await rawPost(tg, big);
      assert.equal(res.status, 413);
      assertErrorShape(res.body, 'TG_ERR_REQUEST_TOO_LARGE');
      assert.match(res.body.error.message, /1kb/);
      // And through the SDK.
      const err = await apiError(client.chat.completions.create(chat('y'.repeat(4000))));
      assert.equal(err.status, 413);
      assert.equal(err.code, 'TG_ERR_REQUEST_TOO_LARGE');
      // A body just under the limit is fine.
      const ok = await client.chat.completions.create(chat('z'.repeat(700)));
      assert.ok(ok.choices[0].message.content);
    });

    test('an unknown endpoint → 404 TG_ERR_NOT_FOUND', async () => {
      for (const [method, path] of [
        ['GET', '/v1/nothing'],
        ['POST', '/v1/completions'],
        ['GET', '/v1/chat/completions'],
        ['DELETE', '/v1/models'],
      ]) {
        const res = await fetch(`${tg.url}${path}`, { method });
        assert.equal(res.status, 404, `${method} ${path}`);
        assertErrorShape(await res.json(), 'TG_ERR_NOT_FOUND');
      }
      const err = await apiError(client.completions.create({ model: 'support', prompt: 'hi' }));
      assert.equal(err.status, 404);
      assert.equal(err.code, 'TG_ERR_NOT_FOUND');
    });

    test('after all of that the gateway still answers normally', async () => {
      const { data, response } = await client.chat.completions.create(chat('Still there?')).withResponse();
      assert.ok((data.choices[0].message.content ?? '').length > 0);
      assert.equal(response.status, 200);
      const ready = await fetch(`${tg.url}/readyz`);
      assert.equal(ready.status, 200);
    });
  });
});

describe('decision log', () => {
  const MARKER = 'zq-marker-7f3a9c';

  test('one line per request, errors included, with exact costs and no prompt text by default', async () => {
    const tg = await startTestGateway(simulatorPolicy());
    try {
      const client = clientFor(tg);
      const routed = await client.chat.completions.create(chat(`Classify this ticket ${MARKER}`, { metadata: { task_type: 'classification' } })).withResponse();
      const byDefault = await client.chat.completions.create(chat(`Explain this ticket ${MARKER}`)).withResponse();
      const streamed = await client.chat.completions.create({ ...chat(`Stream this ${MARKER}`), stream: true }).withResponse();
      let streamedText = '';
      for await (const chunk of streamed.data) streamedText += chunk.choices[0]?.delta.content ?? '';
      assert.ok(streamedText.length > 0);
      const unknown = await rawPost(tg, JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: `unknown ${MARKER}` }] }));
      assert.equal(unknown.status, 404);
      const malformed = await rawPost(tg, `{"model": "support", "messages": [{"role": "user", "content": "${MARKER}"`);
      assert.equal(malformed.status, 400);
      const invalid = await rawPost(tg, JSON.stringify({ model: 'support', messages: [{ role: 'robot', content: MARKER }] }));
      assert.equal(invalid.status, 400);

      const lines = await tg.waitForDecisions(6);
      // Nothing more arrives: exactly one line per request.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(tg.decisions().length, 6);
      const version = tg.gateway.manager.runtime.version;

      const expectations = [
        {
          res: routed.response,
          data: routed.data,
          model: 'small-model' as const,
          tier: 'small',
          confidence: 0.9,
          reason: 'rule 1: easy',
          features: { task_type: 'classification' },
          alternatives: ['large-model'],
          stream: false,
        },
        {
          res: byDefault.response,
          data: byDefault.data,
          model: 'large-model' as const,
          tier: 'large',
          confidence: 0.5,
          reason: /no rule matched/,
          features: {},
          alternatives: ['small-model'],
          stream: false,
        },
      ];
      for (const [i, want] of expectations.entries()) {
        const line = lines[i];
        assert.equal(line.request_id, want.res.headers.get('x-tiergate-decision-id'));
        assert.equal(line.policy_version, want.res.headers.get('x-tiergate-policy-version'));
        assert.equal(line.policy_version, version);
        assert.equal(line.route, 'support');
        assert.deepEqual(line.request_features, want.features);
        assert.equal(line.selected_model, want.model);
        assert.equal(line.tier, want.tier);
        assert.deepEqual(line.alternative_models, want.alternatives);
        assert.equal(line.confidence, want.confidence);
        if (typeof want.reason === 'string') assert.equal(line.routing_reason, want.reason);
        else assert.match(line.routing_reason, want.reason);
        assert.equal(typeof line.latency_ms, 'number');
        assert.ok(line.latency_ms >= 0 && line.latency_ms < 5000);
        assert.equal(line.stream, want.stream);
        assert.deepEqual(line.usage, want.data.usage, 'the logged usage is what the client was told');
        const usage = line.usage as NonNullable<DecisionRecord['usage']>;
        const cost = costOf(want.model, usage);
        const best = costOf('large-model', usage);
        assert.equal(line.cost_usd, cost);
        assert.equal(line.best_model, 'large-model');
        assert.equal(line.best_cost_usd, best);
        assert.equal(line.cost_saved_usd, (line.best_cost_usd as number) - (line.cost_usd as number));
        assert.equal(line.was_escalated, false);
        assert.equal(line.quality_score, null);
        assert.equal(line.simulated, true);
        assert.equal(line.status, 'ok');
        assert.equal(line.error_code, undefined);
        assert.equal('prompt' in line, false);
        assert.ok(!Number.isNaN(Date.parse(line.timestamp)));
      }
      assert.ok((lines[0].cost_saved_usd as number) > 0, 'routing to the small tier saves money');
      assert.equal(lines[1].cost_saved_usd, 0, 'the best model saves nothing');

      const s = lines[2];
      assert.equal(s.request_id, streamed.response.headers.get('x-tiergate-decision-id'));
      assert.equal(s.stream, true);
      assert.equal(s.status, 'ok');
      assert.ok(s.usage && s.usage.completion_tokens > 0, 'a stream is costed even when the client did not ask for usage');
      assert.equal(s.cost_usd, costOf('large-model', s.usage));

      const [u, m, v] = lines.slice(3);
      assert.equal(u.status, 'error');
      assert.equal(u.error_code, 'TG_ERR_REQUEST_UNKNOWN_MODEL');
      assert.equal(u.selected_model, null);
      assert.equal(u.usage, null);
      assert.equal(u.cost_usd, null);
      assert.equal(m.status, 'error');
      assert.equal(m.error_code, 'TG_ERR_REQUEST_JSON');
      assert.equal(v.status, 'error');
      assert.equal(v.error_code, 'TG_ERR_REQUEST_INVALID');
      for (const line of [u, m, v]) {
        assert.match(line.request_id, /^tg-/);
        assert.equal(line.policy_version, version);
        assert.equal(line.simulated, false);
        assert.equal(line.was_escalated, false);
      }
      assert.equal(new Set(lines.map((l) => l.request_id)).size, 6, 'request ids are unique');

      assert.equal(tg.decisionLogText().includes(MARKER), false, 'prompt text must not be logged by default');
    } finally {
      await tg.close();
    }
  });

  test('with analytics.decision_log.log_prompts the prompt is logged', async () => {
    const policy = simulatorPolicy().replace(
      'analytics:\n  decision_log: { file: decisions.jsonl }',
      'analytics:\n  decision_log: { file: decisions.jsonl, log_prompts: true }',
    );
    assert.ok(policy.includes('log_prompts: true'));
    const tg = await startTestGateway(policy);
    try {
      const client = clientFor(tg);
      const { response } = await client.chat.completions.create(chat(`Remember ${MARKER}`)).withResponse();
      const [line] = await tg.waitForDecisions(1);
      assert.equal(line.request_id, response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.prompt, [{ role: 'user', content: `Remember ${MARKER}` }]);
      assert.ok(tg.decisionLogText().includes(MARKER));
    } finally {
      await tg.close();
    }
  });

  test('the log is complete after close (flushed on shutdown)', async () => {
    const tg = await startTestGateway(simulatorPolicy());
    let text = '';
    try {
      const client = clientFor(tg);
      const ids: Array<string | null> = [];
      for (let i = 0; i < 5; i++) {
        const { response } = await client.chat.completions.create(chat(`Question number ${i}`)).withResponse();
        ids.push(response.headers.get('x-tiergate-decision-id'));
      }
      await tg.gateway.close();
      text = tg.decisionLogText();
      const lines = tg.decisions();
      assert.deepEqual(
        lines.map((l) => l.request_id),
        ids,
      );
      assert.ok(text.endsWith('\n'));
    } finally {
      await tg.close();
    }
  });
});
