// Speculation, end to end: the cheap and the next tier called at once, the loser aborted
// upstream, its prompt counted in the cost. First on the two-tier fake-openai gateway
// (test/support/gates.ts; scores come from the answer text), then on the simulator for
// the latency and cost of speculation on realistic answers, and the policy rule that
// speculation needs a gate. Latency assertions are generous bounds only; everything else
// is exact.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type OpenAI from 'openai';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { abortedUpstream, reply, type ScriptedUpstreams } from '../support/scripted-upstream.ts';
import { ask, brief, client, cost, GATE_PLUGINS, LARGE, price, SMALL, startTwoTierGateway, sumOfAttempts, type TwoTierGateway } from '../support/gates.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { estimateMessagesTokens } from '../../src/plugin-contract/tokens.ts';
import { promptDifficulty } from '../../plugins/providers/simulator/index.ts';

const rejections = watchUnhandledRejections();
after(() => rejections.assertNone());

describe('gates, ladder, failover and speculation over real HTTP', () => {
  let gateway: TwoTierGateway | undefined;
  let up: ScriptedUpstreams;
  let tg: TestGateway;
  let sdk: OpenAI;

  before(async () => {
    gateway = await startTwoTierGateway();
    ({ up, tg, sdk } = gateway);
  });

  after(async () => {
    await gateway?.close();
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

      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
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
      const script = () =>
        up.script({
          'up-small-a': reply('[q=0.1] cheap and wrong', cheapUsage, { delayMs: 300 }),
          'up-large-l': reply('[q=0.9] strong', strongUsage, { delayMs: 500 }),
        });

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
      const line = await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.speculated, true);
      assert.equal(line.was_escalated, true);
      assert.equal(line.confidence, 0.25);
      assert.deepEqual(line.attempts.map((a) => [a.model, a.role, a.outcome, a.gate?.passed]).sort(), [
        ['large-l', 'speculative', 'ok', true],
        ['small-a', 'routed', 'ok', false],
      ]);
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
plugins: { paths: [${JSON.stringify(GATE_PLUGINS)}] }
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
    return { ms, line: await tg.waitForDecision(response.headers.get('x-tiergate-decision-id')), text: data.choices[0].message.content ?? '' };
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
    t.diagnostic(
      `escalating requests (n=${HARD.length} each): speculative mean ${specMs.toFixed(0)} ms, sequential mean ${seqMs.toFixed(0)} ms; max(cheap, strong) = ${max} ms, sum = ${sum} ms`,
    );
    t.diagnostic(
      `extra cost of speculation: escalating requests ${extraHard.toExponential(3)} USD/request (the strong call is paid either way); requests the cheap model answers ${extraEasy.toExponential(3)} USD/request (the aborted strong call's prompt), mean cost ${costOf(easy.seq).toExponential(3)} → ${costOf(easy.spec).toExponential(3)} USD`,
    );
    t.diagnostic(
      `easy requests: speculative mean ${mean(easy.spec.map((r) => r.ms)).toFixed(0)} ms, sequential mean ${mean(easy.seq.map((r) => r.ms)).toFixed(0)} ms`,
    );

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
