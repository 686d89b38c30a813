// A request body nested deeper than any serializer can follow, sent over real HTTP (fetch:
// the official SDKs cannot even serialize it) to both chat faces. It is the client's
// fault: a 400 naming the field, before any upstream is called, never a failure of a
// model, so no model goes into cooldown however often it is sent. Every such request
// still writes exactly one decision line, with log_prompts on too, and is counted.
// Likewise a request a provider cannot translate for its upstream: only failures the
// upstream caused count against a model (src/pipeline/failover.ts, causedByUpstream).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { startFakeAnthropic, type FakeAnthropic } from '../support/fake-anthropic.ts';
import { reply, ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { MAX_BODY_DEPTH } from '../../src/faces/read-body.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';

const DEEP = 100_000;

/** `levels` arrays, one inside the other: a JSON value `levels` containers deep. */
const nested = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);

/** A chat body whose pass-through field `extra` makes the whole body `depth` containers deep (the body itself is one). */
const chatBodyOfDepth = (model: string, depth: number) =>
  `{"model":${JSON.stringify(model)},"messages":[{"role":"user","content":"hello there"}],"extra":${nested(depth - 1)}}`;

/**
 * Two models `a` and `b` in tier `pool` of route `pool` on `provider`, two failures in a
 * row enough for a cooldown; `extra` adds a tier, its model and its route.
 */
function poolPolicy(provider: string, upstreamPrefix: string, extra: { provider: string; model: string; tier: string; route: string; logPrompts: boolean }) {
  return `version: 1
providers:
  ${provider}
  ${extra.provider}
models:
  ${upstreamPrefix}-a: { provider: pool, upstream: ${upstreamPrefix}-a, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 2000 }
  ${upstreamPrefix}-b: { provider: pool, upstream: ${upstreamPrefix}-b, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 2000 }
  ${extra.model}
tiers:
  - { name: pool, models: [${upstreamPrefix}-a, ${upstreamPrefix}-b] }
  ${extra.tier}
resilience: { retries: 1, backoff_ms: 1, max_backoff_ms: 5, failure_threshold: 2, cooldown_ms: 60000 }
routes:
  pool:
    router: { plugin: rules, rules: [] }
    default: pool
  ${extra.route}
analytics:
  decision_log: { file: decisions.jsonl, log_prompts: ${extra.logPrompts} }
`;
}

const post = (tg: TestGateway, path: string, body: string) =>
  fetch(`${tg.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

async function modelsInCooldown(tg: TestGateway): Promise<Record<string, string>> {
  const res = await fetch(`${tg.url}/admin/status`);
  return ((await res.json()) as { models_in_cooldown: Record<string, string> }).models_in_cooldown;
}

describe('a body too deep to serialize', () => {
  let fake: FakeOpenAI;
  let up: ScriptedUpstreams;
  let tg: TestGateway;

  before(async () => {
    fake = await startFakeOpenAI();
    up = new ScriptedUpstreams(fake);
    tg = await startTestGateway(
      poolPolicy(`pool: { plugin: openai, base_url: "${fake.baseURL}", api_key: test-key }`, 'deep', {
        provider: 'sim: { plugin: simulator, time_scale: 0, default_profile: { capability: 0.9, first_token_ms: 1, tokens_per_second: 1000 } }',
        model: 'sim-model: { provider: sim, upstream: sim-model, price: { input_per_mtok: 1, output_per_mtok: 1 } }',
        tier: '- { name: simulated, models: [sim-model] }',
        route: 'simulated: { router: { plugin: rules, rules: [] }, default: simulated }',
        logPrompts: true,
      }),
    );
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  /** The sum of tiergate_requests_total's series with status="error" on /metrics. */
  async function errorRequestsCounted(): Promise<number> {
    const text = await (await fetch(`${tg.url}/metrics`)).text();
    let sum = 0;
    for (const [, count] of text.matchAll(/^tiergate_requests_total\{[^}]*status="error"[^}]*\} (\d+)$/gm)) sum += Number(count);
    return sum;
  }

  test('/v1/chat/completions: a 400 naming the field, no upstream call, no cooldown however often; the model still answers after', async () => {
    up.script({ 'deep-a': reply('a answers'), 'deep-b': reply('b answers') });
    for (let i = 0; i < 4; i++) {
      const res = await post(tg, '/v1/chat/completions', chatBodyOfDepth('pool', DEEP));
      assert.equal(res.status, 400);
      const answer = (await res.json()) as { error: { code: string; type: string; param: string | null; message: string } };
      assert.equal(answer.error.code, 'TG_ERR_REQUEST_TOO_DEEP');
      assert.equal(answer.error.type, 'invalid_request_error');
      assert.match(answer.error.param ?? '', /^extra\[0\]/, 'the error names the field that goes too deep');
      assert.match(answer.error.message, new RegExp(`${MAX_BODY_DEPTH}`));
      const line = await tg.waitForDecision(res.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_REQUEST_TOO_DEEP');
      assert.deepEqual(line.attempts, []);
    }
    assert.equal(up.calls.length, 0, 'nothing reached an upstream');
    assert.deepEqual(await modelsInCooldown(tg), {}, 'no model went into cooldown');

    const res = await post(tg, '/v1/chat/completions', JSON.stringify({ model: 'pool', messages: [{ role: 'user', content: 'and now?' }] }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tiergate-model'), 'deep-a', 'the first model of the tier still serves');
    assert.equal(((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0].message.content, 'a answers');
  });

  test('a body at the depth limit is forwarded as sent; one level deeper is refused', async () => {
    up.script({ 'deep-a': reply('deep enough') });
    const atLimit = await post(tg, '/v1/chat/completions', chatBodyOfDepth('pool', MAX_BODY_DEPTH));
    assert.equal(atLimit.status, 200);
    assert.equal(up.calls.length, 1);
    assert.equal(JSON.stringify(up.calls[0].body.extra), nested(MAX_BODY_DEPTH - 1), 'the upstream got the field as sent');

    const over = await post(tg, '/v1/chat/completions', chatBodyOfDepth('pool', MAX_BODY_DEPTH + 1));
    assert.equal(over.status, 400);
    assert.equal(((await over.json()) as { error: { code: string } }).error.code, 'TG_ERR_REQUEST_TOO_DEEP');
    assert.equal(up.calls.length, 1, 'the refused body reached no upstream');
  });

  test("/v1/messages: the same 400 in Anthropic's shape, one decision line each, and no cooldown", async () => {
    up.script({ 'deep-a': reply('a answers'), 'deep-b': reply('b answers') });
    // A tool's input_schema is forwarded as the function's parameters: on its own it would reach the upstream.
    const tools = `[{"name":"lookup","input_schema":{"type":"object","properties":{"q":${nested(DEEP)}}}}]`;
    const message = `{"model":"pool","max_tokens":16,"messages":[{"role":"user","content":"hi"}],"tools":${tools}}`;
    for (let i = 0; i < 3; i++) {
      const res = await post(tg, '/v1/messages', message);
      assert.equal(res.status, 400);
      const answer = (await res.json()) as { type: string; error: { type: string; code: string; message: string } };
      assert.equal(answer.type, 'error');
      assert.equal(answer.error.type, 'invalid_request_error');
      assert.equal(answer.error.code, 'TG_ERR_REQUEST_TOO_DEEP');
      assert.match(answer.error.message, /tools\[0\]\.input_schema\.properties\.q/);
      const line = await tg.waitForDecision(res.headers.get('x-tiergate-decision-id'));
      assert.equal(line.error_code, 'TG_ERR_REQUEST_TOO_DEEP');
    }
    assert.equal(up.calls.length, 0);
    assert.deepEqual(await modelsInCooldown(tg), {});
  });

  test('with log_prompts, a deeply nested message still writes exactly one decision line and is counted', async () => {
    const countedBefore = await errorRequestsCounted();
    const linesBefore = tg.decisions().length;
    const body = `{"model":"simulated","messages":[{"role":"user","content":[{"type":"text","text":"hi","extra":${nested(DEEP)}}]}]}`;
    const res = await post(tg, '/v1/chat/completions', body);
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: string; param: string } }).error.param.startsWith('messages[0].content[0].extra'), true);
    const line: DecisionRecord = await tg.waitForDecision(res.headers.get('x-tiergate-decision-id'));
    assert.equal(line.status, 'error');
    assert.equal(line.error_code, 'TG_ERR_REQUEST_TOO_DEEP');
    // Give a second line the time to appear, were there one.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(tg.decisions().length, linesBefore + 1, 'exactly one line');
    assert.equal(await errorRequestsCounted(), countedBefore + 1, 'counted in tiergate_requests_total');
  });
});

describe('a request the provider cannot send', () => {
  let anthropic: FakeAnthropic;
  let tg: TestGateway;

  before(async () => {
    anthropic = await startFakeAnthropic();
    const none = { provider: '', model: '', tier: '', route: '', logPrompts: false };
    tg = await startTestGateway(poolPolicy(`pool: { plugin: anthropic, base_url: "${anthropic.baseURL}", api_key: test-key }`, 'claude', none));
  });

  after(async () => {
    await tg?.close();
    await anthropic?.close();
  });

  test('a tool call the anthropic provider cannot translate is a 400 for the client, not retried, and no cooldown', async () => {
    // The chat schema leaves tool_calls' items to the provider; a null one cannot become a tool_use block.
    const unsendable = JSON.stringify({
      model: 'pool',
      messages: [
        { role: 'user', content: 'look it up' },
        { role: 'assistant', content: null, tool_calls: [null] },
        { role: 'user', content: 'well?' },
      ],
    });
    for (let i = 0; i < 3; i++) {
      const res = await post(tg, '/v1/chat/completions', unsendable);
      assert.equal(res.status, 400);
      const answer = (await res.json()) as { error: { code: string; type: string; message: string } };
      assert.equal(answer.error.code, 'TG_ERR_REQUEST_UNSENDABLE');
      assert.equal(answer.error.type, 'invalid_request_error');
      assert.match(answer.error.message, /claude-a/, 'the error names the model it could not be sent to');
      const line = await tg.waitForDecision(res.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(
        line.attempts.map((a) => [a.model, a.outcome, a.retries, a.error_code]),
        [['claude-a', 'failed', 0, 'TG_ERR_REQUEST_UNSENDABLE']],
        'not retried, not sent to the next model',
      );
    }
    assert.equal(anthropic.requests.length, 0, 'nothing reached the upstream');
    assert.deepEqual(await modelsInCooldown(tg), {});

    const res = await post(tg, '/v1/chat/completions', JSON.stringify({ model: 'pool', messages: [{ role: 'user', content: 'and now?' }] }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tiergate-model'), 'claude-a');
  });
});
