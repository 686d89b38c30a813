// Shadow evaluation and `tiergate report`, end to end: a real gateway on the simulator,
// the official openai SDK as the client, the decision log it writes read back by the
// report (as a module and as the `tiergate report` command in a child process). Every
// metric the report prints is checked against the same arithmetic done here over the
// raw log lines.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';
import type { DecisionRecord, ShadowRecord } from '../../src/observe/decision-log.ts';
import {
  buildReport,
  readFeedback,
  readLogs,
  renderMarkdown,
  renderTable,
  type GroupMetrics,
  type Report,
  type ReportOptions,
} from '../../src/analysis/report.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import { createLogger } from '../../src/observe/logger.ts';

const rejections = watchUnhandledRejections();

const repoRoot = path.resolve(import.meta.dirname, '../..');
const scratch = mkdtempSync(path.join(tmpdir(), 'tiergate-report-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

type Line = DecisionRecord | ShadowRecord;
const isShadow = (l: Line): l is ShadowRecord => (l as ShadowRecord).kind === 'shadow';

/** Every complete line of the log (decision and shadow lines). */
function linesOf(tg: TestGateway): Line[] {
  return tg
    .decisionLogText()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
}

async function until<T>(probe: () => T | undefined | false, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function ask(route: string, content: string, taskType: string): ChatCompletionCreateParamsNonStreaming {
  return { model: route, messages: [{ role: 'user', content }], metadata: { task_type: taskType } } as unknown as ChatCompletionCreateParamsNonStreaming;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const mean = (xs: number[]) => sum(xs) / xs.length;
const near = (actual: number | null, expected: number, what: string) =>
  assert.ok(actual !== null && Math.abs(actual - expected) < 1e-12, `${what}: ${actual} ≠ ${expected}`);

// The weak model answers prompts up to difficulty 0.3 and hedges or refuses above it;
// the heuristics evaluator catches that. The jsonata evaluator grades the rest: the
// strong model 1; the weak one 1 on classification and 0.9 otherwise, so routing a
// chat request down keeps 90 % of the quality (wrong by ε = 0.02), a classification
// 100 % (right).
const GATE = `gate:
      evaluators:
        - { plugin: heuristics }
        - plugin: jsonata
          expression: "model.name = 'strong' ? 1 : (request.metadata.task_type = 'classification' ? 1 : 0.9)"
      combine: min
      threshold: 0.5`;

function policy(options: { timeScale: number; weakMs: number; strongMs: number; routes: string }): string {
  return `version: 1
providers:
  sim:
    plugin: simulator
    time_scale: ${options.timeScale}
    profiles:
      sim-weak: { capability: 0.3, first_token_ms: ${options.weakMs}, tokens_per_second: 1000000 }
      sim-strong: { capability: 0.99, first_token_ms: ${options.strongMs}, tokens_per_second: 1000000 }
models:
  weak: { provider: sim, upstream: sim-weak, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } }
  strong: { provider: sim, upstream: sim-strong, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }
tiers:
  - { name: cheap, models: [weak] }
  - { name: premium, models: [strong] }
features:
  task_type: metadata.task_type
routes:
${options.routes}
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

const route = (name: string, shadow: string) => `  ${name}:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'top'", tier: premium, reason: sent to the top tier }
        - { when: "true", tier: cheap, confidence: 0.8, reason: cheap first }
    default: cheap
    ${GATE}${shadow ? `\n    shadow: ${shadow}` : ''}`;

const CLASSIFY = [
  'Classify this review as positive or negative: great food',
  'Classify this review as positive or negative: terrible service',
  'Classify this review as positive or negative: fast delivery',
];
const CHAT = ['What is the capital of France?', 'Write a short thank-you note to a colleague.', 'Summarize the plot of Hamlet in two sentences.'];
const HARD = [
  'Prove step by step that the sum of the first n odd numbers is n^2, then explain why induction works here.',
  'Derive the derivative of x^3 * sin(x) and justify each step of the calculation.',
];

// ---------------------------------------------------------------------------------

describe('shadow evaluation and tiergate report (simulator, time_scale 0)', () => {
  let tg: TestGateway;
  let sdk: OpenAI;
  /** Decision ids in the order sent, per kind of request. */
  const sent = {
    classify: [] as string[],
    chat: [] as string[],
    hard: [] as string[],
    top: [] as string[],
    stream: [] as string[],
    half: [] as string[],
    halfHard: [] as string[],
    plain: [] as string[],
  };
  let lines: Line[] = [];
  let logFile = '';
  let configFile = '';

  before(async () => {
    tg = await startTestGateway(
      policy({
        timeScale: 0,
        weakMs: 10,
        strongMs: 10,
        routes: [route('desk', '{ sample: 1 }'), route('half', '{ sample: 0.5 }'), route('plain', '')].join('\n'),
      }),
    );
    sdk = new OpenAI({ baseURL: tg.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 10_000 });
    const send = async (routeName: string, content: string, taskType: string) => {
      const { response } = await sdk.chat.completions.create(ask(routeName, content, taskType)).withResponse();
      return response.headers.get('x-tiergate-decision-id') as string;
    };
    for (const p of CLASSIFY) sent.classify.push(await send('desk', p, 'classification'));
    for (const p of CHAT) sent.chat.push(await send('desk', p, 'chat'));
    for (const p of HARD) sent.hard.push(await send('desk', p, 'chat'));
    sent.top.push(await send('desk', CHAT[0], 'top'));
    const stream = await sdk.chat.completions
      .create({
        ...ask('desk', 'Classify this review as positive or negative: cold soup', 'classification'),
        stream: true,
      } as ChatCompletionCreateParamsStreaming)
      .withResponse();
    for await (const _chunk of stream.data);
    sent.stream.push(stream.response.headers.get('x-tiergate-decision-id') as string);
    for (let i = 0; i < 6; i++) {
      sent.half.push(await send('half', `Classify this review as positive or negative: review number ${i + 1} was fine`, 'classification'));
      if (i === 2) sent.halfHard.push(await send('half', HARD[0], 'chat'));
    }
    for (const p of CLASSIFY) sent.plain.push(await send('plain', p, 'classification'));
    // 7 + 3 shadow lines: every eligible request of desk, every other one of half's.
    const total = Object.values(sent).reduce((n, ids) => n + ids.length, 0);
    lines = await until(() => {
      const now = linesOf(tg);
      return now.filter((l) => !isShadow(l)).length === total && now.filter(isShadow).length === 10 && now;
    }, `${total} decision lines and 10 shadow lines`);
    logFile = path.join(scratch, 'decisions.jsonl');
    writeFileSync(logFile, tg.decisionLogText());
    configFile = path.join(scratch, 'gateway.yaml');
    writeFileSync(configFile, readFileSync(tg.policyFile, 'utf8'));
  });

  after(async () => {
    await tg?.close();
  });

  const decision = (id: string) => lines.find((l): l is DecisionRecord => !isShadow(l) && l.request_id === id) as DecisionRecord;
  const shadowOf = (id: string) => lines.find((l): l is ShadowRecord => isShadow(l) && l.request_id === id);
  const options = (extra: Partial<ReportOptions> = {}): ReportOptions => ({ by: 'route', windowMs: 3_600_000, windowLabel: '1h', epsilon: 0.02, ...extra });

  test('the traffic did what the test means: easy requests served by the weak model, hard ones escalated', () => {
    for (const id of [...sent.classify, ...sent.chat, ...sent.stream, ...sent.half, ...sent.plain]) assert.equal(decision(id).selected_model, 'weak', id);
    for (const id of [...sent.hard, ...sent.halfHard]) {
      assert.equal(decision(id).selected_model, 'strong');
      assert.equal(decision(id).was_escalated, true);
    }
    assert.equal(decision(sent.top[0]).routed_tier, 'premium');
    assert.equal(decision(sent.top[0]).was_escalated, false);
  });

  test('sample 1: every request not served by the best model is shadowed, after its decision line, and marked', () => {
    for (const id of [...sent.classify, ...sent.chat, ...sent.stream]) {
      const d = decision(id);
      const s = shadowOf(id);
      assert.equal(d.shadowed, true, `decision ${id} is marked`);
      assert.ok(s, `shadow line for ${id}`);
      assert.ok(lines.indexOf(s) > lines.indexOf(d), 'the shadow line follows its decision line');
      assert.deepEqual(
        Object.keys(s).sort(),
        [
          'best_model',
          'best_passed',
          'best_quality',
          'best_tier',
          'kind',
          'latency_ms',
          'policy_version',
          'request_id',
          'route',
          'served_model',
          'served_quality',
          'served_tier',
          'shadow_cost_usd',
          'simulated',
          'status',
          'timestamp',
        ].sort(),
      );
      assert.equal(s.status, 'ok');
      assert.equal(s.route, 'desk');
      assert.equal(s.served_model, 'weak');
      assert.equal(s.served_quality, d.quality_score, "the served answer's gate score");
      assert.equal(s.best_model, 'strong');
      assert.equal(s.best_tier, 'premium');
      assert.equal(s.best_quality, 1);
      assert.equal(s.best_passed, true);
      assert.equal(s.policy_version, d.policy_version);
      assert.ok((s.shadow_cost_usd ?? 0) > 0);
      assert.ok(Date.parse(s.timestamp) >= Date.parse(d.timestamp));
    }
    for (const id of sent.classify) assert.equal(shadowOf(id)?.served_quality, 1);
    for (const id of sent.chat) assert.equal(shadowOf(id)?.served_quality, 0.9);
  });

  test('requests served by the best model (escalated, or routed to the top) and routes without shadow get no shadow line', () => {
    for (const id of [...sent.hard, ...sent.top, ...sent.halfHard, ...sent.plain]) {
      assert.equal(shadowOf(id), undefined, id);
      assert.equal('shadowed' in decision(id), false, id);
    }
  });

  test('sample 0.5: every other eligible request (the 1st, 3rd, 5th), the ineligible one not counted', () => {
    const shadowed = sent.half.map((id) => shadowOf(id) !== undefined);
    assert.deepEqual(shadowed, [true, false, true, false, true, false]);
    assert.deepEqual(
      sent.half.map((id) => decision(id).shadowed === true),
      shadowed,
    );
  });

  test('the report: cost savings, escalation rate, retention, accuracy, strong-call share and latency are the arithmetic over the lines', async () => {
    const logs = await readLogs([logFile]);
    assert.equal(logs.badLines, 0);
    const report = buildReport(logs, null, options());
    assert.deepEqual(
      report.groups.map((g) => g.key),
      ['desk', 'half', 'plain'],
    );
    const decisions = lines.filter((l): l is DecisionRecord => !isShadow(l));
    const shadows = lines.filter(isShadow);
    const check = (g: GroupMetrics, ds: DecisionRecord[]) => {
      const ok = ds.filter((d) => d.status === 'ok');
      assert.equal(g.requests, ds.length);
      near(g.cost_savings, 1 - sum(ok.map((d) => d.cost_usd as number)) / sum(ok.map((d) => d.best_cost_usd as number)), `${g.key} cost savings`);
      near(
        g.escalation_rate,
        ok.filter((d) => d.was_escalated && d.attempts.some((a) => a.gate?.passed === false)).length / ok.length,
        `${g.key} escalation rate`,
      );
      near(g.cost_usd, sum(ds.map((d) => d.cost_usd ?? 0)), `${g.key} cost`);
      near(g.served_quality.mean, mean(ok.map((d) => d.quality_score as number)), `${g.key} served quality`);
      near(g.strong_call_share, ok.filter((d) => d.selected_model === 'strong').length / ok.length, `${g.key} strong-call share`);
      const ids = new Set(ds.map((d) => d.request_id));
      const own = shadows.filter((s) => ids.has(s.request_id));
      assert.equal(g.quality_retention.n, own.length);
      if (own.length)
        near(
          g.quality_retention.value,
          mean(own.map((s) => s.served_quality as number)) / mean(own.map((s) => s.best_quality as number)),
          `${g.key} retention`,
        );
      else assert.equal(g.quality_retention.value, null);
      // Quantiles with linear interpolation between order statistics.
      const latencies = ok.map((d) => d.latency_ms).sort((a, b) => a - b);
      const q = (p: number) => {
        const at = p * (latencies.length - 1);
        return latencies[Math.floor(at)] + (latencies[Math.ceil(at)] - latencies[Math.floor(at)]) * (at - Math.floor(at));
      };
      near(g.latency_ms.p50, q(0.5), `${g.key} p50`);
      near(g.latency_ms.p95, q(0.95), `${g.key} p95`);
    };
    for (const g of report.groups)
      check(
        g,
        decisions.filter((d) => d.route === g.key),
      );
    check(report.total, decisions);

    const [desk, half, plain] = report.groups;
    // desk: 4 shadowed classifications score 1 against 1, 3 chats 0.9 against 1.
    near(desk.quality_retention.value, (4 * 1 + 3 * 0.9) / 7, 'desk retention');
    near(desk.escalation_rate, 2 / 10, 'desk escalation rate');
    // Routing accuracy: 9 routed below the top (the 10th went to the top tier); the 2
    // hard ones failed their first gate (wrong); 7 passed, all shadowed, 4 right.
    assert.deepEqual(desk.routing_accuracy, { value: 4 / 9, judged: 9, failed_first: 2, passed_first: 7, shadowed: 7, right: 4, top_routed: 1 });
    // half: 6 passed, 3 shadowed and right, 1 failed: 6 × 3/3 / 7.
    assert.deepEqual(half.routing_accuracy, { value: 6 / 7, judged: 7, failed_first: 1, passed_first: 6, shadowed: 3, right: 3, top_routed: 0 });
    near(half.quality_retention.value, 1, 'half retention');
    assert.equal(half.quality_retention.n, 3);
    // plain: no shadow, so no retention; passes but no shadow data, so no accuracy.
    assert.equal(plain.quality_retention.value, null);
    assert.equal(plain.routing_accuracy.value, null);
    assert.equal(plain.targets.quality_retention.met, null);
    assert.equal(desk.targets.quality_retention.met, false);
    assert.equal(desk.targets.routing_accuracy.met, false);
    assert.equal(desk.targets.escalation_rate.met, true);
    assert.equal(desk.targets.cost_savings.met, (desk.cost_savings as number) > 0.5);
    assert.equal(desk.shadow.lines, 7);
    near(desk.shadow.cost_usd, sum(shadows.filter((s) => s.route === 'desk').map((s) => s.shadow_cost_usd as number)), 'desk shadow cost');
  });

  test('grouping by model, tier and window', async () => {
    const logs = await readLogs([logFile]);
    const decisions = lines.filter((l): l is DecisionRecord => !isShadow(l));
    const byModel = buildReport(logs, null, options({ by: 'model' }));
    assert.deepEqual(
      byModel.groups.map((g) => [g.key, g.requests]).sort(),
      [
        ['strong', decisions.filter((d) => d.selected_model === 'strong').length],
        ['weak', decisions.filter((d) => d.selected_model === 'weak').length],
      ].sort(),
    );
    // Tiers in ladder order from the policy, though "premium" < "cheap" would not sort so by name.
    const byTier = buildReport(
      logs,
      null,
      options({
        by: 'tier',
        policy: {
          tiers: [
            { name: 'premium-first-test', models: [] },
            { name: 'premium', models: ['strong'] },
            { name: 'cheap', models: ['weak'] },
          ],
        },
      }),
    );
    assert.deepEqual(
      byTier.groups.map((g) => g.key),
      ['premium', 'cheap'],
    );
    assert.equal(byTier.groups[0].strong_call_share, 1);
    assert.equal(byTier.groups[1].strong_call_share, 0);
    assert.equal(byTier.total.requests, decisions.length);
    const byWindow = buildReport(logs, null, options({ by: 'window', windowMs: 60_000, windowLabel: '1m' }));
    const minutes = new Set(decisions.map((d) => d.timestamp.slice(0, 16)));
    assert.equal(byWindow.groups.length, minutes.size);
    assert.equal(sum(byWindow.groups.map((g) => g.requests)), decisions.length);
    assert.match(byWindow.groups[0].key, /^\d{4}-\d\d-\d\d \d\d:\d\dZ$/);
  });

  test('bad lines are counted and skipped; the metrics are those of the good lines', async () => {
    const file = path.join(scratch, 'with-bad-lines.jsonl');
    const text = readFileSync(logFile, 'utf8').split('\n');
    text.splice(3, 0, 'not json at all', '{"request_id": "x"}', '[1, 2]', '{"request_id":"tg-truncated","timestamp":"2025-01-0');
    writeFileSync(file, text.join('\n'));
    appendFileSync(file, '{"kind":"shadow","request_id":"y","timestamp":"2025-01-01T00:00:00Z"}\n');
    const logs = await readLogs([file]);
    assert.equal(logs.badLines, 5);
    assert.deepEqual(
      logs.badSamples.map((b) => b.line),
      [4, 5, 6, 7, text.length],
    );
    const clean = buildReport(await readLogs([logFile]), null, options());
    const dirty = buildReport(logs, null, options());
    assert.deepEqual(dirty.groups, clean.groups);
    assert.equal(dirty.input.bad_lines, 5);
    assert.match(renderTable(dirty), /5 bad lines skipped: with-bad-lines\.jsonl:4 not JSON; with-bad-lines\.jsonl:5 no valid timestamp/);
  });

  test('--feedback: mean score per group, joined by request_id; bad feedback lines counted', async () => {
    const file = path.join(scratch, 'feedback.jsonl');
    const fb = [
      { request_id: sent.classify[0], score: 1 },
      { request_id: sent.classify[0], score: 0.5 },
      { request_id: sent.chat[0], score: 0.25 },
      { request_id: sent.half[0], score: 0.8 },
      { request_id: 'tg-unknown', score: 0 },
    ];
    writeFileSync(file, fb.map((f) => JSON.stringify(f)).join('\n') + '\n{"request_id":"a","score":7}\nnope\n');
    const feedback = await readFeedback(file);
    assert.equal(feedback.entries, 5);
    assert.equal(feedback.badLines, 2);
    const report = buildReport(await readLogs([logFile]), feedback, options());
    const [desk, half, plain] = report.groups;
    // Several scores of one request are averaged first: (0.75 + 0.25) / 2.
    assert.deepEqual(desk.feedback, { mean: 0.5, n: 2 });
    assert.deepEqual(half.feedback, { mean: 0.8, n: 1 });
    assert.deepEqual(plain.feedback, { mean: null, n: 0 });
    assert.deepEqual(report.feedback && { entries: report.feedback.entries, joined: report.feedback.joined_requests, bad: report.feedback.bad_lines }, {
      entries: 5,
      joined: 3,
      bad: 2,
    });
    assert.match(renderMarkdown(report), /\| desk \| .*0\.500 \(n=2\)/);
  });

  test('CLI: node bin/tiergate.js report prints the table with the targets, and writes JSON and Markdown', async () => {
    const feedback = path.join(scratch, 'cli-feedback.jsonl');
    writeFileSync(feedback, JSON.stringify({ request_id: sent.chat[1], score: 0.75 }) + '\n');
    const json = path.join(scratch, 'out', 'report.json');
    const markdown = path.join(scratch, 'out', 'report.md');
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['bin/tiergate.js', 'report', '--log', logFile, '--config', configFile, '--by', 'tier', '--feedback', feedback, '--json', json, '--markdown', markdown],
      { cwd: repoRoot, env: { PATH: process.env.PATH, HOME: process.env.HOME, TIERGATE_LOG_LEVEL: 'error' } },
    );
    for (const target of ['(target > 50 %)', '(target < 25 %)', '(target > 98 %)', '(target > 90 %)'])
      assert.ok(stdout.includes(target), `the table shows ${target}:\n${stdout}`);
    assert.match(stdout, /[✓✗]/);
    assert.match(stdout, /│ cheap +│/);
    assert.match(stdout, /│ all +│/);
    assert.match(stderr, /wrote .*report\.json/);
    const report = JSON.parse(readFileSync(json, 'utf8')) as Report;
    assert.equal(report.by, 'tier');
    assert.deepEqual(
      report.groups.map((g) => g.key),
      ['cheap', 'premium'],
      'ladder order from --config',
    );
    const expected = buildReport(await readLogs([logFile]), await readFeedback(feedback), options({ by: 'tier' }));
    assert.deepEqual(report.total, expected.total);
    assert.deepEqual(report.total.feedback, { mean: 0.75, n: 1 });
    assert.match(readFileSync(markdown, 'utf8'), /^# tiergate report/);
    assert.match(readFileSync(markdown, 'utf8'), /\| cost savings \(target > 50 %\) \|/);
  });
});

// ---------------------------------------------------------------------------------

describe('shadow evaluation stays off the client path (simulator, time_scale 1)', () => {
  const STRONG_MS = 600;
  let tg: TestGateway;
  let sdk: OpenAI;

  before(async () => {
    tg = await startTestGateway(
      policy({ timeScale: 1, weakMs: 5, strongMs: STRONG_MS, routes: [route('shadowed', '{ sample: 1 }'), route('unshadowed', '')].join('\n') }),
    );
    sdk = new OpenAI({ baseURL: tg.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 10_000 });
  });

  after(async () => {
    await tg?.close();
  });

  const shadowLine = (id: string) => until(() => linesOf(tg).find((l): l is ShadowRecord => isShadow(l) && l.request_id === id), `shadow line ${id}`);
  const decisionLine = (id: string) => until(() => linesOf(tg).find((l): l is DecisionRecord => !isShadow(l) && l.request_id === id), `decision line ${id}`);

  test("the client gets its answer before the slow best model answers; latency and headers are the unshadowed route's", async () => {
    const prompt = 'Classify this review as positive or negative: the waiter was kind';
    const started = performance.now();
    const shadowed = await sdk.chat.completions.create(ask('shadowed', prompt, 'classification')).withResponse();
    const clientMs = performance.now() - started;
    const plain = await sdk.chat.completions.create(ask('unshadowed', prompt, 'classification')).withResponse();
    assert.ok(clientMs < STRONG_MS / 2, `the client waited ${clientMs.toFixed(0)} ms, not the best model's ${STRONG_MS} ms`);
    const id = shadowed.response.headers.get('x-tiergate-decision-id') as string;
    const headers = (r: Response) =>
      Object.fromEntries([...r.headers].filter(([k]) => k.startsWith('x-tiergate-') && k !== 'x-tiergate-decision-id' && k !== 'x-tiergate-route'));
    assert.deepEqual(headers(shadowed.response), headers(plain.response));
    assert.equal(shadowed.data.choices[0].message.content, plain.data.choices[0].message.content);
    const d = await decisionLine(id);
    assert.equal(d.shadowed, true);
    assert.ok(d.latency_ms < STRONG_MS / 2, `logged latency ${d.latency_ms} ms excludes the shadow call`);
    const s = await shadowLine(id);
    assert.equal(s.status, 'ok');
    assert.ok(s.latency_ms >= STRONG_MS * 0.9, `the shadow call took the best model's time (${s.latency_ms} ms)`);
  });

  test('a client that hangs up and a reload during the shadow call cut nothing short: the line is written under the old policy', async () => {
    const body = JSON.stringify(ask('shadowed', 'Classify this review as positive or negative: the bill was wrong', 'classification'));
    const id = await new Promise<string>((resolve, reject) => {
      const request = http.request(
        `${tg.url}/v1/chat/completions`,
        { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } },
        (response) => {
          resolve(String(response.headers['x-tiergate-decision-id']));
          // Hang up at once: the connection is gone while the shadow call runs.
          request.destroy();
        },
      );
      request.on('error', reject);
      request.end(body);
    });
    const before = await decisionLine(id);
    tg.writePolicy(readFileSync(tg.policyFile, 'utf8') + '# edited\n');
    const reload = (await (await fetch(`${tg.url}/admin/reload`, { method: 'POST' })).json()) as { outcome: string; policy_version: string };
    assert.equal(reload.outcome, 'applied');
    assert.notEqual(reload.policy_version, before.policy_version);
    const s = await shadowLine(id);
    assert.equal(s.status, 'ok');
    assert.equal(s.best_quality, 1);
    assert.equal(s.policy_version, before.policy_version, 'the retired runtime was kept until its shadow call ended');
  });
});

// ---------------------------------------------------------------------------------

describe('policy: shadow', () => {
  /** Line and column (1-based) where `text` first occurs in the policy a test loads. */
  let written = '';
  const where = (text: string) => {
    const lines = written.split('\n');
    const line = lines.findIndex((l) => l.includes(text));
    return { line: line + 1, column: lines[line].indexOf(text) + 1 };
  };

  async function loadErrors(routesYaml: string): Promise<Array<{ code: string; path?: string; line?: number; column?: number; message: string }>> {
    const dir = mkdtempSync(path.join(scratch, 'policy-'));
    const file = path.join(dir, 'gateway.yaml');
    written = policy({ timeScale: 0, weakMs: 1, strongMs: 1, routes: routesYaml });
    writeFileSync(file, written);
    try {
      const runtime = await buildRuntime(file, { logger: createLogger({ level: 'silent' }), mode: 'validate' });
      await runtime.dispose();
      return [];
    } catch (err) {
      assert.ok(err instanceof PolicyErrors, `expected PolicyErrors, got ${String(err)}`);
      return err.errors.map((e) => ({ code: e.code, path: e.location?.path, line: e.location?.line, column: e.location?.column, message: e.message }));
    }
  }

  test('sample outside 0..1 is a located schema error', async () => {
    const errors = await loadErrors(route('desk', '{ sample: 2 }'));
    assert.deepEqual(
      errors.map(({ message: _m, ...e }) => e),
      [{ code: 'TG_ERR_CONFIG_SCHEMA', path: 'routes.desk.shadow.sample', ...where('2 }') }],
    );
  });

  test('an unknown key in shadow is an error, not ignored', async () => {
    const errors = await loadErrors(route('desk', '{ sample: 0.5, rate: 1 }'));
    assert.deepEqual(
      errors.map((e) => [e.code, e.path]),
      [['TG_ERR_CONFIG_SCHEMA', 'routes.desk.shadow.rate']],
    );
  });

  test('shadow without a gate fails to load: TG_ERR_CONFIG_RULE at routes.<route>.shadow', async () => {
    const errors = await loadErrors(route('bare', '{ sample: 0.5 }').replace(/    gate:[\s\S]*?threshold: 0\.5\n/, ''));
    assert.deepEqual(
      errors.map(({ message: _m, ...e }) => e),
      [{ code: 'TG_ERR_CONFIG_RULE', path: 'routes.bare.shadow', ...where('shadow:') }],
    );
    assert.doesNotMatch(written, /gate:/);
    assert.match(errors[0].message, /shadow needs a gate to compare answers/);
  });

  test('shadow: { sample: 0 } and a gated shadow load', async () => {
    assert.deepEqual(await loadErrors(route('desk', '{ sample: 0 }')), []);
  });
});

describe('after everything', () => {
  test('no promise rejection went unhandled during the file', async () => {
    await rejections.assertNone();
  });
});
