import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import simulator, { promptDifficulty, type SimulatorOptions } from '../../plugins/providers/simulator/index.ts';
import { type CallOptions, type ChatMessage, type ChatRequest, type ChatResult, type ModelSpec, type Provider } from '../../src/plugin-contract/plugin-api.ts';
import { collect, testPluginContext, upstreamFailure, type LogLine } from '../support/plugin-context.ts';
import { estimateMessagesTokens, estimateTextTokens } from '../../src/plugin-contract/tokens.ts';

const small: ModelSpec = { name: 'small', provider: 'sim', upstream: 'sim-small', price: { input_per_mtok: 0.15, output_per_mtok: 0.6 }, timeout_ms: 5000 };
const large: ModelSpec = { name: 'large', provider: 'sim', upstream: 'sim-large', price: { input_per_mtok: 2.5, output_per_mtok: 10 }, timeout_ms: 5000 };

const logged: LogLine[] = [];
const ctx = testPluginContext({ at: 'providers.sim', logs: logged });

// Instant by default; timing tests pass their own time_scale.
const instant: SimulatorOptions = {
  profiles: {
    'sim-small': { capability: 0.45, first_token_ms: 120, tokens_per_second: 150 },
    'sim-large': { capability: 0.9, first_token_ms: 400, tokens_per_second: 60 },
    'sim-weak': { capability: 0.2, first_token_ms: 0, tokens_per_second: 100 },
    'sim-oracle': { capability: 1, first_token_ms: 0, tokens_per_second: 100 },
  },
  time_scale: 0,
};

const SUPPORT = 'Where is my package? Order 12345';
const LEGAL =
  'My contractor breached our contract and I want to file a lawsuit. Explain step by step what I need to prove, ' +
  'and analyze my liability if I withhold the final payment. What are the deadlines?';
const MATH = 'Prove that the square root of 2 is irrational. Then derive a closed form for 1^2 + 2^2 + ... + n^2 step by step and calculate it for n = 10.';

const HEDGE = /\bnot (?:entirely )?sure\b|\bmight be\b/i;
const REFUSAL = /\bI'm sorry, but I can't help\b/i;

function user(content: string): ChatMessage[] {
  return [{ role: 'user', content }];
}

function request(upstream: string, content: string, extra: Partial<ChatRequest> = {}): ChatRequest {
  return { model: upstream, messages: user(content), ...extra };
}

function call(model: ModelSpec = small, signal: AbortSignal = new AbortController().signal): CallOptions {
  return { model, signal };
}

function modelFor(upstream: string): ModelSpec {
  return { ...small, name: upstream, upstream };
}

async function make(options: SimulatorOptions = instant): Promise<Provider> {
  assert.deepEqual(simulator.validate(options, ctx), []);
  return simulator.create(options, ctx);
}

/** Everything but `created`, which is a wall-clock timestamp like OpenAI's. */
function stable(result: ChatResult): Omit<ChatResult, 'created'> {
  const { created: _created, ...rest } = result;
  return rest;
}

function content(result: ChatResult): string {
  return result.choices[0].message.content ?? '';
}

function isDeficient(result: ChatResult): boolean {
  const text = content(result);
  return result.choices[0].finish_reason === 'length' || HEDGE.test(text) || REFUSAL.test(text);
}

function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

describe('simulator provider', () => {
  test('meta, example and validate', async () => {
    assert.equal(simulator.meta.id, 'simulator');
    assert.equal(simulator.meta.kind, 'provider');
    assert.deepEqual(simulator.validate(simulator.meta.example, ctx), []);
    const issues = simulator.validate({ profiles: {} }, ctx);
    assert.equal(issues.length, 1);
    assert.deepEqual(issues[0].path, ['profiles']);
    const provider = await simulator.create(simulator.meta.example, ctx);
    await provider.dispose();
  });

  describe('promptDifficulty', () => {
    test('is bounded, pure and orders easy below hard', () => {
      const support = promptDifficulty(user(SUPPORT));
      const legal = promptDifficulty(user(LEGAL));
      const math = promptDifficulty(user(MATH));
      assert.ok(support < 0.35, `support question: ${support}`);
      assert.ok(legal > 0.7, `legal reasoning question: ${legal}`);
      assert.ok(math > 0.7, `math reasoning question: ${math}`);
      assert.ok(promptDifficulty(user('Explain how photosynthesis works.')) > support);
      assert.equal(promptDifficulty(user(LEGAL)), legal);
      for (const messages of [[], user(''), user('x'.repeat(100_000)), user(`${LEGAL} ${MATH} `.repeat(50))]) {
        const d = promptDifficulty(messages);
        assert.ok(d >= 0 && d <= 1, `out of bounds: ${d}`);
      }
    });

    test('similar prompts do not all tie', () => {
      const values = new Set(['12345', '12346', '99881', '40404', '31337'].map((n) => promptDifficulty(user(`Where is my package? Order ${n}`))));
      assert.ok(values.size > 1, 'the stable hash term should spread near-identical prompts');
    });

    test('ignores the system prompt but counts turns', () => {
      const bare = promptDifficulty(user(SUPPORT));
      const withSystem = promptDifficulty([
        { role: 'system', content: 'You are a careful legal analyst. Explain step by step. '.repeat(20) },
        ...user(SUPPORT),
      ]);
      assert.equal(withSystem, bare);
      const turns: ChatMessage[] = [];
      for (let i = 0; i < 4; i++) turns.push({ role: 'user', content: `Question ${i} about the plan` }, { role: 'assistant', content: 'Sure.' });
      turns.push(...user(SUPPORT));
      assert.ok(promptDifficulty(turns) > bare);
    });
  });

  test('same input gives identical output across instances', async () => {
    const a = await make();
    const b = await make();
    for (const text of [SUPPORT, LEGAL, MATH, 'Explain how photosynthesis works.']) {
      for (const upstream of ['sim-small', 'sim-large']) {
        const first = await a.complete(request(upstream, text), call(modelFor(upstream)));
        const second = await b.complete(request(upstream, text), call(modelFor(upstream)));
        assert.deepEqual(stable(first), stable(second));
        assert.match(first.id, /^sim-[0-9a-f]+$/);
      }
    }
    await a.dispose();
    await b.dispose();
  });

  test('result shape, usage and simulated flag', async () => {
    const provider = await make();
    const req = request('sim-large', 'Explain how photosynthesis works.');
    const result = await provider.complete(req, call(large));
    assert.equal(result.object, 'chat.completion');
    assert.equal(result.model, 'sim-large');
    assert.equal(result.simulated, true);
    assert.equal(typeof result.created, 'number');
    assert.equal(result.choices.length, 1);
    assert.equal(result.choices[0].message.role, 'assistant');
    assert.equal(result.choices[0].finish_reason, 'stop');
    assert.deepEqual(result.usage, {
      prompt_tokens: estimateMessagesTokens(req.messages),
      completion_tokens: estimateTextTokens(content(result)),
      total_tokens: estimateMessagesTokens(req.messages) + estimateTextTokens(content(result)),
    });
    await provider.dispose();
  });

  test('a weak model fails hard prompts visibly; a strong one answers them', async () => {
    const provider = await make();
    const kinds = new Set<string>();
    const hard = [LEGAL, MATH];
    for (let i = 0; i < 20; i++) hard.push(`Explain step by step why theorem ${i} holds, then prove it and derive the bound for case ${i}.`);
    for (const text of hard) {
      assert.ok(promptDifficulty(user(text)) > 0.2);
      const weak = await provider.complete(request('sim-weak', text), call(modelFor('sim-weak')));
      assert.ok(isDeficient(weak), `weak answer should be deficient: ${content(weak)}`);
      kinds.add(weak.choices[0].finish_reason === 'length' ? 'truncation' : REFUSAL.test(content(weak)) ? 'refusal' : 'hedge');
      if (weak.choices[0].finish_reason === 'length') assert.doesNotMatch(content(weak), /[.!?]$/, 'a truncation ends mid-sentence');

      const strong = await provider.complete(request('sim-oracle', text), call(modelFor('sim-oracle')));
      assert.ok(!isDeficient(strong), `strong answer should be competent: ${content(strong)}`);
      assert.ok(content(strong).split(/(?<=[.!?])\s/).length >= 3, 'a competent answer has a few sentences');
    }
    assert.ok(kinds.size >= 2, `deficiencies should vary, saw ${[...kinds].join(', ')}`);
    await provider.dispose();
  });

  test('order-status questions get a shipment state', async () => {
    const provider = await make();
    const result = await provider.complete(request('sim-small', SUPPORT), call(small));
    assert.ok(!isDeficient(result));
    assert.match(content(result), /\b(?:in transit|shipped|out for delivery|delivered)\b/);
    assert.match(content(result), /12345/);
    await provider.dispose();
  });

  test('classification prompts get a label', async () => {
    const provider = await make();
    const result = await provider.complete(
      request('sim-small', "Classify the sentiment of this review as positive, negative, or neutral: 'The food was cold and the waiter was rude.'"),
      call(small),
    );
    assert.equal(content(result), 'negative');
    await provider.dispose();
  });

  test('stream concatenates to the complete() text and ends with usage', async () => {
    const provider = await make({ ...instant, time_scale: 0.001 });
    for (const [upstream, text] of [
      ['sim-large', LEGAL],
      ['sim-small', LEGAL],
      ['sim-small', SUPPORT],
      ['sim-weak', MATH],
    ] as const) {
      const req = request(upstream, text);
      const whole = await provider.complete(req, call(modelFor(upstream)));
      const chunks = await collect(provider.stream({ ...req, stream: true }, call(modelFor(upstream))));
      assert.ok(chunks.length >= 4);
      for (const chunk of chunks) {
        assert.equal(chunk.simulated, true);
        assert.equal(chunk.object, 'chat.completion.chunk');
        assert.equal(chunk.model, upstream);
        assert.equal(chunk.id, whole.id);
      }
      assert.equal(chunks[0].choices[0].delta.role, 'assistant');
      const text2 = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
      assert.equal(text2, content(whole));
      assert.ok(chunks.length - 3 > 1, 'content arrives in several chunks');
      const finish = chunks[chunks.length - 2];
      assert.equal(finish.choices[0].finish_reason, whole.choices[0].finish_reason);
      const last = chunks[chunks.length - 1];
      assert.deepEqual(last.choices, []);
      assert.deepEqual(last.usage, whole.usage);
    }
    await provider.dispose();
  });

  test('max_tokens and max_completion_tokens truncate with finish_reason length', async () => {
    const provider = await make();
    const limited = await provider.complete(request('sim-large', LEGAL, { max_tokens: 5 }), call(large));
    assert.equal(limited.choices[0].finish_reason, 'length');
    assert.ok(limited.usage!.completion_tokens <= 5 && limited.usage!.completion_tokens > 0);
    const full = await provider.complete(request('sim-large', LEGAL), call(large));
    assert.ok(content(full).startsWith(content(limited)));

    // max_completion_tokens supersedes max_tokens, as in OpenAI's API.
    const both = await provider.complete(request('sim-large', LEGAL, { max_tokens: 5, max_completion_tokens: 4000 }), call(large));
    assert.equal(both.choices[0].finish_reason, 'stop');

    const chunks = await collect(provider.stream(request('sim-large', LEGAL, { max_completion_tokens: 5 }), call(large)));
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), content(limited));
    assert.equal(chunks[chunks.length - 2].choices[0].finish_reason, 'length');
    await provider.dispose();
  });

  test('delays follow the profile times time_scale', async () => {
    // first_token_ms 200 × time_scale 0.5 = 100 ms; bounded below only (timers may fire a tick early).
    const provider = await make({ profiles: { slow: { capability: 1, first_token_ms: 200, tokens_per_second: 1e6 } }, time_scale: 0.5 });
    let start = performance.now();
    await provider.complete(request('slow', SUPPORT), call(modelFor('slow')));
    assert.ok(performance.now() - start >= 90, `complete took ${performance.now() - start} ms`);

    start = performance.now();
    const iterator = provider.stream(request('slow', SUPPORT), call(modelFor('slow')))[Symbol.asyncIterator]();
    await iterator.next();
    assert.ok(performance.now() - start >= 90, `first chunk after ${performance.now() - start} ms`);
    await iterator.return?.();
    await provider.dispose();
  });

  test('abort while waiting rejects promptly and leaves no timers', async () => {
    const provider = await make({ profiles: { slow: { capability: 1, first_token_ms: 60_000, tokens_per_second: 1 } }, time_scale: 1 });
    const before = timers();

    const controller = new AbortController();
    const pending = provider.complete(request('slow', SUPPORT), call(modelFor('slow'), controller.signal));
    const start = performance.now();
    setTimeout(() => controller.abort(new Error('client went away')), 20);
    await upstreamFailure(pending, 'aborted');
    assert.ok(performance.now() - start < 1000);
    assert.equal(timers(), before, 'the delay timer must be cleared');

    // Mid-stream: the first token arrives, then generation (1 token/s) is interrupted.
    const streaming = await make({ profiles: { slow: { capability: 1, first_token_ms: 0, tokens_per_second: 1 } }, time_scale: 1 });
    const controller2 = new AbortController();
    const iterator = streaming.stream(request('slow', SUPPORT), call(modelFor('slow'), controller2.signal))[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).done, false);
    const next = iterator.next();
    setTimeout(() => controller2.abort(), 20);
    await upstreamFailure(next, 'aborted');
    assert.equal(timers(), before);

    // Already aborted: fails without waiting at all.
    await upstreamFailure(provider.complete(request('slow', SUPPORT), call(modelFor('slow'), AbortSignal.abort())), 'aborted');
    await upstreamFailure(collect(provider.stream(request('slow', SUPPORT), call(modelFor('slow'), AbortSignal.abort()))), 'aborted');
    assert.equal(timers(), before);
    await provider.dispose();
    await streaming.dispose();
  });

  test('unknown upstream is a 404 unless a default_profile is given', async () => {
    const provider = await make();
    const err = await upstreamFailure(provider.complete(request('gpt-nope', SUPPORT), call(modelFor('gpt-nope'))), 'http');
    assert.equal(err.status, 404);
    assert.match(err.message, /gpt-nope/);
    const streamErr = await upstreamFailure(collect(provider.stream(request('gpt-nope', SUPPORT), call(modelFor('gpt-nope')))), 'http');
    assert.equal(streamErr.status, 404);
    await provider.dispose();

    const fallback = await make({ default_profile: { capability: 0.5, first_token_ms: 0, tokens_per_second: 100 }, time_scale: 0 });
    const result = await fallback.complete(request('gpt-nope', SUPPORT), call(modelFor('gpt-nope')));
    assert.equal(result.model, 'gpt-nope');
    await fallback.dispose();
  });

  test('failure_rate fails deterministically with 503', async () => {
    const always = await make({ profiles: { flaky: { capability: 1, first_token_ms: 0, tokens_per_second: 100, failure_rate: 1 } }, time_scale: 0 });
    const err = await upstreamFailure(always.complete(request('flaky', SUPPORT), call(modelFor('flaky'))), 'http');
    assert.equal(err.status, 503);
    await upstreamFailure(collect(always.stream(request('flaky', SUPPORT), call(modelFor('flaky')))), 'http');
    await always.dispose();

    const half = await make({ profiles: { flaky: { capability: 1, first_token_ms: 0, tokens_per_second: 100, failure_rate: 0.5 } }, time_scale: 0 });
    const outcomes: boolean[] = [];
    for (let i = 0; i < 40; i++) {
      const req = request('flaky', `Where is my package? Order ${1000 + i}`);
      const first = await half.complete(req, call(modelFor('flaky'))).then(
        () => true,
        () => false,
      );
      const again = await half.complete(req, call(modelFor('flaky'))).then(
        () => true,
        () => false,
      );
      assert.equal(again, first, 'the same prompt fails or succeeds every time');
      outcomes.push(first);
    }
    assert.ok(outcomes.includes(true) && outcomes.includes(false));
    await half.dispose();
  });

  test('dispose is idempotent and later calls fail with connection', async () => {
    const provider = await make({ profiles: { slow: { capability: 1, first_token_ms: 60_000, tokens_per_second: 1 } }, time_scale: 1 });
    const before = timers();
    const inFlight = provider.complete(request('slow', SUPPORT), call(modelFor('slow')));
    await new Promise((resolve) => setTimeout(resolve, 10));
    await provider.dispose();
    await provider.dispose();
    await upstreamFailure(inFlight, 'connection');
    await upstreamFailure(provider.complete(request('slow', SUPPORT), call(modelFor('slow'))), 'connection');
    await upstreamFailure(collect(provider.stream(request('slow', SUPPORT), call(modelFor('slow')))), 'connection');
    assert.equal(timers(), before);
  });
});
