// Quality gates, the escalation ladder, failover and speculation, end to end: the
// official openai SDK talks to a real tiergate over HTTP, tiergate talks through the
// real `openai` provider plugin to local fake-openai upstreams (one server; the
// behaviour switches on the upstream model name), or to the simulator. Scores come from
// test fixture evaluators (test/fixtures/gate-plugins) whose verdict is written in the
// answer text, so each upstream decides what its model scores. Latency assertions are
// generous bounds only; everything else is exact.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import OpenAI, { APIError } from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { apiError } from '../support/http.ts';
import { startFakeOpenAI, type Behaviour, type FakeOpenAI, type RecordedRequest } from '../support/fake-openai.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';
import type { AttemptRecord } from '../../src/pipeline/execute.ts';
import { buildRuntime } from '../../src/policy/runtime.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { estimateMessagesTokens } from '../../src/plugin-sdk/tokens.ts';
import { promptDifficulty } from '../../plugins/providers/simulator/index.ts';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);

const repoRoot = path.resolve(import.meta.dirname, '../..');
const FIXTURE_PLUGINS = path.join(import.meta.dirname, '..', 'fixtures', 'gate-plugins');

// ---------------------------------------------------------------------------------
// Helpers

/** The fake upstream's script for one test: upstream model name → behaviour (or a function of the call number). */
type Step = Behaviour | ((n: number, body: any) => Behaviour);

interface UpstreamCall {
  model: string;
  /** performance.now() when the request reached the fake. */
  at: number;
  body: any;
  record: RecordedRequest;
}

/** One fake-openai server, scripted per upstream model; unscripted models answer 418 so a stray call shows. */
class Upstreams {
  private scripts = new Map<string, Step>();
  calls: UpstreamCall[] = [];

  constructor(readonly fake: FakeOpenAI) {
    fake.behave((body, record) => {
      const model = String(body.model);
      const n = this.calls.filter((c) => c.model === model).length;
      this.calls.push({ model, at: performance.now(), body, record });
      const step = this.scripts.get(model);
      if (!step) return { kind: 'status', status: 418, body: { error: { message: `unscripted upstream model ${model}`, type: 'test_error' } } };
      return typeof step === 'function' ? step(n, body) : step;
    });
  }

  /** Replaces the script and forgets earlier calls. */
  script(steps: Record<string, Step>): void {
    this.scripts = new Map(Object.entries(steps));
    this.calls = [];
  }

  to(model: string): UpstreamCall[] {
    return this.calls.filter((c) => c.model === model);
  }
}

function reply(content: string, usage?: { prompt_tokens: number; completion_tokens: number }, extra: Partial<Extract<Behaviour, { kind: 'reply' }>> = {}): Behaviour {
  return { kind: 'reply', content, ...(usage ? { usage } : {}), ...extra };
}

function client(tg: TestGateway): OpenAI {
  return new OpenAI({ baseURL: tg.baseURL, apiKey: 'client-key', maxRetries: 0, timeout: 15_000 });
}

function ask(model: string, content: string, metadata: Record<string, unknown> = {}): ChatCompletionCreateParamsNonStreaming {
  return { model, messages: [{ role: 'user', content }], metadata } as unknown as ChatCompletionCreateParamsNonStreaming;
}

function askStream(model: string, content: string, extra: Record<string, unknown> = {}): ChatCompletionCreateParamsStreaming {
  return { model, messages: [{ role: 'user', content }], stream: true, ...extra } as unknown as ChatCompletionCreateParamsStreaming;
}

async function until(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Resolves once the upstream saw this call's client go away. */
async function abortedUpstream(call: UpstreamCall | undefined): Promise<void> {
  assert.ok(call, 'the call reached the upstream');
  await until(() => call.record.aborted, `the abort of the ${call.model} call to reach the upstream`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The decision line with this request id (the log is written asynchronously). */
async function decision(tg: TestGateway, id: string | null | undefined): Promise<DecisionRecord> {
  assert.ok(id, 'the response carries x-tiergate-decision-id');
  let found: DecisionRecord | undefined;
  await until(() => (found = tg.decisions().find((d) => d.request_id === id)) !== undefined, `decision line ${id}`);
  return found as DecisionRecord;
}

function price(input: number, output: number) {
  return { input, output };
}

/** What a call costs, computed the documented way: tokens × price per million. */
function cost(p: { input: number; output: number }, usage: { prompt_tokens: number; completion_tokens: number }): number {
  return (usage.prompt_tokens * p.input + usage.completion_tokens * p.output) / 1e6;
}

/** The attempts' own costs plus their judges', summed in the order logged (what cost_usd must be). */
function sumOfAttempts(attempts: AttemptRecord[]): number {
  return attempts.reduce((sum, a) => sum + a.cost_usd + (a.gate?.cost_usd ?? 0), 0);
}

/** The fields of an attempt a test pins down. */
function brief(a: AttemptRecord) {
  return { model: a.model, role: a.role, outcome: a.outcome, retries: a.retries, error_code: a.error_code };
}

async function drain(stream: AsyncIterable<OpenAI.ChatCompletionChunk>): Promise<{ text: string; usages: unknown[]; finish: string | null; error: unknown }> {
  let text = '';
  let finish: string | null = null;
  const usages: unknown[] = [];
  let error: unknown;
  try {
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? '';
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      if (chunk.usage) usages.push(chunk.usage);
    }
  } catch (err) {
    error = err;
  }
  return { text, usages, finish, error };
}

// ---------------------------------------------------------------------------------
// Gateway 1: two tiers of fake-openai models (two in the small tier, for failover).

const SMALL = price(1, 2);
const LARGE = price(10, 30);
const SMALL_TIMEOUT_MS = 600;

function twoTierPolicy(baseURL: string): string {
  const gate = (extra = '') => `gate: { evaluators: [ { plugin: answer_score } ], threshold: 0.7${extra} }`;
  const toSmall = (confidence: number) => `router: { plugin: rules, rules: [ { when: "true", tier: small, confidence: ${confidence}, reason: cheap first } ] }`;
  return `version: 1
plugins: { paths: [${JSON.stringify(FIXTURE_PLUGINS)}] }
providers:
  up: { plugin: openai, base_url: "${baseURL}", api_key: test-key }
models:
  small-a: { provider: up, upstream: up-small-a, price: { input_per_mtok: ${SMALL.input}, output_per_mtok: ${SMALL.output} }, timeout_ms: ${SMALL_TIMEOUT_MS} }
  small-b: { provider: up, upstream: up-small-b, price: { input_per_mtok: ${SMALL.input}, output_per_mtok: ${SMALL.output} }, timeout_ms: ${SMALL_TIMEOUT_MS} }
  large-l: { provider: up, upstream: up-large-l, price: { input_per_mtok: ${LARGE.input}, output_per_mtok: ${LARGE.output} }, timeout_ms: 3000 }
  solo: { provider: up, upstream: up-solo, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 300 }
tiers:
  - { name: small, models: [small-a, small-b] }
  - { name: large, models: [large-l] }
features:
  kind: metadata.kind
resilience: { retries: 1, backoff_ms: 20, max_backoff_ms: 1500, failure_threshold: 1000, cooldown_ms: 1000 }
routes:
  gated:
    ${toSmall(0.8)}
    default: small
    ${gate()}
  bypass:
    ${toSmall(0.8)}
    default: small
    ${gate(', streaming: bypass')}
  plain:
    ${toSmall(1)}
    default: small
  spec:
    ${toSmall(0.5)}
    default: small
    ${gate()}
    speculate: { when: "decision.confidence < 0.6" }
  nospec:
    ${toSmall(0.5)}
    default: small
    ${gate()}
  asym:
    router:
      plugin: rules
      rules:
        - { when: "kind = 'unsure'", tier: small, confidence: 0.7, reason: probably easy }
        - { when: "kind = 'sure'", tier: small, confidence: 0.9, reason: surely easy }
    default: large
    gate: { evaluators: [ { plugin: answer_score } ] }
    costs: { under_routing: 4, over_routing: 1 }
  asym-spec:
    router:
      plugin: rules
      rules:
        - { when: "kind = 'unsure'", tier: small, confidence: 0.7, reason: probably easy }
    default: large
    gate: { evaluators: [ { plugin: answer_score } ] }
    costs: { under_routing: 4, over_routing: 1 }
    speculate: { when: "decision.confidence < 0.75" }
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

describe('gates, ladder, failover and speculation over real HTTP', () => {
  let fake: FakeOpenAI;
  let up: Upstreams;
  let tg: TestGateway;
  let sdk: OpenAI;

  before(async () => {
    fake = await startFakeOpenAI();
    up = new Upstreams(fake);
    tg = await startTestGateway(twoTierPolicy(fake.baseURL));
    sdk = client(tg);
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  describe('the ladder', () => {
    test("the small answer fails the gate → large answers and passes; headers, decision and exact cost say so", async () => {
      const smallUsage = { prompt_tokens: 20, completion_tokens: 5 };
      const largeUsage = { prompt_tokens: 20, completion_tokens: 7 };
      up.script({ 'up-small-a': reply('[q=0.2] a weak answer', smallUsage), 'up-large-l': reply('[q=0.9] a strong answer', largeUsage) });
      const { data, response } = await sdk.chat.completions.create(ask('gated', 'What is the capital of France?')).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.9] a strong answer');
      assert.equal(data.model, 'large-l');
      assert.deepEqual(data.usage, { ...largeUsage, total_tokens: 27 });
      assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
      assert.equal(response.headers.get('x-tiergate-escalations'), '1');
      assert.equal(response.headers.get('x-tiergate-model'), 'large-l');
      assert.equal(response.headers.get('x-tiergate-tier'), 'large');
      assert.equal(response.headers.get('x-tiergate-quality-score'), '0.900');
      assert.equal(response.headers.get('x-tiergate-speculative'), null);
      assert.equal(up.to('up-small-a').length, 1);
      assert.equal(up.to('up-small-b').length, 0, 'a failed gate is no reason to try the tier-mate: the tier answered');
      assert.equal(up.to('up-large-l').length, 1);

      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'ok');
      assert.equal(line.was_escalated, true);
      assert.equal(line.escalations, 1);
      assert.equal(line.routed_tier, 'small');
      assert.equal(line.routed_model, 'small-a');
      assert.equal(line.tier, 'large');
      assert.equal(line.selected_model, 'large-l');
      assert.equal(line.gate, 'passed');
      assert.equal(line.speculated, false);
      assert.equal(line.confidence, 0.8 * 0.5, 'an escalation halves the router confidence');
      assert.equal(line.quality_score, 0.9);
      assert.deepEqual(line.usage, { ...largeUsage, total_tokens: 27 });
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
        { model: 'large-l', role: 'escalation', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
      assert.equal(line.attempts[0].gate?.score, 0.2);
      assert.equal(line.attempts[0].gate?.passed, false);
      assert.equal(line.attempts[0].gate?.threshold, 0.7);
      assert.equal(line.attempts[1].gate?.score, 0.9);
      assert.equal(line.attempts[1].gate?.passed, true);
      assert.equal(line.attempts[0].cost_usd, cost(SMALL, smallUsage));
      assert.equal(line.attempts[1].cost_usd, cost(LARGE, largeUsage));
      assert.equal(line.cost_usd, cost(SMALL, smallUsage) + cost(LARGE, largeUsage), 'both calls are paid for');
    });

    test('an answer that passes at once is served from the routed tier, unescalated', async () => {
      up.script({ 'up-small-a': reply('[q=0.75] good enough', { prompt_tokens: 10, completion_tokens: 3 }) });
      const { data, response } = await sdk.chat.completions.create(ask('gated', 'hello')).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.75] good enough');
      assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
      assert.equal(response.headers.get('x-tiergate-escalations'), '0');
      assert.equal(response.headers.get('x-tiergate-model'), 'small-a');
      assert.equal(up.to('up-large-l').length, 0);
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.was_escalated, false);
      assert.equal(line.confidence, 0.8);
      assert.equal(line.quality_score, 0.75);
      assert.equal(line.cost_usd, cost(SMALL, { prompt_tokens: 10, completion_tokens: 3 }));
    });
  });

  describe('failover inside a tier', () => {
    test('500 → retried once (resilience.retries) → the tier-mate answers', async () => {
      up.script({ 'up-small-a': { kind: 'status', status: 500 }, 'up-small-b': reply('from b', { prompt_tokens: 8, completion_tokens: 2 }) });
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'fail over please')).withResponse();
      assert.equal(data.choices[0].message.content, 'from b');
      assert.equal(response.headers.get('x-tiergate-model'), 'small-b');
      assert.equal(up.to('up-small-a').length, 2, 'one call and one retry');
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM' },
        { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
      assert.equal(line.attempts[0].cost_usd, 0, 'a failed call costs nothing');
      assert.equal(line.cost_usd, cost(SMALL, { prompt_tokens: 8, completion_tokens: 2 }));
      assert.equal(line.escalations, 0, 'failover inside a tier is not an escalation');
    });

    test('429 with retry-after: 1 → the same model is retried after about a second', async () => {
      up.script({
        'up-small-a': (n) => (n === 0 ? { kind: 'status', status: 429, headers: { 'retry-after': '1' } } : reply('after the pause')),
      });
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'rate limited')).withResponse();
      assert.equal(data.choices[0].message.content, 'after the pause');
      const calls = up.to('up-small-a');
      assert.equal(calls.length, 2);
      const gap = calls[1].at - calls[0].at;
      assert.ok(gap >= 950, `the retry waited for retry-after (${gap.toFixed(0)} ms)`);
      assert.equal(up.to('up-small-b').length, 0);
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [{ model: 'small-a', role: 'routed', outcome: 'ok', retries: 1, error_code: undefined }]);
    });

    test('429 with a retry-after longer than max_backoff_ms → fail over at once', async () => {
      up.script({ 'up-small-a': { kind: 'status', status: 429, headers: { 'retry-after': '5' } }, 'up-small-b': reply('b instead') });
      const started = performance.now();
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'rate limited for long')).withResponse();
      const elapsed = performance.now() - started;
      assert.equal(data.choices[0].message.content, 'b instead');
      assert.equal(up.to('up-small-a').length, 1, 'no retry of a model that asked for 5 s');
      assert.ok(elapsed < 1000, `no waiting (${elapsed.toFixed(0)} ms)`);
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'failed', retries: 0, error_code: 'TG_ERR_UPSTREAM_RATE_LIMITED' },
        { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
    });

    test('a hang past timeout_ms → retried, then the next model; the hung calls are aborted upstream', async () => {
      up.script({ 'up-small-a': { kind: 'hang' }, 'up-small-b': reply('b was awake') });
      const started = performance.now();
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'are you there?')).withResponse();
      const elapsed = performance.now() - started;
      assert.equal(data.choices[0].message.content, 'b was awake');
      assert.ok(elapsed >= 2 * SMALL_TIMEOUT_MS - 50, `two deadlines ran out first (${elapsed.toFixed(0)} ms)`);
      assert.ok(elapsed < 5000, `bounded (${elapsed.toFixed(0)} ms)`);
      assert.equal(up.to('up-small-a').length, 2);
      for (const call of up.to('up-small-a')) await abortedUpstream(call);
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM_TIMEOUT' },
        { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
    });

    test('a connection reset → retried, then the next model', async () => {
      up.script({ 'up-small-a': { kind: 'reset' }, 'up-small-b': reply('b answered') });
      const { data, response } = await sdk.chat.completions.create(ask('plain', 'reset me')).withResponse();
      assert.equal(data.choices[0].message.content, 'b answered');
      assert.equal(up.to('up-small-a').length, 2);
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(line.attempts.map(brief), [
        { model: 'small-a', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM' },
        { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
      ]);
    });

    test('a tier that fails outright on a gated route climbs the ladder', async () => {
      up.script({ 'up-small-a': { kind: 'status', status: 503 }, 'up-small-b': { kind: 'status', status: 503 }, 'up-large-l': reply('[q=0.8] large') });
      const { data, response } = await sdk.chat.completions.create(ask('gated', 'small tier down')).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.8] large');
      assert.equal(response.headers.get('x-tiergate-escalations'), '1');
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.deepEqual(
        line.attempts.map((a) => [a.model, a.role, a.outcome]),
        [
          ['small-a', 'routed', 'failed'],
          ['small-b', 'routed', 'failed'],
          ['large-l', 'escalation', 'ok'],
        ],
      );
    });
  });

  describe('every option fails', () => {
    test('both models of the tier 500 → 502 TG_ERR_ALL_FAILED, OpenAI error shape, error.attempts lists both', async () => {
      up.script({ 'up-small-a': { kind: 'status', status: 500 }, 'up-small-b': { kind: 'status', status: 500 } });
      const err = await apiError(sdk.chat.completions.create(ask('plain', 'nobody home')));
      assert.equal(err.status, 502);
      assert.equal(err.code, 'TG_ERR_ALL_FAILED');
      assert.equal(err.type, 'api_error');
      assert.match(err.message, /small-a/);
      assert.match(err.message, /small-b/);
      const body = err.error as { message: string; type: string; code: string; attempts: Array<Record<string, unknown>> };
      assert.equal(typeof body.message, 'string');
      assert.deepEqual(
        body.attempts.map((a) => ({ model: a.model, tier: a.tier, outcome: a.outcome, error_code: a.error_code, retries: a.retries })),
        [
          { model: 'small-a', tier: 'small', outcome: 'failed', error_code: 'TG_ERR_UPSTREAM', retries: 1 },
          { model: 'small-b', tier: 'small', outcome: 'failed', error_code: 'TG_ERR_UPSTREAM', retries: 1 },
        ],
      );
      assert.equal(up.calls.length, 4);
      const line = await decision(tg, err.headers?.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_ALL_FAILED');
      assert.equal(line.attempts.length, 2);
    });

    test('a single model failing → its own error (504) with error.attempts', async () => {
      up.script({ 'up-solo': { kind: 'hang' } });
      const err = await apiError(sdk.chat.completions.create(ask('solo', 'anyone?')));
      assert.equal(err.status, 504);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_TIMEOUT');
      const body = err.error as { attempts: Array<Record<string, unknown>> };
      assert.deepEqual(
        body.attempts.map((a) => ({ model: a.model, outcome: a.outcome, error_code: a.error_code, retries: a.retries })),
        [{ model: 'solo', outcome: 'failed', error_code: 'TG_ERR_UPSTREAM_TIMEOUT', retries: 1 }],
      );
    });
  });

  describe('speculation', () => {
    test('the cheap answer passes → served; the strong call is aborted upstream and its prompt is counted', async () => {
      const cheapUsage = { prompt_tokens: 12, completion_tokens: 4 };
      // The cheap answer waits a little so that the strong request has surely reached the upstream.
      up.script({ 'up-small-a': reply('[q=0.95] cheap and right', cheapUsage, { delayMs: 150 }), 'up-large-l': { kind: 'hang' } });
      const messages = [{ role: 'user' as const, content: 'Speculate on this one' }];
      const { data, response } = await sdk.chat.completions.create({ model: 'spec', messages }).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.95] cheap and right');
      assert.equal(response.headers.get('x-tiergate-speculative'), 'true');
      assert.equal(response.headers.get('x-tiergate-model'), 'small-a');
      assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
      assert.equal(response.headers.get('x-tiergate-escalations'), '0');
      const strong = up.to('up-large-l');
      assert.equal(strong.length, 1, 'the strong tier was called alongside');
      await abortedUpstream(strong[0]); // and cut off once the cheap answer passed

      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.speculated, true);
      assert.equal(line.escalations, 0);
      assert.equal(line.confidence, 0.5);
      const cheap = line.attempts.find((a) => a.role === 'routed');
      const spec = line.attempts.find((a) => a.role === 'speculative');
      assert.ok(cheap && spec, JSON.stringify(line.attempts));
      assert.equal(line.attempts.length, 2);
      assert.deepEqual(brief(spec), { model: 'large-l', role: 'speculative', outcome: 'aborted', retries: 0, error_code: undefined });
      assert.equal(spec.usage_estimated, true);
      const prompt = estimateMessagesTokens(messages);
      assert.deepEqual(spec.usage, { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt });
      assert.ok(spec.cost_usd > 0);
      assert.equal(spec.cost_usd, cost(LARGE, { prompt_tokens: prompt, completion_tokens: 0 }));
      assert.equal(cheap.cost_usd, cost(SMALL, cheapUsage));
      assert.equal(line.cost_usd, sumOfAttempts(line.attempts), 'the aborted strong call is part of the request cost');
      assert.ok((line.cost_usd as number) > cost(SMALL, cheapUsage));
    });

    test('the cheap answer fails → the strong answer, in about max(cheap, strong) instead of their sum', async () => {
      const cheapUsage = { prompt_tokens: 12, completion_tokens: 4 };
      const strongUsage = { prompt_tokens: 12, completion_tokens: 9 };
      const script = () => up.script({ 'up-small-a': reply('[q=0.1] cheap and wrong', cheapUsage, { delayMs: 300 }), 'up-large-l': reply('[q=0.9] strong', strongUsage, { delayMs: 500 }) });

      script();
      let started = performance.now();
      const { data, response } = await sdk.chat.completions.create(ask('spec', 'Speculate and escalate')).withResponse();
      const speculative = performance.now() - started;
      assert.equal(data.choices[0].message.content, '[q=0.9] strong');
      assert.equal(response.headers.get('x-tiergate-speculative'), 'true');
      assert.equal(response.headers.get('x-tiergate-escalations'), '1');
      assert.equal(response.headers.get('x-tiergate-model'), 'large-l');
      const gap = Math.abs(up.to('up-large-l')[0].at - up.to('up-small-a')[0].at);
      assert.ok(gap < 150, `both tiers were called at once (${gap.toFixed(0)} ms apart)`);
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.speculated, true);
      assert.equal(line.was_escalated, true);
      assert.equal(line.confidence, 0.25);
      assert.deepEqual(
        line.attempts.map((a) => [a.model, a.role, a.outcome, a.gate?.passed]).sort(),
        [
          ['large-l', 'speculative', 'ok', true],
          ['small-a', 'routed', 'ok', false],
        ],
      );
      assert.equal(line.cost_usd, sumOfAttempts(line.attempts));
      assert.equal(line.cost_usd, cost(SMALL, cheapUsage) + cost(LARGE, strongUsage));

      script();
      started = performance.now();
      const sequential = await sdk.chat.completions.create(ask('nospec', 'Escalate in turn')).withResponse();
      const inTurn = performance.now() - started;
      assert.equal(sequential.data.choices[0].message.content, '[q=0.9] strong');
      assert.equal(sequential.response.headers.get('x-tiergate-speculative'), null);
      assert.ok(up.to('up-large-l')[0].at - up.to('up-small-a')[0].at >= 290, 'without speculation the strong tier waits for the gate');

      assert.ok(speculative >= 500, `speculative: not faster than the strong model (${speculative.toFixed(0)} ms)`);
      assert.ok(speculative < 750, `speculative: about max(300, 500) ms, not the sum (${speculative.toFixed(0)} ms)`);
      assert.ok(inTurn >= 800, `without speculation: at least 300 + 500 ms (${inTurn.toFixed(0)} ms)`);
    });
  });

  describe('streaming', () => {
    test('gate buffer: a failing cheap answer is escalated and the client streams the strong answer, with usage', async () => {
      const largeUsage = { prompt_tokens: 15, completion_tokens: 6 };
      up.script({ 'up-small-a': reply('[q=0.1] weak streamed'), 'up-large-l': reply('[q=0.9] the strong streamed answer', largeUsage) });
      const { data: stream, response } = await sdk.chat.completions.create(askStream('gated', 'stream it', { stream_options: { include_usage: true } })).withResponse();
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
      assert.equal(response.headers.get('x-tiergate-escalations'), '1');
      assert.equal(response.headers.get('x-tiergate-model'), 'large-l');
      const got = await drain(stream);
      assert.equal(got.error, undefined);
      assert.equal(got.text, '[q=0.9] the strong streamed answer');
      assert.equal(got.finish, 'stop');
      assert.deepEqual(got.usages, [{ ...largeUsage, total_tokens: 21 }]);
      assert.ok(up.calls.every((c) => c.body.stream !== true), 'buffer mode asks the upstream for complete answers');
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.stream, true);
      assert.equal(line.gate, 'passed');
      assert.equal(line.escalations, 1);
      assert.equal(line.quality_score, 0.9);
    });

    test('gate bypass: the cheap answer streams at once; the decision records bypass with its score', async () => {
      up.script({ 'up-small-a': reply('[q=0.4] cheap streamed', { prompt_tokens: 9, completion_tokens: 5 }) });
      const { data: stream, response } = await sdk.chat.completions.create(askStream('bypass', 'stream it raw')).withResponse();
      assert.equal(response.headers.get('x-tiergate-gate'), 'bypass');
      assert.equal(response.headers.get('x-tiergate-model'), 'small-a');
      const got = await drain(stream);
      assert.equal(got.error, undefined);
      assert.equal(got.text, '[q=0.4] cheap streamed');
      assert.deepEqual(got.usages, []);
      assert.equal(up.to('up-large-l').length, 0, 'bypass never escalates');
      assert.equal(up.to('up-small-a')[0].body.stream, true, 'streamed from the upstream');
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.gate, 'bypass');
      assert.equal(line.quality_score, 0.4, 'scored afterwards, for the log');
      assert.equal(line.attempts[0].gate?.passed, false);
      assert.equal(line.escalations, 0);
      assert.equal(line.cost_usd, cost(SMALL, { prompt_tokens: 9, completion_tokens: 5 }));
    });

    for (const mode of ['gated', 'bypass'] as const) {
      test(`${mode === 'gated' ? 'buffer' : 'bypass'}: the first model resets before any response → the tier-mate streams`, async () => {
        up.script({ 'up-small-a': { kind: 'reset' }, 'up-small-b': reply('[q=0.9] b streams') });
        const { data: stream, response } = await sdk.chat.completions.create(askStream(mode, 'reset first')).withResponse();
        assert.equal(response.headers.get('x-tiergate-model'), 'small-b');
        const got = await drain(stream);
        assert.equal(got.error, undefined);
        assert.equal(got.text, '[q=0.9] b streams');
        assert.equal(up.to('up-small-a').length, 2);
        const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
        assert.equal(line.status, 'ok');
        assert.deepEqual(line.attempts.map(brief), [
          { model: 'small-a', role: 'routed', outcome: 'failed', retries: 1, error_code: 'TG_ERR_UPSTREAM' },
          { model: 'small-b', role: 'routed', outcome: 'ok', retries: 0, error_code: undefined },
        ]);
      });
    }

    test('bypass: a reset after the first byte → an error event, no failover', async () => {
      up.script({ 'up-small-a': { kind: 'reset-mid-stream' }, 'up-small-b': reply('[q=0.9] must not be used') });
      const { data: stream, response } = await sdk.chat.completions.create(askStream('bypass', 'break mid-stream')).withResponse();
      assert.equal(response.status, 200);
      const got = await drain(stream);
      assert.equal(got.text, 'partial ');
      assert.ok(got.error instanceof APIError, `the stream ends with an error, got ${String(got.error)}`);
      assert.equal(got.error.code, 'TG_ERR_UPSTREAM');
      assert.equal(up.to('up-small-b').length, 0, 'bytes were sent: too late to fail over');
      assert.equal(up.to('up-small-a').length, 1);
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM');
      assert.deepEqual(line.attempts.map(brief), [{ model: 'small-a', role: 'routed', outcome: 'failed', retries: 0, error_code: 'TG_ERR_UPSTREAM' }]);
    });
  });

  describe('asymmetric routing costs', () => {
    test('costs set the gate threshold to the break-even u/(u+o) = 0.8, visible to tiergate validate', async () => {
      const route = tg.gateway.manager.runtime.routes.get('asym');
      assert.equal(route?.costs?.breakEven, 0.8);
      assert.equal(route?.gate?.threshold, 0.8);
      assert.equal(route?.gate?.thresholdSource, 'costs');
      const { stdout } = await promisify(execFile)(process.execPath, [path.join(repoRoot, 'bin/tiergate.js'), 'validate', tg.policyFile], { cwd: repoRoot, timeout: 20_000 });
      const block = stdout.slice(stdout.indexOf('  asym '));
      assert.match(block, /gate answer_score: min ≥ 0\.80 \(from costs\)/);
      assert.match(block, /break-even confidence 0\.80/);
    });

    test('confidence 0.7 to small (below break-even) starts at large, and the reason says why', async () => {
      up.script({ 'up-large-l': reply('[q=0.9] large from the start') });
      const { data, response } = await sdk.chat.completions.create(ask('asym', 'unsure one', { kind: 'unsure' })).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.9] large from the start');
      assert.equal(up.to('up-small-a').length, 0, 'the small tier was never tried');
      assert.equal(response.headers.get('x-tiergate-escalations'), '0');
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.routed_tier, 'large');
      assert.equal(line.routed_model, 'large-l');
      assert.equal(line.escalations, 0);
      assert.match(line.routing_reason, /^rule 1: probably easy/);
      assert.match(line.routing_reason, /confidence 0\.70 is below the break-even 0\.80/);
      assert.match(line.routing_reason, /4:1/);
      assert.match(line.routing_reason, /small → large/);
    });

    test('confidence 0.9 stays small; the 0.8 threshold applies (0.75 escalates, 0.85 passes)', async () => {
      up.script({ 'up-small-a': reply('[q=0.85] small and sure') });
      const first = await sdk.chat.completions.create(ask('asym', 'sure one', { kind: 'sure' })).withResponse();
      assert.equal(first.data.choices[0].message.content, '[q=0.85] small and sure');
      const line = await decision(tg, first.response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.routed_tier, 'small');
      assert.equal(line.routing_reason, 'rule 2: surely easy');

      up.script({ 'up-small-a': reply('[q=0.75] passes 0.5, not 0.8'), 'up-large-l': reply('[q=0.9] large') });
      const second = await sdk.chat.completions.create(ask('asym', 'sure but weak', { kind: 'sure' })).withResponse();
      assert.equal(second.data.choices[0].message.content, '[q=0.9] large');
      assert.equal(second.response.headers.get('x-tiergate-escalations'), '1');
    });

    test('with speculate configured the bump does not happen: small and large run at once', async () => {
      up.script({ 'up-small-a': reply('[q=0.85] small after all', undefined, { delayMs: 150 }), 'up-large-l': { kind: 'hang' } });
      const { data, response } = await sdk.chat.completions.create(ask('asym-spec', 'unsure, speculating', { kind: 'unsure' })).withResponse();
      assert.equal(data.choices[0].message.content, '[q=0.85] small after all');
      assert.equal(response.headers.get('x-tiergate-speculative'), 'true');
      await abortedUpstream(up.to('up-large-l')[0]);
      const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.routed_tier, 'small');
      assert.equal(line.routing_reason, 'rule 1: probably easy');
      assert.equal(line.speculated, true);
    });
  });
});

// ---------------------------------------------------------------------------------
// Gateway 2: three tiers, a fallback outside the ladder, and gates that combine.

describe('three tiers, fallback, and how evaluator scores combine', () => {
  let fake: FakeOpenAI;
  let up: Upstreams;
  let tg: TestGateway;
  let sdk: OpenAI;

  const policy = (baseURL: string) => {
    const model = (name: string, p: number) => `  ${name}: { provider: up, upstream: up-${name}, price: { input_per_mtok: ${p}, output_per_mtok: ${p} }, timeout_ms: 2000 }`;
    const toSmall = `router: { plugin: rules, rules: [ { when: "true", tier: small, confidence: 1, reason: small } ] }`;
    const pair = (combine: string, extraA = '', extraB = '') =>
      `gate: { combine: ${combine}, threshold: 0.5, evaluators: [ { plugin: answer_score, name: a, key: a${extraA} }, { plugin: answer_score, name: b, key: b, when: "kind = 'strict'"${extraB} } ] }`;
    return `version: 1
plugins: { paths: [${JSON.stringify(FIXTURE_PLUGINS)}] }
providers:
  up: { plugin: openai, base_url: "${baseURL}", api_key: test-key }
models:
${model('s1', 1)}
${model('m1', 3)}
${model('l1', 9)}
${model('fb', 5)}
tiers:
  - { name: small, models: [s1] }
  - { name: medium, models: [m1] }
  - { name: large, models: [l1] }
features:
  kind: metadata.kind
resilience: { retries: 0, backoff_ms: 10, max_backoff_ms: 100, failure_threshold: 1000 }
routes:
  climb:
    ${toSmall}
    default: small
    fallback: fb
    gate: { evaluators: [ { plugin: answer_score } ], threshold: 0.7, max_escalations: 1 }
  climb-top:
    ${toSmall}
    default: small
    gate: { evaluators: [ { plugin: answer_score } ], threshold: 0.7, max_escalations: 1 }
  combo-min:
    ${toSmall}
    default: small
    ${pair('min')}
  combo-mean:
    ${toSmall}
    default: small
    ${pair('mean')}
  combo-weighted:
    ${toSmall}
    default: small
    ${pair('weighted', ', weight: 3', ', weight: 1')}
  combo-threshold:
    ${toSmall}
    default: small
    ${pair('mean', '', ', threshold: 0.7')}
analytics:
  decision_log: { file: decisions.jsonl }
`;
  };

  before(async () => {
    fake = await startFakeOpenAI();
    up = new Upstreams(fake);
    tg = await startTestGateway(policy(fake.baseURL));
    sdk = client(tg);
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  test('max_escalations 1: small fails, medium fails → the fallback model (outside the ladder) answers', async () => {
    up.script({ 'up-s1': reply('[q=0.3] s1'), 'up-m1': reply('[q=0.5] m1'), 'up-fb': reply('[q=0.95] fb') });
    const { data, response } = await sdk.chat.completions.create(ask('climb', 'climb')).withResponse();
    assert.equal(data.choices[0].message.content, '[q=0.95] fb');
    assert.equal(response.headers.get('x-tiergate-gate'), 'passed');
    assert.equal(response.headers.get('x-tiergate-model'), 'fb');
    assert.equal(response.headers.get('x-tiergate-tier'), null, 'fb belongs to no tier');
    assert.equal(up.to('up-l1').length, 0, 'max_escalations stops the climb at medium');
    const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
    assert.deepEqual(
      line.attempts.map((a) => [a.model, a.role, a.gate?.score]),
      [
        ['s1', 'routed', 0.3],
        ['m1', 'escalation', 0.5],
        ['fb', 'fallback', 0.95],
      ],
    );
    assert.equal(line.escalations, 2);
    assert.equal(line.tier, null);
    assert.equal(line.confidence, 0.25);
    assert.equal(line.cost_usd, sumOfAttempts(line.attempts));
  });

  test('nothing passes → the best-scoring answer, with x-tiergate-gate: failed', async () => {
    up.script({ 'up-s1': reply('[q=0.3] s1'), 'up-m1': reply('[q=0.6] m1 is best'), 'up-fb': reply('[q=0.2] fb') });
    const { data, response } = await sdk.chat.completions.create(ask('climb', 'nothing good')).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.choices[0].message.content, '[q=0.6] m1 is best');
    assert.equal(response.headers.get('x-tiergate-gate'), 'failed');
    assert.equal(response.headers.get('x-tiergate-model'), 'm1');
    assert.equal(response.headers.get('x-tiergate-quality-score'), '0.600');
    assert.equal(response.headers.get('x-tiergate-escalations'), '2');
    const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
    assert.equal(line.gate, 'failed');
    assert.equal(line.quality_score, 0.6);
    assert.equal(line.selected_model, 'm1');
    assert.equal(line.attempts.length, 3);
    assert.equal(line.cost_usd, sumOfAttempts(line.attempts), 'every answer that was produced is paid for');
  });

  test('without a fallback, the route falls back to the top tier after max_escalations', async () => {
    up.script({ 'up-s1': reply('[q=0.3] s1'), 'up-m1': reply('[q=0.4] m1'), 'up-l1': reply('[q=0.8] l1') });
    const { data, response } = await sdk.chat.completions.create(ask('climb-top', 'to the top')).withResponse();
    assert.equal(data.choices[0].message.content, '[q=0.8] l1');
    const line = await decision(tg, response.headers.get('x-tiergate-decision-id'));
    assert.deepEqual(
      line.attempts.map((a) => [a.model, a.role]),
      [
        ['s1', 'routed'],
        ['m1', 'escalation'],
        ['l1', 'fallback'],
      ],
    );
  });

  const A = 0.9;
  const B = 0.6;
  const both = `[a=${A}] [b=${B}]`;

  async function scored(route: string, kind: string): Promise<DecisionRecord> {
    up.script({ 'up-s1': reply(both), 'up-m1': reply('[a=1] [b=1] medium') });
    const { response } = await sdk.chat.completions.create(ask(route, `combine ${route} ${kind}`, { kind })).withResponse();
    return decision(tg, response.headers.get('x-tiergate-decision-id'));
  }

  test('combine min, with `when` limiting evaluator b to strict requests', async () => {
    const strict = await scored('combo-min', 'strict');
    assert.equal(strict.quality_score, Math.min(A, B));
    assert.deepEqual(
      strict.attempts[0].gate?.evaluators.map((e) => [e.name, e.score, e.skipped ?? false]),
      [
        ['a', A, false],
        ['b', B, false],
      ],
    );
    const lax = await scored('combo-min', 'lax');
    assert.equal(lax.quality_score, A, 'b did not run, so only a counts');
    assert.deepEqual(
      lax.attempts[0].gate?.evaluators.map((e) => [e.name, e.score, e.skipped ?? false]),
      [
        ['a', A, false],
        ['b', null, true],
      ],
    );
  });

  test('combine mean', async () => {
    assert.equal((await scored('combo-mean', 'strict')).quality_score, (A + B) / 2);
    assert.equal((await scored('combo-mean', 'lax')).quality_score, A);
  });

  test('combine weighted (a weight 3, b weight 1)', async () => {
    assert.equal((await scored('combo-weighted', 'strict')).quality_score, (A * 3 + B * 1) / (3 + 1));
    assert.equal((await scored('combo-weighted', 'lax')).quality_score, (A * 3) / 3);
  });

  test('a per-evaluator threshold fails the gate even when the combined score passes', async () => {
    const strict = await scored('combo-threshold', 'strict');
    const first = strict.attempts[0].gate;
    assert.equal(first?.score, (A + B) / 2, 'combined 0.75 is above the gate threshold 0.5…');
    assert.equal(first?.evaluators[1].threshold, 0.7);
    assert.equal(first?.passed, false, '…but b scored 0.6, below its own 0.7');
    assert.equal(strict.selected_model, 'm1');
    assert.equal(strict.escalations, 1);
    assert.equal(strict.quality_score, 1);
    const lax = await scored('combo-threshold', 'lax');
    assert.equal(lax.attempts[0].gate?.passed, true, 'b did not apply, so its threshold did not either');
    assert.equal(lax.selected_model, 's1');
  });
});

// ---------------------------------------------------------------------------------
// Gateway 3: the circuit breaker.

describe('circuit breaker', () => {
  let fake: FakeOpenAI;
  let up: Upstreams;
  let tg: TestGateway;
  let sdk: OpenAI;
  const COOLDOWN_MS = 800;

  before(async () => {
    fake = await startFakeOpenAI();
    up = new Upstreams(fake);
    tg = await startTestGateway(`version: 1
providers:
  up: { plugin: openai, base_url: "${fake.baseURL}", api_key: test-key }
models:
  cb-a: { provider: up, upstream: up-cb-a, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 2000 }
  cb-b: { provider: up, upstream: up-cb-b, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 2000 }
tiers:
  - { name: pool, models: [cb-a, cb-b] }
resilience: { retries: 0, backoff_ms: 10, max_backoff_ms: 100, failure_threshold: 2, cooldown_ms: ${COOLDOWN_MS} }
routes:
  pool:
    router: { plugin: rules, rules: [] }
    default: pool
analytics:
  decision_log: { file: decisions.jsonl }
`);
    sdk = client(tg);
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  async function call(): Promise<DecisionRecord> {
    const { data, response } = await sdk.chat.completions.create(ask('pool', 'circuit')).withResponse();
    assert.ok(data.choices[0].message.content);
    return decision(tg, response.headers.get('x-tiergate-decision-id'));
  }

  async function cooling(): Promise<Record<string, string>> {
    const res = await fetch(`${tg.url}/admin/status`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { models_in_cooldown: Record<string, string> }).models_in_cooldown;
  }

  test('failure_threshold consecutive failures → skipped for cooldown_ms, listed in /admin/status, then probed again', async () => {
    let aHealthy = false;
    up.script({ 'up-cb-a': () => (aHealthy ? reply('a is back') : { kind: 'status', status: 500 }), 'up-cb-b': reply('b') });

    for (let i = 0; i < 2; i++) {
      const line = await call();
      assert.deepEqual(
        line.attempts.map((a) => [a.model, a.outcome, a.error_code]),
        [
          ['cb-a', 'failed', 'TG_ERR_UPSTREAM'],
          ['cb-b', 'ok', undefined],
        ],
      );
    }
    const listed = await cooling();
    assert.deepEqual(Object.keys(listed), ['cb-a']);
    assert.ok(Date.parse(listed['cb-a']) > Date.now(), 'with the time it comes back');

    const skipped = await call();
    assert.deepEqual(
      skipped.attempts.map((a) => [a.model, a.outcome]),
      [
        ['cb-a', 'skipped_cooldown'],
        ['cb-b', 'ok'],
      ],
    );
    assert.equal(skipped.attempts[0].cost_usd, 0);
    assert.equal(up.to('up-cb-a').length, 2, 'a model in cooldown is not called');

    // After the cooldown: one probe. It fails, and one failure sends the model straight back.
    await sleep(COOLDOWN_MS + 50);
    assert.deepEqual(await cooling(), {});
    const probe = await call();
    assert.deepEqual(probe.attempts.map((a) => [a.model, a.outcome]), [
      ['cb-a', 'failed'],
      ['cb-b', 'ok'],
    ]);
    assert.equal(up.to('up-cb-a').length, 3, 'probed again');
    assert.deepEqual(Object.keys(await cooling()), ['cb-a'], 'a failed probe reopens the breaker at once');
    assert.equal((await call()).attempts[0].outcome, 'skipped_cooldown');

    // Next cooldown over, the model has recovered: the probe succeeds and the breaker closes.
    aHealthy = true;
    await sleep(COOLDOWN_MS + 50);
    const recovered = await call();
    assert.deepEqual(recovered.attempts.map((a) => [a.model, a.outcome]), [['cb-a', 'ok']]);
    assert.equal(recovered.selected_model, 'cb-a');
    assert.deepEqual(await cooling(), {});
  });
});

// ---------------------------------------------------------------------------------
// Gateway 4: the simulator, for the latency and cost of speculation on realistic answers.

describe('speculation with the simulator', () => {
  let tg: TestGateway;
  let sdk: OpenAI;
  const CHEAP_MS = 200;
  const STRONG_MS = 400;
  const WEAK_PRICE = price(0.15, 0.6);
  const STRONG_PRICE = price(2.5, 10);

  before(async () => {
    const route = (speculate: boolean) => `
    router: { plugin: rules, rules: [ { when: "true", tier: cheap, confidence: 0.5, reason: cheap first } ] }
    default: cheap
    gate: { evaluators: [ { plugin: sim_deficiency } ], threshold: 0.5 }${speculate ? '\n    speculate: { when: "decision.confidence < 0.6" }' : ''}`;
    tg = await startTestGateway(`version: 1
plugins: { paths: [${JSON.stringify(FIXTURE_PLUGINS)}] }
providers:
  sim:
    plugin: simulator
    time_scale: 1
    profiles:
      sim-weak: { capability: 0.3, first_token_ms: ${CHEAP_MS}, tokens_per_second: 1000000 }
      sim-strong: { capability: 0.99, first_token_ms: ${STRONG_MS}, tokens_per_second: 1000000 }
models:
  weak: { provider: sim, upstream: sim-weak, price: { input_per_mtok: ${WEAK_PRICE.input}, output_per_mtok: ${WEAK_PRICE.output} } }
  strong: { provider: sim, upstream: sim-strong, price: { input_per_mtok: ${STRONG_PRICE.input}, output_per_mtok: ${STRONG_PRICE.output} } }
tiers:
  - { name: cheap, models: [weak] }
  - { name: premium, models: [strong] }
routes:
  sim-spec:${route(true)}
  sim-seq:${route(false)}
analytics:
  decision_log: { file: decisions.jsonl }
`);
    sdk = client(tg);
  });

  after(async () => {
    await tg?.close();
  });

  const HARD = [
    'Prove step by step that the sum of the first n odd numbers is n^2, then explain why induction works here.',
    'Derive the derivative of x^3 * sin(x) and justify each step of the calculation.',
    'Analyze the trade-off between a hash map and a balanced tree, then prove the lookup bound for the tree.',
    'Explain step by step why the square root of 2 is irrational, and derive the contradiction.',
  ];
  // Three: one more than the default failure_threshold, so aborted speculative calls
  // counted as failures would put the strong model in cooldown (checked below).
  const EASY = [
    'Classify this review as positive or negative: great food',
    'Classify this review as positive or negative: terrible service',
    'Classify this review as positive or negative: fast delivery',
  ];

  async function run(route: string, prompt: string): Promise<{ ms: number; line: DecisionRecord; text: string }> {
    const started = performance.now();
    const { data, response } = await sdk.chat.completions.create(ask(route, prompt)).withResponse();
    const ms = performance.now() - started;
    assert.equal(response.headers.get('x-tiergate-simulated'), 'true');
    return { ms, line: await decision(tg, response.headers.get('x-tiergate-decision-id')), text: data.choices[0].message.content ?? '' };
  }

  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

  test('for requests that escalate, speculative latency ≈ max(cheap + gate, strong), not the sum; the extra cost is reported', async (t) => {
    for (const prompt of HARD) assert.ok(promptDifficulty([{ role: 'user', content: prompt }]) > 0.3, `hard for the weak model: ${prompt}`);
    for (const prompt of EASY) assert.ok(promptDifficulty([{ role: 'user', content: prompt }]) <= 0.3, `easy for the weak model: ${prompt}`);

    const hard = { spec: [] as Array<Awaited<ReturnType<typeof run>>>, seq: [] as Array<Awaited<ReturnType<typeof run>>> };
    for (const prompt of HARD) {
      hard.seq.push(await run('sim-seq', prompt));
      hard.spec.push(await run('sim-spec', prompt));
    }
    for (const [i, r] of [...hard.seq, ...hard.spec].entries()) {
      assert.equal(r.line.selected_model, 'strong', `hard prompt ${i % HARD.length} escalated to the strong model`);
      assert.equal(r.line.escalations, 1);
      assert.equal(r.line.attempts.find((a) => a.model === 'weak')?.gate?.passed, false);
    }
    for (let i = 0; i < HARD.length; i++) assert.equal(hard.spec[i].text, hard.seq[i].text, 'the same answer either way');
    assert.ok(hard.spec.every((r) => r.line.speculated));

    const easy = { spec: [] as Array<Awaited<ReturnType<typeof run>>>, seq: [] as Array<Awaited<ReturnType<typeof run>>> };
    for (const prompt of EASY) {
      easy.seq.push(await run('sim-seq', prompt));
      easy.spec.push(await run('sim-spec', prompt));
    }
    for (const r of [...easy.seq, ...easy.spec]) assert.equal(r.line.selected_model, 'weak');

    const max = Math.max(CHEAP_MS, STRONG_MS);
    const sum = CHEAP_MS + STRONG_MS;
    const specMs = mean(hard.spec.map((r) => r.ms));
    const seqMs = mean(hard.seq.map((r) => r.ms));
    const costOf = (rs: Array<{ line: DecisionRecord }>) => mean(rs.map((r) => r.line.cost_usd as number));
    const extraHard = costOf(hard.spec) - costOf(hard.seq);
    const extraEasy = costOf(easy.spec) - costOf(easy.seq);
    t.diagnostic(`escalating requests (n=${HARD.length} each): speculative mean ${specMs.toFixed(0)} ms, sequential mean ${seqMs.toFixed(0)} ms; max(cheap, strong) = ${max} ms, sum = ${sum} ms`);
    t.diagnostic(`extra cost of speculation: escalating requests ${extraHard.toExponential(3)} USD/request (the strong call is paid either way); requests the cheap model answers ${extraEasy.toExponential(3)} USD/request (the aborted strong call's prompt), mean cost ${costOf(easy.seq).toExponential(3)} → ${costOf(easy.spec).toExponential(3)} USD`);
    t.diagnostic(`easy requests: speculative mean ${mean(easy.spec.map((r) => r.ms)).toFixed(0)} ms, sequential mean ${mean(easy.seq.map((r) => r.ms)).toFixed(0)} ms`);

    assert.ok(seqMs >= sum, `sequential escalation costs the sum (${seqMs.toFixed(0)} ms ≥ ${sum})`);
    assert.ok(specMs >= max, `speculation cannot beat the strong model (${specMs.toFixed(0)} ms ≥ ${max})`);
    assert.ok(Math.abs(specMs - max) < Math.abs(specMs - sum), `speculative mean ${specMs.toFixed(0)} ms is closer to max ${max} than to sum ${sum}`);

    // Cost: for escalations the same two calls are paid either way; for the requests the
    // cheap model answers, speculation adds exactly the aborted strong call's prompt.
    for (let i = 0; i < HARD.length; i++) assert.equal(hard.spec[i].line.cost_usd, hard.seq[i].line.cost_usd);
    for (let i = 0; i < EASY.length; i++) {
      const aborted = easy.spec[i].line.attempts.find((a) => a.role === 'speculative');
      assert.equal(aborted?.outcome, 'aborted');
      assert.equal(aborted?.usage_estimated, true);
      assert.equal(aborted?.cost_usd, cost(STRONG_PRICE, { prompt_tokens: aborted?.usage?.prompt_tokens ?? NaN, completion_tokens: 0 }));
      assert.ok((aborted?.cost_usd ?? 0) > 0);
      assert.equal(easy.spec[i].line.cost_usd, sumOfAttempts(easy.spec[i].line.attempts));
      assert.equal(easy.spec[i].line.cost_usd, (easy.seq[i].line.cost_usd as number) + (aborted?.cost_usd as number));
    }
    assert.ok(extraEasy > 0);

    // A speculative call cut short on purpose is no failure of the strong model.
    const status = (await (await fetch(`${tg.url}/admin/status`)).json()) as { models_in_cooldown: Record<string, string> };
    assert.deepEqual(status.models_in_cooldown, {});
  });
});

// ---------------------------------------------------------------------------------

describe('policy rules', () => {
  test('speculate without a gate fails to load: TG_ERR_CONFIG_RULE at routes.<route>.speculate', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-gates-'));
    try {
      const file = path.join(dir, 'gateway.yaml');
      writeFileSync(
        file,
        `version: 1
providers:
  sim: { plugin: simulator, time_scale: 0, profiles: { s: { capability: 0.5, first_token_ms: 1, tokens_per_second: 100 } } }
models:
  m1: { provider: sim, upstream: s, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  m2: { provider: sim, upstream: s, price: { input_per_mtok: 2, output_per_mtok: 2 } }
tiers:
  - { name: t1, models: [m1] }
  - { name: t2, models: [m2] }
routes:
  eager:
    router: { plugin: rules, rules: [] }
    default: t1
    speculate: { when: "decision.confidence < 0.6" }
`,
      );
      let caught: unknown;
      try {
        const runtime = await buildRuntime(file, { logger: createLogger({ level: 'silent' }), mode: 'validate' });
        await runtime.dispose();
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof PolicyErrors, `expected PolicyErrors, got ${String(caught)}`);
      assert.deepEqual(
        caught.errors.map((e) => ({ code: e.code, path: e.location?.path, line: e.location?.line, column: e.location?.column })),
        [{ code: 'TG_ERR_CONFIG_RULE', path: 'routes.eager.speculate', line: 14, column: 5 }],
      );
      assert.match(caught.errors[0].message, /gate/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('after everything', () => {
  test('no promise rejection went unhandled during the file', async () => {
    await sleep(50);
    process.off('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled.map(String), []);
  });
});
